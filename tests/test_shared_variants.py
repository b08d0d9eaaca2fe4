"""Every SDSA operator in the shared network (``hw.shared``): SDSA-1, SDSA-2, SDSA-3 and SDSA-4.

Random demo-sized models (``sim.e2e.demo_model(T, "random", 0, sdsa=N)``: the demo's shape with
operator N, batch norms calibrated so that every LIF fires) on the seeded random image
``select_inputs(net, 1, "random", 0)``.

* Fast (no Verilator): the firing rates of every map at T=1 and T=4; the plan (the program's
  SDSA steps name Q, K and V maps, SDSA-2 no V; the descriptor holds ``v_base`` only where a V
  map exists); the elaborated design (one SDSA unit per block, of the model's operator, with the
  block's shape and integer threshold; the map reader feeds q, k and v rows, or q and k); no
  multiplier in the units the operator changes; the cycle model's SDSA step against the
  schedule worked out by hand from the RTL.
* Slow (Verilator, ``make test-all``): bit-exact at T=1 and T=4 against the integer golden
  model, and every step's cycles equal to the cycle model's (``sim.perf``).
"""

import re

import pytest
import torch
from amaranth.back import rtlil
from amaranth.hdl import Fragment, Shape

from hw.mapreader import SpikeMapReader
from hw.program import StepKind
from hw.progengine import ProgEngine
from hw.sdsa import SDSA, Variant
from hw.shared import SharedNetwork
from quant.intmodel import IntegerModel
from sim.e2e import prepare, select_inputs
from sim.perf import CycleModel, map_spikes
from subsets import every_nth

torch.set_num_threads(1)

VARIANTS = (1, 2, 3, 4)
MUL = re.compile(r"^\s*cell \$mul\b", re.MULTILINE)

_NETWORKS = {}


def network(sdsa: int, T: int):
    """The random demo-sized model of operator ``sdsa`` at ``T``, quantized (cached)."""
    if (sdsa, T) not in _NETWORKS:
        _NETWORKS[sdsa, T] = prepare(T, "random", sdsa=sdsa, seed=0)
    return _NETWORKS[sdsa, T]


def traced(sdsa: int, T: int):
    """The integer golden model's trace of the random image (cached)."""
    if (sdsa, T, "trace") not in _NETWORKS:
        net = network(sdsa, T).net
        inputs = select_inputs(net, 1, "random", 0)
        integer = IntegerModel(net)
        _NETWORKS[sdsa, T, "trace"] = integer.forward(integer.quantize_input(inputs.images),
                                                      trace=True)[1]
    return _NETWORKS[sdsa, T, "trace"]


def design(sdsa: int, T: int) -> SharedNetwork:
    """The shared network of the model (cached; a new one is elaborated by each test)."""
    if (sdsa, T, "design") not in _NETWORKS:
        _NETWORKS[sdsa, T, "design"] = SharedNetwork(network(sdsa, T).net, lanes=16)
    return _NETWORKS[sdsa, T, "design"]


def origins(fragment, kind):
    """Every elaboratable of class ``kind`` in an elaborated design's hierarchy."""
    found = [obj for obj in getattr(fragment, "origins", None) or () if isinstance(obj, kind)]
    for sub, _name, _src in getattr(fragment, "subfragments", ()):
        found += origins(sub, kind)
    return found


@pytest.mark.parametrize("sdsa", VARIANTS)
def test_every_map_fires(sdsa):
    """Every spike map the network writes fires between 1 % and 50 % at T=1 and T=4 (the
    SDSA-1/2 attention map: the masked Q rows; their channel masks too)."""
    for T in (1, 4):
        net = network(sdsa, T).net
        trace = traced(sdsa, T)
        for lif in trace.spikes:
            rate = float(map_spikes(net, trace, lif).float().mean())
            assert 0.01 <= rate <= 0.5, (sdsa, T, lif, rate)
            mask = float(trace.spikes[lif].float().mean())
            assert 0.01 <= mask <= 0.5, (sdsa, T, lif, "spikes", mask)


