"""SDSA edges the stream tests leave open: the cost model's ideal and dense cycle counts, the
documented default thresholds, the minimal register widths, and the payload bit layout.
Written to kill mutants `python -m tests.mutate --files hw/sdsa.py` found surviving."""

import random

import numpy as np
import pytest

from hw.sdsa import SDSA
from hw.sdsa_common import Variant, sdsa_input_layout, sdsa_output_layout


def offsets(layout):
    return {name: (field.offset, field.width) for name, field in layout}


def test_ideal_and_dense_cycles_by_hand():
    # SDSA-3/4: (K + Q spikes) * d / lanes additions; dense: 2 * N * d row additions of 2 chunks.
    matmul = SDSA(variant=3, tokens=4, head_width=8, lanes=4)
    assert matmul.ideal_cycles(q_spikes=3, k_spikes=5) == 16
    assert matmul.dense_cycles() == 2 * 4 * 8 * 2 == 128
    assert SDSA(variant=4, tokens=4, head_width=8, lanes=8).ideal_cycles(1, 2) == 3
    # SDSA-1: one increment per set bit of K AND V; SDSA-2: per K spike; dense: N * chunks.
    v1 = SDSA(variant=1, tokens=5, head_width=6, lanes=4)
    assert v1.ideal_cycles(q_spikes=9, k_spikes=7, v_spikes=3, kv_spikes=10) == 2.5
    assert v1.dense_cycles() == 5 * 2
    v2 = SDSA(variant=2, tokens=5, head_width=6, lanes=4)
    assert v2.ideal_cycles(q_spikes=9, k_spikes=6, kv_spikes=10) == 1.5
    assert v2.dense_cycles() == 10


@pytest.mark.parametrize("variant, threshold", [(1, 1), (2, 1), (3, 8), (4, (8,))])
def test_default_thresholds(variant, threshold):
    """V1's channel neuron (theta 0.5 on counts of scale 1): 1; SDSA-3's * 0.125 then theta 0.5:
    8; SDSA-4 starts at SDSA-3's value."""
    dut = SDSA(variant=variant, tokens=4, head_width=4)
    assert dut.thresholds == (threshold if isinstance(threshold, tuple) else (threshold,))


def test_minimal_widths_matmul():
    """N=4, d=8: counts up to N*d = 32 (6 bits), K^T V entries up to 4 (3 bits); threshold 8
    leaves membranes up to (8-1)>>1 = 3 (2 bits); thresholds up to 2*32-1 = 63 (6 bits)."""
    dut = SDSA(variant=3, tokens=4, head_width=8, lanes=4)
    assert (dut.max_count, dut.count_width, dut.kv_width, dut.membrane_width,
            dut.threshold_width, dut.chunks, dut.layers) == (32, 6, 3, 2, 6, 2, 1)
    assert dut.latency == 2 + 3
    # SDSA-4: any threshold up to 63 may be written, so membranes up to 31 (5 bits).
    four = SDSA(variant=4, tokens=4, head_width=8, lanes=3, threshold=(8, 20))
    assert (four.membrane_width, four.threshold_width, four.chunks, four.layers) == (5, 6, 3, 2)
    assert four.latency == 3 + 3


def test_minimal_widths_column_sum():
    """N=5: column sums up to 5 (3 bits); threshold 1 leaves no membrane (0 bits)."""
    dut = SDSA(variant=1, tokens=5, head_width=6, lanes=4)
    assert (dut.max_count, dut.count_width, dut.membrane_width, dut.threshold_width,
            dut.chunks) == (5, 3, 0, 4, 2)
    assert dut.latency == 2
    dut = SDSA(variant=2, tokens=5, head_width=6, threshold=6)
    assert (dut.membrane_width, dut.chunks) == (2, 1)


