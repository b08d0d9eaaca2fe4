"""Table 5's ablations in the shared network (``hw.shared``), at demo scale.

Each ablation of ``sim.paper.DEMO_ABLATIONS`` (the demo with one row of the paper's Table 5:
Linear Q/K/V or projection instead of RepConv, no SepConv, ChannelMLP in the Conv-based blocks,
stage 1 as 2C at H/4, no pyramid, fully Conv-based, fully Transformer-based, the vanilla and
SEW shortcuts; and the baseline) with random weights calibrated so that every LIF fires
(``python -m sim.paper --variant demo --ablation NAME --seed S``). The SDSA operators are
``tests/test_shared_variants.py``'s.

* Fast (no Verilator): every LIF fires between 1 % and 50 % at T=1 and T=4 on the seeded random
  image (but the head LIFs that no batch norm moves alone, ``sim.e2e.UNCALIBRATED``: the
  vanilla one cannot fire, the SEW one fires where a mean count reaches 2); the plan
  accepts the model; the cycle model equals, step for step, the cycles Verilator measured for
  each ablation at T=1 and T=4 (``tests/data/perf_ablations.json``, written by
  ``tests/data/make_perf_ablations.py`` from bit-exact runs; the model never wrote them).
* Slow (Verilator, ``make test-all``): each ablation through the public command lines, one
  build for T=4 run for 1 and 4 time steps, logits and every spike map ``==`` the integer model.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hw.plan import SharedPlan
from quant.intmodel import IntegerModel
from sim.e2e import NEVER_FIRING, UNCALIBRATED, quantized, select_inputs
from sim.paper import DEMO_ABLATIONS, make
from sim.perf import CycleModel, map_spikes, rtl_step_cycles
from subsets import every_nth

torch.set_num_threads(1)

DATA = json.loads((Path(__file__).parent / "data" / "perf_ablations.json").read_text())
_CACHE = {}


def model(name: str, T: int):
    """The ablation's calibrated random model at ``T``, with the float32 weights its saved
    checkpoint holds (``sim.paper`` saves ``model.float()``)."""
    if (name, T) not in _CACHE:
        _CACHE[name, T] = make("demo", 32, DEMO_ABLATIONS[name], T, name).float().double()
    return _CACHE[name, T]


def traced(name: str, T: int):
    """``(net, trace)``: the quantized net and the integer model's trace of the seeded image."""
    if (name, T, "trace") not in _CACHE:
        net = quantized(model(name, T))
        integer = IntegerModel(net)
        images = select_inputs(net, 1, "random", DEMO_ABLATIONS[name]).images
        _CACHE[name, T, "trace"] = net, integer.forward(integer.quantize_input(images),
                                                        trace=True)[1]
    return _CACHE[name, T, "trace"]


@pytest.mark.parametrize("name", list(DEMO_ABLATIONS))
def test_every_lif_fires_and_the_plan_accepts_it(name):
    for T in (1, 4):
        net, trace = traced(name, T)
        assert net.cfg.T == T
        never = NEVER_FIRING.get(net.cfg.shortcut, ())
        alone = UNCALIBRATED.get(net.cfg.shortcut, ())
        for lif in trace.spikes:
            rate = float(np.asarray(map_spikes(net, trace, lif)).mean())
            if lif in never:
                assert rate == 0, (name, T, lif, rate)
            elif lif in alone:   # the SEW head LIF: a mean count of 2 fires it
                assert rate <= 0.5, (name, T, lif, rate)
            else:
                assert 0.01 <= rate <= 0.5, (name, T, lif, rate)
    plan = SharedPlan(traced(name, 4)[0], 16, pack_weights=False)
    assert plan.stem_once and plan.T == 4


def test_the_stored_runs_cover_every_ablation_bit_exact():
    seen = {(run["ablation"], run["T"]) for run in DATA["runs"] if run["match"]}
    assert seen == {(name, T) for name in DEMO_ABLATIONS for T in (1, 4)}
    assert all(run["seed"] == DEMO_ABLATIONS[run["ablation"]] for run in DATA["runs"])


# make test: every third stored run, every ablation and T among them (all in make test-all)
@pytest.mark.parametrize("index", every_nth(range(len(DATA["runs"])), 3))
def test_cycle_model_equals_the_measured_rtl(index):
    """Every step of every stored run predicted exactly (the runs are one T=4 build each, run
    for 1 and for 4 time steps through its ``time_steps`` port)."""
    run = DATA["runs"][index]
    net, trace = traced(run["ablation"], run["max_T"])
    plan = SharedPlan(net, 16, pack_weights=False)
    measured = rtl_step_cycles({"cycles": run["cycles"], "steps": run["steps"]}, len(plan.steps))
    predicted = {(row["t"], row["step"]): row["cycles"] for row in
                 CycleModel(plan, time_steps=run["T"]).predict(trace, 0)["steps"]}
    assert measured and predicted == measured, run["ablation"]


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("name, schedule", [(name, "time") for name in DEMO_ABLATIONS]
                         + [("shortcut_sew", "layer"),     # the pool's passes time-major
                            ("shortcut_vanilla", "layer")],  # residual LIFs, layer-major
                         ids=[*DEMO_ABLATIONS, "shortcut_sew-layer", "shortcut_vanilla-layer"])
def test_ablation_is_bit_exact_on_verilator(name, schedule, tmp_path):
    seed = str(DEMO_ABLATIONS[name])
    path = tmp_path / f"{name}.pth"
    made = subprocess.run([sys.executable, "-m", "sim.paper", "--variant", "demo", "--img-size",
                           "32", "--ablation", name, "--seed", seed, "--out", str(path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    run = subprocess.run([sys.executable, "-m", "sim.e2e", "--checkpoint", str(path), "--inputs",
                          "random", "--seed", seed, "--images", "1", "--max-T", "4", "--T", "1",
                          "4", "--schedule", schedule, "--out", str(tmp_path / "e2e")],
                         capture_output=True, text=True)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "MISMATCH" not in run.stdout
    for T in (1, 4):
        result = json.loads((tmp_path / "e2e" / f"results_T{T}.json").read_text())
        assert all(image["match"] for image in result["images"]), (name, T)
