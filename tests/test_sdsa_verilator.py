"""SDSA unit as Verilog on Verilator and Icarus through cocotb, against the integer golden SDSA."""

import json

import numpy as np
import pytest
from amaranth.back import verilog

from golden.config import variant as model_variant
from hw.sdsa import SDSA
from hw.sdsa_common import Variant
from sim.cases_sdsa import case_from_arrays, random_case
from sim import toolchain
from sim.streams import PATTERNS
from sim.tb.sdsa import write_cases

ALWAYS, PAUSE, SPARSE = PATTERNS["always"], PATTERNS["pause"], PATTERNS["sparse"]

#: Icarus tests skip, saying how to install it, where iverilog is missing.
NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)
DEMO_THRESHOLD = {Variant.SDSA1: 1, Variant.SDSA2: 2, Variant.SDSA3: 8, Variant.SDSA4: (8, 3)}


def demo_attention():
    """Return (tokens, head_width, heads) of the demo model's attention layers."""
    config = model_variant("demo")
    stage = 4  # block3: the first Transformer-based stage
    size = config.stage_sizes[stage]
    return size * size, config.stage_widths[stage] // config.num_heads, config.num_heads


def run_point(tmp_path, dut: SDSA, cases: dict, label: str, simulator=None) -> dict:
    """Build ``dut``, run every case of ``cases`` through it (default: Verilator, or $SIM);
    return cycles."""
    design = toolchain.build(verilog.convert(dut, name="sdsa", emit_src=False), "sdsa",
                             simulator=simulator)
    case_file = tmp_path / f"{label}.npz"
    report = tmp_path / f"{label}.json"
    write_cases(case_file, cases)
    toolchain.run(design, "sim.tb.sdsa", name=label, extra_env={
        "SDSA_VARIANT": str(dut.variant.value),
        "SDSA_TOKENS": str(dut.tokens),
        "SDSA_HEAD_WIDTH": str(dut.head_width),
        "SDSA_HEADS": str(dut.heads),
        "SDSA_THRESHOLDS": ",".join(map(str, dut.thresholds)),
        "SDSA_CASES": str(case_file),
        "SDSA_REPORT": str(report),
    })
    return json.loads(report.read_text())


def standard_cases(seed, tokens, head_width, heads, *, layers=1):
    """Firing rates 1/10/50/100 %, all-zero and all-one maps, T=2 carry, idle + backpressure."""
    print(f"SDSA stimulus seed {seed}")
    rng = np.random.default_rng(seed)
    shape = dict(tokens=tokens, head_width=head_width, heads=heads)
    layer = [0, layers - 1, layers - 1]
    cases = {}
    for rate in (0.01, 0.1, 0.5, 1.0):
        cases[f"rate_{rate}"] = (random_case(rng, steps=2, rate=rate, **shape), ALWAYS, ALWAYS)
    zeros = np.zeros((2, heads, tokens, head_width), dtype=np.uint8)
    cases["all_zero"] = (case_from_arrays(zeros, zeros, zeros), ALWAYS, ALWAYS)
    cases["all_one"] = (case_from_arrays(zeros + 1, zeros + 1, zeros + 1), ALWAYS, ALWAYS)
    cases["mixed_rates_idle_backpressure"] = (
        random_case(rng, steps=3, rate=(0.3, 0.15, 0.6), first=[1, 0, 1], layer=layer, **shape),
        PAUSE, SPARSE)
    cases["backpressure_only"] = (
        random_case(rng, steps=2, rate=0.2, layer=layer[:2], **shape), ALWAYS, PAUSE)
    return cases


def check_cycle_model(dut, cases, cycles):
    """Cases run without idle cycles or backpressure must take exactly the modelled cycles."""
    for name, (case, send, receive) in cases.items():
        if send == ALWAYS and receive == ALWAYS:
            model = dut.cycles(case.q.sum(axis=3), case.k.sum(axis=3))
            assert cycles[name] == model, f"{name}: {cycles[name]} cycles, model {model}"


@pytest.mark.verilator
# make test builds two variants (the demo's SDSA-3 and SDSA-4's mask); SDSA-1 and SDSA-2 run in
# make test-all (every variant runs every case on Amaranth's simulator in tests/test_sdsa.py)
@pytest.mark.parametrize("variant", [
    pytest.param(Variant.SDSA1, marks=pytest.mark.slow), pytest.param(Variant.SDSA2, marks=pytest.mark.slow),
    Variant.SDSA3, Variant.SDSA4], ids=lambda v: v.name)
def test_demo_attention_random(tmp_path, variant):
    """The demo model's attention shape (N, d, heads from golden.config) at every firing rate."""
    run_demo_attention(tmp_path, variant)