def test_payload_bit_layouts():
    assert offsets(sdsa_input_layout(6, variant=1)) == {
        "q": (0, 6), "k": (6, 6), "v": (12, 6), "first": (18, 1)}
    assert offsets(sdsa_input_layout(6, variant=2)) == {"q": (0, 6), "k": (6, 6), "first": (12, 1)}
    assert offsets(sdsa_input_layout(6, variant=3)) == {
        "q": (0, 6), "k": (6, 6), "v": (12, 6), "first": (18, 1)}
    for layers, bits in [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3)]:
        assert offsets(sdsa_input_layout(6, variant=4, layers=layers))["layer"] == (19, bits)
    assert offsets(sdsa_input_layout(6, variant=4))["layer"] == (19, 0)  # one layer by default
    assert offsets(sdsa_output_layout(6)) == {"spikes": (0, 6)}


def test_sdsa4_takes_one_int_threshold_as_one_layer():
    dut = SDSA(variant=4, tokens=4, head_width=4, threshold=12)
    assert dut.thresholds == (12,) and dut.layers == 1


# The cycle model against the simulated unit, beyond test_sdsa's random SDSA-3/4 cases: the
# column-sum variants, and hand-made schedules where its corner terms decide the count.
from sim.cases_sdsa import case_from_arrays, random_case  # noqa: E402
from test_sdsa import check, simulate_sdsa, unit  # noqa: E402  (the suite's harness; tests/ is on sys.path)


def measured_equals_model(dut, case, label):
    cycles = check(dut, case, label)
    model = dut.cycles(case.q.sum(axis=3), case.k.sum(axis=3))
    assert cycles == model, f"{label}: measured {cycles} cycles, model says {model}"


@pytest.mark.parametrize("variant", [Variant.SDSA1, Variant.SDSA2], ids=lambda v: v.name)
@pytest.mark.parametrize("lanes", [2, 5])
def test_cycle_model_exact_column_sum(variant, lanes):
    case = random_case(np.random.default_rng(60 + lanes), tokens=5, head_width=5, heads=2,
                       steps=2, rate=0.3)
    measured_equals_model(unit(variant, tokens=5, head_width=5, heads=2, lanes=lanes,
                               threshold=2), case, f"{variant.name} lanes {lanes}")


def rows(spec, d):
    """[steps, heads, N, d] spike rows from per-row set-bit counts (lowest channels set)."""
    counts = np.asarray(spec)
    out = np.zeros(counts.shape + (d,), dtype=np.uint8)
    for index in np.ndindex(counts.shape):
        out[index][:counts[index]] = 1
    return out


@pytest.mark.parametrize("variant", [Variant.SDSA3, Variant.SDSA4], ids=lambda v: v.name)
@pytest.mark.parametrize("lanes", [2, 8])
@pytest.mark.parametrize("name, q, k", [
    # Empty Q rows: the LIF (chunks cycles a token) is the bottleneck, then the next head's
    # first K row is empty and must wait for stage 1 to be released.
    ("lif-bound, empty first K", [[[0, 0, 0, 0], [1, 0, 0, 0]]], [[[2, 1, 0, 3], [0, 2, 1, 0]]]),
    # The same, the next head's K rows all empty: its last (empty) row waits for stage 1.
    ("lif-bound, empty K head", [[[0, 0, 0, 0], [1, 0, 0, 0]]], [[[2, 1, 0, 3], [0, 0, 0, 0]]]),
    ("lif-bound, one K", [[[0, 0, 0, 0], [0, 0, 0, 0]]], [[[0, 0, 0, 1], [0, 0, 0, 0]]]),
    # Empty last K rows (an empty row ending the head still takes its cycle), dense Q.
    ("empty last K", [[[8, 8, 8, 8], [3, 0, 8, 1]]], [[[1, 0, 0, 0], [0, 0, 0, 0]]]),
    # Two steps, single token-wide bursts.
    ("bursts", [[[0, 8, 0, 0], [8, 0, 0, 8]], [[0, 0, 0, 1], [1, 0, 0, 0]]],
     [[[8, 0, 0, 8], [0, 0, 8, 0]], [[0, 0, 0, 0], [0, 1, 0, 0]]]),
])
def test_cycle_model_exact_at_the_edges(variant, lanes, name, q, k):
    q, k = rows(q, 8), rows(k, 8)
    v = np.ones_like(q)
    case = case_from_arrays(q, k, v)
    dut = unit(variant, tokens=4, head_width=8, heads=2, lanes=lanes, threshold=4)
    measured_equals_model(dut, case, f"{name} lanes {lanes}")


