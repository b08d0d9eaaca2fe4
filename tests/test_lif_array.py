"""Memory-backed LIF array in Amaranth's simulator against quant.intops.lif_step."""

import dataclasses

import numpy as np
import pytest

from hw.lif_array import LIFArray
from sim.cases_lif_array import lif_array_case, lif_array_expected
from sim.streams import PATTERNS, run_stream


def simulate_lif_array(dut: LIFArray, case, *, send_pattern=(1,), receive_pattern=(1,)):
    """Run a case; return (spikes, membranes, addresses) per beat and the number of stalled
    output cycles (each checked to hold by sim.streams)."""
    layout = dut.i.payload.shape()
    payloads = [layout.const(case.payload(beat)) for beat in range(case.beats)]
    run = run_stream(dut, payloads, case.beats, send_pattern=send_pattern,
                     receive_pattern=receive_pattern)
    received = run.payloads
    spikes = np.array([[(int(p.spikes) >> lane) & 1 for lane in range(dut.lanes)]
                       for p in received])
    membranes = np.array([[int(p.membrane[lane]) for lane in range(dut.lanes)]
                          for p in received])
    return spikes, membranes, np.array([int(p.address) for p in received]), run.stalls


def check(dut, case, seed, **patterns):
    spikes, membranes, addresses, stalls = simulate_lif_array(dut, case, **patterns)
    want_spikes, want_membranes = lif_array_expected(case, dut.lanes)
    assert addresses.tolist() == case.address.tolist(), f"seed {seed}: addresses differ"
    for name, got, want in (("spikes", spikes, want_spikes),
                            ("membrane", membranes, want_membranes)):
        if not np.array_equal(got, want):
            beat, lane = np.argwhere(got != want)[0]
            raise AssertionError(
                f"LIF array seed {seed}: {name} differ first at beat {beat} (word "
                f"{case.address[beat]}) lane {lane}: expected {want[beat, lane]}, got "
                f"{got[beat, lane]}")
    return stalls


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("send", ["always", "pause", "sparse"])
@pytest.mark.parametrize("receive", ["always", "pause", "sparse"])
def test_time_steps_with_idle_and_backpressure(send, receive, pipelined):
    seed = 310
    case = lif_array_case(np.random.default_rng(seed), lanes=3, words=5, channels=7,
                          input_width=6, steps=4)
    dut = LIFArray(lanes=3, words=5, input_width=6, thresholds=case.thresholds,
                   pipelined=pipelined)
    stalls = check(dut, case, seed, send_pattern=PATTERNS[send],
                   receive_pattern=PATTERNS[receive])
    if send == "always" and receive != "always":
        assert stalls > 0, "backpressure never stalled an output beat (the hold check saw none)"


def test_one_lane_one_channel():
    seed = 311
    case = lif_array_case(np.random.default_rng(seed), lanes=1, words=1, channels=1,
                          input_width=4, steps=12, repeats=0.5)
    dut = LIFArray(lanes=1, words=1, input_width=4, thresholds=case.thresholds)
    check(dut, case, seed, receive_pattern=PATTERNS["pause"])


def test_width_not_power_of_two_wider_membrane():
    seed = 312
    case = lif_array_case(np.random.default_rng(seed), lanes=5, words=6, channels=13,
                          input_width=7, steps=3)
    dut = LIFArray(lanes=5, words=6, input_width=7, membrane_width=9,
                   thresholds=case.thresholds)
    check(dut, case, seed)


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("receive", ["always", "pause"])
def test_back_to_back_same_word(pipelined, receive):
    """Every beat updates the same word: each read must see the write just before it
    (pipelined: the write of the beat one ahead is forwarded, two ahead is read through)."""
    seed = 313
    rng = np.random.default_rng(seed)
    case = lif_array_case(rng, lanes=2, words=1, channels=2, input_width=5, steps=1,
                          repeats=0.97)
    dut = LIFArray(lanes=2, words=1, input_width=5, thresholds=case.thresholds,
                   pipelined=pipelined)
    check(dut, case, seed, receive_pattern=PATTERNS[receive])


