"""Synaptic layers as integer words: kinds of layer, widths, bounds, packing and operation counts.

Shared by the engines (``hw.accumulator.SynapseEngine``, ``hw.progengine``), the stem
(``hw.stem``) and the shared network's plan (``hw.plan``); nothing here builds hardware.

* :class:`SynapseKind` and :func:`canonical_weight`: a layer's kind and its weight in quant's
  canonical shape, ``[Cout, Cin, k, k]`` (depthwise ``[C, 1, k, k]``; linear ``k = 1``).
* :func:`signed_width` and :func:`accumulator_bound`: the fewest bits a value range needs, and the
  range any partial sum of a layer can reach (so an accumulator never wraps).
* :func:`pack_lanes`: signed integers into one word, element 0 in the least significant bits.
* :func:`pack_weights`: the ``SynapseEngine``'s weight memory. Word address
  ``((c * k + ky) * k + kx) * G + g`` for input channel ``c``, tap ``(ky, kx)`` and output group
  ``g`` of ``G = ceil(Cout / lanes)`` (linear: ``k = 1``); each word holds ``lanes`` signed
  ``weight_width``-bit weights of output channels ``g * lanes + l``, lane 0 in the least
  significant bits, lanes past ``Cout`` zero. Depthwise: address ``(c * k + ky) * k + kx``, one
  word per tap, weight in lane ``c % lanes`` and zeros elsewhere.
* :func:`synapse_output_layout`: the payload of an engine's (and the stem's) output stream.
* :func:`layer_sops`: the synaptic operations (weight additions) a spike map causes in a layer.
"""

from __future__ import annotations

import enum

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hw.params import bits_for, ceil_div

__all__ = ["SynapseKind", "canonical_weight", "signed_width", "accumulator_bound", "pack_lanes",
           "pack_weights", "layer_sops", "synapse_output_layout"]


class SynapseKind(enum.Enum):
    """Kinds of layer the synapse engine computes."""

    LINEAR = "linear"
    CONV = "conv"
    DEPTHWISE = "depthwise"


