"""LIF unit in Amaranth's simulator against the integer reference (quant.intops.lif_step)."""

import numpy as np
import pytest

from hw.lif import LIF, lif_input_layout
from sim.cases import lif_case, lif_expected
from sim.streams import PATTERNS, run_stream


def simulate_lif(dut: LIF, case, *, send_pattern=(1,), receive_pattern=(1,)):
    """Run a case through the unit; return (spikes, membranes) as [beat, lane] arrays."""
    streamed = dut.thresholds is None
    layout = lif_input_layout(dut.lanes, dut.input_width, streamed_threshold=streamed)
    payloads = [layout.const(case.payload(beat, streamed_threshold=streamed))
                for beat in range(case.beats)]
    run = run_stream(dut, payloads, case.beats, send_pattern=send_pattern,
                     receive_pattern=receive_pattern)
    if receive_pattern != (1,):  # each stalled output beat is checked to hold: make sure some are
        assert run.stalls > 0, "backpressure never stalled an output beat"
    received = run.payloads
    spikes = np.array([[(int(p.spikes) >> lane) & 1 for lane in range(dut.lanes)]
                       for p in received])
    membranes = np.array([[int(p.membrane[lane]) for lane in range(dut.lanes)]
                          for p in received])
    return spikes, membranes


def assert_same(case, spikes, membranes, seed):
    want_spikes, want_membranes = lif_expected(case)
    for name, got, want in (("spikes", spikes, want_spikes),
                            ("membrane", membranes, want_membranes)):
        if not np.array_equal(got, want):
            beat, lane = np.argwhere(got != want)[0]
            raise AssertionError(
                f"seed {seed}: {name} differ first at beat {beat} lane {lane}: expected "
                f"{want[beat, lane]}, got {got[beat, lane]} (x={case.x[beat, lane]}, "
                f"threshold={case.threshold[beat, lane]}, first={case.first[beat]})"
            )


@pytest.mark.parametrize("send", ["always", "pause"])
@pytest.mark.parametrize("receive", ["always", "sparse"])
def test_random_with_idle_and_backpressure(send, receive):
    seed = 1234
    dut = LIF(lanes=3, input_width=6, threshold=(5, 12, 1))
    case = lif_case(np.random.default_rng(seed), lanes=3, input_width=6, beats=60,
                    threshold=(5, 12, 1))
    spikes, membranes = simulate_lif(dut, case, send_pattern=PATTERNS[send],
                                     receive_pattern=PATTERNS[receive])
    assert_same(case, spikes, membranes, seed)


def test_one_lane_exhaustive_narrow():
    """Every (membrane path, input) pair of a 3-bit neuron: all inputs after every input."""
    width = 3
    values = list(range(-(1 << (width - 1)), 1 << (width - 1)))
    xs = [[a] for a in values for b in values for a in (a, b)]  # pairs: state then input
    first = [1 if i % 2 == 0 else 0 for i in range(len(xs))]
    for threshold in (1, 2, 3, 7):
        case = type(lif_case(np.random.default_rng(0), lanes=1, input_width=width, beats=1))(
            x=np.array(xs), first=np.array(first),
            threshold=np.full((len(xs), 1), threshold))
        dut = LIF(lanes=1, input_width=width, threshold=threshold)
        spikes, membranes = simulate_lif(dut, case)
        assert_same(case, spikes, membranes, seed=f"exhaustive threshold {threshold}")


def test_streamed_thresholds_width_not_power_of_two():
    seed = 99
    dut = LIF(lanes=5, input_width=7, membrane_width=9)
    case = lif_case(np.random.default_rng(seed), lanes=5, input_width=7, beats=50)
    spikes, membranes = simulate_lif(dut, case, receive_pattern=PATTERNS["pause"])
    assert_same(case, spikes, membranes, seed)


def test_hand_computed_sequence():
    """Input 3 held at threshold 4 (theta=1 at scale 0.5, i.e. X=1.5): spikes 0, 1, 0."""
    case = type(lif_case(np.random.default_rng(0), lanes=1, input_width=4, beats=1))(
        x=np.array([[3], [3], [3]]), first=np.array([1, 0, 0]),
        threshold=np.full((3, 1), 4))
    spikes, membranes = simulate_lif(LIF(lanes=1, input_width=4, threshold=4), case)
    assert spikes[:, 0].tolist() == [0, 1, 0]
    assert membranes[:, 0].tolist() == [1, 0, 1]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, so never used
@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=0, input_width=8, threshold=1), "lanes must be >= 1"),
    (dict(lanes=2, input_width=1, threshold=1), "input_width must be >= 2"),
    (dict(lanes=2, input_width=8, membrane_width=6, threshold=1), "narrower than input_width"),
    (dict(lanes=2, input_width=4, threshold=(1, 2, 3)), "3 values but lanes is 2"),
    (dict(lanes=1, input_width=4, threshold=16), "outside [-16, 15]"),
    (dict(lanes="4", input_width=4, threshold=1), "lanes must be an integer"),
])
def test_refuses_impossible_parameters(kwargs, message):
    with pytest.raises((ValueError, TypeError)) as info:
        LIF(**kwargs)
    assert message in str(info.value)
