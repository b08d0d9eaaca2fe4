"""Stem convolution: the network's only layer on real values (pixel codes), multiplying them.

The stem computes ``acc[o, oy, ox] = bias[o] + sum over (i, ky, kx) of w[o, i, ky, kx] * p`` where
``p`` is the pixel code at ``(i, oy * stride - padding + ky, ox * stride - padding + kx)``, or the
channel's pad code ``pad_value[i]`` outside the image (``quant.intops.stem_conv``; the pad code is
the quantized zero of the normalized input, exactly as ``quant/`` pads).

Schedule: one output word (``lanes`` output channels at one position) at a time; each cycle issues
one tap: one weight word, one pixel and ``lanes`` multiply-accumulates. A pipeline of six stages,
0 to 5 (0: tap registers; 1: memory reads; 2: the weight word and pixel registered; 3 to 5: the
products by shift and add, one adder-tree level a stage) and the accumulator keep every path short: the tap's counters carry registered "last value" flags, and its
input coordinates and both memory addresses are registers stepped by constants (no compare on a
wide counter, no address sum from counters), so the addresses drive the memories straight from
registers; each adder-tree level has registers on both sides. Taps of consecutive output words follow
each other with no gap, so a run costs ``positions * G * Cin * k * k`` cycles plus the pipeline's
depth (:attr:`StemConv.cycles`), ``G = ceil(Cout / lanes)``. The whole pipeline stalls while the output
register holds a word nobody takes. The pixel memory is written through ``load_*`` before
``start``.

Weight memory: word ``((i * k + ky) * k + kx) * G + g`` holds lanes ``l`` = output channel
``g * lanes + l`` (lane 0 in the least significant bits; the synapse engine's layout, so
:func:`hw.accumulator.pack_weights` builds it). Pixel memory: word ``(i * H + y) * W + x``.

Row split (:func:`row_split`): when the output channels fill at most half the lanes (``Cout <=
lanes / 2``, one group), the two halves of the lanes work on two halves of the kernel's rows at
once: lanes ``0 .. lanes/2 - 1`` take rows ``0 .. kh - 1`` and lanes ``lanes/2 ..`` rows ``kh ..
k - 1`` (``kh = ceil(k / 2)``; the missing row of an odd kernel has zero weights), the second
pixel read from a second read port ``kh`` rows further down, and the output word adds the two
halves (channel ``o`` = lane ``o`` + lane ``o + lanes/2``; lanes from ``lanes/2`` on output 0).
A word then takes ``Cin * kh * k`` taps instead of ``Cin * k * k``: the demo's 7x7 stem (8
channels on 16 lanes) 28 cycles a position instead of 49. The weight word ``(i * kh + r) * k +
kx`` holds row ``r`` in the low half and row ``r + kh`` in the high half.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import pack_lanes, pack_weights, signed_width, synapse_output_layout
from hw.params import NO_RW_CHECK, bits_for, ceil_div, check_int

__all__ = ["StemConv", "stem_bound", "row_split"]


def row_split(cout: int, lanes: int, kernel: int) -> int:
    """Kernel-row halves worked on at once (module docstring): 2 when the output channels fit
    half the lanes and the kernel has two rows or more, else 1."""
    return 2 if kernel >= 2 and 2 * cout <= lanes else 1


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
        Output channels computed per cycle (one shift-and-add tree each, no hard multiplier;
        none for a lane whose weights are all 0, such as the padding lanes past ``Cout``).
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
        self._groups = ceil_div(cout, self._lanes)
        #: Kernel-row halves at once (:func:`row_split`) and rows per half.
        self._split = row_split(cout, self._lanes, kernel)
        self._rows = ceil_div(kernel, self._split)
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
    def split(self) -> int:
        """Kernel-row halves worked on at once (1 or 2, :func:`row_split`)."""
        return self._split

    @property
    def cycles(self) -> int:
        """Cycles from ``start`` to the last output beat without backpressure:
        ``positions * G * Cin * kh * k`` taps (``kh = ceil(k / split)`` rows), one per cycle,
        plus 7: the start register, then the last tap's way through stages 1 to 5 and the
        output register."""
        return self.positions * self._groups * self._cin * self._rows * self._kernel + 7

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one run (the dense count: every tap of every output)."""
        return self.positions * self._cout * self._cin * self._kernel ** 2

    def elaborate(self, platform):
        m = Module()
        lanes, groups, kernel = self._lanes, self._groups, self._kernel
        acc_width, w_width = self._accumulator_width, self._weight_width
        stride, padding = self._stride, self._padding
        height, width = self._height, self._width
        rows, split, half = self._rows, self._split, lanes // 2
        if split == 1:
            words = pack_weights("conv", self._weight, lanes=lanes, weight_width=w_width)
        else:
            # Row r of the low half and row r + kh of the high half in one word (zero rows past
            # the kernel).
            wide = np.zeros((lanes, self._cin, rows, kernel), dtype=np.int64)
            wide[:self._cout] = self._weight[:, :, :rows]
            wide[half:half + self._cout, :, :kernel - rows] = self._weight[:, :, rows:]
            words = [pack_lanes(wide[:, i, r, kx], w_width) for i in range(self._cin)
                     for r in range(rows) for kx in range(kernel)]
        # The weight memory is a ROM in LUTs. It is split into parts of 2 ** 5 words (a 5-input
        # function per bit, two LUT levels) read into registers in stage 1; stage 2 picks the
        # part, so neither step is a deep decode of the whole address.
        part_bits = min(5, bits_for(len(words)))
        part_words = 1 << part_bits
        weight_parts = []
        for index, base in enumerate(range(0, len(words), part_words)):
            chunk = words[base:base + part_words]
            part = Memory(shape=unsigned(lanes * w_width), depth=max(2, len(chunk)), init=chunk)
            m.submodules[f"weights_{index}"] = part
            weight_parts.append(part.read_port())
        # Pixels are loaded between runs, never while the stem reads them (``NO_RW_CHECK``).
        m.submodules.pixels = pixels = Memory(shape=unsigned(self._pixel_bits),
                                              depth=max(2, self.pixel_words), init=[],
                                              attrs=NO_RW_CHECK)
        padded = np.zeros(groups * lanes, dtype=np.int64)
        padded[:self._cout] = self._bias
        bias_words = [pack_lanes(padded[g * lanes:(g + 1) * lanes], acc_width)
                      for g in range(groups)]
        m.submodules.biases = biases = Memory(shape=unsigned(lanes * acc_width),
                                              depth=max(2, groups), init=bias_words)
        pixel_write = pixels.write_port()
        m.d.comb += [pixel_write.addr.eq(self.load_address), pixel_write.data.eq(self.load_data),
                     pixel_write.en.eq(self.load_enable)]
        pixel_read = pixels.read_port()
        # Row split: a second read port, ``kh`` rows below the first.
        pixel_read_b = pixels.read_port() if split > 1 else None
        bias_read = biases.read_port(domain="comb")  # a few words: LUTs, read from a register

        # The whole pipeline moves while the output register is free or being taken.
        enable = Signal()
        m.d.comb += enable.eq(~self.o.valid | self.o.ready)

        # Start: a pulse taken while idle waits a cycle in a register, so that the requester's
        # decode does not reach the tap registers. ``busy`` is a register too: set by the start,
        # cleared when the final output word is taken (then every stage is empty).
        start_pending = Signal()
        busy = Signal()
        m.d.sync += start_pending.eq(self.start & ~busy & ~start_pending)
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += busy.eq(0)
        with m.If(start_pending):
            m.d.sync += busy.eq(1)
        m.d.comb += self.busy.eq(busy | start_pending)

        # Stage 0: the current tap, all in registers (kx fastest, then ky, input channel, group,
        # position). Each counter has a registered "at its last value" flag; the word's last tap
        # and the run's last word have their own counters and flags; the tap's input coordinates
        # and both memory addresses are registers stepped by constants. So no compare on a wide
        # counter and no address sum lies before the memories or the tap registers' enables.
        taps = self._cin * rows * kernel
        words_total = self.positions * groups
        running = Signal()
        first = Signal()  # the tap is its output word's first
        word_last = Signal()  # the tap is its output word's last
        final_word = Signal()  # the word is the run's last
        tap = Signal(range(taps + 1))
        word = Signal(range(words_total + 1))
        position = Signal(range(self.positions + 1))
        counters = {name: (Signal(range(limit + 1), name=name), Signal(name=f"{name}_last"), limit)
                    for name, limit in (("kx", kernel), ("ky", rows), ("ci", self._cin),
                                        ("g", groups), ("ox", self._out_width))}
        kx_last, ky_last, g_last, ox_last = (counters[name][1]
                                             for name in ("kx", "ky", "g", "ox"))
        row_last = ky_last & kx_last
        run_last = final_word & word_last

        # Input coordinates (signed: the padding border is negative) and pixel addresses. The
        # pixel address is kept modulo 2 ** address bits: only taps inside the image read it.
        span = bits_for(max(height, width) * stride + kernel + padding + 2) + 2
        iy, ix = Signal(signed(span), name="iy"), Signal(signed(span), name="ix")
        iy0, ix0 = Signal(signed(span), name="iy0"), Signal(signed(span), name="ix0")
        address_bits = len(pixel_read.addr)
        pixel_address = Signal(address_bits)
        position_base = Signal(address_bits)  # address of (ci 0, iy0, ix0)
        row_base = Signal(address_bits)  # address of (ci 0, iy0, -padding)
        weight_address = Signal(bits_for(len(words)))

        def wrap(value):
            return Const(value % (1 << address_bits), address_bits)

        origin = wrap(-padding * width - padding)
        # Row split: the second pixel's address, ``kh`` rows below, stepped like the first
        # (each update one adder from a register, as the first's).
        pixel_address_b = Signal(address_bits)
        below = rows * width if split > 1 else 0

        def below_of(value):
            return (value + below)[:address_bits]

        def step(name, advance):
            """Count ``name`` up by one (``advance``) or back to 0; keep its last flag."""
            counter, last, limit = counters[name]
            if advance:
                m.d.sync += [counter.eq(counter + 1), last.eq(counter == limit - 2)]
            else:
                m.d.sync += [counter.eq(0), last.eq(limit == 1)]

        with m.If(start_pending):
            m.d.sync += [running.eq(1), first.eq(1), tap.eq(0), word_last.eq(taps == 1),
                         word.eq(0), final_word.eq(words_total == 1), position.eq(0),
                         iy.eq(-padding), ix.eq(-padding), iy0.eq(-padding), ix0.eq(-padding),
                         pixel_address.eq(origin), position_base.eq(origin),
                         pixel_address_b.eq(wrap(-padding * width - padding + below)),
                         row_base.eq(origin), weight_address.eq(0)]
            for name in counters:
                step(name, False)
        with m.Elif(running & enable):
            # After the run's last tap the tap registers step on once more; only ``running``
            # matters then, and the next start sets them all.
            m.d.sync += first.eq(word_last)
            with m.If(word_last):
                m.d.sync += [tap.eq(0), word_last.eq(taps == 1),
                             word.eq(word + 1), final_word.eq(word == words_total - 2)]
                with m.If(final_word):
                    m.d.sync += running.eq(0)
                for name in ("kx", "ky", "ci"):
                    step(name, False)
                with m.If(g_last):
                    # Next position: the same row one stride on, or the next row's start.
                    step("g", False)
                    m.d.sync += [position.eq(position + 1), weight_address.eq(0)]
                    with m.If(ox_last):
                        step("ox", False)
                        next_row = (row_base + stride * width)[:address_bits]
                        m.d.sync += [iy.eq(iy0 + stride), iy0.eq(iy0 + stride),
                                     ix.eq(-padding), ix0.eq(-padding),
                                     pixel_address.eq(next_row), position_base.eq(next_row),
                                     row_base.eq(next_row),
                                     pixel_address_b.eq(
                                         (row_base + (stride * width + below))[:address_bits])]
                    with m.Else():
                        step("ox", True)
                        next_position = (position_base + stride)[:address_bits]
                        m.d.sync += [iy.eq(iy0), ix.eq(ix0 + stride), ix0.eq(ix0 + stride),
                                     pixel_address.eq(next_position),
                                     position_base.eq(next_position),
                                     pixel_address_b.eq(
                                         (position_base + (stride + below))[:address_bits])]
                with m.Else():
                    # The same position's next group of output channels.
                    step("g", True)
                    m.d.sync += [iy.eq(iy0), ix.eq(ix0), pixel_address.eq(position_base),
                                 pixel_address_b.eq(below_of(position_base)),
                                 weight_address.eq(counters["g"][0] + 1)]
            with m.Else():
                m.d.sync += [tap.eq(tap + 1), word_last.eq(tap == taps - 2),
                             weight_address.eq(weight_address + groups)]
                with m.If(row_last):
                    step("ci", True)
                    step("ky", False)
                    step("kx", False)
                    channel_step = wrap(height * width - (rows - 1) * width - (kernel - 1))
                    m.d.sync += [iy.eq(iy0), ix.eq(ix0),
                                 pixel_address.eq(pixel_address + channel_step),
                                 pixel_address_b.eq(pixel_address_b + channel_step)]
                with m.Elif(kx_last):
                    step("ky", True)
                    step("kx", False)
                    row_step = wrap(width - (kernel - 1))
                    m.d.sync += [iy.eq(iy + 1), ix.eq(ix0),
                                 pixel_address.eq(pixel_address + row_step),
                                 pixel_address_b.eq(pixel_address_b + row_step)]
                with m.Else():
                    step("kx", True)
                    m.d.sync += [ix.eq(ix + 1), pixel_address.eq(pixel_address + 1),
                                 pixel_address_b.eq(pixel_address_b + 1)]

        def stage(name, fields):
            # Only a stage's valid bit is reset; its data registers are reset-less (a reset net
            # to every lane's registers is an FPGA routing load that changes nothing).
            return {key: Signal.like(value, name=f"{name}_{key}", reset_less=key != "valid")
                    for key, value in fields.items()}

        # Stage 1: the addresses go straight from the stage-0 registers to the memories
        # (synchronous reads); flags, the inside test and the channel's pad code wait beside them.
        m.d.comb += [pixel_read.addr.eq(pixel_address), pixel_read.en.eq(enable)]
        if pixel_read_b is not None:
            m.d.comb += [pixel_read_b.addr.eq(pixel_address_b), pixel_read_b.en.eq(enable)]
        for weight_read in weight_parts:
            m.d.comb += [weight_read.addr.eq(weight_address[:part_bits]),
                         weight_read.en.eq(enable)]
        ci = counters["ci"][0]
        pad_code = Signal(self._pixel_bits)
        with m.Switch(ci):
            for channel, code in enumerate(self._pad):
                with m.Case(channel):
                    m.d.comb += pad_code.eq(code)
        inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
        # The second half's row is ``kh`` further down (beyond the kernel its weights are 0).
        inside_b = (iy >= -rows) & (iy < height - rows) & (ix >= 0) & (ix < width)
        flags = {"valid": Signal(), "first": Signal(), "last": Signal(), "final": Signal(),
                 "g": counters["g"][0], "position": position}
        s1 = stage("s1", {**flags, "inside": Signal(), "inside_b": Signal(), "pad": pad_code,
                          "part": Signal(range(max(2, len(weight_parts))))})
        with m.If(enable):
            if len(weight_parts) > 1:
                m.d.sync += s1["part"].eq(weight_address[part_bits:])
            m.d.sync += [s1["valid"].eq(running), s1["first"].eq(first),
                         s1["last"].eq(word_last), s1["final"].eq(run_last),
                         s1["g"].eq(counters["g"][0]), s1["position"].eq(position),
                         s1["inside"].eq(inside), s1["inside_b"].eq(inside_b),
                         s1["pad"].eq(pad_code)]

        # Stage 2: the weight word and the pixel (or its pad code) in registers.
        pixel = Signal(signed(self._pixel_bits + 1))
        m.d.comb += pixel.eq(Mux(s1["inside"], Cat(pixel_read.data, Const(0, 1)),
                                 Cat(s1["pad"], Const(0, 1))).as_signed())
        weight_word = Signal(lanes * w_width)
        with m.Switch(s1["part"]):
            for index, weight_read in enumerate(weight_parts):
                with m.Case(index):
                    m.d.comb += weight_word.eq(weight_read.data)
        pixel_b = Signal.like(pixel)
        if pixel_read_b is not None:
            m.d.comb += pixel_b.eq(Mux(s1["inside_b"], Cat(pixel_read_b.data, Const(0, 1)),
                                       Cat(s1["pad"], Const(0, 1))).as_signed())
        s2 = stage("s2", {**flags, "pixel": pixel, "pixel_b": pixel_b, "weights": weight_word})
        with m.If(enable):
            m.d.sync += [s2[key].eq(s1[key]) for key in flags]
            m.d.sync += [s2["pixel"].eq(pixel), s2["pixel_b"].eq(pixel_b),
                         s2["weights"].eq(weight_word)]

        # Stages 3 to 5: the products by shift and add, without a multiplier. The pixel code is
        # unsigned (its sign bit is 0), so ``w * p`` is the sum of ``w << j`` over the code's set
        # bits ``j``: an adder tree over the code's bits, one level per stage (stage 5 adds what
        # is left), with registers between the levels. The tree stays in the logic fabric beside
        # the memories; a hard multiplier block (a row of its own on ECP5) cost two chip-long
        # routes in one cycle, the placed critical path.
        pixel_bits = self._pixel_bits
        product_width = w_width + pixel_bits + 1
        code_a = s2["pixel"][:pixel_bits]
        code_b = s2["pixel_b"][:pixel_bits]
        live = [lane for lane in range(lanes)
                if any((word >> (lane * w_width)) & ((1 << w_width) - 1) for word in words)]
        # (a lane whose weights are all 0, a padding lane, keeps product 0)

        def pairs(values):
            return [values[n] + values[n + 1] if n + 1 < len(values) else values[n]
                    for n in range(0, len(values), 2)]

        def level(name, lane, values, stage_flags):
            regs = [Signal(signed(product_width), name=f"{name}_{lane}_{n}", reset_less=True)
                    for n in range(len(values))]
            with m.If(enable):
                m.d.sync += [reg.eq(value) for reg, value in zip(regs, values)]
            return regs

        s3, s4 = stage("s3", flags), stage("s4", flags)
        s5 = stage("s5", {**flags, "products": Signal(data.ArrayLayout(signed(product_width),
                                                                         lanes))})
        with m.If(enable):
            m.d.sync += [s3[key].eq(s2[key]) for key in flags]
            m.d.sync += [s4[key].eq(s3[key]) for key in flags]
            m.d.sync += [s5[key].eq(s4[key]) for key in flags]
        for lane in live:
            weight = s2["weights"][lane * w_width:(lane + 1) * w_width].as_signed()
            code = code_b if split > 1 and lane >= half else code_a
            terms = [Mux(code[j], weight << j, 0) for j in range(pixel_bits)]
            first = level("s3_sum", lane, pairs(terms), flags)          # stage 3
            second = level("s4_sum", lane, pairs(first), flags)         # stage 4
            with m.If(enable):                                          # stage 5
                m.d.sync += s5["products"][lane].eq(sum(second[1:], second[0]))

        # Stage 6: accumulate from the bias; the word's last tap fills the output register.
        acc = Signal(data.ArrayLayout(signed(acc_width), lanes), reset_less=True)
        o_payload = Signal.like(self.o.payload, reset_less=True)   # data: o.valid gates it
        m.d.comb += self.o.payload.eq(o_payload)
        acc_next = Signal(data.ArrayLayout(signed(acc_width), lanes))
        m.d.comb += bias_read.addr.eq(s5["g"])
        for lane in range(lanes):
            bias = bias_read.data[lane * acc_width:(lane + 1) * acc_width].as_signed()
            m.d.comb += acc_next[lane].eq(Mux(s5["first"], bias, acc[lane])
                                          + s5["products"][lane])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(enable & s5["valid"]):
            m.d.sync += acc.eq(acc_next)
            with m.If(s5["last"]):
                if split > 1:
                    # Channel o: the low half's rows (lane o) plus the high half's (o + half).
                    m.d.sync += [o_payload.values[lane].eq(
                        acc_next[lane] + acc_next[lane + half] if lane < half else 0)
                        for lane in range(lanes)]
                else:
                    m.d.sync += o_payload.values.eq(acc_next)
                m.d.sync += [self.o.valid.eq(1),
                             o_payload.position.eq(s5["position"]),
                             o_payload.group.eq(s5["g"]), o_payload.last.eq(s5["final"])]
        return m
