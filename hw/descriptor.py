"""The shared network's descriptor table: one constant word per (time step, step).

:func:`descriptor_fields` names every field a descriptor can hold (with its shape, sized by the
plan); :func:`descriptor_rom` replays the program over the time steps and packs each step's
descriptor with ``layout.const`` into ``{(t << k_bits) | step: word}``, for any layout holding a
subset of the fields (:class:`hw.shared.SharedNetwork` keeps only the fields some unit reads).
Beside the raw fields the words hold decoded flags, strides and "minus one/two" limits, so that
the datapaths compare registers with registers instead of decoding a kind or subtracting.

Reference: the plan itself (:class:`hw.plan.SharedPlan`); tests: ``tests/test_shared_plan.py``
decodes every word of the demo's table field by field against the plan and the program.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data

from hw.params import bits_for, ceil_div
from hw.program import SinkKind, Step, StepKind

__all__ = ["descriptor_fields", "descriptor_rom"]


def descriptor_fields(plan, engine_config_shape) -> dict:
    """Return the descriptor's ``{field: shape}`` (``engine``: the engine's config layout).

    Every step's descriptor, for every time step, is a constant word of a ROM indexed by
    (t, step); the word also holds decoded flags, strides and "minus one" limits, so that
    datapaths compare registers with registers instead of decoding a kind or subtracting.
    """
    mem, lanes, steps = plan.memory, plan.lanes, plan.steps
    W = mem.map_width
    md_w = bits_for(mem.map_depth + 1)
    words_shape = range(max(info.words for info in mem.maps.values()) + 1)
    sd_w = bits_for(mem.stream_depth + 1)
    groups_shape = range(plan.max_groups + 1)
    heads_shape = range(max([1] + [a.heads for a in plan.net.attention.values()]) + 1)
    channels = range(max(p.config.in_channels for p in mem.layers.values()) + 1)
    fields = {
        "kind": unsigned(3),
        "sink": unsigned(2),
        "src_base": unsigned(md_w),     # with t folded in
        # a map's word-group stride (its side: rows of a group, and the bit pitch of the groups
        # packed in a bank), its packing minus one and the mask of one row's bits
        "src_stride": range(W + 1),
        "src_pack_m1": range(W + 1),
        "src_mask": unsigned(W),
        "src_height": range(W + 1),
        "src_height_m1": range(W + 1),
        "src_channels": channels,
        "src_channels_m1": channels,
        "dst_base": unsigned(md_w),
        "dst_stride": range(W + 1),
        # bits from one written word's first row to the next word's in the row buffer (pack *
        # side), and the word groups a row is written as (of a head, for an SDSA step)
        "dst_word_bits": range(W + 1),
        "dst_words_m1": words_shape,
        "dst_words_m2": words_shape,
        "dst_side": range(W + 1),
        "dst_side_m1": range(W + 1),
        "dst_side_m2": range(W + 1),
        "dst_mask": unsigned(W),
        "groups": groups_shape,
        "groups_m1": groups_shape,
        "groups_m2": groups_shape,
        "mbase": unsigned(bits_for(mem.membrane_words + 1)),
        "tbase": unsigned(bits_for(len(plan.thresholds) // lanes + 1)),
        "stream_base": unsigned(sd_w),
        # where an add reads the words it adds to (the stream's own base, or the kept stem
        # output for the first add into the first stream: ``SharedPlan.stream_access``)
        "stream_read_base": unsigned(sd_w),
        "stream_words": unsigned(sd_w),
        "stream_words_m1": unsigned(sd_w),
        "shift_base": unsigned(bits_for(len(plan.shift_words) + 2)),
        "sdsa": range(max(2, len(plan.attention))),
        # SDSA steps: heads, word groups a head (``groups``), the words from one head's first
        # row to the next head's (``head_groups / pack`` word groups) and the token grid's side; every
        # other map-writing step is one "head" of its map.
        "heads": heads_shape,
        "heads_m1": heads_shape,
        "heads_m2": heads_shape,
        "head_stride": range(plan.max_groups * W + 1),
        "sd_side_m1": range(W + 1),
        "q_base": unsigned(md_w),
        "k_base": unsigned(md_w),
        "v_base": unsigned(md_w),
        "engine": engine_config_shape,
        "next_k": range(len(steps) + 1),   # the step after this one (begin_stem skipped)
        "last_step": 1,                      # this is the time step's last step
        # layer schedule: the step runs at t = 0 only (a kept stem); ``last_step`` then marks
        # the program's last step and ``next_k`` the next step in program order
        "once": 1,
        # layer schedule with the stem's output in place (``plan.stem_in_place``): the step runs
        # its time steps downwards (``plan.down``), and whether the next step does
        "down": 1, "next_down": 1,
        # layer schedule, SEW: the head pool's time-major group (``plan.time_major``): ``tail``
        # on every step of it but the last (go on at the same time step), ``loop`` on the last
        # (back to ``loop_k``, the group's first step, at the next time step)
        "tail": 1, "loop": 1, "loop_k": range(len(steps) + 1),
        # decoded kind and sink
        "is_stem": 1, "is_event": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,
        "is_reader": 1,          # stream LIF, residual LIF or pool: the stream reader runs
        "sink_lif": 1, "sink_stream": 1, "sink_add": 1, "sink_logits": 1,
        # vanilla shortcut: a residual LIF, or a pool of spikes, reads a spike map beside the
        # stream reader's words (``hw.residual.SpikeFetch``): the map's words from ``res_base``
        # (t folded in), its side and packing, the identity memory's words from ``ibase``;
        # ``use_stream`` is 0 for a pool of spikes (no stream, the spikes alone)
        "is_residual": 1, "is_res_lif": 1, "use_stream": 1,
        "res_base": unsigned(md_w),
        "res_stride": range(W + 1),
        "res_side_m1": range(W + 1),
        "res_pack_m1": range(W + 1),
        "ibase": unsigned(bits_for(len(getattr(plan, "identity_words", ())) + 1)),
        # SEW: a pass of the head's pool that keeps its sums (``pool_more``) and one that adds
        # to the kept sums (``pool_acc``, hw.residual.Pool with passes)
        "pool_more": 1, "pool_acc": 1,
    }
    if plan.dense_blocks:
        # SDSA steps, when some block's q, k and v maps are dense (``plan.dense_blocks``): the
        # bank offset step from one head to the next (``d % lanes``), the reader's word step
        # (``d // lanes`` groups; one more when the offset wraps), the offset from which a head
        # reads one word group more than ``groups`` (``lanes - (d - 1) % lanes``), and the mask
        # of a head's ``d`` bits over the widest head's row. A head-aligned block: 0, its head
        # stride, ``lanes`` (never) and all ones. Built only when a block needs them.
        widest = max(plan.head_groups.values())
        fields.update({"head_bits": range(lanes), "rd_stride": range(plan.max_groups * W + 1),
                       "rd_sub": range(W + 1), "rd_bits": range(W + 1), "pack_bits": range(W + 1),
                       "wide_at": range(lanes + 1), "head_mask": unsigned(lanes * widest)})
    if plan.depthwise:
        # SepConv unfused: a layer step that runs the depthwise engine on its source map and
        # feeds the planes of its sums to the engine (``is_dw``), from the depthwise layer's
        # first channel in the engine's ROM (``dw_base``); the map reader reads the source map's
        # channels (``src_channels``), the engine the planes' (its configuration).
        fields.update({"is_dw": 1, "dw_base": unsigned(bits_for(len(plan.dw_bias)))})
    return fields

def _descriptor_values(plan, step: Step, tv: int) -> dict:
    """``{field: value}`` set by ``step``'s descriptor at time step ``tv`` (``engine``: the
    layer's :class:`LayerConfig`)."""
    mem = plan.memory
    out = {"kind": step.kind.value, "is_residual": int(step.residual is not None),
           "use_stream": int(step.source is not None)}
    if plan.depthwise:   # set by every step: no step starts the depthwise engine by accident
        out["is_dw"] = int(step.depthwise is not None)
    sink = step.sink
    if sink.spike_map is not None:
        info = mem.maps[sink.spike_map]
        out.update(heads=1, head_stride=0, dst_words=info.words)
        out.update(dst_base=info.base_at(tv), dst_stride=info.stride, dst_side=info.side,
                   dst_word_bits=info.pack * info.side,
                   dst_mask=(1 << (info.pack * info.side)) - 1)
        if step.kind is StepKind.EVENT_IN:
            out["groups"] = ceil_div(info.channels, plan.lanes)
        site = mem.sites.get(sink.spike_map)
        if site is not None:
            out.update(tbase=site.tbase, groups=site.groups)
            if plan.T > 1:
                out["mbase"] = site.mbase
    if step.kind is StepKind.LAYER:
        place = mem.layers[step.layer]
        src = mem.maps[step.source]
        out.update(sink=sink.kind.value, src_base=src.base_at(tv), src_stride=src.stride,
                   src_pack_m1=src.pack - 1, src_mask=(1 << src.side) - 1,
                   src_height=src.side, src_channels=place.config.in_channels,
                   engine=(place.config if step.bias else
                           dataclasses.replace(place.config, bias_base=plan.zero_bias_base)))
        if step.depthwise is not None:
                out.update(src_channels=src.channels,
                           dw_base=plan.depthwise[step.depthwise].base)
    if step.kind is StepKind.STEM:
        begin = next(s for s in plan.steps
                     if s.kind is StepKind.BEGIN_STEM and s.layer == step.layer)
        sink = begin.sink
        step = begin  # its stream and shifts
    if sink.stream is not None:
        read, stream = plan.stream_access[step.name]
        out.update(stream_base=plan.stream_base(stream, tv),
                   stream_read_base=plan.stream_base(read, tv),
                   stream_words=stream.words, groups=stream.groups,
                   shift_base=mem.shift_base[step.name])
    if step.kind in (StepKind.STREAM_LIF, StepKind.POOL_LIF, StepKind.RESIDUAL_LIF) \
            and step.source is not None:
        stream, _ = plan.stream_access[step.name]
        out.update(stream_base=plan.stream_base(stream, tv), stream_words=stream.words)
    if step.residual is not None:
        info = mem.maps[step.residual]
        out.update(res_base=info.base_at(tv), res_stride=info.side, res_side_m1=info.side - 1,
                   res_pack_m1=info.pack - 1, ibase=plan.identity_base[step.name])
        if step.source is None:   # a pool of spikes: the reader walks the map's positions
            out.update(stream_base=0, stream_words=info.side ** 2 * info.groups)
    if step.kind is StepKind.POOL_LIF:
        # SEW: the head's pool of counts is one pass per producer map; a pass with sink POOL
        # keeps its sums (does not fire), a pass after one adds to them (does not clear).
        index = plan.steps.index(step)
        before = plan.steps[index - 1] if index else None
        out.update(pool_more=int(sink.kind is SinkKind.POOL),
                   pool_acc=int(before is not None and before.kind is StepKind.POOL_LIF
                                and before.sink.kind is SinkKind.POOL))
    if step.kind is StepKind.SDSA:
        attn = step.attention
        block = plan.net.attention[step.source]
        q_map = mem.maps[attn.q]
        head_groups = plan.head_groups[step.source]
        out.update(sdsa=plan.attention.index(step.source),
                   q_base=q_map.base_at(tv), k_base=mem.maps[attn.k].base_at(tv),
                   src_stride=q_map.stride, src_pack_m1=q_map.pack - 1, heads=block.heads,
                   groups=head_groups, head_stride=head_groups // q_map.pack * q_map.stride,
                   sd_side_m1=q_map.side - 1)
        if plan.dense_blocks:
            d, widest = block.head_width, max(plan.head_groups.values())
            step_groups = d // plan.lanes   # a head's first group steps by this, or one more
            if step.source in plan.dense_blocks:
                # ... in a packed map: by whole words and a sub-position in the word
                words, sub = divmod(step_groups, q_map.pack)
                out.update(head_bits=d % plan.lanes, rd_stride=words * q_map.stride,
                           rd_sub=sub, rd_bits=sub * q_map.stride,
                           pack_bits=q_map.pack * q_map.stride,
                           wide_at=plan.lanes - (d - 1) % plan.lanes, head_mask=(1 << d) - 1)
            else:
                out.update(head_bits=0, rd_stride=out["head_stride"], rd_sub=0, rd_bits=0,
                           pack_bits=q_map.pack * q_map.stride, wide_at=plan.lanes,
                           head_mask=(1 << plan.lanes * widest) - 1)
        # the output map: the same heads and side, written a head at a time; its packing is
        # q's, but for a dense block, whose reader steps by ``rd_stride`` (``head_stride`` is
        # then the writer's alone)
        out_map = mem.maps[step.sink.spike_map]
        if step.source in plan.dense_blocks and out_map.side == q_map.side:
            out["head_stride"] = head_groups // out_map.pack * out_map.stride
        elif (out_map.side, out_map.pack) != (q_map.side, q_map.pack):
            raise ValueError(f"{step.name}: the output map's side and packing "
                             f"{(out_map.side, out_map.pack)} differ from q's "
                             f"{(q_map.side, q_map.pack)}")
        out["dst_words"] = head_groups // out_map.pack
        if attn.v is not None:   # SDSA-2 has no V map (its descriptors keep v_base at 0)
            out["v_base"] = mem.maps[attn.v].base_at(tv)
    return out

