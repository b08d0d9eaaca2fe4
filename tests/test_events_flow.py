"""Event input through quant/ and hw/: the first layer on spikes, no pixel codes, no multiplier.

An event model (``ModelConfig.events``) takes ``[T, B, 2, H, W]`` ON/OFF frames of 0/1. The fold
makes its first layer an ordinary conv on spikes, the quantizer keeps no pixel codes, the integer
model takes the frames themselves, and the shared network gets an ``events`` port and an
``EVENT_IN`` step that stores each time step's frame as the ``input`` spike map, after which the
first layer runs on the engine. The co-simulation of the shipped event checkpoint on Verilator is
the slow test at the end (``make test-all``; ``make demo-dvs`` runs it too).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from amaranth.back import rtlil
from amaranth.hdl import Fragment

from golden.model import MetaSpikeFormer
from hw.plan import SharedPlan
from hw.program import StepKind
from hw.shared import SharedNetwork
from quant.fold import fold_model
from quant.graph import FloatBackend, walk
from quant.images import memories
from quant.intmodel import IntegerModel
from quant.quantize import quantize_model
from sim.perf import CycleModel, event_in_cycles

from test_quant_fold import make_model
from test_quant_intmodel import reference_check

torch.set_num_threads(1)


def event_frames(cfg, batch: int, rate: float = 0.12, seed: int = 5) -> torch.Tensor:
    """Seeded 0/1 frames ``[T, B, C, H, W]`` for ``cfg``."""
    generator = torch.Generator().manual_seed(seed)
    shape = (cfg.T, batch, cfg.in_channels, cfg.img_size, cfg.img_size)
    return (torch.rand(shape, generator=generator) < rate).to(torch.float64)


@pytest.fixture(scope="module")
def model():
    return make_model("demo_dvs")


@pytest.fixture(scope="module")
def net(model):
    return quantize_model(model.float(), 8)


def test_fold_is_exact_on_event_frames(model):
    """The folded float walk (first layer a conv on spikes) equals the golden model."""
    frames = event_frames(model.cfg, 2)
    with torch.no_grad():
        ref, ref_spikes = model(frames, trace=True)
        backend = FloatBackend(fold_model(model), trace=True)
        out = walk(model.cfg, backend, frames)
    assert fold_model(model).layers["downsample1_1.encode_conv"].kind == "conv"
    assert (out - ref).abs().max().item() < 1e-9
    for name, spikes in ref_spikes.items():
        assert torch.equal(backend.spikes[name], spikes), name
    assert torch.equal(backend.spikes["input"], frames)


def test_integer_model_on_event_frames_equals_contract_references(net):
    assert net.pixel is None  # no pixel codes: the input is spikes
    assert net.layers["downsample1_1.encode_conv"].kind == "conv"
    frames = event_frames(net.cfg, 2)
    logits, trace = IntegerModel(net)(frames.to(torch.int64), trace=True)
    reference_check(net, None, trace, sample=1)
    assert torch.equal(logits, trace.accumulators["head"].sum(0))
    assert torch.equal(trace.spikes["input"].to(torch.int64), frames.to(torch.int64))
    rates = [s.float().mean().item() for name, s in trace.spikes.items() if name != "input"]
    assert np.mean([r > 0 for r in rates]) > 0.5  # the comparison is not vacuous


@pytest.mark.parametrize("bad,message", [
    (lambda f: f[0], "expected event frames"),                   # 4-D
    (lambda f: f[:, :, :1], "expected event frames"),            # one channel
    (lambda f: f * 2, "only 0 and 1"),                           # not spikes
])
def test_integer_model_refuses_bad_event_frames(net, bad, message):
    frames = event_frames(net.cfg, 1).to(torch.int64)
    with pytest.raises(ValueError, match=message):
        IntegerModel(net)(bad(frames))


def test_memory_images_hold_no_pixel_codes(net):
    names = [m["name"] for m in memories(net)]
    assert "pixel.zero_point" not in names
    assert names[0] == "downsample1_1.encode_conv.weight"


def test_program_begins_with_the_event_input(net):
    plan = SharedPlan(net, 16)
    first, second = plan.steps[:2]
    assert first.kind is StepKind.EVENT_IN and first.sink.spike_map == "input"
    assert second.kind is StepKind.LAYER and second.layer == "downsample1_1.encode_conv"
    assert second.source == "input"
    assert not any(s.kind in (StepKind.STEM, StepKind.BEGIN_STEM) for s in plan.steps)
    assert plan.events and plan.stem_layer is None
    info = plan.input_map
    assert (info.channels, info.side) == (2, net.cfg.img_size)
    assert "input" not in plan.memory.sites  # the input map has no LIF behind it


def submodules(dut) -> list[str]:
    return [name for _, name, _ in Fragment.get(dut, None).subfragments]


def test_event_network_has_an_events_port_and_no_multiplier():
    # A small event model: converting the demo-sized network takes over a minute.
    model = make_model("tiny", in_channels=2, events=True, img_size=16, T=1)
    dut = SharedNetwork(quantize_model(model.float(), 8), lanes=8)
    members = dict(dut.signature.members)
    assert "events" in members and "load_address" not in members
    assert "stem" not in submodules(dut)
    text = rtlil.convert(dut, name="top")
    assert len(re.findall(r"^\s*cell \$mul\b", text, re.MULTILINE)) == 0


def test_frame_network_keeps_its_stem():
    """Control: the same structure with pixel input has the stem and the pixel load port."""
    model = make_model("tiny", in_channels=2, img_size=16, T=1)
    dut = SharedNetwork(quantize_model(model.float(), 8), lanes=8)
    members = dict(dut.signature.members)
    assert "load_address" in members and "events" not in members
    assert dut.plan.steps[0].kind is StepKind.STEM
    assert "stem" in submodules(dut)


def test_cycle_model_counts_one_beat_per_pixel(net):
    plan = SharedPlan(net, 16)
    model = CycleModel(plan)
    step = plan.steps[0]
    pixels = net.cfg.img_size ** 2
    assert model.step_cycles(step, None, 0, 0) == event_in_cycles(pixels)
    assert event_in_cycles(pixels) - event_in_cycles(pixels - 1) == 1


@pytest.mark.slow
def test_shipped_event_checkpoint_is_bit_exact_on_verilator(tmp_path):
    """The event demo checkpoint at T=4 on two held-out event digits: logits and every spike map
    (the input map included) ``==`` the integer model, cycles equal to the cycle model's."""
    from sim.e2e import DEFAULT_CHECKPOINT, prepare, select_inputs, simulate

    checkpoint = DEFAULT_CHECKPOINT.parent / "demo_dvs.pth"
    network = prepare(4, checkpoint)
    assert network.cfg.events
    summary = simulate(network, select_inputs(network.net, 2), tmp_path)
    assert summary["error"] is None, summary["error"]
    assert len(summary["rtl"]) == 2
    for result in summary["rtl"]:
        assert result["match"]
        assert result["predicted_cycles"] == result["cycles"]
    assert all(row["macs"] == 0 for row in summary["report"])


