"""Stem convolution unit in Amaranth's simulator against quant.intops.stem_conv."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.stem import StemConv
from quant import intops
from sim.streams import PATTERNS, collect, monitor


def simulate_stem(dut: StemConv, codes, receive_pattern=(1,), stalls=None):
    """Load ``codes [Cin, H, W]``, run the stem once; return values ``[Cout, Ho, Wo]`` and the
    cycles from the clock edge that takes ``start`` to the one that takes the last beat. The
    output is monitored: a stalled beat must hold (``sim.streams.monitor``); ``stalls``, a
    dict, gets the number of stalled output cycles."""
    out = {}
    begin = codes.size  # one load cycle per code, then the cycle that raises start

    async def bench(ctx):
        for address, code in enumerate(codes.reshape(-1)):
            ctx.set(dut.load_address, address)
            ctx.set(dut.load_data, int(code))
            ctx.set(dut.load_enable, 1)
            await ctx.tick()
        ctx.set(dut.load_enable, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.busy), "not busy after start"
        beats = await collect(ctx, dut.o, dut.positions * dut.groups, receive_pattern)
        assert not ctx.get(dut.busy), "busy after the last beat"
        out["beats"] = beats

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    output = monitor(sim, dut.o)
    sim.add_testbench(bench)
    sim.run()
    out["cycles"] = output.cycles[-1] - begin
    if stalls is not None:
        stalls["o"] = output.stalls
    cout = len(out["beats"][0].values) * dut.groups
    values = np.zeros((cout, dut.positions), dtype=np.int64)
    for index, beat in enumerate(out["beats"]):
        assert int(beat.position) * dut.groups + int(beat.group) == index, f"order at {index}"
        assert int(beat.last) == (index == len(out["beats"]) - 1), f"last at {index}"
        for lane in range(dut.lanes):
            values[int(beat.group) * dut.lanes + lane, int(beat.position)] = int(beat.values[lane])
    return values.reshape(cout, dut.out_height, dut.out_width), out["cycles"]


def check(seed, *, cin, cout, kernel, stride, padding, lanes, size, pixel_bits=8,
          receive="always", width=None):
    rng = np.random.default_rng(seed)
    top = (1 << pixel_bits) - 1
    weight = rng.integers(-127, 128, size=(cout, cin, kernel, kernel))
    bias = rng.integers(-5000, 5000, size=cout)
    pad = rng.integers(0, top + 1, size=cin)
    width = size if width is None else width
    codes = rng.integers(0, top + 1, size=(cin, size, width))
    codes[:, 0, :] = top  # an edge value on every channel
    dut = StemConv(weight=weight, bias=bias, height=size, width=width, stride=stride,
                   padding=padding, pad_value=pad, pixel_bits=pixel_bits, lanes=lanes)
    stalls = {}
    got, cycles = simulate_stem(dut, codes, PATTERNS[receive], stalls)
    assert not got[cout:].any(), f"seed {seed}: padding lanes are not 0"
    got = got[:cout]
    want = intops.stem_conv(codes, weight, bias, stride, padding, pad)
    for (o, y, x) in zip(*np.nonzero(got != want)):
        raise AssertionError(f"seed {seed}: stem output channel {o} at ({y}, {x}): "
                             f"expected {want[o, y, x]}, got {got[o, y, x]}")
    if receive == "always":
        assert cycles == dut.cycles, f"seed {seed}: {cycles} cycles, the model says {dut.cycles}"
    else:
        assert cycles >= dut.cycles, f"seed {seed}: {cycles} cycles, below the model's {dut.cycles}"
    return cycles, dut.cycles, stalls["o"]


@pytest.mark.parametrize("receive", ["always", "sparse"])
def test_stem_7x7_stride2_pad3(receive):
    check(11, cin=1, cout=8, kernel=7, stride=2, padding=3, lanes=4, size=8, receive=receive)


def test_stem_odd_sizes_one_lane():
    check(12, cin=3, cout=5, kernel=3, stride=1, padding=1, lanes=1, size=5, pixel_bits=5)


def test_stem_lanes_not_dividing_channels():
    check(13, cin=2, cout=7, kernel=3, stride=2, padding=1, lanes=3, size=7)


@pytest.mark.parametrize("receive", sorted(PATTERNS))
def test_stem_wide_image_1x1_kernel(receive):
    # Height != width, a 1x1 kernel on one channel, one output group: a word every cycle, so a
    # receiver that refuses stalls the whole pipeline.
    cycles, model, stalls = check(14, cin=1, cout=4, kernel=1, stride=2, padding=1, lanes=4,
                                  size=3, width=6, receive=receive)
    assert (cycles > model) == (receive != "always"), f"{cycles} cycles, model {model}"
    # Refused beats stall, and each stalled beat was checked to hold.
    assert (stalls > 0) == (receive != "always"), f"{stalls} stalled output cycles"


def test_stem_single_output_column():
    # Out width 1 and out height 1 stay at their last values; padding only on some taps.
    check(15, cin=2, cout=3, kernel=3, stride=1, padding=1, lanes=2, size=1, width=1)
    # More lanes than output channels: lanes 2 and 3 have no weights (and no multipliers).
    check(16, cin=1, cout=2, kernel=3, stride=3, padding=0, lanes=4, size=4, width=3)


def test_stem_refuses_bad_pad_code():
    with pytest.raises(ValueError, match="pad_value"):
        StemConv(weight=np.ones((2, 1, 3, 3), dtype=np.int64), bias=[0, 0], height=4, width=4,
                 pad_value=[256], pixel_bits=8)


@pytest.mark.parametrize("cin, cout, kernel, stride, padding, lanes, size, width", [
    pytest.param(1, 8, 7, 2, 3, 16, 12, None, id="demo-7x7-8-channels-on-16-lanes"),
    pytest.param(3, 4, 3, 1, 1, 8, 5, 7, id="rgb-3x3-odd-kernel-padded-row"),
    pytest.param(2, 3, 4, 2, 2, 6, 6, 5, id="even-kernel-6-lanes"),
    pytest.param(1, 1, 2, 1, 0, 2, 3, 3, id="two-rows-two-lanes"),
])
def test_stem_row_split(cin, cout, kernel, stride, padding, lanes, size, width):
    """Output channels in at most half the lanes: the halves take the kernel's two row halves
    at once (``kh = ceil(k / 2)`` rows a half), the output adds them; the result equals
    quant.intops.stem_conv and the run takes ``positions * Cin * kh * k + 7`` cycles."""
    from hw.stem import row_split

    assert row_split(cout, lanes, kernel) == 2
    cycles, model, _ = check(20 + kernel, cin=cin, cout=cout, kernel=kernel, stride=stride,
                             padding=padding, lanes=lanes, size=size, width=width)
    out_h = (size + 2 * padding - kernel) // stride + 1
    out_w = ((width or size) + 2 * padding - kernel) // stride + 1
    assert cycles == model == out_h * out_w * cin * -(-kernel // 2) * kernel + 7


def test_row_split_only_when_half_the_lanes_hold_the_channels():
    from hw.stem import row_split

    assert [row_split(c, 16, 7) for c in (8, 9, 16)] == [2, 1, 1]
    assert row_split(1, 2, 1) == 1     # a 1x1 kernel has one row
