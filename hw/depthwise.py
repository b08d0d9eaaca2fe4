"""A depthwise conv on spikes at the lane rate: the lanes share one spike's taps.

SepConv unfused (``docs/ablations.md``, "SepConv fused against unfused") begins with a
depthwise ``K x K`` conv (7x7 in the official model) on the spikes of ``Conv.lif2``. The dense
engine (:class:`hw.progengine.ProgEngine`) and :class:`hw.accumulator.SynapseEngine` put their
lanes on output channels, so a depthwise conv, one output channel a spike, keeps one lane in
``lanes`` busy. This unit puts the lanes on the *taps* of one spike instead: ``R`` kernel rows
of ``cols`` columns a cycle (``cols = 2**ceil(log2(K))``, ``R = lanes / cols``; 2 x 8 for a 7x7
on 16 lanes). Each lane is an accumulator bank: bank ``(r, b)`` holds the output pixels
``(yo, xo)`` with ``yo mod R == r`` and ``xo mod cols == b``, so the ``R x K`` taps of a cycle,
which land on ``R`` consecutive rows and ``K`` consecutive columns, reach ``R x K`` different
banks: no conflict, every cycle. Because all lanes work on the same spike, the load is balanced
whatever the channels' firing (a unit with one channel a lane, built first, spent 2.4x the mean
on the demo's busiest channel). The tap is registered, then each bank's address, then each
bank adds in four stages (read, the words registered, the weight selected, add and write),
forwarding the two sums a read misses.

Function (:func:`depthwise_reference`, the contract)
    ``out[c, y, x] = bias[c] + sum over ky, kx of weight[c, ky, kx] * s[c, y + ky - p,
    x + kx - p]``, ``p = K // 2``, zero spikes outside the map: stride 1, same size out as in
    (``quant.intops.depthwise_conv2d_spikes`` with ``padding = p``).

Ports
    ``config`` (In, :meth:`DepthwiseEngine.config_layout`): ``channels`` (``1 .. C``),
    ``height`` and ``width`` (``1 ..`` the maxima); held from ``start`` until ``busy`` falls.
    ``start`` (In): pulse to run the layer. ``busy`` (Out): from the cycle after ``start`` until
    the last output beat has been taken.
    ``i`` (In, ``stream.Signature(addressing_input_layout(max_width))``): the input rows,
    channel by channel, row by row (the ``(c, y)`` order of :class:`hw.rowreader.RowReader` and
    the map readers); bit ``x`` is column ``x``, bits from ``width`` up must be 0; ``last`` is
    not used. ``channels * height`` words.
    ``o`` (Out, :meth:`DepthwiseEngine.output_layout`): channel by channel, one beat a tile of
    ``R`` rows by ``cols`` columns, tiles row by row: ``sums[r * cols + b]`` is pixel ``(R *
    row + r, cols * col + b)`` of ``channel`` (0 outside the map), ``last`` on the layer's final
    beat. ``ceil(height / R) * ceil(width / cols)`` beats a channel (:func:`output_tiles`).

Cycles (:func:`depthwise_cycles`, exact when ``i`` is always valid and ``o`` always ready)
    A row with no spike takes one cycle. A spike at row ``y`` takes ``ceil(n / R)`` cycles, ``n``
    the kernel rows that land inside the map (``ceil(7 / 2) = 4`` in the middle of a large map,
    2 on a 4-row map); the next spike is found in the same cycle (a priority encoder over the
    row). A channel's tiles are read out of the other half of the banks (ping-pong)
    while the next channel adds, clearing them as they are read; channel ``c + 2`` waits until
    channel ``c``'s last beat has been taken. So the cycles are the rows' and spikes' cycles,
    plus the last channel's read-out, plus the stalls when a channel adds in fewer cycles than
    the read-out of the one before last takes.

Cost: ``lanes`` adders of the accumulator width; per bank two memories (the halves) of
``2**ceil(log2(ceil(max_height / R))) * 2**ceil(log2(ceil(max_width / cols)))`` words; one
weight ROM word of ``lanes`` weights per (channel, first kernel row ``k``): rows ``k .. k + R -
1``, so that a spike's cycles start at its first row inside the map (``R`` times the kernel's
bits, padded to ``2**ceil(log2(K))`` words a channel); a ``lanes``-way selection of a weight
per bank. No multiplier: addresses are bit slices and concatenations.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout
from hw.params import bits_for, ceil_div, check_int, log2_ceil
from quant.intops import depthwise_conv2d_spikes, signed_bits

__all__ = ["DepthwiseEngine", "depthwise_reference", "depthwise_cycles", "depthwise_geometry",
           "output_tiles", "spike_additions"]


def _kernel(weight) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.ndim == 4 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if weight.ndim != 3 or weight.shape[1] != weight.shape[2] or weight.shape[1] % 2 == 0 \
            or weight.shape[0] < 1:
        raise ValueError(f"weight must be [C, K, K] (or [C, 1, K, K]) with K odd, not shape "
                         f"{weight.shape}")
    if not np.issubdtype(weight.dtype, np.integer):
        raise ValueError(f"weight must be integers, not {weight.dtype}")
    return weight.astype(np.int64)


def depthwise_reference(spikes, weight, bias=None) -> np.ndarray:
    """What the unit computes for a ``[C, H, W]`` spike map: the same-size depthwise conv."""
    weight = _kernel(weight)
    return depthwise_conv2d_spikes(spikes, weight, bias, stride=1, padding=weight.shape[1] // 2)


def depthwise_geometry(kernel: int, lanes: int) -> tuple[int, int]:
    """``(R, cols)``: kernel rows a cycle and banks a row for a ``kernel x kernel`` depthwise
    conv on ``lanes`` lanes (module docstring)."""
    cols = 1 << log2_ceil(kernel)
    if lanes < cols or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two >= {cols} for a {kernel}x{kernel} "
                         f"kernel, not {lanes}")
    return lanes // cols, cols


def output_tiles(height: int, width: int, kernel: int, lanes: int) -> int:
    """Output beats a channel: tiles of ``R`` rows by ``cols`` columns."""
    rows, cols = depthwise_geometry(kernel, lanes)
    return ceil_div(height, rows) * ceil_div(width, cols)


def spike_additions(spikes, kernel: int) -> np.ndarray:
    """Additions per channel of a same-size ``kernel x kernel`` depthwise conv of ``spikes``
    (``[C, H, W]``): each spike's taps that fall inside the map."""
    spikes = np.asarray(spikes)
    _, height, width = spikes.shape
    p = kernel // 2
    rows = np.array([min(y + p, height - 1) - max(y - p, 0) + 1 for y in range(height)])
    cols = np.array([min(x + p, width - 1) - max(x - p, 0) + 1 for x in range(width)])
    return (spikes * rows[None, :, None] * cols[None, None, :]).sum(axis=(1, 2)).astype(np.int64)


