"""``hw.axi_io.AxiIoMover``: input codes read and logits written over AXI4, against a memory model.

Each case runs the mover in Amaranth's simulator against a Python AXI4 memory that answers every
read burst after a random latency, drops ``arready``, ``rvalid``, ``awready``, ``wready`` and
``bvalid`` at random, and checks every burst it sees (INCR, full beats, no 4 KB crossing, the
bursts of :func:`hw.axi_io.io_bursts`). The codes the mover loads must be the memory's bytes
(masked to the code width) at consecutive addresses, once each; the bytes it writes must be
:func:`hw.axi_io.output_bytes` of the logits, nothing else in memory changed; ``read_done`` and
``write_done`` must pulse once, after the last load and the last B response; an error response
must set ``error`` and ``clear`` must reset it.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.axi_io import (IO_BURST, AxiIoMover, EventPlayer, event_bytes, input_bytes, io_bursts,
                       output_bytes)

MEMORY = 1 << 16


class Memory:
    """A byte memory with AXI4 read and write slaves, driven cycle by cycle from a testbench."""

    def __init__(self, dut, seed: int, pause: float, latency=(1, 12), error_at=None):
        self.dut = dut
        self.rng = random.Random(seed)
        self.pause, self.latency = pause, latency
        self.bytes = bytearray(random.Random(seed + 1).randbytes(MEMORY))
        self.reads, self.writes = [], []       # bursts seen: (address, beats)
        self.pending = []                      # read beats: (due cycle, address, last, resp)
        self.w_burst = None                    # the AW being written: [address, beats left]
        self.w_early = []                      # W beats before their AW
        self.b_due = []                        # B responses owed
        self.error_at = error_at               # a byte address answering SLVERR
        self.cycle = 0

    def _p(self, name):
        return getattr(self.dut, f"m_axi_{name}")

    def _resp(self, address, beats, B):
        if self.error_at is not None and address <= self.error_at < address + beats * B:
            return 0b10
        return 0

    def _check_burst(self, ctx, side, address, length, size, burst, B):
        assert burst == 1 and 1 << size == B, (burst, size)
        # one ID, normal access, bufferable and modifiable, unprivileged secure data
        assert tuple(ctx.get(self._p(f"{side}{name}")) for name in ("id", "lock", "cache",
                                                                     "prot")) == (0, 0, 3, 0)
        assert address % B == 0 and 1 <= length <= IO_BURST
        assert address // 4096 == (address + length * B - 1) // 4096, "crosses 4 KB"

    async def step(self, ctx):
        """Drive this cycle's slave outputs, record its handshakes; returns before the edge."""
        dut, rng, B = self.dut, self.rng, self.dut.beat_bytes
        p = self._p
        ctx.set(p("arready"), rng.random() >= self.pause)
        ctx.set(p("awready"), rng.random() >= self.pause)
        ctx.set(p("wready"), rng.random() >= self.pause)
        head = self.pending[0] if self.pending else None
        r_valid = head is not None and head[0] <= self.cycle and rng.random() >= self.pause
        ctx.set(p("rvalid"), r_valid)
        if r_valid:
            _, address, last, resp = head
            ctx.set(p("rdata"), int.from_bytes(self.bytes[address:address + B], "little"))
            ctx.set(p("rlast"), last)
            ctx.set(p("rresp"), resp)
        b_valid = bool(self.b_due) and rng.random() >= self.pause
        ctx.set(p("bvalid"), b_valid)
        if b_valid:
            ctx.set(p("bresp"), self.b_due[0])
        # handshakes at the coming edge
        if ctx.get(p("arvalid")) and ctx.get(p("arready")):
            address, length = ctx.get(p("araddr")), ctx.get(p("arlen")) + 1
            self._check_burst(ctx, "ar", address, length, ctx.get(p("arsize")),
                              ctx.get(p("arburst")), B)
            self.reads.append((address, length))
            due = self.cycle + rng.randint(*self.latency)
            resp = self._resp(address, length, B)
            start = max([due] + [beat[0] for beat in self.pending[-1:]])
            for n in range(length):
                self.pending.append((start + n, address + n * B, n == length - 1, resp))
        if r_valid and ctx.get(p("rready")):
            self.pending.pop(0)
        if ctx.get(p("awvalid")) and ctx.get(p("awready")):
            address, length = ctx.get(p("awaddr")), ctx.get(p("awlen")) + 1
            self._check_burst(ctx, "aw", address, length, ctx.get(p("awsize")),
                              ctx.get(p("awburst")), B)
            assert self.w_burst is None, "a second AW before the first burst's B"
            self.writes.append((address, length))
            self.w_burst = [address, length, self._resp(address, length, B)]
        if ctx.get(p("wvalid")) and ctx.get(p("wready")):
            self.w_early.append((ctx.get(p("wdata")), ctx.get(p("wstrb")), ctx.get(p("wlast"))))
        while self.w_burst is not None and self.w_early:
            wdata, wstrb, wlast = self.w_early.pop(0)
            address, left, resp = self.w_burst
            for i in range(B):
                if wstrb >> i & 1:
                    self.bytes[address + i] = wdata >> 8 * i & 0xFF
            assert bool(wlast) == (left == 1), "WLAST not on the burst's last beat"
            if left == 1:
                self.b_due.append(resp)
                self.w_burst = None
            else:
                self.w_burst = [address + B, left - 1, resp]
        if b_valid and ctx.get(p("bready")):
            self.b_due.pop(0)
        self.cycle += 1


