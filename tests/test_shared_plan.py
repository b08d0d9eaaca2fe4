"""The shared network's plan (hw.plan.SharedPlan) beyond maps and weights: the LIF
threshold memory, the residual-stream and membrane layout, the stream-shift memory and the
engine's limits, each checked against the quantized network itself. The generated circuit reads
these tables; only the Verilator end-to-end test runs it, so a wrong table would otherwise go
unseen by the fast suite. Written to kill `python -m tests.mutate --files hw/plan.py` mutants."""

import numpy as np
import pytest
import torch

from hw.params import ceil_div, log2_ceil
from hw.program import StepKind
from hw.progengine import layer_config
from hw.shared import SharedNetwork
from sim.e2e import demo_model, quantized

torch.set_num_threads(1)
LANES = 16


@pytest.fixture(scope="module", params=[1, 2], ids=["T1", "T2"])
def plan(request):
    model, _ = demo_model(request.param, "random", seed=0)
    net = quantized(model)
    return net, SharedNetwork(net, lanes=LANES)


def lanes_of(word, width, lanes=LANES):
    """Signed lanes of a packed word, lane 0 in the low bits."""
    raw = [(word >> (lane * width)) & ((1 << width) - 1) for lane in range(lanes)]
    return [r - (1 << width) if r >> (width - 1) else r for r in raw]


def test_log2_ceil():
    assert [log2_ceil(v) for v in (0, 1, 2, 3, 4, 5, 8, 9)] == [0, 0, 1, 2, 2, 3, 3, 4]


def test_threshold_memory_and_membrane_sites(plan):
    net, dut = plan
    mem = dut.plan.memory
    want, mbase = [], 0
    for lif, site in mem.sites.items():
        info = dut.maps[lif]
        groups = ceil_div(info.channels, LANES)
        assert site.groups == groups and site.tbase * LANES == len(want), lif
        assert site.mbase == mbase and site.words == info.side ** 2 * groups, lif
        mbase += site.words
        threshold = [int(v) for v in net.lifs[lif].threshold]
        want += threshold + [0] * (groups * LANES - len(threshold))
    assert dut.plan.thresholds == want
    assert mem.membrane_words == (max(2, mbase) if net.cfg.T > 1 else 2)
    assert mem.lif_bits == max(net.lifs[name].input_bits for name in mem.sites)
    # Every LIF but the SDSA's own attention LIF has a site.
    sdsa = {step.sink.spike_map for step in dut.steps if step.kind is StepKind.SDSA}
    assert set(mem.sites) == set(net.lifs) - sdsa


def test_stream_layout(plan):
    net, dut = plan
    mem = dut.plan.memory
    base = 0
    for name, stream in mem.streams.items():
        groups = ceil_div(net.streams[name].scale.shape[0], LANES)
        assert stream.base == base and stream.groups == groups, name
        assert stream.words == dut.sizes[name] ** 2 * groups, name
        assert stream.bits == net.streams[name].bits
        base += stream.words
    assert mem.stream_depth == max(2, base)
    assert mem.stream_bits == max(s.bits for s in net.streams.values())


def test_shift_memory(plan):
    net, dut = plan
    shift_base, shift_words = dut.plan.memory.shift_base, dut.plan.shift_words
    width = dut.plan.shift_bits + 1
    seen, largest = 0, 0
    for step in dut.steps:
        if step.name not in shift_base:
            continue
        shifts = np.asarray(net.layers[step.layer].shift, dtype=np.int64).reshape(-1)
        largest = max(largest, int(shifts.max()))
        start = shift_base[step.name]
        assert start == seen, step.name
        for g in range(ceil_div(len(shifts), LANES)):
            assert 0 <= shift_words[start + g] < 1 << (LANES * width), "word too wide"
            got = lanes_of(shift_words[start + g], width)
            chunk = list(shifts[g * LANES:(g + 1) * LANES])
            assert got == chunk + [0] * (LANES - len(chunk)), (step.name, g)
            seen += 1
    assert seen == len(shift_words) > 0
    # Exactly the steps that write a residual stream have shifts.
    writers = {step.name for step in dut.steps
               if step.kind is StepKind.BEGIN_STEM
               or (step.kind is StepKind.LAYER and step.sink.stream is not None)}
    assert set(shift_base) == writers and writers
    assert dut.plan.shift_bits == max(1, largest.bit_length())


