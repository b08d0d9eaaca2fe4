"""Cases of the band layer (``hw.bandlayer``): a random conv + LIF layer, its input maps over
several time steps, the integer model's output maps, and where each map lies in memory.

Shared by the Amaranth-simulator test (``tests/test_bandlayer.py``) and the cocotb testbench on
Verilator and Icarus (``sim/tb/bandlayer.py``, ``tests/test_bandlayer_verilator.py``).
"""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np

from hw.bandlayer import band_layer_reference
from hw.progengine_config import LayerConfig, layer_config
from hw.rowreader import map_image
from quant.intops import conv2d_spikes
from sim.cases_accumulator import random_layer
from sim.cases_addressing import spike_map

__all__ = ["BandCase", "band_case", "CASES", "StreamCase", "stream_case", "STREAM_CASES",
           "StreamLIFCase", "stream_lif_case", "STREAM_LIF_CASES", "ChainCase", "chain_case",
           "CHAIN_CASES", "chain_weights"]

#: ``(cin, cout, kernel, stride, padding, height, width), lanes, band_rows, T``
CASES = {
    "3x3": ((5, 6, 3, 1, 1, 10, 9), 4, 3, 3),     # halos of one row, 4 bands, G = 2
    "7x7s2": ((3, 5, 7, 2, 3, 12, 11), 4, 2, 2),  # halos of three rows, padding 3
    "1x1wide": ((4, 8, 1, 1, 0, 7, 70), 8, 4, 1),  # rows of two 64-bit beats
}


@dataclasses.dataclass
class BandCase:
    layer: LayerConfig
    band_rows: int
    weight: np.ndarray
    bias: np.ndarray
    thresholds: list[int]
    inputs: np.ndarray        # [T, Cin, H, W]
    want: np.ndarray          # [T, Cout, OH, OW]
    in_at: list[int]          # byte address of each step's input map
    out_at: list[int]         # byte address of each step's output map
    memory: bytes             # the memory before the run: inputs in place, garbage elsewhere

    @property
    def steps(self) -> int:
        return len(self.inputs)

    @property
    def out_size(self) -> int:
        return len(map_image(self.want[0]))


def band_case(name, rate: float = 0.35) -> BandCase:
    """The named case of :data:`CASES`, or a case given as ``(spec, lanes, band_rows, T)``
    like its values (or as that tuple's JSON text), drawn from a seed of its own."""
    if isinstance(name, str) and name in CASES:
        name = CASES[name]
    elif isinstance(name, str):
        name = json.loads(name)
    spec, lanes, band_rows, steps = name
    spec = tuple(spec)
    cin, cout, kernel, stride, padding, height, width = spec
    rng = np.random.default_rng(sum(spec) + steps)
    layer = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                         padding=padding, height=height, width=width, lanes=lanes)
    weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel)
    inputs = np.stack([spike_map(rng, (cin, height, width), 0.3) for _ in range(steps)])
    # thresholds near the (1 - rate) quantile of the first step's inputs, so that the layer
    # both fires and stays silent
    x = conv2d_spikes(inputs[0], weight, bias, stride=stride, padding=padding)
    q = np.quantile(x.reshape(cout, -1), 1 - rate, axis=1)
    thresholds = [max(1, int(v)) + int(rng.integers(0, 3)) for v in q]
    want = band_layer_reference(inputs, weight, bias, thresholds, stride=stride,
                                padding=padding)
    in_size = len(map_image(inputs[0]))
    out_size = len(map_image(want[0]))
    in_at = [0x1000 + t * in_size for t in range(steps)]
    out_at = [0x1000 + steps * in_size + 0x40 + t * out_size for t in range(steps)]
    garbage = random.Random(7)
    memory = bytearray(garbage.getrandbits(8) for _ in range(out_at[-1] + out_size + 0x100))
    for t in range(steps):
        memory[in_at[t]:in_at[t] + in_size] = map_image(inputs[t])
    return BandCase(layer, band_rows, weight, bias, thresholds, inputs, want, in_at, out_at,
                    bytes(memory))


