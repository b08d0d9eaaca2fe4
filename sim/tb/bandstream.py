"""cocotb test of the residual-stream band unit (``hw.bandstream.BandStream``) on cocotbext-axi's
AXI4 RAM.

The case (``sim.cases_bandlayer.stream_case``) is named by ``BAND_CASE``; the memory's latency,
pauses and seed by ``BAND_LATENCY``, ``BAND_PAUSE`` and ``BAND_SEED`` as in
``sim/tb/bandlayer.py``. Every band begins the stream from the first input map, then every band
adds the second map's sums into it; after each pass the stream in memory must be the reference's,
every byte outside it unchanged. The cycles of each pass (first start to last ``busy`` low)
go to ``BAND_RESULT`` (JSON) when it is set.
"""

from __future__ import annotations

import json
import logging
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiReadBus, AxiWriteBus

from hw.bandstream import stream_image
from sim.cases_bandlayer import stream_case
from sim.tb.axi_memory import BoundedAxiRamWrite, LatencyAxiRamRead, parse_latency, random_pauses
from sim.tb.common import TB, env_int


@cocotb.test()
async def test_begin_then_add(dut):
    case = stream_case(os.environ["BAND_CASE"])
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
    lanes, start, end = case.layer.lanes, case.stream_at, case.stream_at + case.size
    cycles = [0, 0]
    for step, add in enumerate((0, 1)):
        for band in range(bands):
            dut.band.value = band
            dut.add.value = add
            dut.input_base.value = case.in_at[step]
            dut.stream_base.value = case.stream_at
            dut.start.value = 1
            await RisingEdge(dut.clk)
            dut.start.value = 0
            cycles[step] += 1
            for _ in range(200_000):
                await RisingEdge(dut.clk)
                cycles[step] += 1
                await ReadOnly()
                if not dut.busy.value:
                    break
            else:
                raise AssertionError(f"step {step}, band {band}: busy never fell{reads.state()}")
            assert not dut.error.value, f"step {step}, band {band}: an error response"
            await RisingEdge(dut.clk)
        memory = reads.read(0, len(case.memory))
        assert memory[start:end] == stream_image(case.want[step], lanes, case.bits), \
            f"{('begin', 'add')[step]}: the stream in memory differs from the reference"
        assert memory[:start] == case.memory[:start], "a byte before the stream changed"
        assert memory[end:] == case.memory[end:], "a byte after the stream changed"
    if "BAND_RESULT" in os.environ:
        with open(os.environ["BAND_RESULT"], "w") as handle:
            json.dump({"begin_cycles": cycles[0], "add_cycles": cycles[1]}, handle)
