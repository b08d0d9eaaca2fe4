"""The SEW shortcut in the shared network: program, plan and descriptors (no Verilator).

With ``shortcut='sew'`` the residual stream holds spike counts: the downsampler's ``out_lif``
spikes, plus one for every branch output LIF that fired since (``docs/arithmetic.md``). The
hardware keeps no counts: a count is the sum of the spike maps its producers wrote, and a
convolution is linear, so a layer on counts runs once per producer map, the first pass
beginning a stream of sums with the bias, the others adding into it without it, and a stream
LIF fires on the sums; the head pools the counts one producer map a pass. Checked here against
the quantizer's own bounds and the integer golden model's accumulators; the co-simulation
(``tests/test_shared_ablations.py``) checks the RTL against the integer golden model.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amaranth.lib import data

from hw.descriptor import descriptor_fields, descriptor_rom
from hw.plan import SharedPlan
from hw.program import Program, SinkKind, StepKind
from hw.sequencer import step_address_bits
from hw.shared import SharedNetwork
from quant.intmodel import IntegerModel
from sim.e2e import quantized, select_inputs
from sim.paper import make

torch.set_num_threads(1)
LANES = 16


@pytest.fixture(scope="module", params=[1, 2], ids=["T1", "T2"])
def net(request):
    return quantized(make("demo", 32, 0, request.param, "shortcut_sew").float().double())


def passes_of(steps):
    """``{layer: [its LAYER steps]}`` for the layers that run in passes (on counts)."""
    out = {}
    for step in steps:
        if step.kind is StepKind.LAYER and step.sink.stream is not None:
            out.setdefault(step.layer, []).append(step)
    return out


def test_the_program_runs_a_layer_on_counts_once_per_producer(net):
    steps = Program(net).steps
    passes = passes_of(steps)
    on_counts = {name for name, layer in net.layers.items() if layer.kind == "counts"}
    assert set(passes) == on_counts and on_counts
    for name, runs in passes.items():
        # as many passes as the quantizer's largest count on this layer's input
        assert len(runs) == net.layers[name].input_max, name
        assert [(s.sink.kind, s.bias) for s in runs] == (
            [(SinkKind.BEGIN, True)] + [(SinkKind.ADD, False)] * (len(runs) - 1))
        assert {s.sink.target for s in runs} == {f"{name}.sum"}
        assert len({s.source for s in runs}) == len(runs)        # distinct producer maps
        after = steps[steps.index(runs[-1]) + 1]
        assert (after.kind, after.source) == (StepKind.STREAM_LIF, f"{name}.sum")
        for s in runs:
            assert steps.index(s) > max(k for k, p in enumerate(steps)
                                        if p.sink.spike_map == s.source)   # written before
    pools = [s for s in steps if s.kind is StepKind.POOL_LIF]
    assert [s.sink.kind for s in pools] == [SinkKind.POOL] * (len(pools) - 1) + [SinkKind.MAP]
    assert len(pools) == len(net.streams[list(net.streams)[-1]].producers)
    assert all(s.source is None and s.residual for s in pools)
    assert not any(s.kind is StepKind.RESIDUAL_LIF for s in steps)


def test_the_passes_sum_to_the_integer_models_accumulators(net):
    """The passes' arithmetic in numpy on the integer model's own spike maps (the first with
    the bias, the others without) equals its accumulator of the conv on counts, and the head's
    pool passes sum to its pool of counts: the decomposition the hardware runs is exact."""
    model = IntegerModel(net)
    images = select_inputs(net, 1, "random", 0).images
    _, trace = model.forward(model.quantize_input(images), trace=True)
    steps = Program(net).steps
    for name, runs in passes_of(steps).items():
        layer = net.layers[name]
        weight = torch.from_numpy(np.asarray(layer.weight, dtype=np.int64)).double()
        total = 0
        for s in runs:
            spikes = trace.spikes[s.source]
            spikes = spikes.reshape(spikes.shape[0] * spikes.shape[1], *spikes.shape[2:])
            if spikes.dim() == 3:   # a token LIF's [T*B, C, N] back to the map
                side = int(round(spikes.shape[-1] ** 0.5))
                spikes = spikes.reshape(*spikes.shape[:2], side, side)
            out = F.conv2d(spikes.double(), weight, None, layer.stride, layer.padding)
            if s.bias:
                out = out + torch.from_numpy(np.asarray(layer.bias)).double().view(-1, 1, 1)
            total = total + out.round().long()
        want = trace.accumulators[name]
        assert torch.equal(total.reshape(want.shape), want), name
    pools = [s for s in steps if s.kind is StepKind.POOL_LIF]
    pooled = sum(trace.spikes[s.residual].long().flatten(3).sum(3) for s in pools)
    counts = trace.streams[net.streams[list(net.streams)[-1]].producers[-1]]
    assert torch.equal(pooled, counts.flatten(3).sum(3))


def test_the_plan_and_descriptors_of_the_passes(net):
    plan = SharedPlan(net, LANES, pack_weights=False)
    mem = plan.memory
    assert plan.pool_passes and plan.residual
    # no stream of counts has a place; the first one's name holds the stem's sums, which
    # ``downsample1_1.out_lif`` reads
    assert all(s.counts for s in net.streams.values())
    assert [name for name in net.streams if name in mem.streams] == ["downsample1_1"]
    assert mem.streams["downsample1_1"].bits == net.lifs["downsample1_1.out_lif"].input_bits
    # every layer is placed once; the passes without the bias read zero bias words
    zero = plan.zero_bias_base
    groups = max(mem.layers[s.layer].config.groups for s in plan.steps
                 if s.kind is StepKind.LAYER and not s.bias)
    assert plan.bias_words[zero:zero + groups] == [0] * groups
    assert all(place.config.bias_base + place.config.groups <= zero
               for place in mem.layers.values())
    layout = data.StructLayout(descriptor_fields(plan, 1))
    configs = []
    rom = descriptor_rom(plan, layout, lambda config: configs.append(config) or 0)
    k_bits = step_address_bits(len(plan.steps))
    layers = iter(configs)
    for address in sorted(rom, key=lambda a: (a >> k_bits, plan.runs(a >> k_bits).index(
            a & ((1 << k_bits) - 1)))):
        step = plan.steps[address & ((1 << k_bits) - 1)]
        d = layout.from_bits(rom[address])
        if step.kind is StepKind.LAYER:
            config = next(layers)
            want = mem.layers[step.layer].config
            assert config.bias_base == (want.bias_base if step.bias else zero), step.name
            assert config.weight_base == want.weight_base
        if step.kind is StepKind.POOL_LIF:
            k = plan.steps.index(step)
            assert int(d.pool_more) == int(step.sink.kind is SinkKind.POOL), step.name
            assert int(d.pool_acc) == int(plan.steps[k - 1].kind is StepKind.POOL_LIF)
            info = mem.maps[step.residual]
            assert int(d.res_base) == info.base_at(address >> k_bits)
            assert int(d.use_stream) == 0


def test_the_other_designs_have_no_pool_passes():
    """Without SEW the descriptor has no pass fields (the Verilog is the same as before)."""
    for ablation in (None, "shortcut_vanilla"):
        other = quantized(make("demo", 32, 0, 1, ablation).float().double())
        dut = SharedNetwork(other, lanes=LANES)
        assert not dut.plan.pool_passes and dut.plan.zero_bias_base is None
        names = {name for name, _ in dut.descriptor_layout(1)}
        assert not names & {"pool_more", "pool_acc"}


def test_the_layer_schedule_runs_the_passes_time_major(net):
    """The head pool keeps one time step's sums in registers across its passes, so under the
    layer schedule at T > 1 its passes and its LIF run as a time-major group: every pass of a
    time step before the next time step's; every other step layer-major. At T = 1 both orders
    are the same."""
    layer, time = SharedPlan(net, LANES, schedule="layer"), SharedPlan(net, LANES)
    if net.cfg.T == 1:
        assert layer.visits() == time.visits() and layer.time_major == ()
        return
    group = layer.time_major
    assert [layer.steps[k].sink.kind for k in group[:-1]] == [SinkKind.POOL] * (len(group) - 1)
    assert layer.steps[group[-1]].sink.spike_map is not None   # the pool's LIF ends the group
    visits = layer.visits()
    assert sorted(visits) == sorted(time.visits())
    inside = [(t, k) for t, k in visits if k in group]
    assert inside == [(t, k) for t in range(net.cfg.T) for k in group]
    start = visits.index(inside[0])
    assert visits[start:start + len(inside)] == inside   # one run of visits
    outside = [k for _, k in visits if k not in group]
    assert outside == sorted(outside)
