"""hw.planes: the depthwise sums' bit planes as spike rows, and SepConv unfused on spikes end to end.

* The arithmetic: a spike 1x1 conv over :func:`plane_frame` with :func:`plane_weights` ``==``
  the integer pointwise conv of the sums (and ``quant.intops.pointwise_by_planes``).
* :class:`PlaneWriter` after :class:`hw.depthwise.DepthwiseEngine`: every word ``==`` the
  frame's rows, in order, under random pauses; the overflow flag.
* :class:`hw.sepconv.UnfusedSepConv` (DepthwiseEngine -> PlaneWriter -> ProgEngine, a 1x1 conv
  over the planes, additions only): on random layers ``==`` the direct integer convolutions, and
  on the trained demo (``make test-all``) ``pwconv2``'s sums ``==`` the unfused integer model's.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.depthwise import DepthwiseEngine, depthwise_reference
from hw.planes import PlaneWriter, plane_frame, plane_weights
from hw.sepconv import UnfusedSepConv, sepconv_reference
from quant.intops import conv2d_spikes, pointwise_by_planes
from sim.sepconv import simulate_unfused

SEED = 20261207


def test_planes_carry_the_pointwise_conv_exactly():
    rng = np.random.default_rng(SEED)
    planes = 9
    sums = rng.integers(-(1 << planes) + 1, 1 << planes, (6, 5, 7))
    sums[0, 0, :3] = [(1 << planes) - 1, -(1 << planes) + 1, 0]      # the range's ends
    weight = rng.integers(-128, 128, (4, 6))
    bias = rng.integers(-1000, 1000, 4)
    frame = plane_frame(sums, planes)
    assert frame.shape == (6 * 2 * planes, 5, 7) and set(np.unique(frame)) <= {0, 1}
    # channel (c * 2 + s) * P + p: bit p of |sum| where the sign is s
    assert frame[(0 * 2 + 0) * planes + 8, 0, 0] == 1 and frame[(0 * 2 + 1) * planes, 0, 1] == 1
    assert not frame[:2 * planes, 0, 2].any()      # channel 0 sums 0 there: no bit
    direct = np.einsum("oc,chw->ohw", weight, sums) + bias[:, None, None]
    got = conv2d_spikes(frame, plane_weights(weight, planes), bias)
    assert np.array_equal(got, direct)
    assert np.array_equal(got, pointwise_by_planes(sums, weight[:, :, None, None], bias, planes,
                                                   "sign-magnitude"))
    assert np.array_equal(plane_weights(weight[:, :, None, None], planes),
                          plane_weights(weight, planes))
    with pytest.raises(ValueError, match="more than 9 planes"):
        plane_frame(sums * 2, planes)
    with pytest.raises(ValueError, match="weight"):
        plane_weights(np.zeros((2, 3, 3, 3), int), planes)


def chain(spikes, weight, bias, planes, *, lanes=16, ready=1.0, valid=1.0, seed=0):
    """Run a depthwise engine into a plane writer on one map; return the writer's words, last
    flags and error flag."""
    return chain_runs([spikes], weight, bias, planes, lanes=lanes, ready=ready, valid=valid,
                      seed=seed)[0]


def chain_runs(runs, weight, bias, planes, *, lanes=16, ready=1.0, valid=1.0, seed=0):
    """Run maps one after another through one build of a depthwise engine and a plane writer
    (sized for the largest); return, per run, the writer's words, last flags and error flag."""
    channels = max(s.shape[0] for s in runs)
    height = max(s.shape[1] for s in runs)
    width = max(s.shape[2] for s in runs)
    dw = DepthwiseEngine(weight, bias, lanes=lanes, max_height=height, max_width=width)
    rows, cols = dw.geometry
    writer = PlaneWriter(sum_bits=dw.acc_bits, planes=planes, rows=rows, cols=cols,
                         max_channels=channels, max_height=height, max_width=width)
    top = Module()
    top.submodules.dw = dw
    top.submodules.writer = writer
    wiring.connect(top, dw.o, writer.i)
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for spikes in runs:
            size = dict(zip(("channels", "height", "width"), spikes.shape))
            ctx.set(dw.config, size)
            ctx.set(writer.config, size)
            ctx.set(dw.start, 1)
            ctx.set(writer.start, 1)
            await ctx.tick()
            ctx.set(dw.start, 0)
            ctx.set(writer.start, 0)
            inputs = [sum(int(b) << x for x, b in enumerate(row)) for ch in spikes for row in ch]
            words, lasts = [], []
            for _ in range(40 * spikes.size * 2 * planes + 5000):
                offer = bool(inputs) and rng.random() < valid
                ctx.set(dw.i.valid, offer)
                if offer:
                    ctx.set(dw.i.payload.bits, inputs[0])
                take = rng.random() < ready
                ctx.set(writer.o.ready, take)
                if offer and ctx.get(dw.i.ready):
                    inputs.pop(0)
                if take and ctx.get(writer.o.valid):
                    words.append(ctx.get(writer.o.payload.bits))
                    lasts.append(ctx.get(writer.o.payload.last))
                await ctx.tick()
                if lasts and lasts[-1]:
                    break
            ctx.set(writer.o.ready, 0)
            ctx.set(dw.i.valid, 0)
            await ctx.tick()
            results.append({"words": words, "lasts": lasts, "error": ctx.get(writer.error),
                            "busy": ctx.get(writer.busy) or ctx.get(dw.busy)})

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def frame_words(sums, planes):
    return [sum(int(b) << x for x, b in enumerate(row)) for ch in plane_frame(sums, planes)
            for row in ch]


