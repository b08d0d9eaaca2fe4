"""Residual-stream units (hw/residual.py) against their references ``stream_update`` and
``pool_sums``.

* The write stage: beats to distinct words, with idle cycles between them, random values,
  shift words and add/begin; the memory must end as ``stream_update`` says word by word (words
  not written keep their old value) and ``written_last`` must pulse once, with the last write.
* The reader: a stream's words in order with index, group and ``last``, two cycles after each
  address.
* The pool behind the reader: per-group sums, offered one group a beat under backpressure; a
  beat held back must not change until it is taken. Two pool runs back to back: ``start``
  clears the sums.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.residual import (Pool, SpikeFetch, StreamReader, StreamWriteStage, pool_sums,
                         residual_spike_order, stream_update)
from sim.streams import PATTERNS, collect, monitor, run_bounded, send
from subsets import rotated

#: ``ready`` cycle by cycle for the pool's output (it offers a beat a cycle, so a tuple pattern,
#: which raises ``ready`` until a beat is taken, would never stall it).
READY = {"always": lambda cycle: 1, "pause": lambda cycle: cycle % 4 != 3,
         "sparse": lambda cycle: cycle % 5 >= 3}

LANES, SB, VB, DEPTH, SHIFT_BITS = 4, 12, 9, 64, 3
FIELDS = {"shift_base": unsigned(4), "is_reader": 1, "stream_base": unsigned(7),
          "stream_words_m1": unsigned(7), "groups_m1": range(5), "is_pool": 1}


def to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def lanes_of(word: int) -> list[int]:
    return [to_signed(word >> (lane * SB), SB) for lane in range(LANES)]


def word_of(values) -> int:
    return sum((v & ((1 << SB) - 1)) << (lane * SB) for lane, v in enumerate(values))


class WriteTop(Elaboratable):
    def __init__(self, init, shift_words):
        self.stage = StreamWriteStage(FIELDS, lanes=LANES, value_bits=VB, stream_bits=SB,
                                      depth=DEPTH, address_width=7, group_shape=unsigned(3),
                                      shift_bits=SHIFT_BITS, shift_words=shift_words)
        self.memory = Memory(shape=unsigned(LANES * SB), depth=DEPTH, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.stage = stage = self.stage
        m.submodules.memory = memory = self.memory
        wiring.connect(m, stage.write, memory.write_port())
        read = memory.read_port()
        m.d.comb += [read.addr.eq(stage.i.payload.addr), stage.old.eq(read.data)]
        return m


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_write_stage_updates_the_stream(pattern):
    rng = random.Random(len(pattern))
    init = [rng.getrandbits(LANES * SB) for _ in range(DEPTH)]
    shift_words = [sum(rng.randrange(1 << SHIFT_BITS) << (lane * SHIFT_BITS)
                       for lane in range(LANES)) for _ in range(12)]
    top = WriteTop(init, shift_words)
    dut = top.stage
    addresses = rng.sample(range(DEPTH), 40)
    beats = [(a, [rng.randrange(-(1 << (VB - 1)), 1 << (VB - 1)) for _ in range(LANES)],
              rng.getrandbits(1), rng.randrange(8)) for a in addresses]
    shift_base = 3
    expected = list(init)
    for address, values, add, group in beats:
        amounts = [(shift_words[shift_base + group] >> (lane * SHIFT_BITS))
                   & ((1 << SHIFT_BITS) - 1) for lane in range(LANES)]
        old = lanes_of(expected[address])
        expected[address] = word_of([stream_update(old[lane], values[lane], amounts[lane],
                                                   bool(add), SB) for lane in range(LANES)])
    lasts, writes = [], []

    async def watch(ctx):   # the cycles with a write and with written_last
        cycle = 0
        async for _, _, last, write in ctx.tick().sample(dut.written_last, dut.write.en):
            if last:
                lasts.append(cycle)
            if write:
                writes.append(cycle)
            cycle += 1

    async def bench(ctx):
        ctx.set(dut.config.shift_base, shift_base)
        layout = dut.i.payload.shape()
        payloads = [layout.const({"addr": address, "values": values, "add": add, "group": group,
                                  "last": int(n == len(beats) - 1)})
                    for n, (address, values, add, group) in enumerate(beats)]
        await send(ctx, dut.i, payloads, PATTERNS[pattern])
        await ctx.tick().repeat(6)
        for address in range(DEPTH):
            got = ctx.get(top.memory.data[address])
            assert got == expected[address], f"word {address}"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    run_bounded(sim, bench, 20_000)
    assert len(writes) == len(beats)
    assert lasts == [writes[-1]]


class ReadTop(Elaboratable):
    def __init__(self, init, groups):
        self.reader = StreamReader(FIELDS, lanes=LANES, stream_bits=SB, address_width=7)
        self.pool = Pool(FIELDS, lanes=LANES, groups=groups, sum_bits=SB + 8,
                         input_layout=self.reader.o.payload.shape())
        self.memory = Memory(shape=unsigned(LANES * SB), depth=DEPTH, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.pool = pool = self.pool
        m.submodules.memory = memory = self.memory
        read = memory.read_port()
        m.d.comb += [read.addr.eq(reader.addr), reader.data.eq(read.data),
                     pool.i.valid.eq(reader.o.valid), pool.i.payload.eq(reader.o.payload)]
        return m


@pytest.mark.parametrize("groups, words, pattern",
                         rotated([(1, 1), (1, 9), (3, 10), (3, 12), (4, 4)], sorted(PATTERNS)))
def test_reader_and_pool(groups, words, pattern):
    rng = random.Random(groups * 31 + words)
    init = [rng.getrandbits(LANES * SB) for _ in range(DEPTH)]
    top = ReadTop(init, groups)
    reader, pool = top.reader, top.pool
    base = 7

    async def run_once(ctx, is_pool):
        ctx.set(reader.config.is_reader, 1)
        ctx.set(reader.config.stream_base, base)
        ctx.set(reader.config.stream_words_m1, words - 1)
        ctx.set(reader.config.groups_m1, groups - 1)
        ctx.set(pool.config.groups_m1, groups - 1)
        ctx.set(pool.config.is_pool, is_pool)
        for unit in (reader, pool):
            ctx.set(unit.start, 1)
        start_cycle = count["cycle"]
        await ctx.tick()
        for unit in (reader, pool):
            ctx.set(unit.start, 0)
        first_read = len(read.cycles)
        pooled = []
        if is_pool:
            pooled = [(int(p.index), [int(v) for v in p.x])
                      for p in await collect(ctx, pool.o, groups, READY[pattern])]
        ctx.set(pool.o.ready, 1)   # any further beat would be taken, and counted
        await ctx.tick().repeat(4 * words + 8 * groups + 30)
        ctx.set(pool.o.ready, 0)
        assert len(pool_out.payloads) == count["pooled"] + len(pooled), "a pool beat too many"
        count["pooled"] = len(pool_out.payloads)
        beats = [(cycle - start_cycle, int(p.index), int(p.group), int(p.last),
                  [int(v) for v in p.values])
                 for cycle, p in zip(read.cycles[first_read:], read.payloads[first_read:])]
        assert [b[1:4] for b in beats] == [(i, i % groups, int(i == words - 1))
                                           for i in range(words)]
        assert [b[4] for b in beats] == [lanes_of(init[base + i]) for i in range(words)]
        # start in cycle 0, the first address in cycle 1, its word on o in cycle 3
        assert beats[0][0] == 3, "the first word leaves two cycles after its address"
        if is_pool:   # (outside a pool step the count above shows the pool offered nothing)
            sums = pool_sums([lanes_of(init[base + i]) for i in range(words)], groups, LANES)
            assert pooled == [(g, sums[g * LANES:(g + 1) * LANES]) for g in range(groups)]

    count = {"cycle": 0, "pooled": 0}

    async def clock(ctx):   # the cycle number, for the reader's timestamps
        async for _ in ctx.tick():
            count["cycle"] += 1

    async def bench(ctx):
        await run_once(ctx, 1)
        await run_once(ctx, 0)
        await run_once(ctx, 1)   # start clears the sums of the first run

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    read = monitor(sim, reader.o, name="reader.o", hold=False)   # never stalled: no ready
    pool_out = monitor(sim, pool.o, name="pool.o")               # a stalled beat must hold
    run_bounded(sim, bench, 20_000)
    if pattern != "always" and groups > 1:
        assert pool_out.stalls, "the pattern stalled nothing"


class PassTop(ReadTop):
    """The reader and a pool that sums in passes (SEW: the head's pool of counts)."""

    def __init__(self, init, groups):
        fields = dict(FIELDS, pool_more=1, pool_acc=1)
        self.reader = StreamReader(fields, lanes=LANES, stream_bits=SB, address_width=7)
        self.pool = Pool(fields, lanes=LANES, groups=groups, sum_bits=SB + 8,
                         input_layout=self.reader.o.payload.shape(), passes=True)
        self.memory = Memory(shape=unsigned(LANES * SB), depth=DEPTH, init=init)


@pytest.mark.parametrize("groups, words", [(1, 4), (3, 12)])
def test_pool_in_passes(groups, words):
    """Three passes over three streams: the first two keep their sums (``pool_more``) and offer
    nothing, the second and third add to them (``pool_acc``); the third offers the sums of all
    three. A later run without ``pool_acc`` starts from zero."""
    rng = random.Random(groups * 7 + words)
    init = [rng.getrandbits(LANES * SB) for _ in range(DEPTH)]
    top = PassTop(init, groups)
    reader, pool = top.reader, top.pool
    bases = (0, 20, 40)
    offered = []

    async def one_pass(ctx, base, more, acc):
        ctx.set(reader.config.is_reader, 1)
        ctx.set(reader.config.stream_base, base)
        ctx.set(reader.config.stream_words_m1, words - 1)
        ctx.set(reader.config.groups_m1, groups - 1)
        ctx.set(pool.config.groups_m1, groups - 1)
        ctx.set(pool.config.is_pool, 1)
        ctx.set(pool.config.pool_more, more)
        ctx.set(pool.config.pool_acc, acc)
        for unit in (reader, pool):
            ctx.set(unit.start, 1)
        await ctx.tick()
        for unit in (reader, pool):
            ctx.set(unit.start, 0)
        ctx.set(pool.o.ready, 1)
        for _ in range(words + groups + 12):
            await ctx.tick()
            if ctx.get(pool.o.valid):
                offered.append((base, int(ctx.get(pool.o.payload.index)),
                                [int(v) for v in ctx.get(pool.o.payload.x)]))

    def sums(*chosen):
        return pool_sums([lanes_of(init[b + i]) for b in chosen for i in range(words)], groups,
                         LANES)

    async def bench(ctx):
        await one_pass(ctx, bases[0], 1, 0)
        await one_pass(ctx, bases[1], 1, 1)
        assert offered == [], "a pass that keeps its sums offered a beat"
        await one_pass(ctx, bases[2], 0, 1)
        want = sums(*bases)
        assert offered == [(bases[2], g, want[g * LANES:(g + 1) * LANES]) for g in range(groups)]
        offered.clear()
        await one_pass(ctx, bases[1], 0, 0)     # no pool_acc: start clears the kept sums
        want = sums(bases[1])
        assert offered == [(bases[1], g, want[g * LANES:(g + 1) * LANES]) for g in range(groups)]

    sim = Simulator(top)
    sim.add_clock(1e-8)
    run_bounded(sim, bench, 20_000)


def test_references():
    assert stream_update(5, 3, 2, True, 8) == 17
    assert stream_update(5, 3, 2, False, 8) == 12
    assert stream_update(100, 15, 3, True, 8) == -36       # 220 wraps to 8 signed bits
    assert stream_update(100, 100, 3, True, 8) == -124     # 900: more than one wrap
    assert stream_update(50, 5, 2, True, 8) == 70          # positive up to the sign bit
    assert pool_sums([[1, 2], [3, 4], [5, 6]], 2, 2) == [6, 8, 3, 4]


# --- the spike fetch beside the reader (vanilla shortcut) -----------------------------------------

W_MAP = 8   # bank bits of the spike memory below (one case: 9, not a power of two)


def fetch_fields(width):
    return dict(FIELDS, groups_m1=range(16), is_residual=1, res_base=unsigned(7),
                res_stride=range(width + 1),
                res_side_m1=range(width + 1), res_pack_m1=range(width + 1), ibase=unsigned(5))


class FetchTop(Elaboratable):
    def __init__(self, stream_init, spike_init, width=W_MAP):
        fields = fetch_fields(width)
        self.reader = StreamReader(fields, lanes=LANES, stream_bits=SB, address_width=7)
        self.fetch = SpikeFetch(fields, lanes=LANES, map_width=width, address_width=7,
                                ident_width=5)
        self.streams = Memory(shape=unsigned(LANES * SB), depth=DEPTH, init=stream_init)
        self.spikes = Memory(shape=unsigned(LANES * width), depth=DEPTH, init=spike_init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.fetch = fetch = self.fetch
        m.submodules.streams = streams = self.streams
        m.submodules.spikes = spikes = self.spikes
        read, spike_read = streams.read_port(), spikes.read_port()
        m.d.comb += [read.addr.eq(reader.addr), reader.data.eq(read.data),
                     spike_read.addr.eq(fetch.addr), spike_read.en.eq(fetch.en),
                     fetch.data.eq(spike_read.data)]
        return m


def spike_memory(spikes, base, pack, lanes=LANES, depth=DEPTH, bank_bits=W_MAP):
    """The shared spike memory's words holding ``spikes[C, S, S]`` at ``base`` (hw.plan's layout:
    group ``q`` packed ``pack`` a word, row ``y`` at word ``base + (q // pack) * S + y``, bit
    ``(q % pack) * S + x`` of bank ``c % lanes``); every other bit random."""
    rng = random.Random(base)
    words = [rng.getrandbits(lanes * bank_bits) for _ in range(depth)]
    channels, side, _ = spikes.shape
    groups = -(-channels // lanes)
    for q in range((groups + pack - 1) // pack * pack):
        for y in range(side):
            address = base + (q // pack) * side + y
            for lane in range(lanes):
                c = q * lanes + lane
                for x in range(side):
                    bit = lane * bank_bits + (q % pack) * side + x
                    value = int(spikes[c, y, x]) if c < channels else 0
                    words[address] = words[address] & ~(1 << bit) | (value << bit)
    return words


@pytest.mark.parametrize("channels, side, pack, width", [
    (4, 3, 1, 8), (12, 2, 3, 8), (10, 4, 2, 8), (8, 1, 1, 8), (16, 2, 2, 8),
    (36, 1, 9, 9)])   # side 1, nine groups a 9-bit bank: the last group's row at bit 8
def test_spike_fetch_follows_the_reader(channels, side, pack, width):
    """Every reader beat comes with the spikes of its (position, group), and the identity
    address of its group was offered the cycle before; two runs back to back, at two bases."""
    import numpy as np

    rng = np.random.default_rng(channels * 7 + side)
    groups = -(-channels // LANES)
    words = side * side * groups
    spikes = rng.integers(0, 2, (channels, side, side))
    base = 5
    top = FetchTop([0] * DEPTH, spike_memory(spikes, base, pack, bank_bits=width), width)
    reader, fetch = top.reader, top.fetch
    expected = residual_spike_order(spikes, groups, LANES)

    async def bench(ctx):
        for unit in (reader, fetch):
            config = unit.config
            for name, value in (("is_reader", 1), ("stream_base", 0), ("stream_words_m1", words - 1),
                                ("groups_m1", groups - 1)):
                if name in unit.FIELDS:
                    ctx.set(config[name], value)
        for name, value in (("is_residual", 1), ("res_base", base), ("res_stride", side),
                            ("res_side_m1", side - 1), ("res_pack_m1", pack - 1), ("ibase", 16)):
            ctx.set(fetch.config[name], value)
        for _ in range(2):
            seen = []
            ctx.set(reader.start, 1)
            ctx.set(fetch.start, 1)
            await ctx.tick()
            ctx.set(reader.start, 0)
            ctx.set(fetch.start, 0)
            previous_ident = None
            for _ in range(words + 6):
                if ctx.get(reader.o.valid):
                    group = ctx.get(reader.o.payload.group)
                    assert previous_ident == 16 | group   # read the cycle before the beat
                    seen.append([ctx.get(fetch.bits[lane]) for lane in range(LANES)])
                previous_ident = ctx.get(fetch.ident_addr)
                await ctx.tick()
            assert seen == expected
            assert not ctx.get(fetch.en), "the fetch stops with the reader"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    run_bounded(sim, bench, 5_000)


@pytest.mark.parametrize("seed", range(3))
def test_pool_beats_in_any_group_order(seed):
    """The pool alone, fed beats of random groups in random order (repeats, gaps between
    beats, groups never written), two runs back to back: each offers every group's sums of its
    own beats only. ``start`` clears by marking groups not kept, so the sums memory still holds
    the first run's words when the second starts: a group read before it is written again must
    read zero, whatever its neighbours hold."""
    rng = random.Random(seed)
    groups = 5
    reader = StreamReader(FIELDS, lanes=LANES, stream_bits=SB, address_width=7)
    layout = reader.o.payload.shape()
    dut = Pool(FIELDS, lanes=LANES, groups=groups, sum_bits=SB + 8, input_layout=layout)
    runs = []
    for _ in range(2):
        beats = [(rng.randrange(groups), [rng.randrange(-(1 << (SB - 1)), 1 << (SB - 1))
                                          for _ in range(LANES)])
                 for _ in range(rng.randrange(3, 12))]
        runs.append(beats)

    async def bench(ctx):
        ctx.set(dut.config.is_pool, 1)
        ctx.set(dut.config.groups_m1, groups - 1)
        ctx.set(dut.o.ready, 1)
        for beats in runs:
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for n, (group, values) in enumerate(beats):
                for _ in range(rng.randrange(2)):    # an idle cycle now and then
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, layout.const({"group": group, "values": values,
                                                     "index": n, "last": n == len(beats) - 1}))
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            got = []
            for _ in range(groups + 8):
                if ctx.get(dut.o.valid):
                    beat = ctx.get(dut.o.payload)
                    got.append((int(beat.index), [int(v) for v in beat.x]))
                await ctx.tick()
            want = [(g, [sum(values[lane] for group, values in beats if group == g)
                         for lane in range(LANES)]) for g in range(groups)]
            assert got == want

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
