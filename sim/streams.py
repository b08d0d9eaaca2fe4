"""The stream harness for Amaranth's simulator: send, collect, time, and check stalled beats.

Every unit test that drives an ``amaranth.lib.stream`` interface in Amaranth's simulator uses this
module (the cocotb testbenches share :data:`PATTERNS` through ``sim.tb.common``). It offers:

:func:`send`
    Offer payloads on a stream, with idle cycles where a pattern says so (and, optionally,
    garbage on the payload wires while ``valid`` is low).
:func:`collect`
    Take a number of beats, with backpressure where a pattern says so.
:func:`monitor`
    Record the cycle of every transfer on a stream (per-beat timestamps) and check that a
    stalled beat holds: while an output has ``valid = 1`` and ``ready = 0``, neither ``valid``
    nor any payload field may change until the beat is taken. A violation raises
    ``AssertionError`` naming the stream, the cycle and the field.
:func:`run_bounded`
    Run a simulation's testbenches with a cycle limit: a unit that never delivers a beat fails
    the test in bounded time instead of hanging it.
:func:`run_stream`
    All of it for a unit with one input and one output stream: returns a :class:`StreamRun`
    (the output payloads, the cycle each input beat was taken and each output beat delivered,
    and the cycle count from the first beat in to the last beat out).

Cycles are numbered from 0, the first clock period of the simulation; a transfer "in cycle ``n``"
has ``valid`` and ``ready`` high during period ``n`` and completes at the clock edge that ends it.

Patterns. Idle cycles and backpressure are given either way:

* a tuple, cycled, as in :data:`PATTERNS`: the gaps before each beat. Each 0 is a cycle of waiting,
  each 1 starts a beat: the sender offers the next beat, the receiver raises ``ready``; either then
  holds until a beat is taken. (``(1,)``: back to back.)
* a callable of the cycle number (counted from the start of that :func:`send` or :func:`collect`
  call), cycle by cycle: the sender starts offering the next beat only in a cycle where it returns
  true; the receiver's ``ready`` is its value in every cycle (a receiver may drop ``ready``
  while a beat waits; that is what stalls an output).

Either way an offered beat stays offered, unchanged, until it is taken: the sender keeps the stream
rules that :func:`monitor` checks on the unit's output.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["PATTERNS", "send", "collect", "monitor", "run_bounded", "Transfers", "StreamRun",
           "run_stream"]

#: Valid (for a sender) or ready (for a receiver) patterns every stream test runs with.
PATTERNS = {
    "always": (1,),
    "pause": (1, 1, 1, 0),
    "sparse": (1, 0, 0, 1, 0),
}


def _schedule(pattern):
    """Return ``decide(cycle) -> bool`` for a pattern tuple (cycled) or a callable."""
    if callable(pattern):
        return pattern
    steps = itertools.cycle(pattern)
    return lambda cycle: bool(next(steps))


async def send(ctx, stream, payloads, pattern=(1,), *, idle=None):
    """Offer every payload on ``stream`` in order, each until it is taken.

    ``pattern`` (module docstring) decides, in each cycle without a beat on offer, whether the next
    beat is offered. While ``valid`` is low the payload wires keep the last beat, or, with
    ``idle``, carry ``idle(cycle)`` (an int: the payload's raw bits), a don't-care the unit must
    ignore. Runs in a process or a testbench.
    """
    decide = _schedule(pattern)
    cycle = 0
    for payload in payloads:
        while not decide(cycle):
            ctx.set(stream.valid, 0)
            if idle is not None:
                ctx.set(stream.payload.as_value(), idle(cycle))
            await ctx.tick()
            cycle += 1
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        while True:
            _, _, taken = await ctx.tick().sample(stream.ready)
            cycle += 1
            if taken:
                break
        ctx.set(stream.valid, 0)


async def collect(ctx, stream, count: int, pattern=(1,)) -> list:
    """Take ``count`` beats from ``stream`` and return their payloads.

    ``pattern`` (module docstring): a tuple gives the cycles with ``ready`` low before each beat
    (``ready`` then stays high until a beat is taken); a callable gives ``ready`` in every cycle.
    ``ready`` is low when this returns. Runs in a testbench.
    """
    received = []
    if callable(pattern):
        cycle = 0
        while len(received) < count:
            ctx.set(stream.ready, 1 if pattern(cycle) else 0)
            _, _, valid, ready, payload = await ctx.tick().sample(
                stream.valid, stream.ready, stream.payload)
            cycle += 1
            if valid and ready:
                received.append(payload)
        ctx.set(stream.ready, 0)
        return received
    gaps = itertools.cycle(pattern)
    while len(received) < count:
        while not next(gaps):
            await ctx.tick()
        ctx.set(stream.ready, 1)
        (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
        ctx.set(stream.ready, 0)
        received.append(payload)
    return received


def _leaves(shape, name: str):
    """Yield ``(name, offset, width)`` of every leaf field of a payload shape."""
    if isinstance(shape, data.Layout):
        for key, member in shape:
            inner = f"{name}.{key}" if isinstance(key, str) else f"{name}[{key}]"
            for leaf, offset, width in _leaves(member.shape, inner):
                yield leaf, member.offset + offset, width
    else:
        yield name, 0, Shape.cast(shape).width


def _bits(payload) -> int:
    return payload.as_bits() if hasattr(payload, "as_bits") else int(payload)


@dataclass
class Transfers:
    """What :func:`monitor` saw on one stream: the cycle and the payload of every transfer."""

    name: str
    cycles: list[int] = field(default_factory=list)
    payloads: list = field(default_factory=list)
    #: Cycles in which a beat was offered and not taken (``valid = 1``, ``ready = 0``): with
    #: ``hold``, each one was checked to hold.
    stalls: int = 0


def monitor(sim, stream, *, name: str = "o", hold: bool = True) -> Transfers:
    """Watch ``stream`` from the start of ``sim``: return a :class:`Transfers` that fills as the
    simulation runs.

    With ``hold`` (for a unit's output), every cycle with ``valid = 1`` and ``ready = 0`` is a
    stalled beat, and in the next cycle ``valid`` must still be 1 and every payload field the
    same; otherwise ``AssertionError`` names the cycle and the field (the stream contract of
    ``amaranth.lib.stream``: a beat, once offered, is held until taken). Added as a background
    process, so it never keeps the simulation running.
    """
    record = Transfers(name)
    leaves = list(_leaves(stream.payload.shape(), f"{name}.payload"))

    async def watch(ctx):
        cycle, stalled, since = 0, None, None
        async for _, _, valid, ready, payload in ctx.tick().sample(
                stream.valid, stream.ready, stream.payload):
            bits = _bits(payload)
            if stalled is not None:
                if not valid:
                    raise AssertionError(
                        f"{name}: cycle {cycle}: {name}.valid fell while the beat offered since "
                        f"cycle {since} was stalled (ready low) and not taken")
                for leaf, offset, width in leaves:
                    old = (stalled >> offset) & ((1 << width) - 1)
                    new = (bits >> offset) & ((1 << width) - 1)
                    if old != new:
                        raise AssertionError(
                            f"{name}: cycle {cycle}: {leaf} changed from {old} to {new} while "
                            f"the beat offered since cycle {since} was stalled (ready low) and "
                            "not taken")
            if valid and ready:
                record.cycles.append(cycle)
                record.payloads.append(payload)
            if valid and not ready:
                record.stalls += 1
            if hold and valid and not ready:
                since = since if stalled is not None else cycle
                stalled = bits
            else:
                stalled = since = None
            cycle += 1

    sim.add_process(watch)
    return record


def run_bounded(sim, bench, cycles: int, period: float = 1e-8, settle: int = 2000) -> None:
    """Add ``bench`` as a testbench of ``sim`` (clocked at ``period``) and run for at most
    ``cycles`` cycles; raise ``AssertionError`` if it has not returned by then (a beat that never
    comes would otherwise keep :func:`collect` waiting for ever).

    Once ``bench`` and every other critical testbench have returned, the simulation runs
    ``settle`` cycles more (never past ``cycles``) and stops: what the design does after the
    last check (a request too many, a late write) still reaches the processes that record it,
    without simulating the rest of the bound (the clock runs for ever)."""
    finished = []

    async def bounded(ctx):
        await bench(ctx)
        finished.append(True)

    sim.add_testbench(bounded)
    done, chunk = 0, 512
    while done < cycles:
        done = min(cycles, done + chunk)
        sim.run_until(done * period)
        # advance() is one step of run_until; it says whether a critical testbench still runs
        if finished and not sim.advance():
            sim.run_until(min(cycles, done + settle) * period)
            break
    assert finished, f"the testbench did not finish within {cycles} cycles"


@dataclass
class StreamRun:
    """The result of :func:`run_stream`."""

    #: Output payloads, in order.
    payloads: list
    #: Cycle in which each input beat was taken.
    accepted: list[int]
    #: Cycle in which each output beat was taken.
    delivered: list[int]
    #: Cycles in which an output beat stalled (each checked to hold, unless ``hold=False``).
    stalls: int = 0

    @property
    def cycles(self) -> int:
        """Cycles from the first input beat taken to the last output beat taken, both counted."""
        return self.delivered[-1] - self.accepted[0] + 1

    @property
    def first_out(self) -> int:
        """Cycles from the first input beat taken to the first output beat taken, both counted."""
        return self.delivered[0] - self.accepted[0] + 1


def run_stream(dut, payloads, count: int, *, send_pattern=(1,), receive_pattern=(1,),
               idle=None, design=None, inputs=None, outputs=None, hold: bool = True,
               quiet: int = 0) -> StreamRun:
    """Simulate a unit: send ``payloads`` on its input, take ``count`` beats from its output.

    Parameters
    ----------
    dut
        The unit; its streams are ``dut.i`` and ``dut.o`` unless ``inputs``/``outputs`` name
        others. ``design`` (default ``dut``) is what is simulated, e.g. a wrapper around it.
    send_pattern, receive_pattern, idle
        Idle cycles and backpressure (module docstring), and garbage on the idle input.
    hold
        Check that a stalled output beat holds (:func:`monitor`); on by default.
    quiet
        After the last beat, this many more cycles in which the unit must offer nothing
        (a spare beat is a bug the count cannot see).
    """
    from amaranth.sim import Simulator  # noqa: PLC0415

    i = dut.i if inputs is None else inputs
    o = dut.o if outputs is None else outputs
    sim = Simulator(dut if design is None else design)
    sim.add_clock(1e-8)
    taken = monitor(sim, i, name="i", hold=False)
    given = monitor(sim, o, name="o", hold=hold)
    received = []

    async def sender(ctx):
        await send(ctx, i, payloads, send_pattern, idle=idle)

    async def receiver(ctx):
        received.extend(await collect(ctx, o, count, receive_pattern))
        for extra in range(quiet):
            await ctx.tick()
            assert not ctx.get(o.valid), f"o: a beat beyond the {count} expected ({extra + 1} " \
                                         "cycles after the last)"

    sim.add_process(sender)
    sim.add_testbench(receiver)
    sim.run()
    return StreamRun(received, taken.cycles, given.cycles, given.stalls)
