"""cocotb tests of the SDSA unit against the integer golden SDSA, on Verilator.

The design point comes from the environment (``SDSA_VARIANT``, ``SDSA_TOKENS``,
``SDSA_HEAD_WIDTH``, ``SDSA_HEADS``, ``SDSA_LANES``, ``SDSA_THRESHOLDS``: comma-separated, one per
layer); the stimulus from ``SDSA_CASES``, an ``.npz`` file written by :func:`write_cases` holding
named cases with their valid/ready patterns. Every case is checked beat by beat for exact
equality; the cycles each took (first beat offered to last beat taken) are written as JSON to
``SDSA_REPORT`` when it is set. ``tests/test_sdsa_verilator.py`` and ``sim/bench_sdsa.py`` build the
design points and run this module.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["write_cases", "read_cases"]


def write_cases(path, cases: dict) -> None:
    """Write ``{name: (SDSACase, send_pattern, receive_pattern)}`` to an ``.npz`` file."""
    arrays = {}
    for index, (name, (case, send, receive)) in enumerate(cases.items()):
        prefix = f"c{index}_"
        arrays[prefix + "name"] = np.array(name)
        for field in ("q", "k", "v", "first", "layer"):
            arrays[prefix + field] = getattr(case, field)
        arrays[prefix + "send"] = np.array(send, dtype=np.int64)
        arrays[prefix + "receive"] = np.array(receive, dtype=np.int64)
    np.savez_compressed(path, **arrays)


def read_cases(path) -> list:
    """Return ``[(name, SDSACase, send_pattern, receive_pattern)]`` from :func:`write_cases`."""
    from sim.cases_sdsa import case_from_arrays  # noqa: PLC0415

    cases = []
    with np.load(path) as archive:
        index = 0
        while f"c{index}_name" in archive:
            prefix = f"c{index}_"
            case = case_from_arrays(*(archive[prefix + f] for f in ("q", "k", "v", "first",
                                                                     "layer")))
            cases.append((str(archive[prefix + "name"]), case,
                          tuple(int(x) for x in archive[prefix + "send"]),
                          tuple(int(x) for x in archive[prefix + "receive"])))
            index += 1
    return cases


try:
    import cocotb
    from cocotb.triggers import RisingEdge
except ImportError:  # the helpers above are usable without cocotb
    cocotb = None

if cocotb is not None:
    from hw.sdsa_common import Variant, sdsa_input_layout, sdsa_output_layout
    from sim.cases_sdsa import bits_row, expected_spikes, first_difference, input_payloads
    from sim.tb.common import TB, StreamSink, StreamSource, env_int, env_ints, start

    def _design_point():
        return dict(variant=Variant(env_int("SDSA_VARIANT")), tokens=env_int("SDSA_TOKENS"),
                    head_width=env_int("SDSA_HEAD_WIDTH"), heads=env_int("SDSA_HEADS"),
                    thresholds=env_ints("SDSA_THRESHOLDS"))

    async def _count_cycles(clk, counter):
        while True:
            await RisingEdge(clk)
            counter["cycles"] += 1

    async def _run_case(dut, point, name, case, send, receive):
        variant, width = point["variant"], point["head_width"]
        in_layout = sdsa_input_layout(width, variant=variant, layers=len(point["thresholds"]))
        out_layout = sdsa_output_layout(width)
        tb = TB(dut)
        source = StreamSource(dut, "i", dut.clk, send)
        sink = StreamSink(dut, "o", dut.clk, receive)
        await tb.reset()
        payloads = [in_layout.const(beat).as_bits() for beat in input_payloads(case, variant)]
        counter = {"cycles": 0}
        counting = start(_count_cycles(dut.clk, counter))
        sending = start(source.send(payloads))
        beats = await sink.receive(case.beats)
        counting.cancel()
        await sending
        got = np.array([bits_row(int(out_layout.from_bits(bits).spikes), width)
                        for bits in beats]).reshape(case.q.shape)
        want = expected_spikes(case, variant, point["thresholds"])
        message = first_difference(got, want, f"case {name} ({variant.name})")
        if message:
            raise AssertionError(message)
        dut._log.info("case %s: %d beats, %d cycles", name, case.beats, counter["cycles"])
        return counter["cycles"]

    @cocotb.test()
    async def test_cases(dut):
        """Every case of SDSA_CASES, each from reset, with its own valid/ready patterns."""
        point = _design_point()
        report = {}
        for name, case, send, receive in read_cases(os.environ["SDSA_CASES"]):
            report[name] = await _run_case(dut, point, name, case, send, receive)
        if os.environ.get("SDSA_REPORT"):
            with open(os.environ["SDSA_REPORT"], "w") as file:
                json.dump(report, file)
