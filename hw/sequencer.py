"""Step sequencer of the shared network: walk the program's descriptor table over T time steps.

:class:`Sequencer` owns the run: on ``run`` it clears ``cycles``, starts at step 0 of time step
0, and for each step

1. decodes ``(t, step)`` against the table's addresses into a registered one-hot ``hit`` (phase 0),
2. loads the whole descriptor word into ``desc`` (phase 3; every field with one enable),
3. pulses ``step_start`` for one cycle (phase 1),
4. waits for ``finish`` (phase 2; registered, so a step costs at least 5 cycles), then moves to
   the descriptor's ``next_k``, or, on the time step's ``last_step``, to step ``restart`` of the
   next time step (0 unless the table skips steps after the first time step, such as a stem
   whose output is kept), or ends the run (``done``) after the run's last time step.

With ``layer_major`` the order is step-major instead (the layer schedule,
:attr:`hw.plan.SharedPlan.schedule`): each step runs at every time step of the run before the
next step, ``t`` rising and ``k`` kept; a step whose descriptor has ``once`` runs at ``t = 0``
only; after the run's last time step of a step the sequencer moves to its ``next_k`` at
``t = 0``, or ends the run on ``last_step`` (the program's last step). With ``down`` as well, a
step whose descriptor has ``down`` runs its time steps from the run's last down to 0 (the
descriptor of the step before it has ``next_down``, so that the sequencer enters it at the
run's last time step; :attr:`hw.plan.SharedPlan.stem_in_place`). With ``loops``, steps may
form a time-major group inside the layer-major order: every step of the group but its last has
``tail`` (go on to ``next_k`` at the same time step); the last has ``loop`` (go back to the
group's first step, ``loop_k``, at the next time step, or on to ``next_k`` at ``t = 0`` after
the run's last; :attr:`hw.plan.SharedPlan.time_major`).

The table holds ``T`` time steps (the most a run can do); a run does ``time_steps`` of them,
sampled at ``run`` (0, or anything above ``T``, runs all ``T``), so one build serves every
``T`` up to its own.

The table is a constant: :func:`hw.descriptor.descriptor_rom` gives ``{(t << k_bits) | k:
word}``. It is built as sum-of-products logic, not a ``Switch``: Yosys would turn a switch of
constants into a memory and place it in a block RAM, whose slow output would then reach every
datapath through ``desc``. Every datapath reads only the ``desc`` registers.

Ports
-----
run : In(1)
    Pulse while not ``running``: start a run (the caller gates it with the engine's ``ready``).
finish : In(1)
    Combinational: the running step's final write happens in this cycle.
time_steps : In(range(T + 1))
    Time steps of the next run, sampled at ``run`` (0: ``T``).
t_last : Out(range(max(2, T)))
    The running run's last time step (a register, set at ``run``).
desc : Out(layout)
    The running step's descriptor (registers).
step_start : Out(1)
    One-cycle pulse: ``desc`` holds the new step's descriptor.
t : Out(range(max(2, T)))
    The running time step; ``first``: ``t == 0``.
step : Out(range(steps + 1))
    The running step's index.
running, done : Out(1)
    ``done`` is high from the end of a run until the next ``run``.
cycles : Out(32)
    Cycles since ``run`` (frozen at ``done``), restarted from ``begun``.
begun : Out(1)
    High for the cycle after ``run`` (a register): the caller's run-wide clears hang on it, not
    on the caller's ``start``.

Reference: :func:`sequence` (the ``(t, step)`` order a table prescribes). Tests:
``tests/test_sequencer.py``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Sequencer", "run_time_steps", "sequence", "step_address_bits"]


def step_address_bits(steps: int) -> int:
    """Bits of the step index in a table address (``(t << bits) | step``)."""
    return Shape.cast(range(steps + 1)).width


def run_time_steps(time_steps: int, T: int) -> int:
    """Time steps a run does when ``time_steps`` is asked of a table of ``T`` (0 or more than
    ``T``: all ``T``)."""
    return time_steps if 1 <= time_steps <= T else T


def last_time_step(asked, T: int):
    """The run's last time step (an expression) from a ``range(T + 1)`` port: ``asked - 1``, or
    ``T - 1`` for 0 or anything above ``T`` (compared only where the port holds such values)."""
    whole = asked == 0
    if (1 << len(asked)) - 1 > T:
        whole = whole | (asked > T)
    return Mux(whole, T - 1, asked - 1)


def split_table(rom: dict[int, int], width: int, steps: int):
    """Split a table of several time steps into a step-indexed part and a (t, step)-indexed
    part, bit by bit: ``(step_keys, pair_keys, bit_terms)``.

    Most of a step's descriptor is the same at every time step; only the bases of per-time-step
    memories change with ``t``. For each bit and step, a bit that is the same at every time step
    the table holds for that step is decoded from the step index alone (one term of
    ``step_keys``); a bit that changes is decoded from ``(t, step)`` (terms of ``pair_keys``,
    table addresses). ``bit_terms[bit] = (k_mask, tk_mask)``: bit ``n`` of ``k_mask`` selects
    ``step_keys[n]``, of ``tk_mask`` ``pair_keys[n]``; the descriptor bit is the OR of the
    selected hits. At any address of the table this gives the table's word (a test holds it);
    addresses outside the table are never visited.
    """
    k_bits = step_address_bits(steps)
    by_step: dict[int, dict[int, int]] = {}
    for address, word in rom.items():
        by_step.setdefault(address & ((1 << k_bits) - 1), {})[address >> k_bits] = word
    step_keys = sorted(by_step)
    varying = {}   # (bit, step) -> the time steps whose word has the bit set
    for bit in range(width):
        for index in step_keys:
            values = {t: word >> bit & 1 for t, word in by_step[index].items()}
            if len(set(values.values())) > 1:
                varying[bit, index] = [t for t, v in values.items() if v]
    pair_keys = sorted({(t << k_bits) | index for (_, index), ts in varying.items() for t in ts})
    pair_at = {address: n for n, address in enumerate(pair_keys)}
    bit_terms = []
    for bit in range(width):
        k_mask = tk_mask = 0
        for n, index in enumerate(step_keys):
            if (bit, index) in varying:
                for t in varying[bit, index]:
                    tk_mask |= 1 << pair_at[(t << k_bits) | index]
            elif next(iter(by_step[index].values())) >> bit & 1:
                k_mask |= 1 << n
        bit_terms.append((k_mask, tk_mask))
    return step_keys, pair_keys, bit_terms


def split_lookup(split, steps: int, t: int, k: int) -> int:
    """The word :func:`split_table`'s decode gives at ``(t, k)`` (reference of the hardware)."""
    step_keys, pair_keys, bit_terms = split
    k_bits = step_address_bits(steps)
    hit_k = sum(1 << n for n, index in enumerate(step_keys) if index == k)
    hit_tk = sum(1 << n for n, address in enumerate(pair_keys) if address == (t << k_bits) | k)
    return sum(1 << bit for bit, (k_mask, tk_mask) in enumerate(bit_terms)
               if (hit_k & k_mask) or (hit_tk & tk_mask))


