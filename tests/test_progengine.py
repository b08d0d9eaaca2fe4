"""Programmable synapse engine (hw.progengine): several layers through one engine instance, in
Amaranth's simulator, every output beat ``==`` quant.intops.conv2d_spikes."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Fragment, Module, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.packing import accumulator_bound, layer_sops, signed_width
from hw.progengine import ProgEngine
from hw.progengine_config import (LayerConfig, engine_config_layout, fold_log_for, layer_config,
                                  max_x_log, pack_layer_biases, pack_layer_weights)
from quant.intops import conv2d_spikes
from sim.cases_accumulator import random_layer
from sim.cases_addressing import pack_words, spike_map
from sim.streams import PATTERNS, collect, monitor
from sim.streams import send as send_beats
from test_no_multipliers import multipliers

WEIGHT_WIDTH = 8


class Harness(Elaboratable):
    """The engine with an outside weight memory on its read port and a settable config."""

    def __init__(self, engine: ProgEngine, weight_words: list[int]):
        self.engine = engine
        self.weight_words = weight_words
        self.config = Signal(engine.config_layout)

    def elaborate(self, platform):
        m = Module()
        engine = self.engine
        m.submodules.engine = engine
        m.submodules.weights = weights = Memory(
            shape=unsigned(engine.lanes * engine.weight_width),
            depth=max(2, engine.weight_depth), init=self.weight_words)
        port = weights.read_port()
        m.d.comb += [
            port.addr.eq(engine.weight.addr),
            port.en.eq(engine.weight.en),
            engine.weight.data.eq(port.data),
            engine.config.eq(self.config),
        ]
        return m


def garbage(rng, bits: int) -> int:
    """A random ``bits``-bit word (any width)."""
    return int.from_bytes(rng.bytes(bits // 8 + 1), "little") & ((1 << bits) - 1)


class Network:
    """Layers ``(cin, cout, kernel, stride, padding, height, width[, fold_log])`` placed in one
    weight memory and one bias memory (with garbage words between layers), and the engine sized
    for them (column folding built when a layer folds)."""

    def __init__(self, seed, lanes, specs, input_buffer: int = 0, planes=None,
                 **engine_options):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.layers = []
        weight_words = []
        acc = WEIGHT_WIDTH
        planes = planes or {}   # {layer index: bit planes} (``cin`` then counts weight channels)
        for index, (cin, cout, kernel, stride, padding, height, width, *fold) in enumerate(specs):
            weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel,
                                        weight_bits=WEIGHT_WIDTH)
            count = planes.get(index, 1)
            # what the engine adds: input channel c * P + p takes weight channel c << p
            effective = np.repeat(weight, count, axis=1) << np.tile(
                np.arange(count), cin)[None, :, None, None]
            for b in (bias, np.zeros_like(bias)):
                acc = max(acc, signed_width(*accumulator_bound(effective, b)))
            # Garbage before each layer: a wrong base reads it.
            weight_words += [garbage(rng, lanes * WEIGHT_WIDTH) for _ in range(3)]
            cfg = layer_config(in_channels=cin * count, out_channels=cout, kernel=kernel,
                               stride=stride, padding=padding, height=height, width=width,
                               lanes=lanes, weight_base=len(weight_words),
                               fold_log=fold[0] if fold else 0, planes=count)
            weight_words += pack_layer_weights(weight, lanes=lanes, weight_width=WEIGHT_WIDTH,
                                               kernel_log=cfg.kernel_log,
                                               groups_log=cfg.groups_log, fold_log=cfg.fold_log,
                                               kernel_x_log=cfg.kernel_x_log, stride=stride)
            self.layers.append((cfg, effective, bias))
        self.acc = acc
        # Biases need the accumulator width, known once every layer is drawn.
        bias_words = []
        placed = []
        for cfg, weight, bias in self.layers:
            bias_words.append(garbage(rng, lanes * acc))
            cfg = dataclasses.replace(cfg, bias_base=len(bias_words))
            bias_words += pack_layer_biases(bias, lanes=lanes, accumulator_width=acc,
                                            groups=cfg.groups)
            placed.append((cfg, weight, bias))
        self.layers = placed
        self.weight_words = weight_words
        cfgs = [cfg for cfg, _, _ in placed]
        options = dict(bank_depth=max(c.bank_words_needed for c in cfgs))
        options.update(engine_options)   # e.g. bands=True with a bank of one band
        self.engine = ProgEngine(
            lanes=lanes, word_bits=max(c.width for c in cfgs),
            max_words=max(c.words_per_frame for c in cfgs),
            max_channels=max(c.in_channels for c in cfgs),
            max_side=max(max(c.height, c.width, c.out_height, c.out_width) for c in cfgs),
            max_padding=max(c.padding for c in cfgs),
            max_kernel_log=max(c.kernel_log for c in cfgs),
            max_stride_log=max(c.stride_log for c in cfgs),
            max_groups_log=max(c.groups_log for c in cfgs),
            weight_width=WEIGHT_WIDTH, accumulator_width=acc, weight_depth=len(weight_words),
            bias_words=bias_words, max_fold_log=max(c.fold_log for c in cfgs),
            input_buffer=input_buffer, max_planes=max(c.planes for c in cfgs), **options)
        self.harness = Harness(self.engine, weight_words)

    def frame(self, layer: int, rate: float):
        cfg = self.layers[layer][0]
        return layer, spike_map(self.rng, (cfg.in_channels, cfg.height, cfg.width), rate)


def simulate(net: Network, frames, *, send="always", receive="always", timing=None):
    """Run ``(layer, spikes)`` frames back to back; return each frame's output beats.

    The config changes only once the previous frame's last beat has been taken, and a frame
    whose layer differs from the previous one waits for it; a frame of the same layer is offered
    at once (it may enter while the previous one is read out). The output is monitored: a
    stalled beat must hold (``sim.streams.monitor``). ``timing``, a dict, gets the input and
    output :class:`sim.streams.Transfers` (per-beat cycles, stalled cycles)."""
    engine, harness = net.engine, net.harness
    layout = engine.i.payload.shape()
    payloads = []
    for layer, spikes in frames:
        words = pack_words(spikes.reshape(-1, spikes.shape[-1]))
        payloads.append([layout.const({"bits": w, "last": n == len(words) - 1})
                         for n, w in enumerate(words)])
    state = {"configured": -1}
    received = []

    async def sender(ctx):
        for number, (layer, _) in enumerate(frames):
            if number == 0 or frames[number - 1][0] != layer:
                while state["configured"] < number:
                    await ctx.tick()
            await send_beats(ctx, engine.i, payloads[number], PATTERNS[send])

    async def receiver(ctx):
        for number, (layer, _) in enumerate(frames):
            cfg = net.layers[layer][0]
            ctx.set(harness.config, engine.config_value(cfg))
            state["configured"] = number
            received.append(await collect(ctx, engine.o, cfg.beats, PATTERNS[receive]))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    inputs = monitor(sim, engine.i, name="i", hold=False)
    outputs = monitor(sim, engine.o)
    sim.add_process(sender)
    sim.add_testbench(receiver)
    sim.run()
    if timing is not None:
        timing.update(i=inputs, o=outputs)
    return received


def check(net: Network, frames, received, label):
    """Every beat: order, index, last and values ``==`` quant.intops.conv2d_spikes."""
    lanes = net.engine.lanes
    for number, ((layer, spikes), beats) in enumerate(zip(frames, received)):
        cfg, weight, bias = net.layers[layer]
        want = conv2d_spikes(spikes, weight, bias, stride=cfg.stride, padding=cfg.padding)
        padded = np.zeros((cfg.groups * lanes, cfg.out_height, cfg.out_width), dtype=np.int64)
        padded[:cfg.out_channels] = want
        index = 0
        for oy in range(cfg.out_height):
            for ox in range(cfg.out_width):
                for g in range(cfg.groups):
                    beat = beats[index]
                    where = f"{label}: frame {number} (layer {layer}), beat {index}"
                    got_place = (int(beat.oy), int(beat.ox), int(beat.group), int(beat.index),
                                 int(beat.last))
                    assert got_place == (oy, ox, g, index, int(index == cfg.beats - 1)), \
                        f"{where}: (oy, ox, group, index, last) {got_place}"
                    got = [int(beat.values[lane]) for lane in range(lanes)]
                    expect = [int(v) for v in padded[g * lanes:(g + 1) * lanes, oy, ox]]
                    assert got == expect, f"{where} at ({oy}, {ox}) group {g}: expected " \
                                          f"{expect}, got {got}"
                    index += 1
        assert index == len(beats)


def run(net, frames, label, **kwargs):
    timing = {}
    received = simulate(net, frames, timing=timing, **kwargs)
    check(net, frames, received, label)
    if kwargs.get("receive", "always") != "always":
        assert timing["o"].stalls > 0, f"{label}: backpressure never stalled an output beat"
    return received


# (cin, cout, kernel, stride, padding, height, width)
LANES4_LAYERS = [
    (3, 6, 3, 1, 1, 5, 7),    # G = 2
    (2, 3, 1, 2, 0, 7, 5),    # 1x1, stride 2, G = 1
    (2, 9, 7, 1, 3, 6, 5),    # 7x7, G = 3 (groups_log 2)
    (5, 4, 3, 2, 2, 7, 6),    # padding 2, stride 2
    (3, 5, 3, 2, 0, 6, 7),    # no padding, stride 2
    (2, 5, 7, 2, 3, 9, 8),    # 7x7, stride 2
    (6, 7, 1, 1, 0, 5, 1),    # a linear layer: 5 tokens, one column
]


@pytest.fixture(scope="module")
def lanes4():
    return Network(1, 4, LANES4_LAYERS)


@pytest.mark.parametrize("send, receive", [
    ("pause", "sparse"),
    # make test's budget: the other two in make test-all
    pytest.param("always", "always", marks=pytest.mark.slow),
    pytest.param("sparse", "pause", marks=pytest.mark.slow),
])
def test_layers_back_to_back_lanes4(lanes4, send, receive):
    """Every layer at every firing rate, in a shuffled order, through one engine."""
    net = lanes4
    order = [(layer, rate) for layer in range(len(net.layers)) for rate in (0.0, 0.1, 0.5, 1.0)]
    shuffle = np.random.default_rng(len(send) + 7 * len(receive)).permutation(len(order))
    frames = [net.frame(*order[n]) for n in shuffle]
    run(net, frames, f"lanes 4 {send}/{receive}", send=send, receive=receive)


@pytest.mark.parametrize("buffer, send, receive", [
    (2, "always", "sparse"), (5, "pause", "always"),
    pytest.param(16, "sparse", "pause", marks=pytest.mark.slow),
])
def test_input_buffer_drops_empty_words_and_keeps_results(buffer, send, receive):
    """``input_buffer``: empty words are dropped on arrival; every layer at every firing rate
    (0.0: only the last word's beat) still gives conv2d_spikes exactly, under back-pressure on
    either side."""
    net = Network(1, 4, LANES4_LAYERS, input_buffer=buffer)
    order = [(layer, rate) for layer in range(len(net.layers)) for rate in (0.0, 0.05, 0.5)]
    shuffle = np.random.default_rng(buffer).permutation(len(order))
    frames = [net.frame(*order[n]) for n in shuffle]
    run(net, frames, f"input buffer {buffer} {send}/{receive}", send=send, receive=receive)


def test_lanes1_and_lanes16():
    net = Network(2, 1, [(2, 3, 3, 1, 1, 5, 4), (3, 2, 1, 1, 0, 4, 3), (1, 2, 3, 2, 3, 5, 5)])
    frames = [net.frame(0, 0.5), net.frame(1, 1.0), net.frame(2, 0.5), net.frame(0, 0.1)]
    run(net, frames, "lanes 1", send="pause", receive="always")
    net = Network(3, 16, [(2, 20, 3, 1, 1, 5, 6), (3, 5, 3, 2, 1, 7, 5)])
    frames = [net.frame(0, 0.5), net.frame(1, 1.0), net.frame(0, 0.0), net.frame(1, 0.1)]
    run(net, frames, "lanes 16", send="always", receive="pause")


def test_same_layer_twice_rezeroes_the_bank(lanes4):
    """The bank is zero again after a read-out: the same frame twice gives the same answer,
    also when the second frame enters while the first is read out (same config)."""
    net = lanes4
    _, first = net.frame(0, 1.0)
    _, second = net.frame(2, 0.5)
    frames = [(0, first), (0, first), (2, second), (2, second)]
    received = run(net, frames, "twice", send="always", receive="sparse")
    values = [[[int(v) for v in beat.values] for beat in beats] for beats in received]
    assert values[0] == values[1] and values[2] == values[3]


# Layers whose updates hit one bank word again 1, 2 or 3 cycles later (the read-modify-write
# pipeline's forwarding distances), and more.
HAZARD_LAYERS = [
    (6, 3, 1, 1, 0, 1, 1),    # 1x1 map, G = 1: every update hits the word of the one before
    (5, 6, 1, 1, 0, 1, 1),    # G = 2: distance 2
    (4, 10, 1, 1, 0, 1, 1),   # G = 3: distance 3
    (5, 3, 1, 1, 0, 1, 2),    # 1x2 map, G = 1: distance 2
    (5, 3, 1, 1, 0, 1, 3),    # 1x3 map: distance 3
    (4, 3, 1, 1, 0, 1, 4),    # 1x4 map: distance 4 (no forwarding)
    (3, 3, 3, 1, 1, 2, 2),    # 3x3 on 2x2: each spike hits all four words
    (3, 6, 3, 1, 1, 2, 2),    # the same with G = 2
    (4, 3, 3, 2, 1, 2, 3),    # stride 2 on 2x3
]


@pytest.mark.parametrize("send", ["always", "pause"])
def test_same_word_back_to_back(send):
    """Updates of one bank word 1, 2, 3 and 4 cycles apart (100% firing, and random rates with
    gaps between the spikes) are all exact."""
    net = Network(6, 4, HAZARD_LAYERS)
    frames = []
    for layer in range(len(HAZARD_LAYERS)):
        frames += [net.frame(layer, 1.0), net.frame(layer, 0.7), net.frame(layer, 1.0)]
    run(net, frames, f"hazards {send}", send=send, receive="always")


def test_cycles_follow_taps():
    """Accumulation of a fully firing frame costs one cycle per (spike, valid tap, group)."""
    net = Network(4, 4, [(4, 8, 3, 1, 1, 6, 6)])
    cfg, weight, _ = net.layers[0]
    engine = net.engine
    spikes = np.ones((cfg.in_channels, cfg.height, cfg.width), dtype=np.uint8)
    ideal = layer_sops("conv", (1,) + weight.shape[1:], spikes, stride=cfg.stride,
                       padding=cfg.padding) * cfg.groups
    timing = {}
    simulate(net, [(0, spikes)], timing=timing)
    start = timing["i"].cycles[0]  # the cycle the first word is taken
    # Both counted from the first word's cycle to the output beat's cycle, both included.
    first_output = timing["o"].cycles[0] - start + 1
    last_output = timing["o"].cycles[-1] - start + 1
    print(f"ideal {ideal} accumulate cycles; first output after {first_output}, "
          f"last after {last_output} (beats {cfg.beats})")
    assert first_output <= ideal + engine.latency + 2, (first_output, ideal)
    assert last_output - first_output <= cfg.beats + 2, (last_output, first_output, cfg.beats)


# Column folding: (cin, cout, kernel, stride, padding, height, width, fold_log) at 8 lanes,
# F = 2, 4 and 8.
FOLD_LAYERS = [
    (3, 2, 3, 1, 1, 5, 7, 2),    # 3x3, four columns a word of 2 lanes each
    (2, 4, 3, 1, 1, 6, 5, 1),    # two columns of 4 lanes
    (2, 2, 7, 2, 3, 9, 8, 2),    # 7x7 stride 2: a row of 7 + 3 * 2 taps
    (3, 2, 5, 1, 2, 4, 9, 2),    # out_width 9: the last word holds one column
    (3, 12, 3, 1, 1, 5, 5),      # not folded, G = 2, in the same engine
    (2, 1, 3, 2, 0, 7, 6, 2),    # no padding, stride 2
    (2, 2, 1, 1, 0, 4, 5, 2),    # 1x1 folded (a valid, if useless, layout)
    (4, 2, 3, 1, 1, 2, 2, 2),    # out_width 2 < F: every update of a row hits one word
    (3, 3, 3, 1, 1, 3, 6, 1),    # cout 3 of 4 lanes a column: a padded lane inside each column
    (2, 1, 3, 1, 1, 5, 11, 3),   # eight columns of one lane: F = lanes, every offset bit used
    (2, 1, 5, 2, 2, 9, 20, 3),   # 5x5 stride 2 at F = 8: a row of 5 + 7 * 2 taps
]


@pytest.mark.parametrize("send, receive", [
    ("pause", "sparse"),
    pytest.param("always", "always", marks=pytest.mark.slow),
])
def test_folded_layers(send, receive):
    """Column folding: every beat of folded layers (and an unfolded one between them) equals
    the reference convolution, its lanes past the output channels zero plus bias."""
    net = Network(11, 8, FOLD_LAYERS)
    assert net.engine.max_fold_log == 3
    order = [(layer, rate) for layer in range(len(net.layers)) for rate in (0.0, 0.2, 1.0)]
    shuffle = np.random.default_rng(len(send)).permutation(len(order))
    frames = [net.frame(*order[n]) for n in shuffle]
    run(net, frames, f"folded {send}/{receive}", send=send, receive=receive)


def test_folded_layers_with_an_input_buffer():
    """Column folding and the input buffer in one engine (each has signals of its own): every
    beat of the folded layers at sparse and dense firing, under backpressure."""
    net = Network(12, 8, FOLD_LAYERS, input_buffer=4)
    assert net.engine.max_fold_log == 3 and net.engine.input_buffer == 4
    order = [(layer, rate) for layer in range(len(net.layers)) for rate in (0.05, 0.5)]
    frames = [net.frame(*order[n]) for n in np.random.default_rng(5).permutation(len(order))]
    run(net, frames, "folded, input buffer 4", send="always", receive="sparse")


# Bit planes (SepConv unfused): 1x1 layers whose input channel c * P + p adds weight channel c's
# weights shifted left by p, beside ordinary layers on the same engine.
PLANE_LAYERS = [
    (3, 6, 1, 1, 0, 5, 7),    # 3 weight channels x 11 planes, G = 2
    (2, 9, 3, 1, 1, 6, 5),    # an ordinary 3x3 layer between them
    (4, 3, 1, 1, 0, 4, 4),    # 4 x 3 planes
]


@pytest.mark.parametrize("send, receive, buffer", [
    ("pause", "sparse", 0),
    ("always", "always", 4),
])
def test_bit_planes_shift_the_weights(send, receive, buffer):
    """``planes``: every beat of the plane layers equals the reference conv with the weights
    shifted by each input channel's plane, and the ordinary layer between them is unchanged,
    at sparse and full firing, with and without the input buffer."""
    net = Network(13, 4, PLANE_LAYERS, input_buffer=buffer, planes={0: 11, 2: 3})
    assert net.engine.config_layout.members.get("planes_m1") is not None
    order = [(layer, rate) for layer in range(len(net.layers)) for rate in (0.1, 1.0)]
    frames = [net.frame(*order[n]) for n in np.random.default_rng(buffer).permutation(len(order))]
    run(net, frames, f"planes {send}/{receive}", send=send, receive=receive)


def test_bit_planes_refuse_what_they_cannot_run():
    with pytest.raises(ValueError, match="planes 3 .bit planes. need a 1x1 conv"):
        layer_config(in_channels=6, out_channels=2, kernel=3, padding=1, height=4, width=4,
                     lanes=4, planes=3)
    with pytest.raises(ValueError, match="planes 4 must be >= 1 and divide in_channels 6"):
        layer_config(in_channels=6, out_channels=2, kernel=1, height=4, width=4, lanes=4,
                     planes=4)
    net = Network(14, 4, PLANE_LAYERS[1:2])       # built without planes
    cfg = layer_config(in_channels=6, out_channels=2, kernel=1, height=4, width=4, lanes=4,
                       planes=3)
    with pytest.raises(ValueError, match="layer planes = 3 must be <= 1"):
        net.engine.check_layer(cfg)


def test_fold_log_for_picks_the_most_columns_that_fit():
    """As many columns as ``lanes / F`` lanes still hold the output channels, up to the design
    point's; none for a layer whose input column reaches one output column (k <= stride)."""
    def pick(cout, kernel=3, stride=1, lanes=64, most=4):
        return fold_log_for(out_channels=cout, kernel=kernel, stride=stride, lanes=lanes,
                            max_fold_log=most)
    assert [pick(8), pick(9), pick(16), pick(33), pick(64), pick(65)] == [3, 2, 2, 0, 0, 0]
    assert [pick(2, most=2), pick(1, lanes=8, most=3), pick(1, lanes=8, most=4)] == [2, 3, 3]
    assert [pick(2, kernel=1), pick(2, kernel=2, stride=2), pick(2, kernel=3, stride=2)] == \
        [0, 0, 4]


def test_folded_packing_refuses_a_short_row():
    """A 3x3 stride-2 layer at F = 4 needs rows of 3 + 3 * 2 = 9 taps: 2**4 words, not 2**3."""
    weight = np.ones((2, 1, 3, 3), dtype=int)
    with pytest.raises(ValueError, match="kernel_x_log 3 must be at least 4"):
        pack_layer_weights(weight, lanes=8, weight_width=4, kernel_log=2, groups_log=0,
                           fold_log=2, kernel_x_log=3, stride=2)
    assert len(pack_layer_weights(weight, lanes=8, weight_width=4, kernel_log=2, groups_log=0,
                                  fold_log=2, kernel_x_log=4, stride=2)) == 1 << (2 + 4)


def test_folding_cuts_cycles():
    """A fully firing 7x7 layer of 2 output channels at 8 lanes: folding four columns a word
    takes its accumulation from 7 to 2 or 3 words a spike's row."""
    cycles = {}
    for fold_log in (0, 2):
        net = Network(4, 8, [(2, 2, 7, 1, 3, 8, 8, fold_log)])
        cfg = net.layers[0][0]
        spikes = np.ones((cfg.in_channels, cfg.height, cfg.width), dtype=np.uint8)
        timing = {}
        received = simulate(net, [(0, spikes)], timing=timing)
        check(net, [(0, spikes)], received, f"fold_log {fold_log}")
        cycles[fold_log] = timing["o"].cycles[0] - timing["i"].cycles[0]
    print(cycles)
    assert cycles[2] * 2 < cycles[0], cycles


def test_no_multiplier_cell(lanes4):
    assert multipliers(lanes4.engine) == 0


def test_pack_layer_weights_layout():
    """Decode every word independently: index bits -> (c, ky, kx, g), lanes -> channels."""
    rng = np.random.default_rng(5)
    cout, cin, k, lanes, width = 5, 2, 3, 2, 6
    weight = rng.integers(-32, 32, size=(cout, cin, k, k))
    kl, gl = 2, 2  # G = 3 -> 4 slots; k = 3 -> 4
    words = pack_layer_weights(weight, lanes=lanes, weight_width=width, kernel_log=kl,
                               groups_log=gl)
    assert len(words) == cin << (2 * kl + gl)
    for index, word in enumerate(words):
        c, ky, kx, g = index >> 6, (index >> 4) & 3, (index >> 2) & 3, index & 3
        for lane in range(lanes):
            raw = (word >> (lane * width)) & 63
            value = raw - 64 if raw >= 32 else raw
            o = g * lanes + lane
            expect = weight[o, c, ky, kx] if (o < cout and ky < k and kx < k) else 0
            assert value == expect, (index, lane)
    # A literal: two output channels of a 1x1 kernel in one word, lane 0 low.
    assert pack_layer_weights(np.array([[[[1]]], [[[-1]]]]), lanes=2, weight_width=4,
                              kernel_log=0, groups_log=0) == [0xF1]
    assert pack_layer_biases(np.array([3, -2, 1]), lanes=2, accumulator_width=8,
                             groups=2) == [0xFE03, 0x0001]


def test_layer_config_fields():
    cfg = layer_config(in_channels=3, out_channels=9, kernel=7, stride=2, padding=3, height=13,
                       width=10, lanes=4, weight_base=11, bias_base=2)
    assert cfg.fields == dict(height=13, width=10, kernel=7, kernel_log=3, stride_log=1,
                              padding=3, out_height=7, out_width=5, out_width_log=3, groups=3,
                              groups_log=2, weight_base=11, bias_base=2)
    assert cfg.weight_words_needed == 3 << 8
    assert cfg.bank_words_needed == 7 << 5
    layout = engine_config_layout(max_side=13, max_padding=3, max_kernel_log=3, max_stride_log=1,
                                  max_groups_log=2, weight_depth=2000, bias_depth=5)
    assert set(layout.members) == set(cfg.fields)
    layout = engine_config_layout(max_side=13, max_padding=3, max_kernel_log=3, max_stride_log=1,
                                  max_groups_log=2, weight_depth=2000, bias_depth=5,
                                  max_fold_log=2)
    assert set(layout.members) == set(cfg.fields) | {"fold_log", "kernel_x_log"}
    # 7x7 stride 2, four columns a word: a row of 7 + 3 * 2 = 13 taps -> 16 words.
    folded = layer_config(in_channels=3, out_channels=2, kernel=7, stride=2, padding=3,
                          height=13, width=10, lanes=8, fold_log=2)
    assert (folded.fold, folded.kernel_x_log, folded.groups) == (4, 4, 1)
    assert set(layout.members) == set(folded.fields)
    assert folded.weight_words_needed == 3 << (3 + 4)
    assert folded.bank_words_needed == 7 << 3
    # A layer made without the fold fields is unfolded: kernel_x_log follows kernel_log.
    plain = LayerConfig(**{k: v for k, v in dataclasses.asdict(cfg).items()
                           if k not in ("fold_log", "kernel_x_log")})
    assert plain == cfg and (plain.fold, plain.kernel_x_log) == (1, 3)
    # log2 of 2**kl + (F - 1) * 2**sl, rounded up: 1 + 1 = 2 -> 1; 8 + 3 * 2 = 14 -> 4.
    assert (max_x_log(0, 0, 1), max_x_log(3, 1, 2), max_x_log(3, 0, 0)) == (1, 4, 3)
    with pytest.raises(ValueError, match="fewer than out_channels 3"):
        layer_config(in_channels=3, out_channels=3, kernel=3, height=5, width=5, lanes=8,
                     fold_log=2)


ENGINE = dict(lanes=2, word_bits=8, max_words=16, max_channels=4, max_side=8, max_padding=1,
              max_kernel_log=2, max_stride_log=1, max_groups_log=1, weight_width=8,
              accumulator_width=16, weight_depth=64, bank_depth=64, bias_words=[0, 1])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lanes=0), ValueError, "lanes must be >= 1, not 0"),
    (dict(word_bits=0), ValueError, "word_bits must be >= 1, not 0"),
    (dict(max_padding=-1), ValueError, "max_padding must be >= 0, not -1"),
    (dict(max_kernel_log=5), ValueError, "max_kernel_log must be in [0, 4], not 5"),
    (dict(max_groups_log=1.5), TypeError, "max_groups_log must be an integer"),
    (dict(accumulator_width=7), ValueError, "accumulator_width must be >= 8, not 7"),
    (dict(bank_depth=0), ValueError, "bank_depth must be >= 1, not 0"),
    (dict(bias_words=[]), ValueError, "bias_words must hold at least one word"),
    (dict(bias_words=[1 << 32]), ValueError, "bias_words[0] must be in [0, 4294967295]"),
    (dict(bias_words=5), TypeError, "bias_words must be a list of integers"),
    (dict(bias_memory="lutram"), ValueError,
     "bias_memory must be one of ['logic', 'block'], not 'lutram'"),
])
def test_refuses_impossible_parameters(kwargs, error, message):
    with pytest.raises(error) as info:
        ProgEngine(**{**ENGINE, **kwargs})
    assert message in str(info.value)


