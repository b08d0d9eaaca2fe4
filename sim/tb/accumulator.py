"""cocotb tests of the synapse engine against quant.intops' layer functions, on Verilator.

The design point and its stimulus come from an ``.npz`` file named by ``SYN_CASE`` (written by
:func:`sim.cases_accumulator.write_engine_case`): the layer (kind, weight, bias, geometry, lanes),
the spike frames and, per frame, its firing rate. ``SYN_PATTERNS=1`` also runs every frame under
idle input cycles and output backpressure; ``SYN_RESULTS`` names a JSON file that receives the
cycles of every frame and the simulation speed.

Long frames are driven in bulk: the source waits on an edge of ``i__ready`` and the sink on an edge
of ``o__valid`` instead of polling every cycle, so Verilator runs freely while the engine works.
"""

import json
import os
import time

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.cases_accumulator import (engine_reference, engine_words, load_engine_case,
                                   reference_beats)
from sim.tb.common import PATTERNS, TB, StreamSink, StreamSource, start


class Cycles:
    """Count clock cycles from simulation time (a coroutine woken every edge would slow
    Verilator down several times)."""

    def __init__(self, period_ns: int = 10):
        self.period_ns = period_ns

    @property
    def now(self) -> int:
        return int(get_sim_time(unit="ns")) // self.period_ns


async def send_bulk(dut, payloads):
    """Send beats back to back, sleeping on ``i__ready`` while the engine stalls the input."""
    for payload in payloads:
        dut.i__valid.value = 1
        dut.i__payload.value = int(payload)
        while True:
            await ReadOnly()
            if dut.i__ready.value:
                await RisingEdge(dut.clk)
                break
            await RisingEdge(dut.i__ready)
    dut.i__valid.value = 0


async def receive_bulk(dut, count):
    """Take ``count`` beats with ready held high; sleep on ``o__valid`` until the first."""
    dut.o__ready.value = 1
    await ReadOnly()
    if not dut.o__valid.value:
        await RisingEdge(dut.o__valid)
    beats = []
    while len(beats) < count:
        await ReadOnly()
        if dut.o__valid.value:
            beats.append(int(dut.o__payload.value))
        await RisingEdge(dut.clk)
    dut.o__ready.value = 0
    return beats


def _check(case, engine, spikes, beats, label):
    layout = engine.o.payload.shape()
    want = reference_beats(engine, engine_reference(engine, case["weight"], case["bias"], spikes))
    for index, bits in enumerate(beats):
        view = layout.from_bits(bits)
        got = [int(view.values[lane]) for lane in range(engine.lanes)]
        if got != want[index] or int(view.last) != (index == engine.bank_depth - 1):
            lane = next((k for k in range(engine.lanes) if got[k] != want[index][k]), 0)
            raise AssertionError(
                f"layer {case['name']} {label}: bank word {index} (position "
                f"{index // engine.groups}, channel "
                f"{index % engine.groups * engine.lanes + lane}): expected {want[index][lane]}, "
                f"got {got[lane]} (last={int(view.last)})")


def _payloads(engine, spikes):
    layout = engine.i.payload.shape()
    words, last = engine_words(engine.kind, spikes)
    return [layout.const({"bits": w, "last": f}).as_bits() for w, f in zip(words, last)]


@cocotb.test()
async def test_frames(dut):
    """Every frame of the case, back to back, checked against the reference; cycles recorded."""
    case, engine = load_engine_case(os.environ["SYN_CASE"])
    dut._log.info("layer %s, stimulus seed %s", case["name"], case["seed"])
    tb = TB(dut)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await tb.reset()
    cycles = Cycles()
    await ClockCycles(dut.clk, engine.init_cycles + 2)
    results = []
    simulated = 0
    elapsed = 0.0
    for number, (spikes, rate) in enumerate(zip(case["frames"], case["rates"])):
        payloads = _payloads(engine, spikes)
        # The cycle count starts on the edge where the first word is offered.
        await RisingEdge(dut.clk)
        wall = time.perf_counter()
        begin = cycles.now
        sending = start(send_bulk(dut, payloads))
        beats = await receive_bulk(dut, engine.bank_depth)
        await sending
        total = cycles.now - begin
        elapsed += time.perf_counter() - wall
        simulated += total
        _check(case, engine, spikes, beats, f"frame {number} (rate {rate})")
        results.append({"frame": number, "rate": float(rate), "cycles": total,
                        "accumulate_cycles": total - engine.bank_depth,
                        "spikes": int(spikes.sum())})
    # Speed while simulating frames; building payloads and checking results are left out.
    speed = simulated / elapsed if elapsed else 0.0
    dut._log.info("%d cycles in %.2f s: %.0f cycles/s", simulated, elapsed, speed)
    out = os.environ.get("SYN_RESULTS")
    if out:
        with open(out, "w") as handle:
            json.dump({"frames": results, "cycles_per_second": speed}, handle)


@cocotb.test()
async def test_idle_and_backpressure(dut):
    """The case's first frames under every pair of idle-input and backpressure patterns."""
    if os.environ.get("SYN_PATTERNS") != "1":
        return
    case, engine = load_engine_case(os.environ["SYN_CASE"])
    tb = TB(dut)
    await tb.reset()
    frames = list(zip(case["frames"], case["rates"]))[:3]
    for send in PATTERNS:
        for receive in PATTERNS:
            for number, (spikes, rate) in enumerate(frames):
                source = StreamSource(dut, "i", dut.clk, PATTERNS[send])
                sink = StreamSink(dut, "o", dut.clk, PATTERNS[receive])
                sending = start(source.send(_payloads(engine, spikes)))
                beats = await sink.receive(engine.bank_depth)
                await sending
                _check(case, engine, spikes, beats,
                       f"frame {number} (rate {rate}) with {send}/{receive}")
