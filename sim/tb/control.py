"""cocotb tests of the SoC shell (``hw.control.NetworkCore``) through its AXI4-Lite port.

The case comes from ``CORE_CASE`` (JSON written by ``tests/test_control.py``): the register map
(``hw.control.RegisterMap.as_dict``), the inputs (a pixel model: each image's pixel codes, word
``(c * H + y) * W + x``; an event model: each sample's event beats, ``T * H * W`` of them, bit
``c`` = channel ``c``) and the integer golden model's logits for each. Python touches the design
only through cocotbext-axi's ``AxiLiteMaster`` on the ``s_axil_*`` ports, with random pauses on
all five channels (AW and W sources idle at random, B and R sinks refuse at random), and through
the ``irq`` line: everything a driver does (load the input, START, wait, read CYCLES and the
logits) goes over the bus, and the logits read back must equal the golden model's, bit for bit.
``CORE_RESULTS`` (if set) receives cycles and wall times as JSON.

A core with its weights over AXI4 (``FEATURES.AXI_WEIGHTS``) also has an external memory:
cocotbext-axi's AXI RAM (read side, :class:`sim.tb.axi_memory.LatencyAxiRamRead`) holding the
weight image ``CORE_WEIGHTS`` at :data:`WEIGHT_BASE`, each burst answered after 1-64 cycles,
``arready`` and ``rvalid`` dropped at random; the driver writes WEIGHT_BASE after reset and
checks WEIGHT_BYTES (``CORE_WEIGHT_RUN_BYTES``: under the time schedule T times the image's
layers) and ERROR.AXI_READ after every run, and
``test_errors`` points WEIGHT_BASE outside the memory once: the run still ends, with
ERROR.AXI_READ set, and the next START clears it. A pixel model's AXI core also gets the write
side of that memory (:class:`sim.tb.axi_memory.BoundedAxiRamWrite`, random pauses on AW, W and
B), and ``test_dma`` runs its inputs with CONTROL.DMA: input bytes in memory, logits read back
from memory (skipped for the other cores, which have no CONTROL.DMA).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw.control import AXIL_PREFIX, ID_VALUE, RegisterMap
from sim.tb.common import TB

#: Simulated time limit of one run (ns at the 10 ns clock): far above the tiny networks' runs.
RUN_LIMIT_NS = 200_000_000
#: Byte address of the weight image in the external memory (AXI weights), and the memory's size.
WEIGHT_BASE = 0x0010_0000
MEMORY_BYTES = 1 << 24
#: Where a DMA run's input and logits lie (``test_dma``): neither is a multiple of a 16-beat
#: group, so the first bursts are short; the logits straddle a 4 KB boundary.
INPUT_BASE = 0x0020_0FC8
OUTPUT_BASE = 0x0030_0FF0


def _case():
    with open(os.environ["CORE_CASE"]) as handle:
        case = json.load(handle)
    return case, RegisterMap.from_dict(case["regmap"])


def _axi_io() -> bool:
    """The case's core moves its input and logits over AXI4 (CONTROL.DMA exists)."""
    return _case()[1].parameters.axi_io


def _pauses(seed: int, rate: float):
    rng = random.Random(seed)
    while True:
        yield rng.random() < rate