@pytest.mark.parametrize("style, attribute", [("logic", False), ("block", True)])
def test_bias_memory_style_reaches_the_verilog(style, attribute):
    """``bias_memory="block"`` puts ``ram_style = "block"`` on the bias memory (and nowhere
    else); the default leaves the choice to the synthesis tool."""
    import re

    from amaranth.back import verilog
    text = verilog.convert(ProgEngine(**ENGINE, bias_memory=style), name="engine")
    marked = re.findall(r'\(\* ram_style = "block" \*\)\s*(?:\(\*[^\n]*\*\)\s*)*'
                        r'reg\s*(?:\[[^\]]*\]\s*)?(\w+)', text)
    assert marked == (["biases"] if attribute else []), marked


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=3), "stride must be a power of two"),
    (dict(kernel=9), "kernel 9 is larger than the padded image"),
    (dict(padding=2), "layer padding = 2 must be <= 1"),
    (dict(out_channels=5), "layer groups_log = 2 must be <= 1"),
    (dict(height=9, width=9, kernel=3),
     "layer words per frame (in_channels * height) = 18 must be <= 16"),
    (dict(weight_base=60), "weight_base + weight_words_needed"),
])
def test_refuses_layers_that_do_not_fit(kwargs, message):
    engine = ProgEngine(**ENGINE)
    # Only its layer checks are used; elaborating it (public API) tells Amaranth it was used,
    # so no UnusedElaboratable warning fires when it is collected.
    Fragment.get(engine, None)
    params = dict(in_channels=2, out_channels=4, kernel=3, stride=1, padding=1, height=6,
                  width=6, lanes=2)
    params.update(kwargs)
    with pytest.raises(ValueError) as info:
        engine.config_value(layer_config(**params))
    assert message in str(info.value)