def _derived(state: dict) -> dict:
    """Add the decoded flags and limits that follow from ``state``'s fields."""
    kind, sink = state["kind"], state["sink"]
    state = dict(state)
    state.update(
        dst_words_m1=max(0, state["dst_words"] - 1),
        dst_words_m2=max(0, state["dst_words"] - 2),
        src_height_m1=max(0, state["src_height"] - 1),
        src_channels_m1=max(0, state["src_channels"] - 1),
        dst_side_m1=max(0, state["dst_side"] - 1),
        dst_side_m2=max(0, state["dst_side"] - 2),
        groups_m1=max(0, state["groups"] - 1),
        groups_m2=max(0, state["groups"] - 2),
        heads_m1=max(0, state["heads"] - 1),
        heads_m2=max(0, state["heads"] - 2),
        stream_words_m1=max(0, state["stream_words"] - 1),
        is_stem=int(kind == StepKind.STEM.value), is_event=int(kind == StepKind.EVENT_IN.value),
        is_layer=int(kind == StepKind.LAYER.value),
        is_stream_lif=int(kind == StepKind.STREAM_LIF.value),
        is_sdsa=int(kind == StepKind.SDSA.value), is_pool=int(kind == StepKind.POOL_LIF.value),
        is_reader=int(kind in (StepKind.STREAM_LIF.value, StepKind.POOL_LIF.value,
                               StepKind.RESIDUAL_LIF.value)),
        is_res_lif=int(kind == StepKind.RESIDUAL_LIF.value),
        sink_lif=int(sink == SinkKind.LIF.value),
        sink_stream=int(sink in (SinkKind.ADD.value, SinkKind.BEGIN.value)),
        sink_add=int(sink == SinkKind.ADD.value),
        sink_logits=int(sink == SinkKind.LOGITS.value))
    return state

