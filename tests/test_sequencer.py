"""Sequencer (hw/sequencer.py) against its reference :func:`hw.sequencer.sequence`.

A small descriptor table that skips steps (as the shared network skips ``begin_stem``) is walked
over several time steps with random step durations; every ``step_start`` must load the table's
word for the ``(t, step)`` the reference names, in the reference's order, and the run must end
with ``done`` and the cycle count it took.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.sequencer import Sequencer, sequence, split_lookup, split_table, step_address_bits
from sim.streams import run_bounded

STEPS = 6
RUNS = [0, 2, 3, 5]     # steps 1 and 4 are skipped (their work is done by another step)
ODD_RUNS = [0, 1, 4, 5]  # a different chain at odd time steps: the table, not the order, decides


def runs(t: int) -> list[int]:
    return ODD_RUNS if t % 2 else RUNS


def kept_runs(t: int) -> list[int]:
    """Step 0 at the first time step only (as the shared network's kept stem)."""
    return RUNS if t == 0 else RUNS[1:]


def table(T: int, seed: int, chain=runs):
    """A descriptor layout and table: ``next_k`` / ``last_step`` chain ``chain(t)``; ``value``
    random."""
    layout = data.StructLayout({"value": 8, "next_k": range(STEPS + 1), "last_step": 1})
    rng = random.Random(seed)
    k_bits = step_address_bits(STEPS)
    rom = {}
    for t in range(T):
        RUNS = chain(t)  # noqa: N806
        for position, k in enumerate(RUNS):
            following = RUNS[position + 1] if position + 1 < len(RUNS) else STEPS
            word = layout.const({"value": rng.randrange(256), "next_k": following,
                                 "last_step": int(following == STEPS)})
            rom[(t << k_bits) | k] = word.as_value().value
    return layout, rom


def simulate(layout, rom, T: int, seed: int, time_steps: int = 0, restart: int = 0,
             layer_major: bool = False, down: bool = False, loops: bool = False):
    """Run once (``time_steps`` asked at ``run``); return ``[(t, step, value)]`` at each
    ``step_start``, ``cycles`` and the cycle count from ``run`` to ``done``."""
    dut = Sequencer(layout, rom, steps=STEPS, T=T, restart=restart, layer_major=layer_major,
                    down=down, loops=loops)
    rng = random.Random(seed)
    seen = []
    out = {}

    async def bench(ctx):
        assert not ctx.get(dut.running) and not ctx.get(dut.done)
        ctx.set(dut.time_steps, time_steps)
        ctx.set(dut.run, 1)
        await ctx.tick()
        ctx.set(dut.run, 0)
        ctx.set(dut.time_steps, 0)   # sampled at run: changing it later changes nothing
        elapsed = 1
        wait = None
        while not ctx.get(dut.done):
            assert elapsed < 2000, "the run never ends"
            assert ctx.get(dut.cycles) == elapsed - 1, "cycles counts from 0 after run"
            if ctx.get(dut.step_start):
                desc = ctx.get(dut.desc)
                seen.append((ctx.get(dut.t), ctx.get(dut.step), desc.value))
                assert ctx.get(dut.first) == (ctx.get(dut.t) == 0)
                wait = rng.randrange(1, 6)   # a step never ends in its start cycle
            # ``finish`` is a comb pulse: offered once, ``wait`` cycles after the start.
            ctx.set(dut.finish, wait == 0)
            if wait is not None:
                wait = None if wait == 0 else wait - 1
            await ctx.tick()
            elapsed += 1
        ctx.set(dut.finish, 0)
        out["cycles"] = ctx.get(dut.cycles)
        out["elapsed"] = elapsed
        assert not ctx.get(dut.running)
        for _ in range(5):   # done holds and cycles freeze until the next run
            await ctx.tick()
            assert ctx.get(dut.done) and ctx.get(dut.cycles) == out["cycles"]
        # A second run counts from 0 again, not from the first run's count.
        ctx.set(dut.run, 1)
        await ctx.tick()
        ctx.set(dut.run, 0)
        for n in range(3):
            assert ctx.get(dut.cycles) == n and ctx.get(dut.running)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    run_bounded(sim, bench, 5_000)
    return seen, out


@pytest.mark.parametrize("T", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_sequencer_walks_the_table(T, seed):
    layout, rom = table(T, seed)
    seen, out = simulate(layout, rom, T, seed)
    expected = sequence(rom, layout, STEPS, T)
    assert [(t, k) for t, k, _ in seen] == expected
    k_bits = step_address_bits(STEPS)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)
    assert out["cycles"] == out["elapsed"] - 1


@pytest.mark.parametrize("T, time_steps", [(3, 1), (3, 2), (3, 3), (3, 0), (2, 3), (1, 1)])
def test_a_run_does_the_time_steps_asked(T, time_steps):
    """One table of T time steps serves every run of 1..T (0, or more than T: all T)."""
    layout, rom = table(T, 5)
    seen, _ = simulate(layout, rom, T, 5, time_steps)
    expected = sequence(rom, layout, STEPS, T, time_steps)
    assert [(t, k) for t, k, _ in seen] == expected
    done = time_steps if 1 <= time_steps <= T else T
    assert {t for t, _, _ in seen} == set(range(done))


@pytest.mark.parametrize("time_steps", [0, 1, 2])
def test_later_time_steps_begin_at_the_restart_step(time_steps):
    """A table whose step 0 runs at t = 0 only (the kept stem): each later time step begins at
    ``restart`` and never visits step 0."""
    layout, rom = table(3, 7, kept_runs)
    seen, _ = simulate(layout, rom, 3, 7, time_steps, restart=RUNS[1])
    expected = sequence(rom, layout, STEPS, 3, time_steps, restart=RUNS[1])
    done = time_steps if 1 <= time_steps <= 3 else 3
    assert expected == [(t, k) for t in range(done) for k in kept_runs(t)]
    assert [(t, k) for t, k, _ in seen] == expected
    k_bits = step_address_bits(STEPS)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)


