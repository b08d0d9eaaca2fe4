"""The vanilla shortcut in the shared network: program, plan and descriptors (no Verilator).

With ``shortcut='vanilla'`` the residual stream is spikes (``docs/arithmetic.md`` section 8): a
branch's output LIF takes ``(acc << k) + (identity if spike else 0)``, the spike being the
block's incoming one at the same channel and position. The hardware runs it as a layer that
begins a stream of its sums (``<layer>.sum``) and a ``RESIDUAL_LIF`` step that reads those sums
beside the incoming spike map (``hw.residual.SpikeFetch``) and adds the identity from its own
memory; the stem's sums begin a stream that ``downsample1_1.out_lif`` reads; the head pools the
last block's spike map. Checked here against the quantized net itself; the co-simulation
(``tests/test_shared_ablations.py``) checks the RTL against the integer golden model.
"""

import numpy as np
import pytest
import torch

from amaranth.lib import data

from hw.descriptor import descriptor_fields, descriptor_rom
from hw.params import ceil_div
from hw.plan import SharedPlan
from hw.program import Program, SinkKind, StepKind
from hw.sequencer import step_address_bits
from hw.shared import SharedNetwork
from sim.e2e import quantized
from sim.paper import make

torch.set_num_threads(1)
LANES = 16


@pytest.fixture(scope="module", params=[1, 2], ids=["T1", "T2"])
def net(request):
    return quantized(make("demo", 32, 0, request.param, "shortcut_vanilla").float().double())


def test_the_program_records_the_vanilla_walk(net):
    steps = Program(net).steps
    kinds = [step.kind for step in steps]
    assert kinds[:3] == [StepKind.STEM, StepKind.BEGIN_STEM, StepKind.STREAM_LIF]
    assert steps[2].name == "downsample1_1.out_lif" and steps[2].source == "downsample1_1"
    residual = [step for step in steps if step.kind is StepKind.RESIDUAL_LIF]
    # one per branch: SepConv and channel mixer of each Conv block, attention and MLP of each
    # Transformer block
    assert len(residual) == 2 * sum(net.cfg.depths)
    for step in residual:
        layer = net.layers[step.layer]
        assert layer.identity is not None and step.residual == layer.shortcut_from
        begin = steps[steps.index(step) - 1]     # the layer right before begins its sums
        assert (begin.kind, begin.layer, begin.sink.kind, begin.sink.target) == (
            StepKind.LAYER, step.layer, SinkKind.BEGIN, step.source)
        assert step.source == f"{step.layer}.sum"
    pool = next(step for step in steps if step.kind is StepKind.POOL_LIF)
    assert pool.source is None and pool.residual == residual[-1].name
    assert not any(step.kind is StepKind.LAYER and step.sink.kind is SinkKind.ADD
                   for step in steps)


def test_the_plan_places_the_sums_and_the_identities(net):
    plan = SharedPlan(net, LANES, pack_weights=False)
    mem = plan.memory
    assert plan.residual
    sums = {name: place for name, place in mem.streams.items() if name.endswith(".sum")}
    assert len({place.base for place in sums.values()}) == 1      # one shared place
    stem = mem.streams["downsample1_1"]
    assert stem.base == 0 and list(sums.values())[0].base == stem.words
    kept = stem.words if plan.stem_once else 0      # T > 1: the stem's output kept
    assert mem.stream_depth == stem.words + max(p.words for p in sums.values()) + kept
    for name, place in sums.items():
        layer = name.removesuffix(".sum")
        channels = np.asarray(net.layers[layer].weight).shape[0]
        assert place.groups == ceil_div(channels, LANES)
        assert place.words == plan.sizes[layer.split(".")[0]] ** 2 * place.groups
    # the identity memory: each residual step's identities per channel, a pool's ones
    bits = plan.identity_bits
    for step in plan.steps:
        if step.residual is None:
            continue
        base = plan.identity_base[step.name]
        if step.kind is StepKind.RESIDUAL_LIF:
            want = [int(v) for v in net.layers[step.layer].identity]
        else:
            want = [1] * mem.maps[step.residual].channels
        groups = ceil_div(len(want), LANES)
        assert base % (1 << (groups - 1).bit_length()) == 0       # ibase | g == ibase + g
        got = []
        for g in range(groups):
            word = plan.identity_words[base + g]
            got += [(word >> (lane * bits)) & ((1 << bits) - 1) for lane in range(LANES)]
        assert got[:len(want)] == want and not any(got[len(want):]), step.name
    assert max(int(v) for s in plan.steps if s.kind is StepKind.RESIDUAL_LIF
               for v in net.layers[s.layer].identity).bit_length() == bits


def test_the_descriptors_of_the_residual_steps(net):
    plan = SharedPlan(net, LANES, pack_weights=False)
    mem = plan.memory
    layout = data.StructLayout(descriptor_fields(plan, 1))   # every field; the engine's: 1 bit
    rom = descriptor_rom(plan, layout, lambda config: 0)
    k_bits = step_address_bits(len(plan.steps))
    for (address, word) in rom.items():
        t, k = address >> k_bits, address & ((1 << k_bits) - 1)
        step = plan.steps[k]
        d = layout.from_bits(word)
        assert int(d.is_residual) == int(step.residual is not None), step.name
        assert int(d.is_res_lif) == int(step.kind is StepKind.RESIDUAL_LIF), step.name
        if step.residual is None:
            continue
        info = mem.maps[step.residual]
        assert int(d.res_base) == info.base + t * info.step_words, (t, step.name)
        assert (int(d.res_stride), int(d.res_side_m1), int(d.res_pack_m1)) == (
            info.side, info.side - 1, info.pack - 1)
        assert int(d.ibase) == plan.identity_base[step.name]
        assert int(d.is_reader) == 1
        if step.kind is StepKind.RESIDUAL_LIF:
            place = mem.streams[step.source]
            assert int(d.use_stream) == 1
            assert (int(d.stream_base), int(d.stream_words)) == (place.base, place.words)
        else:   # the pool of spikes walks the map's positions, with no stream word
            assert int(d.use_stream) == 0
            assert int(d.stream_words) == info.side ** 2 * info.groups


def test_the_membrane_design_has_no_residual_hardware():
    """The membrane shortcut's descriptor has none of the vanilla fields (its Verilog is the
    same as before the vanilla shortcut was built)."""
    membrane = quantized(make("demo", 32, 0, 1).float().double())
    dut = SharedNetwork(membrane, lanes=LANES)
    assert not dut.plan.residual and dut.plan.identity_words == []
    names = {name for name, _ in dut.descriptor_layout(1)}
    assert not names & {"is_residual", "is_res_lif", "use_stream", "res_base", "ibase"}
