"""hw.bandstream.BandStream: a conv's sums begun into, then added into, a residual stream in a
random AXI memory, band by band, gives the stream ``==`` ``band_stream_reference``
(hw.residual.stream_update of quant.intops.conv2d_spikes, element by element, wrapped to the
stream's bits), every other byte untouched; the on-chip buffer and bank hold one band.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bandstream import BandStream, band_stream_reference, stream_image
from hw.progengine_config import layer_config
from hw.rowreader import map_image
from sim.cases_accumulator import random_layer
from sim.cases_addressing import spike_map
from subsets import fast_few
from test_bandlayer import ReadMemory
from test_rowwriter import WriteMemory

# name -> (cin, cout, kernel, stride, padding, height, width), lanes, band_rows, stream_bits
CASES = {
    "3x3": ((5, 6, 3, 1, 1, 9, 8), 4, 3, 12),       # G = 2, four-beat words? 4 * 12 = 48 bits
    "7x7s2": ((3, 5, 7, 2, 3, 12, 10), 4, 2, 20),   # 80-bit words: two beats
}


@pytest.mark.parametrize("name", fast_few(sorted(CASES), {"3x3"}))
def test_begin_then_add_band_by_band_over_axi(name):
    spec, lanes, band_rows, bits = CASES[name]
    cin, cout, kernel, stride, padding, height, width = spec
    rng = np.random.default_rng(sum(spec))
    layer = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                         padding=padding, height=height, width=width, lanes=lanes)
    weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel)
    shifts = [int(s) for s in rng.integers(0, 4, size=cout)]
    maps = [spike_map(rng, (cin, height, width), 0.3) for _ in range(2)]
    dut = BandStream(layer, weight, bias, shifts, stream_bits=bits, band_rows=band_rows)
    assert dut.memory_bits["stream buffer"] < layer.beats * lanes * bits
    zero = np.zeros((cout, layer.out_height, layer.out_width), dtype=np.int64)
    begun = band_stream_reference(zero, maps[0], weight, bias, shifts, stride=stride,
                                  padding=padding, add=False, bits=bits)
    added = band_stream_reference(begun, maps[1], weight, bias, shifts, stride=stride,
                                  padding=padding, add=True, bits=bits)
    assert (begun != added).any()
    size = len(stream_image(zero, lanes, bits))
    in_at = [0x1000, 0x1000 + len(map_image(maps[0]))]
    stream_at = 0x2000
    garbage = random.Random(3)
    memory = bytearray(garbage.getrandbits(8) for _ in range(stream_at + size + 0x100))
    for at, spikes in zip(in_at, maps):
        memory[at:at + len(map_image(spikes))] = map_image(spikes)
    before = bytes(memory)
    sim_rng = random.Random(len(spec))
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
                ctx.set(dut.input_base, in_at[step])
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
    for label, snapshot, want in (("begin", snapshots[0], begun), ("add", snapshots[1], added)):
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
