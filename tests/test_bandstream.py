"""hw.bandstream.BandStream: a conv's sums begun into, then added into, a residual stream in a
random AXI memory, band by band, gives the stream ``==`` ``band_stream_reference``
(hw.residual.stream_update of quant.intops.conv2d_spikes, element by element, wrapped to the
stream's bits), every other byte untouched; the on-chip buffer and bank hold one band.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bandstream import BandStream, stream_image
from hw.progengine_config import layer_config
from sim.cases_bandlayer import STREAM_CASES, stream_case
from subsets import fast_few
from test_bandlayer import ReadMemory
from test_rowwriter import WriteMemory

@pytest.mark.parametrize("name", fast_few(sorted(STREAM_CASES), {"3x3"}))
def test_begin_then_add_band_by_band_over_axi(name):
    case = stream_case(name)
    layer, lanes, bits = case.layer, case.layer.lanes, case.bits
    dut = BandStream(layer, case.weight, case.bias, case.shifts, stream_bits=bits,
                     band_rows=case.band_rows)
    assert dut.memory_bits["stream buffer"] < layer.beats * lanes * bits
    assert (case.want[0] != case.want[1]).any()
    memory = bytearray(case.memory)
    before, size, stream_at = case.memory, case.size, case.stream_at
    sim_rng = random.Random(len(name))
    reads = ReadMemory(dut, memory, sim_rng)
    writes = WriteMemory(dut, memory, sim_rng, data_width=64)
    snapshots = []

    async def bench(ctx):
        while not ctx.get(dut.ready):
            await ctx.tick()
        for step, add in enumerate((0, 1)):
            for band in range(len(dut.bands)):
                ctx.set(dut.band, band)
                ctx.set(dut.add, add)
                ctx.set(dut.input_base, case.in_at[step])
                ctx.set(dut.stream_base, stream_at)
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for _ in range(100_000):
                    reads.step(ctx)
                    writes.step(ctx)
                    await ctx.tick()
                    if not ctx.get(dut.busy):
                        break
                else:
                    raise AssertionError(f"step {step}, band {band} never finished")
                assert not ctx.get(dut.error)
                assert writes.idle and not reads.pending
            snapshots.append(bytes(memory))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for label, snapshot, want in zip(("begin", "add"), snapshots, case.want):
        got = snapshot[stream_at:stream_at + size]
        assert got == stream_image(want, lanes, bits), f"{label}: the stream in memory differs"
        assert snapshot[:stream_at] == before[:stream_at]
        assert snapshot[stream_at + size:] == before[stream_at + size:]


def test_stream_image_layout():
    values = np.arange(2 * 2 * 3).reshape(3, 2, 2) - 5     # C = 3, 2x2
    image = stream_image(values, lanes=2, bits=8, data_width=32)  # 16-bit words, one beat
    words = [int.from_bytes(image[n * 4:n * 4 + 4], "little") for n in range(len(image) // 4)]
    # (y, x, g) order; group 1 holds channel 2 and a zero lane
    assert len(words) == 2 * 2 * 2
    assert words[0] == (values[0, 0, 0] & 0xFF) | (values[1, 0, 0] & 0xFF) << 8
    assert words[1] == values[2, 0, 0] & 0xFF
    assert words[2] == (values[0, 0, 1] & 0xFF) | (values[1, 0, 1] & 0xFF) << 8


def test_refusals():
    layer = layer_config(in_channels=2, out_channels=3, kernel=3, stride=1, padding=1,
                         height=6, width=6, lanes=4)
    weight = np.zeros((3, 2, 3, 3), dtype=np.int64)
    bias = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="shifts"):
        BandStream(layer, weight, bias, [0, 1], stream_bits=12, band_rows=2)
    with pytest.raises(ValueError, match="shifts"):
        BandStream(layer, weight, bias, [0, 1, 16], stream_bits=12, band_rows=2)
    with pytest.raises(ValueError, match="stream_bits"):
        BandStream(layer, weight, bias, [0, 1, 2], stream_bits=1, band_rows=2)