def signed_width(low: int, high: int) -> int:
    """Return the fewest two's complement bits holding every integer in ``[low, high]``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high < (1 << (bits - 1))):
        bits += 1
    return bits


def canonical_weight(kind: SynapseKind, weight) -> np.ndarray:
    """Return ``weight`` as int64 ``[Cout, Cin, k, k]`` (depthwise: ``[C, 1, k, k]``)."""
    array = np.asarray(weight)
    if array.dtype.kind not in "biu":
        raise TypeError(f"weight must be an integer array, not dtype {array.dtype}")
    array = array.astype(np.int64)
    if kind is SynapseKind.LINEAR:
        if array.ndim == 4 and array.shape[2:] == (1, 1):
            array = array[:, :, 0, 0]
        if array.ndim != 2:
            raise ValueError(f"weight of a linear layer must be [Cout, Cin] (or [Cout, Cin, 1, 1]),"
                             f" not shape {array.shape}")
        return array[:, :, None, None]
    if kind is SynapseKind.DEPTHWISE and array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[2] != array.shape[3]:
        raise ValueError(f"weight of a {kind.value} layer must be a square kernel "
                         f"[Cout, Cin, k, k], not shape {array.shape}")
    if kind is SynapseKind.DEPTHWISE and array.shape[1] != 1:
        raise ValueError(f"weight of a depthwise layer must be [C, k, k] or [C, 1, k, k], "
                         f"not shape {array.shape}")
    return array


def accumulator_bound(weight: np.ndarray, bias: np.ndarray) -> tuple[int, int]:
    """Return the lowest and highest value any accumulator can hold, over every spike map.

    Every partial sum of output channel ``o`` is ``bias[o]`` plus a subset of its weights (a spike
    adds each weight at most once to one output), so it lies in
    ``[bias[o] + sum of its negative weights, bias[o] + sum of its positive weights]``; both ends
    are reached. This is the same bound as quant's ``IntLayer.acc_low``/``acc_high``.
    """
    flat = weight.reshape(weight.shape[0], -1)
    low = bias + np.minimum(flat, 0).sum(axis=1)
    high = bias + np.maximum(flat, 0).sum(axis=1)
    return min(0, int(low.min())), max(0, int(high.max()))


def pack_lanes(values, width: int) -> int:
    """Pack signed integers into one word, element 0 in the least significant ``width`` bits."""
    word = 0
    mask = (1 << width) - 1
    for lane, value in enumerate(values):
        word |= (int(value) & mask) << (lane * width)
    return word


def pack_weights(kind, weight, *, lanes: int, weight_width: int) -> list[int]:
    """Return the weight memory words of a layer in the ``SynapseEngine``'s layout (module
    docstring).

    Parameters
    ----------
    kind : SynapseKind or str
    weight : integer array
        quant's canonical weight: linear ``[Cout, Cin]`` (or ``[Cout, Cin, 1, 1]``), conv
        ``[Cout, Cin, k, k]``, depthwise ``[C, k, k]`` or ``[C, 1, k, k]``.
    lanes, weight_width : int
        Lanes per word and signed bits per weight.
    """
    kind = SynapseKind(kind)
    weight = canonical_weight(kind, weight)
    cout, cin, kernel, _ = weight.shape
    groups = ceil_div(cout, lanes)
    padded = np.zeros((groups * lanes, cin, kernel, kernel), dtype=np.int64)
    padded[:cout] = weight
    words = []
    if kind is SynapseKind.DEPTHWISE:
        for c in range(cout):
            for ky in range(kernel):
                for kx in range(kernel):
                    values = [0] * lanes
                    values[c % lanes] = weight[c, 0, ky, kx]
                    words.append(pack_lanes(values, weight_width))
        return words
    for c in range(cin):
        for ky in range(kernel):
            for kx in range(kernel):
                for g in range(groups):
                    words.append(pack_lanes(padded[g * lanes:(g + 1) * lanes, c, ky, kx],
                                            weight_width))
    return words


def layer_sops(kind, weight_shape, spikes, *, stride: int = 1, padding: int = 0) -> int:
    """Return the synaptic operations (weight additions) a spike map causes in a layer.

    ``spikes`` is ``[N, Cin]`` for linear and ``[C, H, W]`` otherwise; ``weight_shape`` is the
    canonical shape (module docstring).
    """
    kind = SynapseKind(kind)
    spikes = np.asarray(spikes, dtype=np.int64)
    cout = weight_shape[0]
    if kind is SynapseKind.LINEAR:
        return int(spikes.sum()) * cout
    kernel = weight_shape[-1]
    _, height, width = spikes.shape
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1

    def taps(size, out):
        t = np.arange(size) + padding
        count = np.zeros(size, dtype=np.int64)
        for k in range(kernel):
            o, rem = np.divmod(t - k, stride)
            count += (rem == 0) & (o >= 0) & (o < out)
        return count

    per_pixel = np.outer(taps(height, out_h), taps(width, out_w))
    per_spike = (spikes * per_pixel[None]).sum()
    return int(per_spike) * (1 if kind is SynapseKind.DEPTHWISE else cout)


def synapse_output_layout(lanes: int, accumulator_width: int, positions: int,
                          groups: int) -> data.StructLayout:
    """Return the payload layout of the engine's output stream.

    Fields, first in the least significant bits: ``values`` (``lanes`` signed sums of output
    channels ``group * lanes + l``), ``position`` (output pixel ``oy * Wo + ox``, or token),
    ``group`` and ``last`` (1 on the frame's final beat).
    """
    return data.StructLayout({
        "values": data.ArrayLayout(signed(accumulator_width), lanes),
        "position": unsigned(bits_for(positions)),
        "group": unsigned(bits_for(groups)),
        "last": 1,
    })
