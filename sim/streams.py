"""Stream drivers for Amaranth's simulator, with idle cycles and backpressure."""

from __future__ import annotations

import itertools

__all__ = ["PATTERNS", "stream_put", "stream_get", "send_all", "receive_all"]

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
