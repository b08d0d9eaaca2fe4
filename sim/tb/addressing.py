"""cocotb tests of the spike addressing unit against its reference, on Verilator.

The design point comes from the environment: ``ADDR_WIDTH``, ``ADDR_PORTS``, ``ADDR_MAX_WORDS``,
``ADDR_TAG_BITS`` (0: no tag) and ``ADDR_SEED``; ``tests/test_addressing_verilator.py`` builds
each point and runs these tests.
"""

import cocotb
import numpy as np
from amaranth.hdl import unsigned

from hw.addressing import addressing_input_layout, addressing_output_layout
from sim.cases_addressing import FIRING_RATES, addressing_case, addressing_expected
from sim.tb.common import PATTERNS, TB, StreamSink, StreamSource, env_int, start


def _design_point():
    tag_bits = env_int("ADDR_TAG_BITS", 0)
    return (env_int("ADDR_WIDTH"), env_int("ADDR_PORTS"), env_int("ADDR_MAX_WORDS"),
            unsigned(tag_bits) if tag_bits else None)


async def _run_case(dut, case, send_pattern, receive_pattern, label):
    width, ports, max_words, tag_shape = _design_point()
    tagged = tag_shape is not None
    in_layout = addressing_input_layout(width, tag_shape)
    out_layout = addressing_output_layout(width, ports, max_words, tag_shape)
    source = StreamSource(dut, "i", dut.clk, send_pattern)
    sink = StreamSink(dut, "o", dut.clk, receive_pattern)
    payloads = [in_layout.const(case.payload(k, tagged=tagged)).as_bits()
                for k in range(len(case.words))]
    expected = addressing_expected(case, ports)
    sending = start(source.send(payloads))
    beats = await sink.receive(len(expected))
    await sending
    for index, (bits, want) in enumerate(zip(beats, expected)):
        view = out_layout.from_bits(bits)
        got = {
            "count": int(view.count),
            "address": [int(view.address[p]) for p in range(ports)],
            "column": [int(view.column[p]) for p in range(ports)],
            "word": int(view.word),
            "last": int(view.last),
            "tag": int(view.tag) if tagged else want["tag"],
        }
        if got != want:
            raise AssertionError(f"addressing {label}: beat {index} differs: expected {want}, "
                                 f"got {got}")


@cocotb.test()
async def test_firing_rates(dut):
    """Frames at 0%, 1%, 10%, 50% and 100% firing, no idle cycles, no backpressure."""
    width, _, max_words, _ = _design_point()
    seed = env_int("ADDR_SEED", 2024)
    dut._log.info("addressing stimulus seed %d", seed)
    tb = TB(dut)
    await tb.reset()
    for number, rate in enumerate(FIRING_RATES):
        case = addressing_case(np.random.default_rng(seed + number), width=width, frames=3,
                               words_per_frame=(1, max_words), rate=rate)
        await _run_case(dut, case, PATTERNS["always"], PATTERNS["always"],
                        f"seed {seed + number} rate {rate}")


@cocotb.test()
async def test_idle_and_backpressure(dut):
    """Random idle input cycles and output stalls under every pattern pair."""
    width, _, max_words, _ = _design_point()
    seed = env_int("ADDR_SEED", 2024) + 10
    dut._log.info("addressing stimulus seed %d", seed)
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(seed)
    for send in PATTERNS:
        for receive in PATTERNS:
            case = addressing_case(rng, width=width, frames=2, words_per_frame=(1, max_words),
                                   rate=0.3)
            await _run_case(dut, case, PATTERNS[send], PATTERNS[receive],
                            f"seed {seed} {send}/{receive}")
