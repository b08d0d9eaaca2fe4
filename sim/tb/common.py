"""Testbench pieces shared by every cocotb test: clock and reset, stream source and sink.

Stream ports of Amaranth components appear as ``<name>__valid``, ``<name>__ready`` and
``<name>__payload`` (a struct payload is one flat vector, first field in the least significant
bits). A beat transfers on a rising edge where valid and ready were both high, so both sides read
the handshake in the read-only phase before the edge.
"""

from __future__ import annotations

import itertools
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.streams import PATTERNS  # one set of patterns for both simulators

__all__ = ["TB", "StreamSource", "StreamSink", "env_int", "env_ints", "PATTERNS"]



def env_int(name: str, default: int | None = None) -> int:
    """Read an integer setting of the design point from the environment."""
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise RuntimeError(f"testbench setting {name} is not in the environment")
        return default
    return int(value)


def env_ints(name: str) -> list[int]:
    """Read a comma-separated list of integers from the environment."""
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"testbench setting {name} is not in the environment")
    return [int(v) for v in value.split(",") if v]


class TB:
    """Own a design's clock and synchronous active-high reset."""

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.clock = Clock(dut.clk, period_ns, unit="ns")
        self.clock.start()

    async def reset(self, cycles: int = 2):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)


class _StreamEnd:
    """Hold the three ports of the stream ``name`` and a valid or ready pattern."""

    def __init__(self, dut, name: str, clk, pattern=(1,)):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.pattern = pattern


class StreamSource(_StreamEnd):
    """Drive a stream's valid and payload, idling wherever ``pattern`` says 0."""

    def __init__(self, dut, name: str, clk, pattern=(1,)):
        super().__init__(dut, name, clk, pattern)
        self.valid.value = 0

    async def send(self, payloads):
        """Send each integer payload; return once the last one is taken."""
        gaps = itertools.cycle(self.pattern)
        for payload in payloads:
            while not next(gaps):
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = int(payload)
            while True:
                await ReadOnly()
                taken = bool(self.ready.value)
                await RisingEdge(self.clk)
                if taken:
                    break
            self.valid.value = 0


class StreamSink(_StreamEnd):
    """Take beats from a stream, refusing wherever ``pattern`` says 0."""

    def __init__(self, dut, name: str, clk, pattern=(1,)):
        super().__init__(dut, name, clk, pattern)
        self.ready.value = 0

    async def receive(self, count: int) -> list[int]:
        """Return the integer payloads of the next ``count`` beats."""
        gaps = itertools.cycle(self.pattern)
        beats = []
        while len(beats) < count:
            ready = next(gaps)
            self.ready.value = ready
            await ReadOnly()
            if ready and self.valid.value:
                beats.append(int(self.payload.value))
            await RisingEdge(self.clk)
        self.ready.value = 0
        return beats


def start(coroutine):
    """Start a coroutine as a concurrent task (cocotb 2 API)."""
    return cocotb.start_soon(coroutine)