def sequence(rom: dict[int, int], layout: data.StructLayout, steps: int, T: int,
             time_steps: int = 0, restart: int = 0, layer_major: bool = False):
    """Return the ``[(t, step)]`` a run visits, in order, as the table's ``next_k`` and
    ``last_step`` fields prescribe, over :func:`run_time_steps` time steps, each after the
    first beginning at step ``restart`` (reference for :class:`Sequencer`); ``layer_major``:
    every time step of a step (one, for a step with ``once``; downwards for a step with
    ``down``, where the layout has that field) before its ``next_k``."""
    k_bits = step_address_bits(steps)
    order = []
    if layer_major:
        k = 0
        while True:
            word = layout.from_bits(rom.get(k, 0))
            if "loop" in layout.members and word.tail:
                # a time-major group: its steps at each time step in turn
                group = [k]
                while layout.from_bits(rom.get(group[-1], 0)).tail:
                    group.append(int(layout.from_bits(rom.get(group[-1], 0)).next_k))
                for t in range(run_time_steps(time_steps, T)):
                    order += [(t, j) for j in group]
                word = layout.from_bits(rom.get(group[-1], 0))
                if word.last_step:
                    return order
                k = int(word.next_k)
                continue
            ts = range(1 if word.once else run_time_steps(time_steps, T))
            if "down" in layout.members and word.down:
                ts = reversed(ts)
            for t in ts:
                order.append((t, k))
            if word.last_step:
                return order
            k = int(word.next_k)
    for t in range(run_time_steps(time_steps, T)):
        k = restart if t else 0
        while True:
            order.append((t, k))
            word = layout.from_bits(rom.get((t << k_bits) | k, 0))
            if word.last_step:
                break
            k = int(word.next_k)
    return order


