"""The integer golden model equals the NumPy references of the contract, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden.config import variant
from golden.model import MetaSpikeFormer
from quant import intops
from quant.graph import plan
from quant.intmodel import IntegerModel
from quant.quantize import quantize_model

from test_quant_fold import make_model

torch.set_num_threads(1)


def reference_check(net, codes, trace, sample=0):
    """Recompute every layer, stream and LIF of one sample with quant.intops; compare with ==."""
    cfg = net.cfg
    planner = plan(cfg, net.fuse_sepconv)
    acc, spikes = trace.accumulators, trace.spikes

    def as_map(name_of_spikes, like):
        s = spikes[name_of_spikes]
        return s.reshape(*s.shape[:3], *like.shape[-2:]) if s.dim() == 4 else s

    for name, layer in net.layers.items():
        got = acc[name][:, sample].numpy()
        src = planner.layer_inputs[name]
        for t in range(cfg.T):
            if layer.kind == "stem":
                expected = intops.stem_conv(codes[sample].numpy(), layer.weight, layer.bias,
                                            layer.stride, layer.padding, net.pixel.zero_point)
            elif layer.kind == "linear":
                x = spikes[src.source][t, sample].numpy()[None]
                expected = intops.linear_spikes(x, layer.weight[:, :, 0, 0], layer.bias)[0]
            elif layer.kind == "pointwise_int":
                z = acc[src.source][t, sample].numpy()
                expected = np.einsum("oi,ihw->ohw", layer.weight[:, :, 0, 0], z) \
                    + layer.bias[:, None, None]
            elif layer.kind == "counts":
                # SEW: the stream of spike counts as it was when the layer read it.
                counts = trace.streams[src.after][t, sample].numpy()
                expected = intops.conv2d_counts(counts, layer.weight, layer.bias, layer.stride,
                                                layer.padding, layer.input_max)
            else:
                if name.endswith("attn.proj_conv"):
                    x = acc[name.replace("proj_conv", "out")][t, sample].numpy()
                else:
                    x = as_map(src.source, acc[name])[t, sample].numpy()
                if layer.kind == "depthwise":
                    expected = intops.depthwise_conv2d_spikes(x, layer.weight, layer.bias,
                                                              layer.stride, layer.padding)
                else:
                    expected = intops.conv2d_spikes(x, layer.weight, layer.bias, layer.stride,
                                                    layer.padding)
            assert np.array_equal(got[t], expected), (name, t)
    for stream, producers in planner.streams.items():
        total = 0
        for producer in producers:
            shift = net.layers[producer].shift[:, None, None]
            total = total + intops.shift_left(acc[producer][:, sample].numpy(), shift)
            assert np.array_equal(trace.streams[producer][:, sample].numpy(), total), producer
    for stream, producers in planner.count_streams.items():     # SEW: counts of spikes
        total = 0
        for producer in producers:
            total = total + spikes[producer][:, sample].numpy().astype(np.int64)
            assert np.array_equal(trace.streams[producer][:, sample].numpy(), total), producer
        assert total.max() <= len(producers) == net.streams[stream].high.max()
    for name, lif in net.lifs.items():
        src = planner.lif_inputs[name]
        if src.kind == "layer":
            x = acc[src.source][:, sample].numpy()
        elif src.kind == "residual":                              # vanilla: branch + spikes
            layer = net.layers[src.source]
            into = spikes[src.after][:, sample].numpy()
            x = np.stack([intops.residual_input(acc[src.source][t, sample].numpy(), into[t],
                                                layer.identity, layer.shift)
                          for t in range(cfg.T)])
            assert np.array_equal(trace.residuals[src.source][:, sample].numpy(), x), name
        elif src.kind == "stream":
            x = trace.streams[src.after][:, sample].numpy()
        elif src.kind == "pooled":
            if src.source in planner.streams:
                stream = trace.streams[planner.streams[src.source][-1]][:, sample].numpy()
            elif src.source in planner.count_streams:
                stream = trace.streams[planner.count_streams[src.source][-1]][:, sample].numpy()
            else:                                                 # vanilla: the last spikes
                stream = spikes[src.source][:, sample].numpy().astype(np.int64)
            x = np.stack([intops.sum_pool(stream[t]) for t in range(cfg.T)])
        else:
            x = None
        if x is not None:
            x = x.reshape(cfg.T, x.shape[1], -1)
            thr = lif.threshold.reshape(-1, 1)
            expected = intops.lif_sequence(x, thr)
            got = spikes[name][:, sample].numpy().reshape(expected.shape)
            assert np.array_equal(got, expected), name
    for prefix, info in net.attention.items():
        heads, d = info.heads, info.head_width
        membrane = [None] * heads
        for t in range(cfg.T):
            def per_head(lif_name):
                s = as_map(lif_name, acc[f"{prefix}.q_conv"])[t, sample].numpy()
                tokens = s.reshape(s.shape[0], -1).T                     # [N, C]
                return [tokens[:, h * d:(h + 1) * d] for h in range(heads)]
            q, k = per_head(f"{prefix}.q_lif"), per_head(f"{prefix}.k_lif")
            v = per_head(f"{prefix}.v_lif") if cfg.sdsa != 2 else None
            out = spikes[f"{prefix}.attn_lif"][t, sample].numpy()
            for h in range(heads):
                thr = info.threshold
                if cfg.sdsa in (3, 4):
                    s, membrane[h], counts = intops.sdsa3(q[h], k[h], v[h], thr, membrane[h])
                    assert np.array_equal(out[h * d:(h + 1) * d].T, s), (prefix, t, h)
                else:
                    previous = membrane[h]
                    if cfg.sdsa == 1:
                        masked, membrane[h], counts = intops.sdsa1(q[h], k[h], v[h], thr,
                                                                   previous)
                        assert np.array_equal(counts, intops.sdsa1_counts(k[h], v[h]))
                    else:
                        masked, membrane[h], counts = intops.sdsa2(q[h], k[h], thr, previous)
                    zeros = np.zeros(d, np.int64) if previous is None else previous
                    mask = intops.lif_step(zeros, counts, thr)[0]
                    assert np.array_equal(out[h, 0], mask), (prefix, t, h)
                    into_proj = acc[f"{prefix}.out"][t, sample].numpy()
                    tokens = into_proj.reshape(into_proj.shape[0], -1).T
                    assert np.array_equal(tokens[:, h * d:(h + 1) * d], masked), (prefix, t, h)


CONFIGS = [dict(), dict(sdsa=1), dict(sdsa=2), dict(sdsa=4, T=3), dict(T=1, kd_head=True),
           dict(qkv="linear", channel_mixer="mlp"), dict(stage1="2C@H/4", T=1)]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda d: ",".join(
    f"{k}={v}" for k, v in d.items()) or "tiny")
@pytest.mark.parametrize("bits,fuse", [(8, True), (4, False)])
def test_integer_model_equals_contract_references(overrides, bits, fuse):
    model = make_model(**overrides).float()
    net = quantize_model(model, bits, 8, (-4.0, 4.0), fuse_sepconv=fuse)
    int_model = IntegerModel(net)
    images = torch.randn(2, model.cfg.in_channels, 32, 32,
                         generator=torch.Generator().manual_seed(11))
    logits, trace = int_model(images, trace=True)
    assert logits.dtype == torch.int64
    codes = int_model.quantize_input(images)
    reference_check(net, codes, trace, sample=1)
    # The logits are the head's accumulators summed over T.
    assert torch.equal(logits, trace.accumulators["head"].sum(0))
    # Every LIF fired somewhere, so the comparisons above were not vacuous.
    assert np.mean([s.float().mean().item() > 0 for s in trace.spikes.values()]) > 0.5


def test_same_answer_with_and_without_trace_and_per_sample():
    model = make_model().float()
    int_model = IntegerModel(quantize_model(model, 6, 8, (-4.0, 4.0)))
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    logits = int_model(images)
    assert torch.equal(logits, int_model(images, trace=True)[0])
    for b in range(3):
        assert torch.equal(int_model(images[b:b + 1])[0], logits[b])


def test_t1_fire_decisions_match_float_on_exact_inputs():
    """At T=1 the integer LIF decides exactly like the float one on the same real inputs."""
    scale = 0.37
    x = np.arange(-200, 200)
    thr = intops.lif_threshold(1.0, scale)
    float_fire = (x * scale) / 2 >= 1.0
    assert np.array_equal(intops.lif_sequence(x[None], thr)[0].astype(bool), float_fire)


@pytest.mark.parametrize("bits", [1, 17, 8.0, True])
def test_bits_out_of_range(bits):
    model = MetaSpikeFormer(variant("tiny")).eval()
    with pytest.raises((ValueError, TypeError), match="bits"):
        quantize_model(model, bits)


def test_widths_reported_and_consistent():
    model = make_model().float()
    net = quantize_model(model, 8, 8, (-4.0, 4.0))
    rows = {r["name"]: r for r in net.report()}
    for layer in net.layers.values():
        assert rows[layer.name]["weight_bits"] == 8
        assert np.abs(layer.weight).max() <= 127
        assert rows[layer.name]["acc_bits"] >= intops.signed_bits(
            int(layer.acc_low.min()), int(layer.acc_high.max()))
    for lif in net.lifs.values():
        assert rows[lif.name]["membrane_bits"] == lif.input_bits
        assert int(lif.threshold.max()) <= (1 << lif.input_bits) - 1
    tiny = model.cfg
    attn = net.attention["block3.0.attn"]
    n = (tiny.img_size // 16) ** 2
    assert attn.count_bits == (n * attn.head_width).bit_length()
    assert attn.threshold == 8