class Driver:
    """What a device driver does, over cocotbext-axi's master (one per cocotb test)."""

    def __init__(self, dut, rm: RegisterMap, seed: int, pause: float = 0.3):
        self.dut, self.rm = dut, rm
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, AXIL_PREFIX), dut.clk, dut.rst)
        for index, channel in enumerate((
                self.master.write_if.aw_channel, self.master.write_if.w_channel,
                self.master.write_if.b_channel, self.master.read_if.ar_channel,
                self.master.read_if.r_channel)):
            channel.set_pause_generator(_pauses(seed * 10 + index, pause))
        for log in (self.master.write_if.log, self.master.read_if.log):
            log.setLevel(logging.WARNING)   # one INFO line per transfer otherwise
        self.memory = None
        if rm.parameters.axi_weights:
            from cocotbext.axi import AxiReadBus

            from sim.tb.axi_memory import LatencyAxiRamRead, random_pauses

            with open(os.environ["CORE_WEIGHTS"], "rb") as handle:
                self.image = handle.read()
            self.memory = LatencyAxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk,
                                            dut.rst, size=MEMORY_BYTES, latency=(1, 64),
                                            seed=seed)
            self.memory.log.setLevel(logging.WARNING)
            self.memory.write(WEIGHT_BASE, self.image)
            self.memory.ar_channel.set_pause_generator(random_pauses(pause, seed + 7))
            self.memory.r_channel.set_pause_generator(random_pauses(pause, seed + 8))
        self.writes = None
        if rm.parameters.axi_io:
            from cocotbext.axi import AxiWriteBus

            from sim.tb.axi_memory import BoundedAxiRamWrite

            # the write side of the same memory: the logits of a DMA run land here
            self.writes = BoundedAxiRamWrite(AxiWriteBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                                      size=MEMORY_BYTES, mem=self.memory.mem)
            self.writes.log.setLevel(logging.WARNING)
            for index, channel in enumerate((self.writes.aw_channel, self.writes.w_channel,
                                             self.writes.b_channel)):
                channel.set_pause_generator(random_pauses(pause, seed + 11 + index))

    def mask(self, register: str, field: str) -> int:
        return self.rm[register].field(field).mask

    async def read(self, address: int, expect=AxiResp.OKAY) -> int:
        resp = await self.master.read(address, 4)
        assert resp.resp == expect, f"read 0x{address:04x}: {resp.resp!r}, expected {expect!r}"
        return int.from_bytes(resp.data, "little")

    async def write(self, address: int, value: int, expect=AxiResp.OKAY):
        resp = await self.master.write(address, (value % (1 << 32)).to_bytes(4, "little"))
        assert resp.resp == expect, f"write 0x{address:04x}: {resp.resp!r}, expected {expect!r}"

    async def write_many(self, writes):
        """Queue every ``(address, value)`` write at once (cocotbext-axi keeps several in flight
        and issues them in order); check every response."""
        tasks = [cocotb.start_soon(self.master.write(
            address, (value % (1 << 32)).to_bytes(4, "little"))) for address, value in writes]
        for (address, _), task in zip(writes, tasks):
            resp = await task
            assert resp.resp == AxiResp.OKAY, f"write 0x{address:04x}: {resp.resp!r}"

    async def reset(self):
        tb = TB(self.dut)
        await tb.reset()
        status = self.rm["STATUS"].offset
        for _ in range(10_000):
            if await self.read(status) & self.mask("STATUS", "READY"):
                if self.memory is not None:
                    await self.write(self.rm["WEIGHT_BASE"].offset, WEIGHT_BASE)
                return
        raise AssertionError("STATUS.READY never set after reset")

    async def check_identity(self):
        rm = self.rm
        p = rm.parameters
        assert await self.read(rm["ID"].offset) == ID_VALUE
        for name, want in (("CLASSES", p.classes), ("T", p.T), ("LANES", p.lanes),
                           ("INPUT_WORDS", p.input_words), ("LOGIT_BITS", p.logit_bits),
                           ("FEATURES", rm["FEATURES"].reset)):
            got = await self.read(rm[name].offset)
            assert got == want, f"{name}: read {got}, expected {want}"

    def input_writes(self, words):
        rm = self.rm
        if rm.parameters.events:
            return [(rm["EVENT"].offset, beat) for beat in words]
        return [(rm["INPUT"].address(i), code) for i, code in enumerate(words)]

    async def start(self, irq: bool = False):
        value = self.mask("CONTROL", "START") | (self.mask("CONTROL", "IRQ_EN") if irq else 0)
        await self.write(self.rm["CONTROL"].offset, value)

    async def poll_done(self):
        status = self.rm["STATUS"].offset
        busy, done = self.mask("STATUS", "BUSY"), self.mask("STATUS", "DONE")
        polls = 0
        while True:
            value = await self.read(status)
            polls += 1
            if not value & busy:
                assert value & done, f"STATUS 0x{value:x}: neither BUSY nor DONE after START"
                return polls

    async def logits(self) -> list[int]:
        rm = self.rm
        out = []
        for c in range(rm.parameters.classes):
            value = await self.read(rm["LOGIT"].address(c))
            out.append(value - (1 << 32) if value >> 31 else value)
        return out

    async def run(self, words, irq: bool = False, extra=None) -> dict:
        """Load one input, START, wait (poll STATUS, or the ``irq`` line), read CYCLES and the
        logits. ``extra``: a coroutine run right after START (while the network is busy)."""
        wall = time.perf_counter()
        writes = self.input_writes(words)
        events = self.rm.parameters.events
        load_ns = 0
        if not events:                      # pixels first, then START
            begin = get_sim_time("ns")
            await self.write_many(writes)
            load_ns = get_sim_time("ns") - begin
        await self.start(irq)
        if extra is not None:
            await extra()
        if events:                          # event beats after START: B waits for each beat
            await self.write_many(writes)
        polls = None
        if irq:
            if not self.dut.irq.value:
                await with_timeout(RisingEdge(self.dut.irq), RUN_LIMIT_NS, "ns")
            status = await self.read(self.rm["STATUS"].offset)
            assert status & self.mask("STATUS", "IRQ_PENDING") and status & \
                self.mask("STATUS", "DONE") and not status & self.mask("STATUS", "BUSY")
        else:
            polls = await with_timeout(self.poll_done(), RUN_LIMIT_NS, "ns")
        cycles = await self.read(self.rm["CYCLES"].offset)
        logits = await self.logits()
        if self.memory is not None:
            read = await self.read(self.rm["WEIGHT_BYTES"].offset)
            want = int(os.environ["CORE_WEIGHT_RUN_BYTES"])
            assert read == want, (f"WEIGHT_BYTES {read}, expected {want} (a run of T time "
                                  "steps: hw.weightfetch.WeightRing.bytes_per_run)")
            error = await self.read(self.rm["ERROR"].offset)
            self.axi_error = bool(error & self.mask("ERROR", "AXI_READ"))
        return {"cycles": cycles, "logits": logits, "polls": polls, "load_ns": load_ns,
                "wall_s": time.perf_counter() - wall}