@pytest.mark.parametrize("shape, kernel, lanes, pauses", [
    ((3, 6, 7), 7, 16, False),      # 2 x 8 tiles, a map narrower than a tile
    ((4, 5, 10), 3, 16, True),      # 4 x 4 tiles, three tile columns, random pauses
    ((2, 3, 4), 1, 2, True),        # 2 x 1 tiles
])
def test_writer_words_are_the_frames_rows(shape, kernel, lanes, pauses):
    rng = np.random.default_rng(SEED + sum(shape))
    spikes = (rng.random(shape) < 0.4).astype(np.uint8)
    weight = rng.integers(-20, 20, (shape[0], kernel, kernel))
    bias = rng.integers(-50, 50, shape[0])
    sums = depthwise_reference(spikes, weight, bias)
    planes = max(1, int(np.abs(sums).max()).bit_length())
    run = chain(spikes, weight, bias, planes, lanes=lanes, ready=0.5 if pauses else 1.0,
                valid=0.6 if pauses else 1.0, seed=len(shape))
    want = frame_words(sums, planes)
    assert run["words"] == want
    assert run["lasts"] == [0] * (len(want) - 1) + [1]
    assert not run["error"] and not run["busy"]


def test_smaller_maps_after_larger_ones_on_one_build():
    """A full 4x16 map, then a 4x8 one, then 3x5, through one build: the words of a smaller map
    carry nothing of the larger one's pixels past its width or height."""
    rng = np.random.default_rng(SEED + 5)
    weight = rng.integers(-20, 20, (3, 3, 3))
    bias = rng.integers(-50, 50, 3)
    runs = [np.ones((3, 4, 16), np.uint8), (rng.random((2, 4, 8)) < 0.5).astype(np.uint8),
            (rng.random((3, 3, 5)) < 0.5).astype(np.uint8)]
    planes = 8                                      # |sum| <= 9 * 20 + 50 < 256
    for spikes, run in zip(runs, chain_runs(runs, weight, bias, planes)):
        sums = depthwise_reference(spikes, weight[:len(spikes)], bias[:len(spikes)])
        assert run["words"] == frame_words(sums, planes)
        assert not run["error"] and not run["busy"]


def test_a_sum_too_large_for_the_planes_is_flagged():
    spikes = np.ones((1, 3, 3), np.uint8)
    weight = np.full((1, 3, 3), 9)                  # the middle sums 81: 7 bits
    sums = depthwise_reference(spikes, weight)
    assert int(sums.max()) == 81
    assert chain(spikes, weight, None, 7)["error"] == 0
    assert chain(spikes, weight, None, 6)["error"] == 1


