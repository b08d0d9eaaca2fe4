"""The SEW and vanilla shortcuts through quant/: fold, quantize, integer model, memory images.

``golden.model`` builds three shortcuts (``_Residual._add``): membrane ``U + branch``, SEW
``U + out_lif(branch)`` (the stream holds spike counts, read by the convs directly) and vanilla
``out_lif(branch + S)`` (the stream is spikes). ``quant.graph.walk`` states each once; these tests
check, for SEW and vanilla:

* the walk is golden's dataflow: it fires golden's LIFs in golden's order and runs fold's layers
  in fold's order; the folded float walk equals the golden model (every spike ``==``);
* the integer model equals the contract's references layer by layer (``==``,
  ``reference_check``), at 8, 4 and 2 bits, fused and unfused SepConv, T=1 and T>1;
* against the float model (random demo-sized models, batch norms calibrated so that every LIF
  fires 1-50 %): per-LIF spike agreement end to end and with the float model fed the integer
  model's spikes (one layer's quantization error, nothing propagated), logits;
* ``python -m quant.cli`` quantizes saved SEW and vanilla checkpoints into memory images;
* the hardware still refuses them with one clear error.

``docs/arithmetic.md`` section 8 is the contract these implement.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from golden.checkpoint import load_checkpoint, save_checkpoint
from golden.config import variant
from golden.lif import MultiStepLIF
from golden.model import MetaSpikeFormer, lif_modules
from quant import intops
from quant.cli import main as cli_main
from quant.fold import fold_model
from quant.graph import FloatBackend, plan, walk
from quant.images import load_images, memories
from quant.intmodel import IntegerModel
from quant.quantize import quantize_model

from test_quant_fold import make_model
from test_quant_intmodel import reference_check

torch.set_num_threads(1)

SHORTCUTS = ("sew", "vanilla")


# --- helpers ---------------------------------------------------------------------------------

def digits_like(batch: int, seed: int) -> torch.Tensor:
    """Seeded float64 images ``[B, 1, 32, 32]`` on the demo's 8-bit pixel grid (k/16): the
    integer model's pixel codes hold them exactly, so input quantization adds no error."""
    codes = torch.randint(0, 256, (batch, 1, 32, 32), generator=torch.Generator().manual_seed(seed))
    return codes.to(torch.float64) / 16


def random_demo(shortcut: str, T: int = 1, seed: int = 0) -> MetaSpikeFormer:
    """A float64 demo-sized model with seeded random weights, batch norms and head bias."""
    torch.manual_seed(seed)
    model = MetaSpikeFormer(variant("demo", shortcut=shortcut, T=T))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
                m.weight.data.copy_(torch.randn(n, generator=generator))
                m.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(3.0)
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=generator) * 0.02)
    return model.double().eval()


def calibration_target(shortcut: str):
    """LIF name -> target firing rate, None where the threshold is not calibrated.

    10 % everywhere; Q, K and V 25 % (so that SDSA-3's count threshold 8 is reached over the
    demo's 4 tokens). The head's ``lif`` and the attention LIFs are left alone (no batch norm
    moves their input alone). SEW: the last stream's three producers 30 %, so that the head's
    LIF, which needs a mean count of 2 per position at T=1, fires."""
    def target(name: str):
        if name == "lif" or name.endswith(".attn_lif"):
            return None
        if name.endswith((".q_lif", ".k_lif", ".v_lif")):
            return 0.25
        if shortcut == "sew" and name.startswith(("downsample4.", "block4.")) \
                and name.endswith("out_lif"):
            return 0.3
        return 0.1
    return target


