"""Weight fetcher (hw/weightfetch.py): AXI4 bursts, ring contents and flow control.

A small plan of three layers (a 3x3 kernel with two output groups, a 1x1 layer of three groups,
a 7x7 kernel: ``B`` = 5, 2 and 6) runs through :class:`WeightFetcher` in Amaranth's simulator
against a Python AXI4 memory that answers each burst after a random latency (1-64 cycles) with
``arready`` and ``rvalid`` dropped at random. A Python consumer plays the engine: per layer a
``layer_start`` pulse, per channel ``block_need``, a wait for ``block_ready``, a random number
of cycles "reading", then a check that the ring holds exactly :func:`ring_words`'s block, and
only then the release (``block_done``). A fetcher that overwrote a slot before its release, or
raised ``block_ready`` before the block was whole, fails that check.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.plan import LayerPlace
from hw.progengine_config import layer_config
from hw.weightfetch import BOUNDARY, MAX_BURST, WeightFetcher, WeightRing, ring_words
from sim.streams import run_bounded
from subsets import every_nth

LAYERS = [  # (name, Cin, Cout, kernel)
    ("a", 3, 7, 3),
    ("b", 5, 10, 1),
    ("c", 2, 4, 7),
]


def small_plan(lanes: int, weight_width: int, seed: int = 0, layers=LAYERS,
               schedule: str = "time"):
    """A stand-in for ``SharedPlan``: what :class:`WeightRing` reads (lanes, weight width, the
    engine layers in program order with their weights and configurations)."""
    rng = np.random.default_rng(seed)
    places, base = {}, 0
    limit = 1 << (weight_width - 1)
    for name, cin, cout, kernel in layers:
        config = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, height=4,
                              width=4, padding=kernel // 2, lanes=lanes, weight_base=base)
        weight = rng.integers(-limit, limit, size=(cout, cin, kernel, kernel))
        places[name] = LayerPlace(name, weight, np.zeros(cout, np.int64), config)
        base += config.weight_words_needed
    return SimpleNamespace(lanes=lanes, weight_width=weight_width, weights_packed=True,
                           schedule=schedule, memory=SimpleNamespace(layers=places))


def test_image_holds_every_weight_once():
    """The image's words decode back to the layers' weights (K * K * G words a block, no
    holes), each layer at a multiple of 64 bytes; its size is the floor plus padding only."""
    plan = small_plan(lanes=4, weight_width=5)
    ring = WeightRing(plan, depth=64, data_width=64)
    image = ring.image()
    assert len(image) == ring.size
    for layer in ring.layers:
        assert layer.address % 64 == 0
        weight = plan.memory.layers[layer.name].weight
        for c in range(layer.channels):
            words = ring_words(ring, image, layer, c)
            assert len(words) == layer.kernel ** 2 * layer.groups
            for ky in range(layer.kernel):
                for kx in range(layer.kernel):
                    for g in range(layer.groups):
                        tap = (((ky << layer.kernel_log) | kx) << layer.groups_log) | g
                        word = words[(layer.offset + (c << layer.block_log)) % 64 + tap]
                        for lane in range(4):
                            o = g * 4 + lane
                            value = (word >> (5 * lane)) & 31
                            value -= 32 if value & 16 else 0
                            want = int(weight[o, c, ky, kx]) if o < weight.shape[0] else 0
                            assert value == want, (layer.name, c, ky, kx, g, lane)
    assert ring.floor_bytes() <= ring.size


def test_ring_sequence_and_refusals():
    plan = small_plan(lanes=4, weight_width=8)
    ring = WeightRing(plan, depth=64)
    offsets = [layer.offset for layer in ring.layers]
    assert offsets == [0, 96, 128]        # a: 3 << 5; b at 96 (a multiple of 4); c at 128
    assert ring.span == 256               # 128 + (2 << 6) = 256, a multiple of 64
    assert [ring.engine_config(plan.memory.layers[n].config).weight_base
            for n in ("a", "b", "c")] == [0, 32, 0]
    with pytest.raises(ValueError, match="power of two >= the largest block"):
        WeightRing(plan, depth=32)
    with pytest.raises(ValueError, match="power of two"):
        WeightRing(plan, depth=96)
    with pytest.raises(ValueError, match="data_width"):
        WeightRing(plan, data_width=48)


def test_request_order_respects_bursts_and_boundaries():
    plan = small_plan(lanes=16, weight_width=8, layers=[("a", 40, 64, 3), ("b", 3, 16, 7)])
    ring = WeightRing(plan, data_width=64)
    bursts = ring.request_order(base=0x1FC0)
    assert sum(beats for _, beats in bursts) * 8 == sum(
        layer.channels * layer.block_words * ring.word_bytes for layer in ring.layers)
    for address, beats in bursts:
        assert 1 <= beats <= MAX_BURST
        assert address // BOUNDARY == (address + beats * 8 - 1) // BOUNDARY


def run_fetcher(lanes, weight_width, data_width, depth, T, *, seed, latency=(1, 64), pause=0.3,
                hold=(0, 6), base=0x3F00, time_steps=None, schedule="time", layers=LAYERS,
                bad_burst=None, idle=0, stale_done=0, eager=False):
    """Run the fetcher built for ``T`` time steps for ``time_steps`` of them (default: leave the
    port at 0, which runs all ``T``) against a random AXI memory and engine visiting the layers
    in ``schedule``'s order; then idle 300 cycles, recording any request the run should not
    make. ``bad_burst``: the index of a burst the memory answers with SLVERR. ``idle``: cycles
    between ``start`` and the engine's first layer (the stem's time in the network), with
    ``block_done`` at ``stale_done`` until then (what a previous run left). ``eager``: an
    engine that, like the network's, frees a block and takes the next one of its layer in the
    cycle it sees ``block_ready`` when it holds the block no longer."""
    plan = small_plan(lanes, weight_width, seed, schedule=schedule, layers=layers)
    ring = WeightRing(plan, depth=depth, data_width=data_width)
    image = ring.image()
    dut = WeightFetcher(ring, T)
    rng = random.Random(seed)
    beat_bytes = data_width // 8
    log = {"bursts": [], "checked": 0, "cycles": 0, "writes": 0, "writes_at_first_done": None,
           "ar_cycles": []}

    async def bench(ctx):
        memory = bytes(base) + image
        ring_model = {}
        pending = []       # [due cycle, address, beats left]
        ctx.set(dut.base, base)
        ctx.set(dut.block_done, stale_done)
        if time_steps is not None:
            ctx.set(dut.time_steps, time_steps)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.time_steps, 0)    # sampled at start
        run_T = T if time_steps is None else time_steps
        blocks = [(ring.layers[visit.layer], c, c == 0) for visit in ring.visits(run_T)
                  for c in range(ring.layers[visit.layer].channels)]
        # Which fetched block holds each engine block (a kept layer's later visits read the
        # blocks of its fetching visit), and the ring writes by which each fetched block is
        # whole: block_ready may rise only after them.
        holder, whole_after, fetched, first_of = [], [], 0, {}
        # A block whose last write comes in the cycle after the R walker's layer load (only a
        # visit's first block can) may be let in a cycle later.
        first_fetched, write_cycle = set(), {}
        for visit in ring.visits(run_T):
            layer = ring.layers[visit.layer]
            if visit.fetch:
                first_of[visit.layer] = fetched
                first_fetched.add(fetched)
                for _ in range(layer.channels):
                    fetched += 1
                    whole_after.append((whole_after[-1] if whole_after else 0)
                                       + layer.block_words)
            holder += [first_of[visit.layer] + c for c in range(layer.channels)]
        taken, layer_started = 0, False
        state, wait = ("idle", idle) if idle else ("start", 0)
        cycle = 0
        next_need = None   # block_need's value after this edge (the engine's decode register)

        def take(layer, c):
            # block_need takes the new value at this edge (the engine's decode register)
            nonlocal next_need
            need = (c + 1) << layer.block_log
            ctx.set(dut.block_need_load, need)
            ctx.set(dut.block_need_take, 1)
            next_need = need

        def finish(layer, c):
            nonlocal taken
            for address, word in ring_words(ring, image, layer, c).items():
                assert ring_model.get(address) == word, (
                    f"cycle {cycle}: {layer.name} channel {c}: ring word {address}")
            log["checked"] += 1
            if log["writes_at_first_done"] is None:
                log["writes_at_first_done"] = log["writes"]
            ctx.set(dut.block_done, (c + 1) << layer.block_log)
            blocks.pop(0)
            taken += 1

        while blocks:
            cycle += 1
            # --- AXI memory ---
            arready = rng.random() >= pause
            ctx.set(dut.m_axi_arready, arready)
            if arready and ctx.get(dut.m_axi_arvalid):
                address = ctx.get(dut.m_axi_araddr)
                beats = ctx.get(dut.m_axi_arlen) + 1
                assert ctx.get(dut.m_axi_arsize) == (beat_bytes - 1).bit_length()
                assert ctx.get(dut.m_axi_arburst) == 1
                # one ID, normal access, bufferable and modifiable, unprivileged secure data
                assert (ctx.get(dut.m_axi_arid), ctx.get(dut.m_axi_arlock),
                        ctx.get(dut.m_axi_arcache), ctx.get(dut.m_axi_arprot)) == (0, 0, 3, 0)
                log["bursts"].append((address, beats))
                log["ar_cycles"].append(cycle)
                pending.append([cycle + rng.randint(*latency), address, beats,
                                len(log["bursts"]) - 1 == bad_burst])
            rvalid = bool(pending) and pending[0][0] <= cycle and rng.random() >= pause
            ctx.set(dut.m_axi_rvalid, rvalid)
            if rvalid:
                address = pending[0][1]
                ctx.set(dut.m_axi_rdata, int.from_bytes(memory[address:address + beat_bytes],
                                                        "little"))
                ctx.set(dut.m_axi_rlast, pending[0][2] == 1)
                ctx.set(dut.m_axi_rresp, 0b10 if pending[0][3] else 0)
                if ctx.get(dut.m_axi_rready):
                    pending[0][1] += beat_bytes
                    pending[0][2] -= 1
                    if not pending[0][2]:
                        pending.pop(0)
            # --- the ring's writes ---
            writes_before = log["writes"]     # in the ring by this cycle
            if ctx.get(dut.write.en):
                ring_model[ctx.get(dut.write.addr)] = ctx.get(dut.write.data)
                log["writes"] += 1
                write_cycle[log["writes"]] = cycle
            # --- the engine ---
            layer, c, first = blocks[0]
            ctx.set(dut.layer_start, 0)
            ctx.set(dut.block_need_take, 0)
            after_layer_start, layer_started = layer_started, False

            if state == "start":
                if first:
                    layer_started = True
                    ctx.set(dut.layer_start, 1)
                    ctx.set(dut.block_done, 0)
                take(layer, c)
                # the current block_need is the previous block's until the edge; a stale one
                # here is what the fetcher must not use
                state = "need"
            elif state == "idle":
                wait -= 1
                if not wait:
                    state = "start"
            elif state == "need":
                # and no later: from the cycle after the block's last write (but the cycle
                # after a layer_start, when the engine has nothing decoded, and a cycle later
                # for a visit's first block, whose write may follow the layer load)
                whole = whole_after[holder[taken]]
                late = (writes_before >= whole and cycle == write_cycle[whole] + 1
                        and holder[taken] in first_fetched)
                if not after_layer_start and not late and writes_before >= whole:
                    assert ctx.get(dut.block_ready), (
                        f"cycle {cycle}: {layer.name} channel {c} whole after "
                        f"{whole_after[holder[taken]]} writes, {writes_before} made, no ready")
                if ctx.get(dut.block_ready):
                    # the block is whole in the ring when the engine is let in
                    assert writes_before >= whole_after[holder[taken]], (
                        f"cycle {cycle}: block_ready for {layer.name} channel {c} after "
                        f"{writes_before} ring writes, whole after {whole_after[holder[taken]]}")
                    state, wait = "hold", rng.randint(*hold)
                    if eager and not wait:
                        finish(layer, c)
                        state = "start"
                        if blocks and not blocks[0][2]:
                            take(*blocks[0][:2])
                            state = "need"
            elif state == "hold":
                if wait:
                    wait -= 1
                else:
                    finish(layer, c)
                    state = "start"
            await ctx.tick()
            if next_need is not None:
                ctx.set(dut.block_need, next_need)
                next_need = None
        log["cycles"] = cycle
        ctx.set(dut.m_axi_arready, 1)
        ctx.set(dut.m_axi_rvalid, 0)
        for _ in range(300):          # a run that asks for more than its time steps is seen
            if ctx.get(dut.m_axi_arvalid):
                log["bursts"].append((ctx.get(dut.m_axi_araddr), ctx.get(dut.m_axi_arlen) + 1))
            await ctx.tick()
        log["bytes"] = ctx.get(dut.bytes_read)
        log["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    run_bounded(sim, bench, 200_000)
    return ring, log


@pytest.mark.parametrize("lanes,weight_width,data_width,depth,T,seed", [
    pytest.param(4, 8, 64, 64, 2, 1, id="word-in-one-beat-T2"),
    pytest.param(12, 7, 32, 256, 1, 2, id="word-in-three-beats"),   # 84 bits: not a power of 2
    # make test's budget: two shapes there, three more in make test-all.
    pytest.param(16, 7, 32, 256, 1, 2, id="word-in-four-beats", marks=pytest.mark.slow),
    pytest.param(8, 8, 64, 64, 1, 3, id="word-is-a-beat-smallest-ring", marks=pytest.mark.slow),
    pytest.param(4, 6, 128, 128, 3, 4, id="wide-bus-T3", marks=pytest.mark.slow),
])
def test_fetcher_fills_the_ring_under_back_pressure(lanes, weight_width, data_width, depth, T,
                                                    seed):
    ring, log = run_fetcher(lanes, weight_width, data_width, depth, T, seed=seed)
    assert log["checked"] == T * sum(layer.channels for layer in ring.layers)
    assert log["bursts"] == ring.request_order(0x3F00) * T
    assert log["bytes"] == T * sum(beats for _, beats in ring.request_order()) * data_width // 8
    assert log["error"] == 0


@pytest.mark.parametrize("base, layers", [
    # a base just below a page: the later layers' first beats are past the boundary, so their
    # room (the page's beats after them) wraps round the page, and the last layer (4.7 KB)
    # crosses the next boundary
    pytest.param(0xFC0, LAYERS[:2] + [("c", 12, 4, 7)], id="base-below-a-page"),
    # page-aligned blocks of exactly 256 beats (64 words of 4 beats): each is one burst of the
    # most beats that does not reach the boundary
    pytest.param(0, [("wide", 2, 1024, 1)], id="blocks-of-256-beats"),
    # page-aligned blocks of 512 beats (128 words of 4 beats): the first block's two bursts and
    # the second's first are longest bursts that do not reach the boundary (AxLEN from
    # MAX_BURST - 1), the second block's last reaches it (AxLEN from the room)
    pytest.param(0, [("wider", 2, 2048, 1)], id="blocks-of-512-beats"),
])
def test_bursts_at_the_edges_of_pages_and_lengths(base, layers):
    """The bursts follow the reference (``request_order``) where a layer's first beat lies past
    a page boundary and where a block is exactly a longest burst; with a memory that never
    pauses, the walker offers a burst in the cycle the previous one is taken (back to back)."""
    lanes, weight_width, data_width = (4, 8, 64) if base else (16, 7, 32)
    ring, log = run_fetcher(lanes, weight_width, data_width, 256, 1, seed=8, latency=(1, 1),
                            pause=0.0, base=base, layers=layers)
    assert log["bursts"] == ring.request_order(base)
    assert log["checked"] == sum(layer.channels for layer in ring.layers)
    if not base:
        assert {beats for _, beats in log["bursts"]} == {MAX_BURST}
    gaps = {b - a for a, b in zip(log["ar_cycles"], log["ar_cycles"][1:])}
    assert min(gaps) == 1, sorted(gaps)


@pytest.mark.parametrize("time_steps", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_fetcher_reads_the_time_steps_of_the_run(time_steps):
    """A fetcher built for T = 3 runs 1 or 2 time steps when asked (``time_steps``, sampled at
    start): the image that many times, no request more."""
    ring, log = run_fetcher(4, 8, 64, 64, 3, seed=7, latency=(1, 8), pause=0.1,
                            time_steps=time_steps)
    assert log["checked"] == time_steps * sum(layer.channels for layer in ring.layers)
    assert log["bursts"] == ring.request_order(0x3F00) * time_steps
    assert log["error"] == 0


@pytest.mark.parametrize("depth, T, time_steps", [
    pytest.param(64, 3, None, id="ring64-T3"),      # a and c fetched at every visit, b kept
    pytest.param(64, 3, 2, id="ring64-T3-run2", marks=pytest.mark.slow),
    pytest.param(128, 2, None, id="ring128-T2"),    # every layer kept: the image read once
])
def test_fetcher_follows_the_layer_schedule(depth, T, time_steps):
    """The layer schedule: each layer's visits in a row. A layer that fits the ring is read at
    its first visit and kept (the engine's check at every visit sees its blocks intact); a
    larger one is read again at every visit, each visit at the same ring slots."""
    # An engine slow enough that the fetcher, if it freed a kept layer's slots, would refill
    # them before the layer's next visit.
    ring, log = run_fetcher(4, 8, 64, depth, T, seed=11, latency=(1, 16), pause=0.2,
                            hold=(8, 40), time_steps=time_steps, schedule="layer")
    run_T = T if time_steps is None else time_steps
    assert ring.layer_major
    kept = [layer.name for layer, stride in zip(ring.layers, ring.strides) if stride == 0]
    assert kept == (["b"] if depth == 64 else ["a", "b", "c"])
    assert log["checked"] == run_T * sum(layer.channels for layer in ring.layers)
    assert log["bursts"] == ring.run_requests(run_T, 0x3F00)
    fetched = [ring.layers[v.layer].name for v in ring.visits(run_T) if v.fetch]
    assert fetched == (["a"] * run_T + ["b"] + ["c"] * run_T if depth == 64 else ["a", "b", "c"])
    assert log["bytes"] == ring.bytes_per_run(run_T)
    assert log["error"] == 0


def test_layer_schedule_four_layers_four_steps():
    """The layer schedule with four layers and four time steps: the engine side's step and
    layer counters (``e_t``, ``e_index``) run through widths they fill, so counting either of
    them the wrong way visits the wrong blocks (three layers at T = 3 cannot tell 0, 2, 1 from
    0, 1, 2)."""
    layers = LAYERS + [("d", 6, 3, 1)]
    ring, log = run_fetcher(4, 8, 64, 64, 4, seed=13, latency=(1, 8), pause=0.1,
                            hold=(0, 4), layers=layers, schedule="layer")
    assert ring.layer_major and len(ring.layers) == 4
    assert log["checked"] == 4 * sum(layer.channels for layer in ring.layers)
    assert log["bursts"] == ring.run_requests(4, 0x3F00)
    assert log["bytes"] == ring.bytes_per_run(4)
    assert log["error"] == 0


def test_one_word_blocks_and_an_error_answer():
    """A 1x1 layer of one output group has blocks of one ring word (``B`` = 0): the pointers'
    arithmetic is exact to the word. One burst answered with SLVERR sets ``error`` (sticky);
    the run still completes with the data it was given."""
    layers = LAYERS + [("d", 6, 3, 1)]
    ring, log = run_fetcher(4, 8, 64, 64, 2, seed=9, latency=(1, 12), pause=0.2, hold=(0, 3),
                            layers=layers, bad_burst=3)
    assert ring.layers[-1].block_log == 0
    assert log["checked"] == 2 * sum(layer.channels for layer in ring.layers)
    assert log["bursts"] == ring.run_requests(2, 0x3F00)
    assert log["error"] == 1


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_an_eager_engine_sees_each_block_the_cycle_after_it_lands(seed):
    """An engine that frees a block and takes the next in the cycle it sees ``block_ready``
    (as the network's does) with blocks of one word landing back to back: ``block_ready`` for
    the next block must rise the cycle after its last write, also when the block's landing
    stepped the R walker to the block after it (``land`` written from ``w_end2``)."""
    layers = [("d", 6, 3, 1), ("e", 5, 2, 1)] + LAYERS
    ring, log = run_fetcher(4, 8, 64, 64, 2, seed=seed, latency=(1, 3), pause=0.25,
                            hold=(0, 0), layers=layers, eager=True)
    assert ring.layers[0].block_log == 0 and ring.layers[1].block_log == 0
    assert log["checked"] == 2 * sum(layer.channels for layer in ring.layers)
    assert log["error"] == 0


def test_fetcher_fills_exactly_the_ring_before_the_engine_begins():
    """The engine's first layer begins 200 cycles after ``start`` (the stem's time): meanwhile
    the fetcher fills the ring of 4 words with the first 4 one-word blocks and stops (``free``
    is the run's first position until the engine frees a block); a fifth would overwrite
    block 0 before it is read, which the ring check of channel 0 sees. ``block_done`` holds
    what the previous run left until the engine's first layer: it frees nothing."""
    ring, log = run_fetcher(4, 8, 64, 4, 1, seed=3, latency=(1, 4), pause=0.0, hold=(0, 2),
                            layers=[("d", 6, 3, 1)], idle=200, stale_done=5)
    assert [layer.block_log for layer in ring.layers] == [0] and ring.depth == 4
    assert log["writes_at_first_done"] == 4, log["writes_at_first_done"]
    assert log["checked"] == 6


def test_default_ring_depth():
    """Four of the largest blocks, at least 1,024 words: a 7x7 layer of 32 outputs on 4 lanes
    (8 groups) has blocks of 2 ** (2 * 3 + 3) = 512 words."""
    assert WeightRing(small_plan(4, 8)).depth == 1024
    big = WeightRing(small_plan(4, 8, layers=LAYERS + [("e", 2, 32, 7)]))
    assert big.max_block == 512 and big.depth == 2048


def test_layer_schedule_visit_positions():
    """The sequence positions of the layer schedule's visits, worked out by hand from the rules
    (module docstring): layers a (offset 0, 96 words), b (offset 96, 20 words) and c (offset
    128, 128 words) in a 64-word ring; a and c are refetched one stride (128) on at each visit,
    b is kept (stride 0); the next layer starts where the previous one's last visit was."""
    ring = WeightRing(small_plan(4, 8, schedule="layer"), depth=64)
    assert [layer.offset for layer in ring.layers] == [0, 96, 128]
    assert ring.strides == [128, 0, 128]
    visits = [(v.t, ring.layers[v.layer].name, v.position, v.fetch, v.hold)
              for v in ring.visits(3)]
    assert visits == [
        (0, "a", 0, True, False), (1, "a", 128, True, False), (2, "a", 256, True, False),
        (0, "b", 352, True, True), (1, "b", 352, False, True), (2, "b", 352, False, False),
        (0, "c", 384, True, False), (1, "c", 512, True, False), (2, "c", 640, True, False)]
    # the time schedule: every layer per time step, a time step a span (256) on
    time = WeightRing(small_plan(4, 8), depth=64)
    assert [(v.t, v.position) for v in time.visits(2)] == [
        (0, 0), (0, 96), (0, 128), (1, 256), (1, 352), (1, 384)]


@pytest.mark.parametrize("depth, T", [(64, 1), (256, 2)], ids=["ring64-T1", "ring256-T2"])
def test_slow_engine_fills_the_ring_and_waits(depth, T):
    """An engine that holds every block 40 cycles: the fetcher runs a ring ahead and stops. At
    T=2 with a ring of 256 the R walker loads the next time step's first layer while the engine
    is still in the last layer's blocks, which must stay ready (``w_base`` at the wrap)."""
    ring, log = run_fetcher(4, 8, 64, depth, T, seed=5, latency=(1, 4), pause=0.0,
                            hold=(40, 40))
    assert log["checked"] == T * sum(layer.channels for layer in ring.layers)


def test_sequence_positions_wrap_within_a_run():
    """A run long enough that the sequence positions pass ``2 ** pointer_bits`` and wrap: the
    pointers' differences (``free_limit - a_end``, ``loaded - g_cur``) are taken modulo
    ``2 ** pointer_bits``, and every block still arrives whole before the engine is let in."""
    T = 10
    ring, log = run_fetcher(4, 8, 64, 64, T, seed=7, latency=(1, 8), pause=0.1, hold=(0, 2))
    end = max(visit.position + (ring.layers[visit.layer].channels
                                << ring.layers[visit.layer].block_log)
              for visit in ring.visits(T))
    assert end > 1 << ring.pointer_bits, (end, ring.pointer_bits)
    assert log["checked"] == T * sum(layer.channels for layer in ring.layers)


def test_fetcher_runs_exactly_a_ring_ahead():
    """An engine holding its first block 300 cycles, a memory answering at once: before the
    engine frees anything the fetcher writes every block that ends within the ring's ``depth``
    positions of the run's start, and not a word more (the ``fits`` test, reference: the ring's
    own visit positions)."""
    depth = 64
    ring, log = run_fetcher(4, 8, 64, depth, 1, seed=5, latency=(1, 1), pause=0.0,
                            hold=(300, 300))
    want = 0
    for visit in ring.visits(1):
        layer = ring.layers[visit.layer]
        for c in range(layer.channels):
            if visit.position + ((c + 1) << layer.block_log) > depth:
                break
            want += layer.block_words
        else:
            continue
        break
    assert 0 < want and log["writes_at_first_done"] == want, (log["writes_at_first_done"], want)


def test_a_kept_layer_is_not_overwritten_while_held():
    """Layer schedule, T=2: a layer of one-word blocks fits the ring and is kept for its second
    visit, while the next layer (80 one-word blocks, more than the ring) is fetched behind it at
    every visit. A slow engine lets the fetcher run as far as it may: one word more than the
    ring would overwrite the kept layer's first word before its second visit reads it."""
    # (name, Cin, Cout, kernel): a block an input channel, one word for 4 outputs at 4 lanes
    layers = [("kept", 6, 4, 1), ("wide", 80, 4, 1)]
    ring, log = run_fetcher(4, 8, 64, 64, 2, seed=7, latency=(1, 1), pause=0.0, hold=(40, 40),
                            schedule="layer", layers=layers)
    assert [layer.block_words for layer in ring.layers] == [1, 1]
    assert ring.layers[0].ring_words <= 64 < ring.layers[1].ring_words
    assert log["checked"] == 2 * (6 + 80)


def test_fast_memory_keeps_up():
    """With a memory of latency 30 that never pauses and an engine holding each block 20
    cycles, the engine waits for the first block only (plus layer changes)."""
    ring, log = run_fetcher(4, 8, 64, 256, 1, seed=6, latency=(30, 30), pause=0.0,
                            hold=(20, 20))
    blocks = sum(layer.channels for layer in ring.layers)
    # Per block: one cycle to start, one to see block_ready, 21 holding; plus the first fetch.
    assert log["cycles"] <= blocks * 23 + 60, log["cycles"]


def test_design_point_and_cli_refusals(tmp_path):
    """Bad AXI settings are one line naming the field and what is allowed (exit 2)."""
    import subprocess
    import sys

    from rtl_gen.config import ConfigError, load

    for field, value, message in (("weights", "dram", "allowed: 'external', 'axi'"),
                                  ("axi_data_width", 48, "allowed: 32, 64"),
                                  ("weight_ring", 1000, "a power of two")):
        with pytest.raises(ConfigError, match=message):
            load(None, **{field: value})
    assert load(None, weights="axi", weight_ring=4096).weight_ring == 4096
    assert load(None, weights="axi", schedule="layer").schedule == "layer"
    result = subprocess.run([sys.executable, "-m", "sim.e2e", "--weights", "axi",
                             "--axi-latency", "0-9", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --axi-latency: '0-9' must be N or LOW-HIGH cycles with 1 <= LOW <= HIGH <= 4096"]


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("latency, pause, T", [
    pytest.param("1-64", 0.2, 1, id="random-latency-back-pressure"),
    pytest.param("30", 0.0, 2, id="latency30-T2"),
])
def test_demo_bit_exact_with_weights_over_axi(latency, pause, T, tmp_path):
    """The trained demo on Verilator with its weights in an AXI RAM model (cocotbext-axi):
    logits and every LIF's spikes `==` the integer model, every weight read once per time step
    (the testbench checks the bytes read: T times the image's layers), no error response."""
    from sim.e2e import run_network

    summary = run_network(T, 1, tmp_path, weights="axi",
                          axi={"latency": latency, "pause": pause})
    assert summary["error"] is None, summary["error"]
    assert [r["match"] for r in summary["rtl"]] == [True]
    assert summary["rtl"][0]["weight_bytes"] == T * summary["axi"]["bytes_per_step"]
    print(f"cycles {summary['rtl'][0]['cycles']} at latency {latency}, pause {pause}, T={T}")


# --- the cycle model's fetch timing against measured RTL cycles (no Verilator needed) --------

AXI_RTL = json.loads((Path(__file__).parent / "data" / "perf_axi.json").read_text())


@pytest.fixture(scope="module")
def demo_trace():
    from sim.perf import load_trace

    images = max(run["image"] for run in AXI_RTL["runs"]) + 1
    _, plan, trace = load_trace(None, images, 1)
    return plan, trace


def axi_prediction(plan, trace, run, **model):
    from sim.perf import CycleModel

    ring = WeightRing(plan, run["ring"], data_width=run["width"])
    rows = CycleModel(plan, ring=ring, latency=run["latency"], **model).predict(
        trace, run["image"])["steps"]
    return {(row["t"], row["step"]): row["cycles"] for row in rows}


@pytest.mark.parametrize("index", range(len(AXI_RTL["runs"])))
def test_fetch_model_agrees_with_the_rtl(demo_trace, index):
    """The trained demo with its weights over AXI (latency fixed, no pauses): every step within
    one cycle of the RTL's count, the total within five (docs/perf.md: the testbench memory's
    one-cycle jitter)."""
    from sim.perf import rtl_step_cycles

    plan, trace = demo_trace
    run = AXI_RTL["runs"][index]
    measured = rtl_step_cycles({"cycles": run["cycles"], "steps": run["steps"]}, len(plan.steps))
    predicted = axi_prediction(plan, trace, run)
    assert measured.keys() == predicted.keys()
    worst = max(abs(predicted[key] - cycles) for key, cycles in measured.items())
    assert worst <= 1, worst
    assert abs(sum(predicted.values()) - run["cycles"]) <= 5


@pytest.mark.parametrize("name, delta", [("AXI_MEMORY_OFFSET", 3), ("AXI_MEMORY_OFFSET", -2)])
def test_a_mutated_fetch_term_disagrees(demo_trace, monkeypatch, name, delta):
    """The memory's offset is held by the measurements: a few cycles off is seen."""
    import sim.perf as perf

    plan, trace = demo_trace
    monkeypatch.setattr(perf, name, getattr(perf, name) + delta)
    run = AXI_RTL["runs"][0]
    from sim.perf import rtl_step_cycles

    measured = rtl_step_cycles({"cycles": run["cycles"], "steps": run["steps"]}, len(plan.steps))
    predicted = axi_prediction(plan, trace, run)
    assert max(abs(predicted[key] - cycles) for key, cycles in measured.items()) > 1


# --- the same under the layer schedule: one T = 4 build run for 1, 2 and 4 time steps --------

AXI_LAYER = json.loads((Path(__file__).parent / "data" / "perf_axi_layer.json").read_text())


@pytest.fixture(scope="module")
def layer_traces():
    """The layer-scheduled plan of the design's T and the integer traces of each run's T."""
    from hw.plan import SharedPlan
    from sim.perf import load_trace

    runs = AXI_LAYER["runs"]
    images = max(run["image"] for run in runs) + 1
    design_T = runs[0]["design_T"]
    traces, net = {}, None
    for T in sorted({run["T"] for run in runs} | {design_T}):
        _, plan, traces[T] = load_trace(None, images, T)
        if T == design_T:
            net = plan.net
    return SharedPlan(net, 16, pack_weights=False, schedule="layer"), traces


# make test: every other stored run (all in make test-all)
@pytest.mark.parametrize("index", every_nth(range(len(AXI_LAYER["runs"])), 2))
def test_fetch_model_agrees_with_the_rtl_under_the_layer_schedule(layer_traces, index):
    """The layer-scheduled T = 4 demo with its weights over AXI (latency 30, no pauses), run
    for 1, 2 and 4 time steps: layers kept in the ring are fetched once, the others at every
    visit; every step within one cycle of the RTL's count, the total within five cycles per
    time step (the testbench memory's one-cycle jitter, docs/perf.md, comes with each layer
    visit that waits for its weights)."""
    from sim.perf import CycleModel, rtl_step_cycles

    plan, traces = layer_traces
    run = AXI_LAYER["runs"][index]
    assert run["schedule"] == "layer"
    measured = rtl_step_cycles({"cycles": run["cycles"], "steps": run["steps"]}, len(plan.steps))
    ring = WeightRing(plan, run["ring"], data_width=run["width"])
    rows = CycleModel(plan, ring=ring, latency=run["latency"], time_steps=run["T"]).predict(
        traces[run["T"]], run["image"])["steps"]
    predicted = {(row["t"], row["step"]): row["cycles"] for row in rows}
    assert measured.keys() == predicted.keys()
    worst = max(abs(predicted[key] - cycles) for key, cycles in measured.items())
    assert worst <= 1, worst
    assert abs(sum(predicted.values()) - run["cycles"]) <= 5 * run["T"]
