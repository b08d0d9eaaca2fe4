"""Stem convolution: the network's only layer on real values (pixel codes), with multipliers.

The stem computes ``acc[o, oy, ox] = bias[o] + sum over (i, ky, kx) of w[o, i, ky, kx] * p`` where
``p`` is the pixel code at ``(i, oy * stride - padding + ky, ox * stride - padding + kx)``, or the
channel's pad code ``pad_value[i]`` outside the image (``quant.intops.stem_conv``; the pad code is
the quantized zero of the normalized input, exactly as ``quant/`` pads).

Schedule: one output word (``lanes`` output channels at one position) at a time; each cycle reads
one weight word and one pixel and performs ``lanes`` multiply-accumulates. An output word takes
``Cin * k * k`` cycles plus one to hand it on, so the stem costs ``positions * G * (Cin*k*k + 1)``
cycles, ``G = ceil(Cout / lanes)``. The pixel memory is written through ``load_*`` before ``start``.

Weight memory: word ``((i * k + ky) * k + kx) * G + g`` holds lanes ``l`` = output channel
``g * lanes + l`` (lane 0 in the least significant bits; the synapse engine's layout, so
:func:`hw.accumulator.pack_weights` builds it). Pixel memory: word ``(i * H + y) * W + x``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import pack_lanes, pack_weights, signed_width, synapse_output_layout
from hw.params import bits_for, check_int

__all__ = ["StemConv", "stem_bound"]


def stem_bound(weight: np.ndarray, bias: np.ndarray, pixel_max: int) -> int:
    """Return the largest ``|accumulator|`` any pixel codes in ``0..pixel_max`` can produce."""
    per_out = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1) * pixel_max
    return int((per_out + np.abs(bias)).max())


class StemConv(wiring.Component):
    """Convolve unsigned pixel codes with integer weights (multiply-accumulate, ``lanes`` wide).

    Parameters
    ----------
    weight : integer array ``[Cout, Cin, k, k]``
    bias : integer array ``[Cout]``
        Accumulator units; quant's stem bias already holds the zero-point correction.
    height, width : int
        Input image size.
    stride, padding : int
    pad_value : integer array ``[Cin]``
        Pixel code of the padding border per input channel (quant's ``pixel.zero_point``).
    pixel_bits : int
        Unsigned width of a pixel code.
    lanes : int
        Output channels computed per cycle (multipliers).
    accumulator_width : int, optional
        Default and minimum: what :func:`stem_bound` proves.

    Members
    -------
    load_address, load_data, load_enable : In
        Pixel memory write port (word ``(i * H + y) * W + x``).
    start : In(1)
        Pulse: compute the whole output map.
    o : Out(stream.Signature(synapse_output_layout(...)))
        Output words in order ``position * G + g`` (the synapse engine's bank order), ``last`` on
        the final one.
    busy : Out(1)
    """

    def __init__(self, *, weight, bias, height: int, width: int, stride: int = 1,
                 padding: int = 0, pad_value=0, pixel_bits: int = 8, lanes: int = 1,
                 accumulator_width: int | None = None):
        weight = np.asarray(weight)
        if weight.dtype.kind not in "iu" or weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
            raise ValueError(f"weight must be an integer [Cout, Cin, k, k] array, got "
                             f"{weight.dtype} {weight.shape}")
        self._weight = weight.astype(np.int64)
        cout, cin, kernel, _ = weight.shape
        self._bias = np.asarray(bias, dtype=np.int64).reshape(-1)
        if self._bias.shape[0] != cout:
            raise ValueError(f"bias has {self._bias.shape[0]} entries, weight {cout} outputs")
        self._height = check_int("height", height, 1)
        self._width = check_int("width", width, 1)
        self._stride = check_int("stride", stride, 1)
        self._padding = check_int("padding", padding, 0)
        self._pixel_bits = check_int("pixel_bits", pixel_bits, 1)
        self._lanes = check_int("lanes", lanes, 1)
        pad = np.broadcast_to(np.asarray(pad_value, dtype=np.int64).reshape(-1), (cin,))
        if pad.min() < 0 or pad.max() >= 1 << self._pixel_bits:
            raise ValueError(f"pad_value {pad.tolist()} is not a {pixel_bits}-bit code")
        self._pad = [int(v) for v in pad]
        self._cin, self._cout, self._kernel = cin, cout, kernel
        self._out_height = (self._height + 2 * self._padding - kernel) // self._stride + 1
        self._out_width = (self._width + 2 * self._padding - kernel) // self._stride + 1
        if self._out_height < 1 or self._out_width < 1:
            raise ValueError(f"kernel {kernel} leaves no output on a {height}x{width} image")
        self._groups = -(-cout // self._lanes)
        self._weight_width = signed_width(min(int(weight.min()), 0), max(int(weight.max()), 0))
        bound = stem_bound(self._weight, self._bias, (1 << self._pixel_bits) - 1)
        need = signed_width(-bound, bound)
        if accumulator_width is None:
            accumulator_width = need
        if accumulator_width < need:
            raise ValueError(f"accumulator_width {accumulator_width} is below the {need} bits "
                             f"the bound {bound} needs")
        self._accumulator_width = accumulator_width
        super().__init__({
            "load_address": In(bits_for(self.pixel_words)),
            "load_data": In(self._pixel_bits),
            "load_enable": In(1),
            "start": In(1),
            "busy": Out(1),
            "o": Out(stream.Signature(synapse_output_layout(
                self._lanes, self._accumulator_width, self.positions, self._groups))),
        })

    @property
    def lanes(self) -> int:
        """Output channels per cycle."""
        return self._lanes

    @property
    def groups(self) -> int:
        """Output words per position, ``ceil(Cout / lanes)``."""
        return self._groups

    @property
    def positions(self) -> int:
        """Output pixels."""
        return self._out_height * self._out_width

    @property
    def out_height(self) -> int:
        """Output rows."""
        return self._out_height

    @property
    def out_width(self) -> int:
        """Output columns."""
        return self._out_width

    @property
    def pixel_words(self) -> int:
        """Words of the pixel memory, ``Cin * H * W``."""
        return self._cin * self._height * self._width

    @property
    def accumulator_width(self) -> int:
        """Signed bits per output value."""
        return self._accumulator_width

    @property
    def cycles(self) -> int:
        """Cycles of one run without backpressure: ``positions * G * (Cin * k * k + 1)``."""
        return self.positions * self._groups * (self._cin * self._kernel ** 2 + 1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one run (the dense count: every tap of every output)."""
        return self.positions * self._cout * self._cin * self._kernel ** 2

    def elaborate(self, platform):
        m = Module()
        lanes, groups, kernel = self._lanes, self._groups, self._kernel
        acc_width, w_width = self._accumulator_width, self._weight_width
        words = pack_weights("conv", self._weight, lanes=lanes, weight_width=w_width)
        m.submodules.weights = weights = Memory(shape=unsigned(lanes * w_width),
                                                depth=max(2, len(words)), init=words)
        m.submodules.pixels = pixels = Memory(shape=unsigned(self._pixel_bits),
                                              depth=max(2, self.pixel_words), init=[])
        padded = np.zeros(groups * lanes, dtype=np.int64)
        padded[:self._cout] = self._bias
        bias_words = [pack_lanes(padded[g * lanes:(g + 1) * lanes], acc_width)
                      for g in range(groups)]
        m.submodules.biases = biases = Memory(shape=unsigned(lanes * acc_width),
                                              depth=max(2, groups), init=bias_words)
        pixel_write = pixels.write_port()
        m.d.comb += [pixel_write.addr.eq(self.load_address), pixel_write.data.eq(self.load_data),
                     pixel_write.en.eq(self.load_enable)]
        # Combinational reads: one weight word and one pixel per cycle, no pipeline to drain.
        weight_read = weights.read_port(domain="comb")
        pixel_read = pixels.read_port(domain="comb")
        bias_read = biases.read_port(domain="comb")

        oy = Signal(range(self._out_height + 1))
        ox = Signal(range(self._out_width + 1))
        g = Signal(range(groups + 1))
        ci = Signal(range(self._cin + 1))
        ky = Signal(range(kernel + 1))
        kx = Signal(range(kernel + 1))
        position = Signal(range(self.positions + 1))
        span = bits_for(max(self._height, self._width) * self._stride + kernel + 2) + 2
        iy = Signal(signed(span))
        ix = Signal(signed(span))
        m.d.comb += [
            iy.eq(oy * self._stride - self._padding + ky),
            ix.eq(ox * self._stride - self._padding + kx),
            weight_read.addr.eq(((ci * kernel + ky) * kernel + kx) * groups + g),
            pixel_read.addr.eq((ci * self._height + iy) * self._width + ix),
            bias_read.addr.eq(g),
        ]
        inside = (iy >= 0) & (iy < self._height) & (ix >= 0) & (ix < self._width)
        pad_code = Signal(self._pixel_bits)
        with m.Switch(ci):
            for channel, code in enumerate(self._pad):
                with m.Case(channel):
                    m.d.comb += pad_code.eq(code)
        pixel = Signal(signed(self._pixel_bits + 1))
        m.d.comb += pixel.eq(Cat(pixel_read.data, Const(0, 1)).as_signed())
        with m.If(~inside):
            m.d.comb += pixel.eq(Cat(pad_code, Const(0, 1)).as_signed())

        acc = Signal(data.ArrayLayout(signed(acc_width), lanes))
        running = Signal()
        m.d.comb += [
            self.busy.eq(running | self.o.valid),
            self.o.payload.values.eq(acc),
            self.o.payload.position.eq(position),
            self.o.payload.group.eq(g),
            self.o.payload.last.eq((position == self.positions - 1) & (g == groups - 1)),
        ]
        last_tap = (ci == self._cin - 1) & (ky == kernel - 1) & (kx == kernel - 1)
        with m.If(self.start & ~running & ~self.o.valid):
            m.d.sync += [running.eq(1), oy.eq(0), ox.eq(0), g.eq(0), ci.eq(0), ky.eq(0),
                         kx.eq(0), position.eq(0)]
            m.d.sync += [acc[lane].eq(bias_read.data[lane * acc_width:(lane + 1) * acc_width]
                                      .as_signed()) for lane in range(lanes)]
            m.d.comb += bias_read.addr.eq(0)
        with m.Elif(running):
            for lane in range(lanes):
                weight = weight_read.data[lane * w_width:(lane + 1) * w_width].as_signed()
                m.d.sync += acc[lane].eq(acc[lane] + weight * pixel)  # the stem's multipliers
            with m.If(last_tap):
                m.d.sync += [running.eq(0), self.o.valid.eq(1), ci.eq(0), ky.eq(0), kx.eq(0)]
            with m.Elif((ky == kernel - 1) & (kx == kernel - 1)):
                m.d.sync += [ci.eq(ci + 1), ky.eq(0), kx.eq(0)]
            with m.Elif(kx == kernel - 1):
                m.d.sync += [ky.eq(ky + 1), kx.eq(0)]
            with m.Else():
                m.d.sync += kx.eq(kx + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
            with m.If(~self.o.payload.last):
                # Next output word: next group, else next position; start from its bias.
                next_g = Signal.like(g)
                m.d.comb += next_g.eq(0)
                with m.If(g == groups - 1):
                    m.d.sync += [g.eq(0), position.eq(position + 1)]
                    with m.If(ox == self._out_width - 1):
                        m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                    with m.Else():
                        m.d.sync += ox.eq(ox + 1)
                with m.Else():
                    m.d.comb += next_g.eq(g + 1)
                    m.d.sync += g.eq(g + 1)
                m.d.comb += bias_read.addr.eq(next_g)
                m.d.sync += running.eq(1)
                m.d.sync += [acc[lane].eq(bias_read.data[lane * acc_width:(lane + 1) * acc_width]
                                          .as_signed()) for lane in range(lanes)]
        return m
