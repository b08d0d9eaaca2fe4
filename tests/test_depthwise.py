"""hw.depthwise.DepthwiseEngine: a same-size depthwise conv on spikes, the lanes on one spike's taps.

Every output beat is checked with ``==`` against :func:`depthwise_reference` (the integer
``depthwise_conv2d_spikes``), under random input pauses and output back-pressure; with neither,
the cycles are exactly :func:`depthwise_cycles`. The Verilog runs the same checks on Verilator
and on Icarus (``sim/tb/depthwise.py``). Also: the beats' order and positions, runs of
different sizes one after another on one build (the banks left clean), the weights' extremes,
the demo's own unfused depthwise layers against the integer model's trace, lint, and no
multiplier.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.depthwise import (DepthwiseEngine, depthwise_cycles, depthwise_geometry,
                          depthwise_reference, output_tiles, spike_additions, spike_cycles)
from sim import toolchain
from subsets import every_nth

SEED = 20261207


def rows_of(spikes):
    """The input words of a ``[channels, H, W]`` map, channel by channel, row by row."""
    return [sum(int(bit) << x for x, bit in enumerate(row)) for channel in spikes
            for row in channel]


def run_layers(dut, runs, *, valid=1.0, ready=1.0, seed=0, bases=None):
    """Run the maps ``runs`` (``[channels, H, W]`` each) on ``dut`` one after another. Return,
    per run, the sums ``[channels, H, W]`` and the cycles from the one after ``start`` to the
    one that takes the last beat. Checks the beats' order (channel by channel, tiles row by
    row, ``last`` on the final one only) and that lanes outside the map give 0."""
    rows, cols = dut.geometry
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for index, spikes in enumerate(runs):
            channels, height, width = spikes.shape
            extra = {} if bases is None else {"base": bases[index]}
            ctx.set(dut.config, dut.config_value(channels, height, width, **extra))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            words, beats, cycles = rows_of(spikes), [], 0
            while not beats or not beats[-1][-1]:
                cycles += 1
                assert cycles < 50 * (height * width + 1) * (channels + 1) + 2000, "stalls"
                offer = bool(words) and rng.random() < valid
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(dut.i.payload.bits, words[0])
                take = rng.random() < ready
                ctx.set(dut.o.ready, take)
                if offer and ctx.get(dut.i.ready):
                    words.pop(0)
                if take and ctx.get(dut.o.valid):
                    p = ctx.get(dut.o.payload)
                    beats.append((p.channel, p.row, p.col, [int(s) for s in p.sums], p.last))
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            await ctx.tick()
            assert not ctx.get(dut.busy) and not words
            tiles_y, tiles_x = -(-height // rows), -(-width // cols)
            assert [b[:3] for b in beats] == [(c, a, b) for c in range(channels)
                                              for a in range(tiles_y) for b in range(tiles_x)]
            assert [b[4] for b in beats] == [0] * (len(beats) - 1) + [1]
            full = np.zeros((channels, tiles_y * rows, tiles_x * cols), np.int64)
            for c, a, b, sums, _ in beats:
                full[c, a * rows:(a + 1) * rows, b * cols:(b + 1) * cols] = \
                    np.array(sums).reshape(rows, cols)
            assert not full[:, height:].any() and not full[:, :, width:].any(), \
                "a lane outside the map gives a non-zero sum"
            results.append((full[:, :height, :width], cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def random_layer(channels, kernel, seed, bias=True):
    rng = np.random.default_rng(seed)
    weight = rng.integers(-128, 128, (channels, kernel, kernel))
    return weight, (rng.integers(-2000, 2000, channels) if bias else None)


def check_layer(spikes, weight, bias, lanes, *, valid=1.0, ready=1.0, seed=0):
    channels, height, width = spikes.shape
    dut = DepthwiseEngine(weight, bias, lanes=lanes, max_height=height, max_width=width)
    ((sums, cycles),) = run_layers(dut, [spikes], valid=valid, ready=ready, seed=seed)
    assert np.array_equal(sums, depthwise_reference(spikes, weight, bias))
    if valid == ready == 1.0:
        assert cycles == depthwise_cycles(spikes, weight.shape[-1], lanes)


CASES = {
    # name: channels, height, width, kernel, lanes, firing
    "7x7 on 16x16, 16 lanes (2 x 8 banks)": (4, 16, 16, 7, 16, 0.15),
    "3x3 on 16 lanes (4 x 4 banks)": (5, 6, 7, 3, 16, 0.3),
    "5x5 on 8 lanes (1 x 8 banks), a wide map": (3, 5, 20, 5, 8, 0.3),
    "7x7 on a 4x4 map, every spike clipped": (6, 4, 4, 7, 16, 0.5),
    "7x7 on one row": (3, 1, 5, 7, 16, 0.5),
    "1x1 on 2 lanes: the read-out is slower than the adds": (4, 3, 3, 1, 2, 0.5),
    "7x7 on 32 lanes (4 x 8 banks) at 1 % firing": (4, 12, 10, 7, 32, 0.01),
    "7x7 at 60 % firing": (3, 9, 11, 7, 16, 0.6),
}


# make test: every other case (all in make test-all)
@pytest.mark.parametrize("name", every_nth(sorted(CASES), 2))
def test_sums_and_cycles(name):
    channels, height, width, kernel, lanes, firing = CASES[name]
    rng = np.random.default_rng(SEED + len(name))
    spikes = (rng.random((channels, height, width)) < firing).astype(np.uint8)
    weight, bias = random_layer(channels, kernel, SEED + channels)
    check_layer(spikes, weight, bias, lanes)


@pytest.mark.parametrize("name", ["7x7 on 16x16, 16 lanes (2 x 8 banks)",
                                  "3x3 on 16 lanes (4 x 4 banks)",
                                  "1x1 on 2 lanes: the read-out is slower than the adds"])
def test_sums_under_random_pauses(name):
    channels, height, width, kernel, lanes, firing = CASES[name]
    rng = np.random.default_rng(SEED + 7 * len(name))
    spikes = (rng.random((channels, height, width)) < firing).astype(np.uint8)
    weight, bias = random_layer(channels, kernel, SEED + 1)
    check_layer(spikes, weight, bias, lanes, valid=0.6, ready=0.4, seed=len(name))


def test_full_and_empty_maps_at_the_weights_extremes():
    """Every spike set, then none: the accumulators reach the range the build sized them for,
    and the empty map gives the bias alone (the read-out left the banks clear)."""
    channels, side, kernel = 3, 9, 7
    weight = np.full((channels, kernel, kernel), 127)
    weight[1] = -128
    weight[2, ::2] = -128
    bias = np.array([32_000, -32_000, 5])
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=side, max_width=side)
    full = np.ones((channels, side, side), np.uint8)
    empty = np.zeros_like(full)
    (got_full, cycles), (got_empty, _) = run_layers(dut, [full, empty])
    assert np.array_equal(got_full, depthwise_reference(full, weight, bias))
    assert got_full[0].max() == 49 * 127 + 32_000 and got_full[1].min() == 49 * -128 - 32_000
    assert np.array_equal(got_empty, np.broadcast_to(bias[:, None, None], empty.shape))
    assert cycles == depthwise_cycles(full, kernel, 16)


def test_accumulators_hold_the_most_negative_sum_exactly():
    """Weights whose negative taps sum to -129 beside a positive one: the build's accumulators
    (sized from the weights) must hold -129, which this map makes at the middle pixel."""
    weight = np.zeros((1, 3, 3), int)
    weight[0, 0] = [-64, -64, -1]
    weight[0, 1, 0] = 1
    spikes = np.zeros((1, 3, 3), np.uint8)
    spikes[0, 0] = 1                                   # the -64, -64, -1 taps, not the +1
    dut = DepthwiseEngine(weight, lanes=4, max_height=3, max_width=3)
    assert dut.acc_bits == 9
    ((sums, _),) = run_layers(dut, [spikes])
    assert sums[0, 1, 1] == -129
    assert np.array_equal(sums, depthwise_reference(spikes, weight))


def test_sizes_change_on_one_build():
    """A 12x10 build runs small maps, the full map with every channel, then one channel of
    2x3: nothing of one run (spikes, sums, the last map's size) leaks into the next. The 4x7
    map's taps reach row 4 and column 7, just outside it, where the next map has pixels: they
    must not be written."""
    weight, bias = random_layer(5, 5, SEED + 3)
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=12, max_width=10)
    rng = np.random.default_rng(SEED + 4)
    runs = [np.ones((3, 4, 7), np.uint8),
            (rng.random((3, 5, 7)) < 0.4).astype(np.uint8),
            (rng.random((5, 12, 10)) < 0.3).astype(np.uint8),
            (rng.random((1, 2, 3)) < 0.6).astype(np.uint8)]
    for spikes, (sums, cycles) in zip(runs, run_layers(dut, runs)):
        part = slice(0, len(spikes))
        assert np.array_equal(sums, depthwise_reference(spikes, weight[part], bias[part]))
        assert cycles == depthwise_cycles(spikes, 5, 16)


def test_several_layers_behind_a_channel_base():
    """The shared network's build: three layers' weights one after another, each run from its
    first channel (``base``): the sums use that layer's kernels and biases, not its
    neighbours', and the cycles are a lone layer's."""
    sizes = [(3, 9, 9), (4, 5, 6), (2, 9, 9)]
    layers = [random_layer(c, 7, SEED + 20 + n) for n, (c, _, _) in enumerate(sizes)]
    weight = np.concatenate([w for w, _ in layers])
    bias = np.concatenate([b for _, b in layers])
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=9, max_width=9, channel_base=True)
    rng = np.random.default_rng(SEED + 23)
    runs = [(rng.random(size) < 0.3).astype(np.uint8) for size in sizes]
    bases = [0, 3, 7]
    order = [2, 0, 1]
    got = run_layers(dut, [runs[n] for n in order], bases=[bases[n] for n in order])
    for n, (sums, cycles) in zip(order, got):
        assert np.array_equal(sums, depthwise_reference(runs[n], *layers[n])), n
        assert cycles == depthwise_cycles(runs[n], 7, 16)
    with pytest.raises(ValueError, match="channels"):
        dut.config_value(3, 9, 9, base=7)


@pytest.fixture(scope="module")
def demo_unfused():
    """The trained demo quantized unfused, and its integer trace on the first held-out digit."""
    import torch

    from quant.intmodel import IntegerModel
    from quant.quantize import quantize_model
    from sim.e2e import demo_model, select_inputs

    torch.set_num_threads(1)
    model, _ = demo_model(1, None)
    unfused = quantize_model(model, 8, 8, fuse_sepconv=False)
    integer = IntegerModel(unfused)
    inputs = select_inputs(unfused, 1, None, 0)
    _, trace = integer.forward(integer.quantize_input(inputs.images), trace=True)
    return unfused, trace


@pytest.mark.parametrize("block", [
    pytest.param("ConvBlock1_1.0", marks=pytest.mark.slow),      # 16 channels at 16x16
    "ConvBlock1_2.0",                                             # 32 at 8x8
    pytest.param("ConvBlock2_1.0", marks=pytest.mark.slow),      # 64 at 4x4
])
def test_the_demos_unfused_depthwise_layers(demo_unfused, block):
    """A depthwise layer of the trained demo unfused, on the first held-out digit: the unit's
    sums ``==`` the integer model's, in :func:`depthwise_cycles` (``make test`` runs the 8x8
    one, ``make test-all`` all three)."""
    unfused, trace = demo_unfused
    name = f"{block}.Conv.dwconv"
    layer = unfused.layers[name]
    sums = np.asarray(trace.accumulators[name])[0, 0]
    spikes = np.asarray(trace.spikes[name.replace("dwconv", "lif2")])[0, 0].reshape(sums.shape)
    assert spikes.any() and (layer.stride, layer.padding) == (1, 3), name
    dut = DepthwiseEngine(np.asarray(layer.weight), np.asarray(layer.bias), lanes=16,
                          max_height=sums.shape[1], max_width=sums.shape[2])
    ((got, cycles),) = run_layers(dut, [spikes])
    assert np.array_equal(got, sums), name
    assert cycles == depthwise_cycles(spikes, 7, 16), name


def test_references_and_refusals():
    spikes = np.zeros((2, 16, 16), np.uint8)
    spikes[0, 0, 0] = 1          # a corner: 4 x 4 taps inside the map
    spikes[1, 8, 8] = 1          # the middle: all 49
    spikes[1, 1, 14] = 1         # 5 rows x 5 columns
    assert spike_additions(spikes, 7).tolist() == [16, 49 + 25]
    bottom = np.zeros((1, 16, 16), np.uint8)
    bottom[0, 15, 15] = bottom[0, 14, 2] = 1       # 4 x 4, and 5 rows x 6 columns
    assert spike_additions(bottom, 7).tolist() == [16 + 30]
    assert depthwise_cycles(spikes, 7) == depthwise_cycles(spikes, 7, 16)    # 16 lanes default
    # kernel rows inside a 16-row map, two a cycle: 4 -> 2, 5 -> 3, 7 -> 4; on 4 rows: 2
    assert [spike_cycles(y, 16, 7, 16) for y in (0, 1, 8, 15)] == [2, 3, 4, 2]
    assert [spike_cycles(y, 4, 7, 16) for y in range(4)] == [2, 2, 2, 2]
    assert spike_cycles(5, 16, 3, 16) == 1 and spike_cycles(5, 16, 7, 8) == 7
    assert depthwise_geometry(7, 16) == (2, 8) and depthwise_geometry(3, 16) == (4, 4)
    assert depthwise_geometry(1, 2) == (2, 1) and output_tiles(16, 16, 7, 16) == 16
    assert output_tiles(5, 9, 3, 8) == 3 * 3
    # channel 0: rows 0 (2 cycles) + 15 empty; channel 1: row 1 (3), row 8 (4) + 14 empty;
    # the read-out of channel 1 starts 5 cycles after its last tap (when the add lands), 16 tiles
    assert depthwise_cycles(spikes, 7, 16) == 1 + (2 + 15) + (3 + 4 + 14) + 5 + 16
    weight = np.arange(2 * 9).reshape(2, 3, 3) - 9
    assert np.array_equal(depthwise_reference(spikes, weight),
                          depthwise_reference(spikes, weight[:, None]))
    with pytest.raises(ValueError, match="K odd"):
        DepthwiseEngine(np.zeros((2, 4, 4), int), max_height=4, max_width=4)
    with pytest.raises(ValueError, match="integers"):
        DepthwiseEngine(np.zeros((2, 3, 3)), max_height=4, max_width=4)
    with pytest.raises(ValueError, match="bias"):
        DepthwiseEngine(weight, np.zeros(3, int), max_height=4, max_width=4)
    with pytest.raises(ValueError, match="power of two >= 4"):
        DepthwiseEngine(weight, lanes=2, max_height=4, max_width=4)
    with pytest.raises(ValueError, match="power of two"):
        DepthwiseEngine(weight, lanes=12, max_height=4, max_width=4)
    dut = DepthwiseEngine(weight, lanes=4, max_height=4, max_width=5)
    assert dut.geometry == (1, 4) and dut.acc_bits == 7     # sums in [-45, 36]
    with pytest.raises(ValueError, match="channels"):
        dut.config_value(3, 4, 5)
    with pytest.raises(ValueError, match="height"):
        dut.config_value(1, 5, 5)


@pytest.mark.verilator
def test_verilog_is_lint_clean_and_multiplies_nothing(tmp_path):
    """Verilator -Wall on the emitted Verilog (rtl_gen.lint's waivers), and no ``*`` in it."""
    import re

    from amaranth.back import verilog

    from rtl_gen.lint import lint

    weight, bias = random_layer(64, 7, SEED)
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=16, max_width=16)
    text = verilog.convert(dut, name="depthwise")
    source = tmp_path / "depthwise.v"
    source.write_text(text)
    result = lint([source], "depthwise")
    assert result.ok, result.messages
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    code = re.sub(r"\(\*.*?\*\)", "", code)          # attributes
    assert not re.search(r"[\w)\]]\s*\*\s*[\w(]", code)


