"""Event-camera input for the demo: a simulated camera watching moving digits, and event files.

An event camera (DVS, ATIS, ...) has no frames. Each pixel remembers the log intensity it saw when
it last reported something, its *reference*. When the present log intensity has risen by the
contrast threshold above the reference, the pixel emits an ON event ``(t, x, y, p=1)`` and moves
its reference up by one threshold; when it has fallen by a threshold, an OFF event (``p=0``) and
the reference moves down. A change of several thresholds between two looks gives several events.
A still scene gives none: the camera only sees change.

The simulator here follows that rule, per pixel, on a sequence of intensity images sampled in
time (:func:`camera_events`):

- the log intensity is ``log(I + log_eps)``, ``I`` in 0..1 (``log_eps`` keeps black finite and
  plays the part of the dark current that limits a real pixel's contrast in the dark);
- the reference starts at the first image's log intensity; between two samples a pixel emits
  ``floor((L - ref) / threshold)`` ON events (or as many OFF events for a fall), a crossing
  counted when the change reaches a threshold (``>=``), and the reference moves by that many
  thresholds, so the remainder carries over to the next sample;
- each event's time is where the crossing falls between the two sampling times, on a straight
  line between their log intensities, plus a random delay of 0..``jitter_us`` microseconds from
  the caller's generator (a stand-in for a real pixel's latency noise); times are integers.

Static digits give no events, so the camera must move, as in N-MNIST (Orchard et al., 2015):
there the digits were shown still on a monitor and the event camera, on a pan-tilt mount, made
three quick straight movements that took it around a triangle and back to where it started, like
the small saccades of an eye; the digit's edges sweep over the pixels and fire them.
:func:`digit_events` does the same with scikit-learn's 8x8 digits (``pixel / 16``, upscaled to
the sensor by pixel repetition, black background): the image moves by sub-pixel steps along three
straight saccades around a triangle whose corners the generator perturbs by up to half a pixel,
resampled with bilinear interpolation at every step. Everything random comes from the ``rng``
passed in, so a seed fixes the events.

Events are numpy structured arrays of :data:`EVENT_DTYPE` (``t`` int64 microseconds, ``x``, ``y``
int16, ``p`` int8: 1 ON, 0 OFF), sorted by time, the field names tonic uses. :func:`to_frames`
bins them into ``T`` binary frames with tonic (``to_frame_numpy(n_time_bins=T)``):
**channel 0 is OFF (p=0), channel 1 is ON (p=1)**, a 1 where that polarity had at least one event
in that time bin. :func:`read_events` reads recorded or converted events from ``.npy``/``.npz``.

Sizes are ``(H, W)`` (rows, columns) throughout, as for the model's images; tonic's own
``sensor_size`` is ``(W, H, P)``, and :func:`to_frames` converts.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

__all__ = ["EVENT_DTYPE", "OFF", "ON", "camera_events", "digit_events", "saccade_path",
           "to_frames", "event_digits", "event_split", "read_events", "check_events"]

#: Layout of an event array: the field names of tonic's datasets, the time first.
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
#: Frame channel of each polarity in :func:`to_frames` output (tonic's: the polarity value).
OFF, ON = 0, 1

_FIELDS = ("t", "x", "y", "p")
_CACHE: dict = {}


# The camera ------------------------------------------------------------------------------------
def camera_events(images: np.ndarray, times_us: np.ndarray, *, rng: np.random.Generator,
                  threshold: float = 0.25, log_eps: float = 0.1,
                  jitter_us: int = 0) -> np.ndarray:
    """Return the events a camera emits while it sees ``images`` at ``times_us``.

    Parameters
    ----------
    images : array [S, H, W]
        Intensities 0..1 sampled at ``S >= 1`` times; the first sets every pixel's reference.
    times_us : array [S]
        Non-decreasing sampling times in microseconds.
    rng : numpy.random.Generator
        Source of the timing jitter (used only when ``jitter_us > 0``).
    threshold : float
        Contrast threshold, in log-intensity units (> 0).
    log_eps : float
        Added to the intensity before the log (> 0).
    jitter_us : int
        Each event's time gets a uniform random delay of 0..``jitter_us`` microseconds; the result
        is kept at or below the last sampling time.

    Returns
    -------
    numpy.ndarray
        :data:`EVENT_DTYPE`, sorted by ``(t, y, x, p)``.
    """
    images = np.asarray(images, dtype=np.float64)
    times = np.asarray(times_us, dtype=np.float64)
    if images.ndim != 3 or times.shape != (images.shape[0],) or images.shape[0] < 1:
        raise ValueError(f"camera_events: expected images [S, H, W] and times [S], got "
                         f"{images.shape} and {times.shape}")
    if not np.isfinite(images).all() or images.min() < 0:
        raise ValueError("camera_events: intensities must be finite and >= 0")
    if not np.isfinite(times).all() or np.any(np.diff(times) < 0):
        raise ValueError("camera_events: times_us must be finite and non-decreasing")
    if not threshold > 0 or not log_eps > 0 or jitter_us < 0:
        raise ValueError(f"camera_events: need threshold > 0, log_eps > 0, jitter_us >= 0; "
                         f"got {threshold}, {log_eps}, {jitter_us}")
    logs = np.log(images + log_eps)
    ref = logs[0].copy()
    chunks = []
    for k in range(1, len(logs)):
        before, now = logs[k - 1], logs[k]
        change = now - ref
        n_on = np.maximum(np.floor(change / threshold), 0.0)
        n_off = np.maximum(np.floor(-change / threshold), 0.0)
        for polarity, counts, sign in ((ON, n_on, 1.0), (OFF, n_off, -1.0)):
            ys, xs = np.nonzero(counts >= 1)
            if not len(ys):
                continue
            n = counts[ys, xs].astype(np.int64)
            # The j-th crossing (j = 1..n) is at level ref + sign * j * threshold; its time is
            # where the straight line from the previous sample's log intensity reaches it.
            j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 1
            ys, xs = np.repeat(ys, n), np.repeat(xs, n)
            level = ref[ys, xs] + sign * j * threshold
            step = now[ys, xs] - before[ys, xs]
            frac = np.where(step != 0, (level - before[ys, xs]) / np.where(step != 0, step, 1),
                            1.0)
            t = times[k - 1] + np.clip(frac, 0.0, 1.0) * (times[k] - times[k - 1])
            chunks.append((t, xs, ys, np.full(len(t), polarity)))
        ref += (n_on - n_off) * threshold
    if not chunks:
        return np.zeros(0, EVENT_DTYPE)
    t = np.concatenate([c[0] for c in chunks])
    if jitter_us > 0:
        t = t + rng.integers(0, int(jitter_us) + 1, size=len(t))
    t = np.minimum(np.floor(t), times[-1])
    events = np.empty(len(t), EVENT_DTYPE)
    events["t"] = t.astype(np.int64)
    events["x"] = np.concatenate([c[1] for c in chunks])
    events["y"] = np.concatenate([c[2] for c in chunks])
    events["p"] = np.concatenate([c[3] for c in chunks])
    return events[np.lexsort((events["p"], events["x"], events["y"], events["t"]))]


def _shift_bilinear(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Return ``image`` moved by ``(dy, dx)`` pixels, bilinear, zero (black) outside."""
    h, w = image.shape
    pad = int(math.ceil(max(abs(dy), abs(dx)))) + 2
    padded = np.pad(image, pad)
    # Output pixel (r, c) reads the input at (r - dy, c - dx): rows first, then columns.
    src = np.arange(h) - dy + pad
    lo = np.floor(src).astype(np.int64)
    frac = (src - lo)[:, None]
    rows = (1 - frac) * padded[lo] + frac * padded[lo + 1]
    src = np.arange(w) - dx + pad
    lo = np.floor(src).astype(np.int64)
    frac = (src - lo)[None, :]
    return (1 - frac) * rows[:, lo] + frac * rows[:, lo + 1]


