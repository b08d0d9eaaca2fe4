"""Stem convolution: the network's only layer on real values (pixel codes), with multipliers.

The stem computes ``acc[o, oy, ox] = bias[o] + sum over (i, ky, kx) of w[o, i, ky, kx] * p`` where
``p`` is the pixel code at ``(i, oy * stride - padding + ky, ox * stride - padding + kx)``, or the
channel's pad code ``pad_value[i]`` outside the image (``quant.intops.stem_conv``; the pad code is
the quantized zero of the normalized input, exactly as ``quant/`` pads).

Schedule: one output word (``lanes`` output channels at one position) at a time; each cycle issues
one tap: one weight word, one pixel and ``lanes`` multiply-accumulates. A five-stage pipeline
(counters; input coordinates; memory reads; registered weight word and pixel; registered products;
accumulate) keeps every path short: address arithmetic by constants is shifts and adds
(:func:`hw.params.times`), and the multipliers have registers on both sides. Taps of consecutive
output words follow each other with no gap, so a run costs ``positions * G * Cin * k * k`` cycles
plus the pipeline's depth, ``G = ceil(Cout / lanes)``. The whole pipeline stalls while the output
register holds a word nobody takes. The pixel memory is written through ``load_*`` before
``start``.

Weight memory: word ``((i * k + ky) * k + kx) * G + g`` holds lanes ``l`` = output channel
``g * lanes + l`` (lane 0 in the least significant bits; the synapse engine's layout, so
:func:`hw.accumulator.pack_weights` builds it). Pixel memory: word ``(i * H + y) * W + x``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import pack_lanes, pack_weights, signed_width, synapse_output_layout
from hw.params import bits_for, check_int, times

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
        """Cycles from ``start`` to the last output beat without backpressure:
        ``positions * G * Cin * k * k`` taps, one per cycle, plus the pipeline's 5 stages."""
        return self.positions * self._groups * self._cin * self._kernel ** 2 + 5

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one run (the dense count: every tap of every output)."""
        return self.positions * self._cout * self._cin * self._kernel ** 2

    def elaborate(self, platform):
        m = Module()
        lanes, groups, kernel = self._lanes, self._groups, self._kernel
        acc_width, w_width = self._accumulator_width, self._weight_width
        stride, padding = self._stride, self._padding
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
        weight_read = weights.read_port()
        pixel_read = pixels.read_port()
        bias_read = biases.read_port(domain="comb")  # a few words: LUTs, read from a register

        # The whole pipeline moves while the output register is free or being taken.
        enable = Signal()
        m.d.comb += enable.eq(~self.o.valid | self.o.ready)

        # Stage 0: tap counters (kx fastest, then ky, input channel, group, position).
        running = Signal()
        oy = Signal(range(self._out_height + 1))
        ox = Signal(range(self._out_width + 1))
        g = Signal(range(groups + 1))
        ci = Signal(range(self._cin + 1))
        ky = Signal(range(kernel + 1))
        kx = Signal(range(kernel + 1))
        position = Signal(range(self.positions + 1))
        word_first = (ci == 0) & (ky == 0) & (kx == 0)
        word_last = (ci == self._cin - 1) & (ky == kernel - 1) & (kx == kernel - 1)
        run_last = word_last & (position == self.positions - 1) & (g == groups - 1)
        with m.If(self.start & ~running & ~self.busy):
            m.d.sync += [running.eq(1), oy.eq(0), ox.eq(0), g.eq(0), ci.eq(0), ky.eq(0),
                         kx.eq(0), position.eq(0)]
        with m.Elif(running & enable):
            with m.If(run_last):
                m.d.sync += running.eq(0)
            with m.Elif(word_last):
                m.d.sync += [ci.eq(0), ky.eq(0), kx.eq(0)]
                with m.If(g == groups - 1):
                    m.d.sync += [g.eq(0), position.eq(position + 1)]
                    with m.If(ox == self._out_width - 1):
                        m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                    with m.Else():
                        m.d.sync += ox.eq(ox + 1)
                with m.Else():
                    m.d.sync += g.eq(g + 1)
            with m.Elif((ky == kernel - 1) & (kx == kernel - 1)):
                m.d.sync += [ci.eq(ci + 1), ky.eq(0), kx.eq(0)]
            with m.Elif(kx == kernel - 1):
                m.d.sync += [ky.eq(ky + 1), kx.eq(0)]
            with m.Else():
                m.d.sync += kx.eq(kx + 1)

        def stage(name, fields):
            return {key: Signal.like(value, name=f"{name}_{key}") for key, value in fields.items()}

        # Stage 1: input coordinates (constant factors as shifts and adds: hw.params.times).
        span = bits_for(max(self._height, self._width) * stride + kernel + padding + 2) + 2
        flags = {"valid": Signal(), "first": Signal(), "last": Signal(), "final": Signal(),
                 "g": g, "position": position}
        s1 = stage("s1", {**flags, "ci": ci, "ky": ky, "kx": kx,
                          "iy": Signal(signed(span)), "ix": Signal(signed(span))})
        with m.If(enable):
            m.d.sync += [s1["valid"].eq(running), s1["first"].eq(word_first),
                         s1["last"].eq(word_last), s1["final"].eq(run_last), s1["g"].eq(g),
                         s1["position"].eq(position), s1["ci"].eq(ci), s1["ky"].eq(ky),
                         s1["kx"].eq(kx),
                         s1["iy"].eq(times(oy, stride) + ky - padding),
                         s1["ix"].eq(times(ox, stride) + kx - padding)]

        # Stage 2: addresses go to the memories (synchronous reads); flags wait beside them.
        iy, ix = s1["iy"], s1["ix"]
        inside = (iy >= 0) & (iy < self._height) & (ix >= 0) & (ix < self._width)
        m.d.comb += [
            weight_read.addr.eq(times(times(times(s1["ci"], kernel) + s1["ky"], kernel)
                                      + s1["kx"], groups) + s1["g"]),
            pixel_read.addr.eq(times(times(s1["ci"], self._height) + iy, self._width) + ix),
            weight_read.en.eq(enable), pixel_read.en.eq(enable),
        ]
        pad_code = Signal(self._pixel_bits)
        with m.Switch(s1["ci"]):
            for channel, code in enumerate(self._pad):
                with m.Case(channel):
                    m.d.comb += pad_code.eq(code)
        s2 = stage("s2", {**flags, "inside": Signal(), "pad": pad_code})
        with m.If(enable):
            m.d.sync += [s2[key].eq(s1[key]) for key in flags]
            m.d.sync += [s2["inside"].eq(inside), s2["pad"].eq(pad_code)]

        # Stage 3: the weight word and the pixel (or its pad code) in registers.
        pixel = Signal(signed(self._pixel_bits + 1))
        m.d.comb += pixel.eq(Mux(s2["inside"], Cat(pixel_read.data, Const(0, 1)),
                                 Cat(s2["pad"], Const(0, 1))).as_signed())
        s3 = stage("s3", {**flags, "pixel": pixel, "weights": weight_read.data})
        with m.If(enable):
            m.d.sync += [s3[key].eq(s2[key]) for key in flags]
            m.d.sync += [s3["pixel"].eq(pixel), s3["weights"].eq(weight_read.data)]

        # Stage 4: products in registers (the stem's multipliers, inputs and outputs registered).
        product_width = w_width + self._pixel_bits + 1
        products = Signal(data.ArrayLayout(signed(product_width), lanes))
        s4 = stage("s4", flags)
        with m.If(enable):
            m.d.sync += [s4[key].eq(s3[key]) for key in flags]
            for lane in range(lanes):
                weight = s3["weights"][lane * w_width:(lane + 1) * w_width].as_signed()
                m.d.sync += products[lane].eq(weight * s3["pixel"])  # the stem's multipliers

        # Stage 5: accumulate from the bias; the word's last tap fills the output register.
        acc = Signal(data.ArrayLayout(signed(acc_width), lanes))
        acc_next = Signal(data.ArrayLayout(signed(acc_width), lanes))
        m.d.comb += bias_read.addr.eq(s4["g"])
        for lane in range(lanes):
            bias = bias_read.data[lane * acc_width:(lane + 1) * acc_width].as_signed()
            m.d.comb += acc_next[lane].eq(Mux(s4["first"], bias, acc[lane]) + products[lane])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(enable & s4["valid"]):
            m.d.sync += acc.eq(acc_next)
            with m.If(s4["last"]):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.values.eq(acc_next),
                             self.o.payload.position.eq(s4["position"]),
                             self.o.payload.group.eq(s4["g"]),
                             self.o.payload.last.eq(s4["final"])]
        busy_stages = s1["valid"] | s2["valid"] | s3["valid"] | s4["valid"]
        m.d.comb += self.busy.eq(running | busy_stages | self.o.valid)
        return m
