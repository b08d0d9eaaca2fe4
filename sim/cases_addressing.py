"""Seeded stimulus and the reference of the spike addressing unit (``hw.addressing``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FIRING_RATES", "AddressingCase", "addressing_case", "addressing_expected",
           "spike_map", "pack_words"]

#: Firing rates every spike-driven unit is tested at.
FIRING_RATES = (0.0, 0.01, 0.1, 0.5, 1.0)


def spike_map(rng: np.random.Generator, shape, rate: float) -> np.ndarray:
    """Draw a binary spike map (uint8) where each bit is set with probability ``rate``."""
    if rate >= 1.0:
        return np.ones(shape, dtype=np.uint8)
    return (rng.random(shape) < rate).astype(np.uint8)


def pack_words(bits: np.ndarray) -> list[int]:
    """Pack the last axis of a 0/1 array into integers, element 0 in bit 0."""
    bits = np.asarray(bits, dtype=np.int64).reshape(-1, np.shape(bits)[-1])
    weights = [1 << b for b in range(bits.shape[1])]
    return [int(sum(w for w, bit in zip(weights, row) if bit)) for row in bits]


@dataclass(frozen=True)
class AddressingCase:
    """Input beats of one or more frames: ``words[k]``, ``last[k]`` and ``tags[k]``."""

    width: int
    words: list[int]
    last: list[int]
    tags: list[int]

    def payload(self, index: int, *, tagged: bool) -> dict:
        """Return beat ``index`` as a dict for ``addressing_input_layout(...).const``."""
        fields = {"bits": self.words[index], "last": self.last[index]}
        if tagged:
            fields["tag"] = self.tags[index]
        return fields


def addressing_case(rng: np.random.Generator, *, width: int, frames: int, words_per_frame,
                    rate: float, tag_bits: int = 8) -> AddressingCase:
    """Draw ``frames`` frames of spike words at firing ``rate``.

    ``words_per_frame`` is an int or a ``(low, high)`` range drawn per frame.
    """
    words, last, tags = [], [], []
    for _ in range(frames):
        if isinstance(words_per_frame, int):
            count = words_per_frame
        else:
            count = int(rng.integers(words_per_frame[0], words_per_frame[1], endpoint=True))
        bits = spike_map(rng, (count, width), rate)
        words += pack_words(bits)
        last += [0] * (count - 1) + [1]
        tags += [int(t) for t in rng.integers(0, 1 << tag_bits, size=count)]
    return AddressingCase(width=width, words=words, last=last, tags=tags)


def addressing_expected(case: AddressingCase, ports: int) -> list[dict]:
    """Return the output beats the contract of ``hw.addressing`` prescribes, as dicts.

    Each dict has ``count``, ``address`` and ``column`` (lists of ``ports``, zero-filled),
    ``word``, ``last`` and ``tag``.
    """
    beats = []
    word_index = 0
    for bits, last, tag in zip(case.words, case.last, case.tags):
        columns = [b for b in range(case.width) if (bits >> b) & 1]
        chunks = [columns[k:k + ports] for k in range(0, len(columns), ports)]
        if not chunks and last:
            chunks = [[]]
        for number, chunk in enumerate(chunks):
            pad = [0] * (ports - len(chunk))
            beats.append({
                "count": len(chunk),
                "address": [word_index * case.width + c for c in chunk] + pad,
                "column": chunk + pad,
                "word": word_index,
                "last": int(bool(last) and number == len(chunks) - 1),
                "tag": tag,
            })
        word_index = 0 if last else word_index + 1
    return beats