#: ``(cin, cout, kernel, stride, padding, height, width), lanes, band_rows, stream_bits``
STREAM_CASES = {
    "3x3": ((5, 6, 3, 1, 1, 9, 8), 4, 3, 12),       # G = 2, 48-bit words: one beat
    "7x7s2": ((3, 5, 7, 2, 3, 12, 10), 4, 2, 20),   # 80-bit words: two beats
}


@dataclasses.dataclass
class StreamCase:
    layer: LayerConfig
    band_rows: int
    bits: int
    weight: np.ndarray
    bias: np.ndarray
    shifts: list[int]
    maps: list            # two input spike maps: the first begins the stream, the second adds
    want: list            # the stream after each
    in_at: list[int]
    stream_at: int
    memory: bytes         # inputs in place, garbage elsewhere (the stream's bytes too)

    @property
    def size(self) -> int:
        from hw.bandstream import stream_image

        return len(stream_image(self.want[0], self.layer.lanes, self.bits))


def stream_case(name: str) -> StreamCase:
    """The named case of :data:`STREAM_CASES` (or the JSON text of a tuple like its values): a
    conv that begins a residual stream with one input map and adds into it with another, the
    stream's values after each."""
    from hw.bandstream import band_stream_reference, stream_image

    spec, lanes, band_rows, bits = STREAM_CASES[name] if name in STREAM_CASES else json.loads(name)
    spec = tuple(spec)
    cin, cout, kernel, stride, padding, height, width = spec
    rng = np.random.default_rng(sum(spec))
    layer = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                         padding=padding, height=height, width=width, lanes=lanes)
    weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel)
    shifts = [int(s) for s in rng.integers(0, 4, size=cout)]
    maps = [spike_map(rng, (cin, height, width), 0.3) for _ in range(2)]
    zero = np.zeros((cout, layer.out_height, layer.out_width), dtype=np.int64)
    begun = band_stream_reference(zero, maps[0], weight, bias, shifts, stride=stride,
                                  padding=padding, add=False, bits=bits)
    added = band_stream_reference(begun, maps[1], weight, bias, shifts, stride=stride,
                                  padding=padding, add=True, bits=bits)
    size = len(stream_image(zero, lanes, bits))
    map_size = len(map_image(maps[0]))
    in_at = [0x1000, 0x1000 + map_size]
    stream_at = 0x1000 + 2 * map_size + 0x40      # after both maps
    garbage = random.Random(3)
    memory = bytearray(garbage.getrandbits(8) for _ in range(stream_at + size + 0x100))
    for at, spikes in zip(in_at, maps):
        memory[at:at + len(map_image(spikes))] = map_image(spikes)
    return StreamCase(layer, band_rows, bits, weight, bias, shifts, maps, [begun, added], in_at,
                      stream_at, bytes(memory))


#: ``(channels, height, width), lanes, stream_bits, band_rows, T``
STREAM_LIF_CASES = {
    "G3": ((10, 9, 8), 4, 12, 3, 3),       # three groups, three time steps
    "wide": ((5, 7, 70), 8, 20, 2, 2),     # rows of two beats
}


@dataclasses.dataclass
class StreamLIFCase:
    channels: int
    height: int
    width: int
    lanes: int
    bits: int
    band_rows: int
    thresholds: list[int]
    streams: np.ndarray       # [T, C, H, W]
    want: np.ndarray          # spike maps [T, C, H, W]
    stream_at: list[int]
    out_at: list[int]
    memory: bytes


