"""Stream drivers for Amaranth's simulator, with idle cycles and backpressure."""

from __future__ import annotations

import itertools

__all__ = ["PATTERNS", "stream_put", "stream_get", "send_all", "receive_all", "run_stream"]

#: Valid (for a sender) or ready (for a receiver) patterns every stream test runs with.
PATTERNS = {
    "always": (1,),
    "pause": (1, 1, 1, 0),
    "sparse": (1, 0, 0, 1, 0),
}


async def stream_put(ctx, stream, payload):
    """Offer one beat and wait until it is taken."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one beat and return its payload."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def send_all(ctx, stream, payloads, pattern=(1,)):
    """Send every payload, idling for a cycle wherever ``pattern`` (cycled) says 0."""
    gaps = itertools.cycle(pattern)
    for payload in payloads:
        while not next(gaps):
            await ctx.tick()
        await stream_put(ctx, stream, payload)


async def receive_all(ctx, stream, count, pattern=(1,)):
    """Receive ``count`` payloads, refusing for a cycle wherever ``pattern`` (cycled) says 0."""
    gaps = itertools.cycle(pattern)
    received = []
    while len(received) < count:
        while not next(gaps):
            await ctx.tick()
        received.append(await stream_get(ctx, stream))
    return received


def run_stream(dut, payloads, count: int, *, send_pattern=(1,), receive_pattern=(1,)) -> list:
    """Simulate ``dut``: send ``payloads`` on ``dut.i``, return the first ``count`` beats of
    ``dut.o`` (with idle cycles and backpressure as the patterns say)."""
    from amaranth.sim import Simulator  # noqa: PLC0415

    received = []

    async def sender(ctx):
        await send_all(ctx, dut.i, payloads, send_pattern)

    async def receiver(ctx):
        received.extend(await receive_all(ctx, dut.o, count, receive_pattern))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(sender)
    sim.add_testbench(receiver)
    sim.run()
    return received