def saccade_path(rng: np.random.Generator, steps_per_saccade: int = 40,
                 amplitude_px: float = 3.0, perturb_px: float = 0.5) -> np.ndarray:
    """Return the image displacement ``[3 * steps + 1, 2]`` (dy, dx) of three saccades.

    The corners of an isosceles triangle, ``(0, 0)``, ``(a, a/2)`` (down and right), ``(0, a)``
    (up and right), back to the start (left), centred on the origin; each corner moves by a
    uniform ``-perturb_px..perturb_px`` per axis (the start and the end stay the same point).
    """
    a = float(amplitude_px)
    corners = np.array([[0.0, 0.0], [a, a / 2], [0.0, a]])
    corners -= corners.mean(axis=0)
    corners += rng.uniform(-perturb_px, perturb_px, size=corners.shape)
    corners = np.vstack([corners, corners[:1]])
    s = np.arange(steps_per_saccade) / steps_per_saccade
    legs = [corners[i] + s[:, None] * (corners[i + 1] - corners[i]) for i in range(3)]
    return np.vstack(legs + [corners[3:]])


def digit_events(image: np.ndarray, *, rng: np.random.Generator, sensor: tuple = (32, 32),
                 duration_us: int = 300_000, threshold: float = 0.25, log_eps: float = 0.1,
                 steps_per_saccade: int = 40, amplitude_px: float | None = None,
                 jitter_us: int = 500) -> np.ndarray:
    """Return the events of a camera that makes three saccades in front of a digit.

    Parameters
    ----------
    image : array [h, w]
        Raw digit pixels 0..16 (scikit-learn's 8x8 digits); the intensity is ``pixel / 16``,
        upscaled by pixel repetition to ``sensor``, whose sides must be multiples of ``h``, ``w``.
    rng : numpy.random.Generator
        The only source of randomness (triangle corners and timing jitter).
    sensor : (H, W)
        Sensor rows and columns.
    duration_us : int
        Length of the three saccades together (300 ms: three of 100 ms, as in N-MNIST).
    threshold, log_eps, jitter_us
        The camera's, see :func:`camera_events`.
    steps_per_saccade : int
        Motion samples per saccade (40: about a tenth of a pixel per step).
    amplitude_px : float, optional
        Triangle size in sensor pixels; default ``3 * min(H, W) / 32`` (3 px on 32x32).

    Returns
    -------
    numpy.ndarray
        :data:`EVENT_DTYPE`, sorted by time, times in ``[0, duration_us]``.
    """
    pixels = np.asarray(image, dtype=np.float64)
    H, W = (int(v) for v in sensor)
    if pixels.ndim != 2 or H % pixels.shape[0] or W % pixels.shape[1]:
        raise ValueError(f"digit_events: image of shape {pixels.shape} does not upscale to the "
                         f"sensor {H}x{W} by an integer factor")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 16:
        raise ValueError("digit_events: pixels must be finite and in 0..16")
    if duration_us < 1 or steps_per_saccade < 1:
        raise ValueError(f"digit_events: need duration_us >= 1 and steps_per_saccade >= 1, got "
                         f"{duration_us} and {steps_per_saccade}")
    fy, fx = H // pixels.shape[0], W // pixels.shape[1]
    scene = np.repeat(np.repeat(pixels / 16.0, fy, axis=0), fx, axis=1)
    amplitude = 3.0 * min(H, W) / 32 if amplitude_px is None else float(amplitude_px)
    path = saccade_path(rng, steps_per_saccade, amplitude)
    images = np.stack([_shift_bilinear(scene, dy, dx) for dy, dx in path])
    times = np.linspace(0.0, float(duration_us), len(path))
    return camera_events(images, times, rng=rng, threshold=threshold, log_eps=log_eps,
                         jitter_us=jitter_us)


