"""Tests of the model's structure: official keys and shapes, parameter counts, BNAndPad, forward."""

import gzip
import json
from pathlib import Path

import pytest
import torch

from golden.config import ABLATIONS, ModelConfig, ablation, variant
from golden.model import BNAndPadLayer, MetaSpikeFormer, lif_modules, record_spikes

DATA = Path(__file__).parent / "data" / "golden"

PARAMS = {"15M": (15_112_208, 15_473_208), "31M": (31_333_864, 31_814_864),
          "55M": (55_350_248, 55_991_248)}


@pytest.fixture(scope="module")
def official_keys():
    with gzip.open(DATA / "official_keys.json.gz", "rt") as f:
        return json.load(f)


def build_meta(cfg):
    # The meta device skips allocating and initialising weights: the big models build in ms.
    with torch.device("meta"):
        return MetaSpikeFormer(cfg)


@pytest.mark.parametrize("name", ["15M", "31M", "55M"])
@pytest.mark.parametrize("kd", [False, True])
def test_keys_and_shapes_match_official(official_keys, name, kd):
    model = build_meta(variant(name, kd_head=kd))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    ref = [e for e in official_keys[name] if kd or not e[0].startswith("head_kd.")]
    assert ours == ref
    assert len(ours) == (827 if kd else 825)


@pytest.mark.parametrize("name", ["15M", "31M", "55M"])
def test_parameter_counts(name):
    for kd, expected in zip((False, True), PARAMS[name]):
        model = build_meta(variant(name, kd_head=kd))
        assert sum(p.numel() for p in model.parameters()) == expected


def test_77_lif_layers_with_attention_at_half():
    model = build_meta(variant("55M"))
    lifs = lif_modules(model)
    assert len(lifs) == 77
    assert sorted({m.threshold for m in lifs.values()}) == [0.5, 1.0]
    assert sum(m.threshold == 0.5 for m in lifs.values()) == 8
    assert "block3.0.attn.q_lif" in lifs and "downsample1_2.encode_lif" in lifs


@pytest.mark.parametrize("alias", ["metaspikformer_8_512", "55.4M", "55m"])
def test_variant_aliases(alias):
    assert variant(alias).embed_dim == (128, 256, 512, 640)


def test_bn_and_pad_value():
    layer = BNAndPadLayer(pad_pixels=1, num_features=3).eval()
    with torch.no_grad():
        layer.bn.weight.copy_(torch.tensor([2.0, 0.5, -1.0]))
        layer.bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        layer.bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 3, 4, 4)
    out = layer(x)
    assert out.shape == (2, 3, 6, 6)
    # The border equals BN(0) = beta - mean * gamma / sqrt(var + eps).
    expected = layer.bn(torch.zeros(1, 3, 1, 1)).view(3)
    by_hand = torch.tensor([0.1 - 1.0 * 2.0 / (4 + 1e-5) ** 0.5,
                            -0.2 + 2.0 * 0.5 / (1 + 1e-5) ** 0.5,
                            0.3 - 0.5 * -1.0 / (0.25 + 1e-5) ** 0.5])
    assert torch.allclose(expected, by_hand)
    border = torch.ones(6, 6, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    for c in range(3):
        assert torch.allclose(out[:, c][:, border], by_hand[c].expand(2, 20))
    assert torch.equal(out[:, :, 1:-1, 1:-1], layer.bn(x))


def test_forward_shapes_and_time_input():
    torch.manual_seed(0)
    cfg = variant("tiny")
    model = MetaSpikeFormer(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
        y5 = model(x.unsqueeze(0).repeat(cfg.T, 1, 1, 1, 1))
    assert y.shape == (2, cfg.num_classes)
    assert torch.equal(y, y5)


def test_kd_head_eval_mean_and_train_pair():
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("tiny", kd_head=True, T=1))
    x = torch.randn(2, 3, 32, 32)
    model.train()
    out, out_kd = model(x)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(model._time_input(x))
        pooled = model.lif(feats.flatten(3).mean(3))
        expected = (model.head(pooled).mean(0) + model.head_kd(pooled).mean(0)) / 2
        assert torch.equal(model(x), expected)
    assert out.shape == out_kd.shape == (2, 5)


def test_trace_names_every_lif():
    model = MetaSpikeFormer(variant("tiny")).eval()
    with torch.no_grad():
        logits, spikes = model(torch.randn(1, 3, 32, 32), trace=True)
    assert list(spikes) == list(lif_modules(model))
    assert spikes["block3.0.attn.attn_lif"].shape == (2, 1, 16, 2 * 2)
    assert spikes["lif"].shape == (2, 1, 16)
    with record_spikes(model) as rec, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert set(rec) == set(spikes)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_runs_forward_and_backward(name):
    torch.manual_seed(0)
    cfg = ablation(name, base=variant("tiny", T=2))
    model = MetaSpikeFormer(cfg)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, cfg.num_classes)


def test_sdsa2_drops_one_projection_per_block():
    # The paper: SDSA-2 at C=48 has 28.6M parameters (one Q/K/V projection per block fewer).
    model = build_meta(ablation("sdsa2"))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 28.6
    assert not hasattr(model.block3[0].attn, "v_conv")


def test_sdsa4_threshold_is_learnable():
    model = MetaSpikeFormer(ablation("sdsa4", base=variant("tiny", T=1)))
    assert "block3.0.attn.attn_threshold" in model.state_dict()
    model(torch.randn(2, 3, 32, 32) * 3).sum().backward()
    assert model.block3[0].attn.attn_threshold.grad is not None


@pytest.mark.parametrize("changes, field", [
    (dict(num_heads=5), "num_heads"),
    (dict(img_size=24), "img_size"),
    (dict(img_size=8), "img_size"),
    (dict(sdsa=5), "sdsa"),
    (dict(shortcut="residual"), "shortcut"),
    (dict(embed_dim=(8, 16, 16)), "embed_dim"),
    (dict(depths=(1, 1, 1)), "depths"),
    (dict(T=0), "T"),
    (dict(qkv="conv"), "qkv"),
])
def test_impossible_configurations(changes, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
        variant("tiny", **changes)


def test_unknown_variant_lists_known_names():
    with pytest.raises(ValueError, match="unknown Meta-SpikeFormer variant 'huge'.*55M"):
        variant("huge")


def test_config_round_trip():
    cfg = variant("demo")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_wrong_input_shape():
    model = MetaSpikeFormer(variant("tiny"))
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 32, 32))
