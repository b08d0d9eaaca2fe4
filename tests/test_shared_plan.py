"""The shared network's plan (hw.plan.SharedPlan) beyond maps and weights: the LIF
threshold memory, the residual-stream and membrane layout, the stream-shift memory and the
engine's limits, each checked against the quantized network itself. The generated circuit reads
these tables; only the Verilator end-to-end test runs it, so a wrong table would otherwise go
unseen by the fast suite. Written to kill `python -m tests.mutate --files hw/plan.py` mutants."""

import numpy as np
import pytest
import torch

from hw.mapreader import SpikeMapReader
from hw.params import ceil_div, log2_ceil
from hw.program import SinkKind, StepKind
from hw.progengine_config import layer_config
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
        # Aligned to the power of two covering the groups, so tbase + g == tbase | g.
        align = 1 << (groups - 1).bit_length()
        gap = -(len(want) // LANES) % align
        want += [0] * (gap * LANES)
        assert site.groups == groups and site.tbase * LANES == len(want), lif
        assert site.tbase % align == 0 and all(site.tbase + g == site.tbase | g
                                               for g in range(groups)), lif
        assert site.mbase == mbase and site.words == info.side ** 2 * groups, lif
        mbase += site.words
        threshold = [int(v) for v in net.lifs[lif].threshold]
        # padded channels: threshold 1, never reached by their input of 0
        want += threshold + [1] * (groups * LANES - len(threshold))
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
    # At T > 1 the stem's output keeps a place of its own after every stream, sized as the
    # first stream (the one the stem begins); at T = 1 there is none.
    first = next(s.sink.stream for s in dut.steps if s.kind is StepKind.BEGIN_STEM)
    names = list(net.streams) + (["stem_out"] if net.cfg.T > 1 else [])
    assert list(mem.streams) == names
    for name, stream in mem.streams.items():
        source = first if name == "stem_out" else name
        groups = ceil_div(net.streams[source].scale.shape[0], LANES)
        assert stream.base == base and stream.groups == groups, name
        assert stream.words == dut.sizes[source] ** 2 * groups, name
        assert stream.bits == net.streams[source].bits
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


def _descriptor_table(dut):
    """The descriptor ROM as the hardware gets it: ``{(t, step index): {field: value}}``."""
    from amaranth.hdl import Const, Shape  # noqa: PLC0415

    layout, rom, engine_layout = _raw_rom(dut)
    k_bits = Shape.cast(range(len(dut.steps) + 1)).width
    table = {}
    for address, word in rom.items():
        view = layout.from_bits(word)
        fields = {name: Const.cast(view[name]).value for name, _ in layout}
        table[(address >> k_bits, address & ((1 << k_bits) - 1))] = fields
    return table, engine_layout


def _raw_rom(dut):
    """The descriptor layout of every field, the packed table ``{(t << k_bits) | k: word}`` and
    the engine's configuration layout."""
    from amaranth.lib import data  # noqa: PLC0415

    from hw.descriptor import descriptor_fields, descriptor_rom  # noqa: PLC0415
    from hw.progengine_config import engine_config_layout  # noqa: PLC0415

    plan = dut.plan
    limits = plan.engine_limits
    engine_layout = engine_config_layout(
        max_side=limits["max_side"], max_padding=limits["max_padding"],
        max_kernel_log=limits["max_kernel_log"], max_stride_log=limits["max_stride_log"],
        max_groups_log=limits["max_groups_log"], weight_depth=plan.weight_depth,
        bias_depth=len(plan.bias_words))
    layout = data.StructLayout(descriptor_fields(plan, engine_layout))
    rom = descriptor_rom(plan, layout,
                              lambda layer: engine_layout.const(layer.fields).as_value().value)
    return layout, rom, engine_layout


@pytest.mark.parametrize("T, schedule", [(2, "time"), (4, "layer")])
def test_the_table_splits_into_step_and_time_step_terms(T, schedule):
    """At T > 1 the sequencer decodes a bit from the step alone where it is the same at every
    time step, else from (t, step) (``hw.sequencer.split_table``). On the demo's table the
    split gives every word, and it needs far fewer terms than the whole (t, step) table: only
    the per-time-step bases change with t."""
    from hw.sequencer import split_lookup, split_table  # noqa: PLC0415

    model, _ = demo_model(T, "random", seed=0)
    dut = SharedNetwork(quantized(model), lanes=LANES, schedule=schedule)
    layout, rom, _ = _raw_rom(dut)
    steps = len(dut.steps)
    split = split_table(rom, layout.size, steps)
    k_bits = (steps).bit_length()
    for address, word in rom.items():
        assert split_lookup(split, steps, address >> k_bits, address & ((1 << k_bits) - 1)) == word
    whole = sum(bin(word).count("1") for word in rom.values())
    terms = sum(bin(k_mask).count("1") + bin(tk_mask).count("1") for k_mask, tk_mask in split[2])
    print(f"T={T} {schedule}: {terms} terms of {whole}")
    assert terms < 0.6 * whole, (terms, whole)
    if schedule == "time":
        return   # (the first step of a later time step carries other fields than at t = 0)
    # the bits that change with t are those of bases (of maps, streams, q/k/v, the residual)
    varying = set()
    for bit, (_, tk_mask) in enumerate(split[2]):
        if tk_mask:
            varying |= {name for name, member in layout
                        if member.offset <= bit < member.offset + member.width}
    assert varying and varying <= {"src_base", "dst_base", "stream_base", "stream_read_base",
                                   "res_base", "q_base", "k_base", "v_base"}, varying


def test_descriptor_table_decodes_to_the_plan(plan):
    """Every (time step, step) descriptor word, unpacked field by field, holds what the plan and
    the program say: kind, sink, map and stream bases at that time step, geometry, flags and
    limits, the engine configuration of a layer, the next step. The shared network's datapaths
    read nothing else, and only the Verilator end-to-end test runs them."""
    net, dut = plan
    mem, T, steps = dut.plan.memory, dut.plan.T, dut.steps
    table, engine_layout = _descriptor_table(dut)

    def at(info, t):  # a map's first word at time step t (module docstring of hw.plan)
        return info.base + t * -(-info.groups // info.pack) * info.side

    every = [k for k, s in enumerate(steps) if s.kind is not StepKind.BEGIN_STEM]
    # T > 1: the stem (step 0) runs at t = 0 only; its output stays in "stem_out"
    runs = {t: [k for k in every if not (t and T > 1 and steps[k].kind is StepKind.STEM)]
            for t in range(T)}
    assert sorted(table) == [(t, k) for t in range(T) for k in runs[t]]
    assert steps[0].kind is StepKind.STEM and (T == 1 or runs[1][0] == 2)
    # which stream place each step reads and writes: the first stream's readers read the
    # kept stem output up to the first add into it, which reads it and writes the stream
    first = next(s.sink.stream for s in steps if s.kind is StepKind.BEGIN_STEM)
    first_add = next(k for k, s in enumerate(steps)
                     if s.sink.kind is SinkKind.ADD and s.sink.stream == first)

    def stream_place(name, k):
        return mem.streams["stem_out" if T > 1 and name == first and k <= first_add else name]

    for (t, k), d in table.items():
        step = steps[k]
        assert d["kind"] == step.kind.value, step.name
        at_t = runs[t]
        following = (at_t[at_t.index(k) + 1] if at_t.index(k) + 1 < len(at_t)
                     else len(steps))
        assert (d["next_k"], d["last_step"]) == (following, int(following == len(steps)))
        flags = {"is_stem": StepKind.STEM, "is_layer": StepKind.LAYER,
                 "is_stream_lif": StepKind.STREAM_LIF, "is_sdsa": StepKind.SDSA,
                 "is_pool": StepKind.POOL_LIF}
        for flag, kind in flags.items():
            assert d[flag] == int(step.kind is kind), (step.name, flag)
        assert d["is_reader"] == int(step.kind in (StepKind.STREAM_LIF, StepKind.POOL_LIF))
        for name, minus in (("src_height", 1), ("src_channels", 1), ("dst_side", 1),
                            ("dst_side", 2), ("groups", 1), ("groups", 2),
                            ("stream_words", 1)):
            assert d[f"{name}_m{minus}"] == max(0, d[name] - minus), (step.name, name, minus)
        lif = step.sink.spike_map
        if lif is not None:
            info = mem.maps[lif]
            assert (d["dst_base"], d["dst_stride"], d["dst_side"]) == \
                (at(info, t), info.side, info.side), step.name
            assert d["dst_mask"] == (1 << info.pack * info.side) - 1
            assert d["dst_word_bits"] == info.pack * info.side
            groups = dut.plan.head_groups[step.source] if step.kind is StepKind.SDSA \
                else info.groups
            words = -(-groups // info.pack)   # a row's words (an SDSA row: one head's)
            assert (d["dst_words_m1"], d["dst_words_m2"]) == (words - 1, max(0, words - 2))
            if lif in mem.sites:
                site = mem.sites[lif]
                assert (d["tbase"], d["groups"]) == (site.tbase, site.groups), step.name
                assert d["mbase"] == (site.mbase if T > 1 else 0), step.name
        if step.kind is StepKind.LAYER:
            place, src = mem.layers[step.layer], mem.maps[step.source]
            assert d["sink"] == step.sink.kind.value
            assert d["sink_lif"] == int(step.sink.kind is SinkKind.LIF)
            assert d["sink_add"] == int(step.sink.kind is SinkKind.ADD)
            assert d["sink_logits"] == int(step.sink.kind is SinkKind.LOGITS)
            assert d["sink_stream"] == int(step.sink.stream is not None)
            assert (d["src_base"], d["src_stride"], d["src_height"], d["src_channels"]) == \
                (at(src, t), src.side, src.side, place.config.in_channels), step.name
            assert (d["src_pack_m1"], d["src_mask"]) == (src.pack - 1, (1 << src.side) - 1)
            assert d["engine"] == engine_layout.const(place.config.fields).as_value().value
        writer = step
        if step.kind is StepKind.STEM:
            writer = next(s for s in steps if s.kind is StepKind.BEGIN_STEM)
        if writer.sink.stream is not None:
            stream = mem.streams[writer.sink.stream]
            if writer is not step:   # the stem: into the kept place at T > 1
                stream = stream_place(writer.sink.stream, k)
            assert (d["stream_base"], d["stream_words"], d["groups"], d["shift_base"]) == \
                (stream.base, stream.words, stream.groups, mem.shift_base[writer.name])
            read = (stream_place(writer.sink.stream, k) if writer.sink.kind is SinkKind.ADD
                    else stream)
            assert d["stream_read_base"] == read.base, step.name
        if step.kind in (StepKind.STREAM_LIF, StepKind.POOL_LIF):
            stream = stream_place(step.source, k)
            assert (d["stream_base"], d["stream_words"]) == (stream.base, stream.words)
        if step.kind is StepKind.SDSA:
            attn = step.attention
            assert d["sdsa"] == list(net.attention).index(step.source)
            q = mem.maps[attn.q]
            assert (d["q_base"], d["k_base"], d["v_base"], d["src_stride"]) == (
                at(q, t), at(mem.maps[attn.k], t), at(mem.maps[attn.v], t), q.side)
            head_groups = dut.plan.head_groups[step.source]
            assert head_groups % q.pack == 0   # every head starts a word
            assert d["src_pack_m1"] == q.pack - 1
            assert d["head_stride"] == head_groups // q.pack * q.side


def test_descriptor_fields_hold_their_largest_value(plan):
    """Each address and count field is exactly as wide as its largest possible value needs."""
    from amaranth.hdl import Shape  # noqa: PLC0415

    from hw.descriptor import descriptor_fields  # noqa: PLC0415
    from hw.params import bits_for  # noqa: PLC0415

    net, dut = plan
    mem = dut.plan.memory
    fields = descriptor_fields(dut.plan, None)
    width = {name: Shape.cast(shape).width for name, shape in fields.items() if shape is not None}
    assert width["src_base"] == width["dst_base"] == bits_for(mem.map_depth + 1)
    assert width["stream_base"] == bits_for(mem.stream_depth + 1)
    assert width["mbase"] == bits_for(mem.membrane_words + 1)
    assert width["src_stride"] == Shape.cast(range(mem.map_width + 1)).width
    assert width["groups"] == Shape.cast(range(dut.plan.max_groups + 1)).width
    assert width["dst_side"] == Shape.cast(range(mem.map_width + 1)).width
    assert width["dst_mask"] == mem.map_width
    assert width["next_k"] == Shape.cast(range(len(dut.steps) + 1)).width


def test_network_ports_are_the_documented_shell(plan):
    """The ports a testbench or SoC drives (``hw.shared.network_signature``), width by width."""
    from amaranth.hdl import Shape, signed  # noqa: PLC0415
    from amaranth.lib import data  # noqa: PLC0415

    from hw.descriptor import descriptor_fields  # noqa: PLC0415
    from hw.params import bits_for  # noqa: PLC0415

    net, dut = plan
    members = dut.signature.members
    width = {name: Shape.cast(members[name].shape).width for name in members}
    cfg = net.cfg
    assert width["load_address"] == bits_for(cfg.in_channels * cfg.img_size ** 2)
    assert width["load_data"] == net.pixel.bits
    for pulse in ("load_enable", "start", "ready", "done"):
        assert width[pulse] == 1, pulse
    assert width["step"] == Shape.cast(range(len(dut.steps) + 1)).width
    assert width["time_step"] == Shape.cast(range(max(2, cfg.T))).width
    assert width["cycles"] == 32
    classes = np.asarray(net.layers["head"].weight).shape[0]
    assert members["logits"].shape == data.ArrayLayout(signed(dut.logit_bits), classes)
    assert dut.logit_bits == max(net.logit_bits, 2)


@pytest.mark.parametrize("T, shortcut", [(2, "membrane"), (4, "membrane"), (2, "sew")])
def test_layer_schedule_shares_what_never_lives_at_once(T, shortcut):
    """``schedule="layer"`` runs every time step of a step before the next step: every LIF site
    starts at membrane word 0 (one site's membranes at a time), each stream place holds a copy
    per time step (but the kept stem output), and two places share words only if no step lies
    between the first and last step of both. Fewer bits than the time schedule in all. (SEW:
    its layers' sums live beside the streams, so places share words at other offsets than 0.)"""
    from hw.plan import STEM_OUT, SharedPlan

    if shortcut == "sew":
        from sim.paper import make
        model = make("demo", 32, 0, T, "shortcut_sew").float().double()
    else:
        model, _ = demo_model(T, "random", seed=0)
    net = quantized(model)
    time, layer = SharedPlan(net, LANES), SharedPlan(net, LANES, schedule="layer")
    mem = layer.memory
    assert all(site.mbase == 0 for site in mem.sites.values())
    assert mem.membrane_words == max(site.words for site in mem.sites.values())
    assert [(k, s.words, s.groups) for k, s in layer.memory.streams.items()] == [
        (k, s.words, s.groups) for k, s in time.memory.streams.items()]
    # every (t, k) once; each step's time steps in a row; the stem once
    visits = layer.visits()
    assert sorted(visits) == sorted(time.visits()) and len(set(visits)) == len(visits)
    outside = [k for _, k in visits if k not in layer.time_major]
    assert outside == sorted(outside)   # (SEW's time-major group: tests/test_shared_sew.py)
    # a place's words: [base, base + copies * words); its life: first to last step using it
    life = {}
    for k, step in enumerate(layer.steps):
        for place in layer.stream_access.get(step.name, ()):
            if place is not None:
                first, last = life.get(place.name, (k, k))
                life[place.name] = (min(first, k), max(last, k))
    span = {name: (layer.stream_base(place, 0), layer.stream_base(place, T - 1) + place.words)
            for name, place in mem.streams.items() if name in life}
    # the kept stem output is the first stream's copy for t = 0; the one step in both lives
    # (the first add into that stream) runs downwards, writing that copy last, in place
    first = layer._stream_of(STEM_OUT)
    assert layer.stem_in_place
    assert span[STEM_OUT] == (mem.streams[first].base, mem.streams[first].base
                              + mem.streams[first].words)
    for down in layer.down_steps:   # none where no layer adds into the stem's stream (SEW)
        assert life[STEM_OUT][1] == life[first][0] == down
        assert [t for t, k in visits if k == down] == list(range(T))[::-1]
    assert len(layer.down_steps) == (shortcut != "sew")
    for k in set(k for _, k in visits) - set(layer.down_steps) - set(layer.time_major):
        ts = [t for t, j in visits if j == k]
        assert ts == sorted(ts), k
    shared = 0
    for a in span:
        for b in span:
            if a < b and span[a][0] < span[b][1] and span[b][0] < span[a][1]:
                if {a, b} == {STEM_OUT, first}:
                    continue
                shared += 1
                assert life[a][1] < life[b][0] or life[b][1] < life[a][0], (a, b)
    assert shared, "no two stream places share words (but the stem's output, in place)"
    assert mem.stream_depth == max(end for _, end in span.values())
    # first fit leaves no hole here: the memory is as deep as the most words live at one step
    live = [sum(place.words * T for name, place in mem.streams.items()
                if name in life and name != STEM_OUT and life[name][0] <= k <= life[name][1])
            for k in range(len(layer.steps))]
    assert mem.stream_depth == max(live)
    # the bits the streams need: every place per time step, the stem's output no extra word
    n1 = (layer.sizes[first] ** 2 * int(net.streams[first].scale.shape[0])
          * mem.stream_bits)
    needed = layer.padding_report()["streams"]["needed"]
    assert needed == T * (time.padding_report()["streams"]["needed"] - n1)
    if shortcut == "membrane":   # the net's streams, each once per time step, and nothing else
        assert needed == T * sum(layer.sizes[name] ** 2 * int(stream.scale.shape[0])
                                 for name, stream in net.streams.items()) * mem.stream_bits
    bits = {k: v["bits"] for k, v in layer.padding_report().items()}
    before = {k: v["bits"] for k, v in time.padding_report().items()}
    assert bits["membranes"] < before["membranes"]
    assert sum(bits.values()) < sum(before.values())


@pytest.mark.parametrize("lanes, per_word, dense", [(16, 1, False), (32, 2, True),
                                                     (64, 4, True), (40, 1, True)])
def test_dense_heads(lanes, per_word, dense):
    """The demo's heads are 16 wide (4 heads, 64 channels): at 32 and 64 lanes a word holds 2 and
    4 of them, so the Q, K and V maps are dense (64 channels, 64 / lanes groups, no order) and their convolutions compute that many groups, the output map stays a word a head,
    and every SDSA step's descriptor says how to take a head out of its words. At 40 lanes the
    heads do not divide the word but dense saves half the groups (2, not 4): head 2 (channels
    32-47) straddles two words. At 16 lanes (one head a word) none of it is built: no such
    fields in the descriptor."""
    model, _ = demo_model(1, "random", seed=0)
    net = quantized(model)
    dut = SharedNetwork(net, lanes=lanes)
    plan, mem = dut.plan, dut.plan.memory
    assert set(plan.heads_per_word.values()) == {per_word}
    assert plan.dense_blocks == ({"block3.0.attn", "block4.0.attn"} if dense else set())
    layout, rom, engine_layout = _raw_rom(dut)
    names = {name for name, _ in layout}
    fields = set(SpikeMapReader.DENSE_FIELDS)
    assert (fields <= names) == dense
    built = {name for name, _ in dut.descriptor_layout(engine_layout)}
    assert fields & built == (fields if dense else set())
    sdsa_steps = 0
    for k, step in enumerate(dut.steps):
        if step.kind is not StepKind.SDSA:
            continue
        sdsa_steps += 1
        paths = step.attention
        for lif in (paths.q, paths.k, paths.v):
            info = mem.maps[lif]
            if dense:
                assert (info.channels, info.groups, info.order) == (64, -(-64 // lanes), None)
                assert mem.layers[f"{step.source}.{lif.rsplit('.', 1)[1][0]}_conv"] \
                    .config.groups == -(-64 // lanes)
            else:
                assert info.groups == 4
        out = mem.maps[step.sink.spike_map]
        assert out.logical_channels == 64 and out.groups == 4   # a word a head, always
        assert (out.order is None) == (lanes == 16)
        if lanes == 40:
            assert mem.maps[step.sink.spike_map].order == tuple(
                h * 40 + j for h in range(4) for j in range(16))
            assert plan.head_reads(step.source) == [(0, 0, 1), (0, 16, 1), (0, 32, 2),
                                                    (1, 8, 1)]
        if dense:
            word = layout.from_bits(rom[k])   # t = 0
            assert (word.head_bits, word.rd_stride, word.wide_at, word.head_mask) == (
                16 % lanes, 0, lanes - 15, 0xFFFF)
            assert word.head_stride == mem.maps[step.sink.spike_map].stride   # the writer's
        assert layout.from_bits(rom[k]).sd_side_m1 == mem.maps[paths.q].side - 1
    assert sdsa_steps == 2


def test_a_block_of_one_head_a_word_beside_one_of_two():
    """The ``odd`` model's heads are 12 (block3) and 20 (block4) wide: at 24 lanes block3's words
    hold two heads (dense) and block4's one, padded (head-aligned: dense would save nothing).
    In the same descriptor block3's SDSA step takes a head's 12 bits at offsets 0 and 12,
    block4's the whole word (all-ones mask, no step, never a word more)."""
    from test_shared_envelope import network  # noqa: PLC0415

    dut = SharedNetwork(network("odd"), lanes=24)
    assert dut.plan.heads_per_word == {"block3.0.attn": 2, "block4.0.attn": 1}
    assert dut.plan.dense_blocks == {"block3.0.attn"}
    layout, rom, _ = _raw_rom(dut)
    seen = {}
    for k, step in enumerate(dut.steps):
        if step.kind is StepKind.SDSA:
            word = layout.from_bits(rom[k])
            seen[step.source] = (word.head_bits, word.rd_stride, word.wide_at, word.head_mask,
                                 word.head_stride)
    step4 = next(s for s in dut.steps if s.kind is StepKind.SDSA and s.source == "block4.0.attn")
    stride = dut.plan.memory.maps[step4.attention.q].stride
    assert seen == {"block3.0.attn": (12, 0, 13, (1 << 12) - 1, seen["block3.0.attn"][4]),
                    "block4.0.attn": (0, stride, 24, (1 << 24) - 1, stride)}


def test_a_dense_block_beside_a_head_aligned_one_at_16_lanes():
    """The ``odd`` model at 16 lanes: block4's heads of 20 are dense (3 groups instead of 4; head 1
    from bank 4 of group 1), block3's heads of 12 stay a word a head (dense would save nothing).
    Block3's descriptor must never read a word more (``wide_at`` = 16, which a field one value
    too narrow would lose) nor shift; block4's steps its offset by 4 and its first word by a
    group."""
    from test_shared_envelope import network  # noqa: PLC0415

    dut = SharedNetwork(network("odd"), lanes=16)
    plan = dut.plan
    assert plan.dense_blocks == {"block4.0.attn"}
    assert plan.head_reads("block3.0.attn") == [(0, 0, 1), (1, 0, 1)]
    assert plan.head_reads("block4.0.attn") == [(0, 0, 2), (1, 4, 2)]
    layout, rom, _ = _raw_rom(dut)
    seen = {}
    for k, step in enumerate(dut.steps):
        if step.kind is StepKind.SDSA:
            word = layout.from_bits(rom[k])
            q = plan.memory.maps[step.attention.q]
            seen[step.source] = (word.head_bits, word.rd_stride, word.rd_sub, word.rd_bits,
                                 word.pack_bits, word.wide_at, word.head_mask, q.pack, q.stride)
    *fields, pack, stride = seen["block3.0.attn"]
    assert fields == [0, seen["block3.0.attn"][1], 0, 0, pack * stride, 16, (1 << 32) - 1]
    # block4's q map packs its 3 groups of side 3 in a word: a head's first group steps by one
    # sub-position of the word (d // 16 = 1 group), no whole word
    *fields, pack, stride = seen["block4.0.attn"]
    assert pack == 3
    assert fields == [4, 0, 1, stride, 3 * stride, 13, (1 << 20) - 1]
