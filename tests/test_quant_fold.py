"""Folding is exact: the folded float64 network equals the unfolded golden model within 1e-9."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from golden.config import variant
from golden.model import MetaSpikeFormer, RepConv
from quant.fold import fold_model, fold_repconv, fold_sepconv_pair, fold_bn
from quant.graph import FloatBackend, walk

SEED = 1234
# Tiny tensors: threads only add contention on the shared two-core machines.
torch.set_num_threads(1)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN non-trivial statistics and affine parameters, so folding has work to do."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=generator))
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)


def make_model(name="tiny", **overrides):
    """Return a float64, eval-mode model with randomized weights and BN statistics."""
    torch.manual_seed(SEED)
    model = MetaSpikeFormer(variant(name, **overrides))
    randomize_bn(model, torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(3.0)      # the default init fires almost nothing on tiny nets
    return model.double().eval()


def test_fold_bn_linear_and_conv():
    torch.manual_seed(SEED)
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    bn = nn.BatchNorm2d(5).double()
    randomize_bn(bn, torch.Generator().manual_seed(1))
    bn.eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    weight, bias = fold_bn(conv.weight, conv.bias, bn)
    folded = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    assert (folded - bn(conv(x))).abs().max().item() < 1e-9


@pytest.mark.parametrize("binary", [True, False])
def test_fold_repconv_equals_chain_with_outer_bn(binary):
    torch.manual_seed(SEED)
    rep = RepConv(6, 6).double()
    outer = nn.BatchNorm2d(6).double()
    randomize_bn(rep, torch.Generator().manual_seed(2))
    randomize_bn(outer, torch.Generator().manual_seed(3))
    rep.eval(), outer.eval()
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    if binary:
        x = (x > 0).double()
    weight, bias = fold_repconv(rep.body, outer)
    folded = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    assert (folded - outer(rep(x))).abs().max().item() < 1e-9


def test_fold_repconv_needs_the_pad_value():
    """A fold that ignored BNAndPad's border value would differ at the image border."""
    torch.manual_seed(SEED)
    rep = RepConv(4, 4).double()
    randomize_bn(rep, torch.Generator().manual_seed(4))
    rep.eval()
    x = torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    ref = rep(x)
    weight, bias = fold_repconv(rep.body)
    folded = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    assert (folded - ref).abs().max().item() < 1e-9
    # Padding the BN output with zeros instead of BN(0) changes the border: the value matters.
    body = rep.body
    zero_padded = body[2](torch.nn.functional.pad(body[1].bn(body[0](x)), [1] * 4))
    assert (zero_padded - ref)[..., 0, 0].abs().max().item() > 1e-6


def test_fold_sepconv_pair():
    torch.manual_seed(SEED)
    dw = nn.Conv2d(8, 8, 7, padding=3, groups=8, bias=False).double()
    pw = nn.Conv2d(8, 4, 1, bias=False).double()
    bn = nn.BatchNorm2d(4).double()
    randomize_bn(bn, torch.Generator().manual_seed(5))
    bn.eval()
    x = (torch.randn(2, 8, 9, 9, dtype=torch.float64) > 0.3).double()
    weight, bias = fold_sepconv_pair(dw, pw, bn)
    folded = torch.nn.functional.conv2d(x, weight, bias, padding=3)
    assert (folded - bn(pw(dw(x)))).abs().max().item() < 1e-9


CONFIGS = [dict(), dict(sdsa=1), dict(sdsa=2), dict(sdsa=4), dict(T=1), dict(kd_head=True),
           dict(qkv="linear", proj="linear"), dict(channel_mixer="mlp"), dict(sepconv=False),
           dict(stage1="2C@H/4"), dict(block_types="transformer"), dict(downsample4=False)]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda d: ",".join(f"{k}={v}"
                                                                          for k, v in d.items())
                         or "tiny")
@pytest.mark.parametrize("fuse", [True, False])
def test_folded_network_equals_golden(overrides, fuse):
    model = make_model(**overrides)
    net = fold_model(model, fuse_sepconv=fuse)
    x = torch.randn(2, model.cfg.in_channels, 32, 32, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref, ref_spikes = model(x, trace=True)
        backend = FloatBackend(net, trace=True)
        out = walk(model.cfg, backend, x)
    assert (out - ref).abs().max().item() < 1e-9
    assert set(backend.spikes) == set(ref_spikes)
    for name, spikes in ref_spikes.items():
        assert backend.spikes[name].shape == spikes.shape, name
        assert torch.equal(backend.spikes[name], spikes), name
    rates = [s.mean().item() for s in ref_spikes.values()]
    assert max(rates) > 0.05     # the comparison is not vacuous
