"""Spike addressing unit in Amaranth's simulator against its reference (sim.cases_addressing)."""

import numpy as np
import pytest
from amaranth.hdl import unsigned

from hw.addressing import SpikeAddressing, addressing_input_layout
from sim.cases_addressing import (FIRING_RATES, AddressingCase, addressing_case,
                                  addressing_expected)
from sim.streams import PATTERNS, run_stream


def beat_dict(payload, ports: int, tagged: bool) -> dict:
    """Turn an output payload view into the reference's dict form."""
    return {
        "count": int(payload.count),
        "address": [int(payload.address[p]) for p in range(ports)],
        "column": [int(payload.column[p]) for p in range(ports)],
        "word": int(payload.word),
        "last": int(payload.last),
        "tag": int(payload.tag) if tagged else None,
    }


def simulate_addressing(dut: SpikeAddressing, case: AddressingCase, *, send_pattern=(1,),
                        receive_pattern=(1,)) -> tuple[list[dict], int]:
    """Run a case through the unit; return the output beats and the cycles from the first word
    taken to the last beat taken."""
    tagged = dut.tag_shape is not None
    layout = addressing_input_layout(dut.width, dut.tag_shape)
    payloads = [layout.const(case.payload(k, tagged=tagged)) for k in range(len(case.words))]
    expected = addressing_expected(case, dut.ports)
    # quiet=4: nothing more may come out, a spare beat would be a bug the count cannot see.
    run = run_stream(dut, payloads, len(expected), send_pattern=send_pattern,
                     receive_pattern=receive_pattern, quiet=4)
    if receive_pattern != (1,):  # each stalled output beat is checked to hold: make sure some are
        assert run.stalls > 0, "backpressure never stalled an output beat"
    beats = [beat_dict(p, dut.ports, tagged) for p in run.payloads]
    if not dut.zero_unused:  # entries past the count hold any value: not compared
        for beat in beats:
            for key in ("address", "column"):
                beat[key][beat["count"]:] = [0] * (dut.ports - beat["count"])
    return beats, run.cycles


def assert_beats(got, want, label):
    """Compare whole beat sequences, naming the first difference."""
    for index, (g, w) in enumerate(zip(got, want)):
        if g["tag"] is None:
            w = dict(w, tag=None)
        if g != w:
            raise AssertionError(f"{label}: beat {index} differs: expected {w}, got {g}")
    assert len(got) == len(want), f"{label}: {len(got)} beats, expected {len(want)}"


#: Both implementations: combinational columns (default) and ``registered=True``.
REGISTERED = pytest.mark.parametrize("registered", [False, True], ids=["comb", "registered"])


@REGISTERED
@pytest.mark.parametrize("rate", FIRING_RATES)
@pytest.mark.parametrize("ports", [1, 3])
def test_firing_rates(rate, ports, registered):
    seed = 500 + int(rate * 100) + ports
    case = addressing_case(np.random.default_rng(seed), width=13, frames=3,
                           words_per_frame=(1, 6), rate=rate)
    dut = SpikeAddressing(width=13, ports=ports, max_words=6, registered=registered)
    got, _ = simulate_addressing(dut, case)
    assert_beats(got, addressing_expected(case, ports), f"seed {seed} rate {rate}")


@REGISTERED
@pytest.mark.parametrize("ports", [1, 3])
def test_unused_entries_not_zeroed(ports, registered):
    """``zero_unused=False``: the same beats and cycles in every used entry (the unused ones
    are free), and with several ports some unused entry shows a stale value: no gate."""
    case = addressing_case(np.random.default_rng(77 + ports), width=13, frames=3,
                           words_per_frame=(1, 6), rate=0.3)
    runs = []
    for zero in (True, False):
        dut = SpikeAddressing(width=13, ports=ports, max_words=6, registered=registered,
                              zero_unused=zero)
        tagged = dut.tag_shape is not None
        layout = addressing_input_layout(dut.width, dut.tag_shape)
        payloads = [layout.const(case.payload(k, tagged=tagged)) for k in range(len(case.words))]
        expected = addressing_expected(case, ports)
        run = run_stream(dut, payloads, len(expected), quiet=4)
        raw = [beat_dict(p, ports, tagged) for p in run.payloads]
        got, _ = simulate_addressing(dut, case)
        assert_beats(got, expected, f"zero_unused={zero}")
        runs.append((raw, run.cycles))
    assert runs[0][1] == runs[1][1]

    def stale(beats):
        return [b for b in beats if any(b["column"][b["count"]:] + b["address"][b["count"]:])]
    assert not stale(runs[0][0])
    if ports > 1:  # (one port: an unused entry is an empty word's, whose peel gives 0 anyway)
        assert stale(runs[1][0]), "no unused entry ever held a nonzero column or address"


