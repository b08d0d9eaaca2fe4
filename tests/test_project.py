"""The projection tool (``python -m sim.project``) on the demo's structure.

* Its cycles are the cycle model's: the demo's calibrated random model at 16 lanes gives the
  total of :class:`sim.perf.CycleModel` built here on its own (``SharedPlan`` with packed
  weights, the trace of the seeded random image), and that total is also the one Verilator
  measured for that model and image (``tests/data/perf_rtl.json``, SDSA-3 run); the trained
  demo checkpoint (``--checkpoint``) gives the cycles Verilator measured on its digits.
* The plan without weight packing sizes everything as the full plan does (memories, padding,
  limits, cycles).
* Cycles fall or stay as the lanes rise (16 -> 32); two runs write byte-identical CSV, JSON and
  PNG; bad arguments are one ``error:`` line and exit status 2, nothing written; a lane count
  that fails, runs too long or out of memory is a row marked not computed, with the reason.
"""

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import sim.project as project
from golden.config import variant
from hw.plan import SharedPlan
from quant.intmodel import IntegerModel
from sim.e2e import quantized, random_model, select_inputs
from sim.perf import CycleModel

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
RTL = ROOT / "tests" / "data" / "perf_rtl.json"
FILES = ("projection.csv", "projection.json", "projection.png")