def run_mover(*, input_words, classes, data_width, in_base, out_base, pixel_bits=8,
              logit_bits=13, seed=0, pause=0.3, error_at=None, latency=(1, 12), frames=1,
              read_frames=None):
    dut = AxiIoMover(input_words=input_words, pixel_bits=pixel_bits, classes=classes,
                     logit_bits=logit_bits, address_width=16, data_width=data_width,
                     frames=frames)
    rng = np.random.default_rng(seed)
    logits = rng.integers(-(1 << logit_bits - 1), 1 << logit_bits - 1, classes)
    memory = Memory(dut, seed, pause, error_at=error_at, latency=latency)
    before = bytes(memory.bytes)
    seen = {"loads": [], "load_cycles": [], "read_done": [], "write_done": []}

    async def bench(ctx):
        ctx.set(dut.logits, [int(value) for value in logits])
        ctx.set(dut.input_base, in_base)
        ctx.set(dut.output_base, out_base)
        if read_frames is not None:
            ctx.set(dut.read_frames, read_frames)
        ctx.set(dut.read_start, 1)
        await memory.step(ctx)
        await ctx.tick()
        ctx.set(dut.read_start, 0)
        if read_frames is not None:
            ctx.set(dut.read_frames, (read_frames + 1) % (frames + 1))  # sampled at the start
        for cycle in range(20 * dut.input_words + 2000):
            if ctx.get(dut.load_enable):
                seen["loads"].append((ctx.get(dut.load_address), ctx.get(dut.load_data)))
                seen["load_cycles"].append(cycle)
            if ctx.get(dut.read_done):
                seen["read_done"].append(cycle)
            if seen["read_done"] and cycle == seen["read_done"][0] + 3:
                ctx.set(dut.write_start, 1)
            else:
                ctx.set(dut.write_start, 0)
            if ctx.get(dut.write_done):
                seen["write_done"].append(cycle)
            if seen["write_done"] and cycle > seen["write_done"][0] + 20:
                break
            await memory.step(ctx)
            await ctx.tick()
        seen["error"] = ctx.get(dut.error)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        seen["cleared"] = ctx.get(dut.error)
        seen["reading"] = ctx.get(dut.reading)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dut, memory, before, logits, seen


@pytest.mark.parametrize("input_words, classes, data_width, in_base, out_base", [
    (1024, 10, 64, 0x1000, 0x3000),      # the demo: 128 beats, 5 output beats
    (37, 1, 64, 0x0FD8, 0x0FF8),          # bursts that end at a 4 KB boundary; one class
    (100, 33, 32, 0x2004, 0x2FF0),        # 32-bit bus: a logit a beat, 33 beats over 3 groups
    (300, 7, 128, 0x4130, 0x5010),        # 128-bit bus: odd classes, a partly strobed last beat
    (60, 3, 64, 0x1003, 0x2005),          # bases off the beat: their low bits are ignored
    (33, 2, 64, 0x0F00, 0x0F80),          # 2 ** 5 + 1 codes: the pixel counter's full range
    # 5 beats each way, the first burst a group's last beat: 4 beats left after it, a value
    # the beat counts' registers must hold (range(5 + 1), 3 bits)
    (36, 9, 64, 0x0F78, 0x1F78),
], ids=["demo-64", "boundary-64", "bus-32", "bus-128", "unaligned-bases", "33-codes",
        "group-end-first"])
