"""``make test``'s share of a cross product of shapes and stream patterns.

Every (shape, pattern) pair is a test; ``make test`` runs ``per_shape`` patterns of each shape,
rotated so that every pattern meets several shapes, and marks the rest ``slow`` (``make
test-all`` runs them all).
"""

import pytest


def rotated(shapes, patterns, per_shape: int = 1) -> list:
    """pytest params ``(*shape, pattern)``; a shape may be a tuple, a single value or a
    ``pytest.param`` (its id becomes ``<id>-<pattern>``)."""
    params = []
    for i, shape in enumerate(shapes):
        if hasattr(shape, "values"):          # a pytest.param
            values, ident = tuple(shape.values), shape.id
        else:
            values, ident = (shape if isinstance(shape, tuple) else (shape,)), None
        fast = {(per_shape * i + j) % len(patterns) for j in range(per_shape)}
        for n, pattern in enumerate(patterns):
            params.append(pytest.param(
                *values, pattern, marks=() if n in fast else (pytest.mark.slow,),
                id=None if ident is None else f"{ident}-{pattern}"))
    return params


def fast_few(points, fast) -> list:
    """pytest params of the design points ``points`` (names, in order): those in ``fast`` run in
    ``make test``, every other is marked ``slow`` (``make test-all``). For the Verilator builds of
    single units, whose logic the Amaranth-simulator tests cover at every point (the network's
    own units are also built as Verilog by ``make test``'s whole-network test): each build costs
    ``make test`` 5-15 s."""
    unknown = set(fast) - set(points)
    assert not unknown, f"no such design point: {sorted(unknown)}"
    return [pytest.param(point, marks=() if point in fast else (pytest.mark.slow,), id=point)
            for point in points]


def every_nth(values, n: int) -> list:
    """pytest params of ``values`` (a tuple is one test's arguments): every ``n``-th, from the
    first, runs in ``make test``, the others are marked ``slow`` (``make test-all`` runs all).
    For long families of the same check on stored runs or geometries, where a spread sample
    keeps ``make test`` within its time and the rest still runs in ``make test-all``."""
    return [pytest.param(*(value if isinstance(value, tuple) else (value,)),
                         marks=() if index % n == 0 else (pytest.mark.slow,))
            for index, value in enumerate(values)]