def test_pack_refuses_bad_arguments():
    with pytest.raises(ValueError, match="kernel 3 does not fit 2\\*\\*kernel_log = 2"):
        pack_layer_weights(np.zeros((2, 1, 3, 3), dtype=int), lanes=2, weight_width=4,
                           kernel_log=1, groups_log=0)
    with pytest.raises(ValueError, match="does not fit weight_width 4"):
        pack_layer_weights(np.full((2, 1, 1, 1), 8), lanes=2, weight_width=4, kernel_log=0,
                           groups_log=0)
    with pytest.raises(ValueError, match="groups must be >= 2, not 1"):
        pack_layer_biases(np.zeros(3, dtype=int), lanes=2, accumulator_width=8, groups=1)


def test_ring_mode_reads_only_loaded_blocks():
    """Ring mode (weights over AXI4): a model of the weight fetcher loads the layer's blocks
    (channel ``c``'s block: positions ``[c << B, (c + 1) << B)``, ``B = 2 kernel_log +
    groups_log``) one every few cycles and answers ``block_ready`` as the fetcher does, from
    the next value of ``block_need`` (``block_need_load`` where ``block_need_take``). Every
    weight read must fall in a loaded block, ``block_done`` must never pass a block still to be
    read, and the outputs stay ``==`` the reference (a wrong block end either reads a block
    early or waits for one that never comes)."""
    specs = [(3, 6, 3, 1, 1, 5, 7), (5, 4, 3, 2, 2, 7, 6), (6, 7, 1, 1, 0, 5, 1)]
    base_net = Network(11, 4, specs)
    plain = base_net.engine
    # each layer's weights moved to a base aligned to its block (a ring's layout), garbage
    # between them
    words, cfgs = [], []
    for number, (cfg, _, _) in enumerate(base_net.layers):
        block = 1 << (2 * cfg.kernel_log + cfg.groups_log)
        size = cfg.in_channels * block
        words += [garbage(base_net.rng, 4 * WEIGHT_WIDTH) for _ in range(3)]
        words += [garbage(base_net.rng, 4 * WEIGHT_WIDTH) for _ in range(-len(words) % block)]
        cfgs.append(dataclasses.replace(cfg, weight_base=len(words)))
        words += base_net.weight_words[cfg.weight_base:cfg.weight_base + size]
        base_net.layers[number] = (cfgs[-1],) + base_net.layers[number][1:]
    engine = ProgEngine(
        lanes=4, word_bits=plain._word_bits, max_words=plain._max_words,
        max_channels=plain._max_channels, max_side=plain._max_side,
        max_padding=plain._max_padding, max_kernel_log=plain._max_kernel_log,
        max_stride_log=plain._max_stride_log, max_groups_log=plain._max_groups_log,
        weight_width=WEIGHT_WIDTH, accumulator_width=base_net.acc,
        weight_depth=len(words), bank_depth=plain._bank_depth,
        bias_words=plain._bias_words, ring_pointer_bits=12)
    harness = Harness(engine, words)
    rng = np.random.default_rng(5)
    frames = [(n, spike_map(rng, (c.in_channels, c.height, c.width), 0.4))
              for n, c in enumerate(cfgs)]
    layout = engine.i.payload.shape()
    received, stats = [], {"reads": 0, "waits": 0}

    async def bench(ctx):
        for number, (layer, spikes) in enumerate(frames):
            cfg = cfgs[layer]
            shift = 2 * cfg.kernel_log + cfg.groups_log
            total = cfg.in_channels << shift
            ctx.set(harness.config, engine.config_value(cfg))
            ctx.set(engine.frame_start, 1)
            await ctx.tick()
            ctx.set(engine.frame_start, 0)
            words = pack_words(spikes.reshape(-1, spikes.shape[-1]))
            beats = [layout.const({"bits": w, "last": n == len(words) - 1})
                     for n, w in enumerate(words)]
            loaded, cycle, out = 0, 0, []
            sent = 0
            read_blocks = []    # (cycle, first position of the block read)
            ctx.set(engine.block_ready, 0)
            while len(out) < cfg.beats:
                cycle += 1
                assert cycle < 20_000, f"frame {number}: no progress (loaded {loaded})"
                # the fetcher: a block lands every 6 cycles
                landed = loaded + (1 << shift) if cycle % 6 == 0 and loaded < total else loaded
                # the engine's side of this cycle
                ctx.set(engine.i.valid, sent < len(beats))
                if sent < len(beats):
                    ctx.set(engine.i.payload, beats[sent])
                ctx.set(engine.o.ready, 1)
                if ctx.get(engine.weight.en):
                    offset = ctx.get(engine.weight.addr) - cfg.weight_base
                    assert 0 <= offset < loaded, (
                        f"frame {number}: weight read at {offset}, only {loaded} loaded")
                    stats["reads"] += 1
                    read_blocks.append((cycle, offset >> shift << shift))
                done = ctx.get(engine.block_done)
                assert done <= loaded, f"frame {number}: block_done {done} > loaded {loaded}"
                # channel-major items: a block read two cycles ago is the oldest still in use
                # or a later one is, so block_done has reached it (it frees as it goes)
                floor = max((b for c, b in read_blocks if c <= cycle - 2), default=0)
                assert done >= floor, f"frame {number}: block_done {done} behind {floor}"
                need_next = (ctx.get(engine.block_need_load) if ctx.get(engine.block_need_take)
                             else ctx.get(engine.block_need))
                if sent < len(beats) and ctx.get(engine.i.ready):
                    sent += 1
                if ctx.get(engine.o.valid):
                    out.append(ctx.get(engine.o.payload))
                if not ctx.get(engine.block_ready) and ctx.get(engine.block_need) > loaded:
                    stats["waits"] += 1
                await ctx.tick()
                loaded = landed
                ctx.set(engine.block_ready, need_next <= loaded)
            ctx.set(engine.i.valid, 0)
            received.append(out)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    net = base_net
    check(net, frames, received, "ring mode")
    assert stats["reads"] > 0 and stats["waits"] > 0, stats
