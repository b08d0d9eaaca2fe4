"""The co-simulation simulates a checkpoint's own configuration, or refuses it; never the demo's.

Checkpoints saved with ``golden.save_checkpoint`` for configurations that share the demo's keys but
differ (SDSA operator, shortcut, attention threshold, T) must be loaded as themselves; so must
checkpoints of the other SDSA operators (SDSA-1, SDSA-2, SDSA-4), which the RTL runs. The ones the
network RTL cannot run are refused by ``python -m sim.e2e`` with one line naming the checkpoint,
its configuration and the reason, exit status 2, before anything is written or built. A model that
does not take the 1x32x32 digits is not refused: it runs on seeded random images (or --inputs).
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
from subsets import every_nth

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


def test_unsupported_checkpoint_is_refused_not_swapped(tmp_path):
    """Every configuration with the demo's keys runs now (SEW included), so the refused one is
    an event model whose two input channels do not fit one word group at ``--lanes 1``."""
    model = MetaSpikeFormer(load_checkpoint(DEMO).cfg.replace(events=True, in_channels=2, T=2))
    path = tmp_path / "events.pth"
    save_checkpoint(model, path)
    out = tmp_path / "e2e"
    result = subprocess.run(
        [sys.executable, "-m", "sim.e2e", "--arch", "shared", "--checkpoint", str(path),
         "--T", "2", "--images", "1", "--lanes", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert str(path) in lines[0] and "cannot be simulated" in lines[0]
    assert "input events 2x32x32" in lines[0], lines[0]   # the configuration it refused
    assert "event input of 2 channels" in lines[0] and "lanes = 1" in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("shortcut", ["sew", "vanilla"])
def test_a_shortcut_checkpoint_is_simulated_as_itself(tmp_path, shortcut):
    """The SEW and vanilla shortcuts run in the network RTL: their checkpoints are prepared as
    themselves (SEW: layers on counts run in passes; vanilla: residual LIFs)."""
    from sim import e2e

    path = saved_like_demo(tmp_path, shortcut=shortcut)
    network = e2e.prepare(1, path)  # accepted: no Unsupported raised
    assert network.cfg.shortcut == shortcut
    steps = e2e.network_design(network).steps
    if shortcut == "vanilla":
        assert any(step.residual for step in steps)
    else:
        assert any(not step.bias for step in steps)


# make test: SDSA-1 (2 and 4 in make test-all; every operator is simulated in tests/test_shared_variants.py)
@pytest.mark.parametrize("sdsa", every_nth([1, 2, 4], 3))
def test_a_checkpoint_of_another_sdsa_operator_is_accepted(tmp_path, sdsa):
    """SDSA-1, SDSA-2 (no V projection) and SDSA-4 (a learned threshold per block) checkpoints
    are simulated as themselves: the network RTL builds their operator."""
    from sim import e2e

    model, _ = demo_model(1, "random", sdsa=sdsa)
    path = tmp_path / f"sdsa{sdsa}.pth"
    save_checkpoint(model, path)
    network = e2e.prepare(1, path)  # accepted: no Unsupported raised
    assert network.cfg.sdsa == sdsa
    assert {attn.sdsa for attn in network.net.attention.values()} == {sdsa}
    steps = [step for step in e2e.network_design(network).steps
             if step.attention is not None]
    assert steps and all((step.attention.v is None) == (sdsa == 2) for step in steps)


def test_sdsa_is_for_random_models_only(tmp_path, capsys):
    """``--sdsa`` chooses a random model's operator; with a checkpoint it is one error line."""
    from sim import e2e

    out = tmp_path / "e2e"
    assert e2e.main(["--checkpoint", str(DEMO), "--sdsa", "2", "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --sdsa 2"), lines
    assert not out.exists()
    with pytest.raises(ValueError, match="random model"):
        demo_model(1, DEMO, sdsa=2)


def saved_with_channels(tmp_path: Path, channels: int = 3) -> Path:
    """Save the demo with a ``channels``-channel stem (its kernel / channels in every channel):
    a model that does not take the 1x32x32 digits."""
    demo = load_checkpoint(DEMO)
    model = MetaSpikeFormer(demo.cfg.replace(in_channels=channels))
    state = demo.state_dict()
    key = "downsample1_1.encode_conv.weight"
    state[key] = state[key].repeat(1, channels, 1, 1) / channels
    model.load_state_dict(state)
    path = tmp_path / f"demo_{channels}ch.pth"
    save_checkpoint(model, path)
    return path


def test_a_model_that_does_not_take_the_digits_is_simulated_on_random_images(tmp_path, capsys,
                                                                             monkeypatch):
    """A 3x32x32 model is accepted by the network RTL; without --inputs it gets seeded random
    images, and the run says so. The RTL run itself is stubbed here (it needs its own Verilator
    build: ``test_random_images_on_a_three_channel_model_bit_exact``, slow)."""
    from sim import e2e

    path = saved_with_channels(tmp_path)
    network = e2e.prepare(1, path)  # accepted: no Unsupported raised
    assert (network.cfg.in_channels, network.cfg.img_size) == (3, 32)
    fed = []

    def stub(network, inputs, out, simulator=None, axi=None, time_steps=None):
        fed.append(inputs)
        return {"T": network.T, "trained": network.trained, "images": len(inputs),
                "input_source": inputs.source, "rtl": [], "report": [], "convert_s": 0.0,
                "build_s": 0.0, "run_s": 0.0, "error": "stubbed"}

    monkeypatch.setattr(e2e, "simulate", stub)
    status = e2e.main(["--checkpoint", str(path), "--T", "1", "--images", "2",
                       "--out", str(tmp_path / "e2e")])
    out = capsys.readouterr().out
    assert status == 1  # the stub ran nothing
    (inputs,) = fed
    assert inputs.source == "random" and inputs.labels is None and not inputs.meaningful
    assert tuple(inputs.images.shape) == (2, 3, 32, 32)
    assert "input 3x32x32" in out
    assert "inputs: 2 seeded random 3x32x32 images (seed 0)" in out
    assert "their predictions mean nothing" in out
    again = e2e.select_inputs(network.net, 2, None, seed=0).images
    assert torch.equal(inputs.images, again)  # seeded
    assert not torch.equal(inputs.images, e2e.select_inputs(network.net, 2, None, seed=1).images)
    low, high = e2e.pixel_range(network.net)
    assert inputs.images.min() >= low.min() and inputs.images.max() <= high.max()


@pytest.mark.slow
@pytest.mark.verilator
def test_random_images_on_a_three_channel_model_bit_exact(tmp_path):
    """The whole CLI on a 3x32x32 model: random images, said so, bit-exact (about 3.5 minutes
    on 2 cores: its own Verilator build)."""
    path = saved_with_channels(tmp_path)
    out = tmp_path / "e2e"
    result = subprocess.run(
        [sys.executable, "-m", "sim.e2e", "--checkpoint", str(path), "--T", "1", "--images", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "inputs: 1 seeded random 3x32x32 images (seed 0)" in result.stdout
    assert "random inputs: their predictions mean nothing" in result.stdout
    import json

    report = json.loads((out / "report_T1.json").read_text())
    assert report["error"] is None and report["input_source"] == "random"
    assert report["rtl_pred"] == report["int_pred"]


torch.set_num_threads(1)
