"""Bad inputs through every command-line entry that takes a checkpoint (issue 13).

Entries: ``python -m quant.cli``, ``make quantize``, ``python -m golden energy``, ``python -m
rtl_gen`` with a design point naming the checkpoint, ``python -m sim.e2e --checkpoint``. Every
bad file is derived from the shipped ``golden/checkpoints/demo.pth`` inside ``tmp_path``. The
``python -m`` entries run their ``main(argv)`` in the test's process with its streams captured
(``_run_in_process``; a subprocess would import torch again, about 2 s a case); the pickled-code
and missing-file cases, ``make quantize`` and the images file through the command line run as
subprocesses (``sys.executable -m ...``, from the repository root), so every entry's real command
line is still run in ``make test``. Images files
(``python -m sim.e2e --inputs FILE``, ``make sim INPUTS=FILE``) are the last section: the same
refusal, the line naming the file and the problem.

A refusal means, precisely:

- exit status 2;
- stderr holds exactly one non-empty line, and it starts with ``error: `` (for ``make quantize``,
  make's own trailer ``make: *** [Makefile:N: quantize] Error 2`` is the one other line allowed);
- stdout is empty and neither stream contains ``Traceback``;
- the line names what is wrong: the file and the state-dict key (and the allowed range) for a bad
  value, the file for an unreadable one, the flag or field for a bad argument;
- nothing was written: no output directory or file (and no staging directory beside it), and
  no pickled code ran.

Two cases are accepted on purpose and checked to be handled exactly: a layer whose weights are all
zero (its output is its bias; the quantizer gives it all-zero integer weights) and a zero
batch-norm ``running_var`` (BN divides by ``sqrt(var + eps)``; a channel that never varied, e.g.
behind pruned weights, has one). The bounds refused are ``golden.checkpoint.MAX_ABS_VALUE`` (1e6)
and ``MAX_RUNNING_VAR`` (1e12).

No entry loads memory images from disk (``quant.images.load_images`` has no command-line caller),
so the tampered-image case lives in ``tests/test_quant_images.py``. ``rtl_gen --out`` and
``sim.e2e --out`` replace or reuse an existing directory by design (``make rtl`` and ``make sim``
re-run into ``build/``); an existing output directory is refused only by ``quant.cli``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "golden" / "checkpoints" / "demo.pth"
PY = sys.executable
MAKE_TRAILER = re.compile(r"^make(\[\d+\])?: \*\*\* \[.*\] Error 2$")
ENV = dict(os.environ, OMP_NUM_THREADS="1")


# ----------------------------------------------------------------------------- bad checkpoints

def _demo() -> dict:
    return torch.load(DEMO, map_location="cpu", weights_only=True)


def _edit(key: str, value: float, index=0):
    """Return a maker writing demo.pth with ``sd[key].view(-1)[index] = value``."""
    def make(path: Path) -> Path:
        ckpt = _demo()
        tensor = ckpt["model"][key].clone()
        tensor.view(-1)[index] = value
        ckpt["model"][key] = tensor
        torch.save(ckpt, path)
        return path
    return make


def _zero(key: str):
    def make(path: Path) -> Path:
        ckpt = _demo()
        ckpt["model"][key] = torch.zeros_like(ckpt["model"][key])
        torch.save(ckpt, path)
        return path
    return make


def _bytes(data_of):
    def make(path: Path) -> Path:
        path.write_bytes(data_of())
        return path
    return make


class _Payload:
    """Unpickling this would create the marker file (``open(marker, 'w')``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_code(path: Path) -> Path:
    ckpt = _demo()
    ckpt["payload"] = _Payload(path.parent / "PICKLE_RAN")
    torch.save(ckpt, path)
    return path


def _state_dict_edit(edit):
    def make(path: Path) -> Path:
        ckpt = _demo()
        edit(ckpt)
        torch.save(ckpt, path)
        return path
    return make


def _safetensors_nan(path: Path) -> Path:
    from safetensors.torch import save_file

    ckpt = _demo()
    sd = {k: v.contiguous() for k, v in ckpt["model"].items()}
    sd["head.weight"] = sd["head.weight"].clone()
    sd["head.weight"][3, 5] = math.nan
    path = path.with_suffix(".safetensors")
    save_file(sd, str(path), metadata={"config": json.dumps(ckpt["config"])})
    return path


#: Bad values: name -> (maker, key, words the line must hold). Every one goes through every entry.
VALUES = {
    "nan-weight": (_edit("downsample1_1.encode_conv.weight", math.nan, 5),
                   "downsample1_1.encode_conv.weight", ["1 NaN", "must be finite"]),
    "inf-bn-mean": (_edit("ConvBlock1_1.0.Conv.bn1.running_mean", math.inf, 2),
                    "ConvBlock1_1.0.Conv.bn1.running_mean", ["1 Inf", "must be finite"]),
    "negative-running-var": (_edit("downsample2.encode_bn.running_var", -0.5, 3),
                             "downsample2.encode_bn.running_var",
                             ["-0.5", "index (3,)", "0 to 1e+12"]),
    "huge-weight": (_edit("block3.0.attn.q_conv.0.body.0.weight", 1e30, 7),
                    "block3.0.attn.q_conv.0.body.0.weight", ["1e+30", "-1e+06 to 1e+06"]),
}

#: Further bad values, through ``quant.cli`` only (same check, same code path).
MORE_VALUES = {
    "nan-running-var": (_edit("block3.0.attn.q_conv.1.running_var", math.nan),
                        "block3.0.attn.q_conv.1.running_var", ["NaN"]),
    "-inf-bias": (_edit("head.bias", -math.inf, 9), "head.bias", ["Inf", "index (9,)"]),
    "huge-running-var": (_edit("downsample2.encode_bn.running_var", 1e13),
                         "downsample2.encode_bn.running_var", ["1e+13", "0 to 1e+12"]),
    "huge-negative-bn-beta": (_edit("downsample2.encode_bn.bias", -2e6),
                              "downsample2.encode_bn.bias", ["-2e+06", "-1e+06 to 1e+06"]),
    "safetensors-nan": (_safetensors_nan, "head.weight", ["NaN", "index (3, 5)"]),
}

#: Files that do not load: name -> (maker, words the line must hold besides the file name).
FILES = {
    "truncated": (_bytes(lambda: DEMO.read_bytes()[: DEMO.stat().st_size // 2]),
                  ["cannot be read"]),
    "random-bytes": (_bytes(lambda: bytes(torch.randint(0, 256, (4096,),
                                                        generator=torch.Generator().manual_seed(1),
                                                        dtype=torch.uint8).tolist())),
                     ["cannot be read"]),
    "empty": (_bytes(lambda: b""), ["empty or truncated"]),
    "json": (_bytes(lambda: b'{"model": {"head.weight": [[1.0]]}}'),
             ["not a checkpoint of tensors"]),
    "pickled-code": (_pickled_code, ["refused, unpickling it would call", "nothing was run"]),
    "not-a-dict": (_state_dict_edit(lambda c: c.clear()), ["no 'model'"]),
    "misshaped": (_state_dict_edit(lambda c: c["model"].__setitem__(
        "head.weight", torch.zeros(7, 64))),
        ["'head.weight'", "expected shape (10, 64), found (7, 64)"]),
    "extra-key": (_state_dict_edit(lambda c: c["model"].__setitem__("bogus.weight",
                                                                    torch.zeros(3))),
                  ["unexpected key 'bogus.weight'"]),
    "missing-key": (_state_dict_edit(lambda c: c["model"].pop("head.bias")),
                    ["missing key 'head.bias'"]),
    "bad-config-entry": (_state_dict_edit(lambda c: c["config"].__setitem__("T", -1)),
                         ["'config' entry", "T=-1"]),
    "truncated-safetensors": (None, ["cannot be read as safetensors"]),
    "missing-file": (None, ["does not exist"]),
}
# Through the other entries: the cases that take different paths (the unpickler, the shape check,
# the existence checks made before torch). BAD_INPUT_FULL=1 runs every file case through every
# entry (about 40 more subprocesses).
FILES_EVERY_ENTRY = (tuple(sorted(FILES)) if os.environ.get("BAD_INPUT_FULL")
                     else ("pickled-code", "misshaped", "missing-file"))


# ----------------------------------------------------------------------------- entries

def _entry(name: str, ckpt: Path, tmp: Path) -> tuple[list, list]:
    """Return ``(argv, paths that must not exist afterwards)`` of one entry on ``ckpt``."""
    if name == "quant.cli":
        out = tmp / "out" / "quant"
        return [PY, "-m", "quant.cli", str(ckpt), "--out", str(out)], [tmp / "out"]
    if name == "make quantize":
        out = tmp / "out" / "quant"
        return (["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "quantize",
                 f"PY={PY}", f"CKPT={ckpt}", f"QOUT={out}"], [tmp / "out"])
    if name == "golden energy":
        return ([PY, "-m", "golden", "energy", "--ckpt", str(ckpt), "--images", "2",
                 "--json", str(tmp / "energy.json"), "--csv", str(tmp / "energy.csv")],
                [tmp / "energy.json", tmp / "energy.csv"])
    if name == "rtl_gen":
        point = tmp / "point.json"
        point.write_text(json.dumps({"units": ["shared_network"], "checkpoint": str(ckpt)}))
        return ([PY, "-m", "rtl_gen", "--config", str(point), "--out", str(tmp / "out" / "rtl"),
                 "--lint"], [tmp / "out"])
    if name == "sim.e2e":
        return ([PY, "-m", "sim.e2e", "--arch", "shared", "--checkpoint", str(ckpt), "--T", "1",
                 "--images", "1", "--out", str(tmp / "out" / "e2e")], [tmp / "out"])
    raise AssertionError(name)


ENTRIES = ("quant.cli", "make quantize", "golden energy", "rtl_gen", "sim.e2e")


#: ``python -m NAME``'s function: ``main(argv)`` of the module that runs.
MAINS = {"golden": "golden.__main__", "rtl_gen": "rtl_gen.__main__"}

#: File cases that always run in a subprocess (the pickled payload must never run in the test's
#: own process; a missing file goes through every entry's real command line).
ISOLATED_CASES = ("pickled-code", "missing-file")


def _run_in_process(argv: list) -> subprocess.CompletedProcess:
    """``python -m NAME ARGS`` as ``main(ARGS)`` in this process, from the repository root, with
    its standard streams captured: what a subprocess would print and its exit status. An
    exception ``main`` lets out is written as the traceback the command line would print."""
    main = importlib.import_module(MAINS.get(argv[2], argv[2])).main
    out, err, cwd, threads = io.StringIO(), io.StringIO(), os.getcwd(), torch.get_num_threads()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv[3:])
            except SystemExit as stop:
                status = stop.code
                if isinstance(status, str):
                    print(status, file=sys.stderr)
                    status = 1
            except Exception:  # noqa: BLE001 (the CLI's contract: this must not happen)
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, status or 0, out.getvalue(), err.getvalue())


def _run(argv: list, timeout: float = 180, isolate: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` from the repository root. ``python -m`` entries run in this process
    (``_run_in_process``: each subprocess would import torch again, about 2 s) unless
    ``isolate``; the rest as a subprocess, whose whole process group is killed on a timeout (an
    entry that wrongly went on to a Verilator build leaves no compiler running)."""
    if not isolate and argv[:2] == [PY, "-m"]:
        return _run_in_process(argv)
    with subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"{argv} ran past {timeout} s (did it go on to a build?)")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _refused(result, names, absent, make: bool = False) -> str:
    """Assert the precise refusal contract (module docstring); return the error line."""
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == 2, both
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if make:
        assert lines and MAKE_TRAILER.match(lines[-1]), both
        lines = lines[:-1]
    assert len(lines) == 1, both
    line = lines[0]
    assert line.startswith("error: "), line
    assert result.stdout.strip() == "", both
    for name in names:
        assert str(name) in line, f"{name!r} not in {line!r}"
    for path in absent:
        assert not path.exists(), f"{path} was written"
        staging = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
        assert not staging, staging
    return line


def _log(entry: str, case: str, line: str) -> None:
    """Append ``entry | case | line`` to ``$BAD_INPUT_LOG`` when set (for the issue's table)."""
    if os.environ.get("BAD_INPUT_LOG"):
        with open(os.environ["BAD_INPUT_LOG"], "a") as handle:
            handle.write(f"{entry} | {case} | {line}\n")


def _check(entry: str, ckpt: Path, tmp: Path, words, case: str = "") -> str:
    argv, absent = _entry(entry, ckpt, tmp)
    line = _refused(_run(argv, isolate=case in ISOLATED_CASES), [ckpt, *words], absent,
                    make=entry == "make quantize")
    _log(entry, case, line.replace(str(tmp), "$TMP"))
    return line


# ----------------------------------------------------------------------------- tests

def _rotated(cases, entries, per_case: int = 1, start: int = 0):
    """Every (case, entry) pair; ``make test`` runs ``per_case`` entries of each case, rotated
    (from entry ``start``), and leaves the rest of the cross product to ``make test-all`` (every
    entry spawns a Python process that imports torch: about 2 s each). The two uses below
    together meet every entry in ``make test``."""
    pairs = []
    for i, case in enumerate(cases):
        fast = {entries[(start + i * per_case + j) % len(entries)] for j in range(per_case)}
        for entry in entries:
            marks = () if entry in fast else (pytest.mark.slow,)
            pairs.append(pytest.param(case, entry, marks=marks, id=f"{case}-{entry}"))
    return pairs


@pytest.mark.parametrize("case, entry", _rotated(sorted(VALUES), ENTRIES))
def test_bad_values_every_entry(tmp_path, entry, case):
    maker, key, words = VALUES[case]
    ckpt = maker(tmp_path / "bad.pth")
    _check(entry, ckpt, tmp_path, [repr(key), *words], case)


@pytest.mark.parametrize("case", sorted(MORE_VALUES))
def test_more_bad_values(tmp_path, case):
    """The same check on more keys and values, in-process (the loader every entry calls)."""
    from golden.checkpoint import CheckpointError, load_checkpoint

    maker, key, words = MORE_VALUES[case]
    ckpt = maker(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt)
    line = str(info.value)
    assert "\n" not in line
    for word in [str(ckpt), repr(key), *words]:
        assert word in line, f"{word!r} not in {line!r}"


def test_safetensors_nan_through_quant_cli(tmp_path):
    maker, key, words = MORE_VALUES["safetensors-nan"]
    _check("quant.cli", maker(tmp_path / "bad.pth"), tmp_path, [repr(key), *words],
           case="safetensors-nan")


def _alternate(cases):
    """Every case; ``make test`` runs every other one (each spawns a Python process that imports
    torch), ``make test-all`` all of them."""
    return [pytest.param(case, marks=() if i % 2 == 0 else (pytest.mark.slow,))
            for i, case in enumerate(cases)]


@pytest.mark.parametrize("case", _alternate(sorted(FILES)))
def test_unloadable_files_quant(tmp_path, case):
    _unloadable(tmp_path, "quant.cli", case)


@pytest.mark.parametrize("case, entry", _rotated(FILES_EVERY_ENTRY,
                                                 [e for e in ENTRIES if e != "quant.cli"],
                                                 start=3))
def test_unloadable_files_every_entry(tmp_path, entry, case):
    _unloadable(tmp_path, entry, case)


def _unloadable(tmp_path, entry, case):
    maker, words = FILES[case]
    ckpt = tmp_path / "bad.pth"
    if maker is not None:
        ckpt = maker(ckpt)
    elif case == "truncated-safetensors":
        ckpt = _safetensors_nan(ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    _check(entry, ckpt, tmp_path, words, case)
    assert not (tmp_path / "PICKLE_RAN").exists(), "pickled code was executed"


def _tiny_channel(path: Path) -> Path:
    """Channel 3 of downsample2's conv at 1e-20: within the bounds, but its bias would need
    about 2**73 accumulator units at the channel's natural scale."""
    ckpt = _demo()
    weight = ckpt["model"]["downsample2.encode_conv.weight"].clone()
    weight[3] = 1e-20
    ckpt["model"]["downsample2.encode_conv.weight"] = weight
    torch.save(ckpt, path)
    return path


def test_unquantizable_layer_is_refused_not_wrapped(tmp_path):
    """Plausible values that still do not quantize: one line naming the layer, never a wrap."""
    from quant.quantize import QuantizationError
    from rtl_gen.emit import quantized_network
    from sim.e2e import demo_model, quantized

    ckpt = _tiny_channel(tmp_path / "bad.pth")
    for attempt in (lambda: quantized_network(str(ckpt), 8, 1),
                    lambda: quantized(demo_model(1, ckpt)[0])):
        with pytest.raises(QuantizationError, match=r"downsample2\.encode_conv: .*2\*\*53"):
            attempt()
    argv, absent = _entry("quant.cli", ckpt, tmp_path)
    line = _refused(_run(argv), [f"checkpoint {ckpt}: downsample2.encode_conv", "2**53",
                                 "cannot quantize"], absent)
    _log("quant.cli", "tiny-channel (1e-20)", line.replace(str(tmp_path), "$TMP"))


def test_pickled_payload_is_live(tmp_path):
    """The pickled-code file really runs code when unpickled unsafely (so the test means it)."""
    ckpt = _pickled_code(tmp_path / "bad.pth")
    torch.load(ckpt, weights_only=False)
    assert (tmp_path / "PICKLE_RAN").exists()


# Arguments. Each: (entry, argv after the entry, words). Checkpoint errors above use demo.pth's
# copies; these use demo.pth itself (or nothing).
ARGS = {
    "quant --bits 1": ([PY, "-m", "quant.cli", str(DEMO), "--bits", "1"], ["--bits 1", "2..16"]),
    "quant --bits 17": ([PY, "-m", "quant.cli", str(DEMO), "--bits", "17"],
                        ["--bits 17", "2..16"]),
    "quant --pixel-bits 0": ([PY, "-m", "quant.cli", str(DEMO), "--pixel-bits", "0"],
                             ["--pixel-bits 0"]),
    "quant --T 0": ([PY, "-m", "quant.cli", str(DEMO), "--T", "0"], ["--T 0", "at least 1"]),
    "quant --img-size 0": ([PY, "-m", "quant.cli", str(DEMO), "--img-size", "0"],
                           ["--img-size 0", "at least 1"]),
    "quant --img-size 40": ([PY, "-m", "quant.cli", str(DEMO), "--img-size", "40"],
                            ["img_size=40"]),
    "quant --variant nosuch": ([PY, "-m", "quant.cli", str(DEMO), "--variant", "nosuch"],
                               ["nosuch"]),
    "energy --T 0": ([PY, "-m", "golden", "energy", "--ckpt", str(DEMO), "--T", "0"],
                     ["--T 0", "at least 1"]),
    "energy --images 0": ([PY, "-m", "golden", "energy", "--images", "0"], ["--images 0"]),
    "energy --variant nosuch": ([PY, "-m", "golden", "energy", "--variant", "nosuch"],
                                ["nosuch"]),
    "e2e --T 0": ([PY, "-m", "sim.e2e", "--T", "0"], ["--T 0"]),
    "e2e --images 0": ([PY, "-m", "sim.e2e", "--images", "0"], ["--images 0"]),
    "e2e --lanes 0": ([PY, "-m", "sim.e2e", "--lanes", "0"], ["--lanes 0", "1..256"]),
    "e2e --max-T below --T": ([PY, "-m", "sim.e2e", "--T", "1", "4", "--max-T", "2"],
                              ["--max-T 2", "4 (the largest --T)"]),
    "e2e --threshold-memory with external parameters": (
        [PY, "-m", "sim.e2e", "--threshold-memory", "logic", "--parameters", "external"],
        ["threshold_memory 'logic'", "parameters 'external'"]),
}


@pytest.mark.parametrize("case", _alternate(sorted(ARGS)))
def test_bad_arguments(tmp_path, case):
    argv, words = ARGS[case]
    argv = list(argv)
    out = tmp_path / "out"
    if argv[2] in ("quant.cli", "sim.e2e"):
        argv += ["--out", str(out / "x")]
    elif argv[2] == "golden":
        argv += ["--json", str(tmp_path / "e.json")]
    line = _refused(_run(argv), words, [out, tmp_path / "e.json"])
    _log(case.split()[0], case, line.replace(str(tmp_path), "$TMP"))


@pytest.mark.parametrize("field,value,words", [
    ("weight_bits", 1, ["field 'weight_bits' is 1", "2..16"]),
    ("time_steps", 0, ["field 'time_steps' is 0", "1..16"]),
])
def test_bad_design_point(tmp_path, field, value, words):
    point = tmp_path / "point.json"
    point.write_text(json.dumps({"units": ["shared_network"], "checkpoint": str(DEMO),
                                 field: value}))
    result = _run([PY, "-m", "rtl_gen", "--config", str(point), "--out",
                   str(tmp_path / "out" / "rtl")])
    line = _refused(result, [point, *words], [tmp_path / "out"])
    _log("rtl_gen", f"{field} {value}", line.replace(str(tmp_path), "$TMP"))


def test_quant_refuses_an_existing_output_directory(tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep").write_text("mine")
    result = _run([PY, "-m", "quant.cli", str(DEMO), "--out", str(out)])
    _refused(result, [out, "already exists"], [])
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_make_quantize_refuses_an_existing_output_directory(tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    result = _run(["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "quantize",
                   f"PY={PY}", f"CKPT={DEMO}", f"QOUT={out}"])
    _refused(result, [out, "already exists"], [], make=True)
    assert not list(out.iterdir())


def test_rtl_gen_keeps_an_existing_output_on_a_bad_checkpoint(tmp_path):
    """rtl_gen replaces --out as a whole, but only after a good run: a bad checkpoint leaves it."""
    out = tmp_path / "out" / "rtl"
    out.mkdir(parents=True)
    (out / "keep").write_text("mine")
    ckpt = VALUES["nan-weight"][0](tmp_path / "bad.pth")
    argv, _ = _entry("rtl_gen", ckpt, tmp_path)
    _refused(_run(argv), [ckpt, "NaN"], [])
    assert [p.name for p in out.iterdir()] == ["keep"]
    assert [p.name for p in out.parent.iterdir()] == ["rtl"]  # no staging left beside it


# ----------------------------------------------------------------------------- accepted cases

ZERO_LAYER = "downsample2.encode_conv.weight"
ZERO_VAR = "downsample2.encode_bn.running_var"
ACCEPTED = {"zero-weight-layer": _zero(ZERO_LAYER), "zero-running-var": _edit(ZERO_VAR, 0.0, 4)}


def _both_oddities(path: Path) -> Path:
    ckpt = _demo()
    ckpt["model"][ZERO_LAYER] = torch.zeros_like(ckpt["model"][ZERO_LAYER])
    ckpt["model"][ZERO_VAR] = ckpt["model"][ZERO_VAR].clone()
    ckpt["model"][ZERO_VAR][4] = 0.0
    torch.save(ckpt, path)
    return path


def test_accepted_through_quant_cli_and_energy(tmp_path):
    """An all-zero layer and a zero running variance (one checkpoint) run through both CLIs."""
    ckpt = _both_oddities(tmp_path / "odd.pth")
    out = tmp_path / "quant"
    result = _run([PY, "-m", "quant.cli", str(ckpt), "--out", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ""
    assert (out / "manifest.json").exists()
    result = _run([PY, "-m", "golden", "energy", "--ckpt", str(ckpt), "--images", "2",
                   "--json", str(tmp_path / "e.json")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "e.json").read_text())["layers"]


def test_zero_weight_layer_quantizes_exactly(tmp_path):
    """All-zero weights: zero integer weights, the bias alone, finite positive scales.

    Checked through the very calls rtl_gen and sim.e2e make before they generate anything.
    """
    import numpy as np

    from quant.fold import fold_model
    from rtl_gen.emit import quantized_network
    from sim.e2e import demo_model, quantized

    ckpt = ACCEPTED["zero-weight-layer"](tmp_path / "odd.pth")
    model, trained = demo_model(1, ckpt)
    assert trained
    for net in (quantized_network(str(ckpt), 8, 1), quantized(model)):
        layer = net.layers["downsample2.encode_conv"]
        assert not layer.weight.any()
        assert np.all(np.isfinite(layer.scale)) and np.all(layer.scale > 0)
        folded = fold_model(model).layers["downsample2.encode_conv"]
        assert not folded.weight.any()
        expected = np.rint(folded.bias.numpy() / layer.scale)
        assert np.array_equal(layer.bias, expected.astype(np.int64))
        assert np.array_equal(layer.acc_low, layer.bias)
        assert np.array_equal(layer.acc_high, layer.bias)


def test_zero_running_var_folds_as_torch_evaluates_it(tmp_path):
    """A zero running variance folds to gamma / sqrt(eps), which is what eval-mode BN computes."""
    from quant.fold import bn_affine
    from rtl_gen.emit import quantized_network
    from sim.e2e import demo_model, quantized

    ckpt = ACCEPTED["zero-running-var"](tmp_path / "odd.pth")
    model, _ = demo_model(1, ckpt)
    bn = model.downsample2.encode_bn
    assert bn.running_var[4] == 0
    scale, shift = bn_affine(bn)
    x = torch.randn(3, bn.num_features, 2, 2, dtype=torch.float64)
    expected = bn(x)
    assert torch.allclose(scale.view(1, -1, 1, 1) * x + shift.view(1, -1, 1, 1), expected,
                          rtol=1e-12, atol=1e-12)
    for net in (quantized_network(str(ckpt), 8, 1), quantized(model)):
        assert net.layers["downsample2.encode_conv"].weight.any()


# ----------------------------------------------------------------------------- bad inputs files

# ``python -m sim.e2e --inputs FILE`` (and ``make sim INPUTS=FILE``) on the demo checkpoint: a
# file that is missing, unreadable, not one array, or whose images the model cannot take (shape,
# channels, size, dtype, NaN/Inf, outside the pixel range) is one line naming the file and the
# problem, exit status 2, nothing written. In-process through ``sim.e2e.main`` (stderr and the
# status captured, an escaping exception would be the traceback); SUBPROCESS_INPUTS (every case
# with BAD_INPUT_FULL=1) also run as ``python -m sim.e2e``.

def _digits(count: int = 2):
    from sim.e2e import test_images

    return test_images(count)[0].numpy()


def _npy(array_of):
    def make(path: Path) -> Path:
        path = path.with_suffix(".npy")
        np_save(path, array_of())
        return path
    return make


def np_save(path: Path, array, allow_pickle: bool = False) -> None:
    import numpy as np

    np.save(path, array, allow_pickle=allow_pickle)


def _with(value, index=(1, 0, 5, 7)):
    def array():
        x = _digits()
        x[index] = value
        return x
    return array


def _object_npy(path: Path) -> Path:
    import numpy as np

    path = path.with_suffix(".npy")
    np_save(path, np.array([{"images": 1}], dtype=object), allow_pickle=True)
    return path


def _pt(obj_of):
    def make(path: Path) -> Path:
        path = path.with_suffix(".pt")
        torch.save(obj_of(), path)
        return path
    return make


def _pt_pickled_code(path: Path) -> Path:
    path = path.with_suffix(".pt")
    torch.save(_Payload(path.parent / "PICKLE_RAN"), path)
    return path


def _suffixed(suffix: str, data: bytes):
    def make(path: Path) -> Path:
        path = path.with_suffix(suffix)
        path.write_bytes(data)
        return path
    return make


#: name -> (maker of the file in tmp_path (None: a missing file), extra argv, words in the line).
INPUTS = {
    "missing": (None, [], ["does not exist"]),
    "directory": (lambda p: (p.mkdir(), p)[1], [], ["is not a file"]),
    "unknown-suffix": (_suffixed(".txt", b"1 2 3"), [], ["unknown format .txt", ".npy or .pt"]),
    "npy-garbage": (_suffixed(".npy", b"not an array at all" * 10), [],
                    ["cannot be read as .npy"]),
    "npy-object-array": (_object_npy, [], ["cannot be read as .npy", "allow_pickle=False"]),
    "npy-three-dims": (_npy(lambda: _digits()[:, 0]), [],
                       ["shape (2, 32, 32)", "[N, 1, 32, 32]", "in_channels=1", "img_size=32"]),
    "npy-three-channels": (_npy(lambda: _digits().repeat(3, axis=1)), [],
                           ["3 channels", "in_channels=1", "[N, 1, 32, 32]"]),
    "npy-wrong-size": (_npy(lambda: _digits()[:, :, :28, :28]), [],
                       ["images of 28x28", "img_size=32"]),
    "npy-no-images": (_npy(lambda: _digits()[:0]), [], ["holds no images"]),
    "npy-nan": (_npy(_with(math.nan)), [], ["1 NaN", "index (1, 0, 5, 7)", "must be finite"]),
    "npy-inf": (_npy(_with(-math.inf, (0, 0, 2, 3))), [], ["1 Inf", "index (0, 0, 2, 3)"]),
    "npy-out-of-range-high": (_npy(_with(300.0)), [],
                              ["1 value outside the model's pixel range", "0 to 15.9375",
                               "300", "index (1, 0, 5, 7)"]),
    "npy-out-of-range-low": (_npy(_with(-0.5)), [], ["outside the model's pixel range", "-0.5"]),
    "npy-bool": (_npy(lambda: _digits() > 0.5), [], ["dtype bool", "float or integer"]),
    "npy-strings": (_npy(lambda: _digits().astype(str)), [], ["dtype <U", "float or integer"]),
    "too-few-images": (_npy(_digits), ["--images", "3"], ["holds 2 images", "--images asks for 3"]),
    "pt-dict": (_pt(lambda: {"images": torch.from_numpy(_digits())}), [],
                ["holds a dict, not a tensor"]),
    "pt-pickled-code": (_pt_pickled_code, [],
                        ["cannot be read with torch.load(weights_only=True)"]),
    "pt-garbage": (_suffixed(".pt", b"\x80\x04garbage"), [],
                   ["cannot be read with torch.load(weights_only=True)"]),
    "pt-complex": (_pt(lambda: torch.zeros(2, 1, 32, 32, dtype=torch.complex64)), [],
                   ["dtype complex64"]),
    "pt-nan": (_pt(lambda: torch.from_numpy(_with(math.nan)())), [], ["1 NaN"]),
}
SUBPROCESS_INPUTS = (tuple(sorted(INPUTS)) if os.environ.get("BAD_INPUT_FULL")
                     else ("pt-pickled-code",))


def _inputs_case(tmp_path: Path, case: str) -> tuple[list, list, Path]:
    maker, extra, words = INPUTS[case]
    path = maker(tmp_path / "images") if maker else tmp_path / "nowhere.npy"
    argv = ["--arch", "shared", "--checkpoint", str(DEMO), "--inputs", str(path), "--T", "1",
            *extra, "--out", str(tmp_path / "out" / "e2e")]
    return argv, [path, *words], path


def _main_in_process(argv: list, capsys) -> subprocess.CompletedProcess:
    from sim import e2e

    status = e2e.main(argv)  # an exception here is the traceback the CLI must not print
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, status, captured.out, captured.err)


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_bad_inputs_file(tmp_path, case, capsys):
    argv, words, path = _inputs_case(tmp_path, case)
    line = _refused(_main_in_process(argv, capsys), words, [tmp_path / "out"])
    assert line.startswith(f"error: inputs {path}"), line
    assert not (tmp_path / "PICKLE_RAN").exists(), "pickled code was executed"
    _log("sim.e2e --inputs", case, line.replace(str(tmp_path), "$TMP"))


@pytest.mark.parametrize("case", SUBPROCESS_INPUTS)
def test_bad_inputs_file_through_the_cli(tmp_path, case):
    argv, words, _ = _inputs_case(tmp_path, case)
    _refused(_run([PY, "-m", "sim.e2e", *argv], isolate=True), words, [tmp_path / "out"])
    assert not (tmp_path / "PICKLE_RAN").exists(), "pickled code was executed"


def test_digits_refused_for_a_model_that_does_not_take_them(tmp_path, capsys):
    """``--inputs digits`` on a 3-channel model: one line, nothing written."""
    from tests.test_e2e_config import saved_with_channels

    ckpt = saved_with_channels(tmp_path)
    argv = ["--checkpoint", str(ckpt), "--inputs", "digits", "--T", "1",
            "--out", str(tmp_path / "out" / "e2e")]
    _refused(_main_in_process(argv, capsys), ["the digits are 1x32x32", "3x32x32"],
             [tmp_path / "out"])


def test_api_refuses_bad_arrays_before_running():
    """The API takes arrays through the same checks (``sim.e2e.check_images``)."""
    import numpy as np

    from sim.e2e import InputError, prepare, select_inputs

    net = prepare(1, DEMO).net
    bad = _with(math.nan)()
    with pytest.raises(InputError, match=r"inputs array holds 1 NaN \(first at index "
                                         r"\(1, 0, 5, 7\)\)"):
        select_inputs(net, None, bad)
    with pytest.raises(InputError, match="3 channels"):
        select_inputs(net, None, torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="not an array"):
        select_inputs(net, None, [[0.0]])
    good = select_inputs(net, 1, _digits())
    assert good.source == "array" and good.images.dtype == torch.float64
    assert np.array_equal(good.images.numpy(), _digits()[:1])


# --- every command line refuses an unknown option in one line ----------------------------------

ENTRY_POINTS = ["golden.params", "golden.energy", "golden.bench", "golden.train", "quant.cli",
                "quant.bench", "sim.bench_sdsa", "sim.bench_units", "sim.e2e", "sim.paper",
                "sim.perf", "sim.project", "sim.sepconv", "sim.spill", "rtl_gen.__main__",
                "rtl_gen.dse", "rtl_gen.paths"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_unknown_option_is_one_error_line(module, capsys):
    """argparse's refusal (the usage, then the error) is one line through
    ``golden.cliargs.Parser``: exit status 2, nothing on standard output."""
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main(["--no-such-option"])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    # the option named, or (argparse checks them first) the required arguments missing
    assert captured.err.startswith("error: ") and (
        "--no-such-option" in captured.err or "arguments are required" in captured.err)


@pytest.mark.parametrize("argv, words", [([], "no command given"),
                                         (["nosuch"], "unknown command 'nosuch'")])
def test_golden_without_a_known_command_is_one_error_line(argv, words, capsys):
    from golden.__main__ import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {words}")
    assert main(["--help"]) == 0 and "usage: python -m golden" in capsys.readouterr().out
