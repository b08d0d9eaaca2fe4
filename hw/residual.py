"""Residual-stream units of the shared network: the write stage, the reader and the pool.

The residual-stream memory holds every stream at its own base (:class:`hw.plan.StreamPlace`):
word ``base + index`` holds ``lanes`` signed ``SB``-bit values. Three units work on it:

* :class:`StreamWriteStage` writes ``stream = (add ? stream : 0) + (value << shift)`` per lane
  (the stem's ``begin``, a layer's ``begin`` or membrane-shortcut ``add``); ``shift`` comes from
  its own shift ROM (one word of ``lanes`` amounts per channel group, at ``shift_base + group``).
* :class:`StreamReader` reads a stream's words in order (for the stream LIF and the pool), one a
  cycle, with the word's channel group.
* :class:`Pool` sums a stream's words per channel group over all positions (global average
  pooling's sum; the divide is folded into the threshold) and then feeds each group's sums to
  the LIF array, one group a beat.

Timing: no path runs from a memory's output through the shifter and adder into a memory's input
in one cycle (the write stage registers what the memories return first); the reader's word is
registered before it leaves.

Reference: :func:`stream_update` (the write stage) and :func:`pool_sums`. Tests:
``tests/test_residual.py``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out

__all__ = ["StreamWriteStage", "StreamReader", "Pool", "SpikeFetch", "stream_update",
           "pool_sums", "stream_beat_layout", "residual_spike_order"]


def stream_update(old: int, value: int, shift: int, add: bool, bits: int) -> int:
    """Return the new stream value, wrapped to ``bits`` signed bits as the memory keeps it."""
    new = (old if add else 0) + (value << shift)
    new &= (1 << bits) - 1
    return new - (1 << bits) if new >> (bits - 1) else new


def pool_sums(words, groups: int, lanes: int) -> list[int]:
    """Return ``groups * lanes`` sums: ``words[i]`` (lanes values) adds into group ``i % groups``."""
    sums = [0] * (groups * lanes)
    for i, word in enumerate(words):
        g = i % groups
        for lane in range(lanes):
            sums[g * lanes + lane] += word[lane]
    return sums


def stream_beat_layout(lanes: int, value_bits: int, address_width: int,
                       group_shape) -> data.StructLayout:
    """Payload of :class:`StreamWriteStage`'s input: one word's values and where they go."""
    return data.StructLayout({
        "addr": address_width,
        "values": data.ArrayLayout(signed(value_bits), lanes),
        "add": 1,       # 1: add into the stream; 0: begin it
        "last": 1,      # the step's final beat
        "group": group_shape,   # the beat's channel group (its shift word: shift_base + group)
    })


class StreamWriteStage(wiring.Component):
    """Add (or begin) one residual-stream word per beat: ``stream = old + (value << shift)``.

    A beat on ``i`` (always taken) is stage B: its address and values are registered, and the
    caller reads the stream word at ``i.payload.addr`` in the same cycle (its data, ``old``,
    arrives with stage B), while the stage reads the beat's shift word from its ROM. Stage C
    registers both, shifts, adds and writes. Consecutive beats write distinct words, so no
    forwarding is needed. ``written_last`` is high in the cycle the ``last`` beat is written
    (two cycles after it was offered).

    Ports
    -----
    config : In(StructLayout)
        ``shift_base`` of the step's descriptor.
    i : In(stream.Signature(stream_beat_layout(...), always_ready=True))
    old : In(ArrayLayout(signed(SB), lanes))
        The stream memory's read data (the word at the address offered a cycle earlier).
    write : In(WritePort.Signature)
        The stream memory's write port.
    written_last : Out(1)
    """

    FIELDS = ("shift_base",)

    def __init__(self, fields: dict, *, lanes: int, value_bits: int, stream_bits: int,
                 depth: int, address_width: int, group_shape, shift_bits: int,
                 shift_words: list[int]):
        self._lanes, self._SB, self._shift_bits = lanes, stream_bits, shift_bits
        self._shift_words = list(shift_words) or [0, 0]
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "i": In(stream.Signature(stream_beat_layout(lanes, value_bits, address_width,
                                                        group_shape), always_ready=True)),
            "old": In(data.ArrayLayout(signed(stream_bits), lanes)),
            "write": In(WritePort.Signature(addr_width=Shape.cast(range(depth)).width,
                                            shape=unsigned(lanes * stream_bits))),
            "written_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, SB, shift_bits = self._lanes, self._SB, self._shift_bits
        m.submodules.shifts = shifts = Memory(
            shape=unsigned(lanes * shift_bits), depth=max(2, len(self._shift_words)),
            init=self._shift_words)
        shift_read = shifts.read_port(domain="comb")   # a small ROM in LUTs
        # Stage B (registers of the offered beat; the shift word's address with it).
        sw = Signal.like(self.i.payload, name="sw", reset_less=True)
        sw_valid = Signal(name="sw_valid")
        sh_addr = Signal.like(self.config.shift_base, name="shift_read_addr")
        m.d.sync += [sw_valid.eq(self.i.valid), sw.eq(self.i.payload),
                     sh_addr.eq(self.config.shift_base + self.i.payload.group)]
        m.d.comb += shift_read.addr.eq(sh_addr)
        # Stage C: what the memories returned, registered; shift, add, write.
        sc_valid = Signal(name="sc_valid")
        sc_addr = Signal.like(sw.addr, name="sc_addr", reset_less=True)
        sc_last = Signal(name="sc_last")
        # (data registers are reset-less: their valid bits carry the reset)
        sc_old = Signal(data.ArrayLayout(signed(SB), lanes), name="sc_old", reset_less=True)
        sc_amounts = Signal(lanes * shift_bits, name="sc_amounts", reset_less=True)
        sc_values = Signal.like(sw.values, name="sc_values", reset_less=True)
        # The old word is gated by ``add`` before its register, so the add's fan-out (every
        # bit of every lane) ends at flip-flops instead of ahead of the lanes' carry chains.
        m.d.sync += [sc_valid.eq(sw_valid), sc_addr.eq(sw.addr),
                     sc_last.eq(sw_valid & sw.last), sc_old.eq(Mux(sw.add, self.old.as_value(), 0)),
                     sc_amounts.eq(shift_read.data), sc_values.eq(sw.values)]
        new_word = Signal(data.ArrayLayout(signed(SB), lanes), name="sw_word")
        for lane in range(lanes):
            amount = sc_amounts[lane * shift_bits:(lane + 1) * shift_bits]
            m.d.comb += new_word[lane].eq(sc_old[lane] + (sc_values[lane] << amount))
        m.d.comb += [self.write.addr.eq(sc_addr), self.write.data.eq(new_word.as_value()),
                     self.write.en.eq(sc_valid), self.written_last.eq(sc_last)]
        return m


class StreamReader(wiring.Component):
    """Read ``stream_words`` words of a stream from ``stream_base``, one a cycle.

    On ``start`` with ``is_reader`` it issues word ``i`` at ``addr = stream_base + i`` for ``i =
    0 ..``; the memory's data (``data``) is registered with the word's index, group (``i``
    modulo ``groups``) and a ``last`` flag, and leaves on ``o`` two cycles after its address
    (``o`` cannot be stalled: its consumers always take it).

    Ports
    -----
    config : In(StructLayout)
        ``is_reader``, ``stream_base``, ``stream_words_m1``, ``groups_m1``.
    start : In(1)
    addr : Out(address_width)
        The stream memory's read address (the caller enables the read while a reader step runs).
    data : In(ArrayLayout(signed(SB), lanes))
        The stream memory's read data.
    o : Out(stream.Signature(..., always_ready=True))
        ``index``, ``group``, ``last``, ``values``.
    """

    FIELDS = ("is_reader", "stream_base", "stream_words_m1", "groups_m1")

    def __init__(self, fields: dict, *, lanes: int, stream_bits: int, address_width: int):
        values = data.ArrayLayout(signed(stream_bits), lanes)
        self._address_width = address_width
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "start": In(1),
            "addr": Out(address_width),
            "data": In(values),
            "o": Out(stream.Signature(data.StructLayout({
                "index": address_width, "group": fields["groups_m1"], "last": 1,
                "values": values}), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        desc = self.config
        rd_busy = Signal(name="rd_busy")
        rd_i = Signal(self._address_width, name="rd_i")
        rd_g = Signal.like(desc.groups_m1, name="rd_g")
        rd_valid = Signal(name="rd_valid")
        rd_i_d = Signal.like(rd_i, name="rd_i_d")
        rd_g_d = Signal.like(rd_g, name="rd_g_d")
        rd_last_d = Signal(name="rd_last_d")
        # The read address is a register (``stream_base`` at ``start``, stepped with ``rd_i``),
        # and the walk compares with the reader's own registered copy of the descriptor (read
        # a cycle after ``start`` or later): the descriptor registers, shared across the die,
        # reach only flip-flops here.
        run = Signal(desc.shape(), name="rd_run_desc", reset_less=True)
        rd_addr = Signal(self._address_width, name="rd_addr")
        m.d.sync += run.eq(desc)
        m.d.comb += self.addr.eq(rd_addr)
        m.d.sync += [rd_valid.eq(rd_busy), rd_i_d.eq(rd_i), rd_g_d.eq(rd_g),
                     rd_last_d.eq(rd_busy & (rd_i == run.stream_words_m1))]
        with m.If(rd_busy):
            m.d.sync += [rd_i.eq(rd_i + 1), rd_addr.eq(rd_addr + 1),
                         rd_g.eq(Mux(rd_g == run.groups_m1, 0, rd_g + 1))]
            with m.If(rd_i == run.stream_words_m1):
                m.d.sync += rd_busy.eq(0)
        with m.If(self.start & desc.is_reader):
            m.d.sync += [rd_busy.eq(1), rd_i.eq(0), rd_g.eq(0), rd_addr.eq(desc.stream_base)]
        # The stream word is registered (pv_*) before it leaves.
        o_payload = Signal.like(self.o.payload, reset_less=True)   # data: o.valid gates it
        m.d.comb += self.o.payload.eq(o_payload)
        m.d.sync += [self.o.valid.eq(rd_valid), o_payload.group.eq(rd_g_d),
                     o_payload.index.eq(rd_i_d), o_payload.last.eq(rd_last_d),
                     o_payload.values.eq(self.data)]
        return m


class Pool(wiring.Component):
    """Sum a stream per channel group, then feed each group's sums to the LIF array.

    While ``is_pool``: every beat on ``i`` adds its values into group ``i.group``'s ``lanes``
    sums (cleared by ``start``); after the ``last`` beat, groups ``0 .. groups - 1`` leave on
    ``o`` (``index``: the group, ``x``: its sums), one a beat, read from the sums memory into
    the output register.

    The sums are one memory word of ``lanes`` sums a group, read asynchronously (LUT RAM on an
    FPGA), so the unit has ``lanes`` adders and no sum register a channel, whatever the number
    of groups (a register and an adder a channel would be 64 x ``sum_bits`` flip-flops on the
    demo, 360 on a 15M head). A group written since the last clear is marked in ``kept``; one
    that is not reads as zero, so ``start`` clears the sums in one cycle.

    A beat's add takes two stages so that no path holds both the memory read and the adder:
    the cycle a beat arrives its group's sums are read (``kept`` applied) into a register with
    the beat's values; the next cycle their sum is written back and the group marked kept. A
    read of the group being written that cycle (the next beat's, or the first group fired after
    the last beat) takes the sum being written instead of the memory's stale word. Latency and
    cycles are those of a register a channel: the first group is on ``o`` two cycles after the
    last beat, then one group a cycle while ``o.ready``.

    With ``passes`` (SEW: the head pools a stream of counts one producer map a pass) two more
    fields take part: a step with ``pool_acc`` keeps the sums at ``start`` (it adds to the
    previous pass's), and one with ``pool_more`` does not fire after its last beat (the next
    pass adds to its sums).

    Ports
    -----
    config : In(StructLayout)
        ``is_pool``, ``groups_m1`` (with ``passes``: ``pool_more``, ``pool_acc``).
    start : In(1)
    i : In(stream.Signature(..., always_ready=True))
        :class:`StreamReader`'s output.
    o : Out(stream.Signature(...))
        ``index``, ``x`` (``lanes`` signed ``sum_bits``-bit sums).
    """

    FIELDS = ("is_pool", "groups_m1")

    def __init__(self, fields: dict, *, lanes: int, groups: int, sum_bits: int, input_layout,
                 passes: bool = False):
        self._lanes, self._groups, self._sum_bits = lanes, groups, sum_bits
        self._passes = bool(passes)
        if passes:
            self.FIELDS = Pool.FIELDS + ("pool_more", "pool_acc")
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "start": In(1),
            "i": In(stream.Signature(input_layout, always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "index": fields["groups_m1"],
                "x": data.ArrayLayout(signed(sum_bits), lanes)}))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, groups, PB = self._lanes, self._groups, self._sum_bits
        desc = self.config
        beat = self.i.payload
        # The sums, a word of ``lanes`` sums a group, in a memory read asynchronously (LUT RAM
        # on an FPGA: no register and no adder a channel, one adder a lane). ``kept`` marks the
        # groups written since the sums were last cleared; a group not kept reads as zero, so
        # clearing takes one cycle. A pool never adds while it fires: one read port serves both.
        sums_layout = data.ArrayLayout(signed(PB), lanes)
        m.submodules.pool_sums = sums = Memory(shape=sums_layout, depth=max(2, groups), init=[])
        read = sums.read_port(domain="comb")
        write = sums.write_port()
        kept = Signal(max(2, groups), name="pool_kept")
        firing = Signal(name="pool_firing")
        fire_g = Signal.like(desc.groups_m1, name="pool_fire_g")
        # The add stage: the group, its sums as read and the beat's values, a cycle after the
        # beat; their sum is written back the same cycle.
        add_valid = Signal(name="pool_add_valid")
        add_group = Signal.like(beat.group, name="pool_add_group", reset_less=True)
        add_sums = Signal(sums_layout, name="pool_add_sums", reset_less=True)
        add_values = Signal.like(beat.values, name="pool_add_values", reset_less=True)
        m.d.comb += [write.addr.eq(add_group), write.en.eq(add_valid)]
        m.d.comb += [write.data[lane].eq(add_sums[lane] + add_values[lane])
                     for lane in range(lanes)]
        with m.If(add_valid):
            m.d.sync += kept.bit_select(add_group, 1).eq(1)
        # The addressed group's sums: the word being written if it is that group's (it lands
        # at the clock edge), else the memory's word, zero if the group is not kept.
        current = Signal(sums_layout, name="pool_current")
        stored = Mux(kept.bit_select(read.addr, 1), read.data.as_value(), 0)
        m.d.comb += [read.addr.eq(Mux(firing, fire_g, beat.group)),
                     current.eq(Mux(add_valid & (add_group == read.addr),
                                    write.data.as_value(), stored))]
        m.d.sync += add_valid.eq(desc.is_pool & self.i.valid)
        o_payload = Signal.like(self.o.payload, reset_less=True)   # data: o.valid gates it
        m.d.comb += self.o.payload.eq(o_payload)
        with m.If(desc.is_pool):
            with m.If(self.i.valid):
                m.d.sync += [add_group.eq(beat.group), add_sums.eq(current),
                             add_values.eq(beat.values)]
                with m.If(beat.last & ~desc.pool_more if self._passes else beat.last):
                    m.d.sync += [firing.eq(1), fire_g.eq(0)]
            with m.If(~self.o.valid | self.o.ready):
                m.d.sync += self.o.valid.eq(firing)
                with m.If(firing):
                    # groups 0 .. groups_m1 in turn, each read from the memory into the output
                    # register
                    m.d.sync += [o_payload.index.eq(fire_g), fire_g.eq(fire_g + 1),
                                 o_payload.x.eq(current)]
                    with m.If(fire_g == desc.groups_m1):
                        m.d.sync += firing.eq(0)
        clear = self.start & desc.is_pool
        if self._passes:
            clear &= ~desc.pool_acc
        with m.If(clear):
            m.d.sync += kept.eq(0)
        return m


class SpikeFetch(wiring.Component):
    """The spike under every stream word a :class:`StreamReader` walk visits (vanilla shortcut).

    While ``is_residual``: on ``start`` it walks positions ``y, x`` and channel groups ``g`` in
    the reader's order (word ``i = (y * S + x) * G + g``), one a cycle and in lockstep with the
    reader (both start on ``start``, both run ``stream_words`` words). In the cycle the reader
    issues word ``i`` it reads the spike-map word holding row ``y`` of group ``g``
    (``res_base + (g // P) * S + y``: ``S`` = ``res_stride``, ``P`` = ``res_pack_m1 + 1``); the
    next cycle it picks bit ``(g % P) * S + x`` of every bank and registers it, so ``bits``
    (one per lane) is valid with the reader's ``o`` two cycles after the address, as is the
    identity memory's word at ``ident_addr`` (``ibase | g``, read the cycle before). Stepping is
    by additions only (``(g // P) * S`` and ``(g % P) * S`` are registers stepped by ``S``).

    Ports
    -----
    config : In(StructLayout)
        ``is_residual``, ``res_base``, ``res_stride``, ``res_side_m1``, ``res_pack_m1``,
        ``groups_m1``, ``stream_words_m1``, ``ibase``.
    start : In(1)
    addr, en : Out
        The spike memory's read address and enable.
    data : In(lanes * W)
        The spike memory's read data (bank ``b`` is bits ``b * W ..``).
    bits : Out(lanes)
        The spikes of the word the reader's ``o`` carries.
    ident_addr : Out
        The identity memory's read address (its data belongs to the reader's next ``o``).

    Reference: :func:`residual_spike_order`. Tests: ``tests/test_residual.py``.
    """

    FIELDS = ("is_residual", "res_base", "res_stride", "res_side_m1", "res_pack_m1",
              "groups_m1", "stream_words_m1", "ibase")

    def __init__(self, fields: dict, *, lanes: int, map_width: int, address_width: int,
                 ident_width: int):
        self._lanes, self._W = lanes, map_width
        self._address_width = address_width
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "start": In(1),
            "addr": Out(address_width),
            "en": Out(1),
            "data": In(lanes * map_width),
            "bits": Out(lanes),
            "ident_addr": Out(ident_width),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, W = self._lanes, self._W
        desc = self.config
        busy = Signal(name="sf_busy")
        count = Signal.like(desc.stream_words_m1, name="sf_count")
        g = Signal.like(desc.groups_m1, name="sf_g")
        sub = Signal.like(desc.res_pack_m1, name="sf_sub")      # g % P
        x = Signal.like(desc.res_side_m1, name="sf_x")
        row = Signal(self._address_width, name="sf_row")        # res_base + y
        word = Signal(self._address_width, name="sf_word")      # row + (g // P) * S
        offset = Signal(range(W + 1), name="sf_offset")         # (g % P) * S
        bit_d = Signal(range(2 * W + 1), name="sf_bit_d")      # the bit, a cycle later
        g_d = Signal.like(g, name="sf_g_d")
        m.d.comb += [self.addr.eq(word), self.en.eq(busy)]
        m.d.sync += [bit_d.eq(offset + x), g_d.eq(g)]
        m.d.comb += self.ident_addr.eq(desc.ibase | g_d)
        with m.If(busy):
            m.d.sync += count.eq(count + 1)
            with m.If(count == desc.stream_words_m1):
                m.d.sync += busy.eq(0)
            with m.If(g == desc.groups_m1):
                m.d.sync += [g.eq(0), sub.eq(0), offset.eq(0)]
                with m.If(x == desc.res_side_m1):
                    m.d.sync += [x.eq(0), row.eq(row + 1), word.eq(row + 1)]
                with m.Else():
                    m.d.sync += [x.eq(x + 1), word.eq(row)]
            with m.Else():
                m.d.sync += g.eq(g + 1)
                with m.If(sub == desc.res_pack_m1):
                    m.d.sync += [sub.eq(0), offset.eq(0), word.eq(word + desc.res_stride)]
                with m.Else():
                    m.d.sync += [sub.eq(sub + 1), offset.eq(offset + desc.res_stride)]
        with m.If(self.start & desc.is_residual):
            m.d.sync += [busy.eq(1), count.eq(0), g.eq(0), sub.eq(0), x.eq(0), offset.eq(0),
                         row.eq(desc.res_base), word.eq(desc.res_base)]
        # The memory's word arrives the cycle after the address; the chosen bit of every bank
        # is registered with the reader's output register.
        for lane in range(lanes):
            bank = self.data[lane * W:(lane + 1) * W]
            m.d.sync += self.bits[lane].eq(bank.bit_select(bit_d, 1))
        return m


def residual_spike_order(spikes, groups: int, lanes: int) -> list[list[int]]:
    """Reference of :class:`SpikeFetch`: ``spikes[C, S, S]`` (0/1) -> the ``lanes`` spikes of
    every word ``i = (y * S + x) * groups + g`` in order (channel ``g * lanes + lane``, 0 past
    the map's channels)."""
    import numpy as np

    spikes = np.asarray(spikes)
    channels, side, _ = spikes.shape
    out = []
    for y in range(side):
        for x in range(side):
            for g in range(groups):
                out.append([int(spikes[c, y, x]) if (c := g * lanes + lane) < channels else 0
                            for lane in range(lanes)])
    return out
