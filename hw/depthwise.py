"""A depthwise conv on spikes at the lane rate: one channel a lane, every lane its own adder.

SepConv unfused (``docs/ablations.md``, "SepConv fused against unfused") begins with a
depthwise ``K x K`` conv (7x7 in the official model) on the spikes of ``Conv.lif2``. The dense
engine (:class:`hw.progengine.ProgEngine`) puts its lanes on output channels, so a depthwise
conv, one output channel a spike, would use one lane in ``lanes``. This unit puts one *channel*
on each lane instead. A lane walks its own channel's spikes, and for each spike adds the
kernel's in-range taps into its own accumulator memory, one addition a cycle. The lanes share
nothing while they work, so a group of ``lanes`` channels runs at ``lanes`` additions a cycle,
less what the busiest lane has beyond the mean.

Function (:func:`depthwise_reference`, the contract)
    ``out[c, y, x] = bias[c] + sum over ky, kx of weight[c, ky, kx] * s[c, y + ky - p,
    x + kx - p]``, ``p = K // 2``, zero spikes outside the map: stride 1, same size out as in
    (``quant.intops.depthwise_conv2d_spikes`` with ``padding = p``).
Channel groups
    Lane ``j`` of group ``g`` is channel ``g * lanes + j``. Its kernel lies in the lane's weight
    ROM at ``(g, ky, kx)``, its bias in a constant chosen by ``g``. One ``start`` runs one group.

Ports
    ``config`` (In, :meth:`DepthwiseEngine.config_layout`): ``group``, ``channels`` (the group's
    channels, ``1 .. lanes``), ``height`` and ``width`` (``1 ..`` the maxima); held from
    ``start`` until ``busy`` falls. ``start`` (In): pulse to run a group. ``busy`` (Out): from the
    cycle after ``start`` until the last output beat has been taken.
    ``i`` (In, ``stream.Signature(addressing_input_layout(max_width))``): the group's input
    rows, channel by channel, row by row (the ``(c, y)`` order of
    :class:`hw.rowreader.RowReader` and the map readers); bit ``x`` is column ``x``, bits from
    ``width`` up must be 0; ``last`` is not used. ``channels * height`` words.
    ``o`` (Out, :meth:`DepthwiseEngine.output_layout`): one beat a pixel, row by row, ``last``
    on the final pixel; ``sums[j]`` is channel ``g * lanes + j``'s output there (0 for lanes
    ``>= channels``). ``height * width`` beats.

Cycles (:func:`depthwise_cycles`, exact when ``i`` is always valid and ``o`` always ready)
    Lane ``j`` holds its channel's map in registers once its ``height`` rows have arrived (one a
    cycle), then spends one cycle an addition: each spike takes as many cycles as it has taps
    inside the map, the next spike is found in the same cycle (a priority encoder over the
    rows, then over the row's bits), and empty rows cost nothing. The read-out starts when the
    last lane is done and gives a beat a cycle, clearing the accumulators as it reads them::

        cycles = max(channels * height + 1, max over j of (j + 1) * height + 1 + adds[j])
                 + 3 + height * width

Cost: per lane one adder of the accumulator width, a ``max_height x max_width`` spike buffer
in flip-flops, an accumulator memory of ``max_height * 2**ceil(log2(max_width))`` words and a
weight ROM of ``groups * 2**(2 * ceil(log2(K)))`` words. No multiplier: addresses are bit
concatenations. The next group's rows are not taken while a group reads out (not overlapped).
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

__all__ = ["DepthwiseEngine", "depthwise_reference", "depthwise_cycles", "lane_additions"]


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


def lane_additions(spikes, kernel: int) -> np.ndarray:
    """Additions per channel of a same-size ``kernel x kernel`` depthwise conv of ``spikes``
    (``[C, H, W]``): each spike's taps that fall inside the map."""
    spikes = np.asarray(spikes)
    _, height, width = spikes.shape
    p = kernel // 2
    rows = np.array([min(y + p, height - 1) - max(y - p, 0) + 1 for y in range(height)])
    cols = np.array([min(x + p, width - 1) - max(x - p, 0) + 1 for x in range(width)])
    return (spikes * rows[None, :, None] * cols[None, None, :]).sum(axis=(1, 2)).astype(np.int64)