def layer_table(T: int, seed: int, once=(0,), down=None, group=None):
    """The layer schedule's table (``hw.descriptor``): the same chain at every time step
    (``RUNS``), ``last_step`` on the program's last step, ``once`` on the steps in ``once``,
    which have words at ``t = 0`` only; ``value`` random. ``down``: the steps that run their
    time steps downwards (the layout then has ``down`` and ``next_down``)."""
    fields = {"value": 8, "next_k": range(STEPS + 1), "last_step": 1, "once": 1}
    if down is not None:
        fields.update(down=1, next_down=1)
    if group is not None:
        fields.update(tail=1, loop=1, loop_k=range(STEPS + 1))
    layout = data.StructLayout(fields)
    rng = random.Random(seed)
    k_bits = step_address_bits(STEPS)
    rom = {}
    for t in range(T):
        for position, k in enumerate(RUNS):
            if t and k in once:
                continue
            following = RUNS[position + 1] if position + 1 < len(RUNS) else STEPS
            word = {"value": rng.randrange(256), "next_k": following,
                    "last_step": int(following == STEPS), "once": int(k in once)}
            if down is not None:
                word.update(down=int(k in down), next_down=int(following in down))
            if group is not None:
                word.update(tail=int(k in group[:-1]), loop=int(k == group[-1]),
                            loop_k=group[0])
            rom[(t << k_bits) | k] = layout.const(word).as_value().value
    return layout, rom