def _compare(got, want, label):
    assert got == want, f"{label}: logits over the bus {got}, integer golden model {want}"


def _record(key, value):
    out = os.environ.get("CORE_RESULTS")
    if not out:
        return
    results = {}
    if os.path.exists(out):
        with open(out) as handle:
            results = json.load(handle)
    results[key] = value
    with open(out, "w") as handle:
        json.dump(results, handle)


@cocotb.test()
async def test_polling(dut):
    """ID and parameters; every input loaded over the bus, START, STATUS polled, CYCLES and the
    logits read: the logits equal the integer golden model's for every input."""
    case, rm = _case()
    driver = Driver(dut, rm, seed=1)
    await driver.reset()
    await driver.check_identity()
    runs = []
    for index, (words, want) in enumerate(zip(case["inputs"], case["logits"])):
        result = await driver.run(words)
        _compare(result["logits"], want, f"input {index} (polling)")
        assert driver.memory is None or not driver.axi_error, "ERROR.AXI_READ after a run"

        assert result["cycles"] > 0
        assert await driver.read(rm["STEP"].offset) >= 0
        dut._log.info("input %d: loaded in %d ns, %d cycles, %d polls, %.2f s, logits %s",
                      index, result["load_ns"], result["cycles"], result["polls"],
                      result["wall_s"], result["logits"])
        runs.append(result)
    _record("polling", runs)


@cocotb.test()
async def test_interrupt(dut):
    """The same with CONTROL.IRQ_EN: wait on ``irq``, read, clear IRQ_PENDING (write 1): ``irq``
    falls; with IRQ_EN clear a run sets IRQ_PENDING but leaves ``irq`` low."""
    case, rm = _case()
    driver = Driver(dut, rm, seed=2)
    await driver.reset()
    words, want = case["inputs"][-1], case["logits"][-1]
    result = await driver.run(words, irq=True)
    _compare(result["logits"], want, "irq run")
    assert dut.irq.value == 1
    pending = driver.mask("STATUS", "IRQ_PENDING")
    await driver.write(rm["STATUS"].offset, pending)
    assert dut.irq.value == 0
    assert not await driver.read(rm["STATUS"].offset) & pending
    result = await driver.run(words)              # IRQ_EN written 0 with this START
    _compare(result["logits"], want, "run without irq")
    assert dut.irq.value == 0
    assert await driver.read(rm["STATUS"].offset) & pending
    await driver.write(rm["CONTROL"].offset, driver.mask("CONTROL", "IRQ_EN"))
    assert dut.irq.value == 1
    _record("interrupt", result)


