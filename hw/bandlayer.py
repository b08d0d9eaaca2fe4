"""A conv + LIF layer whose spike maps lie in external memory, computed band by band.

The band-streamed dataflow of ``docs/weightfetch.md`` ("Activations over AXI4") for one layer,
built from the units that stream it: the on-chip memory depends on the band, not on the map.

::

    AXI4 read  -> RowReader -> ProgEngine(bands) -> LIFArray -> RowAssembler -> RowWriter -> AXI4 write
    (input band's rows,        (one band of         (the band's    (a row of every   (the band's rows,
     halo included)             output rows)         membranes)     channel)          (y, c) order)

Memory layout: both maps lie as :func:`hw.rowreader.map_image` gives (row ``(c, y)`` at beat
``(c * H + y) * row_beats`` from the map's base, bit ``x`` column ``x``), one map per time step.

Schedule (the caller's, one ``start`` per band and time step): band by band, and within a band
time step by time step (``first`` on its first step). A band's membranes stay in the LIF array
between its time steps, so no membrane leaves the chip; its ``T`` input maps and ``T`` output
maps are in external memory. The bands of one layer are independent; a network runs its layers
one after the other, each reading the maps the layer before wrote.

On-chip memory: the engine's accumulator bank (one band: ``out_rows << (out_width_log +
groups_log)`` words), the LIF array's membranes (one band's output beats), two rows of every
output channel in the assembler, the weights and biases of the layer, the thresholds; nothing
sized by the map's height. ``BandLayer.memory_bits`` gives each.

Ports: ``input_base``, ``output_base`` (In): the byte addresses of this start's input and output
maps; ``band`` (In): which band (``0 .. bands - 1``); ``first`` (In): the band's first time step
(membranes from 0); all sampled at ``start`` (In, a pulse while ``busy`` is low). ``busy``
(Out): from the cycle after ``start`` until the band's last write response. ``ready`` (Out):
the engine's bank has been cleared after reset (``start`` before it is not allowed).
``error`` (Out): a read or write response other than OKAY during the last band (sticky until
the next ``start``). With ``weights="axi"``, ``load`` (In, sampled at ``start``): instead of a
band, read the weights of ``band``'s layer from ``input_base`` (:func:`weight_image`'s layout,
the layer's place in it) into the weight RAM, which holds one layer (the largest); ``busy``
until the last word is in.

Several layers (:class:`ConvLIF`) on one datapath: ``band`` then indexes every layer's bands,
layer by layer; :class:`hw.bandchain.BandChain` walks them from one start. The AXI4 master is the flat ``m_axi_ar*`` / ``m_axi_r*`` and
``m_axi_aw*`` / ``m_axi_w*`` / ``m_axi_b*`` ports (the reader's and the writer's).

Reference: :func:`band_layer_reference` (``quant.intops``'s ``conv2d_spikes`` and ``lif_step``
over the time steps). Tests: ``tests/test_bandlayer.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout
from hw.axi_io import axi4_write_ports
from hw.lif_array import LIFArray
from hw.packing import accumulator_bound, signed_width
from hw.params import bits_for, ceil_div, check_int
from hw.progengine import ProgEngine
from hw.progengine_config import (LayerConfig, band_layer, pack_layer_biases,
                                  pack_layer_weights)
from hw.rowreader import RowReader, band_config
from hw.rowwriter import RowWriter
from hw.weightfetch import axi4_read_ports

__all__ = ["ConvLIF", "RowAssembler", "BandLayer", "WEIGHT_MODES", "band_layer_reference",
           "weight_image"]

#: Where a band datapath's weights live: ``"rom"``, every layer's in an on-chip ROM;
#: ``"axi"``, one layer's at a time in an on-chip RAM, loaded over AXI4 (:func:`weight_image`).
WEIGHT_MODES = ("rom", "axi")

#: Each layer's weights in :func:`weight_image` start at a multiple of this many bytes.
WEIGHT_ALIGN = 64


def band_layer_reference(inputs, weight, bias, thresholds, *, stride: int, padding: int):
    """The output spike maps ``[T, Cout, OH, OW]`` of a conv + LIF layer over input maps
    ``[T, Cin, H, W]`` (membranes from 0 at the first step)."""
    from quant.intops import conv2d_spikes, lif_step

    inputs = np.asarray(inputs)
    threshold = np.asarray(thresholds, dtype=np.int64)[:, None, None]
    membrane, out = 0, []
    for spikes in inputs:
        x = conv2d_spikes(spikes, weight, bias, stride=stride, padding=padding)
        fired, membrane = lif_step(membrane, x, threshold)
        out.append(fired)
    return np.stack(out)


def _compact_words(spec: ConvLIF, *, weight_width: int) -> list[int]:
    """The layer's weight words without the engine's holes: input channel by input channel,
    ``(ky, kx, g)`` order, ``g`` fastest."""
    layer = spec.layer
    padded = pack_layer_weights(spec.weight, lanes=layer.lanes, weight_width=weight_width,
                                kernel_log=layer.kernel_log, groups_log=layer.groups_log)
    kl, gl = layer.kernel_log, layer.groups_log
    return [padded[((((c << kl) | ky) << kl) | kx) << gl | g]
            for c in range(layer.in_channels) for ky in range(layer.kernel)
            for kx in range(layer.kernel) for g in range(layer.groups)]


def weight_image(layers, *, weight_width: int = 8, data_width: int = 64) -> tuple[bytes, list]:
    """The weights of ``layers`` (:class:`ConvLIF`) as ``BandLayer(weights="axi")`` reads them.

    Layer after layer, each from a multiple of :data:`WEIGHT_ALIGN` bytes (and of the bus
    width); within a layer, input channel by input channel, ``K * K * G`` words in ``(ky, kx,
    g)`` order, ``g`` fastest, no holes (the block of ``docs/weightfetch.md``'s "Layout"). A
    word is ``lanes`` signed ``weight_width``-bit weights (lane ``l``: output channel ``g *
    lanes + l``, lane 0 in the least significant bits), padded to whole bus beats, little-endian.

    Returns ``(image, [(offset, beats), ...])``: each layer's byte offset and beats.
    """
    beat = data_width // 8
    align = max(WEIGHT_ALIGN, beat)
    image, places = bytearray(), []
    for spec in layers:
        spec = ConvLIF(*spec)
        word_bytes = ceil_div(spec.layer.lanes * weight_width, data_width) * beat
        image += bytes(-len(image) % align)
        words = _compact_words(spec, weight_width=weight_width)
        places.append((len(image), len(words) * word_bytes // beat))
        for word in words:
            image += word.to_bytes(word_bytes, "little")
    return bytes(image), places


class RowAssembler(wiring.Component):
    """Spike beats of an engine's output order into rows of every channel.

    Input beats (``i``, ``lanes`` spikes: channels ``g * lanes + l``) come in ``(y, x, g)``
    order, ``g`` fastest, ``config.width`` columns and ``config.groups`` groups a row. When a
    row's last beat has arrived it moves to a second register, which gives one word a channel
    (``o``, ``bits``: the row, bit ``x`` column ``x``, bits past ``width`` zero; ``last`` on the
    row's last channel) for channels ``0 .. config.channels - 1``, one a cycle, while the next
    row fills the first register. ``i`` is held only when a row is complete and the second
    register is still giving out the row before. ``start`` restarts the counters (and clears
    the two registers' flags); ``config`` is held from ``start`` on.

    Cost: ``2 * max_groups * lanes * max_width`` flip-flops; a row of ``width * groups`` beats
    in as many cycles, and its ``channels`` words in as many cycles.
    """

    def __init__(self, *, lanes: int, max_width: int, max_groups: int):
        self._lanes = check_int("lanes", lanes, 1)
        self._W = check_int("max_width", max_width, 1)
        self._G = check_int("max_groups", max_groups, 1)
        super().__init__({
            "config": In(data.StructLayout({
                "width": unsigned(bits_for(self._W + 1)),
                "groups": unsigned(bits_for(self._G + 1)),
                "channels": unsigned(bits_for(self._G * self._lanes + 1))})),
            "start": In(1),
            "i": In(stream.Signature(unsigned(self._lanes))),
            "o": Out(stream.Signature(addressing_input_layout(self._W))),
        })

    @property
    def max_width(self) -> int:
        """The widest row (columns)."""
        return self._W

    def elaborate(self, platform):
        m = Module()
        lanes, W, G = self._lanes, self._W, self._G
        cfg = self.config
        row = Signal(G * lanes * W)
        shadow = Signal(G * lanes * W)
        x = Signal(range(max(2, W)))
        g = Signal(range(max(2, G)))
        pending = Signal()        # row holds a whole row the shadow has not taken yet
        emitting = Signal()       # shadow is giving out its channels
        left = Signal(range(G * lanes + 1))   # channels still to give
        mask = Signal(W)
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~pending),
            take.eq(self.i.valid & self.i.ready),
            self.o.valid.eq(emitting),
            self.o.payload.bits.eq(shadow[:W] & mask),
            self.o.payload.last.eq(left == 1),
        ]
        with m.If(self.start):
            m.d.sync += [x.eq(0), g.eq(0), pending.eq(0), emitting.eq(0)]
            m.d.sync += [mask[k].eq(k < cfg.width) for k in range(W)]
        with m.Else():
            with m.If(take):
                # the beat's lanes go to bit x of channels g * lanes + l
                for gg in range(G):
                    for xx in range(W):
                        with m.If((g == gg) & (x == xx)):
                            m.d.sync += [row[(gg * lanes + lane) * W + xx].eq(self.i.payload[lane])
                                         for lane in range(lanes)]
                with m.If(g == cfg.groups - 1):
                    m.d.sync += g.eq(0)
                    with m.If(x == cfg.width - 1):
                        m.d.sync += [x.eq(0), pending.eq(1)]
                    with m.Else():
                        m.d.sync += x.eq(x + 1)
                with m.Else():
                    m.d.sync += g.eq(g + 1)
            with m.If(emitting & self.o.ready):
                m.d.sync += [shadow.eq(shadow >> W), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += emitting.eq(0)
            with m.If(pending & ~emitting):
                m.d.sync += [shadow.eq(row), emitting.eq(1), left.eq(cfg.channels),
                             pending.eq(0)]
        return m


def _pass_through(m: Module, outer, inner, names):
    """Drive ``inner``'s flat ports from ``outer``'s and back, by direction."""
    for name in names:
        a, b = getattr(outer, name), getattr(inner, name)
        if outer.signature.members[name].flow == Out:
            m.d.comb += a.eq(b)
        else:
            m.d.comb += b.eq(a)


class ConvLIF(NamedTuple):
    """One conv + LIF layer of a :class:`BandLayer` or :class:`BandChain`: its geometry
    (:func:`hw.progengine_config.layer_config`; bases ignored), quant's integer weights
    ``[Cout, Cin, k, k]`` and biases ``[Cout]``, and its thresholds (one a channel, doubled
    units: ``quant.intops.lif_threshold``)."""

    layer: LayerConfig
    weight: np.ndarray
    bias: np.ndarray
    thresholds: Sequence[int]


class BandLayer(wiring.Component):
    """Conv + LIF layers over external memory, band by band (module docstring).

    ``BandLayer(layer, weight, bias, thresholds, band_rows=...)`` builds one layer;
    ``BandLayer([ConvLIF(...), ...], band_rows=...)`` builds one datapath for several, of the
    same lanes: each start runs one band of one of them. The ``band`` port then indexes the
    bands of every layer, layer by layer (:attr:`bands`, :attr:`band_layers`); the engine's,
    LIF array's and assembler's sizes are the largest any band needs; the weights, biases and
    thresholds of every layer sit one after the other in their memories.

    Parameters
    ----------
    layer : LayerConfig, or a sequence of :class:`ConvLIF`
        The whole layer's geometry (:func:`hw.progengine_config.layer_config`; its bases are
        ignored), or several layers, each with its weights.
    weight, bias : integer arrays ``[Cout, Cin, k, k]`` and ``[Cout]``
        quant's integer weights (``weight_width`` bits) and biases (only with one ``layer``).
    thresholds : sequence of int
        Per output channel, doubled units (``quant.intops.lif_threshold``; only with one
        ``layer``).
    band_rows : int or sequence of int
        Output rows a band (>= 1), or one such number a layer; the last band of a layer takes
        what is left.
    weight_width : int
        Signed bits a weight (default 8).
    data_width, address_width : int
        The AXI4 bus (default 64 and 32 bits).
    """

    def __init__(self, layer, weight=None, bias=None, thresholds=None, *, band_rows,
                 weight_width: int = 8, data_width: int = 64, address_width: int = 32,
                 weights: str = "rom"):
        if weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_MODES))}, "
                             f"not {weights!r}")
        self._weights_mode = weights
        if isinstance(layer, LayerConfig):
            specs = [ConvLIF(layer, weight, bias, thresholds)]
        else:
            if weight is not None or bias is not None or thresholds is not None:
                raise TypeError("weight, bias and thresholds go inside each ConvLIF when "
                                "several layers are given")
            specs = [ConvLIF(*spec) for spec in layer]
            if not specs:
                raise ValueError("layers must hold at least one ConvLIF")
        if isinstance(band_rows, int):
            band_rows = [band_rows] * len(specs)
        band_rows = list(band_rows)
        if len(band_rows) != len(specs):
            raise ValueError(f"{len(band_rows)} band_rows for {len(specs)} layers")
        lanes = specs[0].layer.lanes
        self._data_width = data_width
        self._specs, self._bands, self._band_layers = [], [], []
        self._thresholds, group_base, weight_words, bias_values = [], 0, [], []
        self._group_bases = []
        for index, spec in enumerate(specs):
            layer = spec.layer
            where = f"layer {index}: " if len(specs) > 1 else ""
            if layer.lanes != lanes:
                raise ValueError(f"{where}lanes {layer.lanes} differ from layer 0's {lanes}")
            weight = np.asarray(spec.weight, dtype=np.int64)
            bias = np.asarray(spec.bias, dtype=np.int64)
            shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
            if weight.shape != shape:
                raise ValueError(f"{where}weight shape {weight.shape} is not (Cout, Cin, k, k) "
                                 f"= {shape}")
            if bias.shape != (layer.out_channels,):
                raise ValueError(f"{where}bias shape {bias.shape} is not "
                                 f"({layer.out_channels},)")
            if len(spec.thresholds) != layer.out_channels:
                raise ValueError(f"{where}{len(spec.thresholds)} thresholds for "
                                 f"{layer.out_channels} channels")
            rows = check_int(f"{where}band_rows", band_rows[index], 1, layer.out_height)
            layer = dataclasses.replace(
                layer, weight_base=len(weight_words) if weights == "rom" else 0,
                bias_base=group_base)
            words = pack_layer_weights(
                weight, lanes=lanes, weight_width=weight_width, kernel_log=layer.kernel_log,
                groups_log=layer.groups_log)
            if weights == "rom":
                weight_words += words
            elif len(words) > len(weight_words):   # the buffer holds the largest layer
                weight_words = [0] * len(words)
            bias_values.append(bias)
            self._specs.append(ConvLIF(layer, weight, bias, [int(t) for t in spec.thresholds]))
            for first in range(0, layer.out_height, rows):
                last = min(first + rows, layer.out_height) - 1
                band, first_in, last_in = band_layer(layer, first, last)
                self._bands.append((first, last, band, first_in, last_in))
                self._band_layers.append(index)
            self._group_bases.append(group_base)
            padded = layer.groups * lanes - layer.out_channels
            self._thresholds += [int(t) for t in spec.thresholds] + [0] * padded
            group_base += layer.groups
        self._layer = self._specs[0].layer
        self.accumulator_width = max(
            [weight_width] + [signed_width(*accumulator_bound(s.weight, s.bias))
                              for s in self._specs])
        self._weight_words = weight_words
        bias_words = []
        for spec, bias in zip(self._specs, bias_values):
            bias_words += pack_layer_biases(bias, lanes=lanes,
                                            accumulator_width=self.accumulator_width,
                                            groups=spec.layer.groups)
        bands = [b for _, _, b, _, _ in self._bands]
        layers = [s.layer for s in self._specs]
        self.engine = ProgEngine(
            lanes=lanes, word_bits=max(max(b.width for b in bands), 1),
            max_words=max(b.words_per_frame for b in bands),
            max_channels=max(b.in_channels for b in bands),
            max_side=max(max(b.height, b.width, b.out_height, b.out_width) for b in bands),
            max_padding=max(b.padding for b in bands),
            max_kernel_log=max(b.kernel_log for b in bands),
            max_stride_log=max(b.stride_log for b in bands),
            max_groups_log=max(b.groups_log for b in bands),
            weight_width=weight_width, accumulator_width=self.accumulator_width,
            weight_depth=len(self._weight_words),
            bank_depth=max(b.bank_words_needed for b in bands), bias_words=bias_words,
            bands=True)
        for b in bands:
            self.engine.check_layer(b)
        self.lif = LIFArray(lanes=lanes, words=max(b.beats for b in bands),
                            input_width=max(2, self.accumulator_width),
                            thresholds=self._thresholds, pipelined=True)
        self._max_groups = max(l.groups for l in layers)
        self.assembler = RowAssembler(lanes=lanes, max_width=max(l.out_width for l in layers),
                                      max_groups=self._max_groups)
        in_beats = max(l.in_channels * l.height * ceil_div(l.width, data_width) for l in layers)
        out_beats = max(l.out_channels * l.out_height * ceil_div(l.out_width, data_width)
                        for l in layers)
        word_bits = max(l.width for l in layers)
        self._word_beats = ceil_div(lanes * weight_width, data_width)
        self._load_beats = [layer.in_channels * layer.kernel ** 2 * layer.groups
                            * self._word_beats for layer in layers]
        if weights == "axi":
            word_bits = max(word_bits, lanes * weight_width)
            in_beats = max([in_beats] + self._load_beats)
        self.reader = RowReader(word_bits=word_bits,
                                max_channels=max(l.in_channels for l in layers),
                                max_beats=in_beats, data_width=data_width,
                                address_width=address_width)
        self.writer = RowWriter(word_bits=max(l.out_width for l in layers),
                                max_channels=max(l.out_channels for l in layers),
                                max_beats=out_beats, data_width=data_width,
                                address_width=address_width, order="rows")
        self._read_names = list(axi4_read_ports(address_width, data_width))
        self._write_names = list(axi4_write_ports(address_width, data_width))
        super().__init__({
            "input_base": In(address_width), "output_base": In(address_width),
            "band": In(range(len(self._bands))), "first": In(1), "start": In(1),
            "busy": Out(1), "ready": Out(1), "error": Out(1),
            **({"load": In(1)} if weights == "axi" else {}),
            **axi4_read_ports(address_width, data_width),
            **axi4_write_ports(address_width, data_width),
        })

    @property
    def weights(self) -> str:
        """Where the weights live (:data:`WEIGHT_MODES`)."""
        return self._weights_mode

    @property
    def layers(self) -> list[ConvLIF]:
        """The layers, each with its weight and bias bases in the memories filled in."""
        return list(self._specs)

    @property
    def band_layers(self) -> list[int]:
        """The layer of each band (``band`` port value)."""
        return list(self._band_layers)

    @property
    def load_beats(self) -> list[int]:
        """Bus beats of each layer's weight load (``weights="axi"``)."""
        return list(self._load_beats)

    @property
    def data_width(self) -> int:
        """AXI data bits."""
        return self._data_width

    @property
    def bands(self) -> list[tuple[int, int]]:
        """The output rows ``(first, last)`` of each band."""
        return [(first, last) for first, last, _, _, _ in self._bands]

    @property
    def memory_bits(self) -> dict[str, int]:
        """Bits of each on-chip memory and register file that holds data."""
        lanes = self._layer.lanes
        return {
            "accumulator bank": self.engine.bank_depth * lanes * self.accumulator_width,
            "membranes": self.lif.words * lanes * self.lif.membrane_width,
            "row assembler": 2 * self._max_groups * lanes * self.assembler.max_width,
            "weights": len(self._weight_words) * lanes * self.engine.weight_width,
            "biases": len(self.engine.bias_words) * lanes * self.accumulator_width,
            "thresholds": len(self._thresholds) * (self.lif.membrane_width + 1),
        }

    def elaborate(self, platform):
        m = Module()
        layer, dw = self._layer, self._data_width
        m.submodules.engine = engine = self.engine
        m.submodules.lif = lif = self.lif
        m.submodules.assembler = assembler = self.assembler
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        m.submodules.weights = weights = Memory(
            shape=unsigned(layer.lanes * engine.weight_width),
            depth=max(2, len(self._weight_words)), init=self._weight_words)
        port = weights.read_port()
        loading = Signal()    # this start loads weights (only with weights="axi")
        self._weight_memory = weights
        m.d.comb += [port.addr.eq(engine.weight.addr), port.en.eq(engine.weight.en),
                     engine.weight.data.eq(port.data)]
        _pass_through(m, self, reader, self._read_names)
        _pass_through(m, self, writer, self._write_names)

        # --- the band's constants, picked by the band register from tables built here ---
        band = Signal.like(self.band)
        in_base = Signal.like(self.input_base)
        out_base = Signal.like(self.output_base)
        first = Signal()
        engine_values, read_values, write_values, shapes, group_bases = [], [], [], [], []
        for (first_out, last_out, cfg, first_in, last_in), index in zip(self._bands,
                                                                       self._band_layers):
            layer = self._specs[index].layer
            engine_values.append(engine.config_value(cfg).as_value())
            read_values.append(band_config(layer.in_channels, layer.height, layer.width,
                                           first_in, last_in, data_width=dw))
            write_values.append(band_config(layer.out_channels, layer.out_height,
                                            layer.out_width, first_out, last_out,
                                            data_width=dw))
            shapes.append((layer.out_width, layer.groups, layer.out_channels))
            group_bases.append(self._group_bases[index])
        # the band's constants go through registers (the units start a cycle after ``go``, when
        # they hold the new band's): no table multiplexer in front of the walkers' and engine's
        # logic
        m.d.sync += engine.config.eq(Array(engine_values)[band])
        if self._weights_mode == "axi":
            # a load reads the band's layer's words as the rows of a one-channel map
            load_values = [{"row_beats": self._word_beats, "first_beat": 0,
                            "channel_beats": self._load_beats[index],
                            "band_beats": self._load_beats[index], "channels": 1}
                           for index in self._band_layers]
            read_values = [{name: Mux(loading, w[name], r[name]) for name in w}
                           for w, r in zip(load_values, read_values)]
        for target, values, base in ((reader.config, read_values, in_base),
                                     (writer.config, write_values, out_base)):
            for name in ("row_beats", "first_beat", "channel_beats", "band_beats", "channels"):
                m.d.sync += getattr(target, name).eq(Array(v[name] for v in values)[band])
            m.d.comb += target.base.eq(base)
        for k, name in enumerate(("width", "groups", "channels")):
            m.d.sync += getattr(assembler.config, name).eq(Array(v[k] for v in shapes)[band])
        group_base = 0
        if len(self._specs) > 1:
            group_base = Signal(range(max(2, max(group_bases) + 1)))
            m.d.sync += group_base.eq(Array(group_bases)[band])

        go = Signal()         # the cycle after an accepted start: the band's constants load
        run = Signal()        # the cycle after that: the units start
        # --- the streams: reader -> engine -> LIF -> assembler -> writer ---
        if self._weights_mode == "axi":
            m.d.comb += [engine.i.payload.bits.eq(reader.o.payload.bits),
                         engine.i.payload.last.eq(reader.o.payload.last),
                         engine.i.valid.eq(reader.o.valid & ~loading),
                         reader.o.ready.eq(Mux(loading, 1, engine.i.ready))]
            self._loader(m, weights, band, loading, run, reader.o)
        else:
            wiring.connect(m, reader.o, engine.i)
        wiring.connect(m, assembler.o, writer.i)
        beat = engine.o.payload
        m.d.comb += [
            lif.i.valid.eq(engine.o.valid), engine.o.ready.eq(lif.i.ready),
            lif.i.payload.x.eq(beat.values), lif.i.payload.address.eq(beat.index),
            lif.i.payload.group.eq(beat.group + group_base), lif.i.payload.first.eq(first),
            assembler.i.valid.eq(lif.o.valid), lif.o.ready.eq(assembler.i.ready),
            assembler.i.payload.eq(lif.o.payload.spikes),
        ]

        # --- control: sample at start, load the band's constants a cycle later (go), start the
        # units the cycle after (run), busy until the reader's last word and the writer's last
        # response ---
        busy = Signal()
        m.d.sync += [go.eq(self.start & ~busy), run.eq(go)]
        m.d.comb += [reader.start.eq(run), writer.start.eq(run & ~loading),
                     assembler.start.eq(run & ~loading),
                     self.busy.eq(busy), self.ready.eq(engine.ready),
                     self.error.eq(reader.error | writer.error)]
        with m.If(self.start & ~busy):
            m.d.sync += [band.eq(self.band), in_base.eq(self.input_base),
                         out_base.eq(self.output_base), first.eq(self.first), busy.eq(1)]
            if self._weights_mode == "axi":
                m.d.sync += loading.eq(self.load)
        with m.Elif(busy & ~go & ~run & ~writer.busy & ~reader.busy):
            m.d.sync += busy.eq(0)
        return m

    def _loader(self, m, memory, band, loading, go, words):
        """A load's words (:func:`weight_image` order) into the weight memory at the engine's
        addresses ``(((c << kl | ky) << kl | kx) << gl) | g``."""
        layers = [self._specs[index].layer for index in self._band_layers]
        kernel = Array(l.kernel - 1 for l in layers)[band]
        groups = Array(l.groups - 1 for l in layers)[band]
        kl = Array(l.kernel_log for l in layers)[band]
        gl = Array(l.groups_log for l in layers)[band]
        c = Signal(range(max(l.in_channels for l in layers) + 1))
        ky = Signal(range(max(l.kernel for l in layers) + 1))
        kx = Signal.like(ky)
        g = Signal(range(max(l.groups for l in layers) + 1))
        write = memory.write_port()
        take = Signal()
        m.d.comb += [
            take.eq(loading & words.valid),
            write.en.eq(take),
            write.addr.eq(((((c << kl) | ky) << kl | kx) << gl) | g),
            write.data.eq(words.payload.bits),
        ]
        with m.If(~loading | go):
            m.d.sync += [c.eq(0), ky.eq(0), kx.eq(0), g.eq(0)]
        with m.Elif(take):
            m.d.sync += g.eq(g + 1)
            with m.If(g == groups):
                m.d.sync += [g.eq(0), kx.eq(kx + 1)]
                with m.If(kx == kernel):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                    with m.If(ky == kernel):
                        m.d.sync += [ky.eq(0), c.eq(c + 1)]
