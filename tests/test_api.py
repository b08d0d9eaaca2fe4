"""The Python API (``rtl_gen.api``), the ``--inputs`` path and the make/CLI flags around them.

- ``test_api_digits_and_npy_inputs_agree`` (fast): ``rtl_gen.convert`` + ``simulate`` on the
  shipped demo, 2 digits at T=2, RTL logits ``==`` the integer golden model's; then ``python -m
  sim.e2e --inputs`` on a .npy of the same 2 digits gives the same predictions, cycles and
  bit-exact result. T=2 and the xdist group ``demo_T2`` so that it reuses, on the same worker,
  the Verilator build the fast suite makes anyway (``tests/test_shared_network.py``'s T2 case;
  ``make test`` runs ``--dist loadgroup``): a T=1 build costs 1-3 more minutes on a fresh clone.
- ``test_npy_inputs_are_the_digits`` (fast, no RTL): a .npy / .pt of 2 digits feeds the very pixel
  codes, integer and float logits of the digits path.
- ``test_readme_python_api_example`` (slow): the README's "Python API" block, run as written (1
  image at T=1), checked with ``==`` against the integer model, and its Verilog against
  ``python -m rtl_gen --checkpoint``'s.
- ``make -n``: ``CKPT``, ``INPUTS``, ``IMAGES`` and ``TSTEPS`` reach the commands; ``make demo``'s
  commands did not change.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "golden" / "checkpoints" / "demo.pth"
ENV = dict(os.environ, OMP_NUM_THREADS="1")

torch.set_num_threads(1)


def integer_logits(design, images) -> torch.Tensor:
    from quant.intmodel import IntegerModel

    return IntegerModel(design.net).forward(torch.as_tensor(images, dtype=torch.float64))


@pytest.mark.slow    # a whole-network Verilator build of the demo: make test-all, make sim
@pytest.mark.verilator
@pytest.mark.xdist_group("demo_T2")
def test_api_digits_and_npy_inputs_agree(tmp_path):
    """The API on the default digits, then ``python -m sim.e2e --inputs`` on a .npy of the same
    2 digits: RTL logits ``==`` the integer model's, and the same predictions, cycles, bit-exact."""
    import rtl_gen
    from sim.e2e import test_images

    design = rtl_gen.convert(DEMO, T=2)
    assert design.trained and design.cfg.name == "demo" and design.T == 2
    report = design.simulate(images=2)  # the default inputs: the held-out digits
    digits, labels = test_images(2)
    assert report.source == "digits" and report.labels == labels.tolist()
    assert report.error is None, report.error
    assert report.bit_exact == [True, True] and report.all_bit_exact
    assert torch.equal(torch.from_numpy(report.logits), integer_logits(design, digits))
    assert report.predictions == report.int_predictions
    assert len(report.cycles) == 2 and all(c > 0 for c in report.cycles)
    assert report.total["cycles"] > 0 and report.steps

    images = tmp_path / "two_digits.npy"
    np.save(images, digits.numpy())
    out = tmp_path / "e2e"
    result = subprocess.run(
        [sys.executable, "-m", "sim.e2e", "--checkpoint", str(DEMO), "--inputs", str(images),
         "--T", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"inputs: 2 1x32x32 images from {images}" in result.stdout
    rows = re.findall(r"^\s+(\d)\s+-\s+(\d)\s+(\d)\s+(\d)\s+(\d+)\s+(\d+)\s+\S+\s+(yes|NO)$",
                      result.stdout, re.M)
    assert [row[-1] for row in rows] == ["yes", "yes"], result.stdout[-3000:]
    saved = json.loads((out / "report_T2.json").read_text())
    assert saved["input_source"] == "file" and saved["error"] is None
    assert saved["rtl_pred"] == report.predictions
    assert saved["int_pred"] == report.int_predictions
    assert saved["float_pred"] == report.float_predictions
    assert saved["int_logits"] == report.int_logits.tolist()
    assert saved["rtl_cycles"] == report.cycles


def test_npy_inputs_are_the_digits(tmp_path):
    """The file path feeds exactly what the digits path feeds: same pixels, codes, logits."""
    from quant.intmodel import IntegerModel
    from sim.e2e import golden_run, prepare, select_inputs

    network = prepare(1, DEMO)
    digits = select_inputs(network.net, 2)
    assert digits.source == "digits" and len(digits) == 2
    np.save(tmp_path / "two.npy", digits.images.numpy())
    torch.save(digits.images.clone(), tmp_path / "two.pt")
    for name in ("two.npy", "two.pt"):
        mine = select_inputs(network.net, None, tmp_path / name)
        assert mine.source == "file" and mine.labels is None
        assert torch.equal(mine.images, digits.images.to(torch.float64))
        integer = IntegerModel(network.net)
        assert torch.equal(integer.quantize_input(mine.images),
                           integer.quantize_input(digits.images))
        ours = golden_run(network.model, network.net, mine.images)
        theirs = golden_run(network.model, network.net, digits.images)
        assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[3], theirs[3])
    assert len(select_inputs(network.net, 1, tmp_path / "two.npy")) == 1  # --images 1: the first


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_is_the_one_tested():
    code = readme_example()
    assert 'rtl_gen.convert("golden/checkpoints/demo.pth", T=1)' in code
    assert "design.simulate(images=1)" in code and '"build/api/rtl"' in code


@pytest.mark.slow
@pytest.mark.verilator
def test_readme_python_api_example(tmp_path, monkeypatch, capsys):
    """The README's example as written (its Verilog into tmp_path), then `==` checks."""
    monkeypatch.chdir(ROOT)
    rtl = tmp_path / "rtl"
    code = readme_example().replace('"build/api/rtl"', repr(str(rtl)))
    scope = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102 - our own README
    design, report, x, logits = scope["design"], scope["report"], scope["x"], scope["logits"]
    assert "demo: embed_dim=[16, 32, 64, 64]" in capsys.readouterr().out
    assert report.T == 1 and len(report.bit_exact) == 1 and report.all_bit_exact
    first = design.inputs("digits", images=1).images
    assert torch.equal(torch.from_numpy(report.logits), integer_logits(design, first))
    assert torch.equal(torch.from_numpy(logits), integer_logits(design, x))
    # The API's Verilog is the command line's: python -m rtl_gen --checkpoint, same design point.
    point = tmp_path / "point.json"
    point.write_text(json.dumps({"units": ["shared_network"], "time_steps": 1}))
    cli = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "rtl_gen", "--config", str(point), "--checkpoint",
         "golden/checkpoints/demo.pth", "--out", str(cli)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr
    for name in ("shared_network.v", "shared_network_weights.hex"):
        assert (rtl / name).read_bytes() == (cli / name).read_bytes(), name


# ----------------------------------------------------------------------------- make

def make_n(*args) -> list[str]:
    result = subprocess.run(
        ["make", "-n", "-s", "--no-print-directory", "-o", ".venv/.installed", *args,
         "PY=python"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in ENV.items() if k not in ("CKPT", "INPUTS", "IMAGES", "TSTEPS")})
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines()
            if "-m sim.e2e" in line or "-m rtl_gen" in line]


