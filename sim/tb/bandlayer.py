"""cocotb test of the band layer (``hw.bandlayer.BandLayer``) on cocotbext-axi's AXI4 RAM.

The case (``sim.cases_bandlayer``) is named by ``BAND_CASE``. Its memory (input maps in place,
garbage elsewhere) is loaded into one RAM whose read side answers each burst after
``BAND_LATENCY`` cycles (``N`` or ``LOW-HIGH``, :class:`sim.tb.axi_memory.LatencyAxiRamRead`)
and whose write side is cocotbext-axi's (:class:`sim.tb.axi_memory.BoundedAxiRamWrite`);
``BAND_PAUSE`` drops ``arready``, ``rvalid``, ``awready``, ``wready`` and ``bvalid`` at random
with that probability (seed ``BAND_SEED``). The testbench starts every band at every time step
(band-major), checks each output map ``==`` the integer model's, bytes outside them unchanged,
and writes the cycles from the first start to the last ``busy`` low to ``BAND_RESULT`` (JSON).
"""

from __future__ import annotations

import json
import logging
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiReadBus, AxiWriteBus

from hw.rowreader import map_image
from sim.cases_bandlayer import band_case
from sim.tb.axi_memory import BoundedAxiRamWrite, LatencyAxiRamRead, parse_latency, random_pauses
from sim.tb.common import TB, env_int


@cocotb.test()
async def test_band_by_band(dut):
    case = band_case(os.environ["BAND_CASE"])
    seed = env_int("BAND_SEED", 1)
    pause = float(os.environ.get("BAND_PAUSE", "0"))
    tb = TB(dut)
    size = 1 << max(12, (len(case.memory) - 1).bit_length())
    reads = LatencyAxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=size,
                              latency=parse_latency(os.environ.get("BAND_LATENCY", "1-64")),
                              seed=seed)
    writes = BoundedAxiRamWrite(AxiWriteBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                                size=size, mem=reads.mem)
    for ram in (reads, writes):
        ram.log.setLevel(logging.WARNING)
    reads.write(0, case.memory)
    if pause > 0:
        for index, channel in enumerate((reads.ar_channel, reads.r_channel, writes.aw_channel,
                                         writes.w_channel, writes.b_channel)):
            channel.set_pause_generator(random_pauses(pause, seed + 1 + index))
    dut.start.value = 0
    await tb.reset()
    while True:
        await ReadOnly()
        if dut.ready.value:
            break
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    bands = -(-case.layer.out_height // case.band_rows)
    cycles = 0
    for band in range(bands):
        for t in range(case.steps):
            dut.band.value = band
            dut.first.value = int(t == 0)
            dut.input_base.value = case.in_at[t]
            dut.output_base.value = case.out_at[t]
            dut.start.value = 1
            await RisingEdge(dut.clk)
            dut.start.value = 0
            cycles += 1
            for _ in range(200_000):
                await RisingEdge(dut.clk)
                cycles += 1
                await ReadOnly()
                if not dut.busy.value:
                    break
            else:
                raise AssertionError(f"band {band}, step {t}: busy never fell{reads.state()}")
            assert not dut.error.value, f"band {band}, step {t}: an error response"
            await RisingEdge(dut.clk)
    memory = reads.read(0, len(case.memory))
    for t in range(case.steps):
        got = memory[case.out_at[t]:case.out_at[t] + case.out_size]
        assert got == map_image(case.want[t]), \
            f"time step {t}: the output map in memory differs from the integer model's"
    first, end = case.out_at[0], case.out_at[-1] + case.out_size
    assert memory[:first] == case.memory[:first], "a byte before the output maps changed"
    assert memory[end:] == case.memory[end:], "a byte after the output maps changed"
    if "BAND_RESULT" in os.environ:
        with open(os.environ["BAND_RESULT"], "w") as handle:
            json.dump({"cycles": cycles, "bursts_read": reads.bursts}, handle)