def run(tmp_path: Path, name: str, *extra) -> tuple[int, Path]:
    out = tmp_path / name
    status = project.main(["--variant", "demo", "--T", "1", "--lanes", "32", "16",
                           "--out", str(out), *extra])
    return status, out


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two runs of the tool on the demo at 16 and 32 lanes, T=1, into two directories."""
    tmp = tmp_path_factory.mktemp("project")
    first = run(tmp, "a")
    second = run(tmp, "b")
    return first, second


def demo_trace():
    """The demo's calibrated random model, its integer net and the trace of the seeded random
    image, built here without sim.project."""
    net = quantized(random_model(variant("demo", T=1), 0))
    integer = IntegerModel(net)
    images = select_inputs(net, 1, "random", 0).images
    _, trace = integer.forward(integer.quantize_input(images), trace=True)
    return net, trace


def test_runs_succeed_and_files_are_byte_identical(demo_runs):
    (status_a, a), (status_b, b) = demo_runs
    assert status_a == status_b == 0
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    png = (a / "projection.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png and b"date" not in png


def test_cycles_fall_or_stay_as_lanes_rise(demo_runs):
    (_, out), _ = demo_runs
    with open(out / "projection.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {row["status"] for row in table} == {"ok"}
    assert {float(row["clock_mhz"]) for row in table} == {100.0, 500.0}
    cycles = {}
    for row in table:
        cycles.setdefault(int(row["lanes"]), set()).add(float(row["cycles"]))
    assert sorted(cycles) == [16, 32] and all(len(v) == 1 for v in cycles.values())
    assert cycles[32].pop() <= cycles[16].pop()
    for row in table:   # images/s is the clock over the cycles
        assert float(row["images_per_s"]) == pytest.approx(
            float(row["clock_mhz"]) * 1e6 / float(row["cycles"]), rel=1e-5)


def test_cycles_at_16_lanes_are_the_cycle_models_and_verilators(demo_runs):
    """Independent path: CycleModel on a full SharedPlan and a trace made here."""
    (_, out), _ = demo_runs
    doc = json.loads((out / "projection.json").read_text())
    point = next(p for p in doc["cases"][0]["points"] if p["lanes"] == 16)
    net, trace = demo_trace()
    expected = CycleModel(SharedPlan(net, 16)).predict(trace, 0)["total"]
    assert point["cycles"] == expected
    # The same model and image on Verilator (sim.e2e --checkpoint random --sdsa 3 --inputs
    # random, stored by tests/data/make_perf_rtl.py): the same total.
    stored = json.loads(RTL.read_text())
    measured = next(r for r in stored["runs"] if r.get("sdsa") == 3 and r["T"] == 1)
    assert sum(c for _, _, c in measured["images"][0]["steps"]) == expected
    # The row's numbers follow from the point's.
    row = next(r for r in doc["rows"] if r["lanes"] == 16 and r["clock_mhz"] == 500.0)
    assert row["cycles"] == expected
    assert row["onchip_bits"] == sum(point["memory"].values())
    assert row["ext_bytes_per_image"] == point["memory"]["weights"] / 8 + 32 * 32


def test_weights_over_axi_are_the_measured_rtl_cycles():
    """--axi-bus: the trained demo's first two digits at 16 lanes, weights over a 64-bit bus at
    latency 30 with the default ring. Verilator measured those runs (tests/data/perf_axi.json,
    no cycle model in them): the projection's mean is theirs within the cycle model's stated
    bound (five cycles an image, tests/test_weightfetch.py)."""
    from hw.weightfetch import WeightRing
    from sim.perf import load_trace

    _, plan, trace = load_trace(None, 2, 1)
    point = project.lane_point(plan.net, trace, 16, images=2,
                               axi={"bus": 64, "latency": 30, "ring_words": None})
    stored = json.loads((ROOT / "tests" / "data" / "perf_axi.json").read_text())["runs"]
    measured = [r["cycles"] for r in stored
                if (r["width"], r["latency"], r["ring"], r["T"]) == (64, 30, None, 1)]
    assert sorted(r["image"] for r in stored
                  if (r["width"], r["latency"], r["ring"]) == (64, 30, None)) == [0, 1]
    axi = point["axi"]
    assert abs(axi["cycles"] - np.mean(measured)) <= 5
    assert axi["ratio"] == pytest.approx(axi["cycles"] / point["cycles"])
    assert axi["ratio"] > 1   # the demo is bandwidth-bound on a 64-bit bus (docs/weightfetch.md)
    ring = WeightRing(plan, data_width=64)
    assert (axi["ring_words"], axi["ring_bits"]) == (ring.depth, ring.memory_bits())
    assert axi["read_bytes"] == ring.bytes_per_step >= axi["floor_bytes"] == ring.floor_bytes()


def test_axi_columns_in_the_table_and_files(tmp_path, capsys):
    status, out = run(tmp_path, "axi", "--axi-bus", "128", "--ring-words", "4096")
    assert status == 0
    text = capsys.readouterr().out
    assert "weights over AXI4: 128-bit bus, read latency 30 cycles, weight ring of 4,096" in text
    with open(out / "projection.csv") as handle:
        table = list(csv.DictReader(handle))
    for row in table:
        assert float(row["axi_cycles"]) >= float(row["cycles"])
        assert float(row["axi_ratio"]) == pytest.approx(
            float(row["axi_cycles"]) / float(row["cycles"]), rel=1e-9)
        assert int(row["axi_ring_bits"]) == 4096 * int(row["lanes"]) * 8
        assert float(row["axi_floor_ratio"]) >= 1
    plain, _ = run(tmp_path, "plain")
    with open(tmp_path / "plain" / "projection.csv") as handle:
        assert all(row["axi_cycles"] == "" for row in csv.DictReader(handle))


def test_a_checkpoint_projects_its_own_firing(tmp_path, monkeypatch):
    """--checkpoint: the trained demo on its first two held-out digits at T=1 and T=2; the mean
    cycles are those Verilator measured (tests/data/perf_rtl.json)."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "ckpt"
    assert project.main(["--checkpoint", "golden/checkpoints/demo.pth", "--T", "1", "2",
                         "--images", "2", "--lanes", "16", "--clock-mhz", "100",
                         "--out", str(out)]) == 0
    doc = json.loads((out / "projection.json").read_text())
    stored = json.loads(RTL.read_text())
    for case in doc["cases"]:
        assert case["case"]["rate_target"] is None and "checkpoint" in case["case"]["firing"]
        run = next(r for r in stored["runs"] if r["checkpoint"] == "golden/checkpoints/demo.pth"
                   and r["T"] == case["case"]["T"])
        totals = [sum(c for _, _, c in image["steps"]) for image in run["images"][:2]]
        assert case["points"][0]["per_image"] == totals
        assert case["points"][0]["cycles"] == sum(totals) / 2


def test_the_paper_energy_is_compared_only_where_one_is_recorded(demo_runs):
    """The issue's figure (15M at 224x224, T=1: 4.0 mJ at 0.9 pJ per AC) meets a case of that
    model, size and T alone; the demo's cases have none."""
    info = {"model": "15M", "img_size": 224, "T": 1, "energy": {"sop": 2.0e9}}
    paper = project.paper_energy(info)
    assert paper["mj"] == 4.0
    assert paper["implied_sop"] == pytest.approx(4.0e-3 / 0.9e-12)
    assert paper["sop_ratio"] == pytest.approx(4.0e-3 / 0.9e-12 / 2.0e9)
    for other in ({**info, "T": 4}, {**info, "img_size": 64}, {**info, "model": "31M"}):
        assert project.paper_energy(other) is None
    doc = json.loads((demo_runs[0][1] / "projection.json").read_text())
    assert all(case["case"]["paper_energy"] is None for case in doc["cases"])