def spike_cycles(y: int, height: int, kernel: int, lanes: int) -> int:
    """Cycles of one spike on row ``y``: its kernel rows inside the map, ``R`` a cycle."""
    rows, _ = depthwise_geometry(kernel, lanes)
    p = kernel // 2
    inside = min(kernel - 1, y + p) - max(0, y + p - (height - 1)) + 1
    return ceil_div(inside, rows)


def depthwise_cycles(spikes, kernel: int, lanes: int = 16) -> int:
    """Cycles from the one after ``start`` to the one that takes the last output beat, for a
    layer's ``[channels, H, W]`` spike map, with the input always valid and the output always
    ready (module docstring)."""
    spikes = np.asarray(spikes)
    channels, height, width = spikes.shape
    tiles = output_tiles(height, width, kernel, lanes)
    per_row = [spike_cycles(y, height, kernel, lanes) for y in range(height)]
    cycle = 1                 # the first row is taken in cycle 1
    taken = []                # per channel: the cycle its last beat is taken
    read_free = 0             # the read-out is free to start a channel from this cycle
    for c in range(channels):
        if c >= 2:            # channel c - 2's half of the banks is free
            cycle = max(cycle, taken[c - 2] + 1)
        for y in range(height):
            cycle += max(1, int(spikes[c, y].sum()) * per_row[y])
        # the channel's last tap was in this cycle, its last add five cycles later: the
        # read-out issues its first tile then at the earliest, then a tile a cycle, each beat
        # taken a cycle after
        start = max(cycle + 5, read_free)
        taken.append(start + tiles)
        read_free = start + tiles + 1
    return taken[-1]