# Frames --------------------------------------------------------------------------------------
def to_frames(events: np.ndarray, sensor: tuple, T: int) -> np.ndarray:
    """Return ``uint8 [T, 2, H, W]`` binary frames: 1 where a polarity fired in a time bin.

    Binning is tonic's ``to_frame_numpy(events, (W, H, 2), n_time_bins=T)``: from the first
    event's time ``t0`` to the last's ``t1``, ``T`` bins of ``(t1 - t0) // T`` microseconds each
    (integer division), each bin ``[start, end)``. So events at or after
    ``t0 + T * ((t1 - t0) // T)``, the last event always among them, fall in no bin; with
    ``t1 - t0 < T`` every bin is empty. Channel :data:`OFF` (0) holds ``p=0`` events, channel
    :data:`ON` (1) ``p=1``. An empty array gives all-zero frames.
    """
    from tonic.functional import to_frame_numpy

    if not (isinstance(T, int) and not isinstance(T, bool) and T >= 1):
        raise ValueError(f"to_frames: T={T!r} must be an int >= 1")
    events = check_events(events, sensor, allow_empty=True)
    H, W = sensor
    if len(events) == 0:
        return np.zeros((T, 2, H, W), np.uint8)
    counts = to_frame_numpy(events, sensor_size=(W, H, 2), n_time_bins=T)
    return (counts > 0).astype(np.uint8)


