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
from test_bandlayer import ReadMemory, drive
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


@pytest.mark.parametrize("shape,lanes,bits,band_rows,steps", [
    ((10, 9, 8), 4, 12, 3, 3),      # G = 3, three time steps: membranes kept per band
    pytest.param((5, 7, 70), 8, 20, 2, 2, marks=pytest.mark.slow),   # rows of two beats
])
def test_stream_lif_band_by_band_over_axi(shape, lanes, bits, band_rows, steps):
    """BandStreamLIF: the LIF's spike maps of a stream, one per time step, band by band, ==
    quant.intops.lif_step step by step; every other byte untouched."""
    from hw.bandstream import BandStreamLIF, stream_lif_reference
    from hw.rowreader import map_image

    channels, height, width = shape
    rng = np.random.default_rng(sum(shape) + steps)
    streams = rng.integers(-(1 << (bits - 2)), 1 << (bits - 2), size=(steps, *shape))
    thresholds = [int(t) for t in rng.integers(1, 1 << (bits - 3), size=channels)]
    want = stream_lif_reference(streams, thresholds)
    assert 0.05 < want.mean() < 0.95
    dut = BandStreamLIF(channels=channels, height=height, width=width, lanes=lanes,
                        stream_bits=bits, thresholds=thresholds, band_rows=band_rows)
    size = len(stream_image(streams[0], lanes, bits))
    out_size = len(map_image(want[0]))
    stream_at = [0x1000 + t * size for t in range(steps)]
    out_at = [0x1000 + steps * size + 0x40 + t * out_size for t in range(steps)]
    garbage = random.Random(11)
    memory = bytearray(garbage.getrandbits(8) for _ in range(out_at[-1] + out_size + 0x100))
    for t in range(steps):
        memory[stream_at[t]:stream_at[t] + size] = stream_image(streams[t], lanes, bits)
    before = bytes(memory)
    drive(dut, memory, [dict(band=band, first=t == 0, stream_base=stream_at[t],
                             output_base=out_at[t])
                        for band in range(len(dut.bands)) for t in range(steps)], seed=steps)
    for t in range(steps):
        assert bytes(memory[out_at[t]:out_at[t] + out_size]) == map_image(want[t]), \
            f"time step {t}: the spike map in memory differs from lif_step's"
    assert memory[:out_at[0]] == before[:out_at[0]]
    assert memory[out_at[-1] + out_size:] == before[out_at[-1] + out_size:]