@pytest.mark.parametrize("name, lanes", [("demo", 16), ("demo", 32), ("tiny", 8)])
def test_sizing_plan_sizes_as_the_full_plan(name, lanes):
    """Without packed weight words the plan has the same memories, padding, limits and cycles."""
    if name == "demo":
        net, trace = demo_trace()
    else:
        net = quantized(random_model(variant(name, T=2), 0))
        integer = IntegerModel(net)
        x = select_inputs(net, 1, "random", 0).images
        _, trace = integer.forward(integer.quantize_input(x), trace=True)
    full = SharedPlan(net, lanes)
    sizing = project.sizing_plan(net, lanes)
    assert sizing.memory_report() == full.memory_report()
    assert sizing.padding_report() == full.padding_report()
    assert sizing.engine_limits == full.engine_limits
    assert (sizing.weight_depth, sizing.weight_width, sizing.acc_width) == \
        (full.weight_depth, full.weight_width, full.acc_width)
    assert CycleModel(sizing).predict(trace, 0) == CycleModel(full).predict(trace, 0)
    assert any(full.weight_words) and not any(sizing.weight_words)
    point = project.lane_point(net, trace, lanes)
    assert point["cycles"] == CycleModel(full).predict(trace, 0)["total"]
    assert point["sops"] == project.trace_sops(full, trace, 0) > 0


def _raises():
    raise ValueError("no such plan")


def _sleeps():
    time.sleep(30)
    return {}


def _allocates():
    return np.ones(2 ** 28)   # 2 GiB


def test_lane_points_that_fail_are_reported_not_computed():
    assert project.run_isolated(lambda: {"a": 1}, 60, 1) == ({"a": 1}, None)
    assert project.run_isolated(_raises, 60, 1) == (None, "not computed: no such plan")
    begin = time.perf_counter()
    result, reason = project.run_isolated(_sleeps, 0.5, 1)
    assert result is None and "longer than 0.5 s" in reason
    assert time.perf_counter() - begin < 10
    result, reason = project.run_isolated(_allocates, 60, 0.5)
    assert result is None and "more than 0.5 GB" in reason


def test_a_row_not_computed_is_in_the_table_and_the_files(tmp_path, capsys):
    status, out = run(tmp_path, "slow", "--lane-timeout", "0.001")
    assert status == 0
    text = capsys.readouterr().out
    assert "not computed: took longer than 0.001 s" in text
    assert "no lane count computed" in text
    with open(out / "projection.csv") as handle:
        table = list(csv.DictReader(handle))
    assert table and {row["status"] for row in table} == {"not computed"}
    assert all(row["cycles"] == "" and "longer" in row["reason"] for row in table)


@pytest.mark.parametrize("argv, words", [
    (["--lanes", "0"], "--lanes 0"),
    (["--lanes", "16", "16"], "repeats"),
    (["--lanes", "x"], "--lanes"),
    (["--T", "0"], "--T 0"),
    (["--T", "1", "1"], "repeats"),
    (["--clock-mhz", "-5"], "--clock-mhz"),
    (["--variant", "nosuch"], "nosuch"),
    (["--checkpoint", "no/such.pth"], "no/such.pth"),
    (["--checkpoint", "golden/checkpoints/demo.pth", "--variant", "demo"], "--variant"),
    (["--checkpoint", "golden/checkpoints/demo.pth", "--rates", "0.2"], "--rates"),
    (["--variant", "demo", "--rates", "0.5"], "--rates 0.5"),
    (["--variant", "demo", "--inputs", "random"], "--inputs"),
    (["--variant", "demo_dvs"], "event"),
    (["--img-size", "4"], "--img-size 4"),
    (["--input-buffer", "1"], "--input-buffer 1"),
    (["--axi-latency", "30"], "give --axi-bus"),
    (["--ring-words", "4096"], "give --axi-bus"),
    (["--axi-bus", "48"], "--axi-bus 48"),
    (["--axi-bus", "64", "--fold", "2", "--lanes", "16"], "column folding"),
    (["--axi-bus", "64", "--axi-latency", "0"], "--axi-latency 0"),
    (["--axi-bus", "64", "--ring-words", "1000"], "--ring-words 1000"),
    (["--bogus"], "--bogus"),
])
def test_bad_arguments_are_one_error_line(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    try:
        status = project.main([*argv, "--out", str(out)])
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert words in lines[0]
    assert not out.exists()