def stream_lif_case(name: str) -> StreamLIFCase:
    """The named case of :data:`STREAM_LIF_CASES`: random streams over time steps, thresholds,
    the LIF's spike maps (``hw.bandstream.stream_lif_reference``) and the memory layout."""
    from hw.bandstream import stream_image, stream_lif_reference

    shape, lanes, bits, band_rows, steps = STREAM_LIF_CASES[name]
    channels, height, width = shape
    rng = np.random.default_rng(sum(shape) + steps)
    streams = rng.integers(-(1 << (bits - 2)), 1 << (bits - 2), size=(steps, *shape))
    thresholds = [int(t) for t in rng.integers(1, 1 << (bits - 3), size=channels)]
    want = stream_lif_reference(streams, thresholds)
    size = len(stream_image(streams[0], lanes, bits))
    out_size = len(map_image(want[0]))
    stream_at = [0x1000 + t * size for t in range(steps)]
    out_at = [0x1000 + steps * size + 0x40 + t * out_size for t in range(steps)]
    garbage = random.Random(11)
    memory = bytearray(garbage.getrandbits(8) for _ in range(out_at[-1] + out_size + 0x100))
    for t in range(steps):
        memory[stream_at[t]:stream_at[t] + size] = stream_image(streams[t], lanes, bits)
    return StreamLIFCase(channels, height, width, lanes, bits, band_rows, thresholds, streams,
                         want, stream_at, out_at, bytes(memory))


#: Chains of conv + LIF layers (``hw.bandchain``): ``lanes, (height, width, cin), layers,
#: band_rows, steps, max_steps`` and optionally ``weight_words`` (the weight RAM's depth, for
#: weights over AXI4), each layer ``(cout, kernel, stride, padding)``.
CHAIN_CASES = {
    # four layers: stride 2, a 1x1, maps 1..3 in scratch slots 0, 1, 0; two steps of three
    "four": (4, (10, 9, 5), ((6, 3, 1, 1), (8, 3, 2, 1), (5, 1, 1, 0), (4, 3, 1, 1)),
             (3, 2, 5, 2), 2, 3),
    # two layers, one band each, rows of two 64-bit beats, one step
    "wide": (8, (4, 70, 3), ((8, 3, 1, 1), (6, 1, 1, 0)), (4, 4), 1, 1),
    # two small layers in two and one bands, every step of the layout: the error-response tests
    "tiny": (4, (4, 6, 3), ((4, 3, 1, 1), (5, 1, 1, 0)), (2, 4), 3, 3),
    # one layer alone (its weights are loaded before its first band too)
    "one": (4, (4, 6, 3), ((4, 3, 1, 1),), (3,), 1, 1),
    # a weight RAM of 160 words (weights over AXI4 only): layer 0 (3 groups, 192 words) runs
    # in passes of 8 and 2 output channels, layer 1 (2 groups, 320 words) in passes of 4 and 2
    "split": (4, (7, 6, 3), ((10, 3, 1, 1), (6, 3, 2, 1)), (3, 2), 2, 2, 160),
    # rows of three 64-bit beats (150 columns): a 1x1 then a 3x3 (the cycle model's test, with
    # sparse inputs too)
    "wide3": (4, (3, 150, 2), ((4, 1, 1, 0), (3, 3, 1, 1)), (2, 3), 2, 2),
}


@dataclasses.dataclass
class ChainCase:
    layers: list              # hw.bandlayer.ConvLIF, in order
    band_rows: list[int]
    steps: int
    max_steps: int
    inputs: np.ndarray        # [T, Cin, H, W]
    want: list                # every layer's output maps [T, C, H, W]
    input_base: int
    scratch_base: int
    output_base: int
    memory: bytes             # inputs in place, garbage elsewhere
    weight_words: int | None = None   # the chain's weight RAM budget (BandChain weight_words)