class Sequencer(wiring.Component):
    """Walk a constant descriptor table over ``T`` time steps (module docstring); time steps
    after the first begin at step ``restart``."""

    #: The descriptor fields the sequencer reads.
    FIELDS = ("next_k", "last_step")

    def __init__(self, layout: data.StructLayout, rom: dict[int, int], *, steps: int, T: int,
                 restart: int = 0, layer_major: bool = False, down: bool = False,
                 loops: bool = False):
        self._layer_major = bool(layer_major)
        self._down = bool(down)
        self._loops = bool(loops)
        if (down or loops) and not layer_major:
            raise ValueError("steps that run downwards or in time-major groups need the "
                             "layer-major order")
        if layer_major:
            self.FIELDS = (Sequencer.FIELDS + ("once",)
                           + (("down", "next_down") if down else ())
                           + (("tail", "loop", "loop_k") if loops else ()))
        for field in self.FIELDS:
            if field not in layout.members:
                raise ValueError(f"the descriptor layout needs a {field!r} field")
        if not 0 <= restart < steps:
            raise ValueError(f"restart step {restart} is out of range: 0..{steps - 1}")
        self._restart = restart
        self._layout = layout
        self._rom = dict(rom)
        self._steps = steps
        self._T = T
        super().__init__({
            "run": In(1),
            "finish": In(1),
            "time_steps": In(range(T + 1)),
            "t_last": Out(range(max(2, T))),
            "desc": Out(layout),
            "step_start": Out(1),
            "t": Out(range(max(2, T))),
            "first": Out(1),
            "step": Out(range(steps + 1)),
            "running": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "begun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        T, layout, rom = self._T, self._layout, self._rom
        k, t, running = self.step, self.t, self.running
        desc = self.desc
        m.d.comb += self.first.eq(t == 0)

        phase = Signal(2, name="seq_phase")  # 0: decode, 3: load descriptor, 1: start, 2: wait
        finished = Signal(name="step_finished")  # ``finish``, registered
        m.d.sync += finished.eq(self.finish & (phase == 2))
        # ``hit`` is registered: the step index is decoded in the cycle before the load.
        desc_rom = Signal(layout.size, name="desc_rom")
        if T == 1:
            addresses = sorted(rom)
            hit = Signal(len(addresses), name="desc_rom_hit")
            m.d.sync += hit.eq(Cat(Cat(k, t) == address for address in addresses))
            for bit in range(layout.size):
                mask = sum(1 << n for n, address in enumerate(addresses)
                           if rom[address] >> bit & 1)
                if mask:
                    m.d.comb += desc_rom[bit].eq((hit & mask).any())
        else:
            step_keys, pair_keys, bit_terms = split_table(rom, layout.size, self._steps)
            hit_k = Signal(max(1, len(step_keys)), name="desc_rom_hit_k")
            hit_tk = Signal(max(1, len(pair_keys)), name="desc_rom_hit_tk")
            m.d.sync += hit_k.eq(Cat(k == index for index in step_keys))
            if pair_keys:
                m.d.sync += hit_tk.eq(Cat(Cat(k, t) == address for address in pair_keys))
            for bit, (k_mask, tk_mask) in enumerate(bit_terms):
                terms = []
                if k_mask:
                    terms.append((hit_k & k_mask).any())
                if tk_mask:
                    terms.append((hit_tk & tk_mask).any())
                if terms:
                    m.d.comb += desc_rom[bit].eq(terms[0] if len(terms) == 1
                                                 else terms[0] | terms[1])

        # ``begun``: the run began in the previous cycle (a register). The count restarts from
        # it, not from ``run``: ``run`` comes from the caller's ``start`` (on an FPGA a register
        # by the pins), and a 32-bit clear straight from it was the ECP5-85k's critical path.
        # ``cycles`` reads 0 while ``begun`` (the count register still holds the previous run's)
        # and 1, 2, ... after it: the same sequence as a clear on ``run``.
        begun = Signal(name="seq_begun")
        count = Signal(32, name="seq_cycles")
        m.d.sync += begun.eq(self.run & ~running)
        m.d.comb += [self.begun.eq(begun), self.cycles.eq(count & ~begun.replicate(32))]
        with m.If(begun):
            m.d.sync += count.eq(1)
        with m.Elif(running):
            m.d.sync += count.eq(count + 1)
        with m.If(self.run & ~running):
            m.d.sync += [running.eq(1), self.done.eq(0), k.eq(0), t.eq(0), phase.eq(0)]
            m.d.sync += self.t_last.eq(last_time_step(self.time_steps, T))
        with m.If(running):
            with m.Switch(phase):
                with m.Case(0):
                    # ``hit`` decodes (t, k) at the end of this cycle.
                    m.d.sync += phase.eq(3)
                with m.Case(3):
                    m.d.sync += [desc.eq(desc_rom), phase.eq(1)]
                with m.Case(1):
                    m.d.comb += self.step_start.eq(1)
                    m.d.sync += phase.eq(2)
                with m.Case(2):
                    if self._layer_major and (self._down or self._loops):
                        with m.If(finished):
                            # a time-major group's step: the next one at the same time step;
                            # the group's last: its first at the next time step; else the same
                            # step at the next time step (downwards: the one before), else the
                            # next step at t = 0 (downwards: at the run's last)
                            m.d.sync += phase.eq(0)
                            rises = ~desc.once
                            if self._loops:
                                rises = rises & ~desc.loop
                                with m.If(desc.tail):
                                    m.d.sync += k.eq(desc.next_k)
                                with m.Elif(desc.loop & (t != self.t_last)):
                                    m.d.sync += [t.eq(t + 1), k.eq(desc.loop_k)]
                            if self._down:
                                rises = rises & ~desc.down
                                cond = m.Elif if self._loops else m.If
                                with cond(desc.down & (t != 0)):
                                    m.d.sync += t.eq(t - 1)
                            with m.Elif(rises & (t != self.t_last)):
                                m.d.sync += t.eq(t + 1)
                            with m.Elif(desc.last_step):
                                m.d.sync += [running.eq(0), self.done.eq(1)]
                            with m.Else():
                                first_t = (Mux(desc.next_down, self.t_last, 0) if self._down
                                           else 0)
                                m.d.sync += [t.eq(first_t), k.eq(desc.next_k)]
                    elif self._layer_major:
                        with m.If(finished):
                            # the same step at the next time step, else the next step at t = 0
                            m.d.sync += phase.eq(0)
                            with m.If(~desc.once & (t != self.t_last)):
                                m.d.sync += t.eq(t + 1)
                            with m.Elif(desc.last_step):
                                m.d.sync += [running.eq(0), self.done.eq(1)]
                            with m.Else():
                                m.d.sync += [t.eq(0), k.eq(desc.next_k)]
                    else:
                        with m.If(finished):
                            m.d.sync += phase.eq(0)
                            with m.If(desc.last_step):
                                with m.If(t == self.t_last):
                                    m.d.sync += [running.eq(0), self.done.eq(1)]
                                with m.Else():
                                    m.d.sync += [t.eq(t + 1), k.eq(self._restart)]
                            with m.Else():
                                m.d.sync += k.eq(desc.next_k)
        return m