def event_digits(T: int, img_size: int, seed: int = 0, split_seed: int = 0,
                 limit: int | None = None) -> tuple:
    """Return ``(x_train, y_train, x_test, y_test)``: the digits as event frames.

    Each image of scikit-learn's digits goes through :func:`digit_events` on an
    ``img_size x img_size`` sensor with ``numpy.random.default_rng([seed, i])``, ``i`` its index
    in the whole set (so its events do not depend on the split or ``limit``), then
    :func:`to_frames`. The split is :func:`golden.data.digits_arrays`'s (stratified, 20 % held
    out, ``split_seed``; 1437 / 360 images for 0).

    Parameters
    ----------
    T : int
        Frames (time bins) per image.
    img_size : int
        Sensor side, a multiple of 8.
    seed : int
        Seed of the simulated camera.
    split_seed : int
        Seed of the train/test split (``golden.data``'s ``seed``; the demo uses 0).
    limit : int, optional
        Only the first ``limit`` images of each split (in index order).

    Returns
    -------
    tuple
        ``x`` float32 0/1 tensors ``[N, T, 2, img_size, img_size]`` (batch first; the model takes
        ``x.transpose(0, 1)``), ``y`` int64 ``[N]``. Kept in memory for the next call with the
        same arguments (no file is written); do not modify them in place.
    """
    return (event_split("train", T, img_size, seed, split_seed, limit)
            + event_split("test", T, img_size, seed, split_seed, limit))


def event_split(split: str, T: int, img_size: int, seed: int = 0, split_seed: int = 0,
                limit: int | None = None) -> tuple:
    """Return ``(x, y)`` of one split (``'train'``, ``'test'`` or ``'all'``); see
    :func:`event_digits`, which is this for ``'train'`` and ``'test'``."""
    from sklearn.datasets import load_digits

    from .data import digits_indices

    if img_size % 8 or img_size < 8:
        raise ValueError(f"event_split: img_size={img_size} must be a multiple of 8 "
                         f"(digits are 8x8)")
    key = (split, int(T), int(img_size), int(seed), int(split_seed), limit)
    if key in _CACHE:
        return _CACHE[key]
    digits = load_digits()
    pixels = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    idx = digits_indices(split, split_seed, labels=labels)
    if limit is not None:
        idx = idx[:limit]
    frames = np.empty((len(idx), T, 2, img_size, img_size), np.float32)
    for n, i in enumerate(idx):
        rng = np.random.default_rng([seed, int(i)])
        ev = digit_events(pixels[i], rng=rng, sensor=(img_size, img_size))
        frames[n] = to_frames(ev, (img_size, img_size), T)
    _CACHE[key] = (torch.from_numpy(frames), torch.from_numpy(labels[idx]))
    return _CACHE[key]


# Files ---------------------------------------------------------------------------------------
def _integral(values: np.ndarray, what: str, source: str) -> np.ndarray:
    """Return ``values`` as int64, refusing non-numbers, NaN, Inf and fractions."""
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int64)
    if kind in "iu":
        if kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{source}: {what} holds values beyond int64")
        return values.astype(np.int64)
    if kind == "f":
        if np.isnan(values).any():
            raise ValueError(f"{source}: {what} holds {int(np.isnan(values).sum())} NaN value(s)")
        if not np.isfinite(values).all():
            raise ValueError(f"{source}: {what} holds infinite value(s)")
        if np.any(values != np.round(values)) or np.abs(values).max(initial=0) >= 2.0 ** 53:
            raise ValueError(f"{source}: {what} holds values that are not integers")
        return values.astype(np.int64)
    raise ValueError(f"{source}: {what} has dtype {values.dtype}, expected integers")