def descriptor_rom(plan, layout: data.StructLayout, engine_value) -> dict[int, int]:
    """Return ``{(t << k_bits) | step index: descriptor word}``.

    The words hold ``layout``'s fields (any subset of :meth:`descriptor_fields`: the hardware
    keeps only the fields some unit reads), packed by ``layout.const``.
    ``engine_value(LayerConfig) -> int`` packs a layer's engine configuration (the engine's
    :meth:`~hw.progengine.ProgEngine.config_value`, which checks that the layer fits). In
    program order at the first time step, a field a step does not set keeps the value of the
    last step that did (the registers' previous contents); at later time steps it keeps the
    value it has at the first (no datapath reads a field its step does not set), so that only
    the bases a step sets change with ``t``. Time step ``t`` holds the steps
    ``plan.runs(t)``: never ``begin_stem`` (the stem's descriptor does its work), and the stem
    at ``t = 0`` only when the plan keeps its output (``stem_once``), so that a later time step
    begins at ``plan.runs(t)[0]``. With the layer schedule (``plan.schedule``) the words are
    the same but for ``next_k`` and ``last_step``, which follow program order (``plan.runs(0)``)
    and mark the program's last step, ``once`` (``plan.once``), ``down`` and ``next_down``
    (``plan.down`` of the step and of its ``next_k``), and the stream bases, which point at each
    time step's copy (``plan.stream_base``).
    """
    steps = plan.steps
    k_bits = Shape.cast(range(len(steps) + 1)).width  # the width of ``program_step``
    rom = {}
    state = {name: 0 for name in descriptor_fields(plan, None)}
    state["dst_words"] = 0
    first = {}   # a step's state at its first time step
    for tv in range(plan.T):
        runs = plan.runs(tv)
        for position, index in enumerate(runs):
            step = steps[index]
            values = _descriptor_values(plan, step, tv)
            if "engine" in values:
                values["engine"] = engine_value(values["engine"])
            if index in first:
                # a later time step: the fields the step does not set are those of its first
                # time step, so that only the bases it sets change with t (the sequencer then
                # decodes every other bit from the step alone: hw.sequencer.split_table)
                state = dict(first[index])
            state.update(values)
            state = _derived(state)
            first.setdefault(index, dict(state))
            if plan.schedule == "layer":
                order = plan.runs(0)
                at = order.index(index)
                following = order[at + 1] if at + 1 < len(order) else len(steps)
            else:
                following = runs[position + 1] if position + 1 < len(runs) else len(steps)
            state.update(next_k=following, last_step=int(following == len(steps)),
                         once=int(plan.once(index)), down=int(plan.down(index)),
                         next_down=int(following < len(steps) and plan.down(following)))
            group = plan.time_major
            state.update(tail=int(index in group and index != group[-1]),
                         loop=int(bool(group) and index == group[-1]),
                         loop_k=group[0] if group else 0)
            for name, member in layout:
                width = Shape.cast(member.shape).width
                if not 0 <= state[name] < (1 << width):
                    raise ValueError(f"descriptor field {name} = {state[name]} of step "
                                     f"{step.name} does not fit {width} bits")
            word = layout.const({
                name: (member.shape.from_bits(state[name])
                       if isinstance(member.shape, data.Layout) else state[name])
                for name, member in layout})
            rom[(tv << k_bits) | index] = word.as_value().value
    return rom
