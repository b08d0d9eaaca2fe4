"""Spike-map writer (hw/mapwriter.py) against its reference :func:`hw.mapwriter.map_image`.

Random spike maps go in as beats in the writer's order (LIF order: position-major, group-minor;
SDSA order: head-major, token-minor), with idle cycles between beats; the memory, preset to
random words, must then hold exactly the reference image over the map and its old words
everywhere else, and ``done`` must pulse once, with the map's final word. Two maps are written
back to back in one run, so a step's start must reset everything the previous step left.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.mapwriter import SpikeMapWriter, map_image, write_order
from hw.params import ceil_div
from hw.plan import SharedMap
from sim.streams import PATTERNS, run_bounded, send
from subsets import rotated

# W = 9 and max_groups = 5: a counter one bit too narrow (range(W - 1), range(max_groups - 1))
# cannot reach a side-9 map's last column or a 5-group map's last group.
LANES, W, DEPTH = 4, 9, 224
FIELDS = {"dst_base": unsigned(8), "dst_stride": range(17), "dst_side_m1": range(W + 1),
          "dst_side_m2": range(W + 1), "dst_mask": unsigned(W), "groups_m1": range(6),
          "groups_m2": range(6), "heads_m1": range(4), "heads_m2": range(4),
          "head_stride": range(65), "dst_word_bits": range(W + 1), "dst_words_m1": range(6),
          "dst_words_m2": range(6)}


def spike_map(name, channels, side, base, pack=1):
    return SharedMap(name, channels, side, base, ceil_div(channels, LANES), pack)


class Top(Elaboratable):
    """The writer with a memory on its write port."""

    def __init__(self, maps, heads, init):
        self.writer = SpikeMapWriter(FIELDS, lanes=LANES, map_width=W, depth=DEPTH, address_width=8,
                                     max_groups=5, maps=maps, heads=max(heads, 3))
        self.memory = Memory(shape=unsigned(LANES * W), depth=DEPTH, init=init)

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer = self.writer
        m.submodules.memory = self.memory
        wiring.connect(m, self.writer.write, self.memory.write_port())
        return m


def config(info: SharedMap, heads: int, groups: int) -> dict:
    """The descriptor fields of a step writing ``heads`` heads of ``groups`` groups each (a LIF
    step: one head of all the map's groups)."""
    words = ceil_div(groups, info.pack)
    return {"dst_base": info.base, "dst_stride": info.side,
            "dst_side_m1": info.side - 1, "dst_side_m2": max(0, info.side - 2),
            "dst_mask": (1 << info.pack * info.side) - 1, "groups_m1": groups - 1,
            "groups_m2": max(0, groups - 2), "heads_m1": heads - 1, "heads_m2": max(0, heads - 2),
            "head_stride": words * info.side, "dst_word_bits": info.pack * info.side,
            "dst_words_m1": words - 1, "dst_words_m2": max(0, words - 2)}


def used_bits(info, heads: int, groups: int) -> dict[int, int]:
    """``{address: mask}`` of the bits holding a channel's row: a packed map's last word of a
    row may leave group slots free (they hold whatever the row buffer held: unspecified)."""
    ones = [[[1] * info.side] * info.side] * (heads * groups * LANES)
    return map_image(ones, info.base, LANES, W, info.pack)


def lif(info):
    return (info, 1, ceil_div(info.channels, LANES))


#: Writer jobs: each a sequence of maps written one after another.
JOBS = [
    pytest.param([lif(spike_map("a", 9, 5, 3)), lif(spike_map("b", 4, 1, 100))],
                 id="lif-3groups-side5-then-side1"),
    pytest.param([lif(spike_map("a", 8, 2, 0)), lif(spike_map("b", 12, 3, 60))],
                 id="lif-2groups-then-3groups"),
    pytest.param([(spike_map("q", 8, 3, 10), 2, 1), lif(spike_map("b", 5, 4, 40))],
                 id="sdsa-2heads-then-lif"),
    pytest.param([(spike_map("q", 4, 2, 7), 1, 1), (spike_map("r", 4, 2, 30), 1, 1)],
                 id="sdsa-1head-twice"),
    pytest.param([(spike_map("q", 12, 3, 2), 3, 1), (spike_map("r", 12, 2, 60), 3, 1)],
                 id="sdsa-3heads-twice"),
    # A head of two or three word groups (head width above the lanes), two shapes in a row.
    pytest.param([(spike_map("q", 16, 3, 2), 2, 2), (spike_map("r", 12, 2, 80), 1, 3),
                  lif(spike_map("b", 5, 2, 120))],
                 id="sdsa-2heads-of-2groups-then-1head-of-3"),
    pytest.param([(spike_map("q", 12, 1, 0), 3, 1), (spike_map("r", 16, 1, 40), 2, 2)],
                 id="sdsa-side1-heads"),
    pytest.param([lif(spike_map("w", 4, 9, 150)), lif(spike_map("g", 20, 2, 170))],
                 id="lif-side9-then-5groups"),
    # Packed maps: 5 groups four to a word (the second word holds one), 3 groups filling the
    # 9-bit bank, then attention heads of 2 and 3 groups packed a head to a word.
    pytest.param([lif(spike_map("p", 20, 2, 10, pack=4)), lif(spike_map("f", 12, 3, 50, pack=3))],
                 id="lif-packed-4-then-3"),
    pytest.param([(spike_map("q", 16, 2, 100, pack=2), 2, 2),
                  (spike_map("r", 12, 3, 130, pack=3), 1, 3), lif(spike_map("b", 5, 2, 160))],
                 id="sdsa-packed-heads-then-lif"),
]


@pytest.mark.parametrize("jobs, pattern", rotated(JOBS, sorted(PATTERNS)))
def test_writer_leaves_the_reference_image(jobs, pattern):
    heads = max(h for _, h, _ in jobs)
    rng_seed = sum(map(ord, pattern)) + 7 * len(jobs) + heads   # not hash(): salted per run
    rng = random.Random(rng_seed)
    init = [rng.getrandbits(LANES * W) for _ in range(DEPTH)]
    top = Top([info for info, _, _ in jobs], heads, init)
    dut = top.writer
    final, used = {}, {}
    results = []

    events = {"done": [], "write": []}

    async def watch(ctx):   # the cycles with done and with a write
        cycle = 0
        async for _, _, done, write in ctx.tick().sample(dut.done, dut.write.en):
            if done:
                events["done"].append(cycle)
            if write:
                events["write"].append(cycle)
            cycle += 1

    async def bench(ctx):
        for info, job_heads, groups in jobs:
            spikes = [[[rng.getrandbits(1) for _ in range(info.side)] for _ in range(info.side)]
                      for _ in range(job_heads * groups * LANES)]
            final.update(map_image(spikes, info.base, LANES, W, info.pack))
            used.update(used_bits(info, job_heads, groups))
            for name, value in config(info, job_heads, groups).items():
                ctx.set(dut.config[name], value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            done_before = len(events["done"])
            beats = [sum(spikes[g * LANES + b][y][x] << b for b in range(LANES))
                     for y, x, g in write_order(info.side, groups, job_heads)]
            await send(ctx, dut.i, beats, PATTERNS[pattern])
            await ctx.tick().repeat(2 * groups + 4)   # the last row's flush
            results.append((events["done"][done_before:], list(events["write"])))
        for address in range(DEPTH):
            mask = used.get(address, (1 << LANES * W) - 1)
            got = ctx.get(top.memory.data[address]) & mask
            want = final.get(address, init[address]) & mask
            assert got == want, f"word {address}: {got:#x}, expected {want:#x}"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    run_bounded(sim, bench, 20_000)
    for dones, writes in results:
        assert len(dones) == 1, f"done pulsed at {dones}"
        assert dones[0] == writes[-1], "done must come with the map's final word"


def test_write_order_by_hand():
    """Two heads of two groups, side 1; one head of one group, side 2."""
    assert write_order(1, 2, 2) == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)]
    assert write_order(2, 1) == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)]


def test_reference_image_layout():
    """map_image by hand: 2 groups of 2 lanes, side 2, base 4, W 8; then packed two a word."""
    spikes = [[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 0], [1, 0]], [[0, 1], [1, 1]]]
    image = map_image(spikes, 4, 2, 8)
    assert image == {4: 0b01 | 0b11 << 8, 5: 0b10 | 0b00 << 8,
                     6: 0b00 | 0b10 << 8, 7: 0b01 | 0b11 << 8}
    # group 1 at bits 2.. of each bank of the same words
    assert map_image(spikes, 4, 2, 8, pack=2) == {
        4: 0b01 | 0b11 << 8 | 0b00 << 2 | 0b10 << 10,
        5: 0b10 | 0b00 << 8 | 0b01 << 2 | 0b11 << 10}
