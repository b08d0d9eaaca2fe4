"""Spike addressing edges the stream tests leave open: the payload bit layout, the radix-4
lowest-set-bit tree at widths past one level, wide registered words, and cycle timing.
Written to kill mutants `python -m tests.mutate --files hw/addressing.py` found surviving."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.addressing import SpikeAddressing, addressing_input_layout, addressing_output_layout
from sim.cases_addressing import addressing_case, addressing_expected
from sim.streams import run_stream


def offsets(layout):
    return {name: (field.offset, field.width) for name, field in layout}


def test_payload_bit_layouts():
    assert offsets(addressing_input_layout(13)) == {"bits": (0, 13), "last": (13, 1)}
    # 13 bits x 6 words = 78 addresses (7 bits), columns 0..12 (4 bits), words 0..5 (3 bits)
    assert offsets(addressing_output_layout(13, 3, 6)) == {
        "count": (0, 2), "address": (2, 21), "column": (23, 12), "word": (35, 3),
        "last": (38, 1)}
    assert offsets(addressing_output_layout(4, 4, 1))["count"] == (0, 3)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 15, 16, 17, 20, 63, 64, 65])
def test_lowest_set_bit_tree(width):
    """SpikeAddressing._lowest at one, two and three radix-4 levels, every single-bit word and
    random words: the flag says whether a bit is set, the index names the lowest one."""
    bits = Signal(width)
    found, index = SpikeAddressing._lowest(bits)
    got_found, got_index = Signal(), Signal(len(index))
    m = Module()
    m.d.comb += [got_found.eq(found), got_index.eq(index)]
    rng = np.random.default_rng(width)
    words = [1 << b for b in range(width)] + [(1 << width) - 1, 0]
    words += [int(w) for w in rng.integers(0, 1 << min(width, 62), size=40)]
    words += [int(w) << (width - min(width, 8)) for w in rng.integers(1, 256, size=20)
              if int(w) << (width - min(width, 8)) < (1 << width)]

    async def bench(ctx):
        for word in words:
            ctx.set(bits, word)
            assert ctx.get(got_found) == (word != 0), (width, word)
            if word:
                lowest = (word & -word).bit_length() - 1
                assert ctx.get(got_index) == lowest, (width, word)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def run(dut, case, ready=(1,)):
    """(accepted cycles, delivered cycles, beats as the reference's dicts)."""
    layout = addressing_input_layout(dut.width)
    payloads = [layout.const(case.payload(k, tagged=False)) for k in range(len(case.words))]
    result = run_stream(dut, payloads, len(addressing_expected(case, dut.ports)),
                        receive_pattern=ready)
    beats = [{"count": int(p.count), "address": [int(a) for a in p.address],
              "column": [int(c) for c in p.column], "word": int(p.word), "last": int(p.last),
              "tag": None} for p in result.payloads]
    return result.accepted, result.delivered, beats


def expected(case, ports):
    return [dict(b, tag=None) for b in addressing_expected(case, ports)]


@pytest.mark.parametrize("registered", [False, True], ids=["comb", "registered"])
@pytest.mark.parametrize("width, ports", [(17, 2), (16, 3), (32, 1), (20, 20)])
def test_wide_words(width, ports, registered):
    """Words wider than one radix-4 level (the synapse engine's 16- and 32-bit maps), and
    ports == width (every beat is final)."""
    case = addressing_case(np.random.default_rng(width + ports), width=width, frames=2,
                           words_per_frame=(1, 4), rate=0.25)
    dut = SpikeAddressing(width=width, ports=ports, max_words=4, registered=registered)
    assert run(dut, case)[2] == expected(case, ports)


@pytest.mark.parametrize("registered", [False, True], ids=["comb", "registered"])
def test_stated_latency_and_one_word_per_cycle(registered):
    """Words of one set bit: one accepted per cycle, each beat `latency` cycles later."""
    words = [1 << (k % 5) for k in range(10)]
    case = type(addressing_case(np.random.default_rng(0), width=5, frames=1,
                                words_per_frame=(1, 1), rate=0.5))(
        width=5, words=words, last=[0] * 9 + [1], tags=[0] * 10)
    dut = SpikeAddressing(width=5, ports=1, max_words=10, registered=registered)
    accepted, delivered, beats = run(dut, case)
    assert beats == expected(case, 1)
    assert accepted == list(range(10))
    assert delivered == [c + dut.latency for c in accepted]
    assert dut.latency == 1