def check_events(events: np.ndarray, sensor: tuple, source: str = "events",
                 allow_empty: bool = False) -> np.ndarray:
    """Return ``events`` as a new :data:`EVENT_DTYPE` array, or raise ``ValueError``.

    ``events`` is a structured array with fields ``t``, ``x``, ``y``, ``p`` (more are ignored) or
    an ``(N, 4)`` array of columns ``t, x, y, p``. Refused, with ``source`` and the problem in the
    message: another ndim or shape, a missing field, non-integer, NaN or infinite values,
    ``0 <= x < W`` or ``0 <= y < H`` broken, ``p`` other than 0/1, ``t`` negative or decreasing,
    and no events unless ``allow_empty``. ``sensor`` is ``(H, W)``.
    """
    H, W = (int(v) for v in sensor)
    if not (1 <= H <= 32767 and 1 <= W <= 32767):
        raise ValueError(f"{source}: sensor {sensor} must be (H, W) with sides 1..32767")
    arr = np.asarray(events)
    if arr.dtype.names is not None:
        if arr.ndim != 1:
            raise ValueError(f"{source}: a structured event array must be 1-D, found ndim "
                             f"{arr.ndim} (shape {arr.shape})")
        missing = [f for f in _FIELDS if f not in arr.dtype.names]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}; an event array needs "
                             f"fields {list(_FIELDS)} (found {list(arr.dtype.names)})")
        columns = {f: arr[f] for f in _FIELDS}
    else:
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"{source}: expected a structured array with fields t, x, y, p or "
                             f"an (N, 4) array of columns t, x, y, p; found ndim {arr.ndim}, "
                             f"shape {arr.shape}")
        columns = {f: arr[:, i] for i, f in enumerate(_FIELDS)}
    n = len(columns["t"])
    if n == 0 and not allow_empty:
        raise ValueError(f"{source}: holds no events")
    values = {f: _integral(np.asarray(columns[f]), f, source) for f in _FIELDS}
    for f, side, axis in (("x", W, "W"), ("y", H, "H")):
        bad = (values[f] < 0) | (values[f] >= side)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{source}: {int(bad.sum())} event(s) with {f} outside the sensor "
                             f"0..{side - 1} ({axis}={side}), first: event {i} {f}={values[f][i]}")
    bad = (values["p"] != 0) & (values["p"] != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{source}: {int(bad.sum())} event(s) with p not 0 (OFF) or 1 (ON), "
                         f"first: event {i} p={values['p'][i]}")
    t = values["t"]
    if n and t.min() < 0:
        i = int(np.argmax(t < 0))
        raise ValueError(f"{source}: negative time t={t[i]} at event {i}; times are "
                         f"microseconds >= 0")
    if n > 1 and np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0))
        raise ValueError(f"{source}: t is not non-decreasing: event {i + 1} t={t[i + 1]} comes "
                         f"after event {i} t={t[i]}; sort the events by time")
    out = np.empty(n, EVENT_DTYPE)
    for f in _FIELDS:
        out[f] = values[f]
    return out


def read_events(path: str | os.PathLike, sensor: tuple) -> np.ndarray:
    """Read events from ``.npy`` or ``.npz`` and return a checked :data:`EVENT_DTYPE` array.

    Accepted: a ``.npy`` holding a structured array with fields ``t``, ``x``, ``y``, ``p`` or an
    ``(N, 4)`` integer array of columns ``t, x, y, p``; a ``.npz`` holding 1-D arrays ``t``,
    ``x``, ``y``, ``p`` of one length (other keys ignored). ``t`` in microseconds, ``p`` 1 ON /
    0 OFF, ``sensor`` ``(H, W)``. Files are read with ``allow_pickle=False``: no code runs.
    Anything else raises ``ValueError`` naming the file and the problem (see
    :func:`check_events`); a missing file raises ``FileNotFoundError``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"event file {path} does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: unsupported event file type {suffix or '(none)'!r}; "
                         f"expected .npy or .npz")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (object arrays, bad header), OSError, EOFError, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{path}: cannot be read as {suffix} without pickle: {reason}") from exc
    if suffix == ".npz":
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an .npz archive")
        with loaded:
            missing = [f for f in _FIELDS if f not in loaded.files]
            if missing:
                raise ValueError(f"{path}: missing field(s) {missing}; an .npz of events needs "
                                 f"arrays {list(_FIELDS)} (found {sorted(loaded.files)})")
            try:
                columns = {f: loaded[f] for f in _FIELDS}
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise ValueError(f"{path}: cannot be read without pickle: {reason}") from exc
        shapes = {f: c.shape for f, c in columns.items()}
        if any(len(s) != 1 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise ValueError(f"{path}: fields must be 1-D arrays of one length, found shapes "
                             f"{shapes}")
        for f, c in columns.items():
            if c.dtype.names is not None or c.dtype.kind not in "biuf":
                raise ValueError(f"{path}: {f} has dtype {c.dtype}, expected integers")
        arr = np.empty(len(columns["t"]), [(f, columns[f].dtype) for f in _FIELDS])
        for f in _FIELDS:
            arr[f] = columns[f]
    else:
        arr = loaded
        if arr.dtype.names is None and arr.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array of dtype {arr.dtype}, expected integers or a "
                             f"structured array with fields t, x, y, p")
    return check_events(arr, sensor, source=path)