def test_pipelined_same_word_two_apart():
    """Words alternate 0, 1, 0, 1: each read sees the write two beats before it."""
    seed = 314
    rng = np.random.default_rng(seed)
    case = lif_array_case(rng, lanes=2, words=2, channels=2, input_width=5, steps=12,
                          repeats=0.0)
    dut = LIFArray(lanes=2, words=2, input_width=5, thresholds=case.thresholds,
                   pipelined=True)
    check(dut, case, seed)


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_new_sample_starts_from_zero_over_a_kept_membrane(pipelined):
    """``first`` on beats whose word holds a membrane from earlier beats (a new sample mid-run),
    some right after a beat to the same word (pipelined: the forwarded membrane must give way to
    0 as well)."""
    seed = 315
    rng = np.random.default_rng(seed)
    case = lif_array_case(rng, lanes=3, words=3, channels=7, input_width=6, steps=6,
                          repeats=0.5)
    first = np.where(rng.random(case.beats) < 0.3, 1, case.first)
    first[0] = 1
    case = dataclasses.replace(case, first=first)
    assert (first[1:] & (case.address[1:] == case.address[:-1])).any()
    dut = LIFArray(lanes=3, words=3, input_width=6, thresholds=case.thresholds,
                   pipelined=pipelined)
    check(dut, case, seed, receive_pattern=PATTERNS["pause"])


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, so never used
@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=0), "lanes must be >= 1, not 0"),
    (dict(words=0), "words must be >= 1, not 0"),
    (dict(membrane_width=5), "membrane_width 5 is narrower than input_width 6"),
    (dict(thresholds=[1, 200]), "threshold 200 of channel 1 is outside [-64, 63]"),
    (dict(thresholds=[]), "at least one channel"),
    (dict(thresholds=5), "thresholds must be a sequence"),
    (dict(threshold_memory="lut"), "threshold_memory must be one of ['auto', 'logic'], not 'lut'"),
    (dict(threshold_memory="logic", threshold_port=True),
     "threshold_memory='logic' needs the threshold memory inside"),
])
def test_refuses_impossible_parameters(kwargs, message):
    params = dict(lanes=2, words=4, input_width=6, thresholds=[3, 4])
    params.update(kwargs)
    with pytest.raises((ValueError, TypeError)) as info:
        LIFArray(**params)
    assert message in str(info.value)


@pytest.mark.parametrize("pipelined", [False, True])
@pytest.mark.parametrize("send, receive", [("pause", "sparse"), ("always", "pause")])
def test_thresholds_in_logic_give_the_same_neurons(pipelined, send, receive):
    """``threshold_memory="logic"`` reads the thresholds combinationally from a register of
    the group: the same spikes and membranes as the reference under stalls on both sides."""
    seed = 317
    case = lif_array_case(np.random.default_rng(seed), lanes=3, words=5, channels=7,
                          input_width=6, steps=4)
    dut = LIFArray(lanes=3, words=5, input_width=6, thresholds=case.thresholds,
                   pipelined=pipelined, threshold_memory="logic")
    check(dut, case, seed, send_pattern=PATTERNS[send], receive_pattern=PATTERNS[receive])


@pytest.mark.parametrize("style, attribute", [("auto", None), ("logic", "logic")])
def test_threshold_memory_style_reaches_the_verilog(style, attribute):
    """``threshold_memory="logic"`` puts ``ram_style = "logic"`` on the threshold memory and on
    no other memory; the default leaves the choice to the synthesis tool (no attribute)."""
    import re

    from amaranth.back import verilog
    dut = LIFArray(lanes=2, words=4, input_width=6, thresholds=[3, 4, 5], pipelined=True,
                   threshold_memory=style)
    text = verilog.convert(dut, name="lif")
    marked = re.findall(r'\(\* ram_style = "(\w+)" \*\)\s*(?:\(\*[^\n]*\*\)\s*)*'
                        r'reg\s*(?:\[[^\]]*\]\s*)?(\w+)', text)
    assert marked == ([(attribute, "thresholds")] if attribute else []), marked
    # "logic": the ROM read combinationally from the group's register; "auto": a clocked read
    assert ("held_group" in text) == (style == "logic")