def chain_case(name, rate: float = 0.35, density: float = 0.3) -> ChainCase:
    """The named case of :data:`CHAIN_CASES` (or its tuple, or that tuple's JSON text), drawn
    from a seed of its own: input spikes at ``density``, random weights and biases, thresholds
    near each layer's ``1 - rate`` quantile of its first step's sums, so that every layer fires
    and stays silent."""
    from hw.bandchain import chain_layout
    from hw.bandlayer import ConvLIF

    if isinstance(name, str) and name in CHAIN_CASES:
        name = CHAIN_CASES[name]
    elif isinstance(name, str):
        name = json.loads(name)
    lanes, (height, width, cin), specs, band_rows, steps, max_steps, *budget = name
    rng = np.random.default_rng(height * 1000 + width * 10 + len(specs) + steps)
    inputs = np.stack([spike_map(rng, (cin, height, width), density) for _ in range(steps)])
    layers, want, spikes = [], [], inputs
    for cout, kernel, stride, padding in specs:
        layer = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                             padding=padding, height=height, width=width, lanes=lanes)
        weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel)
        x = conv2d_spikes(spikes[0], weight, bias, stride=stride, padding=padding)
        q = np.quantile(x.reshape(cout, -1), 1 - rate, axis=1)
        thresholds = [max(1, int(v)) + int(rng.integers(0, 3)) for v in q]
        spikes = band_layer_reference(spikes, weight, bias, thresholds, stride=stride,
                                      padding=padding)
        layers.append(ConvLIF(layer, weight, bias, thresholds))
        want.append(spikes)
        cin, height, width = cout, layer.out_height, layer.out_width
    layout = chain_layout(layers, max_steps=max_steps)
    in_size = layout["maps"][0][2]
    input_base = 0x1000
    scratch_base = input_base + max_steps * in_size + 0x80
    output_base = scratch_base + layout["scratch_bytes"] + 0x40
    end = output_base + max_steps * layout["maps"][-1][2] + 0x100
    garbage = random.Random(11)
    memory = bytearray(garbage.getrandbits(8) for _ in range(end))
    for t in range(steps):
        memory[input_base + t * in_size:input_base + (t + 1) * in_size] = map_image(inputs[t])
    return ChainCase(layers, list(band_rows), steps, max_steps, inputs, want, input_base,
                     scratch_base, output_base, bytes(memory), *budget)


def chain_weights(case: ChainCase, *, weight_width: int = 8,
                  data_width: int = 64) -> tuple[bytes, int]:
    """``case``'s memory with the chain's weight image (``hw.bandlayer.weight_image`` of its
    passes, ``hw.bandchain.chain_passes``) after it, from a 256-byte boundary, for a chain built
    with ``weights="axi"``; and that base."""
    from hw.bandchain import chain_passes
    from hw.bandlayer import weight_image

    passes = chain_passes(case.layers, weight_words=case.weight_words)
    image, _ = weight_image([p.spec for p in passes], weight_width=weight_width,
                            data_width=data_width)
    base = (len(case.memory) + 0xFF) & ~0xFF
    return case.memory + bytes(base - len(case.memory)) + image + bytes(0x40), base


def check_chain_memory(case: ChainCase, got: bytes, original: bytes) -> None:
    """Raise ``AssertionError`` unless the memory ``got`` after a run of ``case``'s chain (from
    ``original``, its weight image after it or not) holds the integer model's output map and the
    two intermediate maps still in the scratch slots (``case.want``), and every byte outside
    the maps the run writes unchanged."""
    from hw.bandchain import chain_layout

    layout = chain_layout(case.layers, max_steps=case.max_steps)
    bases = {"input": case.input_base, "scratch": case.scratch_base,
             "output": case.output_base}
    written = bytearray(len(original))     # 1: a byte some map of the run owns
    count = len(case.layers)
    for index in range(1, count + 1):
        region, offset, size = layout["maps"][index]
        at = bases[region] + offset
        written[at:at + case.steps * size] = b"\1" * (case.steps * size)
        if index >= count - 2:   # still in memory (the slots are reused two layers on)
            for t in range(case.steps):
                if bytes(got[at + t * size:at + (t + 1) * size]) != map_image(
                        case.want[index - 1][t]):
                    raise AssertionError(f"layer {index - 1}'s output map, time step {t}, "
                                         "differs from the integer model's")
    changed = [k for k in range(len(original)) if not written[k] and got[k] != original[k]]
    if changed:
        raise AssertionError(f"{len(changed)} bytes outside the maps changed, first "
                             f"{changed[0]:#x}")
