"""Stimulus and the reference of the memory-backed LIF array (``hw.lif_array.LIFArray``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.params import ceil_div
from quant.intops import lif_step

__all__ = ["LIFArrayCase", "lif_array_case", "lif_array_expected"]


@dataclass(frozen=True)
class LIFArrayCase:
    """Beats: ``x[beat, lane]``, ``address[beat]``, ``group[beat]``, ``first[beat]``; and the
    per-channel ``thresholds``."""

    x: np.ndarray
    address: np.ndarray
    group: np.ndarray
    first: np.ndarray
    thresholds: np.ndarray

    @property
    def beats(self) -> int:
        return int(self.x.shape[0])

    def payload(self, beat: int) -> dict:
        """Return one beat as a dict for ``lif_array_input_layout(...).const``."""
        return {"x": [int(v) for v in self.x[beat]], "address": int(self.address[beat]),
                "group": int(self.group[beat]), "first": int(self.first[beat])}


def lif_array_case(rng: np.random.Generator, *, lanes: int, words: int, channels: int,
                   input_width: int, steps: int, repeats: float = 0.3) -> LIFArrayCase:
    """Draw ``steps`` time steps over all ``words`` membrane words, plus random revisits.

    Each time step visits every word once (word ``w`` uses threshold group ``w % groups``, as a
    layer's read-out order does), with the first step of the case flagged ``first``; a fraction
    ``repeats`` of extra beats re-address the word just visited (back-to-back updates).
    Thresholds are drawn per channel in ``[1, 2**input_width - 1]``.
    """
    groups = ceil_div(channels, lanes)
    thresholds = rng.integers(1, 1 << input_width, size=channels)
    low, high = -(1 << (input_width - 1)), (1 << (input_width - 1)) - 1
    address, first = [], []
    for step in range(steps):
        for word in range(words):
            address.append(word)
            first.append(int(step == 0))
            while rng.random() < repeats:
                address.append(word)
                first.append(0)
    beats = len(address)
    x = rng.integers(low, high, size=(beats, lanes), endpoint=True)
    edges = np.array([low, high, 0, 1, -1])
    x = np.where(rng.random((beats, lanes)) < 0.15, rng.choice(edges, size=(beats, lanes)), x)
    address = np.array(address, dtype=np.int64)
    return LIFArrayCase(x=x.astype(np.int64), address=address, group=address % groups,
                        first=np.array(first, dtype=np.int64), thresholds=thresholds)


def lif_array_expected(case: LIFArrayCase, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference ``(spikes[beat, lane], membrane[beat, lane])``."""
    padded = np.zeros(ceil_div(len(case.thresholds), lanes) * lanes, dtype=np.int64)
    padded[:len(case.thresholds)] = case.thresholds
    memory: dict[int, np.ndarray] = {}
    spikes_out = np.zeros_like(case.x)
    membrane_out = np.zeros_like(case.x)
    for beat in range(case.beats):
        address = int(case.address[beat])
        old = np.zeros(lanes, dtype=np.int64) if case.first[beat] else memory.get(
            address, np.zeros(lanes, dtype=np.int64))
        group = int(case.group[beat])
        spikes, memory[address] = lif_step(old, case.x[beat],
                                           padded[group * lanes:(group + 1) * lanes])
        spikes_out[beat] = spikes
        membrane_out[beat] = memory[address]
    return spikes_out, membrane_out