@pytest.mark.parametrize("T, time_steps", [(3, 0), (3, 2), (3, 1), (1, 0), (4, 4)])
@pytest.mark.parametrize("once", [(0,), ()], ids=["kept-stem", "none-once"])
def test_the_layer_schedule_runs_a_step_at_every_time_step_first(T, time_steps, once):
    """``layer_major``: each step at t = 0 .. the run's last time step (a ``once`` step at 0
    only), then the next step at t = 0; the table's words at each (t, step)."""
    layout, rom = layer_table(T, 11, once)
    seen, out = simulate(layout, rom, T, 11, time_steps, layer_major=True)
    done = time_steps if 1 <= time_steps <= T else T
    want = [(t, k) for k in RUNS for t in range(1 if k in once else done)]
    assert sequence(rom, layout, STEPS, T, time_steps, layer_major=True) == want
    assert [(t, k) for t, k, _ in seen] == want
    k_bits = step_address_bits(STEPS)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)
    assert out["cycles"] == out["elapsed"] - 1


@pytest.mark.parametrize("T, time_steps", [(3, 0), (3, 2), (3, 1), (4, 4)])
@pytest.mark.parametrize("down", [(2,), (2, 3), (5,)], ids=["one", "two-in-a-row", "last"])
def test_a_down_step_runs_its_time_steps_downwards(T, time_steps, down):
    """``down``: a step with ``down`` runs from the run's last time step to 0 (the step before
    it enters it there through ``next_down``); the others still rise, the kept stem once."""
    layout, rom = layer_table(T, 5, (0,), down)
    seen, out = simulate(layout, rom, T, 5, time_steps, layer_major=True, down=True)
    done = time_steps if 1 <= time_steps <= T else T
    want = []
    for k in RUNS:
        ts = range(1 if k == 0 else done)
        want += [(t, k) for t in (reversed(ts) if k in down else ts)]
    assert sequence(rom, layout, STEPS, T, time_steps, layer_major=True) == want
    assert [(t, k) for t, k, _ in seen] == want
    k_bits = step_address_bits(STEPS)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)
    assert out["cycles"] == out["elapsed"] - 1


@pytest.mark.parametrize("T, time_steps", [(3, 0), (3, 2), (3, 1), (4, 4)])
@pytest.mark.parametrize("group, down", [((2, 3), None), ((3, 5), None), ((3, 5), (2,))],
                         ids=["middle", "at-the-end", "after-a-down-step"])
def test_a_time_major_group_runs_its_steps_per_time_step(T, time_steps, group, down):
    """``loops``: the steps of a group (``tail`` on all but the last, ``loop`` on the last) run
    one time step after the other inside the layer-major order; the others as before."""
    layout, rom = layer_table(T, 7, (0,), down, group)
    seen, out = simulate(layout, rom, T, 7, time_steps, layer_major=True,
                         down=down is not None, loops=True)
    done = time_steps if 1 <= time_steps <= T else T
    want = []
    for k in RUNS:
        if k in group:
            if k == group[0]:
                want += [(t, j) for t in range(done) for j in group]
            continue
        ts = range(1 if k == 0 else done)
        want += [(t, k) for t in (reversed(ts) if down and k in down else ts)]
    assert sequence(rom, layout, STEPS, T, time_steps, layer_major=True) == want
    assert [(t, k) for t, k, _ in seen] == want
    k_bits = step_address_bits(STEPS)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)
    assert out["cycles"] == out["elapsed"] - 1


def test_down_steps_need_the_layer_schedule_and_their_fields():
    layout, rom = layer_table(2, 0)
    with pytest.raises(ValueError, match="'down'"):
        Sequencer(layout, rom, steps=STEPS, T=2, layer_major=True, down=True)
    with pytest.raises(ValueError, match="layer-major"):
        Sequencer(layout, rom, steps=STEPS, T=2, down=True)


def test_the_layer_schedule_needs_a_once_field():
    layout, rom = table(2, 0)
    with pytest.raises(ValueError, match="'once'"):
        Sequencer(layout, rom, steps=STEPS, T=2, layer_major=True)


def test_restart_out_of_range_is_refused():
    layout, rom = table(2, 0)
    with pytest.raises(ValueError, match="restart step 6"):
        Sequencer(layout, rom, steps=STEPS, T=2, restart=STEPS)


