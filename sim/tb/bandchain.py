"""cocotb test of a chain of band layers (``hw.bandchain.BandChain``) on cocotbext-axi's AXI4 RAM.

The case (``sim.cases_bandlayer.CHAIN_CASES``) is named by ``BAND_CASE``; ``BAND_WEIGHTS``
(``rom`` or ``axi``) says where the design's weights are (with ``axi`` the weight image is put
after the case's memory, ``sim.cases_bandlayer.chain_weights``). One RAM holds everything: its
read side answers each burst after ``BAND_LATENCY`` cycles (:class:`sim.tb.axi_memory.
LatencyAxiRamRead`), its write side is cocotbext-axi's; ``BAND_PAUSE`` drops ``arready``,
``rvalid``, ``awready``, ``wready`` and ``bvalid`` at random with that probability (seed
``BAND_SEED``). The testbench sets the bases and ``steps``, pulses ``start`` once, waits for
``done`` (``busy`` must hold until then), and checks the output maps and the two maps still in
the scratch slots ``==`` the integer model's, every other byte unchanged. ``BAND_RESULT``
(JSON) gets the cycles from ``start`` to ``done`` (``done`` raised that many cycles after the
cycle that sampled ``start``; the chain ``ready`` first) and the bursts read.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.cases_bandlayer import chain_case, chain_weights, check_chain_memory
from sim.tb.axi_memory import band_memory
from sim.tb.common import TB, env_int


@cocotb.test()
async def test_chain(dut):
    case = chain_case(os.environ["BAND_CASE"])
    axi_weights = os.environ.get("BAND_WEIGHTS", "rom") == "axi"
    seed = env_int("BAND_SEED", 1)
    pause = float(os.environ.get("BAND_PAUSE", "0"))
    memory, weight_base = chain_weights(case) if axi_weights else (case.memory, 0)
    tb = TB(dut)
    reads, _ = band_memory(dut, memory, seed=seed, pause=pause,
                           latency=os.environ.get("BAND_LATENCY", "1-64"))
    dut.start.value = 0
    await tb.reset()
    await RisingEdge(dut.clk)
    # the engine clears its bank after reset (once, not a run's cost): start when it is done
    for _ in range(1 << 20):
        await ReadOnly()
        if dut.ready.value:
            break
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.input_base.value = case.input_base
    dut.scratch_base.value = case.scratch_base
    dut.output_base.value = case.output_base
    dut.steps.value = case.steps
    if axi_weights:
        dut.weight_base.value = weight_base
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    cycles = 1      # done is raised ``cycles`` cycles after the cycle that sampled start
    for _ in range(5_000_000):
        await ReadOnly()
        if dut.done.value:
            break
        assert dut.busy.value, f"busy fell at cycle {cycles} before done"
        await RisingEdge(dut.clk)
        cycles += 1
    else:
        raise AssertionError(f"the chain never finished{reads.state()}")
    assert not dut.error.value, "an error response"
    await RisingEdge(dut.clk)
    check_chain_memory(case, reads.read(0, len(memory)), memory)
    if "BAND_RESULT" in os.environ:
        with open(os.environ["BAND_RESULT"], "w") as handle:
            json.dump({"cycles": cycles, "bursts_read": reads.bursts}, handle)