# make test: two of the operators (every one builds in make test-all)
@pytest.mark.parametrize("sdsa", every_nth(VARIANTS, 2))
def test_design_builds_the_operator(sdsa):
    net = network(sdsa, 4).net
    dut = design(sdsa, 4)
    plan = dut.plan
    assert plan.sdsa == sdsa and plan.sdsa_reads_v == (sdsa != 2)
    steps = [step for step in plan.steps if step.kind is StepKind.SDSA]
    assert [step.source for step in steps] == plan.attention == list(net.attention)
    for step in steps:
        prefix = step.source
        assert step.attention.q == f"{prefix}.q_lif" and step.attention.k == f"{prefix}.k_lif"
        assert step.attention.v == (None if sdsa == 2 else f"{prefix}.v_lif")
        assert all(name in plan.memory.maps for name in (step.attention.q, step.attention.k))
    elaborated = Fragment.get(dut, None)
    engine, = origins(elaborated, ProgEngine)
    layout = dut.descriptor_layout(engine.config.shape())
    assert ("v_base" in {name for name, _ in layout}) == (sdsa != 2)
    units = origins(elaborated, SDSA)
    assert len(units) == len(net.attention) == 2
    for unit, attn in zip(units, net.attention.values()):
        assert unit.variant == Variant(sdsa) == Variant(attn.sdsa)
        assert (unit.tokens, unit.head_width, unit.heads) == (attn.tokens, attn.head_width,
                                                              attn.heads)
        assert unit.lanes == unit.head_width and unit.chunks == 1
        # SDSA-4: the block's threshold in both words of the unit's threshold memory (a
        # one-word memory would make the ``layer`` field 0 bits wide, which Verilator rejects).
        assert unit.thresholds == ((attn.threshold,) * 2 if sdsa == 4 else (attn.threshold,))
        fields = dict(unit.i.payload.shape())
        assert ("v" in fields) == (sdsa != 2)
        # No field 0 bits wide: Amaranth emits one as a [-1:0] vector, which Verilator rejects.
        assert all(Shape.cast(field.shape).width > 0 for field in fields.values()), fields
    if sdsa == 4:   # the learned thresholds differ per block (and from SDSA-3's 8)
        assert len({unit.threshold for unit in units}) == 2
    readers = origins(elaborated, SpikeMapReader)
    assert len(readers) == 1
    rows = [name for name, _ in readers[0].sdsa.payload.shape()]
    assert rows == (["q", "k"] if sdsa == 2 else ["q", "k", "v"])
    # What the operator changes adds, never multiplies (tests/test_no_multipliers.py: the
    # whole network's netlist is too slow to convert per operator here).
    for unit in units:
        assert not MUL.search(rtlil.convert(unit, name="sdsa"))


#: An SDSA step of the demo's shape (4 heads of 4 tokens, one chunk) worked out by hand from the
#: RTL: SDSA-1/2 take a token whenever the feed offers one (7 cycles apart, 6 for SDSA-2's q/k
#: feed), the first 7 (6) after the start; a head's LIF and Q pass (1 + 1 + 4 cycles) end before
#: the next head's first token is offered; the last output beat 1 + 1 + 4 - 1 + 2 cycles after
#: the last take, its row written a cycle later; 2 sequencer cycles before the start and after.
HAND = {1: 2 + (7 + 15 * 7 + 7 + 1) + 2, 2: 2 + (6 + 15 * 6 + 7 + 1) + 2}


@pytest.mark.parametrize("sdsa", VARIANTS)
def test_cycle_model_sdsa_step(sdsa):
    for T in (1, 4):
        model = CycleModel(design(sdsa, T).plan)
        trace = traced(sdsa, T)
        steps = [step for step in model.steps if step.kind is StepKind.SDSA]
        cycles = [model.step_cycles(step, trace, t, 0) for t in range(T) for step in steps]
        if sdsa in HAND:   # no term depends on the spikes
            assert cycles == [HAND[sdsa]] * (2 * T)
        else:              # data-dependent, and at least the feed of 16 tokens
            assert min(cycles) > 16 * 7 and len(set(cycles)) > 1


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("sdsa", VARIANTS)
def test_variant_bit_exact_on_verilator(sdsa, T, tmp_path):
    """The random SDSA-``sdsa`` model on Verilator: logits and every map's spikes `==` the integer
    golden model's, and every step's cycles equal to the cycle model's."""
    from sim.e2e import simulate, totals

    prepared = network(sdsa, T)
    summary = simulate(prepared, select_inputs(prepared.net, 1, "random", 0), tmp_path)
    print(f"SDSA-{sdsa} T={T}: cycles {[r['cycles'] for r in summary['rtl']]}, predicted "
          f"{[r.get('predicted_cycles') for r in summary['rtl']]}, "
          f"build {summary['build_s']:.0f} s")
    assert summary["error"] is None, summary["error"]
    assert len(summary["rtl"]) == 1 and all(r["match"] for r in summary["rtl"])
    assert summary["rtl_pred"] == summary["int_pred"]
    total = totals(summary)
    assert total["model_within_targets"], total
    assert all(r["predicted_cycles"] == r["cycles"] for r in summary["rtl"])
    inexact = [(row["name"], row["cycles"], row["predicted_cycles"]) for row in summary["report"]
               if row["cycles"] != row["predicted_cycles"]]
    assert not inexact, inexact
    sdsa_steps = [row for row in summary["report"] if row["kind"] == "sdsa"]
    assert len(sdsa_steps) == 2 and all(row["cycles"] > 0 for row in sdsa_steps)
