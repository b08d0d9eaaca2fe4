"""The co-simulation simulates a checkpoint's own configuration, or refuses it; never the demo's.

Checkpoints saved with ``golden.save_checkpoint`` for configurations that share the demo's keys but
differ (SDSA operator, shortcut, attention threshold, T) must be loaded as themselves. The ones the
network RTL cannot run are refused by ``python -m sim.e2e`` with one line naming the checkpoint,
its configuration and the reason, exit status 2, before anything is written or built.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golden.checkpoint import load_checkpoint, save_checkpoint
from golden.model import MetaSpikeFormer
from sim.e2e import check_supported, demo_model, quantized

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "golden" / "checkpoints" / "demo.pth"


def saved_like_demo(tmp_path: Path, **changes) -> Path:
    """Save the demo's weights under a configuration with ``changes`` (same keys required)."""
    demo = load_checkpoint(DEMO)
    model = MetaSpikeFormer(demo.cfg.replace(**changes))
    assert model.state_dict().keys() == demo.state_dict().keys(), "the keys must match the demo's"
    model.load_state_dict(demo.state_dict())
    path = tmp_path / ("_".join(f"{k}-{v}" for k, v in changes.items()) + ".pth")
    save_checkpoint(model, path)
    return path


@pytest.mark.parametrize("changes", [dict(sdsa=1), dict(shortcut="sew"), dict(attn_threshold=0.25),
                                     dict(T=2)], ids=lambda c: "-".join(map(str, c.items())))
def test_checkpoint_is_loaded_as_itself(tmp_path, changes):
    path = saved_like_demo(tmp_path, **changes)
    T = changes.get("T", 1)
    model, trained = demo_model(T, path)
    assert trained
    assert model.cfg == load_checkpoint(DEMO).cfg.replace(**changes)


def test_a_supported_difference_reaches_the_hardware(tmp_path):
    """A different attention threshold is simulated with its own integer threshold."""
    path = saved_like_demo(tmp_path, attn_threshold=0.25)
    mine = quantized(demo_model(1, path)[0])
    demo = quantized(demo_model(1, DEMO)[0])
    check_supported(demo_model(1, path)[0], "shared", 16)
    prefix = next(iter(mine.attention))
    assert mine.attention[prefix].threshold != demo.attention[prefix].threshold


@pytest.mark.parametrize("changes, reason", [
    (dict(sdsa=1), "SDSA-3"),
    (dict(shortcut="sew"), "sew"),
], ids=["sdsa1", "sew"])
def test_unsupported_checkpoint_is_refused_not_swapped(tmp_path, changes, reason):
    path = saved_like_demo(tmp_path, **changes)
    out = tmp_path / "e2e"
    result = subprocess.run(
        [sys.executable, "-m", "sim.e2e", "--arch", "shared", "--checkpoint", str(path),
         "--T", "1", "--images", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert str(path) in lines[0] and "cannot be simulated" in lines[0]
    for field, value in changes.items():
        assert f"{field}={value}" in lines[0], lines[0]   # the configuration it refused
    assert reason.lower() in lines[0].lower(), lines[0]
    assert not out.exists()


def test_the_co_simulation_refuses_inputs_it_does_not_have(tmp_path):
    model, _ = demo_model(1, "random")
    wide = MetaSpikeFormer(model.cfg.replace(in_channels=3))
    with pytest.raises(NotImplementedError, match="digits"):
        check_supported(wide.double().eval(), "shared", 16)


torch.set_num_threads(1)
