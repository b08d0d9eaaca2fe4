"""hw.depthwise.DepthwiseEngine: a same-size depthwise conv on spikes, one channel a lane.

Every output beat is checked with ``==`` against :func:`depthwise_reference` (the integer
``depthwise_conv2d_spikes``), under random input pauses and output back-pressure; with neither,
the cycles are exactly :func:`depthwise_cycles`. Also: groups one after another on one build
(accumulators and spike buffers left clean), a map smaller than the build's, the demo's own
unfused depthwise layers against the integer model's trace, lint, and no multiplier.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.depthwise import DepthwiseEngine, depthwise_cycles, depthwise_reference, lane_additions

SEED = 20261207


def rows_of(spikes):
    """The input words of a ``[channels, H, W]`` map, channel by channel, row by row."""
    return [sum(int(bit) << x for x, bit in enumerate(row)) for channel in spikes
            for row in channel]


def run_groups(dut, runs, *, valid=1.0, ready=1.0, seed=0):
    """Run ``runs`` (``(group, spikes)`` each, ``spikes`` the group's ``[channels, H, W]``) on
    ``dut`` one after another. Return, per run, the sums ``[channels, H, W]``, the cycles from
    the one after ``start`` to the one that takes the last beat, and the lanes' outputs past
    ``channels``."""
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for group, spikes in runs:
            channels, height, width = spikes.shape
            ctx.set(dut.config, dut.config_value(group, channels, height, width))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            words, beats, lasts, cycles = rows_of(spikes), [], [], 0
            while True:
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
                    payload = ctx.get(dut.o.payload)
                    beats.append([int(s) for s in payload.sums])
                    lasts.append(int(payload.last))
                await ctx.tick()
                if lasts and lasts[-1]:
                    break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            await ctx.tick()
            assert not ctx.get(dut.busy) and not words
            assert lasts == [0] * (len(lasts) - 1) + [1]
            beats = np.array(beats).reshape(height, width, -1).transpose(2, 0, 1)
            results.append((beats[:channels], cycles, beats[channels:]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def random_layer(channels, kernel, seed, bias=True):
    rng = np.random.default_rng(seed)
    weight = rng.integers(-128, 128, (channels, kernel, kernel))
    return weight, (rng.integers(-2000, 2000, channels) if bias else None)


def check_layer(spikes, weight, bias, lanes, *, valid=1.0, ready=1.0, seed=0, build=None):
    channels, height, width = spikes.shape
    dut = DepthwiseEngine(weight, bias, lanes=lanes,
                          max_height=build[0] if build else height,
                          max_width=build[1] if build else width)
    runs = [(g, spikes[g * lanes:(g + 1) * lanes]) for g in range(dut.groups)]
    expected = depthwise_reference(spikes, weight, bias)
    for (group, part), (sums, cycles, idle) in zip(
            runs, run_groups(dut, runs, valid=valid, ready=ready, seed=seed)):
        assert np.array_equal(sums, expected[group * lanes:group * lanes + len(part)]), group
        assert not idle.any(), "a lane past the group's channels gives non-zero sums"
        if valid == ready == 1.0:
            assert cycles == depthwise_cycles(part, weight.shape[-1]), group


CASES = {
    # name: channels, height, width, kernel, lanes, firing
    "7x7 on 16x16, one group of 16": (16, 16, 16, 7, 16, 0.15),
    "3x3, two groups, the last one partial": (7, 6, 9, 3, 4, 0.3),
    "5x5, one row, kernel wider than the map": (3, 1, 5, 5, 4, 0.5),
    "7x7 on a 4x4 map, every tap clipped": (6, 4, 4, 7, 2, 0.5),
    "1x1 kernel": (5, 5, 3, 1, 4, 0.4),
    "7x7 at 1 % firing": (4, 12, 10, 7, 4, 0.01),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sums_and_cycles(name):
    channels, height, width, kernel, lanes, firing = CASES[name]
    rng = np.random.default_rng(SEED + len(name))
    spikes = (rng.random((channels, height, width)) < firing).astype(np.uint8)
    weight, bias = random_layer(channels, kernel, SEED + channels)
    check_layer(spikes, weight, bias, lanes)


@pytest.mark.parametrize("name", ["7x7 on 16x16, one group of 16",
                                  "3x3, two groups, the last one partial"])
def test_sums_under_random_pauses(name):
    channels, height, width, kernel, lanes, firing = CASES[name]
    rng = np.random.default_rng(SEED + 7 * len(name))
    spikes = (rng.random((channels, height, width)) < firing).astype(np.uint8)
    weight, bias = random_layer(channels, kernel, SEED + 1)
    check_layer(spikes, weight, bias, lanes, valid=0.6, ready=0.5, seed=len(name))


def test_full_and_empty_maps_at_the_weights_extremes():
    """Every spike set, then none: the accumulators reach the range the build sized them for,
    and the empty map gives the bias alone (the read-out left the accumulators clear)."""
    channels, side, kernel = 3, 9, 7
    weight = np.full((channels, kernel, kernel), 127)
    weight[1] = -128
    weight[2, ::2] = -128
    bias = np.array([32_000, -32_000, 5])
    dut = DepthwiseEngine(weight, bias, lanes=4, max_height=side, max_width=side)
    full = np.ones((channels, side, side), np.uint8)
    empty = np.zeros_like(full)
    (got_full, cycles, _), (got_empty, _, _) = run_groups(dut, [(0, full), (0, empty)])
    assert np.array_equal(got_full, depthwise_reference(full, weight, bias))
    assert got_full[0].max() == 49 * 127 + 32_000 and got_full[1].min() == 49 * -128 - 32_000
    assert np.array_equal(got_empty, np.broadcast_to(bias[:, None, None], empty.shape))
    assert cycles == depthwise_cycles(full, kernel)


def test_groups_and_map_sizes_change_on_one_build():
    """A 12x10 build runs a small map, the full map, then another group's small map: nothing
    of one run (spikes, sums, the last map's size) leaks into the next."""
    weight, bias = random_layer(8, 5, SEED + 3)
    dut = DepthwiseEngine(weight, bias, lanes=4, max_height=12, max_width=10)
    rng = np.random.default_rng(SEED + 4)
    runs = [(1, (rng.random((4, 5, 7)) < 0.4).astype(np.uint8)),
            (0, (rng.random((4, 12, 10)) < 0.3).astype(np.uint8)),
            (1, (rng.random((3, 3, 2)) < 0.6).astype(np.uint8))]
    for (group, spikes), (sums, cycles, _) in zip(runs, run_groups(dut, runs)):
        part = slice(group * 4, group * 4 + len(spikes))
        assert np.array_equal(sums, depthwise_reference(spikes, weight[part], bias[part]))
        assert cycles == depthwise_cycles(spikes, 5)


def test_the_demos_unfused_depthwise_layer():
    """``ConvBlock1_2.0.Conv.dwconv`` of the trained demo unfused (32 channels at 8x8, two
    groups) on the first held-out digit: the unit's sums ``==`` the integer model's."""
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
    name = "ConvBlock1_2.0.Conv.dwconv"
    layer = unfused.layers[name]
    sums = np.asarray(trace.accumulators[name])[0, 0]
    spikes = np.asarray(trace.spikes[name.replace("dwconv", "lif2")])[0, 0].reshape(sums.shape)
    assert spikes.any() and (layer.stride, layer.padding) == (1, 3)
    weight = np.asarray(layer.weight)
    dut = DepthwiseEngine(weight, np.asarray(layer.bias), lanes=16, max_height=8, max_width=8)
    runs = [(g, spikes[16 * g:16 * (g + 1)]) for g in range(2)]
    got = np.concatenate([r[0] for r in run_groups(dut, runs)])
    assert np.array_equal(got, sums)


def test_references_and_refusals():
    spikes = np.zeros((2, 16, 16), np.uint8)
    spikes[0, 0, 0] = 1          # a corner: 4 x 4 taps inside the map
    spikes[1, 8, 8] = 1          # the middle: all 49
    spikes[1, 1, 14] = 1         # 5 rows x 5 columns
    assert lane_additions(spikes, 7).tolist() == [16, 49 + 25]
    # lane 0: rows in by cycle 16, +1, 16 additions; lane 1: by 32, +1, 74; then 3 + 256
    assert depthwise_cycles(spikes, 7) == max(33, 16 + 1 + 16, 32 + 1 + 74) + 3 + 256
    weight = np.arange(2 * 9).reshape(2, 3, 3) - 9
    assert np.array_equal(depthwise_reference(spikes, weight),
                          depthwise_reference(spikes, weight[:, None]))
    with pytest.raises(ValueError, match="K odd"):
        DepthwiseEngine(np.zeros((2, 4, 4), int), max_height=4, max_width=4)
    with pytest.raises(ValueError, match="integers"):
        DepthwiseEngine(np.zeros((2, 3, 3)), max_height=4, max_width=4)
    with pytest.raises(ValueError, match="bias"):
        DepthwiseEngine(weight, np.zeros(3, int), max_height=4, max_width=4)
    dut = DepthwiseEngine(weight, lanes=1, max_height=4, max_width=5)
    assert dut.groups == 2 and dut.acc_bits == 7     # sums in [-45, 36]
    with pytest.raises(ValueError, match="group"):
        dut.config_value(2, 1, 4, 5)
    with pytest.raises(ValueError, match="height"):
        dut.config_value(0, 1, 5, 5)


@pytest.mark.verilator
def test_verilog_is_lint_clean_and_multiplies_nothing(tmp_path):
    """Verilator -Wall on the emitted Verilog (rtl_gen.lint's waivers), and no ``*`` in it."""
    import re

    from amaranth.back import verilog

    from rtl_gen.lint import lint

    weight, bias = random_layer(32, 7, SEED)
    dut = DepthwiseEngine(weight, bias, lanes=16, max_height=16, max_width=16)
    text = verilog.convert(dut, name="depthwise")
    source = tmp_path / "depthwise.v"
    source.write_text(text)
    result = lint([source], "depthwise")
    assert result.ok, result.messages
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    code = re.sub(r"\(\*.*?\*\)", "", code)          # attributes
    assert not re.search(r"[\w)\]]\s*\*\s*[\w(]", code)