# 8 s: make test-all (make test keeps each unit's own tests; the chain of test_bandchain.py
# covers units run one after the other)
@pytest.mark.slow
def test_a_residual_block_through_external_memory():
    """A MetaFormer-style block with every map and stream in one external memory, each unit run
    band by band over two time steps (layer by layer, every band and step of a unit before the
    next unit): the stream ``x`` begun by a conv of the input spikes (BandStream), ``s =
    LIF(x)`` (BandStreamLIF), ``m = LIF(conv1(s))`` (BandLayer), ``x += conv2(m) << shift``
    (BandStream); the final stream and every map ``==`` the chain of the references."""
    from hw.bandlayer import BandLayer, band_layer_reference
    from hw.bandstream import BandStreamLIF, band_stream_reference, stream_lif_reference
    from hw.rowreader import map_image
    from sim.cases_accumulator import random_layer
    from sim.cases_addressing import spike_map
    from test_bandlayer import drive

    C, H, W, lanes, bits, T, rows = 6, 8, 8, 4, 16, 2, 3
    rng = np.random.default_rng(2026)
    geometry = dict(in_channels=C, out_channels=C, kernel=3, stride=1, padding=1, height=H,
                    width=W, lanes=lanes)
    layer = layer_config(**geometry)
    layers = [random_layer(rng, "conv", cin=C, cout=C, kernel=3) for _ in range(3)]
    shifts = [[int(s) for s in rng.integers(0, 3, size=C)] for _ in range(2)]
    inputs = np.stack([spike_map(rng, (C, H, W), 0.3) for _ in range(T)])

    # the references, time step by time step
    zero = np.zeros((C, H, W), dtype=np.int64)
    x0 = np.stack([band_stream_reference(zero, inputs[t], *layers[0], shifts[0], stride=1,
                                         padding=1, add=False, bits=bits) for t in range(T)])
    lif_thr = [int(v) for v in np.quantile(x0.reshape(T, C, -1).transpose(1, 0, 2)
                                           .reshape(C, -1), 0.6, axis=1).clip(1)]
    s = stream_lif_reference(x0, lif_thr)
    from quant.intops import conv2d_spikes
    x1 = conv2d_spikes(s[0], *layers[1], stride=1, padding=1)
    thr = [int(v) for v in np.quantile(x1.reshape(C, -1), 0.6, axis=1).clip(1)]
    m = band_layer_reference(s, *layers[1], thr, stride=1, padding=1)
    x2 = np.stack([band_stream_reference(x0[t], m[t], *layers[2], shifts[1], stride=1,
                                         padding=1, add=True, bits=bits) for t in range(T)])
    assert 0.05 < s.mean() < 0.95 and 0.05 < m.mean() < 0.95

    # memory: input maps, streams x (one per step), maps s and m (one per step)
    map_size = len(map_image(inputs[0]))
    stream_size = len(stream_image(zero, lanes, bits))
    at = {}
    address = 0x1000
    for name, size in (("in", map_size), ("x", stream_size), ("s", map_size), ("m", map_size)):
        at[name] = []
        for _ in range(T):
            at[name].append(address)
            address += -(-size // 64) * 64
    garbage = random.Random(12)
    memory = bytearray(garbage.getrandbits(8) for _ in range(address + 0x100))
    for t in range(T):
        memory[at["in"][t]:at["in"][t] + map_size] = map_image(inputs[t])

    def band_major(unit, bands, ports):
        return [ports(band, t) for band in range(bands) for t in range(T)]

    begin = BandStream(layer, *layers[0], shifts[0], stream_bits=bits, band_rows=rows)
    drive(begin, memory, band_major(begin, len(begin.bands), lambda b, t: dict(
        band=b, add=0, input_base=at["in"][t], stream_base=at["x"][t])), seed=1)
    lif = BandStreamLIF(channels=C, height=H, width=W, lanes=lanes, stream_bits=bits,
                        thresholds=lif_thr, band_rows=rows)
    drive(lif, memory, band_major(lif, len(lif.bands), lambda b, t: dict(
        band=b, first=t == 0, stream_base=at["x"][t], output_base=at["s"][t])), seed=2)
    conv = BandLayer(layer, *layers[1], thr, band_rows=rows)
    drive(conv, memory, band_major(conv, len(conv.bands), lambda b, t: dict(
        band=b, first=t == 0, input_base=at["s"][t], output_base=at["m"][t])), seed=3)
    add = BandStream(layer, *layers[2], shifts[1], stream_bits=bits, band_rows=rows)
    drive(add, memory, band_major(add, len(add.bands), lambda b, t: dict(
        band=b, add=1, input_base=at["m"][t], stream_base=at["x"][t])), seed=4)

    for t in range(T):
        assert memory[at["s"][t]:at["s"][t] + map_size] == map_image(s[t]), f"s at t = {t}"
        assert memory[at["m"][t]:at["m"][t] + map_size] == map_image(m[t]), f"m at t = {t}"
        assert memory[at["x"][t]:at["x"][t] + stream_size] == stream_image(x2[t], lanes, bits), \
            f"the stream at t = {t}"


def test_stream_lif_reference_by_hand():
    """Two steps of one neuron with threshold 4: 3 stays below (membrane 3 >> 1 = 1), then
    1 + 3 = 4 fires; a second neuron at 5 fires at once."""
    from hw.bandstream import stream_lif_reference

    streams = np.array([[[[3]], [[5]]], [[[3]], [[0]]]])      # [T=2, C=2, 1, 1]
    assert stream_lif_reference(streams, [4, 5]).ravel().tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("unit", ["stream", "lif"])
def test_stream_units_ports_and_error_responses(unit):
    """Port widths; a read or write answered SLVERR sets ``error`` until the next start."""
    from hw.bandstream import BandStreamLIF

    case = stream_case("3x3")
    if unit == "stream":
        dut = BandStream(case.layer, case.weight, case.bias, case.shifts, stream_bits=case.bits,
                         band_rows=case.band_rows)
        ports = dict(band=0, add=1, input_base=case.in_at[0], stream_base=case.stream_at)
    else:
        dut = BandStreamLIF(channels=6, height=9, width=8, lanes=4, stream_bits=12,
                            thresholds=[9] * 6, band_rows=3)
        ports = dict(band=0, first=1, stream_base=case.stream_at, output_base=case.in_at[0])
    widths = {name: len(getattr(dut, name)) for name in ("start", "busy", "error", "band",
                                                         "stream_base", "m_axi_araddr")}
    assert widths == {"start": 1, "busy": 1, "error": 1, "band": 2, "stream_base": 32,
                      "m_axi_araddr": 32}
    for side in ("read", "write"):
        memory = bytearray(case.memory)
        errors = drive(dut, memory, [ports, ports], stray=False,
                       bad_read=1 if side == "read" else None,
                       bad_write=1 if side == "write" else None)
        assert errors == [1, 0], f"{unit}, {side} error: {errors}"