@cocotb.test()
async def test_errors(dut):
    """Unmapped addresses answer SLVERR; read-only registers ignore writes; START while busy is
    ignored and flagged in ERROR (write-1-to-clear), and so is an input written during a run
    (pixel: SLVERR, dropped) or an event beat with no run (SLVERR): the run's logits still equal
    the golden model's; the reserved base registers hold what is written."""
    case, rm = _case()
    driver = Driver(dut, rm, seed=3)
    await driver.reset()
    p = rm.parameters
    unmapped = [0x03C, 0x054, 0x058, 0x0FFC, rm["LOGIT"].address(p.classes - 1) + 4]
    if not p.axi_weights:
        unmapped.append(0x050)
    if not p.events:
        unmapped.append(rm["INPUT"].address(p.input_words - 1) + 4)
    for address in unmapped:
        assert rm.decode(address) is None
        assert await driver.read(address, AxiResp.SLVERR) == 0
        await driver.write(address, 0x5A5A_5A5A, AxiResp.SLVERR)
    await driver.write(rm["CLASSES"].offset, 77)
    assert await driver.read(rm["CLASSES"].offset) == p.classes
    for index, name in enumerate(("WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE")):
        await driver.write(rm[name].offset, 0x8000_0000 + 0x1000 * index)
    for index, name in enumerate(("WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE")):
        assert await driver.read(rm[name].offset) == 0x8000_0000 + 0x1000 * index
    # More time steps than the design holds: the run below does all T (its logits are checked).
    await driver.write(rm["TIME_STEPS"].offset, 1000)
    assert await driver.read(rm["TIME_STEPS"].offset) == 1000
    if driver.memory is not None:
        await driver.write(rm["WEIGHT_BASE"].offset, WEIGHT_BASE)
    error = rm["ERROR"].offset
    assert await driver.read(error) == 0
    if p.events:
        await driver.write(rm["EVENT"].offset, 1, AxiResp.SLVERR)
        assert await driver.read(error) == driver.mask("ERROR", "EVENT_IDLE")
        await driver.write(error, driver.mask("ERROR", "EVENT_IDLE"))
        assert await driver.read(error) == 0

    flags = {}

    async def while_busy():
        status = await driver.read(rm["STATUS"].offset)
        flags["busy"] = bool(status & driver.mask("STATUS", "BUSY"))
        await driver.start()                                     # ignored: busy
        if not p.events:
            await driver.write(rm["INPUT"].address(0), 255, AxiResp.SLVERR)   # dropped
        flags["error"] = await driver.read(error)

    words, want = case["inputs"][0], case["logits"][0]
    result = await driver.run(words, extra=while_busy)
    assert flags["busy"], "the run ended before the checks while busy"
    expected = driver.mask("ERROR", "START_BUSY")
    if not p.events:
        expected |= driver.mask("ERROR", "INPUT_BUSY")
    assert flags["error"] == expected, f"ERROR 0x{flags['error']:x}, expected 0x{expected:x}"
    _compare(result["logits"], want, "run with a START and an input write while busy")
    await driver.write(error, driver.mask("ERROR", "START_BUSY"))    # clears only that bit
    assert await driver.read(error) == expected & ~driver.mask("ERROR", "START_BUSY")
    await driver.write(error, 0xFFFF_FFFF)
    assert await driver.read(error) == 0
    if driver.memory is not None:
        # The image outside the memory: every burst answers SLVERR; the run ends, flagged.
        await driver.write(rm["WEIGHT_BASE"].offset, MEMORY_BYTES)
        await driver.run(words)
        assert driver.axi_error and driver.memory.errors > 0
        await driver.write(error, 0xFFFF_FFFF)                  # RO: not cleared by a write
        assert await driver.read(error) & driver.mask("ERROR", "AXI_READ")
        await driver.write(rm["WEIGHT_BASE"].offset, WEIGHT_BASE)
        result = await driver.run(words)                        # START clears it
        assert not driver.axi_error
        _compare(result["logits"], want, "run after an AXI error")