def test_mover_reads_codes_and_writes_logits(input_words, classes, data_width, in_base,
                                             out_base):
    dut, memory, before, logits, seen = run_mover(
        input_words=input_words, classes=classes, data_width=data_width, in_base=in_base,
        out_base=out_base, seed=input_words)
    B = data_width // 8
    base = in_base - in_base % B
    want = list(before[base:base + input_words])
    assert seen["loads"] == [(n, code) for n, code in enumerate(want)]
    assert len(seen["read_done"]) == 1 and len(seen["write_done"]) == 1
    assert seen["read_done"][0] == seen["load_cycles"][-1] + 1, "read_done not right after"
    assert memory.reads == io_bursts(in_base, dut.input_beats, B)
    assert memory.writes == io_bursts(out_base, dut.output_beats, B)
    out = out_base - out_base % B
    expected = bytearray(before)
    expected[out:out + 4 * classes] = output_bytes(logits)
    assert bytes(memory.bytes) == bytes(expected), "the write changed other bytes, or wrong ones"
    assert not seen["error"] and not seen["reading"]


def test_input_read_keeps_up_with_a_memory_that_never_pauses():
    """A code a cycle: with a one-cycle memory and no pauses the R channel takes each beat as
    the previous beat's last code goes out, so the codes leave back to back."""
    _, _, _, _, seen = run_mover(input_words=200, classes=2, data_width=64, in_base=0x100,
                                 out_base=0x400, pause=0.0, latency=(1, 1))
    cycles = seen["load_cycles"]
    assert cycles == list(range(cycles[0], cycles[0] + 200)), "a bubble between codes"
    assert cycles[0] <= 4, cycles[0]


def test_mover_ports_and_defaults():
    from amaranth.hdl import Shape

    dut = AxiIoMover(input_words=1024, pixel_bits=8, classes=10, logit_bits=13,
                     address_width=32)
    assert dut.data_width == 64
    widths = {name: Shape.cast(member.shape).width
              for name, member in dut.signature.members.items()
              if not name.startswith("m_axi_") and name != "logits"}
    assert widths == {"clear": 1, "read_start": 1, "input_base": 32, "output_base": 32,
                      "load_address": 11, "load_data": 8, "load_enable": 1, "read_done": 1,
                      "reading": 1, "write_start": 1, "write_done": 1, "error": 1}
    assert Shape.cast(dut.signature.members["m_axi_rdata"].shape).width == 64


def test_narrow_codes_are_masked():
    """A 5-bit code takes the byte's low five bits."""
    dut, memory, before, _, seen = run_mover(input_words=20, classes=2, data_width=64,
                                             in_base=0x100, out_base=0x200, pixel_bits=5)
    assert [code for _, code in seen["loads"]] == [b & 0x1F for b in before[0x100:0x114]]


def test_error_responses_set_error_until_clear():
    for error_at in (0x108, 0x208):     # a read burst's byte, then a write burst's
        _, _, _, _, seen = run_mover(input_words=40, classes=4, data_width=64, in_base=0x100,
                                     out_base=0x200, error_at=error_at)
        assert seen["error"] == 1 and seen["cleared"] == 0, error_at
        assert len(seen["write_done"]) == 1   # the run goes on


def test_reference_functions():
    assert input_bytes([0, 255, 7]) == b"\x00\xff\x07"
    with pytest.raises(ValueError, match="0..255"):
        input_bytes([256])
    assert output_bytes([-1, 2]) == b"\xff\xff\xff\xff\x02\x00\x00\x00"
    assert io_bursts(0x0FF0, 5, 8) == [(0x0FF0, 2), (0x1000, 3)]
    assert io_bursts(0x80, 40, 8) == [(0x80, 16), (0x100, 16), (0x180, 8)]


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="pixel_bits"):
        AxiIoMover(input_words=4, pixel_bits=9, classes=2, logit_bits=8, address_width=16)
    with pytest.raises(ValueError, match="data_width"):
        AxiIoMover(input_words=4, pixel_bits=8, classes=2, logit_bits=8, address_width=16,
                   data_width=48)


