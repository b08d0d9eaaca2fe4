"""LIF and LIFArray edges the functional stream tests leave open: payload bit layouts, the
threshold memory image, and cycle timing (throughput, stated latency, buffering under stall).
Written to kill mutants `python -m tests.mutate --files hw/lif.py` found surviving (LIFArray's
code is now in hw/lif_array.py)."""

import numpy as np
import pytest

from hw.lif import LIF, lif_input_layout, lif_output_layout
from hw.lif_array import LIFArray, lif_array_input_layout, lif_array_output_layout
from sim.cases_lif_array import lif_array_case
from sim.streams import run_stream


def offsets(layout):
    return {name: (field.offset, field.width) for name, field in layout}


def test_lif_payload_bit_layout():
    """x first (lanes x input_width), then a 1-bit `first`, then input_width+1-bit thresholds."""
    assert offsets(lif_input_layout(3, 6)) == {"x": (0, 18), "first": (18, 1)}
    assert offsets(lif_input_layout(3, 6, streamed_threshold=True)) == {
        "x": (0, 18), "first": (18, 1), "threshold": (19, 21)}
    assert lif_input_layout(3, 6, streamed_threshold=True)["threshold"].shape.elem_shape.width == 7
    assert offsets(lif_output_layout(3, 9)) == {"spikes": (0, 3), "membrane": (3, 27)}


@pytest.mark.parametrize("words, bits", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4)])
def test_lif_array_address_widths(words, bits):
    """Address and group fields are exactly wide enough for 0 .. count-1 (at least 1 bit)."""
    layout = lif_array_input_layout(2, 5, words, words)
    assert offsets(layout) == {"x": (0, 10), "address": (10, bits), "group": (10 + bits, bits),
                               "first": (10 + 2 * bits, 1)}
    assert offsets(lif_array_output_layout(2, 5, words)) == {
        "spikes": (0, 2), "membrane": (2, 10), "address": (12, bits)}


def test_threshold_memory_image_by_hand():
    """Lane 0 in the low bits, two's complement in membrane_width + 1 = 5 bits, zero padding."""
    dut = LIFArray(lanes=3, words=2, input_width=4, thresholds=[-1, 5, -8, 7])
    # group 0: 31 | 5 << 5 | 24 << 10; group 1: 7 and two zero lanes
    assert dut.threshold_words == [31 + (5 << 5) + (24 << 10), 7]
    assert dut.groups == 2


def test_lif_full_throughput_and_stated_latency():
    dut = LIF(lanes=2, input_width=5, threshold=3)
    layout = lif_input_layout(2, 5)
    beats = [layout.const({"x": [k % 7 - 3, 2], "first": int(k == 0)}) for k in range(8)]
    run = run_stream(dut, beats, len(beats))
    accepted, delivered = run.accepted, run.delivered
    assert accepted == list(range(8)), "one beat per cycle"
    assert delivered == [c + dut.latency for c in accepted]
    assert dut.latency == 1


def test_lif_takes_a_beat_while_the_receiver_stalls():
    """An empty output register accepts a beat even while the receiver is not ready."""
    dut = LIF(lanes=1, input_width=4, threshold=2)
    layout = lif_input_layout(1, 4)
    beats = [layout.const({"x": [1], "first": 1}) for _ in range(3)]
    run = run_stream(dut, beats, len(beats), receive_pattern=lambda c: c >= 3)
    accepted, delivered = run.accepted, run.delivered
    assert accepted[:2] == [0, 3]
    assert delivered[0] == 3


@pytest.mark.parametrize("pipelined, latency", [(False, 2), (True, 3)])
def test_lif_array_full_throughput_latency_and_buffering(pipelined, latency):
    case = lif_array_case(np.random.default_rng(5), lanes=2, words=3, channels=4,
                          input_width=5, steps=3)
    dut = LIFArray(lanes=2, words=3, input_width=5, thresholds=case.thresholds,
                   pipelined=pipelined)
    layout = dut.i.payload.shape()
    beats = [layout.const(case.payload(b)) for b in range(case.beats)]
    run = run_stream(dut, beats, len(beats))
    accepted, delivered = run.accepted, run.delivered
    assert accepted == list(range(case.beats)), "one beat per cycle"
    assert delivered == [c + latency for c in accepted]
    assert dut.latency == latency
    # With the receiver stalled, the unit holds exactly `latency` beats (one per stage).
    run = run_stream(dut, beats, len(beats), receive_pattern=lambda c: c >= 10)
    accepted, delivered = run.accepted, run.delivered
    assert accepted[:latency] == list(range(latency)) and accepted[latency] == 10
    assert delivered[0] == 10


def test_pipelined_lif_array_refills_stage_one_under_stall():
    """Pipelined, output stalled, stage 2 empty: the beat in stage 1 moves on, so a new beat is
    taken in the same cycle (beat 0 fills the output register, beat 1 arrives after a gap)."""
    case = lif_array_case(np.random.default_rng(6), lanes=2, words=3, channels=4,
                          input_width=5, steps=2)
    dut = LIFArray(lanes=2, words=3, input_width=5, thresholds=case.thresholds, pipelined=True)
    layout = dut.i.payload.shape()
    beats = [layout.const(case.payload(b)) for b in range(4)]
    accepted = run_stream(dut, beats, len(beats), receive_pattern=lambda c: c >= 8,
                          send_pattern=lambda c: c == 0 or c >= 3).accepted
    assert accepted == [0, 3, 4, 8]