@cocotb.skipif(not os.environ.get("CORE_CASE") or not _axi_io(),
               reason="the core has no CONTROL.DMA (no AXI4 master)")
@cocotb.test()
async def test_dma(dut):
    """CONTROL.DMA: each input's codes (an event model: its run's event beats, time step after
    time step) lie in external memory at INPUT_BASE (a byte each), the
    driver writes only the base registers and START; the logits the core writes at OUTPUT_BASE
    (a sign-extended 32-bit word each, the bytes around them untouched) and the LOGIT registers
    both equal the golden model's. CYCLES is the network's own count, below the time from START
    to DONE. A logit write outside the memory sets ERROR.AXI_IO (cleared by START)."""
    from hw.axi_io import input_bytes, output_bytes

    case, rm = _case()
    driver = Driver(dut, rm, seed=4)
    await driver.reset()
    p = rm.parameters
    dma = driver.mask("CONTROL", "DMA")
    status, error = rm["STATUS"].offset, rm["ERROR"].offset
    guard = bytes(range(256)) * 2
    runs = []
    for index, (words, want) in enumerate(zip(case["inputs"], case["logits"])):
        reference = await driver.run(words)          # loaded over AXI4-Lite first
        _compare(reference["logits"], want, f"input {index} (over AXI4-Lite)")
        driver.memory.write(INPUT_BASE, input_bytes(words))
        driver.memory.write(OUTPUT_BASE - 256, guard)
        driver.memory.write(OUTPUT_BASE + 4 * p.classes, guard)
        await driver.write(rm["INPUT_BASE"].offset, INPUT_BASE)
        await driver.write(rm["OUTPUT_BASE"].offset, OUTPUT_BASE)
        begin = get_sim_time("ns")
        await driver.write(rm["CONTROL"].offset, driver.mask("CONTROL", "START") | dma)
        assert await driver.read(rm["CONTROL"].offset) == dma
        await with_timeout(driver.poll_done(), RUN_LIMIT_NS, "ns")
        total = int((get_sim_time("ns") - begin) // 10)
        written = driver.memory.read(OUTPUT_BASE, 4 * p.classes)
        assert written == output_bytes(want), (
            f"input {index}: logits in memory {list(np.frombuffer(written, '<i4'))}, golden "
            f"{want}")
        assert driver.memory.read(OUTPUT_BASE - 256, 256) == guard[:256]
        assert driver.memory.read(OUTPUT_BASE + 4 * p.classes, 512) == guard
        _compare(await driver.logits(), want, f"input {index} (DMA, LOGIT registers)")
        cycles = await driver.read(rm["CYCLES"].offset)
        # the memory's random latency moves the network's cycles from run to run
        assert 0 < cycles < total, (cycles, total)
        assert await driver.read(error) == 0
        dut._log.info("input %d over DMA: %d network cycles, about %d from START to DONE "
                      "(polled)", index, cycles, total)
        runs.append({"cycles": cycles, "start_to_done": total})
    # An error response: the logits written outside the memory (DECERR); the run still ends.
    await driver.write(rm["OUTPUT_BASE"].offset, MEMORY_BYTES - 8)
    await driver.write(rm["CONTROL"].offset, driver.mask("CONTROL", "START") | dma)
    await with_timeout(driver.poll_done(), RUN_LIMIT_NS, "ns")
    assert await driver.read(error) & driver.mask("ERROR", "AXI_IO")
    assert await driver.read(status) & driver.mask("STATUS", "DONE")
    await driver.write(rm["OUTPUT_BASE"].offset, OUTPUT_BASE)
    await driver.write(rm["CONTROL"].offset, driver.mask("CONTROL", "START") | dma)
    await with_timeout(driver.poll_done(), RUN_LIMIT_NS, "ns")
    assert not await driver.read(error) & driver.mask("ERROR", "AXI_IO")
    _record("dma", runs)
