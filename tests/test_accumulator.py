"""Synapse engine (AC accumulator) in Amaranth's simulator against quant.intops' layer functions."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.accumulator import SynapseEngine
from hw.packing import layer_sops
from sim.cases_accumulator import (engine_reference, engine_words, random_layer,
                                   reference_beats, spike_shape)
from sim.cases_addressing import FIRING_RATES, spike_map
from sim.streams import PATTERNS, collect, monitor, run_stream, send
from subsets import every_nth


def simulate_engine(dut: SynapseEngine, frames, *, send_pattern=(1,), receive_pattern=(1,),
                    stalls=None):
    """Run spike maps through the engine; return the read-out values of each frame. The output
    is monitored: a stalled beat must hold (``sim.streams.monitor``); ``stalls``, a dict, gets
    the number of stalled output cycles."""
    layout = dut.i.payload.shape()
    payloads = []
    for spikes in frames:
        words, last = engine_words(dut.kind, spikes)
        payloads += [layout.const({"bits": w, "last": f}) for w, f in zip(words, last)]
    received = []

    async def sender(ctx):
        await send(ctx, dut.i, payloads, send_pattern)

    async def receiver(ctx):
        for _ in frames:
            beats = await collect(ctx, dut.o, dut.bank_depth, receive_pattern)
            received.append(beats)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    output = monitor(sim, dut.o)
    sim.add_process(sender)
    sim.add_testbench(receiver)
    sim.run()
    if stalls is not None:
        stalls["o"] = output.stalls
    out = []
    for beats in received:
        for index, beat in enumerate(beats):
            assert int(beat.last) == (index == dut.bank_depth - 1), f"last flag at beat {index}"
            assert int(beat.position) * dut.groups + int(beat.group) == index, \
                f"position/group at beat {index}"
        out.append([[int(beat.values[lane]) for lane in range(dut.lanes)] for beat in beats])
    return out


def check_frames(dut, weight, bias, frames, got, label):
    """Compare every frame's read-out with quant.intops, naming the first difference."""
    for number, (spikes, values) in enumerate(zip(frames, got)):
        want = reference_beats(dut, engine_reference(dut, weight, bias, spikes))
        for index, (w, g) in enumerate(zip(want, values)):
            if w != g:
                lane = next(k for k in range(dut.lanes) if w[k] != g[k])
                raise AssertionError(
                    f"{label}: frame {number}, bank word {index} (position "
                    f"{index // dut.groups}, channel {index % dut.groups * dut.lanes + lane}): "
                    f"expected {w[lane]}, got {g[lane]}")


def run_case(seed, kind, *, cin, cout, lanes, height, width=1, kernel=1, stride=1, padding=0,
             rates=FIRING_RATES, send="always", receive="always"):
    rng = np.random.default_rng(seed)
    weight, bias = random_layer(rng, kind, cin=cin, cout=cout, kernel=kernel)
    dut = SynapseEngine(kind=kind, weight=weight, bias=bias, lanes=lanes, height=height,
                        width=width, stride=stride, padding=padding)
    frames = [spike_map(rng, spike_shape(dut), rate) for rate in rates]
    stalls = {}
    got = simulate_engine(dut, frames, send_pattern=PATTERNS[send],
                          receive_pattern=PATTERNS[receive], stalls=stalls)
    check_frames(dut, weight, bias, frames, got, f"{kind} seed {seed}")
    if receive != "always":
        assert stalls["o"] > 0, "backpressure never stalled an output beat: the hold check saw none"


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_linear_firing_rates(lanes):
    run_case(10 + lanes, "linear", cin=11, cout=7, lanes=lanes, height=5)


@pytest.mark.parametrize("send, receive", [("pause", "always"), ("sparse", "pause"),
                                           ("always", "sparse")])
def test_linear_idle_and_backpressure(send, receive):
    run_case(20, "linear", cin=9, cout=5, lanes=2, height=4, rates=(0.5, 0.1, 1.0),
             send=send, receive=receive)


def test_one_channel_one_lane():
    run_case(21, "linear", cin=1, cout=1, lanes=1, height=3, rates=(0.0, 1.0, 0.5, 1.0))


