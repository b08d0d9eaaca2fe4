"""The stream harness itself (sim.streams): timestamps, patterns, and the stalled-beat check, on
small hand-made units (one good register stage, two that break the stream rules)."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.streams import PATTERNS, run_stream

LAYOUT = data.StructLayout({"a": 4, "b": data.ArrayLayout(3, 2)})


class Stage(wiring.Component):
    """One register stage (latency 1). ``fault``: ``"payload"`` lets field ``b[1]`` count while
    the output is stalled; ``"valid"`` drops ``valid`` after one stalled cycle."""

    i: In(stream.Signature(LAYOUT))
    o: Out(stream.Signature(LAYOUT))

    def __init__(self, fault=None):
        self.fault = fault
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload)]
        stalled = Signal()
        m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
        with m.If(self.o.valid & ~self.o.ready):
            if self.fault == "payload":
                m.d.sync += self.o.payload.b[1].eq(self.o.payload.b[1] + 1)
            if self.fault == "valid":
                with m.If(stalled):
                    m.d.sync += self.o.valid.eq(0)
        return m


def beats(count):
    return [LAYOUT.const({"a": n % 16, "b": [n % 8, (n + 3) % 8]}) for n in range(count)]


def test_timestamps_back_to_back():
    run = run_stream(Stage(), beats(6), 6)
    assert run.accepted == list(range(6))
    assert run.delivered == [c + 1 for c in run.accepted]
    assert (run.cycles, run.first_out, run.stalls) == (7, 2, 0)
    assert [p.as_bits() for p in run.payloads] == [p.as_bits() for p in beats(6)]


def test_patterns_idle_and_backpressure():
    """Tuples: a 0 is a cycle of waiting before a beat; a callable gates every cycle."""
    run = run_stream(Stage(), beats(4), 4, send_pattern=(1, 0))
    assert run.accepted == [0, 2, 4, 6]
    run = run_stream(Stage(), beats(3), 3, receive_pattern=lambda cycle: cycle >= 3)
    assert run.accepted[:2] == [0, 3] and run.delivered[0] == 3
    assert run.stalls == 2  # beat 0 waits in cycles 1 and 2, checked to hold
    run = run_stream(Stage(), beats(8), 8, receive_pattern=PATTERNS["sparse"])
    assert run.stalls > 0
    assert [p.as_bits() for p in run.payloads] == [p.as_bits() for p in beats(8)]


def test_idle_payload_garbage_reaches_the_wires():
    run = run_stream(Stage(), beats(3), 3, send_pattern=(0, 1), idle=lambda cycle: 0x3FF)
    assert [p.as_bits() for p in run.payloads] == [p.as_bits() for p in beats(3)]


def test_a_payload_change_while_stalled_is_named():
    with pytest.raises(AssertionError, match=r"o: cycle 2: o\.payload\.b\[1\] changed from 3 to 4 "
                                             r"while the beat offered since cycle 1 was stalled"):
        run_stream(Stage("payload"), beats(3), 3, receive_pattern=lambda cycle: cycle >= 3)
    # Without backpressure the fault never shows; hold=False skips the check.
    run_stream(Stage("payload"), beats(3), 3)
    run_stream(Stage("payload"), beats(3), 3, receive_pattern=lambda cycle: cycle >= 3,
               hold=False)


def test_valid_falling_while_stalled_is_named():
    with pytest.raises(AssertionError, match=r"o: cycle 3: o\.valid fell while the beat offered "
                                             r"since cycle 1 was stalled"):
        run_stream(Stage("valid"), beats(3), 3, receive_pattern=lambda cycle: cycle >= 5)


def test_quiet_sees_a_spare_beat():
    with pytest.raises(AssertionError, match="a beat beyond the 2 expected"):
        run_stream(Stage(), beats(3), 2, quiet=3)
