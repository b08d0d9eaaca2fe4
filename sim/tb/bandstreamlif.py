"""cocotb test of the stream LIF band unit (``hw.bandstream.BandStreamLIF``) on cocotbext-axi's
AXI4 RAM.

The case is the stream LIF case of ``sim.cases_bandlayer`` (:func:`stream_lif_case`, named by
``BAND_CASE``): streams of ``T`` time steps in memory, garbage elsewhere; the memory's latency,
pauses and seed come from ``BAND_LATENCY``, ``BAND_PAUSE`` and ``BAND_SEED`` as in
``sim/tb/bandlayer.py``. Every band runs at every time step (band-major); each spike map must
be the reference's, every byte outside them unchanged.
"""

from __future__ import annotations

import logging
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiReadBus, AxiWriteBus

from hw.rowreader import map_image
from sim.cases_bandlayer import stream_lif_case
from sim.tb.axi_memory import BoundedAxiRamWrite, LatencyAxiRamRead, parse_latency, random_pauses
from sim.tb.common import TB, env_int


@cocotb.test()
async def test_band_by_band(dut):
    case = stream_lif_case(os.environ["BAND_CASE"])
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
    steps = len(case.want)
    bands = -(-case.height // case.band_rows)
    for band in range(bands):
        for t in range(steps):
            dut.band.value = band
            dut.first.value = int(t == 0)
            dut.stream_base.value = case.stream_at[t]
            dut.output_base.value = case.out_at[t]
            dut.start.value = 1
            await RisingEdge(dut.clk)
            dut.start.value = 0
            for _ in range(200_000):
                await RisingEdge(dut.clk)
                await ReadOnly()
                if not dut.busy.value:
                    break
            else:
                raise AssertionError(f"band {band}, step {t}: busy never fell{reads.state()}")
            assert not dut.error.value, f"band {band}, step {t}: an error response"
            await RisingEdge(dut.clk)
    memory = reads.read(0, len(case.memory))
    out_size = len(map_image(case.want[0]))
    for t in range(steps):
        got = memory[case.out_at[t]:case.out_at[t] + out_size]
        assert got == map_image(case.want[t]), f"time step {t}: the spike map differs"
    first, end = case.out_at[0], case.out_at[-1] + out_size
    assert memory[:first] == case.memory[:first], "a byte before the spike maps changed"
    assert memory[end:] == case.memory[end:], "a byte after the spike maps changed"
