"""cocotb tests of the memory-backed LIF array against quant.intops.lif_step, on Verilator.

The design point comes from the environment: ``LIFA_LANES``, ``LIFA_WORDS``, ``LIFA_CHANNELS``,
``LIFA_INPUT_WIDTH``, ``LIFA_MEMBRANE_WIDTH`` and ``LIFA_SEED`` (thresholds are drawn from the
seed, as ``tests/test_lif_array_verilator.py`` does when it builds the design).
"""

import cocotb
import numpy as np

from hw.lif_array import lif_array_input_layout, lif_array_output_layout
from hw.params import ceil_div
from sim.cases_lif_array import lif_array_case, lif_array_expected
from sim.tb.common import PATTERNS, TB, StreamSink, StreamSource, env_int, start


def design_case(seed, steps, repeats=0.3):
    """Return the case the design point's thresholds were built from."""
    return lif_array_case(np.random.default_rng(seed), lanes=env_int("LIFA_LANES"),
                          words=env_int("LIFA_WORDS"), channels=env_int("LIFA_CHANNELS"),
                          input_width=env_int("LIFA_INPUT_WIDTH"), steps=steps,
                          repeats=repeats)


async def _run(dut, case, send, receive, label):
    lanes, words = env_int("LIFA_LANES"), env_int("LIFA_WORDS")
    groups = ceil_div(env_int("LIFA_CHANNELS"), lanes)
    in_layout = lif_array_input_layout(lanes, env_int("LIFA_INPUT_WIDTH"), words, groups)
    out_layout = lif_array_output_layout(lanes, env_int("LIFA_MEMBRANE_WIDTH"), words)
    source = StreamSource(dut, "i", dut.clk, PATTERNS[send])
    sink = StreamSink(dut, "o", dut.clk, PATTERNS[receive])
    payloads = [in_layout.const(case.payload(b)).as_bits() for b in range(case.beats)]
    sending = start(source.send(payloads))
    beats = await sink.receive(case.beats)
    await sending
    want_spikes, want_membranes = lif_array_expected(case, lanes)
    for beat, bits in enumerate(beats):
        view = out_layout.from_bits(bits)
        for lane in range(lanes):
            got = ((int(view.spikes) >> lane) & 1, int(view.membrane[lane]))
            want = (want_spikes[beat, lane], want_membranes[beat, lane])
            if got != want or int(view.address) != case.address[beat]:
                raise AssertionError(
                    f"LIF array {label}: beat {beat} (word {case.address[beat]}) lane {lane}: "
                    f"expected spike/membrane {want}, got {got} at word {int(view.address)}")


@cocotb.test()
async def test_time_steps_all_patterns(dut):
    """Four time steps over every word, repeated under every idle/backpressure pattern pair.

    Every run starts with a ``first`` step, so membranes left by the previous run are cleared.
    """
    seed = env_int("LIFA_SEED")
    dut._log.info("LIF array stimulus seed %d", seed)
    tb = TB(dut)
    await tb.reset()
    for send in PATTERNS:
        for receive in PATTERNS:
            case = design_case(seed, steps=4)
            await _run(dut, case, send, receive, f"seed {seed} {send}/{receive}")