def calibrate(model, images, target) -> None:
    """Shift batch-norm biases so that each LIF (forward order) fires at about ``target(name)``.

    Each LIF's input is recorded and shifted by the bisected ``delta`` at which it fires at
    least its target; ``delta`` goes into the bias of the last batch norm before it with as many
    channels (the one producing its input: a branch's last BN also for the vanilla output LIF,
    whose input is that BN's output plus the incoming spikes)."""
    def record():
        events, hooks = [], []
        for name, module in model.named_modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                hooks.append(module.register_forward_hook(
                    lambda mod, args, out: events.append(("bn", mod, None))))
            elif isinstance(module, MultiStepLIF):
                hooks.append(module.register_forward_hook(
                    lambda mod, args, out, name=name: events.append((name, mod, args[0]))))
        try:
            with torch.no_grad():
                model(images)
        finally:
            for hook in hooks:
                hook.remove()
        return events

    order = [event[0] for event in record() if event[0] != "bn"]
    for name in order:
        rate = target(name)
        if rate is None:
            continue
        events = record()
        index = next(i for i, event in enumerate(events) if event[0] == name)
        _, lif, x = events[index]
        bn = next(event[1] for event in reversed(events[:index])
                  if event[0] == "bn" and event[1].num_features == x.shape[2])
        low, high = -64.0, 64.0
        for _ in range(40):
            middle = (low + high) / 2
            if float(lif(x + middle).mean()) < rate:
                low = middle
            else:
                high = middle
        with torch.no_grad():
            bn.bias.add_(high)


_CALIBRATED = {}


def calibrated(shortcut: str, T: int) -> MetaSpikeFormer:
    """The random demo of ``shortcut`` calibrated at T=1 (cached), loaded at ``T``."""
    if shortcut not in _CALIBRATED:
        model = random_demo(shortcut)
        calibrate(model, digits_like(16, seed=100), calibration_target(shortcut))
        _CALIBRATED[shortcut] = model.state_dict()
    model = MetaSpikeFormer(variant("demo", shortcut=shortcut, T=T)).double().eval()
    model.load_state_dict(_CALIBRATED[shortcut])
    return model


class Forced(FloatBackend):
    """The folded float model fed the integer model's spikes: each LIF and SDSA computes its own
    float output (recorded) but passes the integer model's on, so a disagreement is that one
    layer's quantization error, not one propagated from earlier layers."""

    def __init__(self, net, integer_trace):
        super().__init__(net, trace=True)
        self.integer = integer_trace

    def lif(self, name, x, theta, layout):
        own = super().lif(name, x, theta, layout)
        return self.integer.spikes[name].reshape(own.shape).to(torch.float64)

    def sdsa(self, prefix, q, k, v):
        own = super().sdsa(prefix, q, k, v)
        return self.integer.accumulators[f"{prefix}.out"].reshape(own.shape).to(torch.float64)


class Recorder:
    """A walk backend that only records which primitive ran on what (the walk's program)."""

    shortcuts = ("membrane", "sew", "vanilla")

    def __init__(self, fused_sepconv: bool = True):
        self.fused_sepconv = fused_sepconv
        self.calls = []

    def _note(self, op, name, source=None):
        self.calls.append((op, name, source))
        return (op, name)

    def stem(self, name, image):
        return self._note("stem", name)

    def spike_input(self, name, frames):
        return self._note("spike_input", name)

    def conv(self, name, x):
        return self._note("conv", name, x)

    def lif(self, name, x, theta, layout):
        return self._note("lif", name, x)

    def begin_stream(self, x, stream, producer):
        return self._note("begin_stream", stream, x)

    def add(self, stream, branch, producer):
        return self._note("add", stream[1], branch)

    def count_stream(self, spikes, stream, producer):
        return self._note("count_stream", stream, spikes)

    def add_spikes(self, stream, spikes, producer):
        self._note("add_spikes", stream[1], spikes)
        return ("count_stream", stream[1])

    def residual(self, branch, spikes, producer):
        return self._note("residual", producer, spikes)

    def sdsa(self, prefix, q, k, v):
        return self._note("lif", f"{prefix}.attn_lif", ("sdsa", prefix))

    def pool(self, stream):
        return self._note("pool", stream[1], stream)

    def finish(self, logits):
        return self


