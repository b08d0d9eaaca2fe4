"""Spike-map reader of the shared network: one read port feeds the engine and the SDSA units.

The spike memory's layout is :class:`hw.plan.SharedMap`'s (see :mod:`hw.mapwriter`). One
:class:`SpikeMapReader` serves both consumers of the memory's single read port:

* **Engine feed** (``is_layer``): the step's source map, channel-major, row-minor: for channel
  ``c`` (bank ``c % lanes`` of group ``q = c // lanes``, ``P`` groups packed a word), row ``y``,
  the ``S``-bit row at bits ``(q % P) * S ..`` of the bank of word ``src_base + (q // P) *
  src_stride + y`` (``src_stride = S``), shifted down and masked (``src_mask``) to a ``W``-bit
  row word, on stream ``o`` with ``last`` on the map's final row (the input of
  :class:`hw.progengine.ProgEngine`).
* **SDSA feed** (``is_sdsa``): for each head ``h`` (``G`` channel groups: head-aligned maps,
  :class:`hw.plan.SharedMap` ``order``; ``P`` divides ``G``), each token ``(y, x)``: bit ``(g %
  P) * S + x`` of every bank of the q, k and v maps' words ``{q,k,v}_base + h * head_stride + (g
  // P) * src_stride + y`` for ``g < G``, read one word a cycle (q's groups, then k's, then v's)
  and offered together on stream ``sdsa`` (group ``g`` in row bits ``g * lanes ..``). Dense
  maps (``dense``) hold head ``h`` from channel ``h * d`` on: the feed reads the words that
  hold it (one more than ``G`` when it straddles a further word) and hands over its ``d``
  bits, shifted down and masked. With ``values=False`` (SDSA-2,
  which has no V map) only the q and k words are read and the beat holds no ``v``. The grid's
  side, the heads and ``G`` come from the step's descriptor, so blocks of different shapes share
  the reader.

Timing (ECP5): a block RAM's output is slow (5.8 ns clock-to-output on grade 6), so the whole
output word is registered first and nothing but that register follows the memory: in two
copies, ``spike_word`` for the engine feed's bank multiplexer and ``sd_word`` for the SDSA
feed's bit select (one register feeding both multiplexers, which cut the word along different
axes, was a routing hot spot); for the engine the chosen bank is registered again (``fo``), and
the packed row's offset multiplexer and the side's mask sit behind that register, on the way
into the engine's input register. Each
stage holds its beat until the next one takes it; behind the last (``fo``) a skid register takes
the beat the engine refuses, so the stages advance on flip-flops alone and the engine's ready
reaches only the skid (the beats reach the engine in the same cycles as without it). Both read addresses live in registers stepped
by additions; the SDSA's reads go through one more address register. An SDSA read returns three
cycles after its request (address register, memory, ``sd_word``): a token is offered
``3 n + 4`` cycles after the feed starts or after the previous token is taken, ``n`` the words
the head reads a row (``G``, or one more for a dense map's straddling head; ``2 n + 4`` with
``values=False``; 7 and 6 for a head of one word).

Ports
-----
config : In(StructLayout)
    :data:`SpikeMapReader.FIELDS` of the step's descriptor (registers, stable during a step).
start : In(1)
    Pulse at the step's start: begin the feed its descriptor names (``is_layer`` or ``is_sdsa``).
read : In(ReadPort.Signature)
    The spike memory's synchronous read port.
o : Out(stream.Signature(addressing_input_layout(W)))
    Row words for the engine (``bits``, ``last``).
sdsa : Out(stream.Signature(q, k, v))
    One token of one head: ``head_groups * lanes``-bit q, k and v rows (no v with
    ``values=False``); a head of fewer groups leaves the upper bits stale.

Reference: :func:`engine_feed_order` and :func:`sdsa_feed_order`. Tests:
``tests/test_mapreader.py``.
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout

__all__ = ["SpikeMapReader", "engine_feed_order", "sdsa_feed_order", "sdsa_head_row",
           "sdsa_rows_layout"]


def engine_feed_order(channels: int, height: int, lanes: int, base: int, stride: int,
                      pack: int = 1):
    """Return ``[(word address, bank, bit offset)]`` of the engine feed's beats, in order
    (``pack`` groups a word, ``stride`` words and bits apart)."""
    return [(base + (c // lanes // pack) * stride + y, c % lanes,
             (c // lanes % pack) * stride)
            for c in range(channels) for y in range(height)]


def sdsa_feed_order(side: int, heads: int, stride: int, groups: int = 1, pack: int = 1,
                    dense: tuple[int, int] | None = None):
    """Return ``[(head, y, x, reads)]`` of the SDSA feed's beats, in order: a beat's q, k and v
    rows are, for each word group ``g`` of the head (``groups`` groups a head, group ``g``'s
    channels in row bits ``g * lanes ..``), bit ``bit`` of the words ``{q,k,v}_base + offset``,
    ``reads`` the ``(offset, bit)`` pairs (``pack`` groups a word, dividing ``groups``;
    ``stride`` words and bits apart). ``dense=(d, lanes)``: the maps are dense (``pack`` groups
    a word, any), head ``h`` reads the groups from ``h * d // lanes`` that hold its channels
    ``h * d ..``, one more than ``groups`` when it straddles a further word; its row is those
    words' bits shifted down and masked (:func:`sdsa_head_row`)."""
    if dense is not None:
        d, lanes = dense
        spans = [(h * d // lanes, -(-(h * d % lanes + d) // lanes)) for h in range(heads)]
        return [(h, y, x, tuple(((first + g) // pack * stride + y,
                                 (first + g) % pack * stride + x) for g in range(count)))
                for h, (first, count) in enumerate(spans)
                for y in range(side) for x in range(side)]
    return [(h, y, x, tuple(((h * groups + g) // pack * stride + y,
                             (g % pack) * stride + x)
                            for g in range(groups)))
            for h in range(heads) for y in range(side) for x in range(side)]


def sdsa_head_row(row: int, head: int, head_width: int, lanes: int) -> int:
    """The row the SDSA gets for ``head`` of a dense map from ``row``, the words the feed read
    for it side by side (bit ``g * lanes + b``: bank ``b`` of its ``g``-th word): the head's
    ``head_width`` bits, from bank ``head * head_width % lanes`` of its first word on."""
    return (row >> head * head_width % lanes) & ((1 << head_width) - 1)


def sdsa_rows_layout(lanes: int, values: bool = True) -> data.StructLayout:
    """Payload of the SDSA feed: one ``lanes``-bit spike row each of q, k and v (``values=False``:
    q and k only); ``lanes`` here is the widest head's ``groups * lanes``."""
    names = ("q", "k", "v") if values else ("q", "k")
    return data.StructLayout({name: lanes for name in names})


class SpikeMapReader(wiring.Component):
    """Feed the engine and the SDSA units from one spike-memory read port (module docstring).

    Parameters
    ----------
    fields : dict
        Descriptor fields (``{name: shape}``) including :data:`FIELDS`.
    lanes, map_width : int
        Banks per word, bits per bank (``W``).
    depth : int
        Words of the spike memory (its read port's address width follows).
    address_width : int
        Bits of the address registers (the descriptor's base fields).
    side, heads, head_groups : int
        The largest token grid side, head count and word groups a head of any attention block
        (the counters' ranges and the rows' width, ``head_groups * lanes``); the step's own
        come from the descriptor (``sd_side_m1``, ``heads_m1``, ``groups_m1``, ``head_stride``).
    values : bool
        Whether the SDSA feed reads a V row (default); False for SDSA-2, which has no V map:
        the reader then neither reads nor needs ``v_base``.
    shifts : iterable of int
        Every bit offset ``(q % P) * S`` of a packed row the engine feed may read (default
        ``(0,)``: no map is packed, and the feed neither shifts nor masks).
    dense : bool
        Whether some attention block's q, k and v maps are dense (``plan.dense_blocks``): a
        head of ``d`` channels starts at channel ``h * d`` of its map, so at a bank offset
        ``s`` of some word, and spans ``ceil((s + d) / lanes)`` word groups, one more than
        ``groups`` when ``s >= wide_at``. The descriptor's :data:`DENSE_FIELDS` then take part:
        each word read is rotated down by ``s`` (a multiplexer over ``head_shifts``), its low
        ``lanes - s`` bits written to the row's group ``g``, its high ``s`` bits to group ``g -
        1``, both masked (``head_mask``, the head's ``d`` bits); at the next head ``s`` steps by
        ``head_bits`` (``d % lanes``) and the first word by ``rd_stride`` (``d // lanes``
        groups), a group more when ``s`` wraps. Several heads a word are the case ``d < lanes``.
        A head-aligned block in the same network has ``s = 0`` and reads ``groups`` words.
    head_shifts : iterable of int
        Every bank offset ``s`` of a dense block's head (default ``(0,)``).
    """

    #: The descriptor fields the reader reads (``v_base`` only with ``values``).
    FIELDS = ("is_layer", "is_sdsa", "src_base", "src_stride", "src_pack_m1", "src_mask",
              "src_height_m1", "src_channels_m1", "q_base", "k_base", "v_base", "groups_m1",
              "heads_m1", "head_stride", "sd_side_m1")
    #: The descriptor fields of dense q, k and v maps (``dense``).
    DENSE_FIELDS = ("head_bits", "rd_stride", "rd_sub", "rd_bits", "pack_bits", "wide_at",
                    "head_mask")

    def __init__(self, fields: dict, *, lanes: int, map_width: int, depth: int,
                 address_width: int, side: int = 1, heads: int = 1, head_groups: int = 1,
                 values: bool = True, shifts=(0,), dense: bool = False, head_shifts=(0,)):
        self._lanes, self._W, self._md_w = lanes, map_width, address_width
        self._head_shifts = sorted({int(s) for s in head_shifts} | {0})
        if self._head_shifts[-1] >= lanes:
            raise ValueError(f"head offset {self._head_shifts[-1]} outside the {lanes} banks")
        self._shifts = sorted({int(s) for s in shifts} | {0})
        if self._shifts[-1] >= map_width:
            raise ValueError(f"row offset {self._shifts[-1]} outside the {map_width}-bit bank")
        self._side, self._heads, self._groups = side, heads, head_groups
        self._values = bool(values)
        if not values:   # this reader's fields (the class's list names every field any reads)
            self.FIELDS = tuple(name for name in SpikeMapReader.FIELDS if name != "v_base")
        self._dense = bool(dense)
        if self._dense:
            self.FIELDS = self.FIELDS + self.DENSE_FIELDS
        super().__init__({
            "config": In(data.StructLayout({name: fields[name] for name in self.FIELDS})),
            "start": In(1),
            "read": In(ReadPort.Signature(addr_width=Shape.cast(range(depth)).width,
                                          shape=unsigned(lanes * map_width))),
            "o": Out(stream.Signature(addressing_input_layout(map_width))),
            "sdsa": Out(stream.Signature(sdsa_rows_layout(lanes * head_groups, values))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, W, md_w = self._lanes, self._W, self._md_w
        sd_side, heads = self._side, self._heads
        # ``desc`` (the sequencer's registers, shared with every unit) is read at ``start``;
        # the feeds' counters read ``run``, the reader's own copy of it, registered beside
        # them (the sequencer loads the descriptor the cycle before ``start``, and no feed
        # counter moves in the start cycle).
        desc = self.config
        run = Signal(desc.shape(), name="rd_desc", reset_less=True)
        m.d.sync += run.eq(desc)
        sdsa_mode = desc.is_sdsa
        start = self.start

        fd_c = Signal.like(desc.src_channels_m1, name="fd_c")
        fd_bank = Signal(range(lanes + 1), name="fd_bank")
        fd_addr = Signal(md_w, name="fd_addr")   # src_base + (q // P) * stride + y
        fd_row = Signal(md_w, name="fd_row")     # src_base + (q // P) * stride
        fd_y = Signal(range(W + 1), name="fd_y")
        fd_sub = Signal.like(desc.src_pack_m1, name="fd_sub")  # q % P of the channel's group
        fd_shift = Signal(range(W), name="fd_shift")           # fd_sub * src_stride
        feeding = Signal(name="feeding")
        fd_valid = Signal(name="fd_valid")      # the read port holds a word for the engine
        fd_sel = Signal.like(fd_bank, name="fd_sel")
        fd_shsel = Signal.like(fd_shift, name="fd_shsel")
        fd_last = Signal(name="fd_last")
        fd_advance = Signal(name="fd_advance")
        # The memory's whole output word is registered first (``spike_word``, stage fw_*); the
        # chosen bank's word is registered again (fo_*) before the engine sees it.
        spike_word = Signal(lanes * W, name="spike_word", reset_less=True)
        word_banks = [spike_word[b * W:(b + 1) * W] for b in range(lanes)]
        sd_word = Signal(lanes * W, name="sd_word", reset_less=True)   # the SDSA feed's copy
        fw_valid = Signal(name="fw_valid")
        fw_hot = Signal(lanes, name="fw_hot")   # the chosen bank, one-hot (fd_sel decoded)
        fw_shift = Signal.like(fd_shift, name="fw_shift")
        fw_last = Signal(name="fw_last")
        fw_take = Signal(name="fw_take")
        # The bank multiplexer is an AND-OR over a one-hot select register (a wide binary
        # multiplexer mapped to seven LUT levels on ECP5; this is three or four).
        fd_word = Signal(W, name="fd_word")
        m.d.comb += fd_word.eq(functools.reduce(
            operator.or_, [word_banks[b] & fw_hot[b].replicate(W) for b in range(lanes)]))
        # A packed row is shifted down by its offset (a multiplexer over the offsets some map
        # uses) behind the ``fo`` register, on the way to the engine, and masked to the map's
        # side there (the mask, a descriptor register, is stable while a beat waits): the bank
        # multiplexer alone sits in front of ``fo``, the offset multiplexer and the mask behind
        # it (no cycle more: the engine registers its input).
        def shifted(bits, offset):
            if len(self._shifts) == 1:
                return bits
            row = Signal(W)
            with m.Switch(offset):
                for value in self._shifts:
                    with m.Case(value):
                        m.d.comb += row.eq(bits[value:])
            return row
        fo_valid = Signal(name="fo_valid")
        fo_bits = Signal(W, name="fo_bits", reset_less=True)
        fo_last = Signal(name="fo_last", reset_less=True)
        fo_shift = Signal.like(fd_shift, name="fo_shift", reset_less=True)
        fo_take = Signal(name="fo_take")
        # A skid register behind ``fo``: the engine's ``o.ready`` only decides whether ``fo``'s
        # beat leaves or waits in the skid (``sk``); every stage before advances on flip-flops
        # (``sk_valid`` low), so the engine's ready, from the far side of the chip, does not
        # reach the read port's enable and the counters' enables. A beat waiting in the skid
        # goes first; the beats reach the engine in the same cycles as without it (the pipeline
        # merely fills one beat further while the engine waits).
        sk_valid = Signal(name="sk_valid")
        sk_bits = Signal(W, name="sk_bits", reset_less=True)
        sk_last = Signal(name="sk_last", reset_less=True)
        sk_shift = Signal.like(fd_shift, name="sk_shift", reset_less=True)
        out_bits = Mux(sk_valid, shifted(sk_bits, sk_shift), shifted(fo_bits, fo_shift))
        m.d.comb += [fo_take.eq(~sk_valid),
                     fw_take.eq(~fw_valid | fo_take),
                     fd_advance.eq(~fd_valid | fw_take),
                     self.o.valid.eq(fo_valid | sk_valid),
                     self.o.payload.bits.eq(out_bits if len(self._shifts) == 1
                                            else out_bits & run.src_mask),
                     self.o.payload.last.eq(Mux(sk_valid, sk_last, fo_last))]
        with m.If(sk_valid):
            with m.If(self.o.ready):
                m.d.sync += sk_valid.eq(0)
        with m.Elif(fo_valid & ~self.o.ready):
            m.d.sync += [sk_valid.eq(1), sk_bits.eq(fo_bits), sk_last.eq(fo_last),
                         sk_shift.eq(fo_shift)]
        # Two copies of the memory's word: the engine feed's bank multiplexer and the SDSA's
        # bit select cut the word along different axes (by bank, by bit), and one register
        # feeding both left nextpnr a routing knot; each copy sits by its own multiplexer.
        with m.If(fw_take):
            m.d.sync += spike_word.eq(self.read.data)
        with m.If(sdsa_mode):
            m.d.sync += sd_word.eq(self.read.data)
        with m.If(fw_take):
            m.d.sync += [fw_valid.eq(fd_valid & ~sdsa_mode),
                         fw_hot.eq(Const(1, lanes) << fd_sel),
                         fw_shift.eq(fd_shsel), fw_last.eq(fd_last)]
        with m.If(fo_take):
            m.d.sync += [fo_valid.eq(fw_valid & ~sdsa_mode), fo_bits.eq(fd_word),
                         fo_shift.eq(fw_shift), fo_last.eq(fw_last)]
        fd_y_last = (fd_y == run.src_height_m1)
        fd_is_last = (fd_c == run.src_channels_m1) & fd_y_last

        # SDSA feeder state (shares the read port with the engine feed).
        G = self._groups
        sd_n_x = Signal(range(sd_side + 1), name="sd_x")
        sd_n_y = Signal(range(sd_side + 1), name="sd_y")
        sd_h = Signal(range(heads + 1), name="sd_h")
        sd_phase = Signal(2, name="sd_phase")   # read q, k, v (values=False: q, k)
        dense = self._dense
        # the head's word group being read (dense: up to G, a straddling head's extra word)
        sd_g = Signal(range(G + 2 if dense else G + 1), name="sd_g")
        sd_active = Signal(name="sd_active")    # issuing reads for the current token
        sd_got = Signal(2, name="sd_got")       # which row the read data returns (delayed phase)
        sd_got_g = Signal.like(sd_g, name="sd_got_g")
        sd_got_last = Signal(name="sd_got_last")
        sd_got_valid = Signal(name="sd_got_valid")
        # The token's bit in a bank: (g % P) * side + x for group g (``sd_bit``, stepped by
        # ``src_stride`` with the group, back to x when a word's packed groups are done).
        sd_sub = Signal.like(desc.src_pack_m1, name="sd_sub")
        sd_bit = Signal(range(W), name="sd_bit")
        sd_x_d = Signal.like(sd_bit, name="sd_x_d")
        names = ("q", "k", "v") if self._values else ("q", "k")
        rows = [Signal(lanes * G, name=f"sd_row_{n}") for n in names]
        last_phase = len(rows) - 1  # the phase whose last group completes the beat
        sd_beat = Signal(name="sd_beat")        # rows complete, offered to the SDSA
        sd_off = Signal(md_w, name="sd_off")    # head h's first group row + y
        sd_gaddr = Signal(md_w, name="sd_gaddr")  # sd_off + (sd_g // P) * stride
        sd_head = Signal(md_w, name="sd_head")  # h * head_stride

        # Both read addresses live in registers updated as their counters move (no shift or
        # product on the way to the memory); the SDSA adds only the q / k / v base, through an
        # address register (sd_raddr, one cycle).
        sd_raddr = Signal(md_w, name="sd_raddr")
        sd_ren = Signal(name="sd_ren")
        sd_addr_phase = Signal(2, name="sd_addr_phase")
        sd_addr_g = Signal.like(sd_g, name="sd_addr_g")
        sd_addr_last = Signal(name="sd_addr_last")
        sd_addr_x = Signal.like(sd_bit, name="sd_addr_x")
        if dense:
            # this head's groups minus one: ``groups_m1``, one more from bank ``wide_at`` on;
            # its first group's place in a packed word (``sd_hsub``, bit ``sd_hbit`` = sub *
            # side) and the token's bit there (``sd_xb`` = ``sd_hbit + x``); the next head's
            # offset, sub, word step and groups, ready (four register stages from
            # ``sd_hshift``) long before the head's last token is taken
            sd_hshift = Signal(range(lanes), name="sd_hshift")
            sd_gm1 = Signal.like(sd_g, name="sd_gm1")
            sd_hsub = Signal.like(desc.src_pack_m1, name="sd_hsub")
            sd_hbit = Signal.like(sd_bit, name="sd_hbit")
            sd_xb = Signal.like(sd_bit, name="sd_xb")
            nx_sum = Signal(range(2 * lanes), name="sd_nx_sum")
            nx_carry = Signal(name="sd_nx_carry")
            nx_shift = Signal.like(sd_hshift, name="sd_nx_shift")
            nx_usum = Signal(range(2 * (2 ** len(desc.src_pack_m1)) + 1), name="sd_nx_usum")
            nx_bsum = Signal(range(2 * W + 1), name="sd_nx_bsum")
            nx_hsub = Signal.like(sd_hsub, name="sd_nx_hsub")
            nx_hbit = Signal.like(sd_hbit, name="sd_nx_hbit")
            nx_step = Signal(md_w, name="sd_nx_step")
            nx_gm1 = Signal.like(sd_g, name="sd_nx_gm1")
            wrap = nx_usum > run.src_pack_m1
            m.d.sync += [nx_sum.eq(sd_hshift + run.head_bits),
                         nx_carry.eq(nx_sum >= lanes),
                         nx_shift.eq(Mux(nx_sum >= lanes, nx_sum - lanes, nx_sum)),
                         nx_usum.eq(sd_hsub + run.rd_sub + nx_carry),
                         nx_bsum.eq(sd_hbit + run.rd_bits + Mux(nx_carry, run.src_stride, 0)),
                         nx_hsub.eq(Mux(wrap, nx_usum - run.src_pack_m1 - 1, nx_usum)),
                         nx_hbit.eq(Mux(wrap, nx_bsum - run.pack_bits, nx_bsum)),
                         nx_step.eq(run.rd_stride + Mux(wrap, run.src_stride, 0)),
                         nx_gm1.eq(run.groups_m1 + (nx_shift >= run.wide_at))]
            group_last = sd_g == sd_gm1
        else:
            group_last = sd_g == run.groups_m1
        if self._values:
            base = Mux(sd_phase == 0, run.q_base, Mux(sd_phase == 1, run.k_base, run.v_base))
        else:
            base = Mux(sd_phase == 0, run.q_base, run.k_base)
        m.d.sync += [sd_raddr.eq(base + sd_gaddr), sd_ren.eq(sd_active & sdsa_mode),
                     sd_addr_phase.eq(sd_phase), sd_addr_g.eq(sd_g),
                     sd_addr_last.eq(group_last & (sd_phase == last_phase)),
                     sd_addr_x.eq(sd_bit)]
        with m.If(sdsa_mode):
            m.d.comb += [self.read.addr.eq(sd_raddr), self.read.en.eq(sd_ren)]
        with m.Else():
            # Reads only while feeding: an idle read would meet the map writer's words (the
            # spike memory has no collision semantics, ``hw.shared``) and cost block-RAM power.
            m.d.comb += [self.read.addr.eq(fd_addr), self.read.en.eq(fd_advance & feeding)]

        # engine feed counters
        with m.If(start & desc.is_layer):
            m.d.sync += [feeding.eq(1), fd_c.eq(0), fd_bank.eq(0), fd_y.eq(0), fd_valid.eq(0),
                         fd_sub.eq(0), fd_shift.eq(0),
                         fd_addr.eq(desc.src_base), fd_row.eq(desc.src_base)]
        with m.Elif(fd_advance & ~sdsa_mode):
            m.d.sync += [fd_valid.eq(feeding), fd_sel.eq(fd_bank), fd_shsel.eq(fd_shift),
                         fd_last.eq(fd_is_last)]
            with m.If(feeding):
                with m.If(fd_is_last):
                    m.d.sync += feeding.eq(0)
                with m.Elif(fd_y_last):
                    m.d.sync += [fd_y.eq(0), fd_c.eq(fd_c + 1)]
                    with m.If((fd_bank == lanes - 1) & (fd_sub == run.src_pack_m1)):
                        m.d.sync += [fd_bank.eq(0), fd_sub.eq(0), fd_shift.eq(0),
                                     fd_row.eq(fd_row + run.src_stride),
                                     fd_addr.eq(fd_row + run.src_stride)]
                    with m.Elif(fd_bank == lanes - 1):
                        m.d.sync += [fd_bank.eq(0), fd_sub.eq(fd_sub + 1),
                                     fd_shift.eq(fd_shift + run.src_stride), fd_addr.eq(fd_row)]
                    with m.Else():
                        m.d.sync += [fd_bank.eq(fd_bank + 1), fd_addr.eq(fd_row)]
                with m.Else():
                    m.d.sync += [fd_y.eq(fd_y + 1), fd_addr.eq(fd_addr + 1)]

        # SDSA feed: for each head, token: read the q, k and v rows' word groups (one cycle
        # each), offer the beat.
        sd_read_valid = Signal(name="sd_read_valid")
        sd_read_phase = Signal(2, name="sd_read_phase")
        sd_read_g = Signal.like(sd_g, name="sd_read_g")
        sd_read_last = Signal(name="sd_read_last")
        sd_read_x = Signal.like(sd_bit, name="sd_read_x")
        m.d.sync += [sd_read_valid.eq(sd_ren), sd_read_phase.eq(sd_addr_phase),
                     sd_read_g.eq(sd_addr_g), sd_read_last.eq(sd_addr_last),
                     sd_read_x.eq(sd_addr_x),
                     sd_got_valid.eq(sd_read_valid), sd_got.eq(sd_read_phase),
                     sd_got_g.eq(sd_read_g), sd_got_last.eq(sd_read_last),
                     sd_x_d.eq(sd_read_x)]
        extracted = Signal(lanes, name="sd_extracted")
        for b in range(lanes):
            m.d.comb += extracted[b].eq(sd_word[b * W:(b + 1) * W].bit_select(sd_x_d, 1))
        if dense:
            # the word rotated down by this head's bank offset: its low ``lanes - s`` bits are
            # the row's group g, its high s bits the top of group g - 1 (a multiplexer over the
            # offsets some block uses); both masked to the head's bits
            rotated = Signal(lanes, name="sd_rotated")
            low = Signal(lanes, name="sd_low")
            with m.Switch(sd_hshift):
                for offset in self._head_shifts:
                    with m.Case(offset):
                        m.d.comb += [rotated.eq(Cat(extracted[offset:], extracted[:offset])),
                                     low.eq((1 << lanes - offset) - 1)]
            with m.If(sd_got_valid):
                with m.Switch(sd_got):
                    for phase, row in enumerate(rows):
                        with m.Case(phase):
                            with m.Switch(sd_got_g):
                                for g in range(G + 1):
                                    with m.Case(g):
                                        if g < G:
                                            part = slice(g * lanes, (g + 1) * lanes)
                                            m.d.sync += row[part].eq(
                                                rotated & low & run.head_mask[part])
                                        if g:
                                            part = slice((g - 1) * lanes, g * lanes)
                                            m.d.sync += row[part].eq(
                                                row[part] | rotated & ~low & run.head_mask[part])
                with m.If(sd_got_last):
                    m.d.sync += sd_beat.eq(1)
        else:
            with m.If(sd_got_valid):
                with m.Switch(sd_got):
                    for phase, row in enumerate(rows):
                        with m.Case(phase):
                            if G == 1:
                                m.d.sync += row.eq(extracted)
                            else:
                                with m.Switch(sd_got_g):
                                    for g in range(G):
                                        with m.Case(g):
                                            m.d.sync += row[g * lanes:(g + 1) * lanes].eq(
                                                extracted)
                with m.If(sd_got_last):
                    m.d.sync += sd_beat.eq(1)
        with m.If(start & sdsa_mode):
            m.d.sync += [sd_active.eq(1), sd_phase.eq(0), sd_g.eq(0), sd_h.eq(0), sd_n_x.eq(0),
                         sd_n_y.eq(0), sd_beat.eq(0), sd_off.eq(0), sd_gaddr.eq(0),
                         sd_head.eq(0), sd_sub.eq(0), sd_bit.eq(0)]
            if dense:
                m.d.sync += [sd_hshift.eq(0), sd_gm1.eq(desc.groups_m1), sd_hsub.eq(0),
                             sd_hbit.eq(0), sd_xb.eq(0)]
        with m.Elif(sd_active):
            with m.If(group_last):
                # back to the head's first group (dense: its place in a packed word)
                if dense:
                    m.d.sync += [sd_g.eq(0), sd_gaddr.eq(sd_off), sd_sub.eq(sd_hsub),
                                 sd_bit.eq(sd_xb)]
                else:
                    m.d.sync += [sd_g.eq(0), sd_gaddr.eq(sd_off), sd_sub.eq(0),
                                 sd_bit.eq(sd_n_x)]
                with m.If(sd_phase == last_phase):
                    m.d.sync += [sd_active.eq(0), sd_phase.eq(0)]
                with m.Else():
                    m.d.sync += sd_phase.eq(sd_phase + 1)
            with m.Elif(sd_sub == run.src_pack_m1):
                m.d.sync += [sd_g.eq(sd_g + 1), sd_sub.eq(0), sd_bit.eq(sd_n_x),
                             sd_gaddr.eq(sd_gaddr + run.src_stride)]
            with m.Else():
                m.d.sync += [sd_g.eq(sd_g + 1), sd_sub.eq(sd_sub + 1),
                             sd_bit.eq(sd_bit + run.src_stride)]
        m.d.comb += [self.sdsa.valid.eq(sd_beat & sdsa_mode), self.sdsa.payload.q.eq(rows[0]),
                     self.sdsa.payload.k.eq(rows[1])]
        if self._values:
            m.d.comb += self.sdsa.payload.v.eq(rows[2])
        with m.If(self.sdsa.valid & self.sdsa.ready):
            m.d.sync += sd_beat.eq(0)
            x_last = sd_n_x == run.sd_side_m1
            last_token = x_last & (sd_n_y == run.sd_side_m1)
            with m.If(~(last_token & (sd_h == run.heads_m1))):  # else: every beat is fed
                m.d.sync += sd_active.eq(1)
                with m.If(last_token):
                    m.d.sync += [sd_n_x.eq(0), sd_n_y.eq(0), sd_h.eq(sd_h + 1), sd_bit.eq(0)]
                    if dense:
                        # the next head: its bank offset, its first word (a group more when
                        # the offset wraps), its groups
                        head = sd_head + nx_step
                        m.d.sync += [sd_hshift.eq(nx_shift), sd_gm1.eq(nx_gm1),
                                     sd_head.eq(head), sd_off.eq(head), sd_gaddr.eq(head),
                                     sd_hsub.eq(nx_hsub), sd_sub.eq(nx_hsub),
                                     sd_hbit.eq(nx_hbit), sd_xb.eq(nx_hbit), sd_bit.eq(nx_hbit)]
                    else:
                        head = sd_head + run.head_stride
                        m.d.sync += [sd_head.eq(head), sd_off.eq(head), sd_gaddr.eq(head)]
                with m.Elif(x_last):
                    m.d.sync += [sd_n_x.eq(0), sd_n_y.eq(sd_n_y + 1), sd_off.eq(sd_off + 1),
                                 sd_gaddr.eq(sd_off + 1)]
                    if dense:
                        m.d.sync += [sd_xb.eq(sd_hbit), sd_bit.eq(sd_hbit)]
                    else:
                        m.d.sync += sd_bit.eq(0)
                with m.Else():
                    m.d.sync += sd_n_x.eq(sd_n_x + 1)
                    if dense:
                        m.d.sync += [sd_xb.eq(sd_xb + 1), sd_bit.eq(sd_xb + 1)]
                    else:
                        m.d.sync += sd_bit.eq(sd_n_x + 1)
        return m
