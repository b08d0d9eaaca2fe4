"""Lint emitted Verilog with ``verilator --lint-only -Wall`` and only the documented waivers.

Waivers (each is a property of Amaranth's code generator, not of a design):

* ``WIDTHEXPAND``, ``WIDTHTRUNC``, ``CASEINCOMPLETE``, ``UNSIGNED``, ``CASEOVERLAP``: the classes
  :data:`sim.toolchain.LINT_WAIVERS` waives for simulation builds too (Amaranth extends and truncates
  on purpose, covers ``case`` defaults by an earlier assignment, compares unsigned values with 0,
  and writes ``If``/``Elif`` chains as ``casez`` whose overlapping patterns resolve by order).
* ``PROCASSINIT``: Amaranth gives every register its reset value as a declaration initialiser
  (the FPGA power-up state) and also assigns it in ``always`` blocks.
* ``DECLFILENAME``: Amaranth writes a design and all its submodules into one file, submodules
  first, so the first module's name is not the file's.
* ``UNUSEDSIGNAL``: Amaranth declares a wire for every named ``Signal`` (and one per field of a
  ``data.View``) so waveforms keep the design's names, even where the netlist reads another alias
  of the same net (a register drives ``o__valid`` and ``held`` is declared beside it). Verilator
  cannot tell such an alias from a dead signal, so on generated code the class is noise. Undriven
  signals (``UNDRIVEN``), multiple drivers, latches, unused parameters and every other class
  still fail the lint.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sim import toolchain

__all__ = ["WAIVER_FILE_TEXT", "LintResult", "lint"]

#: Verilator control file holding the waivers (``rtl_gen.emit`` ships it with the Verilog).
WAIVER_FILE_TEXT = "\n".join([
    "`verilator_config",
    "// Waivers for Amaranth-generated Verilog; see rtl_gen/lint.py for why each is safe.",
    'lint_off -rule WIDTHEXPAND',
    'lint_off -rule WIDTHTRUNC',
    'lint_off -rule CASEINCOMPLETE',
    'lint_off -rule UNSIGNED',
    'lint_off -rule CASEOVERLAP',
    'lint_off -rule PROCASSINIT',
    'lint_off -rule DECLFILENAME',
    'lint_off -rule UNUSEDSIGNAL',
    "",
])


@dataclass(frozen=True)
class LintResult:
    """Outcome of linting one top module."""

    toplevel: str
    ok: bool
    messages: str


def lint(sources: list[Path], toplevel: str) -> LintResult:
    """Run Verilator's linter with every warning enabled on ``sources``; return the result."""
    sources = [Path(s).resolve() for s in sources]
    env = toolchain.environment()
    with tempfile.TemporaryDirectory() as scratch:
        waivers = Path(scratch) / "lint_waivers.vlt"
        waivers.write_text(WAIVER_FILE_TEXT)
        command = ["verilator", "--lint-only", "-Wall", "--top-module", toplevel, str(waivers),
                   *map(str, sources)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    messages = (result.stdout + result.stderr).strip()
    return LintResult(toplevel=toplevel, ok=result.returncode == 0 and "%Warning" not in messages,
                      messages=messages)