def _join(low: int, bits: int, high):
    """``high * 2**bits + low``, built as a concatenation."""
    return Cat(Const(low, bits), high) if bits else high


class DepthwiseEngine(wiring.Component):
    """Same-size ``K x K`` depthwise conv on spikes, the lanes on one spike's taps (module
    docstring).

    Parameters
    ----------
    weight : integer array ``[C, K, K]`` (or ``[C, 1, K, K]``), K odd
        The kernels; built into the weight ROM.
    bias : integer array ``[C]`` or None
        Added to every output of a channel.
    lanes : int
        Accumulator banks and adders: a power of two, at least ``2**ceil(log2(K))``
        (default 16).
    max_height, max_width : int
        The largest map (>= 1).
    channel_base : bool
        Several layers in one build (the shared network): ``weight`` and ``bias`` are their
        channels one after another, and ``config`` has a ``base`` field, the layer's first
        channel in them (default False: one layer, no ``base``).
    """

    def __init__(self, weight, bias=None, *, lanes: int = 16, max_height: int,
                 max_width: int, channel_base: bool = False):
        self._weight = _kernel(weight)
        channels, kernel, _ = self._weight.shape
        self._bias = np.zeros(channels, np.int64) if bias is None else np.asarray(bias)
        if self._bias.shape != (channels,) or not np.issubdtype(self._bias.dtype, np.integer):
            raise ValueError(f"bias must be {channels} integers, not {self._bias.shape} "
                             f"{self._bias.dtype}")
        self._bias = self._bias.astype(np.int64)
        self._lanes = check_int("lanes", lanes, 1)
        self._rows, self._cols = depthwise_geometry(kernel, lanes)
        self._max_height = check_int("max_height", max_height, 1)
        self._max_width = check_int("max_width", max_width, 1)
        self._kernel = kernel
        self._channels = channels
        self._channel_base = bool(channel_base)
        flat = self._weight.reshape(channels, -1)
        low = int(np.minimum(flat, 0).sum(axis=1).min())
        high = int(np.maximum(flat, 0).sum(axis=1).max())
        self._acc_bits = signed_bits(min(low, low + int(self._bias.min()), 0),
                                     max(high, high + int(self._bias.max()), 0))
        self._weight_bits = signed_bits(min(int(flat.min()), 0), max(int(flat.max()), 0))
        super().__init__({
            "config": In(self.config_layout),
            "start": In(1),
            "busy": Out(1),
            "i": In(stream.Signature(addressing_input_layout(self._max_width))),
            "o": Out(stream.Signature(self.output_layout)),
        })

    @property
    def acc_bits(self) -> int:
        """Bits of an accumulator and of an output sum (bias included)."""
        return self._acc_bits

    @property
    def geometry(self) -> tuple[int, int]:
        """``(R, cols)``: kernel rows a cycle, banks a row."""
        return self._rows, self._cols

    @property
    def config_layout(self) -> data.StructLayout:
        fields = {
            "channels": unsigned(bits_for(self._channels + 1)),
            "height": unsigned(bits_for(self._max_height + 1)),
            "width": unsigned(bits_for(self._max_width + 1)),
        }
        if self._channel_base:
            fields["base"] = unsigned(bits_for(self._channels))
        return data.StructLayout(fields)

    @property
    def output_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "sums": data.ArrayLayout(signed(self._acc_bits), self._lanes),
            "channel": unsigned(bits_for(self._channels)),
            "row": unsigned(bits_for(ceil_div(self._max_height, self._rows))),
            "col": unsigned(bits_for(ceil_div(self._max_width, self._cols))),
            "last": 1,
        })

    def config_value(self, channels: int, height: int, width: int, base: int = 0) -> dict:
        """The ``config`` of a run, checked against the build (``base``: the layer's first
        channel, with ``channel_base``)."""
        check_int("base", base, 0, self._channels - 1 if self._channel_base else 0)
        check_int("channels", channels, 1, self._channels - base)
        check_int("height", height, 1, self._max_height)
        check_int("width", width, 1, self._max_width)
        value = {"channels": channels, "height": height, "width": width}
        if self._channel_base:
            value["base"] = base
        return value

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes, kernel, rows, cols = self._lanes, self._kernel, self._rows, self._cols
        p = kernel // 2
        rlog, clog = rows.bit_length() - 1, cols.bit_length() - 1
        klog = bits_for(kernel)
        tile_rows = ceil_div(self._max_height, rows)
        tile_cols = ceil_div(self._max_width, cols)
        alog, blog = bits_for(tile_rows), bits_for(tile_cols)
        coord = bits_for(max(self._max_height, self._max_width) + kernel + 1) + 1
        acc_shape = signed(self._acc_bits)

        # --- input rows: the row being walked, and the next row's coordinates ---
        in_c = Signal(range(self._channels + 1))
        in_y = Signal(range(self._max_height + 1))
        row = Signal(self._max_width)
        row_valid = Signal()
        wy = Signal(range(self._max_height + 1))
        wc = Signal(range(self._channels + 1))
        k_first, k_last = Signal(klog), Signal(klog)    # the row's kernel rows in the map
        half_busy = Signal(2)    # a channel adds in this half, or its read-out is not finished

        # --- the spike walker: the lowest spike of the row, R kernel rows a cycle ---
        sx = Signal(range(self._max_width))
        for x in reversed(range(self._max_width)):
            with m.If(row[x]):
                m.d.comb += sx.eq(x)
        in_spike = Signal()
        sp_x = Signal(range(self._max_width))
        sp_k = Signal(klog)
        tap_valid, tap_x, tap_k, last_k = Signal(), Signal.like(sp_x), Signal(klog), Signal()
        rest = Signal(self._max_width)     # the row's spikes after this one
        finishing = Signal()               # the row's last cycle
        accept = Signal()
        m.d.comb += [
            tap_valid.eq(row_valid & (in_spike | row.any())),
            tap_x.eq(Mux(in_spike, sp_x, sx)),
            tap_k.eq(Mux(in_spike, sp_k, k_first)),
            last_k.eq(tap_k + (rows - 1) >= k_last),
            # the row without its lowest spike, without the priority encoder in the path
            rest.eq(Mux(in_spike, row, row & (row - 1))),
            finishing.eq(row_valid & (~tap_valid | (last_k & (rest == 0)))),
            self.i.ready.eq(self.busy & (in_c != cfg.channels) & (~row_valid | finishing)
                            & ((in_y != 0) | ~half_busy.bit_select(in_c[0], 1))),
            accept.eq(self.i.valid & self.i.ready),
        ]

        def rows_inside(y_plus_p, size):
            # the first and last kernel rows that land inside the map
            over = Signal(signed(coord + 1))
            m.d.comb += over.eq(y_plus_p - (size - 1))
            return Mux(over > 0, over, 0), Mux(y_plus_p < kernel - 1, y_plus_p, kernel - 1)

        first_of_next, last_of_next = rows_inside(in_y + p, cfg.height)
        # ``height - 1`` and ``channels - 1`` registered likewise (the first row comes a cycle
        # after ``start`` at the earliest)
        height_m1 = Signal(range(self._max_height))
        channels_m1 = Signal(range(self._channels))
        m.d.sync += [height_m1.eq(cfg.height - 1), channels_m1.eq(cfg.channels - 1)]
        channel_done = Signal()
        ready_half = Signal(2)     # the channel in this half has added its last spike
        m.d.comb += channel_done.eq(finishing & (wy == height_m1))
        # three cycles later its last add is in C (stages T, A, I, R, S, C)
        done_late, done_later, done_latest = Signal(2), Signal(2), Signal(2)   # (valid, half)
        m.d.sync += [done_late.eq(Cat(channel_done & ~self.start, wc[0])),
                     done_later.eq(Mux(self.start, 0, done_late)),
                     done_latest.eq(Mux(self.start, 0, done_later))]
        with m.If(tap_valid):
            with m.If(~in_spike):
                m.d.sync += row.eq(rest)
            with m.If(last_k):
                m.d.sync += in_spike.eq(0)
            with m.Else():
                m.d.sync += [in_spike.eq(1), sp_x.eq(tap_x), sp_k.eq(tap_k + rows)]
        with m.If(accept):
            m.d.sync += [row.eq(self.i.payload.bits), row_valid.eq(1), wy.eq(in_y),
                         wc.eq(in_c), k_first.eq(first_of_next), k_last.eq(last_of_next)]
            with m.If(in_y == height_m1):
                m.d.sync += [in_y.eq(0), in_c.eq(in_c + 1)]
            with m.Else():
                m.d.sync += in_y.eq(in_y + 1)
        with m.Elif(finishing):
            m.d.sync += row_valid.eq(0)

        # --- per bank: the tap that lands in it; the tap is registered first (stage T), so
        # that the priority encoder and the banks' address arithmetic are not in one cycle ---
        t_valid, t_x, t_k, t_c = Signal(), Signal.like(sp_x), Signal(klog), Signal.like(wc)
        base_y = Signal(signed(coord + 1))     # the output row of the cycle's first kernel row
        m.d.sync += [t_valid.eq(tap_valid & ~self.start), t_x.eq(tap_x), t_k.eq(tap_k),
                     t_c.eq(wc), base_y.eq(wy + p - tap_k)]
        # then the add runs in four stages: I (issue: the bank and weight reads), R (the bank
        # word and the weight word registered raw), S (the bank's weight selected from the
        # word), C (add and write). A read in I misses the writes of the two taps before it (in C one and two
        # cycles later): C takes their sums instead when they wrote the same word.
        # stage A: each bank's address and weight element registered, before the reads
        a_valid, a_half = Signal(), Signal()
        a_k, a_c = Signal.like(t_k), Signal.like(t_c)
        if self._channel_base:   # the weight ROM's channel: the layer's base added here
            a_c = Signal(range(self._channels + 1))
            m.d.sync += a_c.eq(t_c + cfg.base)
        else:
            m.d.sync += a_c.eq(t_c)
        m.d.sync += [a_valid.eq(t_valid & ~self.start), a_half.eq(t_c[0]), a_k.eq(t_k)]
        s1_half, s2_half, s3_half = Signal(), Signal(), Signal()
        m.d.sync += [s1_half.eq(a_half), s2_half.eq(s1_half), s3_half.eq(s2_half)]

        # weights: word (channel, k) holds element (dy, dx) = weight[c, k + dy, dx]
        words = []
        for c in range(self._channels):
            for k in range(1 << klog):
                word = 0
                for dy in range(rows):
                    for dx in range(min(cols, kernel)):
                        ky = k + dy
                        if ky < kernel:
                            value = int(self._weight[c, ky, dx]) & ((1 << self._weight_bits) - 1)
                            word |= value << ((dy * cols + dx) * self._weight_bits)
                words.append(word)
        rom = Memory(shape=unsigned(lanes * self._weight_bits), depth=len(words), init=words)
        m.submodules.weights = rom
        w_read = rom.read_port()
        m.d.comb += [w_read.addr.eq(Cat(a_k, a_c[:bits_for(self._channels)])),
                     w_read.en.eq(a_valid)]
        word = Signal(lanes * self._weight_bits)
        m.d.sync += word.eq(w_read.data)
        elements = Array(word[e * self._weight_bits:(e + 1) * self._weight_bits].as_signed()
                         for e in range(lanes))

        # --- read-out: a tile a beat, from the half of the channel it reads ---
        ro_c = Signal(range(self._channels + 1))
        ro_a = Signal(alog)
        ro_b = Signal(blog)
        ro_active = Signal()
        ro_issue = Signal()
        ro_tile_end = Signal()
        advance = Signal()
        o_valid, o_last, o_end, o_half = Signal(), Signal(), Signal(), Signal()
        o_inside = Signal(lanes)
        clear_valid, clear_half = Signal(), Signal()
        clear_at = Signal(alog + blog)
        # the last tile's row and column, registered from the configuration (held from
        # ``start``; the read-out starts cycles later): no adder between the configuration's
        # registers, which may sit across the die, and the read-out's compares
        tiles_y_m1 = Signal(alog + 1)
        tiles_x_m1 = Signal(blog + 1)
        m.d.sync += [tiles_y_m1.eq(((cfg.height + rows - 1) >> rlog) - 1),
                     tiles_x_m1.eq(((cfg.width + cols - 1) >> clog) - 1)]
        m.d.comb += [
            ro_tile_end.eq((ro_a == tiles_y_m1) & (ro_b == tiles_x_m1)),
            advance.eq(~o_valid | self.o.ready),
            ro_issue.eq(ro_active & advance),
            self.o.valid.eq(o_valid),
            self.o.payload.last.eq(o_last),
        ]
        bias_rom = Memory(shape=acc_shape, depth=self._channels,
                          init=[int(b) for b in self._bias])
        m.submodules.bias = bias_rom
        b_read = bias_rom.read_port()
        # the channel's bias, read when its read-out is set going: not before the beat in the
        # output register (the channel before) is taken
        bias = Signal(acc_shape)
        ro_begin = Signal()
        m.d.comb += [ro_begin.eq(~ro_active & (ro_c != cfg.channels) & advance
                                 & ready_half.bit_select(ro_c[0], 1)),
                     b_read.addr.eq(ro_c + cfg.base if self._channel_base else ro_c),
                     b_read.en.eq(ro_begin)]
        m.d.sync += bias.eq(b_read.data)
        m.d.sync += clear_valid.eq(ro_issue)
        with m.If(ro_issue):
            m.d.sync += [clear_half.eq(ro_c[0]), clear_at.eq(Cat(ro_b, ro_a)),
                         o_half.eq(ro_c[0]), self.o.payload.channel.eq(ro_c),
                         self.o.payload.row.eq(ro_a), self.o.payload.col.eq(ro_b),
                         o_last.eq(ro_tile_end & (ro_c == channels_m1)),
                         o_end.eq(ro_tile_end)]
            for r in range(rows):
                for b in range(cols):
                    m.d.sync += o_inside[r * cols + b].eq(
                        (_join(r, rlog, ro_a) < cfg.height) & (_join(b, clog, ro_b) < cfg.width))
            with m.If(ro_b == tiles_x_m1):
                m.d.sync += [ro_b.eq(0), ro_a.eq(ro_a + 1)]
            with m.Else():
                m.d.sync += ro_b.eq(ro_b + 1)
            with m.If(ro_tile_end):
                m.d.sync += [ro_active.eq(0), ro_a.eq(0), ro_c.eq(ro_c + 1),
                             ready_half.bit_select(ro_c[0], 1).eq(0)]
        with m.Elif(ro_begin):
            m.d.sync += ro_active.eq(1)
        with m.If(advance):
            m.d.sync += o_valid.eq(ro_issue)

        # --- the banks ---
        for r in range(rows):
            for b in range(cols):
                lane = r * cols + b
                ty = Signal(signed(coord + 1), name=f"ty{lane}")
                tx = Signal(signed(coord + 1), name=f"tx{lane}")
                m.d.comb += [ty.eq(base_y - r), tx.eq(t_x + (p - b))]
                dy, dx = ty[:rlog] if rlog else Const(0, 1), tx[:clog]
                a, bc = ty >> rlog, tx >> clog
                inside = Signal(name=f"inside{lane}")
                m.d.comb += inside.eq(
                    t_valid & (ty >= 0) & (_join(r, rlog, a[:coord]) < cfg.height)
                    & (tx >= 0) & (_join(b, clog, bc[:coord]) < cfg.width)
                    & (dx < kernel) & (t_k + dy < kernel))
                at = alog + blog
                tap_at = Signal(at, name=f"a_at{lane}")
                tap_in = Signal(name=f"a_inside{lane}")
                tap_element = Signal(range(lanes), name=f"a_element{lane}")
                m.d.sync += [tap_at.eq(Cat(bc[:blog], a[:alog])), tap_in.eq(inside),
                             tap_element.eq(Cat(dx, dy) if rlog else dx)]
                s1_valid, s2_valid, s3_valid = (Signal(name=f"s{n}_valid{lane}") for n in (1, 2, 3))
                s1_at, s2_at, s3_at = (Signal(at, name=f"s{n}_at{lane}") for n in (1, 2, 3))
                s1_element, s2_element = (Signal(range(lanes), name=f"s{n}_element{lane}")
                                          for n in (1, 2))
                s2_sum, s3_sum = (Signal(acc_shape, name=f"s{n}_sum{lane}") for n in (2, 3))
                s3_weight = Signal(signed(self._weight_bits), name=f"s3_weight{lane}")
                # the writes of the two cycles before (C's sums), newest first
                w1_valid, w1_at, w1_half = (Signal(name=f"w1_valid{lane}"),
                                            Signal(at, name=f"w1_at{lane}"),
                                            Signal(name=f"w1_half{lane}"))
                w1_sum, w2_sum = (Signal(acc_shape, name=f"w{n}_sum{lane}") for n in (1, 2))
                total = Signal(acc_shape, name=f"total{lane}")
                # which sum C takes, chosen in S: the tap now in C (the write a cycle before
                # this one's C), the write of the cycle before that, or the bank's word
                take1, take2 = Signal(name=f"take1_{lane}"), Signal(name=f"take2_{lane}")
                reads = []
                for h in range(2):
                    bank = Memory(shape=acc_shape, depth=1 << (alog + blog), init=[])
                    m.submodules[f"bank{lane}_{h}"] = bank
                    write = bank.write_port()
                    read = bank.read_port(transparent_for=(write,))
                    computing = a_valid & (a_half == h)
                    adding = s3_valid & (s3_half == h)
                    m.d.comb += [
                        read.addr.eq(Mux(computing, tap_at, Cat(ro_b, ro_a))),
                        read.en.eq(Mux(computing, tap_in, ro_issue & (ro_c[0] == h))),
                        # add the tap's weight, or clear what the read-out read a cycle ago
                        write.addr.eq(Mux(adding, s3_at, clear_at)),
                        write.data.eq(Mux(adding, total, 0)),
                        write.en.eq(adding | (clear_valid & (clear_half == h))),
                    ]
                    reads.append(read.data)
                m.d.comb += total.eq(Mux(take1, w1_sum, Mux(take2, w2_sum, s3_sum)) + s3_weight)
                m.d.sync += [
                    take1.eq(s3_valid & (s3_at == s2_at) & (s3_half == s2_half)),
                    take2.eq(w1_valid & (w1_at == s2_at) & (w1_half == s2_half)),
                ]
                m.d.sync += [
                    s1_valid.eq(tap_in), s1_at.eq(tap_at), s1_element.eq(tap_element),
                    s2_valid.eq(s1_valid), s2_at.eq(s1_at), s2_element.eq(s1_element),
                    s2_sum.eq(Mux(s1_half, reads[1], reads[0])),
                    s3_valid.eq(s2_valid), s3_at.eq(s2_at), s3_sum.eq(s2_sum),
                    s3_weight.eq(elements[s2_element]),
                    w1_valid.eq(s3_valid), w1_at.eq(s3_at), w1_half.eq(s3_half),
                    w1_sum.eq(total),
                    w2_sum.eq(w1_sum),
                ]
                m.d.comb += self.o.payload.sums[lane].eq(
                    Mux(o_inside[lane], Mux(o_half, reads[1], reads[0]) + bias, 0))

        # --- the run ---
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), in_c.eq(0), in_y.eq(0), row_valid.eq(0),
                         in_spike.eq(0), ro_c.eq(0), ro_a.eq(0), ro_b.eq(0), ro_active.eq(0),
                         half_busy.eq(0), ready_half.eq(0)]
        with m.Else():
            with m.If(accept & (in_y == 0)):
                m.d.sync += half_busy.bit_select(in_c[0], 1).eq(1)
            with m.If(done_latest[0]):
                m.d.sync += ready_half.bit_select(done_latest[1], 1).eq(1)
            with m.If(o_valid & self.o.ready & o_end):
                m.d.sync += half_busy.bit_select(o_half, 1).eq(0)
                with m.If(o_last):
                    m.d.sync += self.busy.eq(0)
        return m