def test_reference_follows_the_chain():
    """The reference itself: each time step's chain, in order."""
    layout, rom = table(3, 0)
    assert sequence(rom, layout, STEPS, 3) == [(t, k) for t in range(3) for k in runs(t)]


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 8, 15, 16])
def test_step_address_bits_is_the_step_counter_width(steps):
    """The table's address splits at the width of the sequencer's step counter."""
    layout = data.StructLayout({"next_k": range(steps + 1), "last_step": 1})
    dut = Sequencer(layout, {0: layout.const({"last_step": 1}).as_value().value},
                    steps=steps, T=1)
    Fragment.get(dut, None)   # elaborated: it is only built for its port widths
    assert step_address_bits(steps) == len(dut.step)


def test_a_step_takes_five_cycles_and_ignores_early_finish():
    """With ``finish`` high in every cycle, steps start exactly 5 cycles apart (decode, load,
    start, wait, registered finish): a finish outside the wait phase ends nothing early."""
    layout, rom = table(2, 3)
    dut = Sequencer(layout, rom, steps=STEPS, T=2)
    starts = []

    async def bench(ctx):
        ctx.set(dut.run, 1)
        ctx.set(dut.finish, 1)
        await ctx.tick()
        ctx.set(dut.run, 0)
        cycle = 1
        while not ctx.get(dut.done):
            assert cycle < 500
            if ctx.get(dut.step_start):
                starts.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    run_bounded(sim, bench, 5_000)
    assert len(starts) == len(RUNS) + len(ODD_RUNS)
    assert [b - a for a, b in zip(starts, starts[1:])] == [5] * (len(starts) - 1)


@pytest.mark.parametrize("T", [2, 3, 4])
def test_the_split_table_gives_every_word_of_the_table(T):
    """The step-indexed / (t, step)-indexed split of a table over several time steps
    (``hw.sequencer.split_table``, what the hardware decodes at T > 1) gives the table's word at
    every address: invariant bits from the step, the others from (t, step)."""
    for layout, rom in (table(T, 3), table(T, 4, kept_runs), layer_table(T, 9, (0,), (2,)),
                        _mostly_constant_table(T, 6)):
        split = split_table(rom, layout.size, STEPS)
        k_bits = step_address_bits(STEPS)
        for address, word in rom.items():
            t, k = address >> k_bits, address & ((1 << k_bits) - 1)
            assert split_lookup(split, STEPS, t, k) == word, (T, t, k)


def _mostly_constant_table(T: int, seed: int):
    """A layer table whose ``value`` is the same at every time step but for one step, whose
    value is a base plus ``t`` times a stride (as a per-time-step memory's base)."""
    layout, rom = layer_table(T, seed, (0,))
    k_bits = step_address_bits(STEPS)
    out = {}
    for address, word in rom.items():
        t, k = address >> k_bits, address & ((1 << k_bits) - 1)
        fields = layout.from_bits(word)
        base = layout.from_bits(rom[k]).value   # the value at t = 0
        value = (base + 40 * t) % 256 if k == RUNS[2] else base
        out[address] = layout.const({"value": value, "next_k": fields.next_k,
                                     "last_step": fields.last_step,
                                     "once": fields.once}).as_value().value
    return layout, out


def test_the_split_decodes_constant_bits_from_the_step_alone():
    """A bit that is the same at every time step of a step takes no (t, step) term; only the
    strided step's bits do."""
    layout, rom = _mostly_constant_table(4, 6)
    step_keys, pair_keys, bit_terms = split_table(rom, layout.size, STEPS)
    k_bits = step_address_bits(STEPS)
    assert step_keys == RUNS
    assert {address & ((1 << k_bits) - 1) for address in pair_keys} == {RUNS[2]}
    seen, _ = simulate(layout, rom, 4, 6, layer_major=True)
    assert [(t, k) for t, k, _ in seen] == sequence(rom, layout, STEPS, 4, layer_major=True)
    for t, k, value in seen:
        assert value == layout.from_bits(rom[(t << k_bits) | k]).value, (t, k)
