"""Stimulus and expected results of the SDSA unit's streams, from the integer golden functions.

Shared by the Amaranth-simulator tests, the cocotb testbench and the benchmark, so all three
pack beats and compute the reference the same way. The reference is ``quant.intops``'s ``sdsa1``
.. ``sdsa4`` applied per head and time step with the membranes carried over, cleared at a step
whose ``first`` flag is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant import intops

from hw.sdsa_common import Variant

__all__ = ["SDSACase", "random_case", "case_from_arrays", "expected_spikes", "input_payloads",
           "row_bits", "bits_row", "first_difference"]


@dataclass(frozen=True)
class SDSACase:
    """Hold spike rows for an SDSA unit: ``q``, ``k``, ``v`` uint8 ``[steps, heads, N, d]``.

    ``first[step]`` starts a sample (membranes read as 0); ``layer[step]`` selects SDSA-4's
    threshold memory entry.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    first: np.ndarray
    layer: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.q.shape[0])

    @property
    def heads(self) -> int:
        return int(self.q.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.q.shape[2])

    @property
    def head_width(self) -> int:
        return int(self.q.shape[3])

    @property
    def beats(self) -> int:
        return self.steps * self.heads * self.tokens


def case_from_arrays(q, k, v, first=None, layer=None) -> SDSACase:
    """Build a case from ``[steps, heads, N, d]`` arrays (``first`` defaults to step 0 only)."""
    q, k, v = (np.asarray(a, dtype=np.uint8) for a in (q, k, v))
    if not q.shape == k.shape == v.shape or q.ndim != 4:
        raise ValueError(f"q, k, v must share one [steps, heads, N, d] shape, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    steps = q.shape[0]
    if first is None:
        first = np.zeros(steps, dtype=np.uint8)
        first[0] = 1
    if layer is None:
        layer = np.zeros(steps, dtype=np.int64)
    return SDSACase(q=q, k=k, v=v, first=np.asarray(first, dtype=np.uint8),
                    layer=np.asarray(layer, dtype=np.int64))


def random_case(rng: np.random.Generator, *, tokens: int, head_width: int, heads: int = 1,
                steps: int = 1, rate=0.1, first=None, layer=None) -> SDSACase:
    """Draw Bernoulli spike rows; ``rate`` is one firing rate or ``(q_rate, k_rate, v_rate)``."""
    rates = tuple(rate) if np.ndim(rate) else (rate, rate, rate)
    shape = (steps, heads, tokens, head_width)
    q, k, v = ((rng.random(shape) < r).astype(np.uint8) for r in rates)
    return case_from_arrays(q, k, v, first, layer)


def expected_spikes(case: SDSACase, variant, thresholds) -> np.ndarray:
    """Return the reference output spikes ``[steps, heads, N, d]`` (uint8) of a case.

    ``thresholds`` is the unit's threshold memory (:attr:`SDSA.thresholds`); step ``s`` uses entry
    ``case.layer[s]`` (SDSA-4) or entry 0.
    """
    variant = Variant(variant)
    out = np.zeros(case.q.shape, dtype=np.uint8)
    membranes = [None] * case.heads
    for step in range(case.steps):
        threshold = int(thresholds[int(case.layer[step]) if variant == Variant.SDSA4 else 0])
        for head in range(case.heads):
            if case.first[step]:
                membranes[head] = None
            q, k, v = case.q[step, head], case.k[step, head], case.v[step, head]
            if variant == Variant.SDSA1:
                spikes, membranes[head], _ = intops.sdsa1(q, k, v, threshold, membranes[head])
            elif variant == Variant.SDSA2:
                spikes, membranes[head], _ = intops.sdsa2(q, k, threshold, membranes[head])
            elif variant == Variant.SDSA3:
                spikes, membranes[head], _ = intops.sdsa3(q, k, v, threshold, membranes[head])
            else:
                spikes, membranes[head], _ = intops.sdsa4(q, k, v, threshold, membranes[head])
            out[step, head] = spikes
    return out


def row_bits(row) -> int:
    """Pack a 0/1 row (channel j in bit j) into an integer."""
    return int(sum(int(bit) << j for j, bit in enumerate(row)))


def bits_row(value: int, width: int) -> np.ndarray:
    """Unpack an integer into a 0/1 row of ``width`` channels."""
    return np.array([(int(value) >> j) & 1 for j in range(width)], dtype=np.uint8)


def input_payloads(case: SDSACase, variant) -> list[dict]:
    """Return the input beats of a case, in stream order, as dicts for the input layout."""
    variant = Variant(variant)
    beats = []
    for step in range(case.steps):
        for head in range(case.heads):
            for token in range(case.tokens):
                beat = {"q": row_bits(case.q[step, head, token]),
                        "k": row_bits(case.k[step, head, token]),
                        "first": int(case.first[step])}
                if variant != Variant.SDSA2:
                    beat["v"] = row_bits(case.v[step, head, token])
                if variant == Variant.SDSA4:
                    beat["layer"] = int(case.layer[step])
                beats.append(beat)
    return beats


def first_difference(got: np.ndarray, want: np.ndarray, label: str = "") -> str | None:
    """Return a message naming the first (step, head, token, channel) that differs, or None."""
    if got.shape != want.shape:
        return f"{label}: got {got.shape} outputs, expected {want.shape}"
    where = np.argwhere(got != want)
    if not len(where):
        return None
    step, head, token, channel = (int(x) for x in where[0])
    return (f"{label}: {len(where)} output spikes differ; first at step {step} head {head} "
            f"token {token} channel {channel}: expected {want[step, head, token, channel]}, "
            f"got {got[step, head, token, channel]}")
