"""A conv whose sums go into a residual stream in external memory, band by band.

The residual half of the band dataflow (``docs/weightfetch.md``, "Residual streams over AXI4"):
a MetaFormer block adds a layer's sums into its residual stream, ``stream = (add ? stream : 0)
+ (sums << shift)`` per channel (:func:`hw.residual.stream_update`, the shared network's
``begin`` and ``add`` sinks). Here the stream lies in external memory, and each ``start`` runs one
band of output rows:

1. (``add`` only) the band's stream words are read over AXI4 into an on-chip buffer of one band;
2. the band's input rows (halo included) are read over AXI4 into ``ProgEngine(bands=True)``;
3. each output beat is combined with its old word (``old + (value << shift)``, wrapped to
   ``stream_bits``) and the band's new words are written back over AXI4 in place.

One :class:`hw.rowreader.RowReader` serves both reads, one after the other, so the core has one
AXI4 read channel and no arbiter; one :class:`hw.rowwriter.RowWriter` writes.

Stream layout (:func:`stream_image`, the contract)
    Word ``(y, x, g)`` of a stream ``[C, OH, OW]`` holds channels ``g * lanes + l`` of pixel
    ``(y, x)``, ``lanes`` signed ``stream_bits``-bit values (lane 0 in the least significant
    bits; lanes past ``C`` zero), padded to ``word_beats`` whole beats; the words lie in ``(y, x,
    g)`` order from the stream's base, so a band of rows is one run of consecutive beats (the
    order the engine gives its beats in).

Ports: ``input_base``, ``stream_base`` (In): byte addresses of the input spike map and of the
stream; ``band`` (In): which band; ``add`` (In): 1 adds into the stream, 0 begins it (old
values 0, nothing read); sampled at ``start`` (In, a pulse while ``busy`` is low). ``busy``,
``ready``, ``error`` (Out) and the AXI4 master as :class:`hw.bandlayer.BandLayer`'s.

Reference: :func:`band_stream_reference`. Tests: ``tests/test_bandstream.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.axi_io import axi4_write_ports
from hw.bandlayer import RowAssembler, _pass_through
from hw.lif_array import LIFArray
from hw.packing import accumulator_bound, pack_lanes, signed_width
from hw.params import ceil_div, check_int
from hw.progengine import ProgEngine
from hw.progengine_config import LayerConfig, band_layer, pack_layer_biases, pack_layer_weights
from hw.residual import stream_update
from hw.rowreader import RowReader, band_config
from hw.rowwriter import RowWriter
from hw.weightfetch import axi4_read_ports

__all__ = ["BandStream", "BandStreamLIF", "stream_image", "band_stream_reference",
           "stream_lif_reference"]


def stream_image(values, lanes: int, bits: int, data_width: int = 64) -> bytes:
    """A stream ``[C, OH, OW]`` of signed ``bits``-bit values as it lies in memory (module
    docstring)."""
    values = np.asarray(values)
    channels, height, width = values.shape
    groups = ceil_div(channels, lanes)
    padded = np.zeros((groups * lanes, height, width), dtype=np.int64)
    padded[:channels] = values
    word_bytes = ceil_div(lanes * bits, data_width) * data_width // 8
    out = bytearray()
    for y in range(height):
        for x in range(width):
            for g in range(groups):
                word = pack_lanes(padded[g * lanes:(g + 1) * lanes, y, x], bits)
                out += word.to_bytes(word_bytes, "little")
    return bytes(out)


def band_stream_reference(old, spikes, weight, bias, shifts, *, stride: int, padding: int,
                          add: bool, bits: int):
    """The stream ``[C, OH, OW]`` after adding (``add``) or beginning it with a conv's sums
    shifted left by ``shifts[c]``, wrapped to ``bits`` signed bits (``hw.residual.stream_update``
    element by element)."""
    from quant.intops import conv2d_spikes

    sums = conv2d_spikes(spikes, weight, bias, stride=stride, padding=padding)
    old = np.asarray(old)
    out = np.empty_like(sums)
    for c, y, x in np.ndindex(*sums.shape):
        out[c, y, x] = stream_update(int(old[c, y, x]), int(sums[c, y, x]), int(shifts[c]),
                                     add, bits)
    return out


class BandStream(wiring.Component):
    """A conv's sums into a residual stream in external memory, band by band (module docstring).

    Parameters
    ----------
    layer : LayerConfig
        The whole layer (:func:`hw.progengine_config.layer_config`; its bases are ignored).
    weight, bias : integer arrays ``[Cout, Cin, k, k]`` and ``[Cout]``
    shifts : sequence of int
        Per output channel, the left shift of its sums (0-15).
    stream_bits : int
        Signed bits of a stream value (2-64).
    band_rows : int
        Output rows a band (>= 1).
    weight_width, data_width, address_width : int
        As :class:`hw.bandlayer.BandLayer`'s.
    """

    def __init__(self, layer: LayerConfig, weight, bias, shifts, *, stream_bits: int,
                 band_rows: int, weight_width: int = 8, data_width: int = 64,
                 address_width: int = 32):
        weight = np.asarray(weight, dtype=np.int64)
        bias = np.asarray(bias, dtype=np.int64)
        if weight.shape != (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel):
            raise ValueError(f"weight shape {weight.shape} is not (Cout, Cin, k, k) = "
                             f"{(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)}")
        if bias.shape != (layer.out_channels,):
            raise ValueError(f"bias shape {bias.shape} is not ({layer.out_channels},)")
        if len(shifts) != layer.out_channels:
            raise ValueError(f"{len(shifts)} shifts for {layer.out_channels} channels")
        self._shifts = [check_int(f"shifts[{c}]", s, 0, 15) for c, s in enumerate(shifts)]
        self._bits = check_int("stream_bits", stream_bits, 2, 64)
        self._band_rows = check_int("band_rows", band_rows, 1, layer.out_height)
        self._layer = layer = dataclasses.replace(layer, weight_base=0, bias_base=0)
        self._data_width = data_width
        lanes = layer.lanes
        self._word_beats = ceil_div(lanes * self._bits, data_width)
        self._bands = []
        for first in range(0, layer.out_height, band_rows):
            last = min(first + band_rows, layer.out_height) - 1
            band, first_in, last_in = band_layer(layer, first, last)
            self._bands.append((first, last, band, first_in, last_in))
        self.accumulator_width = max(weight_width,
                                     signed_width(*accumulator_bound(weight, bias)))
        self._weight_words = pack_layer_weights(
            weight, lanes=lanes, weight_width=weight_width, kernel_log=layer.kernel_log,
            groups_log=layer.groups_log)
        bands = [b for _, _, b, _, _ in self._bands]
        self.engine = ProgEngine(
            lanes=lanes, word_bits=layer.width, max_words=max(b.words_per_frame for b in bands),
            max_channels=layer.in_channels,
            max_side=max(max(b.height, b.width, b.out_height, b.out_width) for b in bands),
            max_padding=layer.padding, max_kernel_log=layer.kernel_log,
            max_stride_log=layer.stride_log, max_groups_log=layer.groups_log,
            weight_width=weight_width, accumulator_width=self.accumulator_width,
            weight_depth=len(self._weight_words),
            bank_depth=max(b.bank_words_needed for b in bands),
            bias_words=pack_layer_biases(bias, lanes=lanes,
                                         accumulator_width=self.accumulator_width,
                                         groups=layer.groups),
            bands=True)
        self._buffer_depth = max(b.beats for b in bands)
        word_bits = max(layer.width, self._word_beats * data_width)
        stream_beats = layer.out_height * layer.out_width * layer.groups * self._word_beats
        in_beats = layer.in_channels * layer.height * ceil_div(layer.width, data_width)
        self.reader = RowReader(word_bits=word_bits, max_channels=layer.in_channels,
                                max_beats=max(in_beats, stream_beats), data_width=data_width,
                                address_width=address_width)
        self.writer = RowWriter(word_bits=self._word_beats * data_width, max_channels=1,
                                max_beats=stream_beats, data_width=data_width,
                                address_width=address_width)
        self._read_names = list(axi4_read_ports(address_width, data_width))
        self._write_names = list(axi4_write_ports(address_width, data_width))
        super().__init__({
            "input_base": In(address_width), "stream_base": In(address_width),
            "band": In(range(len(self._bands))), "add": In(1), "start": In(1),
            "busy": Out(1), "ready": Out(1), "error": Out(1),
            **axi4_read_ports(address_width, data_width),
            **axi4_write_ports(address_width, data_width),
        })

    @property
    def bands(self) -> list[tuple[int, int]]:
        """The output rows ``(first, last)`` of each band."""
        return [(first, last) for first, last, _, _, _ in self._bands]

    @property
    def memory_bits(self) -> dict[str, int]:
        """Bits of each on-chip data memory that depends on the map (the band's)."""
        lanes = self._layer.lanes
        return {"accumulator bank": self.engine.bank_depth * lanes * self.accumulator_width,
                "stream buffer": self._buffer_depth * lanes * self._bits}

    def elaborate(self, platform):
        m = Module()
        layer, dw, lanes, bits = self._layer, self._data_width, self._layer.lanes, self._bits
        m.submodules.engine = engine = self.engine
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        m.submodules.weights = weights = Memory(
            shape=unsigned(lanes * engine.weight_width), depth=max(2, len(self._weight_words)),
            init=self._weight_words)
        wport = weights.read_port()
        m.d.comb += [wport.addr.eq(engine.weight.addr), wport.en.eq(engine.weight.en),
                     engine.weight.data.eq(wport.data)]
        _pass_through(m, self, reader, self._read_names)
        _pass_through(m, self, writer, self._write_names)

        # --- registers sampled at start; the phase: 1 reads the old stream, 2 runs the engine
        band = Signal.like(self.band)
        in_base = Signal.like(self.input_base)
        stream_base = Signal.like(self.stream_base)
        add = Signal()
        busy = Signal()
        phase = Signal(2)
        go_read = Signal()       # pulse: the reader starts on the phase's band
        go_write = Signal()
        # the reader's error flag is cleared by its second start: keep the band's own, sticky,
        # taken from the units' flags while they run (not in their start cycles, when they
        # still show the band before's)
        error = Signal()
        m.d.comb += [self.busy.eq(busy), self.ready.eq(engine.ready), self.error.eq(error)]
        with m.If(self.start & ~busy):
            m.d.sync += error.eq(0)
        with m.Elif(busy & ~go_read & ~go_write & (reader.error | writer.error)):
            m.d.sync += error.eq(1)

        # --- the band's constants from tables built here ---
        engine_values, map_values, stream_values = [], [], []
        words_of_row = layer.out_width * layer.groups
        for first_out, last_out, cfg, first_in, last_in in self._bands:
            engine_values.append(engine.config_value(cfg).as_value())
            map_values.append(band_config(layer.in_channels, layer.height, layer.width,
                                          first_in, last_in, data_width=dw))
            # the stream as a one-channel map of one word a row
            stream_values.append(band_config(1, layer.out_height * words_of_row,
                                             self._word_beats * dw, first_out * words_of_row,
                                             (last_out + 1) * words_of_row - 1, data_width=dw))
        m.d.comb += engine.config.eq(Array(engine_values)[band])
        names = ("row_beats", "first_beat", "channel_beats", "band_beats", "channels")
        for name in names:
            pick_map = Array(v[name] for v in map_values)[band]
            pick_stream = Array(v[name] for v in stream_values)[band]
            m.d.comb += [getattr(reader.config, name).eq(Mux(phase == 1, pick_stream, pick_map)),
                         getattr(writer.config, name).eq(pick_stream)]
        m.d.comb += [reader.config.base.eq(Mux(phase == 1, stream_base, in_base)),
                     writer.config.base.eq(stream_base)]

        # --- phase 1: the reader's words into the buffer; phase 2: the reader feeds the engine
        buffer = Memory(shape=unsigned(lanes * bits), depth=max(2, self._buffer_depth), init=[])
        m.submodules.buffer = buffer
        bw = buffer.write_port()
        br = buffer.read_port()
        fill = Signal(range(max(2, self._buffer_depth + 1)))
        to_buffer = phase == 1
        m.d.comb += [
            engine.i.payload.bits.eq(reader.o.payload.bits),
            engine.i.payload.last.eq(reader.o.payload.last),
            engine.i.valid.eq(reader.o.valid & ~to_buffer),
            reader.o.ready.eq(to_buffer | engine.i.ready),
            bw.addr.eq(fill), bw.data.eq(reader.o.payload.bits),
            bw.en.eq(to_buffer & reader.o.valid),
        ]
        with m.If(to_buffer & reader.o.valid):
            m.d.sync += fill.eq(fill + 1)

        # --- the combine stage: the engine's beat and its old word (read at the beat's index),
        # registered a cycle; the new word goes to the writer from an output register ---
        beat = engine.o.payload
        c_valid = Signal()
        c_values = Signal.like(beat.values)
        c_group = Signal.like(beat.group)
        o_valid = Signal()
        o_word = Signal(lanes * bits)
        advance = Signal()       # the combine register moves on
        m.d.comb += [
            advance.eq(~c_valid | ~o_valid | writer.i.ready),
            engine.o.ready.eq(advance & (phase == 2)),
            br.addr.eq(beat.index), br.en.eq(advance),
            writer.i.valid.eq(o_valid), writer.i.payload.bits.eq(o_word),
            writer.i.payload.last.eq(0),
        ]
        with m.If(writer.i.ready & o_valid):
            m.d.sync += o_valid.eq(0)
        with m.If(advance):
            m.d.sync += [c_valid.eq(engine.o.valid & (phase == 2)), c_values.eq(beat.values),
                         c_group.eq(beat.group)]
            with m.If(c_valid):
                new = []
                for lane in range(lanes):
                    old = br.data[lane * bits:(lane + 1) * bits].as_signed()
                    shifted = Array(c_values[lane] << self._shift(g, lane)
                                    for g in range(layer.groups))[c_group]
                    new.append((Mux(add, old, 0) + shifted)[:bits])
                m.d.sync += [o_valid.eq(1), o_word.eq(Cat(*new))]

        # --- control ---
        with m.If(self.start & ~busy):
            m.d.sync += [band.eq(self.band), in_base.eq(self.input_base),
                         stream_base.eq(self.stream_base), add.eq(self.add), busy.eq(1),
                         phase.eq(Mux(self.add, 1, 2)), go_read.eq(1), go_write.eq(1),
                         fill.eq(0)]
        with m.Else():
            m.d.sync += [go_read.eq(0), go_write.eq(0)]
            with m.If(busy & (phase == 1) & ~go_read & ~reader.busy):
                m.d.sync += [phase.eq(2), go_read.eq(1)]
            with m.If(busy & (phase == 2) & ~go_read & ~go_write & ~writer.busy):
                m.d.sync += [busy.eq(0), phase.eq(0)]
        m.d.comb += [reader.start.eq(go_read), writer.start.eq(go_write)]
        return m

    def _shift(self, group: int, lane: int) -> int:
        channel = group * self._layer.lanes + lane
        return self._shifts[channel] if channel < len(self._shifts) else 0


def stream_lif_reference(streams, thresholds):
    """The spike maps ``[T, C, OH, OW]`` of LIF neurons on streams ``[T, C, OH, OW]`` (one per
    time step, membranes from 0 at the first): ``quant.intops.lif_step`` step by step."""
    from quant.intops import lif_step

    threshold = np.asarray(thresholds, dtype=np.int64)[:, None, None]
    membrane, out = 0, []
    for values in np.asarray(streams):
        fired, membrane = lif_step(membrane, values, threshold)
        out.append(fired)
    return np.stack(out)


class BandStreamLIF(wiring.Component):
    """LIF neurons on a residual stream in external memory, band by band: their spike map too.

    Each ``start`` runs one band of rows at one time step: the band's stream words (:func:`stream_image`
    layout, ``(y, x, g)`` order, one run of beats) are read over AXI4, a :class:`LIFArray` steps
    the band's membranes (kept on chip across the band's time steps; ``first`` at its first),
    and a :class:`hw.bandlayer.RowAssembler` and a :class:`hw.rowwriter.RowWriter` (rows
    order) write the spikes into the output map (:func:`hw.rowreader.map_image` layout). The
    caller runs band by band, time step by time step within a band, as for
    :class:`hw.bandlayer.BandLayer`.

    Ports: ``stream_base``, ``output_base``, ``band``, ``first``, ``start``, ``busy``,
    ``error`` and the AXI4 master, as :class:`hw.bandlayer.BandLayer`'s (``stream_base`` in place
    of ``input_base``). Reference: :func:`stream_lif_reference`. Tests:
    ``tests/test_bandstream.py``.

    Parameters
    ----------
    channels, height, width : int
        The stream's (and the spike map's) shape ``[C, OH, OW]``.
    lanes, stream_bits : int
        As :class:`BandStream`'s: the stream's words hold ``lanes`` values of ``stream_bits``.
    thresholds : sequence of int
        Per channel, in the stream's units (doubled, as ``quant.intops.lif_step`` takes them).
    band_rows : int
        Rows a band.
    """

    def __init__(self, *, channels: int, height: int, width: int, lanes: int, stream_bits: int,
                 thresholds, band_rows: int, data_width: int = 64, address_width: int = 32):
        self._C = check_int("channels", channels, 1)
        self._H = check_int("height", height, 1)
        self._W = check_int("width", width, 1)
        self._lanes = check_int("lanes", lanes, 1)
        self._bits = check_int("stream_bits", stream_bits, 2, 64)
        self._band_rows = check_int("band_rows", band_rows, 1, height)
        if len(thresholds) != channels:
            raise ValueError(f"{len(thresholds)} thresholds for {channels} channels")
        self._G = ceil_div(channels, lanes)
        self._data_width = data_width
        self._word_beats = ceil_div(lanes * self._bits, data_width)
        self._bands = [(first, min(first + band_rows, height) - 1)
                       for first in range(0, height, band_rows)]
        words = band_rows * width * self._G
        self.lif = LIFArray(lanes=lanes, words=words, input_width=self._bits,
                            thresholds=[int(t) for t in thresholds], pipelined=True)
        self.assembler = RowAssembler(lanes=lanes, max_width=width, max_groups=self._G)
        self.reader = RowReader(word_bits=self._word_beats * data_width, max_channels=1,
                                max_beats=height * width * self._G * self._word_beats,
                                data_width=data_width, address_width=address_width)
        self.writer = RowWriter(word_bits=width, max_channels=channels,
                                max_beats=channels * height * ceil_div(width, data_width),
                                data_width=data_width, address_width=address_width,
                                order="rows")
        self._read_names = list(axi4_read_ports(address_width, data_width))
        self._write_names = list(axi4_write_ports(address_width, data_width))
        super().__init__({
            "stream_base": In(address_width), "output_base": In(address_width),
            "band": In(range(len(self._bands))), "first": In(1), "start": In(1),
            "busy": Out(1), "error": Out(1),
            **axi4_read_ports(address_width, data_width),
            **axi4_write_ports(address_width, data_width),
        })

    @property
    def bands(self) -> list[tuple[int, int]]:
        """The rows ``(first, last)`` of each band."""
        return list(self._bands)

    @property
    def memory_bits(self) -> dict[str, int]:
        """Bits of each on-chip data memory that depends on the map (the band's)."""
        return {"membranes": self.lif.words * self._lanes * self.lif.membrane_width,
                "row assembler": 2 * self._G * self._lanes * self._W}

    def elaborate(self, platform):
        m = Module()
        dw, lanes, bits, G = self._data_width, self._lanes, self._bits, self._G
        m.submodules.lif = lif = self.lif
        m.submodules.assembler = assembler = self.assembler
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        _pass_through(m, self, reader, self._read_names)
        _pass_through(m, self, writer, self._write_names)

        band = Signal.like(self.band)
        stream_base = Signal.like(self.stream_base)
        out_base = Signal.like(self.output_base)
        first = Signal()
        words_of_row = self._W * G
        read_values = [band_config(1, self._H * words_of_row, self._word_beats * dw,
                                   f * words_of_row, (l + 1) * words_of_row - 1, data_width=dw)
                       for f, l in self._bands]
        write_values = [band_config(self._C, self._H, self._W, f, l, data_width=dw)
                        for f, l in self._bands]
        names = ("row_beats", "first_beat", "channel_beats", "band_beats", "channels")
        for target, values, base in ((reader.config, read_values, stream_base),
                                     (writer.config, write_values, out_base)):
            for name in names:
                m.d.comb += getattr(target, name).eq(Array(v[name] for v in values)[band])
            m.d.comb += target.base.eq(base)
        m.d.comb += [assembler.config.width.eq(self._W), assembler.config.groups.eq(G),
                     assembler.config.channels.eq(self._C)]

        # the reader's words into the LIF array: the word's place in the band and its group
        index = Signal(range(max(2, self.lif.words)))
        group = Signal(range(max(2, G)))
        go = Signal()
        m.d.comb += [
            lif.i.valid.eq(reader.o.valid), reader.o.ready.eq(lif.i.ready),
            lif.i.payload.address.eq(index), lif.i.payload.group.eq(group),
            lif.i.payload.first.eq(first),
            assembler.i.valid.eq(lif.o.valid), lif.o.ready.eq(assembler.i.ready),
            assembler.i.payload.eq(lif.o.payload.spikes),
        ]
        for lane in range(lanes):
            m.d.comb += lif.i.payload.x[lane].eq(
                reader.o.payload.bits[lane * bits:(lane + 1) * bits].as_signed())
        wiring.connect(m, assembler.o, writer.i)
        with m.If(go):
            m.d.sync += [index.eq(0), group.eq(0)]
        with m.Elif(reader.o.valid & reader.o.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(group == G - 1):
                m.d.sync += group.eq(0)
            with m.Else():
                m.d.sync += group.eq(group + 1)

        busy = Signal()
        m.d.sync += go.eq(self.start & ~busy)
        m.d.comb += [reader.start.eq(go), writer.start.eq(go), assembler.start.eq(go),
                     self.busy.eq(busy), self.error.eq(reader.error | writer.error)]
        with m.If(self.start & ~busy):
            m.d.sync += [band.eq(self.band), stream_base.eq(self.stream_base),
                         out_base.eq(self.output_base), first.eq(self.first), busy.eq(1)]
        with m.Elif(busy & ~go & ~writer.busy):
            m.d.sync += busy.eq(0)
        return m