def test_back_to_back_updates_of_one_word():
    """One output word, every spike hits it: each update reads the one written just before."""
    run_case(22, "linear", cin=16, cout=3, lanes=4, height=1, rates=(1.0, 1.0, 0.5))


# make test: 3x3 s1, 7x7 and 3x3 unpadded (all five in make test-all)
@pytest.mark.parametrize("kernel, stride, padding", every_nth(
    [(3, 1, 1), (3, 2, 1), (7, 1, 3), (2, 2, 0), (3, 1, 0)], 2))
def test_conv_geometries(kernel, stride, padding):
    run_case(30 + kernel + stride, "conv", cin=3, cout=5, lanes=2, height=7, width=5,
             kernel=kernel, stride=stride, padding=padding, rates=(0.1, 0.5, 1.0))


def test_conv_idle_and_backpressure_and_empty_map():
    run_case(40, "conv", cin=2, cout=3, lanes=3, height=5, width=6, kernel=3, stride=2,
             padding=1, rates=(0.0, 0.5, 0.01, 1.0), send="pause", receive="sparse")


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (7, 1, 3)])
def test_depthwise_geometries(kernel, stride, padding):
    run_case(50 + kernel + stride, "depthwise", cin=5, cout=5, lanes=2, height=7, width=6,
             kernel=kernel, stride=stride, padding=padding, rates=(0.0, 0.5, 1.0),
             send="pause", receive="pause")


def test_cycles_follow_spikes():
    """Accumulate cycles of a frame stay close to SOPs / lanes (fully busy at 100% firing)."""
    rng = np.random.default_rng(60)
    weight, bias = random_layer(rng, "conv", cin=4, cout=8, kernel=3)
    dut = SynapseEngine(kind="conv", weight=weight, bias=bias, lanes=4, height=6, width=6,
                        padding=1)
    spikes = np.ones(spike_shape(dut), dtype=np.uint8)
    sops = layer_sops("conv", weight.shape, spikes, stride=1, padding=1)
    layout = dut.i.payload.shape()
    words, last = engine_words("conv", spikes)
    # The first word waits until the bank holds the bias (the addressing unit would take it
    # during the init pass, and the accumulation would wait).
    run = run_stream(dut, [layout.const({"bits": w, "last": f}) for w, f in zip(words, last)],
                     dut.bank_depth, send_pattern=lambda cycle: cycle >= dut.init_cycles + 2)
    ideal = sops / dut.lanes
    # Every cycle issues one lane-group add: only the pipeline's fill and drain come on top.
    # (first_out: from the cycle the first word is taken to the first output beat, both counted.)
    assert run.first_out <= ideal + dut.latency + 2, (run.first_out, ideal)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, so never used
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lanes=0), ValueError, "lanes must be >= 1, not 0"),
    (dict(kind="pool"), ValueError, "kind must be one of"),
    (dict(accumulator_width=8), ValueError, "accumulator_width 8 is narrower than"),
    (dict(weight_width=4), ValueError, "weight_width 4 is narrower than the 8 bits"),
    (dict(height=1, width=1, padding=0), ValueError, "kernel 3 is larger than the padded image"),
    (dict(stride=3), ValueError, "stride must be a power of two"),
    (dict(stride=0), ValueError, "stride must be >= 1, not 0"),
    (dict(height=2.5), TypeError, "height must be an integer"),
    (dict(bias=np.zeros(3, dtype=np.int64)), ValueError, "bias has 3 entries"),
    (dict(weight=np.zeros((4, 2, 3, 3))), TypeError, "weight must be an integer array"),
])
def test_refuses_impossible_parameters(kwargs, error, message):
    weight = np.full((4, 2, 3, 3), -128, dtype=np.int64)
    params = dict(kind="conv", weight=weight, bias=np.zeros(4, dtype=np.int64), lanes=2,
                  height=5, width=5, padding=1)
    params.update(kwargs)
    with pytest.raises(error) as info:
        SynapseEngine(**params)
    assert message in str(info.value)