def golden_lif_order(model, images) -> list:
    """The LIF module paths in the order golden's forward pass calls them."""
    order, hooks = [], []
    for name, module in lif_modules(model).items():
        hooks.append(module.register_forward_hook(lambda m, a, o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return order


# --- the walk is golden's dataflow -----------------------------------------------------------

@pytest.mark.parametrize("shortcut", SHORTCUTS + ("membrane",))
@pytest.mark.parametrize("overrides", [dict(), dict(channel_mixer="mlp", sdsa=2),
                                       dict(sepconv=False, stage1="2C@H/4")],
                         ids=["demo", "mlp-sdsa2", "nosep-2C@H4"])
def test_walk_fires_goldens_lifs_in_goldens_order(shortcut, overrides):
    model = make_model("demo", shortcut=shortcut, **overrides)
    recorder = walk(model.cfg, Recorder(), None)
    fired = [name for op, name, _ in recorder.calls if op == "lif"]
    assert fired == golden_lif_order(model, digits_like(1, 0))
    assert set(fired) == set(lif_modules(model))
    ran = [name for op, name, _ in recorder.calls if op in ("conv", "stem")]
    assert ran == list(fold_model(model).layers)


@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_program_of_each_shortcut(shortcut):
    """Where the stream goes: SEW streams count the downsampler's and every branch's output
    spikes and only convs read them; vanilla output LIFs read the branch's last layer plus the
    previous output LIF's spikes; no LIF reads a stream in either."""
    cfg = variant("demo", shortcut=shortcut)
    planner = plan(cfg)
    recorder = walk(cfg, Recorder(), None)
    assert not planner.streams                     # no membrane stream
    assert not any(sym.kind == "stream" for sym in planner.lif_inputs.values())
    downsamplers = ["downsample1_1", "downsample1_2", "downsample2", "downsample3", "downsample4"]
    if shortcut == "sew":
        assert not planner.residuals
        assert list(planner.count_streams) == downsamplers
        expected = {
            "downsample1_1": ["downsample1_1.out_lif", "ConvBlock1_1.0.Conv_out_lif",
                              "ConvBlock1_1.0.out_lif"],
            "downsample3": ["downsample3.out_lif", "block3.0.attn_out_lif", "block3.0.out_lif"],
        }
        for stream, producers in expected.items():
            assert planner.count_streams[stream] == producers
        readers = {name: sym for name, sym in planner.layer_inputs.items() if sym.kind == "stream"}
        assert set(readers) == {
            name for name in fold_model(MetaSpikeFormer(cfg)).layers
            if name.endswith(("Conv.pwconv1", ".conv1", "fc1_conv", "q_conv", "k_conv", "v_conv"))
            or (name.endswith("encode_conv") and not name.startswith("downsample1_1"))}
        assert readers["downsample2.encode_conv"].after == "ConvBlock1_2.0.out_lif"
        assert readers["block3.0.mlp.fc1_conv"].after == "block3.0.attn_out_lif"
        assert ("pool", "downsample4", ("count_stream", "downsample4")) in recorder.calls
    else:
        assert not planner.count_streams
        assert planner.residuals == {
            "ConvBlock1_1.0.Conv.pwconv2": "downsample1_1.out_lif",
            "ConvBlock1_1.0.conv2": "ConvBlock1_1.0.Conv_out_lif",
            "ConvBlock1_2.0.Conv.pwconv2": "downsample1_2.out_lif",
            "ConvBlock1_2.0.conv2": "ConvBlock1_2.0.Conv_out_lif",
            "ConvBlock2_1.0.Conv.pwconv2": "downsample2.out_lif",
            "ConvBlock2_1.0.conv2": "ConvBlock2_1.0.Conv_out_lif",
            "block3.0.attn.proj_conv": "downsample3.out_lif",
            "block3.0.mlp.fc2_conv": "block3.0.attn_out_lif",
            "block4.0.attn.proj_conv": "downsample4.out_lif",
            "block4.0.mlp.fc2_conv": "block4.0.attn_out_lif"}
        assert planner.lif_inputs["block4.0.out_lif"].kind == "residual"
        assert planner.lif_inputs["lif"].source == "block4.0.out_lif"   # pooled spikes
        assert planner.layer_inputs["downsample2.encode_conv"].source == "ConvBlock1_2.0.out_lif"
    for part in downsamplers:   # no encode_lif: the downsampler reads the stream itself
        assert f"{part}.encode_lif" not in planner.lif_inputs
        assert planner.lif_inputs[f"{part}.out_lif"].source == f"{part}.encode_conv"


# --- fold ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("name,overrides", [
    ("demo", dict(T=1)), ("demo", dict(T=4)), ("tiny", dict(channel_mixer="mlp", sdsa=1)),
    ("tiny", dict(sepconv=False, qkv="linear", T=2)), ("tiny", dict(stage1="2C@H/4")),
    ("tiny", dict(pyramid=False, downsample4=False, block_types="transformer")),
    ("demo_dvs", dict())], ids=lambda v: v if isinstance(v, str) else
    ",".join(f"{k}={x}" for k, x in v.items()) or "-")