@REGISTERED
@pytest.mark.parametrize("send", ["always", "pause", "sparse"])
@pytest.mark.parametrize("receive", ["always", "pause", "sparse"])
def test_idle_and_backpressure(send, receive, registered):
    seed = 77
    case = addressing_case(np.random.default_rng(seed), width=7, frames=4,
                           words_per_frame=(1, 5), rate=0.4)
    dut = SpikeAddressing(width=7, ports=2, max_words=5, tag_shape=unsigned(8),
                          registered=registered)
    got, _ = simulate_addressing(dut, case, send_pattern=PATTERNS[send],
                                 receive_pattern=PATTERNS[receive])
    assert_beats(got, addressing_expected(case, 2), f"seed {seed} {send}/{receive}")


@pytest.mark.parametrize("send", ["always", "pause", "sparse"])
@pytest.mark.parametrize("receive", ["always", "pause", "sparse"])
@pytest.mark.parametrize("ports", [1, 2])
def test_registered_keeps_cycles(send, receive, ports):
    """``registered=True`` changes the logic, not the schedule: same beats, same cycles."""
    seed = 91 + ports
    case = addressing_case(np.random.default_rng(seed), width=8, frames=4,
                           words_per_frame=(1, 6), rate=0.3)
    runs = [simulate_addressing(SpikeAddressing(width=8, ports=ports, max_words=6,
                                                registered=registered), case,
                                send_pattern=PATTERNS[send], receive_pattern=PATTERNS[receive])
            for registered in (False, True)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1], f"cycles: default {runs[0][1]}, registered {runs[1][1]}"


@REGISTERED
@pytest.mark.parametrize("ports", [1, 2, 4])
def test_every_word_of_four_bits(ports, registered):
    """Exhaustive for a narrow word: all 16 words, each alone and as the end of a frame."""
    words = [w for w in range(16) for _ in range(2)]
    last = [k % 2 for k in range(len(words))]
    case = AddressingCase(width=4, words=words, last=last, tags=[0] * len(words))
    got, _ = simulate_addressing(SpikeAddressing(width=4, ports=ports, max_words=2,
                                                 registered=registered), case,
                                 receive_pattern=PATTERNS["pause"])
    assert_beats(got, addressing_expected(case, ports), f"exhaustive ports {ports}")


@REGISTERED
def test_one_bit_words(registered):
    case = addressing_case(np.random.default_rng(3), width=1, frames=3, words_per_frame=(1, 9),
                           rate=0.5)
    got, _ = simulate_addressing(SpikeAddressing(width=1, max_words=9, registered=registered),
                                 case,
                                 send_pattern=PATTERNS["pause"])
    assert_beats(got, addressing_expected(case, 1), "width 1")


@REGISTERED
def test_throughput_one_word_per_cycle(registered):
    """Words of at most ``ports`` set bits, empty ones included, flow at one per cycle."""
    rng = np.random.default_rng(11)
    words = [int(w) for w in rng.choice([0, 1, 2, 4, 6, 9, 12], size=64)]
    case = AddressingCase(width=4, words=words, last=[0] * 63 + [1], tags=[0] * 64)
    got, cycles = simulate_addressing(SpikeAddressing(width=4, ports=2, max_words=64,
                                                      registered=registered), case)
    assert_beats(got, addressing_expected(case, 2), "throughput")
    assert cycles <= 64 + 8, f"took {cycles} cycles for 64 words"


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, so never used
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(width=0, max_words=1), ValueError, "width must be >= 1, not 0"),
    (dict(width=4, ports=0, max_words=1), ValueError, "ports must be in [1, 4], not 0"),
    (dict(width=4, ports=5, max_words=1), ValueError, "ports must be in [1, 4], not 5"),
    (dict(width=4, max_words=0), ValueError, "max_words must be >= 1, not 0"),
    (dict(width=4.0, max_words=1), TypeError, "width must be an integer"),
    (dict(width=4, max_words=1, tag_shape="x"), TypeError, "tag_shape must be shape-castable"),
])
def test_refuses_impossible_parameters(kwargs, error, message):
    with pytest.raises(error) as info:
        SpikeAddressing(**kwargs)
    assert message in str(info.value)