def test_make_sim_passes_ckpt_inputs_images_and_time_steps():
    (line,) = make_n("sim", "CKPT=mine.pth", "INPUTS=images.npy", "TSTEPS=1 4")
    assert "--checkpoint mine.pth" in line and "--inputs images.npy" in line
    assert "--T 1 4" in line and "--images" not in line  # every image of the file
    (line,) = make_n("sim", "CKPT=mine.pth", "INPUTS=images.npy", "IMAGES=2")
    assert "--images 2 " in line
    (line,) = make_n("sim")
    assert "--images 4 " in line and "--inputs" not in line and "--T 1 2" in line


def test_make_rtl_ckpt_overrides_only_when_given():
    (line,) = make_n("rtl", "CKPT=mine.pth")
    assert "--checkpoint mine.pth" in line
    (line,) = make_n("rtl")
    assert "--checkpoint" not in line


def test_make_demo_commands_unchanged():
    lines = make_n("demo", "CKPT=mine.pth")
    assert lines == [
        "OMP_NUM_THREADS=1 python -m rtl_gen --config rtl_gen/configs/default.json "
        "--out build/rtl --lint",
        "OMP_NUM_THREADS=1 python -m sim.e2e --arch shared --checkpoint mine.pth --images 4 "
        "--T 1 2 --out build/e2e",
    ]


def test_rtl_gen_checkpoint_flag_is_checked(tmp_path):
    """--checkpoint: a missing file, or a design point without the network, is one line."""
    for argv, words in (
            (["--checkpoint", str(tmp_path / "nowhere.pth")],
             ["checkpoint", "nowhere.pth", "(--checkpoint) does not exist"]),
            (["--units", "lif", "--checkpoint", str(DEMO)],
             ["emits no 'shared_network' unit"])):
        result = subprocess.run([sys.executable, "-m", "rtl_gen", *argv, "--out",
                                 str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env=ENV)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
        assert all(word in lines[0] for word in words), lines[0]
        assert not (tmp_path / "out").exists()


def test_api_passes_the_schedule_and_parameter_placement_to_the_design_point():
    """``convert(schedule=, parameters=)`` reach the co-simulated network and the design point
    that :meth:`Design.write_rtl` emits (no RTL built here)."""
    from rtl_gen import api

    design = api.convert(DEMO, T=4, schedule="layer", parameters="external")
    point = design.design_point()
    assert (design.network.schedule, design.network.parameters) == ("layer", "external")
    assert (point.schedule, point.parameters, point.time_steps) == ("layer", "external", 4)
    assert api.convert(DEMO, T=1).design_point().parameters == "internal"
