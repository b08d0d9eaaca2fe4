"""External memory for the testbenches: cocotbext-axi's AXI4 RAM (read side) with a latency.

cocotbext-axi's :class:`~cocotbext.axi.AxiRamRead` answers one burst at a time, its first beat
a cycle or two after the request. :class:`LatencyAxiRamRead` keeps its memory, channel models and
pause generators but answers like a memory system with a pipeline: every accepted AR request is
answered, in order, no sooner than ``latency`` cycles after it was taken (drawn per burst from a
range, or fixed), and up to ``outstanding`` requests may wait. With pause generators on the AR
and R channels (:func:`random_pauses`) ``arready`` and ``rvalid`` also drop at random, so the
master sees back-pressure on both of its read channels.
"""

from __future__ import annotations

import collections
import random

import cocotb
from cocotb.triggers import Event, RisingEdge
from cocotbext.axi import AxiRamRead, AxiRamWrite

__all__ = ["LatencyAxiRamRead", "BoundedAxiRamWrite", "band_memory", "random_pauses",
           "parse_latency"]


def parse_latency(text: str) -> tuple[int, int]:
    """``"30"`` -> (30, 30); ``"1-64"`` -> (1, 64); else ValueError naming the text."""
    try:
        parts = [int(part) for part in str(text).split("-")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not 1 <= parts[0] <= parts[-1] <= 4096:
        raise ValueError(f"{text!r} must be N or LOW-HIGH cycles with 1 <= LOW <= HIGH <= 4096")
    return parts[0], parts[-1]


def random_pauses(probability: float, seed: int):
    """A pause generator: each cycle paused with ``probability`` (seeded)."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class BoundedAxiRamWrite(AxiRamWrite):
    """AXI4 RAM write side that answers SLVERR outside its memory instead of wrapping around
    (cocotbext-axi turns the exception into the burst's error response)."""

    async def _write(self, address, data):
        if address + len(data) > self.size:
            raise IndexError(f"address {address:#x} is outside the {self.size:#x}-byte memory")
        self.write(address, data)


class LatencyAxiRamRead(AxiRamRead):
    """AXI4 RAM read side whose bursts are answered ``latency`` cycles after their request.

    ``latency``: (low, high) cycles, drawn uniformly per burst (``seed``); answers stay in
    request order (one ID). ``outstanding``: requests accepted before ``arready`` drops."""

    def __init__(self, bus, clock, reset=None, *, size: int, latency=(1, 1), seed: int = 0,
                 outstanding: int = 16, **kwargs):
        self._latency = latency
        self._rng = random.Random(seed)
        self._waiting = collections.deque()
        self._arrived = Event()
        self._cycle = 0
        self._answering = None
        super().__init__(bus, clock, reset, size=size, **kwargs)
        self.ar_channel.queue_occupancy_limit = outstanding
        self.bursts = 0
        self.errors = 0
        self.beats = 0
        cocotb.start_soon(self._count())

    async def _read(self, address, length):
        # cocotbext-axi wraps addresses modulo the size; an interconnect answers DECERR there.
        if address + length > self.size:
            raise IndexError(f"address {address:#x} is outside the {self.size:#x}-byte memory")
        return self.read(address, length)

    def state(self) -> str:
        """Bursts and beats answered, requests waiting (for a run that never ends)."""
        return (f"; memory: {self.bursts} bursts begun, {self.beats} beats sent, "
                f"{len(self._waiting)} requests waiting, {self.ar_channel.count()} in the AR "
                f"queue, cycle {self._cycle}")

    async def _count(self):
        while True:
            await RisingEdge(self.clock)
            self._cycle += 1

    async def _process_read(self):
        # Started anew at every reset release (cocotbext-axi kills the previous one): one
        # answering task at a time, or two would interleave their bursts' beats.
        if self._answering is not None:
            self._answering.cancel()
        self._waiting.clear()
        self._answering = cocotb.start_soon(self._answer())
        while True:
            ar = await self.ar_channel.recv()
            low, high = self._latency
            self._waiting.append((self._cycle + self._rng.randint(low, high), ar))
            self._arrived.set()

    async def _answer(self):
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            due, ar = self._waiting.popleft()
            while self._cycle < due:
                await RisingEdge(self.clock)
            await self._send(ar)

    async def _send(self, ar):
        """The beats of one INCR burst (what AxiSlaveRead does, without its own pacing)."""
        address = int(ar.araddr)
        length = int(getattr(ar, "arlen", 0)) + 1
        size = 1 << int(getattr(ar, "arsize", self.max_burst_size))
        assert int(getattr(ar, "arburst", 1)) == 1, "only INCR bursts are expected"
        assert 0x1000 - (address & 0xFFF) >= size * length, (
            f"burst at {address:#x} of {length} beats crosses a 4 KB boundary")
        self.bursts += 1
        for n in range(length):
            word = (address // self.byte_lanes) * self.byte_lanes
            r = self.r_channel._transaction_obj()
            r.rid = int(getattr(ar, "arid", 0))
            r.rlast = n == length - 1
            try:
                data = await self._read(word, self.byte_lanes)
                r.rresp = 0                  # OKAY
            except IndexError:               # outside the memory: DECERR, zeros
                data, r.rresp = bytes(self.byte_lanes), 3
                self.errors += 1
            r.rdata = int.from_bytes(data, "little")
            await self.r_channel.send(r)
            self.beats += 1
            address += size


def band_memory(dut, memory: bytes, *, seed: int, latency: str, pause: float,
                prefix: str = "m_axi"):
    """One RAM behind a band unit's AXI4 master ``prefix``: its read side answers each burst
    after ``latency`` (:func:`parse_latency`'s text), its write side is cocotbext-axi's,
    ``memory`` at address 0, and with ``pause`` > 0 random pauses (seeds ``seed + 1`` ...
    ``seed + 5``) on AR, R, AW, W and B. Returns ``(reads, writes)``."""
    import logging

    from cocotbext.axi import AxiReadBus, AxiWriteBus

    size = 1 << max(12, (len(memory) - 1).bit_length())
    reads = LatencyAxiRamRead(AxiReadBus.from_prefix(dut, prefix), dut.clk, dut.rst, size=size,
                              latency=parse_latency(latency), seed=seed)
    writes = BoundedAxiRamWrite(AxiWriteBus.from_prefix(dut, prefix), dut.clk, dut.rst,
                                size=size, mem=reads.mem)
    for ram in (reads, writes):
        ram.log.setLevel(logging.WARNING)
    reads.write(0, memory)
    if pause > 0:
        for index, channel in enumerate((reads.ar_channel, reads.r_channel, writes.aw_channel,
                                         writes.w_channel, writes.b_channel)):
            channel.set_pause_generator(random_pauses(pause, seed + 1 + index))
    return reads, writes