@pytest.mark.parametrize("fuse", [True, False])
def test_folded_walk_equals_golden(shortcut, name, overrides, fuse):
    model = make_model(name, shortcut=shortcut, **overrides)
    net = fold_model(model, fuse_sepconv=fuse)
    cfg = model.cfg
    generator = torch.Generator().manual_seed(7)
    if cfg.events:
        x = (torch.rand(cfg.T, 2, 2, 32, 32, generator=generator) < 0.15).to(torch.float64)
    else:
        x = torch.randn(2, cfg.in_channels, 32, 32, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        ref, ref_spikes = model(x, trace=True)
        backend = FloatBackend(net, trace=True)
        out = walk(cfg, backend, x)
    assert (out - ref).abs().max().item() < 1e-9
    assert set(backend.spikes) - {"input"} == set(ref_spikes)
    for lif, spikes in ref_spikes.items():
        assert torch.equal(backend.spikes[lif], spikes), lif
    assert max(s.mean().item() for s in ref_spikes.values()) > 0.05


# --- integer model against the contract's references ------------------------------------------

@pytest.mark.parametrize("shortcut", SHORTCUTS)
@pytest.mark.parametrize("name,overrides", [
    ("tiny", dict()), ("tiny", dict(sdsa=1, channel_mixer="mlp", T=3)),
    ("demo", dict(T=4)), ("tiny", dict(stage1="2C@H/4", sepconv=False, qkv="linear"))],
    ids=["tiny", "sdsa1-mlp-T3", "demo-T4", "2C@H4-nosep"])
@pytest.mark.parametrize("bits,fuse", [(8, True), (4, False), (2, True)])
def test_integer_model_equals_contract_references(shortcut, name, overrides, bits, fuse):
    model = make_model(name, shortcut=shortcut, **overrides).float()
    net = quantize_model(model, bits, 8, (-4.0, 4.0), fuse_sepconv=fuse)
    int_model = IntegerModel(net)
    images = torch.randn(2, model.cfg.in_channels, 32, 32,
                         generator=torch.Generator().manual_seed(11))
    logits, trace = int_model(images, trace=True)
    reference_check(net, int_model.quantize_input(images), trace, sample=1)
    assert torch.equal(logits, trace.accumulators["head"].sum(0))
    rates = [s.float().mean().item() for s in trace.spikes.values()]
    assert np.mean([r > 0 for r in rates]) > 0.5      # not vacuous
    if shortcut == "sew":
        counts = {name: layer for name, layer in net.layers.items() if layer.kind == "counts"}
        longest = max(len(stream.producers) for stream in net.streams.values())
        assert counts and all(1 <= layer.input_max <= longest for layer in counts.values())
        # The counts really exceed 1 somewhere, so the bit planes above 0 were exercised.
        assert max(int(trace.streams[s.producers[-1]].max()) for s in net.streams.values()) >= 2
    else:
        residual = [layer for layer in net.layers.values() if layer.identity is not None]
        assert len(residual) == len(plan(net.cfg).residuals)
        assert all(layer.identity.min() >= 1 for layer in residual)
        if bits == 2:   # natural scales above 1: identity 1, the sums shifted left
            assert any(int(layer.shift.max()) > 0 for layer in residual)


@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_event_model(shortcut):
    """An event model: the first conv on event spikes, then ``downsample1_1.out_lif``."""
    model = make_model("demo_dvs", shortcut=shortcut).float()
    net = quantize_model(model, 8)
    frames = (torch.rand(4, 2, 2, 32, 32, generator=torch.Generator().manual_seed(5)) < 0.15)
    logits, trace = IntegerModel(net)(frames.to(torch.int64), trace=True)
    reference_check(net, None, trace, sample=1)
    assert net.pixel is None and net.lifs["downsample1_1.out_lif"].source == \
        "downsample1_1.encode_conv"


# --- integer vs float ------------------------------------------------------------------------

#: Measured on the random calibrated demo (32 images, seed 7), 8-bit weights; bounds leave
#: room. End to end, errors propagate through a random network (the membrane shortcut on the
#: same kind of model measures alike, see test_membrane_reference_agreement); fed the
#: integer model's spikes, each layer's own quantization error is small.
#: (T, shortcut): end-to-end min / mean per LIF, forced min / mean per LIF.
MEASURED = {
    (1, "sew"): (0.899, 0.957, 0.994, 0.9993), (4, "sew"): (0.834, 0.916, 0.995, 0.9988),
    (1, "vanilla"): (0.912, 0.959, 0.994, 0.9995), (4, "vanilla"): (0.838, 0.916, 0.997, 0.9991),
}


def agreement(a: dict, b: dict) -> dict:
    """Per-LIF fraction of equal spikes between two traces (golden's shapes)."""
    return {name: (a[name].to(torch.float64) == b[name].to(torch.float64))
            .to(torch.float64).mean().item() for name in b}


@pytest.mark.parametrize("T, shortcut", [
    (1, "sew"), (4, "vanilla"),
    # make test's budget: the other two in make test-all
    pytest.param(4, "sew", marks=pytest.mark.slow),
    pytest.param(1, "vanilla", marks=pytest.mark.slow),
])
def test_integer_spikes_and_logits_agree_with_float(shortcut, T):
    model = calibrated(shortcut, T)
    images = digits_like(32, seed=7)
    net = quantize_model(model, 8)
    int_model = IntegerModel(net)
    with torch.no_grad():
        ref_logits, ref_spikes = model(images, trace=True)
    logits, trace = int_model(images, trace=True)

    # Every LIF fires 1-50 % in the float model, but vanilla's head: its input, a mean of spikes,
    # is at most 1, and a threshold-1 LIF needs a mean input of 2 (H = (V + X) / 2 < 1 always).
    rates = {name: s.mean().item() for name, s in ref_spikes.items()}
    silent = {"lif"} if shortcut == "vanilla" else set()
    assert all(0.01 <= r <= 0.5 for name, r in rates.items() if name not in silent), rates
    for name in silent:
        assert rates[name] == 0 and int(trace.spikes[name].sum()) == 0

    end_to_end = agreement(trace.spikes, ref_spikes)
    forced_backend = Forced(fold_model(model), trace)
    with torch.no_grad():
        forced_logits = walk(model.cfg, forced_backend, images)
    forced = agreement(trace.spikes, forced_backend.spikes)
    total = (sum((trace.spikes[n].double() == s).sum().item() for n, s in ref_spikes.items())
             / sum(s.numel() for s in ref_spikes.values()))
    print(f"{shortcut} T={T}: end to end min {min(end_to_end.values()):.4f} "
          f"({min(end_to_end, key=end_to_end.get)}) mean {np.mean(list(end_to_end.values())):.4f}"
          f" all spikes {total:.4f}; forced min {min(forced.values()):.4f} "
          f"({min(forced, key=forced.get)}) mean {np.mean(list(forced.values())):.4f}")
    # At T=1 the first LIF's decision is exact up to the weights' rounding.
    first = "downsample1_1.out_lif"
    assert end_to_end[first] >= 0.995
    assert min(end_to_end.values()) >= (0.85 if T == 1 else 0.78)
    assert np.mean(list(end_to_end.values())) >= (0.93 if T == 1 else 0.88)
    assert total >= (0.95 if T == 1 else 0.91)
    assert min(forced.values()) >= 0.98
    assert np.mean(list(forced.values())) >= 0.995

    # Logits: the integer head equals the float head on the integer spikes up to the rounding
    # of its weights and bias (half a unit each: at most (inputs + 1) / 2 units per step) ...
    scale = net.logit_scale
    deq = int_model.dequantize(logits)
    head = fold_model(model).layers["head"].weight[:, :, 0, 0]           # float64 [classes, C]
    rounding = (head.shape[1] + 1) / 2 * scale
    assert (deq - forced_logits).abs().max().item() <= rounding
    # ... so against the float model they differ by no more than the head weights of the head
    # LIF's spikes that differ (mean over T), plus that rounding.
    flipped = (trace.spikes["lif"].to(torch.float64) - ref_spikes["lif"]).abs()  # [T, B, C]
    allowed = (flipped @ head.abs().T).mean(0) + rounding + 1e-12
    assert bool(((deq - ref_logits).abs() <= allowed).all())
    error = ((deq - ref_logits).norm() / ref_logits.norm()).item()
    top1 = (deq.argmax(1) == ref_logits.argmax(1)).to(torch.float64).mean().item()
    print(f"  logits: relative error {error:.3f}, top-1 agreement {top1:.3f}, head LIF "
          f"agreement {end_to_end['lif']:.4f}")
    if T == 4:
        assert error <= 0.3 and top1 >= 0.9     # measured: 0.16 / 1.0 (SEW), 0.008 / 1.0
    if shortcut == "vanilla":   # the silent head: logits are the bias, quantized
        assert (deq - ref_logits).abs().max().item() <= scale / 2 + 1e-12


def test_membrane_reference_agreement():
    """The same measurement on the membrane shortcut (random calibrated demo), for scale: the
    SEW and vanilla numbers above are of the same size."""
    model = random_demo("membrane")
    calibrate(model, digits_like(16, seed=100), calibration_target("membrane"))
    images = digits_like(32, seed=7)
    with torch.no_grad():
        _, ref_spikes = model(images, trace=True)
    _, trace = IntegerModel(quantize_model(model, 8))(images, trace=True)
    end_to_end = agreement(trace.spikes, ref_spikes)
    mean = np.mean(list(end_to_end.values()))
    print(f"membrane T=1: end to end min {min(end_to_end.values()):.4f} mean {mean:.4f}")
    for key, (low, average, _, _) in MEASURED.items():
        if key[0] == 1:
            assert abs(average - mean) < 0.03, key


# --- references of the contract --------------------------------------------------------------

def test_conv_on_counts_is_bit_planes_of_spike_convs():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 6, (4, 7, 7))
    weight = rng.integers(-127, 128, (5, 4, 3, 3))
    bias = rng.integers(-1000, 1000, 5)
    got = intops.conv2d_counts(counts, weight, bias, 2, 1, max_count=5)
    padded = np.pad(counts, ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2]
    direct = np.einsum("ihwyx,oiyx->ohw", windows, weight) + bias[:, None, None]
    assert np.array_equal(got, direct)
    # ... and repeated addition: count c adds the weight c times.
    repeated = intops.conv2d_spikes(np.zeros_like(counts), weight, bias, 2, 1)
    for level in range(1, 6):
        repeated = repeated + intops.conv2d_spikes(counts >= level, weight, None, 2, 1)
    assert np.array_equal(got, repeated)
    assert np.array_equal(intops.conv2d_counts(counts & 1, weight, bias, 1, 1),
                          intops.conv2d_spikes(counts & 1, weight, bias, 1, 1))
    with pytest.raises(ValueError, match="counts must lie"):
        intops.conv2d_counts(counts, weight, bias, max_count=4)
    with pytest.raises(ValueError, match="counts must lie"):
        intops.conv2d_counts(-counts - 1, weight, bias)


