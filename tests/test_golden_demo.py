"""Tests of the committed demo checkpoint, the digits split and the training command."""

from pathlib import Path

import pytest
import torch

from golden.checkpoint import load_checkpoint
from golden.data import digits_arrays, digits_dataset
from golden.train import evaluate, main as train_main

DEMO = Path(__file__).parents[1] / "golden" / "checkpoints" / "demo.pth"


def test_demo_checkpoint_is_small_and_accurate():
    assert DEMO.stat().st_size < 5 * 2**20
    model = load_checkpoint(DEMO)
    assert model.cfg.name == "demo" and model.cfg.T == 1
    x, y = digits_dataset(model.cfg.img_size, "test", 0).tensors
    assert evaluate(model, x, y) >= 0.90


def test_demo_runs_at_two_time_steps():
    model = load_checkpoint(DEMO, T=2)
    x, _ = digits_dataset(32, "test", 0).tensors
    with torch.no_grad():
        assert model(x[:4]).shape == (4, 10)


def test_digits_split_is_fixed_and_disjoint():
    train_pixels, train_labels = digits_arrays("train", 0)
    test_pixels, test_labels = digits_arrays("test", 0)
    assert len(train_labels) == 1437 and len(test_labels) == 360
    assert torch.bincount(torch.from_numpy(test_labels)).min() >= 35  # stratified
    again, _ = digits_arrays("test", 0)
    assert (again == test_pixels).all()
    x = digits_dataset(32, "test", 0).tensors[0]
    # Nearest-neighbour upscaling keeps every value on the 1/16 grid of the raw pixels.
    assert torch.equal(x * 16, (x * 16).round()) and x.shape[1:] == (1, 32, 32)


def test_training_command_is_reproducible(tmp_path, capsys):
    args = ["--epochs", "1", "--embed-dim", "8", "16", "16", "16", "--heads", "2",
            "--img-size", "16", "--batch-size", "128"]
    paths = []
    for run in range(2):
        paths.append(tmp_path / f"run{run}.pth")
        assert train_main(args + ["--out", str(paths[-1])]) == 0
    a = torch.load(paths[0], weights_only=True)["model"]
    b = torch.load(paths[1], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "final held-out accuracy" in capsys.readouterr().out


def test_bad_split_name():
    with pytest.raises(ValueError, match="split='valid'"):
        digits_arrays("valid")
