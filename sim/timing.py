"""Cycle-exact stream timing in Amaranth's simulator: which cycles a unit accepts and delivers.

The functional stream tests (``sim.streams``) check *what* comes out; these helpers check *when*,
so a unit that loses throughput, stalls without cause or misstates its ``latency`` is caught.
"""

from __future__ import annotations

__all__ = ["stream_timing"]


def stream_timing(dut, payloads, *, cycles: int, ready=lambda cycle: 1, offer=lambda cycle: 1,
                  idle=None, inputs=None, outputs=None):
    """Offer ``payloads`` in order on ``dut.i`` in every cycle ``offer(cycle)`` is true (back to
    back by default) while ``dut.o.ready`` follows ``ready(cycle)``; run ``cycles`` cycles.
    ``idle(cycle)``, if given, is the payload's raw bits (an int) driven while ``valid`` is low (a
    don't-care that the unit must ignore; by default the last payload stays on the wires).

    ``inputs``/``outputs`` name the streams (default ``dut.i``/``dut.o``). Returns
    ``(accepted, delivered, payloads_out)``: the cycle of each accepted input beat, the cycle of
    each delivered output beat and the delivered payloads.
    """
    from amaranth.sim import Simulator  # noqa: PLC0415

    i = inputs if inputs is not None else dut.i
    o = outputs if outputs is not None else dut.o
    accepted, delivered, received = [], [], []

    async def bench(ctx):
        index = 0
        for cycle in range(cycles):
            if index < len(payloads) and offer(cycle):
                ctx.set(i.valid, 1)
                ctx.set(i.payload, payloads[index])
            else:
                ctx.set(i.valid, 0)
                if idle is not None:
                    ctx.set(i.payload.as_value(), idle(cycle))
            ctx.set(o.ready, ready(cycle))
            if ctx.get(i.valid) and ctx.get(i.ready):
                accepted.append(cycle)
                index += 1
            if ctx.get(o.valid) and ctx.get(o.ready):
                delivered.append(cycle)
                received.append(ctx.get(o.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return accepted, delivered, received