def run_on_hdl(tmp_path, simulator=None, patterns=False):
    """The engine's Verilog on an HDL simulator through cocotb (``sim/tb/depthwise.py``): a
    7x7 build for 12x10 maps on 16 lanes runs a full map, a random one and a small one."""
    from amaranth.back import verilog

    from sim.tb.depthwise import write_case

    weight, bias = random_layer(5, 7, SEED + 9)
    rng = np.random.default_rng(SEED + 10)
    maps = [np.ones((3, 4, 7), np.uint8), (rng.random((5, 12, 10)) < 0.2).astype(np.uint8),
            (rng.random((2, 3, 5)) < 0.5).astype(np.uint8)]
    case = tmp_path / "depthwise.npz"
    write_case(case, weight=weight, bias=bias, lanes=16, max_height=12, max_width=10, maps=maps)
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=12, max_width=10)
    design = toolchain.build(verilog.convert(dut, name="depthwise", emit_src=False), "depthwise",
                             simulator=simulator)
    toolchain.run(design, "sim.tb.depthwise", name="depthwise",
                  extra_env={"DW_CASE": str(case), "DW_PATTERNS": "1" if patterns else "0"})


@pytest.mark.verilator
def test_verilog_on_verilator(tmp_path):
    run_on_hdl(tmp_path, patterns=True)


@pytest.mark.icarus
@pytest.mark.slow
@pytest.mark.skipif(not toolchain.icarus_available(), reason=toolchain.ICARUS_MISSING)
def test_verilog_on_icarus(tmp_path):
    run_on_hdl(tmp_path, simulator="icarus", patterns=True)