def test_event_inputs_from_the_digits_records_and_frame_files(net, tmp_path):
    """The run's inputs: the held-out digits as events, one sample's event records (.npy
    structured, (N, 4) columns, .npz), or a .npy of frames; the same records give the same
    frames whichever file holds them."""
    from golden.events import EVENT_DTYPE, to_frames
    from sim.e2e import select_inputs

    digits = select_inputs(net, 2)
    assert digits.images.shape == (2, 4, 2, 32, 32) and digits.source == "digits"
    assert digits.labels is not None and digits.meaningful
    assert 0.01 < float(digits.images.mean()) < 0.5
    rng = np.random.default_rng(3)
    events = np.zeros(500, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 10_000, 500))
    events["x"], events["y"] = rng.integers(0, 32, 500), rng.integers(0, 32, 500)
    events["p"] = rng.integers(0, 2, 500)
    want = torch.from_numpy(to_frames(events, (32, 32), 4)[None].astype(np.float64))
    np.save(tmp_path / "s.npy", events)
    np.save(tmp_path / "c.npy", np.stack([events[f].astype(np.int64) for f in "txyp"], axis=1))
    np.savez(tmp_path / "z.npz", **{f: events[f] for f in "txyp"})
    for name in ("s.npy", "c.npy", "z.npz"):
        got = select_inputs(net, None, tmp_path / name)
        assert torch.equal(got.images, want), name
    np.save(tmp_path / "frames.npy", want.numpy().repeat(3, axis=0))
    assert select_inputs(net, 2, tmp_path / "frames.npy").images.shape[0] == 2


@pytest.mark.parametrize("case,message", [
    ("x_outside", "x outside the sensor"),
    ("not_binary", "values other than 0 and 1"),
    ("wrong_T", "expected [N, T=4"),
    ("text", "unknown format"),
])
def test_bad_event_inputs_are_one_clear_error(net, tmp_path, case, message):
    from golden.events import EVENT_DTYPE
    from sim.e2e import InputError, select_inputs

    path = tmp_path / "in.npy"
    if case == "x_outside":
        events = np.zeros(3, dtype=EVENT_DTYPE)
        events["t"] = [1, 2, 3]
        events["x"][1] = 40
        np.save(path, events)
    elif case == "not_binary":
        np.save(path, np.full((1, 4, 2, 32, 32), 2.0))
    elif case == "wrong_T":
        np.save(path, np.zeros((1, 3, 2, 32, 32)))
    else:
        path = tmp_path / "in.txt"
        path.write_text("0 1 2 3")
    with pytest.raises(InputError, match=re.escape(message)):
        select_inputs(net, None, path)
