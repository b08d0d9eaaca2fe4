"""Seeded stimulus and references shared by the Amaranth-simulator and cocotb testbenches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.intops import lif_step

__all__ = ["LIFCase", "lif_case", "lif_expected"]


@dataclass(frozen=True)
class LIFCase:
    """Beats for a LIF unit: ``x[beat, lane]``, ``first[beat]`` and ``threshold[beat, lane]``."""

    x: np.ndarray
    first: np.ndarray
    threshold: np.ndarray

    @property
    def beats(self) -> int:
        return int(self.x.shape[0])

    def payload(self, beat: int, *, streamed_threshold: bool) -> dict:
        """Return the input payload of one beat as a dict for ``lif_input_layout(...).const``."""
        fields = {"x": [int(v) for v in self.x[beat]], "first": int(self.first[beat])}
        if streamed_threshold:
            fields["threshold"] = [int(v) for v in self.threshold[beat]]
        return fields


def lif_case(rng: np.random.Generator, *, lanes: int, input_width: int, beats: int,
             threshold=None, steps_per_sample: int | None = None) -> LIFCase:
    """Draw LIF stimulus with edge values mixed in.

    Inputs are uniform over the signed range with about a fifth of them replaced by the extremes
    (most negative, most positive, 0, +-1) and values next to the threshold. ``threshold`` fixes
    the per-lane thresholds (int or sequence); ``None`` draws a fresh threshold per beat and lane
    in ``[1, 2**input_width - 1]``. Samples last ``steps_per_sample`` beats (random 1..4 if
    ``None``).
    """
    low, high = -(1 << (input_width - 1)), (1 << (input_width - 1)) - 1
    if threshold is None:
        thresholds = rng.integers(1, (1 << input_width), size=(beats, lanes), endpoint=False)
    else:
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.int64), (beats, lanes)).copy()
    x = rng.integers(low, high, size=(beats, lanes), endpoint=True)
    edges = np.array([low, high, 0, 1, -1])
    pick = rng.random((beats, lanes))
    x = np.where(pick < 0.1, rng.choice(edges, size=(beats, lanes)), x)
    near = np.clip(thresholds // 2 + rng.integers(-1, 2, size=(beats, lanes)), low, high)
    x = np.where((pick >= 0.1) & (pick < 0.2), near, x)
    first = np.zeros(beats, dtype=np.int64)
    beat = 0
    while beat < beats:
        first[beat] = 1
        beat += steps_per_sample if steps_per_sample else int(rng.integers(1, 5))
    return LIFCase(x=x.astype(np.int64), first=first, threshold=thresholds.astype(np.int64))


def lif_expected(case: LIFCase) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference ``(spikes[beat, lane], membrane[beat, lane])`` of a case."""
    lanes = case.x.shape[1]
    membrane = np.zeros(lanes, dtype=np.int64)
    spikes_out = np.zeros_like(case.x)
    membrane_out = np.zeros_like(case.x)
    for beat in range(case.beats):
        if case.first[beat]:
            membrane = np.zeros(lanes, dtype=np.int64)
        spikes, membrane = lif_step(membrane, case.x[beat], case.threshold[beat])
        spikes_out[beat] = spikes
        membrane_out[beat] = membrane
    return spikes_out, membrane_out
