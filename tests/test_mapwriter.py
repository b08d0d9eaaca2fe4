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

# W = 9 and max_groups = 5: a counter one bit too narrow (range(W - 1), range(max_groups - 1))
# cannot reach a side-9 map's last column or a 5-group map's last group.
LANES, W, DEPTH = 4, 9, 224
FIELDS = {"dst_base": unsigned(8), "dst_stride": range(17), "dst_side_m1": range(W + 1),
          "dst_side_m2": range(W + 1), "dst_mask": unsigned(W), "groups_m1": range(6),
          "groups_m2": range(6), "heads_m1": range(4), "heads_m2": range(4),
          "head_stride": range(65)}


def spike_map(name, channels, side, base, h_log):
    groups = ceil_div(channels, LANES)
    return SharedMap(name, channels, side, base, (groups - 1).bit_length(), h_log)


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
    return {"dst_base": info.base, "dst_stride": 1 << info.h_log,
            "dst_side_m1": info.side - 1, "dst_side_m2": max(0, info.side - 2),
            "dst_mask": (1 << info.side) - 1, "groups_m1": groups - 1,
            "groups_m2": max(0, groups - 2), "heads_m1": heads - 1, "heads_m2": max(0, heads - 2),
            "head_stride": groups << info.h_log}


def lif(info):
    return (info, 1, ceil_div(info.channels, LANES))


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("jobs", [
    pytest.param([lif(spike_map("a", 9, 5, 3, 3)), lif(spike_map("b", 4, 1, 100, 0))],
                 id="lif-3groups-side5-then-side1"),
    pytest.param([lif(spike_map("a", 8, 2, 0, 1)), lif(spike_map("b", 12, 3, 60, 2))],
                 id="lif-2groups-then-3groups"),
    pytest.param([(spike_map("q", 8, 3, 10, 2), 2, 1), lif(spike_map("b", 5, 4, 40, 2))],
                 id="sdsa-2heads-then-lif"),
    pytest.param([(spike_map("q", 4, 2, 7, 1), 1, 1), (spike_map("r", 4, 2, 30, 1), 1, 1)],
                 id="sdsa-1head-twice"),
    pytest.param([(spike_map("q", 12, 3, 2, 2), 3, 1), (spike_map("r", 12, 2, 60, 1), 3, 1)],
                 id="sdsa-3heads-twice"),
    # A head of two or three word groups (head width above the lanes), two shapes in a row.
    pytest.param([(spike_map("q", 16, 3, 2, 2), 2, 2), (spike_map("r", 12, 2, 80, 1), 1, 3),
                  lif(spike_map("b", 5, 2, 120, 1))],
                 id="sdsa-2heads-of-2groups-then-1head-of-3"),
    pytest.param([(spike_map("q", 12, 1, 0, 0), 3, 1), (spike_map("r", 16, 1, 40, 0), 2, 2)],
                 id="sdsa-side1-heads"),
    pytest.param([lif(spike_map("w", 4, 9, 150, 4)), lif(spike_map("g", 20, 2, 170, 1))],
                 id="lif-side9-then-5groups"),
])
def test_writer_leaves_the_reference_image(jobs, pattern):
    heads = max(h for _, h, _ in jobs)
    rng_seed = sum(map(ord, pattern)) + 7 * len(jobs) + heads   # not hash(): salted per run
    rng = random.Random(rng_seed)
    init = [rng.getrandbits(LANES * W) for _ in range(DEPTH)]
    top = Top([info for info, _, _ in jobs], heads, init)
    dut = top.writer
    final = {}
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
            final.update(map_image(spikes, info.base, info.h_log, LANES, W))
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
            got = ctx.get(top.memory.data[address])
            want = final.get(address, init[address])
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
    """map_image by hand: 2 groups of 2 lanes, side 2, h_log 1, base 4, W 8."""
    spikes = [[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 0], [1, 0]], [[0, 1], [1, 1]]]
    image = map_image(spikes, 4, 1, 2, 8)
    assert image == {4: 0b01 | 0b11 << 8, 5: 0b10 | 0b00 << 8,
                     6: 0b00 | 0b10 << 8, 7: 0b01 | 0b11 << 8}
