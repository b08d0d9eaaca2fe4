"""cocotb tests of the LIF unit against the integer reference, on Verilator.

The design point comes from the environment (``LIF_LANES``, ``LIF_INPUT_WIDTH``,
``LIF_MEMBRANE_WIDTH`` and ``LIF_THRESHOLDS``: comma-separated per-lane thresholds, or empty when
they are streamed); ``tests/test_lif_verilator.py`` builds each point and runs these tests.
"""

import os

import cocotb
import numpy as np

from hw.lif import lif_input_layout, lif_output_layout
from sim.cases import lif_case, lif_expected
from sim.tb.common import PATTERNS, TB, StreamSink, StreamSource, env_int, start


def _design_point():
    lanes = env_int("LIF_LANES")
    input_width = env_int("LIF_INPUT_WIDTH")
    membrane_width = env_int("LIF_MEMBRANE_WIDTH", input_width)
    thresholds = [int(v) for v in os.environ.get("LIF_THRESHOLDS", "").split(",") if v]
    return lanes, input_width, membrane_width, thresholds or None


async def _run_case(dut, case, send_pattern, receive_pattern, label):
    lanes, input_width, membrane_width, thresholds = _design_point()
    streamed = thresholds is None
    in_layout = lif_input_layout(lanes, input_width, streamed_threshold=streamed)
    out_layout = lif_output_layout(lanes, membrane_width)
    tb = TB(dut)
    source = StreamSource(dut, "i", dut.clk, send_pattern)
    sink = StreamSink(dut, "o", dut.clk, receive_pattern)
    await tb.reset()
    payloads = [in_layout.const(case.payload(beat, streamed_threshold=streamed)).as_bits()
                for beat in range(case.beats)]
    sending = start(source.send(payloads))
    beats = await sink.receive(case.beats)
    await sending
    want_spikes, want_membranes = lif_expected(case)
    for beat, bits in enumerate(beats):
        got = out_layout.from_bits(bits)
        for lane in range(lanes):
            got_spike = (int(got.spikes) >> lane) & 1
            got_membrane = int(got.membrane[lane])
            if (got_spike, got_membrane) != (want_spikes[beat, lane], want_membranes[beat, lane]):
                raise AssertionError(
                    f"{label}: first difference at beat {beat} lane {lane}: expected spike "
                    f"{want_spikes[beat, lane]} membrane {want_membranes[beat, lane]}, got spike "
                    f"{got_spike} membrane {got_membrane} (x={case.x[beat, lane]}, threshold="
                    f"{case.threshold[beat, lane]}, first={case.first[beat]})"
                )


def _case(seed, beats):
    lanes, input_width, _, thresholds = _design_point()
    return lif_case(np.random.default_rng(seed), lanes=lanes, input_width=input_width,
                    beats=beats, threshold=thresholds)


@cocotb.test()
async def test_random_stream(dut):
    """Seeded random inputs with edge values, no idle cycles, no backpressure."""
    seed = env_int("LIF_SEED", 2024)
    dut._log.info("LIF stimulus seed %d", seed)
    await _run_case(dut, _case(seed, 200), PATTERNS["always"], PATTERNS["always"],
                    f"seed {seed}")


@cocotb.test()
async def test_idle_and_backpressure(dut):
    """The same kind of stimulus with idle input cycles and a stalling output."""
    seed = env_int("LIF_SEED", 2024) + 1
    dut._log.info("LIF stimulus seed %d", seed)
    await _run_case(dut, _case(seed, 120), PATTERNS["pause"], PATTERNS["sparse"],
                    f"seed {seed} with idle and backpressure")


@cocotb.test()
async def test_time_steps_across_samples(dut):
    """Long samples (8 steps) so membranes carry over many beats before a clear."""
    lanes, input_width, _, thresholds = _design_point()
    seed = env_int("LIF_SEED", 2024) + 2
    case = lif_case(np.random.default_rng(seed), lanes=lanes, input_width=input_width,
                    beats=64, threshold=thresholds, steps_per_sample=8)
    await _run_case(dut, case, PATTERNS["always"], PATTERNS["pause"], f"seed {seed}, 8 steps")