def test_threshold_property_and_ideal_cycles_defaults():
    assert SDSA(variant=3, tokens=4, head_width=4, threshold=5).threshold == 5
    assert SDSA(variant=4, tokens=4, head_width=4, threshold=(6, 9)).threshold == 6
    # SDSA-1 counts K AND V spikes only: none given, no additions.
    assert SDSA(variant=1, tokens=4, head_width=4).ideal_cycles(q_spikes=5, k_spikes=5) == 0


@pytest.mark.parametrize("lanes", [1, 8])
def test_cycle_model_exact_one_token(lanes):
    """N = 1 with empty rows: the LIF's first token is not held back by a previous one."""
    for q, k in ([0, 0], [1, 0], [0, 8], [8, 8]):
        case = case_from_arrays(rows([[[q]], [[q]]], 8), rows([[[k]], [[k]]], 8),
                                np.ones((2, 1, 1, 8), dtype=np.uint8))
        measured_equals_model(SDSA(variant=3, tokens=1, head_width=8, lanes=lanes, threshold=2),
                              case, f"N=1 q={q} k={k} lanes {lanes}")


@pytest.mark.parametrize("variant", [Variant.SDSA1, Variant.SDSA2, Variant.SDSA3, Variant.SDSA4],
                         ids=lambda v: v.name)
@pytest.mark.parametrize("heads", [3, 4])
def test_first_and_layer_read_only_on_a_steps_first_beat(variant, heads):
    """`first` (and SDSA-4's `layer`) are read on the first beat of each time step only: the
    other beats of the step may carry anything."""
    from sim.cases_sdsa import bits_row, expected_spikes, input_payloads  # noqa: PLC0415
    from sim.streams import run_stream  # noqa: PLC0415

    # 4 heads: a head counter that wraps early shows; 3 heads (not a power of two): one that
    # wraps late, past its natural wrap, shows.
    tokens, steps = 3, 4
    case = random_case(np.random.default_rng(90), tokens=tokens, head_width=4, heads=heads,
                       steps=steps, rate=0.5, first=[1, 0, 1, 0], layer=[1, 0, 0, 1])
    threshold = (3, 6) if variant == Variant.SDSA4 else 3
    dut = SDSA(variant=variant, tokens=tokens, head_width=4, heads=heads, lanes=2,
               threshold=threshold)
    beats = input_payloads(case, variant)
    for number, beat in enumerate(beats):
        if number % (tokens * heads):          # not a step's first beat: flip the flags
            beat["first"] ^= 1
            if "layer" in beat:
                beat["layer"] ^= 1
    layout = sdsa_input_layout(4, variant=variant, layers=dut.layers)
    received = run_stream(dut, [layout.const(b) for b in beats], len(beats)).payloads
    got = np.array([bits_row(int(p.spikes), 4) for p in received]).reshape(case.q.shape)
    assert np.array_equal(got, expected_spikes(case, variant, dut.thresholds))


@pytest.mark.parametrize("variant", [Variant.SDSA1, Variant.SDSA2, Variant.SDSA3, Variant.SDSA4],
                         ids=lambda v: v.name)
