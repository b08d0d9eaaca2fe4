"""Spike-map reader (hw/mapreader.py) against its references ``engine_feed_order`` and
``sdsa_feed_order``.

The memory holds random words; the engine feed must deliver, for every channel and row of the
source map, the channel's bank of the row's word (its packed row shifted down and masked when
several groups share a word), ``last`` on the final one; the SDSA feed, for every head and
token, bit ``(g % P) * S + x`` of every bank of the q, k and v words (q and k only for SDSA-2's
feed, ``values=False``). Both run under
backpressure patterns, and a beat held back must not change until it is taken. An engine feed
and an SDSA feed run back to back, so a step's start must reset what the previous one left.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.mapreader import SpikeMapReader, engine_feed_order, sdsa_feed_order, sdsa_head_row
from sim.streams import collect, monitor, run_bounded

# 5 lanes and 9-bit banks: counters one bit too narrow (range(lanes - 1), range(W - 1)) cannot
# reach the last bank or a 9-row map's last row.
LANES, W, DEPTH = 5, 9, 128
FIELDS = {"is_layer": 1, "is_sdsa": 1, "src_base": unsigned(8), "src_stride": range(17),
          "src_pack_m1": range(W + 1), "src_mask": unsigned(W),
          "src_height_m1": range(W + 1), "src_channels_m1": range(17), "q_base": unsigned(8),
          "k_base": unsigned(8), "v_base": unsigned(8), "groups_m1": range(4),
          "heads_m1": range(4), "head_stride": range(65), "sd_side_m1": range(9)}


class Top(Elaboratable):
    def __init__(self, side, heads, init, values=True, groups=1, exact=False, shifts=(0,)):
        # Generated for larger grids, heads and groups than the steps use (the step's own come
        # from the descriptor), or for exactly them (``exact``: counters at their narrowest).
        spare = 0 if exact else 1
        self.reader = SpikeMapReader(FIELDS, lanes=LANES, map_width=W, depth=DEPTH, address_width=8,
                                     side=side + spare, heads=heads + spare,
                                     head_groups=groups + spare, values=values,
                                     shifts=shifts)
        self.memory = Memory(shape=unsigned(LANES * W), depth=DEPTH, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = self.reader
        m.submodules.memory = self.memory
        wiring.connect(m, self.reader.read, self.memory.read_port())
        return m


def bank(word: int, b: int) -> int:
    return (word >> (b * W)) & ((1 << W) - 1)


#: ``ready`` cycle by cycle (sim.streams' callable patterns): a receiver that drops ``ready``
#: while a beat waits, so that the SDSA feed (a beat every 7 cycles) stalls too.
READY = {"always": lambda cycle: 1, "pause": lambda cycle: cycle % 4 != 3,
         "sparse": lambda cycle: cycle % 9 >= 5}


def fields_of(payloads, names):
    return [tuple(int(getattr(p, name)) for name in names) for p in payloads]


#: Ready patterns and whether the V map is read (SDSA-2: q and k only, a beat every 6 cycles).
PATTERNS = [("always", True), ("pause", True), ("sparse", True), ("always", False),
            ("sparse", False)]

#: Map shapes: ``channels, height, stride, side, heads, groups, exact, pack``.
SHAPES = [
    (9, 5, 8, 3, 2, 1, False, 1),
    (4, 1, 1, 2, 1, 1, False, 1),
    (16, 3, 4, 1, 3, 1, False, 1),
    (6, 9, 16, 2, 1, 1, True, 1),
    # heads of two and three word groups (head width above the lanes), generated exactly
    (9, 5, 8, 3, 2, 2, True, 1),
    (4, 1, 1, 2, 1, 3, True, 1),
    # packed maps (``pack`` groups a word, ``stride`` = the side bits apart): the engine feed
    # shifts and masks; the SDSA feed's bit steps by the side and its word by the stride
    (9, 3, 3, 3, 2, 3, True, 3),
    (16, 2, 2, 2, 3, 2, False, 2),
    (11, 4, 4, 4, 1, 4, True, 2),
]


def _cases():
    """Every shape with every pattern; ``make test`` runs one pattern a shape, rotated so that
    each pattern meets several shapes (the rest in ``make test-all``)."""
    for i, shape in enumerate(SHAPES):
        fast = {i % len(PATTERNS)}
        for n, pattern in enumerate(PATTERNS):
            yield pytest.param(*shape, *pattern, marks=() if n in fast else (pytest.mark.slow,))


@pytest.mark.parametrize("channels, height, stride, side, heads, groups, exact, pack, pattern, "
                         "values", list(_cases()))
def test_reader_feeds_the_reference_order(channels, height, stride, side, heads, groups, exact,
                                          pack, pattern, values):
    rng = random.Random(channels * 100 + height)
    init = [rng.getrandbits(LANES * W) for _ in range(DEPTH)]
    top = Top(side, heads, init, values, groups, exact,
              shifts=[p * stride for p in range(pack)])
    dut = top.reader
    rows = ("q", "k", "v") if values else ("q", "k")
    assert ("v_base" in dut.FIELDS) == values
    src_base = 5
    mask = (1 << height) - 1 if pack > 1 else (1 << W) - 1   # a packed map's row: its side
    q_base, k_base, v_base = 30, 50, 70
    sdsa_stride = side if pack > 1 else 1 << max(1, (side - 1).bit_length())
    assert pack == 1 or pack * max(stride, sdsa_stride) <= W
    assert 30 + heads * groups // pack * sdsa_stride <= 50

    async def start(ctx, config):
        for name in dut.FIELDS:
            ctx.set(dut.config[name], config.get(name, 0))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def bench(ctx):
        await start(ctx, {"is_layer": 1, "src_base": src_base, "src_stride": stride,
                          "src_height_m1": height - 1, "src_channels_m1": channels - 1,
                          "src_pack_m1": pack - 1, "src_mask": mask})
        order = engine_feed_order(channels, height, LANES, src_base, stride, pack)
        got = fields_of(await collect(ctx, dut.o, len(order), READY[pattern]),
                        ("bits", "last"))
        want = [((bank(init[address], b) >> offset) & mask, int(n == len(order) - 1))
                for n, (address, b, offset) in enumerate(order)]
        assert got == want
        ctx.set(dut.o.ready, 1)   # a beat beyond the end would be taken, and counted
        await ctx.tick().repeat(20)
        ctx.set(dut.o.ready, 0)
        assert len(feed.payloads) == len(order), "a beat beyond the engine feed's end"
        await start(ctx, {"is_sdsa": 1, "src_stride": sdsa_stride, "q_base": q_base,
                          "k_base": k_base, "v_base": v_base, "groups_m1": groups - 1,
                          "heads_m1": heads - 1, "head_stride": groups // pack * sdsa_stride,
                          "sd_side_m1": side - 1, "src_pack_m1": pack - 1})
        order = sdsa_feed_order(side, heads, sdsa_stride, groups, pack)
        got = fields_of(await collect(ctx, dut.sdsa, len(order), READY[pattern]), rows)

        def row(base, reads):
            return sum((bank(init[base + offset], b) >> bit & 1) << (g * LANES + b)
                       for g, (offset, bit) in enumerate(reads) for b in range(LANES))

        bases = (q_base, k_base, v_base)[:len(rows)]
        want = [tuple(row(base, reads) for base in bases) for h, y, x, reads in order]
        assert got == want
        ctx.set(dut.sdsa.ready, 1)
        await ctx.tick().repeat(20)
        assert len(tokens.payloads) == len(order), "a beat beyond the SDSA feed's end"
        assert len(feed.payloads) == len(engine_feed_order(channels, height, LANES, 0, 1))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    feed = monitor(sim, dut.o, name="o")          # a stalled beat must hold
    tokens = monitor(sim, dut.sdsa, name="sdsa")
    run_bounded(sim, bench, 20_000)
    if pattern == "always":   # the feed's period, which sim.perf's SDSA term counts on
        gaps = {b - a for a, b in zip(tokens.cycles, tokens.cycles[1:])}
        period = len(rows) * groups + 4
        assert gaps <= {period}, f"SDSA beats {sorted(gaps)} cycles apart, not {period} " \
                                 f"({len(rows)} x {groups} reads + 4)"
    if pattern != "always":   # the hold check ran (a 3-token feed may slip between gaps)
        assert feed.stalls and (tokens.stalls or len(tokens.payloads) < 9), "nothing stalled"


def test_reference_orders():
    assert engine_feed_order(5, 2, 4, 10, 8) == [
        (10, 0, 0), (11, 0, 0), (10, 1, 0), (11, 1, 0), (10, 2, 0), (11, 2, 0), (10, 3, 0),
        (11, 3, 0), (18, 0, 0), (19, 0, 0)]
    # 2 lanes, 2 groups packed a word 3 bits apart: group 1 at bit 3 of word 10, group 2 on
    assert engine_feed_order(5, 1, 2, 10, 3, pack=2) == [
        (10, 0, 0), (10, 1, 0), (10, 0, 3), (10, 1, 3), (13, 0, 0)]
    assert sdsa_feed_order(2, 2, 4) == [
        (0, 0, 0, ((0, 0),)), (0, 0, 1, ((0, 1),)), (0, 1, 0, ((1, 0),)), (0, 1, 1, ((1, 1),)),
        (1, 0, 0, ((4, 0),)), (1, 0, 1, ((4, 1),)), (1, 1, 0, ((5, 0),)), (1, 1, 1, ((5, 1),))]
    # two groups a head: head 1 starts 2 groups (8 words) on
    assert sdsa_feed_order(1, 2, 4, 2) == [(0, 0, 0, ((0, 0), (4, 0))),
                                            (1, 0, 0, ((8, 0), (12, 0)))]
    # packed two to a word (side 2, 2 bits apart): group 1 at bit 2 + x of the same word
    assert sdsa_feed_order(2, 1, 2, 2, pack=2)[1] == (0, 0, 1, ((0, 1), (0, 3)))


#: Dense q, k and v maps: ``lanes, side, heads, d, pack``. At 5 lanes heads of 2 and 3
#: (narrower than a word, not dividing it: some straddle two words), of 1 (five a word), of 4
#: (one straddles), of 7 (two groups, some heads three words) and of 12 (three groups); at 4
#: and 6 lanes heads whose offset wraps to exactly a word (two heads of 2 a word; heads of 4 at
#: offsets 0, 4, 2, 0). ``pack`` groups share a word (``sd_hsub``: a head may start at any of
#: them, and its first group steps by a sub-position, wrapping to the next word).
DENSE = [(5, 3, 4, 2, 3), (5, 2, 4, 3, 2), (5, 2, 3, 1, 1), (5, 2, 4, 4, 3), (5, 2, 3, 7, 2),
         (5, 2, 4, 7, 3), (5, 2, 4, 12, 2), (4, 2, 4, 2, 1), (6, 2, 4, 4, 2)]   # heads_m1: range(4)


def dense_fields(d: int, lanes: int = LANES, pack: int = 1, stride: int = 1) -> dict:
    """The descriptor values of a dense block of ``d``-wide heads (``hw.descriptor``'s)."""
    words, sub = divmod(d // lanes, pack)
    return {"head_bits": d % lanes, "wide_at": lanes - (d - 1) % lanes,
            "head_mask": (1 << d) - 1, "groups_m1": (d - 1) // lanes,
            "src_pack_m1": pack - 1, "rd_stride": words * stride, "rd_sub": sub,
            "rd_bits": sub * stride, "pack_bits": pack * stride}


@pytest.mark.parametrize("lanes, side, heads, d, pack", DENSE)
def test_dense_heads(lanes, side, heads, d, pack):
    """A reader built for dense maps: head ``h``'s ``d`` channels start at bank ``h * d % lanes``
    of group ``h * d // lanes`` and may straddle a word more than ``ceil(d / lanes)``; each row must be
    those bits shifted down and masked (``sdsa_head_row`` of the words ``sdsa_feed_order``
    names), a straddling head's tokens ``3`` cycles a word later. Then, from the same reader, a
    head-aligned block of two word groups (``head_mask`` all ones, no shift) is fed as a reader
    without the option feeds it."""
    rng = random.Random(lanes * 1000 + side * 100 + heads * 10 + d + pack)
    init = [rng.getrandbits(lanes * W) for _ in range(DEPTH)]
    widest = max(2, -(-d // lanes))
    fields = dict(FIELDS, head_bits=range(lanes), rd_stride=range(65), rd_sub=range(W + 1),
                  rd_bits=range(W + 1), pack_bits=range(W + 1), wide_at=range(lanes + 1),
                  head_mask=unsigned(lanes * widest), groups_m1=range(5))
    reader = SpikeMapReader(fields, lanes=lanes, map_width=W, depth=DEPTH, address_width=8,
                            side=side, heads=heads, head_groups=widest, dense=True,
                            head_shifts={h * d % lanes for h in range(heads)})
    assert set(SpikeMapReader.DENSE_FIELDS) <= set(reader.FIELDS)
    memory = Memory(shape=unsigned(lanes * W), depth=DEPTH, init=init)
    top = Module()
    top.submodules.reader, top.submodules.memory = reader, memory
    wiring.connect(top, reader.read, memory.read_port())
    stride = 1 << max(1, (side - 1).bit_length())
    bases = (10, 40, 70)

    def row(base, reads):
        return sum((bank(init[base + offset], b) >> bit & 1) << (g * lanes + b)
                   for g, (offset, bit) in enumerate(reads) for b in range(lanes))

    async def feed(ctx, config, count, pattern="pause"):
        for name in reader.FIELDS:
            ctx.set(reader.config[name], config.get(name, 0))
        ctx.set(reader.start, 1)
        await ctx.tick()
        ctx.set(reader.start, 0)
        return fields_of(await collect(ctx, reader.sdsa, count, READY[pattern]), ("q", "k", "v"))

    common = {"is_sdsa": 1, "src_stride": stride, "q_base": bases[0], "k_base": bases[1],
              "v_base": bases[2], "sd_side_m1": side - 1}

    async def bench(ctx):
        order = sdsa_feed_order(side, heads, stride, pack=pack, dense=(d, lanes))
        assert any(len(reads) > -(-d // lanes) for *_, reads in order) == any(
            h * d % lanes + d > -(-d // lanes) * lanes for h in range(heads))
        for pattern in ("pause", "always"):
            got = await feed(ctx, dict(common, heads_m1=heads - 1,
                                       **dense_fields(d, lanes, pack, stride)),
                             len(order), pattern)
            want = [tuple(sdsa_head_row(row(base, reads), h, d, lanes) for base in bases)
                    for h, y, x, reads in order]
            assert got == want
        # a head-aligned block of one head in two word groups, from the same reader
        order = sdsa_feed_order(side, 2, stride, 2)
        got = await feed(ctx, dict(common, heads_m1=1, head_stride=2 * stride,
                                   rd_stride=2 * stride, groups_m1=1, wide_at=lanes,
                                   pack_bits=stride,
                                   head_mask=(1 << lanes * widest) - 1), len(order))
        # (a head of fewer groups than the widest leaves the upper ones stale: not compared)
        two = (1 << 2 * lanes) - 1
        assert [tuple(v & two for v in beat) for beat in got] == [
            tuple(row(base, reads) for base in bases) for h, y, x, reads in order]

    sim = Simulator(top)
    sim.add_clock(1e-8)
    tokens = monitor(sim, reader.sdsa, name="sdsa")
    run_bounded(sim, bench, 40_000)
    # the "always" pass: a token every 3 x (its head's words) + 4 cycles (sim.perf's period)
    n = side * side
    order = sdsa_feed_order(side, heads, stride, pack=pack, dense=(d, lanes))
    first = len(order)
    cycles = tokens.cycles[first:2 * first]
    for i in range(1, first):
        assert cycles[i] - cycles[i - 1] == 3 * len(order[i][3]) + 4, (i, cycles)


def test_head_row_reference():
    # heads of 3 at 5 lanes: head 1 from bank 3 (two words), head 2 from bank 1 of word 1
    assert sdsa_head_row(0b11011_00110, 0, 3, 5) == 0b110
    assert sdsa_head_row(0b11011_00110, 1, 3, 5) == 0b100
    assert sdsa_head_row(0b11011_00110, 2, 3, 5) == 0b011
    assert sdsa_feed_order(1, 3, 2, dense=(3, 5)) == [
        (0, 0, 0, ((0, 0),)), (1, 0, 0, ((0, 0), (2, 0))), (2, 0, 0, ((2, 0),))]
    # heads of 7: head 1 from bank 2 of group 1, three words (7 + 2 > 5, 9 <= 10: two)
    assert [len(reads) for *_, reads in sdsa_feed_order(1, 4, 1, dense=(7, 5))] == [2, 2, 3, 2]
