"""Spike-map writer of the shared network: assemble spike beats into map rows, write them whole.

A spike map of ``C`` channels and side ``S`` is stored as ``G = ceil(C / lanes)`` channel groups,
``P`` of them packed side by side in a word (:class:`hw.plan.SharedMap`): group ``q``'s row
``y`` is in word ``base + (q // P) * S + y`` (``stride = S``), bank ``b`` of a word (bits ``b *
W .. b * W + W - 1``, ``W`` the widest side) holds channel ``q * lanes + b`` at bits ``(q % P) *
S + x`` = column ``x``.

:class:`SpikeMapWriter` takes beats of ``lanes`` spikes in one order, for ``heads`` maps of ``G``
groups one after another (``heads_m1``, ``head_stride`` from the descriptor): for head ``h``,
``y``, ``x``, ``g``: the spikes of channels ``(h * G + g) * lanes ..`` at ``(y, x)``, head ``h``'s
rows at ``base + h * head_stride + (g // P) * S + y``. A LIF step writes one head of all its
groups; an SDSA step writes its heads, ``G = ceil(head_width / lanes)`` groups each (the
attention maps are head-aligned, :class:`hw.plan.SharedMap` ``order``, and ``P`` divides ``G``).

Row assembly: a beat sets bit ``x`` of its row in one of two row buffers (slot ``g * S + x``);
when a row is complete, the other buffer takes the next row while this one is written out, one
map word (all banks) per cycle, ``ceil(G / P)`` words a row. A row of side ``S`` takes ``S * G``
beats, so a flush always ends before the next row completes. Word ``j`` of a row is the
buffer's bits from slot ``j * P * S`` on (``dst_word_bits`` apart); a multiplexer over only the
slots some map can start a word at picks it, and a beat writes its bit through the flip-flop's
enable. The counters carry registered "at the end" flags, updated from compares with the
descriptor's "minus two" limits one beat ahead. Words are written whole (``dst_mask`` clears the
bits beyond the ``P`` packed rows; no bit enables, which would cost block RAMs).

Ports
-----
config : In(StructLayout)
    :data:`SpikeMapWriter.FIELDS` of the step's descriptor (registers, stable during a step).
start : In(1)
    Pulse before the step's first beat: reset the counters to ``dst_base``.
i : In(stream.Signature(spikes))
    Spike beats; ``i.ready`` is always 1 (a flush never blocks a beat).
write : In(WritePort.Signature)
    The spike memory's write port (``en``, ``addr``, ``data``).
done : Out(1)
    Combinational: the step's final map word is written in this cycle.

Latency: the first word of a row is written in the cycle after the row's last beat, the row's
``ceil(G / P)`` words in consecutive cycles (each later word picked from the row buffer into a
register the cycle before). The descriptor is read at ``start`` only: beats and flushes read
the writer's own registered copy of it. Reference: :func:`map_image` (the memory the writer
leaves) and :func:`write_order` (the order it expects beats in). Tests: ``tests/test_mapwriter.py``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out


__all__ = ["SpikeMapWriter", "map_image", "write_order"]


def map_image(spikes, base: int, lanes: int, map_width: int, pack: int = 1) -> dict[int, int]:
    """Return ``{word address: word}`` of a spike map ``spikes[c][y][x]`` (0/1, ``C`` a multiple
    of ``lanes``) as the writer leaves it: group ``q``'s row ``y`` in word ``base + (q // pack)
    * S + y``, bank ``b`` = channel ``q * lanes + b`` at bits ``(q % pack) * S + x``, the bits
    beyond the packed rows 0 (a word's unused group slots hold 0 here)."""
    channels, side = len(spikes), len(spikes[0])
    image = {}
    for q in range(channels // lanes):
        for y in range(side):
            address = base + (q // pack) * side + y
            word = image.get(address, 0)
            for b in range(lanes):
                row = sum(int(spikes[q * lanes + b][y][x]) << x for x in range(side))
                word |= row << (b * map_width + (q % pack) * side)
            image[address] = word
    return image


def write_order(side: int, groups: int, heads: int = 1):
    """Return the ``(y, x, g)`` of each beat in order (``g``: the map's word group).

    ``heads`` maps of ``groups`` groups each, one after another (LIF beats: ``heads = 1``; an
    SDSA step: its heads, ``groups`` word groups a head)."""
    return [(y, x, h * groups + g) for h in range(heads) for y in range(side)
            for x in range(side) for g in range(groups)]


class SpikeMapWriter(wiring.Component):
    """Write LIF or SDSA spike beats into a banked spike-map memory (module docstring).

    Parameters
    ----------
    fields : dict
        Descriptor fields (``{name: shape}``) including :data:`FIELDS`.
    lanes, map_width : int
        Banks per word, bits per bank (``W``).
    depth : int
        Words of the spike memory (its write port's address width follows).
    address_width : int
        Bits of the address registers (the descriptor's base fields).
    max_groups : int
        Most channel groups of any map.
    maps : iterable of :class:`hw.plan.SharedMap`
        Every map the writer may write (``groups``, ``side``, ``pack``: the row buffer's size
        and the slots a word can start at).
    heads : int
        Most heads of any attention block (the head counter's range).
    """

    #: The descriptor fields the writer reads.
    FIELDS = ("dst_base", "dst_stride", "dst_side_m1", "dst_side_m2", "dst_mask",
              "dst_word_bits", "dst_words_m1", "dst_words_m2",
              "groups_m1", "groups_m2", "heads_m1", "heads_m2", "head_stride")

    def __init__(self, fields: dict, *, lanes: int, map_width: int, depth: int,
                 address_width: int, max_groups: int, maps, heads: int = 1):
        maps = list(maps)
        self._lanes, self._W, self._heads = lanes, map_width, heads
        self._max_groups = max_groups
        self._row_bits = max(2, max(info.groups * info.side for info in maps))
        self._word_starts = sorted({j * info.pack * info.side for info in maps
                                    for j in range(info.words)})
        self._md_w = address_width
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "start": In(1),
            "i": In(stream.Signature(unsigned(lanes))),
            "write": In(WritePort.Signature(addr_width=Shape.cast(range(depth)).width,
                                            shape=unsigned(lanes * map_width))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, W, heads = self._lanes, self._W, self._heads
        # ``desc`` (the sequencer's registers, shared with every unit) is read only at
        # ``start``; beats and flushes read ``run``, this writer's own copy of it, registered
        # beside its logic (the sequencer loads the descriptor the cycle before ``start`` and
        # the first beat comes after it).
        desc = self.config
        run = Signal(desc.shape(), name="wr_desc", reset_less=True)
        m.d.sync += run.eq(desc)
        md_w, RB = self._md_w, self._row_bits
        m.d.comb += self.i.ready.eq(1)
        wr_valid, wr_bits = self.i.valid, self.i.payload

        wr_y = Signal(range(W + 1), name="wr_y")
        wr_x = Signal(range(W + 1), name="wr_x")
        wr_g = Signal(range(self._max_groups + 1), name="wr_g")
        x_last = Signal(name="wr_x_last")
        y_last = Signal(name="wr_y_last")
        g_last = Signal(name="wr_g_last")
        wr_h = Signal(range(heads + 1), name="wr_h")
        h_last = Signal(name="wr_h_last")
        h_next_last = Signal(name="wr_h_next_last")
        final_beat = Signal(name="wr_final")
        one_side = Signal(name="wr_one_side")
        one_group = Signal(name="wr_one_group")
        x_next_last = Signal(name="wr_x_next_last")
        y_next_last = Signal(name="wr_y_next_last")
        g_next_last = Signal(name="wr_g_next_last")
        m.d.comb += [
            one_side.eq(run.dst_side_m1 == 0),
            one_group.eq(run.groups_m1 == 0),
            x_next_last.eq(wr_x == run.dst_side_m2),
            y_next_last.eq(wr_y == run.dst_side_m2),
            g_next_last.eq(wr_g == run.groups_m2),
            h_next_last.eq(wr_h == run.heads_m2),
        ]

        # (reset-less: a row is written before it is flushed, in every layer, as after a reset)
        row_buf = [[Signal(RB, name=f"row_{i}_{b}", reset_less=True) for b in range(lanes)]
                   for i in range(2)]
        fill = Signal(name="row_fill")
        slot = Signal(range(RB), name="row_slot")      # register: wr_g * side + wr_x
        # Row address in the map (without the flush's word offset): dst_base + y for a LIF
        # row, dst_base + head * head_stride + y for an SDSA row.
        row_addr = Signal(md_w, name="wr_row_addr")
        head_addr = Signal(md_w, name="wr_head_addr")
        fl_busy = Signal(name="fl_busy")
        fl_buf = Signal(name="fl_buf")
        fl_j = Signal.like(desc.dst_words_m1, name="fl_j")
        fl_more = Signal(name="fl_more")    # more words of this row follow the current one
        fl_final = Signal(name="fl_final")
        fl_addr = Signal(md_w, name="fl_addr")
        fl_slot = Signal(range(RB), name="fl_slot")   # register: (fl_j + 1) * dst_word_bits

        with m.If(wr_valid):
            for i in range(2):
                with m.If(fill == i):
                    for b in range(lanes):
                        m.d.sync += row_buf[i][b].bit_select(slot, 1).eq(wr_bits[b])
        # A row's word 0 (slot 0) goes to the memory straight from the row buffer; every later
        # word is picked a cycle ahead (``fl_slot`` runs one word ahead) into ``fl_next``, so
        # the multiplexer over every lane's row, steered by ``fl_slot``, ends at flip-flops,
        # not at the block RAMs' data inputs across the die.
        fl_first = Signal(name="fl_first")
        fl_next = Signal(lanes * W, name="fl_next", reset_less=True)
        flush_word = Signal(lanes * W, name="fl_word")
        for b in range(lanes):
            chosen = Signal(RB, name=f"fl_row_{b}")
            picked = Signal(W, name=f"fl_pick_{b}")
            first = Signal(W, name=f"fl_first_{b}")
            m.d.comb += chosen.eq(Mux(fl_buf, row_buf[1][b], row_buf[0][b]))
            with m.Switch(fl_slot):
                for start_bit in self._word_starts:
                    if start_bit:
                        with m.Case(start_bit):
                            m.d.comb += picked.eq(chosen[start_bit:])
            m.d.sync += fl_next[b * W:(b + 1) * W].eq(picked & run.dst_mask)
            m.d.comb += first.eq(chosen[:W] & run.dst_mask)
            m.d.comb += flush_word[b * W:(b + 1) * W].eq(
                Mux(fl_first, first, fl_next[b * W:(b + 1) * W]))
        m.d.comb += [self.write.addr.eq(fl_addr), self.write.data.eq(flush_word),
                     self.write.en.eq(fl_busy)]
        with m.If(fl_busy):
            m.d.sync += fl_first.eq(0)
            with m.If(~fl_more):
                m.d.sync += fl_busy.eq(0)
                m.d.comb += self.done.eq(fl_final)
            with m.Else():
                m.d.sync += [fl_j.eq(fl_j + 1), fl_addr.eq(fl_addr + run.dst_stride),
                             fl_slot.eq(fl_slot + run.dst_word_bits),
                             fl_more.eq(fl_j != run.dst_words_m2)]
        row_done = wr_valid & x_last & g_last
        m.d.comb += final_beat.eq(wr_valid & y_last & x_last & g_last & h_last)
        with m.If(row_done):
            m.d.sync += [fill.eq(~fill), fl_busy.eq(1), fl_buf.eq(fill), fl_addr.eq(row_addr),
                         fl_j.eq(0), fl_slot.eq(run.dst_word_bits), fl_first.eq(1),
                         fl_more.eq(run.dst_words_m1 != 0),
                         fl_final.eq(final_beat)]

        # One walk for both orders: LIF beats are one "head" (``heads_m1 = 0``); an SDSA head is
        # a map of ``groups`` word groups, after whose last row the next head begins
        # ``head_stride`` words on.
        with m.If(wr_valid):
            with m.If(g_last):
                m.d.sync += [wr_g.eq(0), g_last.eq(one_group),
                             slot.eq(Mux(x_last, 0, wr_x + 1))]
                with m.If(x_last):
                    m.d.sync += [wr_x.eq(0), x_last.eq(one_side)]
                    with m.If(y_last):
                        m.d.sync += [wr_y.eq(0), y_last.eq(one_side), wr_h.eq(wr_h + 1),
                                     h_last.eq(h_next_last),
                                     head_addr.eq(head_addr + run.head_stride),
                                     row_addr.eq(head_addr + run.head_stride)]
                    with m.Else():
                        m.d.sync += [wr_y.eq(wr_y + 1), y_last.eq(y_next_last),
                                     row_addr.eq(row_addr + 1)]
                with m.Else():
                    m.d.sync += [wr_x.eq(wr_x + 1), x_last.eq(x_next_last)]
            with m.Else():
                m.d.sync += [wr_g.eq(wr_g + 1), g_last.eq(g_next_last),
                             slot.eq(slot + run.dst_stride)]
        with m.If(self.start):
            m.d.sync += [wr_y.eq(0), wr_x.eq(0), wr_g.eq(0), slot.eq(0), fill.eq(0),
                         fl_busy.eq(0), x_last.eq(desc.dst_side_m1 == 0),
                         y_last.eq(desc.dst_side_m1 == 0),
                         g_last.eq(desc.groups_m1 == 0), row_addr.eq(desc.dst_base), wr_h.eq(0),
                         h_last.eq(desc.heads_m1 == 0),
                         head_addr.eq(desc.dst_base)]
        return m