def test_vanilla_lif_decision_is_exact_at_t1():
    """``(acc << k) + m * spike >= 2 m`` is the float ``(acc * s + spike) / 2 >= 1`` with the
    LIF's unit ``s = 1 / m``, for every integer sum: the decision is exact."""
    for m, k in ((1, 0), (3, 0), (7, 0), (100, 0), (1, 2)):
        acc = np.arange(-300, 300)
        for spike in (0, 1):
            x = intops.residual_input(acc[None], np.full((1, acc.size), spike), [m], [k])[0]
            threshold = intops.lif_threshold(1.0 * m, 1.0)
            assert threshold == 2 * m
            fired = intops.lif_sequence(x[None], threshold)[0].astype(bool)
            real = acc * 2.0 ** k / m + spike        # branch + incoming spike, exactly
            assert np.array_equal(fired, real / 2 >= 1.0), (m, k, spike)


# --- command line and memory images ----------------------------------------------------------

@pytest.mark.parametrize("shortcut", SHORTCUTS)
def test_cli_quantizes_a_saved_checkpoint(shortcut, tmp_path, capsys):
    model = calibrated(shortcut, 4)
    path = tmp_path / f"demo_{shortcut}.pth"
    save_checkpoint(model, path)
    out = tmp_path / "images"
    assert cli_main([str(path), "--out", str(out)]) == 0
    assert "quantized" in capsys.readouterr().out
    manifest, arrays = load_images(str(out))
    assert manifest["model"]["shortcut"] == shortcut and manifest["model"]["T"] == 4
    net = quantize_model(load_checkpoint(path), 8)
    expected = {m["name"]: m["data"] for m in memories(net)}
    assert set(arrays) == set(expected)
    for name, data in expected.items():
        assert np.array_equal(arrays[name], data), name
    entries = {entry["name"]: entry for entry in manifest["memories"]}
    report = {row["name"]: row for row in json.loads((out / "report.json").read_text())}
    if shortcut == "sew":
        assert all(s.get("counts") for s in manifest["streams"].values())
        assert manifest["streams"]["downsample3"]["producers"] == [
            "downsample3.out_lif", "block3.0.attn_out_lif", "block3.0.out_lif"]
        assert manifest["streams"]["downsample3"]["bits"] == 2   # counts 0..3
        assert entries["block3.0.attn.q_conv.weight"]["kind"] == "counts"
        assert entries["block3.0.mlp.fc1_conv.weight"]["input_max"] == 2
        assert report["downsample2.encode_conv"]["input_max"] == 3
        assert not any(name.endswith((".identity", ".shift")) for name in arrays)
        assert entries["lif.threshold"]["source"] == "pooled:downsample4"
        # The head LIF pools counts over the 2x2 map: threshold 2 * 4 positions.
        assert arrays["lif.threshold"].tolist() == [8] * 64
    else:
        assert manifest["streams"] == {}
        assert not any(entry.get("kind") == "counts" for entry in entries.values())
        residual = plan(net.cfg).residuals
        for layer, spikes in residual.items():
            assert np.array_equal(arrays[f"{layer}.identity"], net.layers[layer].identity)
            assert entries[f"{layer}.identity"]["spikes"] == spikes
            assert "identity" in entries[f"{layer}.shift"]["op"]
            assert report[layer]["shortcut_from"] == spikes
        lif = "block3.0.out_lif"
        assert entries[f"{lif}.threshold"]["source"] == "residual:block3.0.mlp.fc2_conv"
        identity = arrays["block3.0.mlp.fc2_conv.identity"]
        assert np.array_equal(arrays[f"{lif}.threshold"],
                              np.minimum(2 * identity, (1 << net.lifs[lif].input_bits) - 1))
    # Reruns are byte-identical.
    again = tmp_path / "again"
    assert cli_main([str(path), "--out", str(again)]) == 0
    for file in out.iterdir():
        assert (again / file.name).read_bytes() == file.read_bytes(), file.name


