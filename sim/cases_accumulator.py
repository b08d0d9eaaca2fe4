"""Stimulus, references and packing helpers for the synapse engine (``hw.accumulator``)."""

from __future__ import annotations

import numpy as np

from hw.packing import SynapseKind, canonical_weight
from quant.intops import conv2d_spikes, depthwise_conv2d_spikes, linear_spikes
from sim.cases_addressing import pack_words

__all__ = ["engine_words", "engine_reference", "reference_beats", "beats_to_output",
           "random_layer", "spike_shape", "write_engine_case", "load_engine_case"]


def spike_shape(dut) -> tuple[int, ...]:
    """Return the shape of one input spike map of an engine (``[N, Cin]`` or ``[C, H, W]``)."""
    if dut.kind is SynapseKind.LINEAR:
        return (dut.height, dut.in_channels)
    return (dut.in_channels, dut.height, dut.width)


def engine_words(kind, spikes) -> tuple[list[int], list[int]]:
    """Return the input words and ``last`` flags of one frame in the engine's order."""
    kind = SynapseKind(kind)
    spikes = np.asarray(spikes)
    rows = spikes if kind is SynapseKind.LINEAR else spikes.reshape(-1, spikes.shape[-1])
    words = pack_words(rows)
    return words, [0] * (len(words) - 1) + [1]


def engine_reference(dut, weight, bias, spikes) -> np.ndarray:
    """Return quant.intops' result for one frame: ``[N, Cout]`` or ``[Cout, Ho, Wo]``."""
    if dut.kind is SynapseKind.LINEAR:
        return linear_spikes(spikes, canonical_weight(dut.kind, weight)[:, :, 0, 0], bias)
    if dut.kind is SynapseKind.CONV:
        return conv2d_spikes(spikes, weight, bias, stride=dut.stride, padding=dut.padding)
    return depthwise_conv2d_spikes(spikes, weight, bias, stride=dut.stride, padding=dut.padding)


def beats_to_output(dut, values: list[list[int]]) -> np.ndarray:
    """Arrange read-out beats (``lanes`` values each, bank order) as the reference's array."""
    lanes, groups, cout = dut.lanes, dut.groups, dut.out_channels
    flat = np.asarray(values, dtype=np.int64).reshape(dut.positions, groups * lanes)[:, :cout]
    if dut.kind is SynapseKind.LINEAR:
        return flat
    return flat.T.reshape(cout, dut.out_height, dut.out_width)


def reference_beats(dut, reference: np.ndarray) -> list[list[int]]:
    """Arrange a reference array as the read-out beats it should produce (padding lanes 0)."""
    lanes, groups, cout = dut.lanes, dut.groups, dut.out_channels
    flat = reference if dut.kind is SynapseKind.LINEAR else reference.reshape(cout, -1).T
    padded = np.zeros((dut.positions, groups * lanes), dtype=np.int64)
    padded[:, :cout] = flat
    return padded.reshape(-1, lanes).tolist()


def random_layer(rng: np.random.Generator, kind, *, cin: int, cout: int, kernel: int = 1,
                 weight_bits: int = 8, bias_bits: int = 10):
    """Draw integer weights (quant's canonical shape) and bias with the extremes mixed in."""
    kind = SynapseKind(kind)
    low, high = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if kind is SynapseKind.LINEAR:
        shape = (cout, cin)
    elif kind is SynapseKind.CONV:
        shape = (cout, cin, kernel, kernel)
    else:
        shape = (cout, kernel, kernel)
    weight = rng.integers(low, high, size=shape, endpoint=True)
    pick = rng.random(shape)
    weight = np.where(pick < 0.05, low, np.where(pick > 0.95, high, weight))
    bias = rng.integers(-(1 << (bias_bits - 1)), 1 << (bias_bits - 1), size=cout)
    return weight.astype(np.int64), bias.astype(np.int64)


def write_engine_case(path, *, name: str, seed, kind, weight, bias, lanes: int, height: int,
                      width: int = 1, stride: int = 1, padding: int = 0, frames, rates) -> None:
    """Save a layer and its spike frames for the cocotb testbench (``sim.tb.accumulator``)."""
    np.savez_compressed(
        path, name=name, seed=str(seed), kind=SynapseKind(kind).value, weight=weight, bias=bias,
        geometry=np.array([lanes, height, width, stride, padding]),
        frames=np.asarray(frames, dtype=np.uint8), rates=np.asarray(rates, dtype=np.float64))


def load_engine_case(path):
    """Load what :func:`write_engine_case` saved; return ``(case dict, SynapseEngine)``.

    The engine object is only used for its parameters and layouts; it is elaborated once here
    (``Fragment.get``, public API) only so that Amaranth counts it as used and does not warn
    ``UnusedElaboratable`` when it is collected.
    """
    from amaranth.hdl import Fragment  # noqa: PLC0415

    from hw.accumulator import SynapseEngine  # noqa: PLC0415

    with np.load(path) as archive:
        case = {key: archive[key] for key in archive.files}
    case["name"] = str(case["name"])
    case["seed"] = str(case["seed"])
    lanes, height, width, stride, padding = (int(v) for v in case["geometry"])
    engine = SynapseEngine(kind=str(case["kind"]), weight=case["weight"], bias=case["bias"],
                           lanes=lanes, height=height, width=width, stride=stride,
                           padding=padding)
    Fragment.get(engine, None)
    return case, engine
