"""Memory images: exact round trip, byte-identical reruns, clear refusals; the CLI's errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from golden.checkpoint import save_checkpoint
from quant import images
from quant.cli import main
from quant.quantize import quantize_model

from test_quant_fold import make_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    return quantize_model(make_model().float(), 8, 8, (-4.0, 4.0))


def tree_bytes(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory))}


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 7, 8, 9, 16, 17, 33, 40])
def test_hex_round_trip_every_width(bits):
    rng = np.random.default_rng(bits)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.concatenate([[low, high, 0, -1 if bits > 1 else 0],
                             rng.integers(low, high + 1, 50)]).astype(np.int64)
    payload = images.hex_bytes(values, bits)
    entry = {"word_bits": bits, "words": values.size, "signed": True, "shape": [values.size]}
    assert np.array_equal(images._parse_hex("m", payload, entry), values)
    lines = payload.decode().split("\n")[:-1]
    assert all(len(line) == (bits + 3) // 4 for line in lines)
    assert int(lines[1], 16) == high
    with pytest.raises(images.ImageError, match="do not fit"):
        images.hex_bytes(np.array([high + 1]), bits)


def test_export_round_trip_and_byte_identical(net, tmp_path):
    first = tmp_path / "a"
    second = tmp_path / "b"
    images.export(net, str(first), coe=True)
    images.export(net, str(second), coe=True)
    assert tree_bytes(first) == tree_bytes(second)
    manifest, arrays = images.load_images(str(first))
    assert manifest["format_version"] == images.FORMAT_VERSION
    for name, layer in net.layers.items():
        assert np.array_equal(arrays[f"{name}.weight"], layer.weight), name
        assert np.array_equal(arrays[f"{name}.bias"], layer.bias), name
        if layer.shift is not None:
            assert np.array_equal(arrays[f"{name}.shift"], layer.shift), name
    for name, lif in net.lifs.items():
        assert np.array_equal(arrays[f"{name}.threshold"], lif.threshold), name
    assert np.array_equal(arrays["pixel.zero_point"], net.pixel.zero_point)
    images.load_images(str(first), kind="coe")
    coe = open(first / "head.weight.coe").read()
    assert coe.startswith("memory_initialization_radix=16;") and coe.endswith(";\n")


def test_truncated_and_altered_images_are_refused(net, tmp_path):
    out = tmp_path / "img"
    images.export(net, str(out))
    target = out / "head.weight.hex"
    data = target.read_bytes()
    target.write_bytes(data[:-3])
    with pytest.raises(images.ImageError, match="head.weight.*truncated"):
        images.load_images(str(out))
    target.write_bytes(data.replace(data[:2], b"7f", 1) if data[:2] != b"7f" else b"00" + data[2:])
    with pytest.raises(images.ImageError, match="head.weight: sha256"):
        images.load_images(str(out))
    target.unlink()
    with pytest.raises(images.ImageError, match="missing"):
        images.load_images(str(out))
    manifest = (out / "manifest.json").read_text()
    manifest = manifest.replace('"format_version": 1', '"format_version": 9')
    (out / "manifest.json").write_text(manifest)
    with pytest.raises(images.ImageError, match="version 9"):
        images.load_images(str(out))


def test_existing_output_and_failure_midway_leave_nothing(net, tmp_path, monkeypatch):
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(FileExistsError):
        images.export(net, str(out))

    def failing_write(net, directory, coe=False):
        (open(os.path.join(directory, "half.hex"), "w")).write("00\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(images, "write_images", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        images.export(net, str(tmp_path / "new"))
    assert sorted(os.listdir(tmp_path)) == ["exists"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(make_model().float(), str(path))
    return path


def test_cli_writes_directory(checkpoint, tmp_path, capsys):
    out = tmp_path / "q"
    assert main([str(checkpoint), "--out", str(out), "--bits", "6", "--coe"]) == 0
    manifest, _ = images.load_images(str(out))
    assert manifest["quantization"]["weight_bits"] == 6
    assert (out / "report.json").is_file()
    assert main([str(checkpoint), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--bits", "1"], "out of range"), (["--bits", "17"], "out of range"),
    (["--variant", "demo"], "does not fit"), (["--variant", "huge"], "unknown")])
def test_cli_bad_arguments(checkpoint, tmp_path, capsys, args, message):
    assert main([str(checkpoint), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert main([str(tmp_path / "none.pth"), "--out", str(tmp_path / "o")]) == 2


def test_cli_official_layout_and_safetensors(tmp_path):
    """The released layout ({'model': sd, 'args', ...}, no config) and safetensors both load."""
    model = make_model().float()
    official = tmp_path / "official.pth"
    torch.save({"model": model.state_dict(), "epoch": 3}, official)
    assert main([str(official), "--variant", "tiny", "--out", str(tmp_path / "a")]) == 0
    safe = tmp_path / "tiny.safetensors"
    save_checkpoint(model, str(safe))
    assert main([str(safe), "--out", str(tmp_path / "b")]) == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