def test_write_ports_are_the_axi4_write_signals():
    """Names, directions and widths of the write master against the AXI4 specification's
    signal table (and every signal cocotbext-axi's write bus requires is present)."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    from hw.axi_io import axi4_write_ports

    widths = {"awid": 2, "awaddr": 40, "awlen": 8, "awsize": 3, "awburst": 2, "awlock": 1,
              "awcache": 4, "awprot": 3, "awvalid": 1, "awready": 1, "wdata": 128,
              "wstrb": 16, "wlast": 1, "wvalid": 1, "wready": 1, "bid": 2, "bresp": 2,
              "bvalid": 1, "bready": 1}
    inputs = {"awready", "wready", "bid", "bresp", "bvalid"}
    ports = axi4_write_ports(40, 128, 2)
    assert {name: Shape.cast(m.shape).width for name, m in ports.items()} == \
        {f"m_axi_{name}": width for name, width in widths.items()}
    assert {name for name, m in ports.items() if m.flow == wiring.In} == \
        {f"m_axi_{name}" for name in inputs}
    assert Shape.cast(axi4_write_ports(32, 64)["m_axi_awid"].shape).width == 1
    channels = pytest.importorskip("cocotbext.axi.axi_channels")
    for bus in (channels.AxiAWBus, channels.AxiWBus, channels.AxiBBus):
        for signal in bus._signals:
            assert f"m_axi_{signal}" in ports, signal


@pytest.mark.parametrize("frames, words, read_frames", [
    (4, 37, 1), (4, 37, 3), (4, 37, 0),
    # a power-of-two beat count ending on a full beat: the registers must hold 8 (beats of
    # the read, codes in its last beat)
    (2, 32, 0), (2, 32, 1),
], ids=["one", "three", "all", "full-beats-all", "full-beats-one"])
def test_mover_reads_a_runs_frames(frames, words, read_frames):
    """Event models: the mover reads ``read_frames`` frames of ``words`` beats (0: all), one
    after another in memory (frames of 37 straddle bus beats), sampled at ``read_start``."""
    B = 8
    in_base = 0x0F90
    dut, memory, before, _, seen = run_mover(
        input_words=words, classes=3, data_width=64, in_base=in_base, out_base=0x2000,
        pixel_bits=2, frames=frames, read_frames=read_frames, seed=read_frames)
    count = (read_frames or frames) * words
    assert dut.input_words == frames * words
    assert seen["loads"] == [(n, b & 3) for n, b in enumerate(before[in_base:in_base + count])]
    assert len(seen["read_done"]) == 1
    assert seen["read_done"][0] == seen["load_cycles"][-1] + 1
    assert memory.reads == io_bursts(in_base, dut.read_beats(read_frames or frames), B)
    assert not seen["error"] and not seen["reading"]


def run_player(beats, bits, loads, runs, seed):
    """Load ``loads`` beats, then for each run (rewind, take ``n`` beats with random ready,
    some cycles inactive) record what ``o`` gave."""
    dut = EventPlayer(beats=beats, bits=bits)
    rng = random.Random(seed)
    data = [rng.randrange(1 << bits) for _ in range(loads)]
    got, idle_valid = [], []

    async def bench(ctx):
        for n, value in enumerate(data):
            ctx.set(dut.load_address, n)
            ctx.set(dut.load_data, value)
            ctx.set(dut.load_enable, 1)
            await ctx.tick()
        ctx.set(dut.load_enable, 0)
        for n in runs:
            ctx.set(dut.rewind, 1)
            await ctx.tick()
            ctx.set(dut.rewind, 0)
            taken = []
            for _ in range(20 * n + 50):
                if len(taken) == n:
                    break
                active = rng.random() < 0.8
                ready = rng.random() < 0.6
                ctx.set(dut.active, active)
                ctx.set(dut.o.ready, ready)
                if not active and ctx.get(dut.o.valid):
                    idle_valid.append(True)
                if ctx.get(dut.o.valid) and ready:
                    taken.append(ctx.get(dut.o.payload))
                await ctx.tick()
            ctx.set(dut.active, 0)
            got.append(taken)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return data, got, idle_valid


def test_event_player_replays_the_loaded_beats_in_order():
    """Each run (after ``rewind``) gets the loaded beats from beat 0, in order, once each,
    under random ready and ``active``; nothing is offered while inactive; a shorter run (a
    run of fewer time steps) takes a prefix; beats past the buffer are never offered."""
    data, got, idle_valid = run_player(beats=64, bits=2, loads=64, runs=[64, 16, 64], seed=1)
    assert got == [data, data[:16], data]
    assert not idle_valid


def test_event_player_stops_at_its_depth():
    data, got, _ = run_player(beats=8, bits=3, loads=8, runs=[12], seed=2)
    assert got == [data], got


def test_event_bytes_is_the_taken_order():
    beats = [[1, 2, 3], [0, 3, 1]]     # two time steps of three beats
    assert event_bytes(beats) == bytes([1, 2, 3, 0, 3, 1])
    with pytest.raises(ValueError, match="bits"):
        EventPlayer(beats=4, bits=9)
