"""Tests of checkpoint loading: official layouts, safetensors, strictness and clear errors."""

import argparse
import json

import pytest
import torch

from golden.checkpoint import CheckpointError, infer_config, load_checkpoint, save_checkpoint
from golden.config import variant
from golden.model import MetaSpikeFormer


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return MetaSpikeFormer(variant("tiny", kd_head=True)).eval()


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_layout_with_args_and_kd_head(tmp_path, tiny):
    # Released checkpoints carry argparse args and optimizer state next to 'model'.
    path = tmp_path / "official.pth"
    torch.save({"model": tiny.state_dict(), "optimizer": {"state": {}}, "epoch": 3,
                "args": argparse.Namespace(model="metaspikformer_8_512", time_steps=1)}, path)
    model = load_checkpoint(path, "tiny", kd_head=True)
    assert same_weights(model, tiny) and not model.training


def test_official_layout_without_kd_head(tmp_path, tiny):
    sd = {k: v for k, v in tiny.state_dict().items() if not k.startswith("head_kd.")}
    torch.save({"model": sd}, tmp_path / "nokd.pth")
    model = load_checkpoint(tmp_path / "nokd.pth", "tiny")
    assert not hasattr(model, "head_kd")


def test_bare_state_dict_and_module_prefix(tmp_path, tiny):
    torch.save({"module." + k: v for k, v in tiny.state_dict().items()}, tmp_path / "bare.pth")
    assert same_weights(load_checkpoint(tmp_path / "bare.pth", "tiny", kd_head=True), tiny)


def test_backbone_layout_without_head(tmp_path, tiny):
    sd = {"backbone." + k: v for k, v in tiny.state_dict().items()
          if not k.startswith(("head.", "head_kd."))}
    sd["decode_head.conv.weight"] = torch.zeros(3, 3)  # other parts of a det/seg model
    torch.save({"state_dict": sd, "meta": {"epoch": 1}}, tmp_path / "seg.pth")
    model = load_checkpoint(tmp_path / "seg.pth", "tiny")
    ref = tiny.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("head"):
            assert torch.equal(v, ref[k]), k


def test_config_inferred_from_shapes(tmp_path):
    model = MetaSpikeFormer(variant("tiny", kd_head=True))
    cfg = infer_config(model.state_dict(), num_heads=2, img_size=32)
    assert cfg.embed_dim == (8, 16, 16, 16) and cfg.depths == (1, 1, 1, 1, 1, 1)
    assert cfg.kd_head and cfg.num_classes == 5 and cfg.in_channels == 3


def test_official_55m_shapes_infer_without_config():
    with torch.device("meta"):
        sd = MetaSpikeFormer(variant("55M", kd_head=True)).state_dict()
    cfg = infer_config(sd)
    assert cfg.embed_dim == (128, 256, 512, 640) and cfg.kd_head and cfg.num_classes == 1000


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_and_load_round_trip_with_config(tmp_path, tiny, suffix):
    path = tmp_path / f"rt{suffix}"
    save_checkpoint(tiny, path)
    model = load_checkpoint(path)  # config from the file
    assert model.cfg == tiny.cfg and same_weights(model, tiny)


def test_missing_key_named_with_shape_and_file(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    del sd["block3.0.attn.q_conv.0.body.0.weight"]
    torch.save({"model": sd}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "missing.pth", "tiny", kd_head=True)
    msg = str(err.value)
    assert "missing.pth" in msg
    assert "missing key 'block3.0.attn.q_conv.0.body.0.weight'" in msg
    assert "(16, 16, 1, 1)" in msg


def test_unexpected_key_named(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd["block9.0.weight"] = torch.zeros(2, 3)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected key 'block9.0.weight'.*\(2, 3\)"):
        load_checkpoint(tmp_path / "extra.pth", "tiny", kd_head=True)


def test_misshaped_key_names_both_shapes(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd["head.weight"] = torch.zeros(7, 16)
    torch.save({"model": sd}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError,
                       match=r"key 'head.weight': expected shape \(5, 16\), found \(7, 16\)"):
        load_checkpoint(tmp_path / "shape.pth", "tiny", kd_head=True)


def test_kd_head_present_but_not_configured(tmp_path, tiny):
    torch.save({"model": tiny.state_dict()}, tmp_path / "kd.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'head_kd.weight'"):
        load_checkpoint(tmp_path / "kd.pth", "tiny")


def test_refuses_pickled_code(tmp_path):
    # weights_only=True: a checkpoint that would run arbitrary code is refused, not executed.
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    torch.save({"model": {}, "payload": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pth", "tiny")


def test_not_a_checkpoint(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pth", "tiny")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_checkpoint(tmp_path / "nowhere.pth", "tiny")


def test_safetensors_config_metadata(tmp_path, tiny):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny, path)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["embed_dim"] == [8, 16, 16, 16]