def depthwise_cycles(spikes, kernel: int) -> int:
    """Cycles from ``start`` to the last output beat taken, for one group (``spikes`` is the
    group's ``[channels, H, W]`` map), with the input always valid and the output always ready
    (module docstring)."""
    spikes = np.asarray(spikes)
    channels, height, width = spikes.shape
    adds = lane_additions(spikes, kernel)
    compute = max([channels * height + 1]
                  + [(j + 1) * height + 1 + int(adds[j]) for j in range(channels)])
    return compute + 3 + height * width


class DepthwiseEngine(wiring.Component):
    """Same-size ``K x K`` depthwise conv on spikes, one channel a lane (module docstring).

    Parameters
    ----------
    weight : integer array ``[C, K, K]`` (or ``[C, 1, K, K]``), K odd
        The kernels; built into the lanes' ROMs.
    bias : integer array ``[C]`` or None
        Added to every output of a channel.
    lanes : int
        Channels a group (>= 1; default 16).
    max_height, max_width : int
        The largest map (>= 1).
    """

    def __init__(self, weight, bias=None, *, lanes: int = 16, max_height: int,
                 max_width: int):
        self._weight = _kernel(weight)
        channels, kernel, _ = self._weight.shape
        self._bias = np.zeros(channels, np.int64) if bias is None else np.asarray(bias)
        if self._bias.shape != (channels,) or not np.issubdtype(self._bias.dtype, np.integer):
            raise ValueError(f"bias must be {channels} integers, not {self._bias.shape} "
                             f"{self._bias.dtype}")
        self._bias = self._bias.astype(np.int64)
        self._lanes = check_int("lanes", lanes, 1)
        self._max_height = check_int("max_height", max_height, 1)
        self._max_width = check_int("max_width", max_width, 1)
        self._kernel = kernel
        self._groups = ceil_div(channels, lanes)
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
    def groups(self) -> int:
        return self._groups

    @property
    def config_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "group": unsigned(bits_for(self._groups)),
            "channels": unsigned(bits_for(self._lanes + 1)),
            "height": unsigned(bits_for(self._max_height + 1)),
            "width": unsigned(bits_for(self._max_width + 1)),
        })

    @property
    def output_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "sums": data.ArrayLayout(signed(self._acc_bits), self._lanes),
            "last": 1,
        })

    def config_value(self, group: int, channels: int, height: int, width: int) -> dict:
        """The ``config`` of one group, checked against the build."""
        check_int("group", group, 0, self._groups - 1)
        total = self._weight.shape[0]
        check_int("channels", channels, 1, min(self._lanes, total - group * self._lanes))
        check_int("height", height, 1, self._max_height)
        check_int("width", width, 1, self._max_width)
        return {"group": group, "channels": channels, "height": height, "width": width}

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes, kernel = self._lanes, self._kernel
        height, width = self._max_height, self._max_width
        p = kernel // 2
        klog = max(1, log2_ceil(kernel))
        hlog, wlog = max(1, log2_ceil(height)), max(1, log2_ceil(width))
        glog = bits_for(self._groups)
        acc_shape = signed(self._acc_bits)
        coord = max(hlog, wlog) + 2      # y + p and the like, unsigned with room

        # --- phases: load (rows in), compute (lanes walk their spikes), read out ---
        loading = Signal()
        computing = Signal()
        reading = Signal()
        load_c = Signal(range(max(lanes, 2)))
        load_y = Signal(range(max(height, 2)))
        load_take = Signal()
        load_end = Signal()
        m.d.comb += [
            self.i.ready.eq(loading),
            load_take.eq(self.i.valid & loading),
            load_end.eq((load_y == cfg.height - 1) & (load_c == cfg.channels - 1)),
        ]
        lane_done = Signal(lanes)

        # read-out address and output register
        r_y = Signal(range(max(height, 2)))
        r_x = Signal(range(max(width, 2)))
        r_last = Signal()
        o_valid = Signal()
        o_last = Signal()
        advance = Signal()
        r_issue = Signal()
        m.d.comb += [
            r_last.eq((r_y == cfg.height - 1) & (r_x == cfg.width - 1)),
            advance.eq(~o_valid | self.o.ready),
            r_issue.eq(reading & advance),
            self.o.valid.eq(o_valid),
            self.o.payload.last.eq(o_last),
        ]

        with m.If(self.start):
            m.d.sync += [loading.eq(1), computing.eq(1), reading.eq(0), load_c.eq(0),
                         load_y.eq(0), r_y.eq(0), r_x.eq(0), self.busy.eq(1)]
        with m.Else():
            with m.If(load_take):
                with m.If(load_y == cfg.height - 1):
                    m.d.sync += [load_y.eq(0), load_c.eq(load_c + 1)]
                with m.Else():
                    m.d.sync += load_y.eq(load_y + 1)
                with m.If(load_end):
                    m.d.sync += loading.eq(0)
            with m.If(computing & ~loading & lane_done.all()):
                m.d.sync += [computing.eq(0), reading.eq(1)]
            with m.If(advance):
                m.d.sync += o_valid.eq(reading)
            with m.If(r_issue):
                m.d.sync += o_last.eq(r_last)
                with m.If(r_x == cfg.width - 1):
                    m.d.sync += [r_x.eq(0), r_y.eq(r_y + 1)]
                with m.Else():
                    m.d.sync += r_x.eq(r_x + 1)
                with m.If(r_last):
                    m.d.sync += reading.eq(0)
            with m.If(o_valid & self.o.ready & o_last):
                m.d.sync += self.busy.eq(0)

        for j in range(lanes):
            self._lane(m, j, cfg, load_c, load_y, load_take, loading, computing, r_issue,
                       Cat(r_x[:wlog], r_y[:hlog]), lane_done, p, klog, hlog, wlog, glog,
                       acc_shape, coord)
        return m

    def _lane(self, m, j, cfg, load_c, load_y, load_take, loading, computing, r_issue,
              r_address, lane_done, p, klog, hlog, wlog, glog, acc_shape, coord):
        kernel, height, width = self._kernel, self._max_height, self._max_width
        rows = [Signal(width, name=f"l{j}_row{y}") for y in range(height)]
        loaded = Signal(name=f"l{j}_loaded")

        # the spike buffer: rows written as they arrive, bits cleared as spikes are taken
        nonempty = Signal(height, name=f"l{j}_nonempty")
        m.d.comb += nonempty.eq(Cat(*(row.any() for row in rows)))
        sy = Signal(range(max(height, 2)), name=f"l{j}_sy")     # the lowest non-empty row
        for y in reversed(range(height)):
            with m.If(nonempty[y]):
                m.d.comb += sy.eq(y)
        word = Signal(width, name=f"l{j}_word")
        m.d.comb += word.eq(Array(rows)[sy])
        sx = Signal(range(max(width, 2)), name=f"l{j}_sx")      # its lowest set bit
        for x in reversed(range(width)):
            with m.If(word[x]):
                m.d.comb += sx.eq(x)

        # the tap walker: (ky, kx) over the spike's in-range taps, output (yo, xo)
        active = Signal(name=f"l{j}_active")
        ky, kx = Signal(klog, name=f"l{j}_ky"), Signal(klog, name=f"l{j}_kx")
        ky1, kx0, kx1 = (Signal(klog, name=f"l{j}_{n}") for n in ("ky1", "kx0", "kx1"))
        yo, xo, xo0 = (Signal(coord, name=f"l{j}_{n}") for n in ("yo", "xo", "xo0"))
        last_tap = Signal(name=f"l{j}_last_tap")
        take = Signal(name=f"l{j}_take")
        m.d.comb += [
            last_tap.eq(active & (ky == ky1) & (kx == kx1)),
            take.eq(loaded & nonempty.any() & (~active | last_tap)),
        ]

        def low_high(s, size):
            # first tap k0 = max(0, s + p - (size - 1)), last tap k1 = min(K - 1, s + p),
            # first output s + p - k0 = min(s + p, size - 1)
            sp = Signal(coord)
            over = Signal(signed(coord + 1))
            m.d.comb += [sp.eq(s + p), over.eq(sp - (size - 1))]
            k0 = Mux(over > 0, over, 0)
            k1 = Mux(sp < kernel - 1, sp, kernel - 1)
            start = Mux(over > 0, size - 1, sp)
            return k0, k1, start

        y_k0, y_k1, y_start = low_high(sy, cfg.height)
        x_k0, x_k1, x_start = low_high(sx, cfg.width)
        with m.If(self.start):
            m.d.sync += [loaded.eq(0), active.eq(0)]
        with m.Elif(load_take & (load_c == j)):
            m.d.sync += Array(rows)[load_y].eq(self.i.payload.bits)
            with m.If(load_y == cfg.height - 1):
                m.d.sync += loaded.eq(1)
        with m.Elif(take):
            m.d.sync += [
                Array(rows)[sy].eq(word & ~(Const(1, width) << sx)),
                active.eq(1), ky.eq(y_k0), ky1.eq(y_k1), kx.eq(x_k0), kx0.eq(x_k0),
                kx1.eq(x_k1), yo.eq(y_start), xo.eq(x_start), xo0.eq(x_start),
            ]
        with m.Elif(last_tap):
            m.d.sync += active.eq(0)
        with m.Elif(active):
            with m.If(kx == kx1):
                m.d.sync += [kx.eq(kx0), xo.eq(xo0), ky.eq(ky + 1), yo.eq(yo - 1)]
            with m.Else():
                m.d.sync += [kx.eq(kx + 1), xo.eq(xo - 1)]

        # weights: the lane's ROM at (group, ky, kx); bias: a constant chosen by the group
        tap_words = 1 << (2 * klog)
        init = []
        for g in range(self._groups):
            page = [0] * tap_words
            c = g * self._lanes + j
            if c < self._weight.shape[0]:
                for a in range(kernel):
                    for b in range(kernel):
                        page[(a << klog) | b] = int(self._weight[c, a, b])
            init += page
        rom = Memory(shape=signed(self._weight_bits), depth=len(init), init=init)
        m.submodules[f"weights{j}"] = rom
        w_read = rom.read_port()
        biases = [int(self._bias[g * self._lanes + j])
                  if g * self._lanes + j < self._weight.shape[0] else 0
                  for g in range(self._groups)]
        bias = Array(Const(b, acc_shape) for b in biases)[cfg.group]

        # accumulators: read at the tap, written with the weight added one cycle later
        acc = Memory(shape=acc_shape, depth=height << wlog, init=[])
        m.submodules[f"acc{j}"] = acc
        a_read = acc.read_port()
        a_write = acc.write_port()
        pending = Signal(name=f"l{j}_pending")
        pending_at = Signal(hlog + wlog, name=f"l{j}_pending_at")
        tap_at = Cat(xo[:wlog], yo[:hlog])
        m.d.comb += [
            w_read.addr.eq(Cat(kx, ky, cfg.group[:glog])),
            w_read.en.eq(active),
            a_read.addr.eq(Mux(computing, tap_at, r_address)),
            a_read.en.eq(Mux(computing, active, r_issue)),
            # the read-out clears what it reads (the read port sees the old value)
            a_write.addr.eq(Mux(computing, pending_at, r_address)),
            a_write.data.eq(Mux(computing, a_read.data + w_read.data, 0)),
            a_write.en.eq(Mux(computing, pending, r_issue)),
            self.o.payload.sums[j].eq(Mux(j < cfg.channels, a_read.data + bias, 0)),
            lane_done[j].eq((j >= cfg.channels)
                            | (loaded & ~nonempty.any() & ~active & ~pending)),
        ]
        m.d.sync += [pending.eq(active & computing), pending_at.eq(tap_at)]