def test_payload_ignored_while_not_valid(variant):
    """Idle cycles on the input with random garbage on the payload wires (not the last beat
    held, sim.streams' default) and a receiver that pauses: the same spikes, and each stalled
    output beat holds."""
    from sim.cases_sdsa import bits_row, expected_spikes, input_payloads  # noqa: PLC0415
    from sim.streams import run_stream  # noqa: PLC0415

    tokens, heads = 4, 2
    case = random_case(np.random.default_rng(91), tokens=tokens, head_width=5, heads=heads,
                       steps=2, rate=0.4, first=[1, 0], layer=[1, 0])
    threshold = (2, 5) if variant == Variant.SDSA4 else 2
    dut = SDSA(variant=variant, tokens=tokens, head_width=5, heads=heads, lanes=2,
               threshold=threshold)
    layout = sdsa_input_layout(5, variant=variant, layers=dut.layers)
    beats = [layout.const(b) for b in input_payloads(case, variant)]
    garbage = random.Random(92)
    # One-cycle gaps, and long gaps that let the pipeline run dry mid-head.
    for offer in (lambda c: c % 3 != 1, lambda c: c % 7 < 2):
        run = run_stream(dut, beats, len(beats), send_pattern=offer,
                         receive_pattern=lambda c: c % 4 != 3,
                         idle=lambda c: garbage.getrandbits(layout.size))
        assert run.stalls > 0
        got = np.array([bits_row(int(p.spikes), 5) for p in run.payloads]).reshape(case.q.shape)
        assert np.array_equal(got, expected_spikes(case, variant, dut.thresholds))



@pytest.mark.parametrize("variant", [Variant.SDSA1, Variant.SDSA2, Variant.SDSA3, Variant.SDSA4],
                         ids=lambda v: v.name)
@pytest.mark.parametrize("heads", [1, 2])
def test_one_token_samples_clear_the_membranes(variant, heads):
    """N = 1: a new sample (`first`) must clear the carried membranes, at thresholds the carried
    membrane decides."""
    case = random_case(np.random.default_rng(93 + heads), tokens=1, head_width=4, heads=heads,
                       steps=8, rate=0.6, first=[1, 0, 0, 1, 0, 1, 0, 0])
    threshold = 3 if variant in (Variant.SDSA3, Variant.SDSA4) else 1  # N = 1: counts <= 1
    check(unit(variant, tokens=1, head_width=4, heads=heads, lanes=3, threshold=threshold),
          case, f"N=1 heads {heads}")


@pytest.mark.parametrize("tokens, lanes, q, k", [
    # A head whose K rows are all empty after a LIF-bound head: its last empty row waits for
    # stage 1 to be released (the model's `token == n - 1` term).
    (3, 2, [[1, 8, 0], [1, 1, 0]], [[0, 8, 1], [0, 0, 0]]),
    (1, 1, [[1], [0], [1]], [[0], [0], [0]]),
])
def test_cycle_model_exact_empty_k_head_after_lif_bound_head(tokens, lanes, q, k):
    case = case_from_arrays(rows([q], 8), rows([k], 8), np.ones((1, len(q), tokens, 8), np.uint8))
    dut = SDSA(variant=3, tokens=tokens, head_width=8, heads=len(q), lanes=lanes, threshold=4)
    measured_equals_model(dut, case, f"N={tokens} lanes {lanes}")


@pytest.mark.parametrize("variant", [Variant.SDSA3, Variant.SDSA4], ids=lambda v: v.name)
def test_one_token_new_sample_by_hand(variant):
    """N = 1, d = 2, all spikes: every count is 2. Threshold 3: step 0 leaves membrane 1; a new
    sample (step 1) does not fire (0 + 2) and leaves 1 again; a continuing step fires (1 + 2)."""
    ones = np.ones((3, 1, 1, 2), dtype=np.uint8)
    case = case_from_arrays(ones, ones, ones, first=[1, 1, 0])
    threshold = (3,) if variant == Variant.SDSA4 else 3
    got, _ = simulate_sdsa(SDSA(variant=variant, tokens=1, head_width=2, threshold=threshold),
                           case)
    assert got[:, 0, 0, :].tolist() == [[0, 0], [0, 0], [1, 1]]