def run_demo_attention(tmp_path, variant, simulator=None, only=None):
    """Run the standard cases (or the one named ``only``) at the demo's attention shape."""
    tokens, head_width, heads = demo_attention()
    dut = SDSA(variant=variant, tokens=tokens, head_width=head_width, heads=heads, lanes=4,
               threshold=DEMO_THRESHOLD[variant])
    cases = standard_cases(2024 + variant.value, tokens, head_width, heads, layers=dut.layers)
    if only is not None:
        cases = {only: cases[only]}
    cycles = run_point(tmp_path, dut, cases, f"demo_{variant.name}", simulator)
    check_cycle_model(dut, cases, cycles)
    return cycles


@pytest.mark.icarus
@NEEDS_ICARUS
def test_demo_sdsa3_rate_0_1_on_icarus(tmp_path):
    """The case that hung on Icarus (docs/simulators.md): SDSA-3, demo shape, 10 % firing.

    Amaranth's Verilog left ``always @*`` blocks unevaluated at time 0 under IEEE 1800
    semantics; the first beat was taken but not counted and the unit waited forever. Few
    seconds; in the fast set as the regression test of the time-0 fix.
    """
    cycles = run_demo_attention(tmp_path, Variant.SDSA3, "icarus", only="rate_0.1")
    assert cycles == {"rate_0.1": 451}  # the same as on Verilator


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("variant", [Variant.SDSA1, Variant.SDSA2, Variant.SDSA3, Variant.SDSA4],
                         ids=lambda v: v.name)
def test_demo_attention_random_on_icarus(tmp_path, variant):
    """Every standard case of every variant on Icarus: the Verilator test's cycles, exactly."""
    run_demo_attention(tmp_path, variant, "icarus")


@pytest.mark.verilator
def test_one_token_one_channel(tmp_path):
    """N=1, d=1, one lane, threshold 1: every q, k, v combination, membranes across steps."""
    run_one_token_one_channel(tmp_path)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
def test_one_token_one_channel_on_icarus(tmp_path):
    """As test_one_token_one_channel, on Icarus."""
    run_one_token_one_channel(tmp_path, "icarus")


def run_one_token_one_channel(tmp_path, simulator=None):
    """Build and run the N=1, d=1 exhaustive cases."""
    bits = np.array([[q, k, v] for q in (0, 1) for k in (0, 1) for v in (0, 1)], dtype=np.uint8)
    q, k, v = (np.repeat(bits[:, None, i], 2, axis=1).reshape(8, 2, 1, 1) for i in range(3))
    case = case_from_arrays(q, k, v, first=[1, 0, 0, 1, 0, 0, 1, 0])
    dut = SDSA(variant=Variant.SDSA3, tokens=1, head_width=1, heads=2, threshold=1)
    cases = {"exhaustive": (case, ALWAYS, ALWAYS), "exhaustive_stalls": (case, PAUSE, SPARSE)}
    cycles = run_point(tmp_path, dut, cases, "n1_d1", simulator)
    check_cycle_model(dut, cases, cycles)


# make test-all: the odd sizes at full lanes (29 s to build and run); make test keeps SDSA-3 and
# SDSA-4 on random demo-sized inputs, one token and one channel, and the demo's own layers
@pytest.mark.verilator
@pytest.mark.slow
def test_full_lanes_odd_sizes(tmp_path):
    """d = lanes = 13 (one cycle per row), N = 7, 3 heads: widths that are not powers of two."""
    run_full_lanes_odd_sizes(tmp_path)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
def test_full_lanes_odd_sizes_on_icarus(tmp_path):
    """As test_full_lanes_odd_sizes, on Icarus."""
    run_full_lanes_odd_sizes(tmp_path, "icarus")


def run_full_lanes_odd_sizes(tmp_path, simulator=None):
    """Build and run the standard cases at N = 7, d = lanes = 13, 3 heads."""
    dut = SDSA(variant=Variant.SDSA3, tokens=7, head_width=13, heads=3, threshold=8)
    cases = standard_cases(77, 7, 13, 3)
    cycles = run_point(tmp_path, dut, cases, "odd_sizes", simulator)
    check_cycle_model(dut, cases, cycles)


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("lanes", [16, 64])
def test_realistic_attention(tmp_path, lanes):
    """N = 196 tokens (14 x 14), d = 64 (the 55M model's block3), 8 heads, T = 2."""
    seed = 196 + lanes
    print(f"SDSA stimulus seed {seed}")
    rng = np.random.default_rng(seed)
    dut = SDSA(variant=Variant.SDSA3, tokens=196, head_width=64, heads=8, lanes=lanes)
    cases = {f"rate_{rate}": (random_case(rng, tokens=196, head_width=64, heads=8, steps=2,
                                          rate=rate), ALWAYS, ALWAYS)
             for rate in (0.1, 0.3)}
    cases["backpressure"] = (random_case(rng, tokens=196, head_width=64, heads=2, steps=1,
                                         rate=0.2), PAUSE, SPARSE)
    cycles = run_point(tmp_path, dut, cases, f"realistic_lanes{lanes}")
    check_cycle_model(dut, cases, cycles)
