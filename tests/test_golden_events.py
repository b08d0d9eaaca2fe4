"""Tests of event-camera input: the simulated camera, framing, event files, the event model."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from golden.__main__ import main as golden_main
from golden.checkpoint import load_checkpoint, save_checkpoint
from golden.config import ModelConfig, variant
from golden.energy import measure, totals
from golden.events import (EVENT_DTYPE, OFF, ON, camera_events, check_events, digit_events,
                           event_split, read_events, to_frames)
from golden.model import MetaSpikeFormer, lif_modules
from golden.train import _shift, evaluate

CKPT = Path(__file__).parents[1] / "golden" / "checkpoints" / "demo_dvs.pth"
DIGIT = np.array([[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0],
                  [0, 3, 15, 2, 0, 11, 8, 0], [0, 4, 12, 0, 0, 8, 8, 0],
                  [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                  [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]])  # digits[0], a zero


def events(rows):
    """Return an EVENT_DTYPE array from ``(t, x, y, p)`` rows."""
    return np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE)


# The simulated camera -------------------------------------------------------------------------
def test_digit_events_are_deterministic_per_seed_and_differ_across_seeds():
    a = digit_events(DIGIT, rng=np.random.default_rng(7))
    b = digit_events(DIGIT, rng=np.random.default_rng(7))
    c = digit_events(DIGIT, rng=np.random.default_rng(8))
    assert a.dtype == EVENT_DTYPE and len(a) > 1000
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.all(np.diff(a["t"]) >= 0) and a["t"].min() >= 0 and a["t"].max() <= 300_000
    assert set(np.unique(a["p"])) == {0, 1}
    assert a["x"].min() >= 0 and a["x"].max() < 32 and a["y"].min() >= 0 and a["y"].max() < 32


def test_static_scene_gives_no_events():
    rng = np.random.default_rng(0)
    scene = np.random.default_rng(1).uniform(0, 1, (6, 5))
    ev = camera_events(np.stack([scene] * 10), np.arange(10) * 1000, rng=rng, jitter_us=300)
    assert len(ev) == 0


def test_a_brighter_step_gives_on_events_only_at_the_crossing_times():
    threshold, eps = 0.4, 0.25
    before = np.full((3, 4), 0.05)
    after = before.copy()
    after[1, 2] = 1.0                      # one pixel gets brighter
    ev = camera_events(np.stack([before, after]), np.array([0, 1000]),
                       rng=np.random.default_rng(0), threshold=threshold, log_eps=eps)
    rise = math.log(1.0 + eps) - math.log(0.05 + eps)   # ln(1.25 / 0.3) = 1.427: 3 crossings
    n = math.floor(rise / threshold)
    assert n == 3 and len(ev) == n
    assert np.all(ev["p"] == ON) and np.all(ev["x"] == 2) and np.all(ev["y"] == 1)
    # The j-th crossing is j thresholds up a straight line from 0 to 1000 us.
    assert list(ev["t"]) == [math.floor(1000 * j * threshold / rise) for j in range(1, n + 1)]
    # Back down: as many OFF events, no ON event.
    back = camera_events(np.stack([after, before]), np.array([0, 1000]),
                         rng=np.random.default_rng(0), threshold=threshold, log_eps=eps)
    assert len(back) == n and np.all(back["p"] == OFF)


def test_the_reference_carries_the_remainder_over():
    # Two steps of 0.75 thresholds each: nothing after the first, one event after the second.
    eps, threshold = 0.25, 0.4
    levels = [math.exp(math.log(0.5 + eps) + k * 0.75 * threshold) - eps for k in range(3)]
    ev = camera_events(np.array(levels).reshape(3, 1, 1), np.array([0, 100, 200]),
                       rng=np.random.default_rng(0), threshold=threshold, log_eps=eps)
    assert len(ev) == 1 and ev["p"][0] == ON and 100 <= ev["t"][0] <= 200


def test_jitter_delays_events_within_bounds():
    before, after = np.full((2, 2), 0.1), np.full((2, 2), 0.9)
    plain = camera_events(np.stack([before, after]), np.array([0, 10_000]),
                          rng=np.random.default_rng(0))
    late = camera_events(np.stack([before, after]), np.array([0, 10_000]),
                         rng=np.random.default_rng(0), jitter_us=50)
    assert len(plain) == len(late)
    d = np.sort(late["t"]) - np.sort(plain["t"])
    assert d.min() >= 0 and d.max() <= 50 and d.max() > 0


# Frames ---------------------------------------------------------------------------------------
def test_to_frames_by_hand():
    # Times 0..40 in 4 bins of 10 us: [0,10) [10,20) [20,30) [30,40); t=40 is in no bin (tonic).
    ev = events([(0, 1, 0, 1), (5, 1, 0, 1), (12, 2, 3, 0), (25, 0, 1, 1), (25, 0, 1, 0),
                 (39, 3, 2, 0), (40, 2, 2, 1)])
    frames = to_frames(ev, (4, 4), 4)
    want = np.zeros((4, 2, 4, 4), np.uint8)
    want[0, ON, 0, 1] = 1          # two events, still 1
    want[1, OFF, 3, 2] = 1
    want[2, ON, 1, 0] = want[2, OFF, 1, 0] = 1
    want[3, OFF, 2, 3] = 1
    assert frames.dtype == np.uint8 and np.array_equal(frames, want)


def test_to_frames_of_a_digit_is_binary_with_both_polarities():
    ev = digit_events(DIGIT, rng=np.random.default_rng(0))
    frames = to_frames(ev, (32, 32), 4)
    assert frames.shape == (4, 2, 32, 32) and frames.dtype == np.uint8
    assert set(np.unique(frames)) == {0, 1}
    assert frames[:, OFF].sum() > 0 and frames[:, ON].sum() > 0
    assert np.array_equal(to_frames(events([]), (32, 32), 4), np.zeros((4, 2, 32, 32)))


def test_to_frames_refuses_unsorted_events():
    with pytest.raises(ValueError, match="not non-decreasing"):
        to_frames(events([(5, 0, 0, 1), (3, 0, 0, 1)]), (4, 4), 2)


# Event files ----------------------------------------------------------------------------------
def test_read_events_round_trips(tmp_path):
    ev = events([(0, 1, 2, 1), (7, 3, 0, 0), (7, 0, 3, 1), (90, 2, 2, 0)])
    np.save(tmp_path / "s.npy", ev)
    assert np.array_equal(read_events(tmp_path / "s.npy", (4, 4)), ev)
    table = np.stack([ev["t"], ev["x"], ev["y"], ev["p"]], axis=1).astype(np.int32)
    np.save(tmp_path / "n4.npy", table)
    assert np.array_equal(read_events(tmp_path / "n4.npy", (4, 4)), ev)
    np.savez(tmp_path / "e.npz", t=ev["t"], x=ev["x"], y=ev["y"], p=ev["p"])
    assert np.array_equal(read_events(tmp_path / "e.npz", (4, 4)), ev)
    # tonic's own layout (x, y, t, p with a bool polarity) reads too.
    tonic_like = np.zeros(4, [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    for f in ("x", "y", "t", "p"):
        tonic_like[f] = ev[f]
    np.save(tmp_path / "tonic.npy", tonic_like)
    assert np.array_equal(read_events(tmp_path / "tonic.npy", (4, 4)), ev)
    # A sensor is (H, W): x < W = 5 and y < H = 3 here.
    wide = events([(0, 4, 2, 1)])
    np.save(tmp_path / "wide.npy", wide)
    assert np.array_equal(read_events(tmp_path / "wide.npy", (3, 5)), wide)


GOOD = events([(0, 1, 2, 1), (7, 3, 0, 0), (9, 0, 3, 1)])


def _with(field, values, dtype=None):
    arr = GOOD.copy() if dtype is None else GOOD.astype(dtype)
    arr[field] = values
    return arr


BAD_NPY = {
    "missing": (GOOD[["t", "x", "y"]], r"missing field\(s\) \['p'\]"),
    "x_outside": (_with("x", [1, 4, 0]), r"x outside the sensor 0\.\.3"),
    "y_outside": (_with("y", [2, 0, -1]), r"y outside the sensor 0\.\.3"),
    "p_two": (_with("p", [1, 2, 0]), r"p not 0 \(OFF\) or 1 \(ON\).*p=2"),
    "t_decreasing": (_with("t", [0, 9, 7]), r"t is not non-decreasing.*event 2 t=7"),
    "t_negative": (_with("t", [-5, 0, 1]), r"negative time t=-5"),
    "empty": (GOOD[:0], r"holds no events"),
    "nan": (_with("t", [0.0, np.nan, 9.0], [("t", "<f8"), ("x", "<i2"), ("y", "<i2"),
                                           ("p", "<i1")]), r"t holds 1 NaN"),
    "fraction": (_with("t", [0.0, 1.5, 9.0], [("t", "<f8"), ("x", "<i2"), ("y", "<i2"),
                                             ("p", "<i1")]), r"t holds values that are not"),
    "strings": (np.array([["0", "1", "2", "1"]]), r"dtype <U1, expected integers"),
    "complex_field": (_with("p", [1, 0, 1], [("t", "<i8"), ("x", "<i2"), ("y", "<i2"),
                                            ("p", "<c8")]), r"p has dtype complex64"),
    "ndim1": (np.arange(4), r"found ndim 1, shape \(4,\)"),
    "three_columns": (np.zeros((5, 3), np.int64), r"found ndim 2, shape \(5, 3\)"),
    "structured_2d": (np.stack([GOOD, GOOD]), r"must be 1-D, found ndim 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_read_events_refuses_malformed_npy(tmp_path, case):
    arr, message = BAD_NPY[case]
    path = tmp_path / f"{case}.npy"
    np.save(path, arr)
    with pytest.raises(ValueError, match=message) as info:
        read_events(path, (4, 4))
    assert str(path) in str(info.value)


def test_read_events_refuses_bad_npz_and_files(tmp_path):
    np.savez(tmp_path / "nop.npz", t=GOOD["t"], x=GOOD["x"], y=GOOD["y"])
    with pytest.raises(ValueError, match=r"nop\.npz: missing field\(s\) \['p'\]"):
        read_events(tmp_path / "nop.npz", (4, 4))
    np.savez(tmp_path / "len.npz", t=GOOD["t"], x=GOOD["x"], y=GOOD["y"], p=GOOD["p"][:2])
    with pytest.raises(ValueError, match=r"len\.npz: fields must be 1-D arrays of one length"):
        read_events(tmp_path / "len.npz", (4, 4))
    np.save(tmp_path / "obj.npy", np.array([{"t": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: cannot be read as \.npy without pickle"):
        read_events(tmp_path / "obj.npy", (4, 4))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"junk\.npy: cannot be read"):
        read_events(tmp_path / "junk.npy", (4, 4))
    (tmp_path / "e.aedat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported event file type '\.aedat'"):
        read_events(tmp_path / "e.aedat", (4, 4))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_events(tmp_path / "none.npy", (4, 4))


def test_check_events_accepts_empty_only_when_asked():
    assert len(check_events(events([]), (4, 4), allow_empty=True)) == 0
    with pytest.raises(ValueError, match="events: holds no events"):
        check_events(events([]), (4, 4))


# Configuration, model, checkpoints -------------------------------------------------------------
def test_config_events_needs_two_channels_and_a_bool():
    cfg = variant("demo_dvs")
    assert (cfg.events, cfg.in_channels, cfg.T, cfg.img_size, cfg.num_classes) == \
        (True, 2, 4, 32, 10)
    assert cfg.embed_dim == variant("demo").embed_dim and cfg.depths == variant("demo").depths
    assert variant("demo").events is False
    with pytest.raises(ValueError, match=r"ModelConfig\.events=True is not allowed: True only "
                                         r"with in_channels=2.*in_channels=1"):
        variant("demo", events=True)
    with pytest.raises(ValueError, match=r"ModelConfig\.events='yes' is not allowed: True or "
                                         r"False"):
        variant("demo_dvs", events="yes")


def test_events_change_no_parameter_name():
    ev = MetaSpikeFormer(variant("demo_dvs")).state_dict()
    frame = MetaSpikeFormer(variant("demo", in_channels=2)).state_dict()
    assert list(ev) == list(frame)
    assert all(ev[k].shape == frame[k].shape for k in ev)


def test_event_model_refuses_images_and_non_binary_input():
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("demo_dvs", T=2)).eval()
    spikes = (torch.rand(2, 3, 2, 32, 32) < 0.2).float()
    assert model(spikes).shape == (3, 10)
    with pytest.raises(ValueError, match=r"expected binary event frames \[T=2, B, 2, H, W\].*"
                                         r"got shape \(3, 2, 32, 32\).*does not repeat"):
        model(spikes[0])
    with pytest.raises(ValueError, match=r"values must all be 0 or 1.*found 1 other value"):
        bad = spikes.clone()
        bad[1, 0, 0, 5, 5] = 0.5
        model(bad)
    with pytest.raises(ValueError, match="found 1 other value"):
        bad = spikes.clone()
        bad[0, 2, 1, 0, 0] = float("nan")
        model(bad)
    with pytest.raises(ValueError, match=r"got shape \(3, 2, 2, 32, 32\).*transpose"):
        model(spikes.transpose(0, 1))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 1, 32, 32\)"):
        model(spikes[:, :, :1])


def test_old_checkpoint_without_events_loads_as_frame_model(tmp_path):
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("tiny", in_channels=2))
    path = tmp_path / "old.pth"
    save_checkpoint(model, path)
    blob = torch.load(path, weights_only=True)
    del blob["config"]["events"]
    torch.save(blob, path)
    assert load_checkpoint(path).cfg.events is False
    save_checkpoint(MetaSpikeFormer(variant("tiny", in_channels=2, events=True)), path)
    assert torch.load(path, weights_only=True)["config"]["events"] is True
    assert load_checkpoint(path).cfg.events is True


def test_shift_moves_every_frame_of_a_sample_alike():
    x = (torch.rand(5, 4, 2, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    out = _shift(x, 1, 4, torch.Generator().manual_seed(1))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    for i in range(5):
        # One translation per sample: find it on frame 0, check it on every frame.
        matches = [(dy, dx) for dy in (-4, 0, 4) for dx in (-4, 0, 4)
                   if torch.equal(out[i, 0], _translate(x[i, 0], dy, dx))]
        assert matches
        dy, dx = matches[0]
        assert all(torch.equal(out[i, t], _translate(x[i, t], dy, dx)) for t in range(4))


def _translate(img, dy, dx):
    h, w = img.shape[-2:]
    out = torch.zeros_like(img)
    src = img[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
    return out


# The shipped event model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    model = load_checkpoint(CKPT)
    x, y = event_split("test", model.cfg.T, model.cfg.img_size, limit=64)
    return model, x, y


def test_shipped_event_model_beats_chance(shipped):
    model, x, y = shipped
    assert model.cfg == variant("demo_dvs") and model.cfg.events
    assert x.shape == (64, 4, 2, 32, 32) and set(x.unique().tolist()) == {0.0, 1.0}
    accuracy = evaluate(model, x, y)
    assert accuracy > 0.8, f"accuracy {accuracy} on 64 held-out event digits (chance 0.1)"


def test_every_lif_of_the_shipped_event_model_fires(shipped):
    model, x, _ = shipped
    with torch.no_grad():
        _, spikes = model(x.transpose(0, 1), trace=True)
    assert set(spikes) == set(lif_modules(model))
    silent = [name for name, s in spikes.items() if not bool(s.any())]
    assert not silent, f"LIF layers that never fire on 64 test samples: {silent}"


def test_event_model_energy_has_no_macs(shipped, capsys):
    model, x, _ = shipped
    layers, rates = measure(model, x[:16].transpose(0, 1))
    assert all(layer.macs == 0 for layer in layers)
    stem = layers[0]
    assert stem.name == "downsample1_1.encode_conv" and stem.input_from == "events"
    assert stem.binary_input and stem.flops == 49 * 16 * 16 * 2 * 8
    assert 0 < stem.sop == pytest.approx(stem.fr_in * 4 * stem.flops)
    assert stem.fr_in == pytest.approx(float(x[:16].mean()))
    assert totals(layers)["macs"] == 0 and totals(layers)["sop"] > 0
    assert golden_main(["energy", "--ckpt", str(CKPT), "--images", "8"]) == 0
    out = capsys.readouterr().out
    assert "8 samples from digits test split seen by the simulated event camera" in out
    assert "MAC 0.0000e+00" in out
    assert golden_main(["energy", "--ckpt", str(CKPT), "--images", "2", "--data",
                        "random"]) == 0
    assert "seeded random event frames" in capsys.readouterr().out


def test_frame_configs_still_take_images():
    cfg = ModelConfig(embed_dim=(8, 16, 16, 16), depths=(1, 1, 1, 1, 1, 1), num_heads=2,
                      img_size=32, in_channels=2, num_classes=5, T=2).validate()
    assert cfg.events is False
    torch.manual_seed(0)
    assert MetaSpikeFormer(cfg).eval()(torch.randn(1, 2, 32, 32)).shape == (1, 5)
