"""Depthwise sums to spike rows: the bit planes that let SepConv's pointwise conv run on spikes.

SepConv unfused feeds the depthwise conv's integer sums to ``pwconv2``, a 1x1 conv. An integer
is the sum of its bits, so ``pwconv2(x) = sum over s, p of (-1)**s * 2**p * pwconv2(plane (s,
p) of x)``, where plane ``(s, p)`` is the binary map of bit ``p`` of ``|x|`` at the pixels whose
sign is ``s`` (0: positive, 1: negative; ``quant.intops.magnitude_planes``). Each plane is a
spike map, so ``pwconv2`` becomes an ordinary spike 1x1 conv over ``2 * P`` times as many input
channels, with the weights shifted and signed ahead of time (:func:`plane_weights`): the dense
engine (:class:`hw.progengine.ProgEngine`) runs it unchanged, one cycle per set bit and group of
output channels, with additions only. This unit turns :class:`hw.depthwise.DepthwiseEngine`'s
output tiles into those planes' rows, in the engine's input order.

Function (:func:`plane_frame`, the contract)
    For sums ``[C, H, W]`` and ``P`` planes, the frame is the spike map ``[C * 2 * P, H, W]``
    whose channel ``(c * 2 + s) * P + p`` is plane ``(s, p)`` of channel ``c``. With
    :func:`plane_weights`, ``conv2d_spikes(frame, weights, bias) == pwconv2(sums)`` exactly
    whenever every ``|sum| < 2**P``.

Ports
    ``config`` (In): ``channels``, ``height``, ``width``; held from ``start`` until ``busy``
    falls. ``start`` (In): pulse to run a layer. ``busy`` (Out): from the cycle after ``start``
    until the frame's last word has been taken. ``error`` (Out): sticky from the first sum
    inside the map whose magnitude needs more than ``P`` bits (its planes would be wrong);
    cleared by ``start``.
    ``i`` (In, :func:`tile_layout`): the depthwise engine's ``o``, channel by channel, tiles of
    ``R x cols`` pixels row by row.
    ``o`` (Out, ``stream.Signature(addressing_input_layout(max_width))``): the frame's rows,
    channel ``c'`` by channel, row by row, ``last`` on the final one: the input of a 1x1 conv.

Cycles: one output word a cycle, ``2 * P * height`` a channel. A channel's sums are held in one
of two halves (ping-pong), so channel ``c + 1`` arrives while channel ``c``'s planes go out;
channel ``c + 2`` waits until they have all gone.

Cost: two halves of ``R`` memories of ``ceil(max_height / R)`` words of ``cols *
ceil(max_width / cols)`` pixels of ``P + 1`` bits (a sign and a magnitude), written a pixel
group at a time; ``R * cols`` negations; ``max_width`` ``P``-way bit selections.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout
from hw.params import bits_for, ceil_div, check_int

__all__ = ["PlaneWriter", "plane_frame", "plane_weights", "tile_layout"]


def plane_frame(sums, planes: int) -> np.ndarray:
    """The spike frame of sums ``[C, H, W]``: channel ``(c * 2 + s) * P + p`` is bit ``p`` of
    ``|sum|`` where the sum's sign is ``s`` (module docstring). Refuses a magnitude of ``P``
    bits or more."""
    sums = np.asarray(sums, dtype=np.int64)
    if sums.ndim != 3:
        raise ValueError(f"sums must be [C, H, W], not shape {sums.shape}")
    check_int("planes", planes, 1, 62)
    magnitude = np.abs(sums)
    if magnitude.size and int(magnitude.max()) >> planes:
        raise ValueError(f"a sum of magnitude {int(magnitude.max())} needs more than {planes} "
                         f"planes")
    channels, height, width = sums.shape
    frame = np.zeros((channels, 2, planes, height, width), np.uint8)
    for s, where in enumerate((sums > 0, sums < 0)):
        for p in range(planes):
            frame[:, s, p] = ((magnitude >> p) & 1) * where
    return frame.reshape(channels * 2 * planes, height, width)


def plane_weights(weight, planes: int) -> np.ndarray:
    """The 1x1 conv weights ``[Cout, C * 2 * P, 1, 1]`` over :func:`plane_frame`'s channels:
    ``weight[o, c] * (-1)**s * 2**p`` (``weight`` is ``pwconv2``'s, ``[Cout, C]`` or ``[Cout,
    C, 1, 1]``)."""
    weight = np.asarray(weight, dtype=np.int64)
    if weight.ndim == 4 and weight.shape[2:] == (1, 1):
        weight = weight[:, :, 0, 0]
    if weight.ndim != 2:
        raise ValueError(f"weight must be [Cout, C] or [Cout, C, 1, 1], not shape "
                         f"{weight.shape}")
    check_int("planes", planes, 1, 62)
    scale = np.array([[(1 - 2 * s) << p for p in range(planes)] for s in range(2)])
    expanded = weight[:, :, None, None] * scale[None, None]
    return expanded.reshape(weight.shape[0], -1, 1, 1)


def tile_layout(sum_bits: int, rows: int, cols: int, max_channels: int, max_height: int,
                max_width: int) -> data.StructLayout:
    """The layout of a depthwise engine's output beat (:class:`hw.depthwise.DepthwiseEngine`'s
    ``output_layout``)."""
    return data.StructLayout({
        "sums": data.ArrayLayout(signed(sum_bits), rows * cols),
        "channel": unsigned(bits_for(max_channels)),
        "row": unsigned(bits_for(ceil_div(max_height, rows))),
        "col": unsigned(bits_for(ceil_div(max_width, cols))),
        "last": 1,
    })


class PlaneWriter(wiring.Component):
    """Depthwise sums (tiles) in, their bit planes out as spike rows (module docstring).

    Parameters
    ----------
    sum_bits : int
        Bits of a sum (the depthwise engine's ``acc_bits``).
    planes : int
        ``P``: magnitude bits kept (1 .. ``sum_bits``).
    rows, cols : int
        The tile: the depthwise engine's ``geometry``.
    max_channels, max_height, max_width : int
        The largest layer.
    """

    def __init__(self, *, sum_bits: int, planes: int, rows: int, cols: int, max_channels: int,
                 max_height: int, max_width: int):
        self._sum_bits = check_int("sum_bits", sum_bits, 2)
        self._planes = check_int("planes", planes, 1, sum_bits)
        self._rows = check_int("rows", rows, 1)
        self._cols = check_int("cols", cols, 1)
        if rows & (rows - 1) or cols & (cols - 1):
            raise ValueError(f"rows and cols must be powers of two, not {rows} and {cols}")
        self._max_channels = check_int("max_channels", max_channels, 1)
        self._max_height = check_int("max_height", max_height, 1)
        self._max_width = check_int("max_width", max_width, 1)
        super().__init__({
            "config": In(data.StructLayout({
                "channels": unsigned(bits_for(max_channels + 1)),
                "height": unsigned(bits_for(max_height + 1)),
                "width": unsigned(bits_for(max_width + 1)),
            })),
            "start": In(1),
            "busy": Out(1),
            "error": Out(1),
            "i": In(stream.Signature(tile_layout(sum_bits, rows, cols, max_channels,
                                                 max_height, max_width))),
            "o": Out(stream.Signature(addressing_input_layout(max_width))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols, planes = self._rows, self._cols, self._planes
        rlog, clog = rows.bit_length() - 1, cols.bit_length() - 1
        tiles_x_max = ceil_div(self._max_width, cols)
        slots = tiles_x_max * cols                  # pixels a buffer word
        depth = ceil_div(self._max_height, rows)
        pixel = planes + 1                          # magnitude, then the sign on top
        # the last tile's row and column, ``height - 1`` and ``channels - 1``, registered from
        # the configuration (held from ``start``; the first tile comes cycles later)
        tiles_y_m1 = Signal(range(depth + 1))
        tiles_x_m1 = Signal(range(tiles_x_max + 1))
        height_m1 = Signal(range(self._max_height))
        channels_m1 = Signal(range(self._max_channels))
        m.d.sync += [tiles_y_m1.eq(((cfg.height + rows - 1) >> rlog) - 1),
                     tiles_x_m1.eq(((cfg.width + cols - 1) >> clog) - 1),
                     height_m1.eq(cfg.height - 1), channels_m1.eq(cfg.channels - 1)]

        full = Signal(2)          # a half holds a whole channel whose planes are not all out
        # --- receive: a tile's rows into the half of its channel, one pixel group each ---
        beat = self.i.payload
        r_half = beat.channel[0]
        take = Signal()
        m.d.comb += [self.i.ready.eq(self.busy & ~full.bit_select(r_half, 1)),
                     take.eq(self.i.valid & self.i.ready)]
        tile_end = (beat.row == tiles_y_m1) & (beat.col == tiles_x_m1)
        magnitudes = []
        for lane in range(rows * cols):
            value = beat.sums[lane]
            magnitude = Signal(self._sum_bits, name=f"magnitude{lane}")
            m.d.comb += magnitude.eq(Mux(value < 0, -value, value))
            magnitudes.append((magnitude, value < 0))
            r, b = divmod(lane, cols)
            inside = (Cat(Const(b, clog), beat.col) < cfg.width) if clog else \
                (beat.col < cfg.width)
            inside &= (Cat(Const(r, rlog), beat.row) < cfg.height) if rlog else \
                (beat.row < cfg.height)
            with m.If(take & inside & (magnitude >> planes != 0)):
                m.d.sync += self.error.eq(1)

        memories = {}
        for h in range(2):
            for r in range(rows):
                memory = Memory(shape=unsigned(slots * pixel), depth=depth, init=[])
                m.submodules[f"half{h}_row{r}"] = memory
                write = memory.write_port(granularity=cols * pixel)
                word = Cat(*(Cat(magnitudes[r * cols + b][0][:planes],
                                 magnitudes[r * cols + b][1]) for b in range(cols)))
                m.d.comb += [write.addr.eq(beat.row), write.data.eq(word.replicate(tiles_x_max))]
                for block in range(tiles_x_max):
                    m.d.comb += write.en[block].eq(take & (r_half == h) & (beat.col == block))
                memories[h, r] = memory.read_port()

        # --- emit: for each channel, sign, plane and row, one word ---
        e_c = Signal(range(self._max_channels + 1))
        e_s = Signal()
        e_p = Signal(range(max(planes, 2)))
        e_y = Signal(range(max(self._max_height, 2)))
        emitting = Signal()
        issue = Signal()
        advance = Signal()
        o_valid, o_last, o_end = Signal(), Signal(), Signal()
        o_s, o_p, o_half = Signal(), Signal(range(max(planes, 2))), Signal()
        o_r = Signal(range(max(rows, 2)))
        row_end, plane_end, channel_end = Signal(), Signal(), Signal()
        m.d.comb += [
            emitting.eq(self.busy & (e_c != cfg.channels) & full.bit_select(e_c[0], 1)),
            advance.eq(~o_valid | self.o.ready),
            issue.eq(emitting & advance),
            row_end.eq(e_y == height_m1),
            plane_end.eq(row_end & (e_p == planes - 1)),
            channel_end.eq(plane_end & e_s),
            self.o.valid.eq(o_valid),
            self.o.payload.last.eq(o_last),
        ]
        for (h, r), read in memories.items():
            m.d.comb += [read.addr.eq(e_y >> rlog),
                         read.en.eq(issue & (e_c[0] == h) & (e_y[:rlog] == r if rlog else 1))]
        with m.If(advance):
            m.d.sync += o_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [o_s.eq(e_s), o_p.eq(e_p), o_half.eq(e_c[0]),
                         o_r.eq(e_y[:rlog] if rlog else 0),
                         o_end.eq(channel_end),
                         o_last.eq(channel_end & (e_c == channels_m1))]
            with m.If(~row_end):
                m.d.sync += e_y.eq(e_y + 1)
            with m.Else():
                m.d.sync += e_y.eq(0)
                with m.If(e_p != planes - 1):
                    m.d.sync += e_p.eq(e_p + 1)
                with m.Else():
                    m.d.sync += [e_p.eq(0), e_s.eq(~e_s)]
                    with m.If(e_s):
                        m.d.sync += e_c.eq(e_c + 1)
        word = Signal(slots * pixel)
        m.d.comb += word.eq(memories[0, 0].data)
        for (h, r), read in memories.items():
            with m.If((o_half == h) & (o_r == r)):
                m.d.comb += word.eq(read.data)
        for x in range(self._max_width):
            value = word[x * pixel:(x + 1) * pixel]
            m.d.comb += self.o.payload.bits[x].eq(
                value[:planes].bit_select(o_p, 1) & (value[planes] == o_s) & (x < cfg.width))

        # --- the run ---
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), self.error.eq(0), full.eq(0), e_c.eq(0), e_s.eq(0),
                         e_p.eq(0), e_y.eq(0)]
        with m.Else():
            with m.If(take & tile_end):
                m.d.sync += full.bit_select(r_half, 1).eq(1)
            with m.If(o_valid & self.o.ready & o_end):
                m.d.sync += full.bit_select(o_half, 1).eq(0)
                with m.If(o_last):
                    m.d.sync += self.busy.eq(0)
        return m