def test_sepconv_unfused_on_random_maps():
    """Random layers, including a sum at the planes' limit: ``UnfusedSepConv`` ``==``
    :func:`sepconv_reference` ``==`` the direct integer convolutions."""
    rng = np.random.default_rng(SEED + 11)
    channels, cout, side = 5, 10, 6            # 10 outputs on 8 lanes: two groups
    spikes = (rng.random((channels, side, side)) < 0.3).astype(np.uint8)
    dw_weight = rng.integers(-128, 128, (channels, 7, 7))
    dw_bias = rng.integers(-500, 500, channels)
    pw_weight = rng.integers(-128, 128, (cout, channels))
    pw_bias = rng.integers(-5000, 5000, cout)
    sums = depthwise_reference(spikes, dw_weight, dw_bias)
    planes = int(np.abs(sums).max()).bit_length()          # the largest sum uses the top plane
    want = np.einsum("oc,chw->ohw", pw_weight, sums) + pw_bias[:, None, None]
    assert np.array_equal(sepconv_reference(spikes, dw_weight, dw_bias, pw_weight, pw_bias,
                                            planes), want)
    unit = UnfusedSepConv(dw_weight, dw_bias, pw_weight, pw_bias, planes=planes, height=side,
                          width=side, lanes=8)
    got, cycles, error, (writer_end, busy_until) = simulate_unfused(unit, spikes)
    assert np.array_equal(got, want) and not error
    # busy until the plane writer's last word has gone into the pointwise engine, not after
    assert 0 < writer_end <= busy_until <= writer_end + 1 < cycles
    with pytest.raises(ValueError, match="input channels"):
        UnfusedSepConv(dw_weight, dw_bias, pw_weight[:, :4], pw_bias, planes=planes,
                       height=side, width=side)


@pytest.mark.slow
def test_sepconv_unfused_on_spikes_end_to_end():
    """``ConvBlock1_2.0``'s SepConv unfused, from ``Conv.lif2``'s spikes to ``pwconv2``'s sums,
    on the trained demo's first held-out digit: depthwise engine -> plane writer -> ProgEngine
    (a 1x1 conv over the 2 * 11 planes of 32 channels, additions only) ``==`` the unfused
    integer model."""
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
    dw_layer = unfused.layers["ConvBlock1_2.0.Conv.dwconv"]
    pw_layer = unfused.layers["ConvBlock1_2.0.Conv.pwconv2"]
    sums = np.asarray(trace.accumulators["ConvBlock1_2.0.Conv.dwconv"])[0, 0]
    want = np.asarray(trace.accumulators["ConvBlock1_2.0.Conv.pwconv2"])[0, 0]
    spikes = np.asarray(trace.spikes["ConvBlock1_2.0.Conv.lif2"])[0, 0].reshape(sums.shape)
    planes = max(abs(int(dw_layer.acc_low.min())), int(dw_layer.acc_high.max())).bit_length()
    assert planes == 11
    unit = UnfusedSepConv(dw_layer.weight, dw_layer.bias, pw_layer.weight, pw_layer.bias,
                          planes=planes, height=sums.shape[1], width=sums.shape[2])
    got, _, error, _ = simulate_unfused(unit, spikes)
    assert np.array_equal(got, want) and not error


@pytest.mark.verilator
def test_verilog_is_lint_clean_and_multiplies_nothing(tmp_path):
    """The whole unfused SepConv (three units and the weight ROM): Verilator -Wall clean, and
    no multiplier cell in its netlist."""
    from amaranth.back import verilog

    from rtl_gen.lint import lint
    from test_no_multipliers import multipliers

    rng = np.random.default_rng(SEED)

    def unit():
        return UnfusedSepConv(rng.integers(-128, 128, (8, 7, 7)), rng.integers(-99, 99, 8),
                              rng.integers(-128, 128, (4, 8)), rng.integers(-99, 99, 4),
                              planes=11, height=8, width=8)

    source = tmp_path / "sepconv.v"
    source.write_text(verilog.convert(unit(), name="sepconv"))
    result = lint([source], "sepconv")
    assert result.ok, result.messages
    assert multipliers(unit()) == 0
