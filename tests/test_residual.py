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

from hw.residual import Pool, StreamReader, StreamWriteStage, pool_sums, stream_update
from sim.streams import PATTERNS

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

    async def bench(ctx):
        ctx.set(dut.config.shift_base, shift_base)
        gaps = iter(PATTERNS[pattern] * 1000)
        index, cycle, idle = 0, 0, 0
        while index < len(beats) or idle < 6:
            offer = bool(index < len(beats) and next(gaps))
            if offer:
                address, values, add, group = beats[index]
                ctx.set(dut.i.payload.addr, address)
                for lane in range(LANES):
                    ctx.set(dut.i.payload.values[lane], values[lane])
                ctx.set(dut.i.payload.add, add)
                ctx.set(dut.i.payload.group, group)
                ctx.set(dut.i.payload.last, index == len(beats) - 1)
                index += 1
            ctx.set(dut.i.valid, offer)
            if ctx.get(dut.written_last):
                lasts.append(cycle)
            if ctx.get(dut.write.en):
                writes.append(cycle)
            idle = idle + 1 if index == len(beats) else 0
            await ctx.tick()
            cycle += 1
        ctx.set(dut.i.valid, 0)
        for address in range(DEPTH):
            got = ctx.get(top.memory.data[address])
            assert got == expected[address], f"word {address}"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
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


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("groups, words", [(1, 1), (1, 9), (3, 12), (4, 4)])
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
        await ctx.tick()
        for unit in (reader, pool):
            ctx.set(unit.start, 0)
        beats, pooled, starts_at = [], [], 1
        readies = iter(PATTERNS[pattern] * 1000)
        held = None
        for cycle in range(4 * words + 8 * groups + 30):
            ready = next(readies)
            ctx.set(pool.o.ready, ready)
            await ctx.delay(0)
            if ctx.get(reader.o.valid):
                o = ctx.get(reader.o.payload)
                beats.append((cycle, int(o.index), int(o.group), int(o.last),
                              [int(v) for v in o.values]))
            if ctx.get(pool.o.valid):
                o = ctx.get(pool.o.payload)
                beat = (int(o.index), [int(v) for v in o.x])
                if held is not None:
                    assert beat == held, "a stalled pool beat changed"
                held = None if ready else beat
                if ready:
                    pooled.append(beat)
            await ctx.tick()
        assert [b[1:4] for b in beats] == [(i, i % groups, int(i == words - 1))
                                           for i in range(words)]
        assert [b[4] for b in beats] == [lanes_of(init[base + i]) for i in range(words)]
        assert beats[0][0] == starts_at + 1, "the first word leaves two cycles after start"
        if is_pool:
            sums = pool_sums([lanes_of(init[base + i]) for i in range(words)], groups, LANES)
            assert pooled == [(g, sums[g * LANES:(g + 1) * LANES]) for g in range(groups)]
        else:
            assert pooled == [], "the pool works only in a pool step"

    async def bench(ctx):
        await run_once(ctx, 1)
        await run_once(ctx, 0)
        await run_once(ctx, 1)   # start clears the sums of the first run

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_references():
    assert stream_update(5, 3, 2, True, 8) == 17
    assert stream_update(5, 3, 2, False, 8) == 12
    assert stream_update(100, 15, 3, True, 8) == -36       # 220 wraps to 8 signed bits
    assert pool_sums([[1, 2], [3, 4], [5, 6]], 2, 2) == [6, 8, 3, 4]