def test_membrane_nets_carry_none_of_it():
    """A membrane net has no counts layer, no identity memory and no counts stream: its
    images and report rows keep the keys they always had."""
    net = quantize_model(make_model("demo").float(), 8)
    assert all(layer.kind != "counts" and layer.input_max is None and layer.identity is None
               for layer in net.layers.values())
    assert not any(s.counts for s in net.streams.values())
    names = [m["name"] for m in memories(net)]
    assert not any(name.endswith(".identity") for name in names)
    for row in net.report():
        assert not {"input_max", "identity_max", "shortcut_from", "counts"} & set(row)


# --- the hardware runs vanilla and SEW -------------------------------------------------------

def test_hardware_takes_the_vanilla_shortcut(tmp_path):
    """The shared network builds vanilla (tests/test_shared_vanilla.py, and bit-exact in
    tests/test_shared_ablations.py): the program and the plan accept it."""
    from hw.plan import SharedPlan
    from hw.program import Program, StepKind
    from sim.e2e import prepare

    net = quantize_model(make_model("demo", shortcut="vanilla").float(), 8)
    assert any(step.kind is StepKind.RESIDUAL_LIF for step in Program(net).steps)
    assert SharedPlan(net, 16).residual
    path = tmp_path / "model.pth"
    save_checkpoint(make_model("demo", shortcut="vanilla"), path)
    assert prepare(1, path).cfg.shortcut == "vanilla"


def test_hardware_takes_the_sew_shortcut(tmp_path):
    """SEW runs in the shared network (tests/test_shared_sew.py; bit-exact in
    tests/test_shared_ablations.py): a layer on spike counts becomes one step per producer map,
    and a SEW checkpoint is prepared as itself, never as the demo's membrane shortcut."""
    from hw.plan import SharedPlan
    from hw.program import Program
    from sim.e2e import prepare

    net = quantize_model(make_model("demo", shortcut="sew").float(), 8)
    names = [step.name for step in Program(net).steps]
    assert any("@" in name for name in names), names
    SharedPlan(net, 16)
    path = tmp_path / "model.pth"
    save_checkpoint(make_model("demo", shortcut="sew"), path)
    assert prepare(1, path).cfg.shortcut == "sew"
