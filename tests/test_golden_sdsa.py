"""Tests of the SDSA operators' arithmetic on captured Q/K/V spikes (T=1), and the bench smoke."""

import pytest
import torch

from golden.bench import run_point
from golden.config import variant
from golden.model import MS_Attention


def attention(sdsa, seed=0):
    torch.manual_seed(seed)
    cfg = variant("tiny", T=1, sdsa=sdsa, num_heads=2)
    attn = MS_Attention(16, cfg).eval()
    with torch.no_grad():
        # Q/K/V fire about half the time so that the counts cross the threshold sometimes.
        for name in ("q_conv", "k_conv", "v_conv"):
            if hasattr(attn, name):
                getattr(attn, name)[1].bias.fill_(2.0)
    return attn


def capture(attn, x):
    seen = {}
    for name in ("q_lif", "k_lif", "v_lif", "attn_lif"):
        if hasattr(attn, name):
            getattr(attn, name).register_forward_hook(
                lambda m, i, o, name=name: seen.__setitem__(name, o))
    attn.proj_conv.register_forward_pre_hook(lambda m, i: seen.__setitem__("proj_in", i[0]))
    with torch.no_grad():
        attn(x)
    return seen


def heads(s, h=2):
    """[T, B, C, H, W] -> [T, B, h, N, d] with contiguous channel groups per head."""
    T, B, C, H, W = s.shape
    return s.flatten(3).transpose(-1, -2).reshape(T, B, H * W, h, C // h).permute(0, 1, 3, 2, 4)


def test_sdsa3_fires_when_count_reaches_eight():
    attn = attention(3)
    seen = capture(attn, torch.randn(1, 2, 16, 3, 3) * 3)
    q, k, v = (heads(seen[n]) for n in ("q_lif", "k_lif", "v_lif"))
    counts = q @ (k.transpose(-2, -1) @ v)  # integer counts [T, B, h, N, d]
    fired = (counts >= 8).float()  # 0.125 * count / 2 >= 0.5
    got = seen["attn_lif"].reshape(1, 2, 2, 8, 9).transpose(3, 4)  # [T,B,C,N] -> per head
    assert torch.equal(got, fired)
    assert 0 < fired.mean() < 1


@pytest.mark.parametrize("sdsa", [1, 2])
def test_sdsa1_and_sdsa2_mask_q_with_a_column_vector(sdsa):
    attn = attention(sdsa)
    seen = capture(attn, torch.randn(1, 2, 16, 3, 3) * 3)
    q, k = heads(seen["q_lif"]), heads(seen["k_lif"])
    column = (k * heads(seen["v_lif"])) if sdsa == 1 else k
    vec = (column.sum(dim=-2, keepdim=True) >= 1).float()  # threshold 0.5 on the halved sum
    assert torch.equal(seen["attn_lif"], vec)
    expected = (q * vec).transpose(3, 4).reshape(1, 2, 16, 3, 3)
    assert torch.equal(seen["proj_in"].reshape(1, 2, 16, 3, 3), expected)
    assert hasattr(attn, "v_conv") == (sdsa == 1)


def test_bench_point_runs():
    row = run_point("tiny", batch=1, T=1, threads=1, repeats=1, official_dir=None,
                    which="golden")
    assert row["best_s"] > 0 and row["peak_rss_mb"] > 0 and row["outputs_equal_golden"] is None