def test_engine_limits_are_the_largest_layer(plan):
    """Each limit is reached by some layer and covers every layer (an engine sized from the
    limits runs every layer's config)."""
    net, dut = plan
    limits = dut.plan.engine_limits
    configs = []
    for name, place in dut.plan.memory.layers.items():
        weight = np.asarray(net.layers[name].weight)
        side = dut.maps[dut.steps[[s.layer for s in dut.steps].index(name)].source].side
        cfg = layer_config(in_channels=weight.shape[1], out_channels=weight.shape[0],
                           kernel=1 if weight.ndim == 2 else weight.shape[2],
                           stride=int(net.layers[name].stride),
                           padding=int(net.layers[name].padding), height=side, width=side,
                           lanes=LANES, weight_base=place.config.weight_base,
                           bias_base=place.config.bias_base)
        assert cfg == place.config, name
        configs.append(cfg)
    assert limits["max_words"] == max(c.words_per_frame for c in configs)
    assert limits["max_channels"] == max(c.in_channels for c in configs)
    assert limits["max_padding"] == max(c.padding for c in configs)
    assert limits["max_kernel_log"] == max(c.kernel_log for c in configs)
    assert limits["max_stride_log"] == max(c.stride_log for c in configs)
    assert limits["max_groups_log"] == max(c.groups_log for c in configs)
    assert limits["bank_depth"] == max(2, max(c.bank_words_needed for c in configs))
    assert limits["max_side"] == max([dut.map_width] + [max(c.height, c.out_height)
                                                         for c in configs])
    assert limits["word_bits"] == dut.map_width == max(i.side for i in dut.maps.values())
    # Weights and biases: each layer's words start where the previous layer's end.
    weight_end = bias_end = 0
    for cfg in configs:
        assert (cfg.weight_base, cfg.bias_base) == (weight_end, bias_end)
        weight_end += cfg.weight_words_needed
        bias_end += cfg.groups
    assert len(dut.weight_words) == weight_end and len(dut.plan.bias_words) == bias_end


def test_bias_memory_and_widths(plan):
    net, dut = plan
    for name, place in dut.plan.memory.layers.items():
        bias = [int(b) for b in np.asarray(net.layers[name].bias).reshape(-1)]
        for g in range(place.config.groups):
            word = dut.plan.bias_words[place.config.bias_base + g]
            assert 0 <= word < 1 << (LANES * dut.accumulator_width), "word too wide"
            got = lanes_of(word, dut.accumulator_width)
            chunk = bias[g * LANES:(g + 1) * LANES]
            assert got == chunk + [0] * (LANES - len(chunk)), (name, g)
    weights = [np.asarray(net.layers[n].weight) for n in dut.plan.memory.layers]
    low = min(min(int(w.min()), 0) for w in weights)
    high = max(max(int(w.max()), 0) for w in weights)
    # The narrowest signed width holding every weight.
    assert -(1 << (dut.weight_width - 1)) <= low and high < (1 << (dut.weight_width - 1))
    assert not (-(1 << (dut.weight_width - 2)) <= low and high < (1 << (dut.weight_width - 2)))
    assert dut.weight_depth == max(2, len(dut.weight_words))


def test_widest_group_count(plan):
    net, dut = plan
    groups = ([ceil_div(s.scale.shape[0], LANES) for s in net.streams.values()]
              + [place.config.groups for place in dut.plan.memory.layers.values()]
              + [ceil_div(i.channels, LANES) for i in dut.maps.values()]
              + [a.heads for a in net.attention.values()])
    assert dut.plan.max_groups == max(groups)
    pooled = [dut.plan.memory.streams[s.source].groups for s in dut.steps
              if s.kind is StepKind.POOL_LIF]
    assert dut.plan.pool_groups == max([1] + pooled)


def test_stem_groups_and_weight_ports(plan):
    net, dut = plan
    assert dut.plan.stem_groups == ceil_div(
        np.asarray(net.layers[dut.steps[0].layer].weight).shape[0], LANES)
    members = dut.signature.members
    assert "weight_addr" not in members and "weight_data" not in members
    external = SharedNetwork(net, lanes=LANES, weights="external").signature.members
    from amaranth.hdl import Shape  # noqa: PLC0415

    def width(name):
        return Shape.cast(external[name].shape).width

    assert width("weight_en") == 1
    assert width("weight_data") == LANES * dut.weight_width
    assert width("weight_addr") == (dut.weight_depth - 1).bit_length()
