"""The SoC shell (hw/control.py): register map, AXI4-Lite protocol, generated files, co-simulation.

Fast tests (``make test``):

* the register map (reference decoder, JSON round trip, the table in ``docs/control.md``);
* :class:`hw.control.ControlBlock` in the Amaranth simulator against a behavioural stand-in for
  the network (no network is built): AW/W in either order or together, held B and R responses
  under back-pressure, a second write taken while the first response waits, SLVERR for unmapped
  addresses, write-1-to-clear, start while busy, the interrupt, pixel loads and event beats with
  back-pressure through B, and a random register-file walk with random delays on every channel;
* the C header (compiled with the system C compiler, every value checked by ``_Static_assert``),
  the JSON map and the FuseSoC core file (parsed by FuseSoC's own parser), and their emission by
  ``rtl_gen`` for a small network, byte-identical twice.

Verilator (``verilator``; ``slow`` where noted): ``sim.tb.control`` drives a whole small network
through cocotbext-axi's ``AxiLiteMaster`` with random pauses on all five channels, and compares
the logits read over the bus with the integer golden model, bit for bit.
"""

from __future__ import annotations

import dataclasses

import importlib.util
import json
import random
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.control import (ID_VALUE, OKAY, SLVERR, ControlBlock, CoreParameters, NetworkCore,
                        RegisterMap, register_map)
from hw.shared import network_signature

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)

PIXEL = CoreParameters(classes=5, T=2, lanes=8, input_words=48, input_bits=8, logit_bits=10,
                       events=False, external_weights=False)
EVENTS = CoreParameters(classes=5, T=2, lanes=8, input_words=16, input_bits=2, logit_bits=11,
                        events=True, external_weights=True)
#: The example the table in docs/control.md is generated for: the default design point (the demo
#: checkpoint, lanes 16, weights outside), as `python -m rtl_gen --units network_core` emits it.
DOC_EXAMPLE = CoreParameters(classes=10, T=1, lanes=16, input_words=1024, input_bits=8,
                             logit_bits=13, events=False, external_weights=True)


# ----------------------------------------------------------------------------- register map

def test_map_offsets_are_word_aligned_disjoint_and_inside_the_address_space():
    for params in (PIXEL, EVENTS, DOC_EXAMPLE):
        rm = register_map(params)
        spans = sorted((r.offset, r.offset + r.count * r.stride, r.name) for r in rm.registers)
        for (_, end, name), (start, _, other) in zip(spans, spans[1:]):
            assert end <= start, f"{name} overlaps {other}"
        assert spans[-1][1] <= 1 << rm.address_width
        for r in rm.registers:
            assert r.offset % 4 == 0 and r.stride == 4 and r.access in ("RO", "RW", "WO", "R/W1C")
            for f in r.fields:
                assert 0 <= f.bit and f.bit + f.width <= 32
                assert r.reset & ~sum(f.mask for f in r.fields) == 0 or not r.fields
        masks = [f.mask for f in rm["STATUS"].fields]
        assert sum(masks) == np.bitwise_or.reduce(masks)  # fields do not overlap
    assert register_map(PIXEL)["ID"].reset == ID_VALUE
    assert "EVENT" in register_map(EVENTS) and "INPUT" not in register_map(EVENTS)
    assert "INPUT" in register_map(PIXEL) and "EVENT" not in register_map(PIXEL)


def test_reference_decoder():
    rm = register_map(PIXEL)
    assert rm.decode(0x020) == (rm["CONTROL"], 0) and rm["CONTROL"].address() == 0x020
    assert rm.decode(0x023) == (rm["CONTROL"], 0)       # byte bits ignored
    assert rm.decode(0x1000 + 4 * 4) == (rm["LOGIT"], 4)
    assert rm.decode(0x1000 + 4 * 5) is None            # past the last class
    assert rm.decode(0x2000 + 4 * 47) == (rm["INPUT"], 47)
    assert rm.decode(0x2000 + 4 * 48) is None
    assert rm.decode(0x01C) == (rm["TIME_STEPS"], 0)
    assert rm.decode(0x03C) is None and rm.decode(0x050) is None
    assert rm.decode(0x020 + (1 << rm.address_width)) == (rm["CONTROL"], 0)  # wraps
    with pytest.raises(ValueError, match="1..1024 logits"):
        register_map(CoreParameters(1025, 1, 16, 4, 8, 8, False, False))
    with pytest.raises(ValueError, match="do not fit"):
        register_map(CoreParameters(10, 1, 16, 4, 8, 33, False, False))


def test_input_window_grows_to_a_power_of_two():
    big = register_map(CoreParameters(10, 1, 16, 3 * 224 * 224, 8, 16, False, False))
    assert big["INPUT"].offset == 1 << 20 and big.address_width == 21
    for words, window in ((1, 0x2000), (2048, 0x2000), (2049, 0x4000), (4096, 0x4000)):
        rm = register_map(CoreParameters(10, 1, 16, words, 8, 16, False, False))
        assert rm["INPUT"].offset == window, words
        assert rm.address_width == window.bit_length()
    assert register_map(DOC_EXAMPLE)["INPUT"].offset == 0x2000
    assert register_map(EVENTS).address_width == 13


#: The documented contract (docs/control.md): drivers hard-code these through the header.
CONTRACT = {
    "ID": (0x000, "RO", {"MAGIC": (16, 16), "VERSION": (0, 16)}),
    "FEATURES": (0x004, "RO", {"EVENTS": (0, 1), "EXTERNAL_WEIGHTS": (1, 1),
                               "AXI_WEIGHTS": (2, 1)}),
    "CLASSES": (0x008, "RO", {}), "LANES": (0x00C, "RO", {}), "T": (0x010, "RO", {}),
    "INPUT_WORDS": (0x014, "RO", {}), "LOGIT_BITS": (0x018, "RO", {}),
    "TIME_STEPS": (0x01C, "RW", {}),
    "CONTROL": (0x020, "RW", {"START": (0, 1), "IRQ_EN": (1, 1)}),
    "STATUS": (0x024, "R/W1C", {"READY": (0, 1), "BUSY": (1, 1), "DONE": (2, 1),
                                "IRQ_PENDING": (3, 1)}),
    "ERROR": (0x028, "R/W1C", {"START_BUSY": (0, 1), "START_NOT_READY": (1, 1)}),
    "CYCLES": (0x02C, "RO", {}), "STEP": (0x030, "RO", {}), "TIME_STEP": (0x034, "RO", {}),
    "WEIGHT_BASE": (0x040, "RW", {}), "INPUT_BASE": (0x044, "RW", {}),
    "OUTPUT_BASE": (0x048, "RW", {}), "SCRATCH_BASE": (0x04C, "RW", {}),
    "LOGIT": (0x1000, "RO", {}),
}


@pytest.mark.parametrize("params", [PIXEL, EVENTS, dataclasses.replace(PIXEL, axi_weights=True),
                                    dataclasses.replace(EVENTS, axi_weights=True)],
                         ids=["pixel", "events", "pixel-axi", "events-axi"])
def test_map_is_the_documented_contract(params):
    rm = register_map(params)
    contract = dict(CONTRACT)
    if params.axi_weights:
        contract["WEIGHT_BYTES"] = (0x050, "RO", {})
    if params.events:
        contract["EVENT"] = (0x038, "WO", {"CHANNELS": (0, params.input_bits)})
        error_bit = {"EVENT_IDLE": (2, 1)}
    else:
        contract["INPUT"] = (0x2000, "WO", {"CODE": (0, params.input_bits)})
        error_bit = {"INPUT_BUSY": (2, 1)}
    if params.axi_weights:
        error_bit["AXI_READ"] = (3, 1)
    if params.axi_weights:      # the input (pixels or a run's event beats) and logits: DMA
        error_bit["AXI_IO"] = (4, 1)
        contract["CONTROL"] = (0x020, "RW", {**CONTRACT["CONTROL"][2], "DMA": (2, 1)})
    contract["ERROR"] = (0x028, "R/W1C", {**CONTRACT["ERROR"][2], **error_bit})
    got = {r.name: (r.offset, r.access, {f.name: (f.bit, f.width) for f in r.fields})
           for r in rm.registers}
    assert got == contract
    p = params
    resets = {"ID": ID_VALUE,
              "FEATURES": int(p.events) | 2 * int(p.external_weights) | 4 * int(p.axi_weights),
              "CLASSES": p.classes, "LANES": p.lanes, "T": p.T, "INPUT_WORDS": p.input_words,
              "LOGIT_BITS": p.logit_bits}
    assert {r.name: r.reset for r in rm.registers} == {name: resets.get(name, 0)
                                                      for name in contract}
    assert rm["LOGIT"].count == p.classes
    assert (rm["INPUT"].count if not p.events else p.input_words) == p.input_words
    assert rm.as_dict()["format"] == 1


def test_core_parameters_of_small_networks():
    """What NetworkCore reads off a network (no hardware is elaborated)."""
    for events in (False, True):
        _, net = tiny_net(events)
        core = NetworkCore(net, lanes=8)
        p = core.regmap.parameters
        assert (p.classes, p.T, p.lanes, p.events, p.external_weights) == (
            5, 2 if events else 1, 8, events, False)
        assert p.input_words == (16 * 16 if events else 3 * 16 * 16)
        assert p.input_bits == (2 if events else 8)
        assert p.logit_bits == core.network.logit_bits
        assert NetworkCore(net, lanes=8, weights="external").regmap.parameters.external_weights
    import inspect

    assert inspect.signature(NetworkCore).parameters["lanes"].default == 16
    assert inspect.signature(NetworkCore).parameters["weights"].default == "internal"


def test_ports_are_the_axi4_lite_signals_cocotbext_axi_expects():
    from amaranth.hdl import Shape

    from hw.control import AXIL_PREFIX, axi_lite_ports

    widths = {"awaddr": 14, "awprot": 3, "awvalid": 1, "awready": 1, "wdata": 32, "wstrb": 4,
              "wvalid": 1, "wready": 1, "bresp": 2, "bvalid": 1, "bready": 1, "araddr": 14,
              "arprot": 3, "arvalid": 1, "arready": 1, "rdata": 32, "rresp": 2, "rvalid": 1,
              "rready": 1}
    outputs = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"}
    ports = axi_lite_ports(14)
    assert {name: Shape.cast(m.shape).width for name, m in ports.items()} == \
        {f"{AXIL_PREFIX}_{name}": width for name, width in widths.items()}
    assert {name for name, m in ports.items() if m.flow == wiring.Out} == \
        {f"{AXIL_PREFIX}_{name}" for name in outputs}
    block = ControlBlock(register_map(PIXEL), fake_signature(PIXEL))
    assert Shape.cast(block.signature.members["irq"].shape).width == 1
    axi = pytest.importorskip("cocotbext.axi.axil_channels")
    for bus in (axi.AxiLiteAWBus, axi.AxiLiteWBus, axi.AxiLiteBBus, axi.AxiLiteARBus,
                axi.AxiLiteRBus):
        for signal in bus._signals + bus._optional_signals:    # every one it looks for
            assert f"{AXIL_PREFIX}_{signal}" in ports, signal


def test_json_round_trips():
    for params in (PIXEL, EVENTS):
        rm = register_map(params)
        assert RegisterMap.from_dict(json.loads(json.dumps(rm.as_dict()))) == rm


def test_markdown_rows():
    two = register_map(CoreParameters(2, 1, 8, 4, 2, 10, True, False)).markdown()
    assert "| `0x1000` + 4 n (n < 2) | `LOGIT` |" in two
    assert "`CHANNELS` [1:0] WO" in two and "`IRQ_EN` [1] RW" in two


def test_docs_hold_the_generated_table():
    text = (ROOT / "docs" / "control.md").read_text()
    assert register_map(DOC_EXAMPLE).markdown() in text, \
        "docs/control.md's register table is stale: regenerate it with " \
        "hw.control.register_map(DOC_EXAMPLE).markdown() (tests/test_control.py)"


def test_docstring_table_matches_the_map():
    """NetworkCore's docstring table names every register of the map at its offset."""
    rows = re.findall(r"^\s+0x([0-9A-F]+)\s+(\w+)", NetworkCore.__doc__, re.MULTILINE)
    documented = {name: int(offset, 16) for offset, name in rows}
    maps = (register_map(DOC_EXAMPLE), register_map(EVENTS),
            register_map(dataclasses.replace(DOC_EXAMPLE, axi_weights=True)))
    expected = {r.name: r.offset for rm in maps for r in rm.registers if r.name != "INPUT"}
    assert documented == expected


# ----------------------------------------------------------------------------- Amaranth sim

def fake_signature(params: CoreParameters, steps: int = 7):
    net = SimpleNamespace(
        layers={"head": SimpleNamespace(weight=np.zeros((params.classes, 4)))},
        pixel=None if params.events else SimpleNamespace(bits=8),
        cfg=SimpleNamespace(T=params.T, in_channels=2))
    return wiring.Signature(network_signature(net, list(range(steps)), params.input_words,
                                              params.logit_bits))


class FakeNetwork:
    """Stands in for the network's ports: ``ready`` after a few cycles; on ``start`` a run of
    ``run_cycles`` cycles (for an event model: until ``T * input_words`` beats were taken, ready
    on a random pattern), then ``done`` and known logits; pixel writes are recorded."""

    def __init__(self, dut, params, run_cycles=40, seed=0):
        self.dut, self.p = dut, params
        self.run_cycles = run_cycles
        self.rng = random.Random(seed)
        self.pixels = {}
        self.beats = []
        self.starts = 0
        self.logits = [(-1) ** c * (c * 37 + 3) for c in range(params.classes)]

    async def process(self, ctx):
        net, p = self.dut.net, self.p
        sample = [net.start]
        if p.events:
            sample += [net.events.valid, net.events.payload]
        else:
            sample += [net.load_enable, net.load_address, net.load_data]
        ticks, running, left, cycles, ev_ready = 0, False, 0, 0, 0
        async for _, _, start, *rest in ctx.tick().sample(*sample):
            ticks += 1
            ctx.set(net.ready, ticks >= 4)
            if p.events:
                valid, payload = rest
                if valid and ev_ready:
                    self.beats.append(payload)
            elif rest[0]:
                assert not running, "a pixel was written during a run"
                self.pixels[rest[1]] = rest[2]
            if start:
                assert ticks >= 5 and not running, "start while not ready or running"
                self.starts += 1
                running, left, cycles = True, self.run_cycles, 0
                self.beats_at_start = len(self.beats)
                ctx.set(net.done, 0)
            elif running:
                cycles += 1
                left -= 1
                beats = len(self.beats) - self.beats_at_start
                if left <= 0 and (not p.events or beats == p.T * p.input_words):
                    running = False
                    ctx.set(net.done, 1)
                    for c, v in enumerate(self.logits):
                        ctx.set(net.logits[c], v)
            ctx.set(net.cycles, cycles)
            ctx.set(net.step, cycles % 7)
            ctx.set(net.time_step, cycles % 2)
            if p.events:
                wanted = running and len(self.beats) - self.beats_at_start < p.T * p.input_words
                ev_ready = int(wanted and self.rng.random() < 0.4)
                ctx.set(net.events.ready, ev_ready)


class Master:
    """A cycle-level AXI4-Lite master on the Amaranth simulator with chosen delays per channel;
    checks that B and R stay valid and stable while back-pressured."""

    def __init__(self, bus, limit=2000):
        self.bus, self.limit = bus, limit

    async def write(self, ctx, addr, data, strb=0xF, aw_delay=0, w_delay=0, b_delay=0):
        bus = self.bus
        aw_done = w_done = False
        cycle = 0
        while not (aw_done and w_done):
            ctx.set(bus.awvalid, not aw_done and cycle >= aw_delay)
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.wvalid, not w_done and cycle >= w_delay)
            ctx.set(bus.wdata, data)
            ctx.set(bus.wstrb, strb)
            aw_fire = ctx.get(bus.awvalid) and ctx.get(bus.awready)
            w_fire = ctx.get(bus.wvalid) and ctx.get(bus.wready)
            await ctx.tick()
            aw_done, w_done, cycle = aw_done or aw_fire, w_done or w_fire, cycle + 1
            assert cycle < self.limit, "AW/W never taken"
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        (resp,) = await self._response(ctx, bus.bvalid, bus.bready, (bus.bresp,), b_delay)
        return resp

    async def read(self, ctx, addr, ar_delay=0, r_delay=0):
        bus = self.bus
        for _ in range(ar_delay):
            await ctx.tick()
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.araddr, addr)
        cycle = 0
        while True:
            fire = ctx.get(bus.arready)
            await ctx.tick()
            cycle += 1
            assert cycle < self.limit, "AR never taken"
            if fire:
                break
        ctx.set(bus.arvalid, 0)
        resp, data = await self._response(ctx, bus.rvalid, bus.rready, (bus.rresp, bus.rdata),
                                          r_delay)
        return data, resp

    async def _response(self, ctx, valid, ready, fields, delay):
        ctx.set(ready, 0)
        cycle = 0
        while not ctx.get(valid):
            await ctx.tick()
            cycle += 1
            assert cycle < self.limit, "no response"
        held = tuple(ctx.get(f) for f in fields)
        for _ in range(delay):
            await ctx.tick()
            assert ctx.get(valid) and tuple(ctx.get(f) for f in fields) == held, \
                "response changed while back-pressured"
        ctx.set(ready, 1)
        await ctx.tick()
        ctx.set(ready, 0)
        return held


def simulate(params, bench, run_cycles=40, seed=0):
    dut = ControlBlock(register_map(params), fake_signature(params))
    fake = FakeNetwork(dut, params, run_cycles, seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(fake.process)
    master = Master(dut.bus)

    async def testbench(ctx):
        await bench(ctx, dut, master, fake, register_map(params))

    sim.add_testbench(testbench)
    sim.run()
    return fake


def test_constants_and_unmapped_addresses():
    async def bench(ctx, dut, master, fake, rm):
        for r in rm.registers:
            if r.access == "RO" and r.name not in ("CYCLES", "STEP", "TIME_STEP", "LOGIT"):
                assert await master.read(ctx, r.offset) == (r.reset, OKAY), r.name
                # Writes to read-only registers are ignored with OKAY.
                assert await master.write(ctx, r.offset, 0xFFFF_FFFF) == OKAY
                assert await master.read(ctx, r.offset) == (r.reset, OKAY), r.name
        for addr in (0x038, 0x03C, 0x050, 0x0FFC, 0x1000 + 4 * rm["LOGIT"].count,
                     rm["INPUT"].address(rm["INPUT"].count - 1) + 4):
            assert rm.decode(addr) is None
            assert await master.read(ctx, addr) == (0, SLVERR), hex(addr)
            assert await master.write(ctx, addr, 1) == SLVERR, hex(addr)
        assert await master.read(ctx, rm["INPUT"].offset) == (0, OKAY)  # write-only: 0
        last = rm["INPUT"].address(rm["INPUT"].count - 1)
        assert await master.read(ctx, last) == (0, OKAY)
        for c in (0, rm["LOGIT"].count - 1):                 # read-only: ignored, OKAY
            assert await master.write(ctx, rm["LOGIT"].address(c), 7) == OKAY

    simulate(PIXEL, bench)


@pytest.mark.parametrize("order", ["together", "aw_first", "w_first"])
def test_aw_and_w_in_any_order_with_held_responses(order):
    delays = {"together": dict(aw_delay=0, w_delay=0), "aw_first": dict(aw_delay=0, w_delay=5),
              "w_first": dict(aw_delay=6, w_delay=0)}[order]

    async def bench(ctx, dut, master, fake, rm):
        base = rm["WEIGHT_BASE"].offset
        assert await master.write(ctx, base, 0x1234_5678, b_delay=7, **delays) == OKAY
        assert await master.read(ctx, base, r_delay=5) == (0x1234_5678, OKAY)
        # Byte strobes: storage registers keep unstrobed bytes.
        assert await master.write(ctx, base, 0xAABB_CCDD, strb=0b0101, **delays) == OKAY
        assert await master.read(ctx, base) == (0x12BB_56DD, OKAY)
        assert await master.write(ctx, 0x2000 + 0x1000, 5, b_delay=3, **delays) == SLVERR

    simulate(PIXEL, bench)


def test_byte_strobes_on_every_byte():
    async def bench(ctx, dut, master, fake, rm):
        base = rm["SCRATCH_BASE"].offset
        value = 0
        for strb in range(16):
            for data in (0xA5C3_5A3C, 0x5A3C_A5C3):
                assert await master.write(ctx, base, data, strb=strb) == OKAY
                mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
                value = (value & ~mask) | (data & mask)
                assert await master.read(ctx, base) == (value, OKAY), (strb, hex(data))

    simulate(PIXEL, bench)


def test_second_write_waits_for_the_first_response():
    """AW and W of a second write are taken while the first B is back-pressured; the second
    write happens only after that B is taken, and its B follows."""
    async def bench(ctx, dut, master, fake, rm):
        bus = dut.bus
        a, b = rm["INPUT_BASE"].offset, rm["OUTPUT_BASE"].offset
        ctx.set(bus.bready, 0)
        for addr, value in ((a, 11), (b, 22)):
            ctx.set(bus.awvalid, 1)
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.wvalid, 1)
            ctx.set(bus.wdata, value)
            ctx.set(bus.wstrb, 0xF)
            for _ in range(10):
                fire = ctx.get(bus.awready) and ctx.get(bus.wready)
                await ctx.tick()
                if fire:
                    break
            else:
                raise AssertionError("second AW/W not taken while B waits")
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
        for _ in range(5):
            await ctx.tick()
            assert ctx.get(bus.bvalid) and not ctx.get(bus.awready)   # one write held
        ctx.set(bus.bready, 1)
        await ctx.tick()          # first B taken
        responses = 1
        for _ in range(5):
            if ctx.get(bus.bvalid):
                responses += 1
                await ctx.tick()
                break
            await ctx.tick()
        ctx.set(bus.bready, 0)
        assert responses == 2
        assert await master.read(ctx, a) == (11, OKAY)
        assert await master.read(ctx, b) == (22, OKAY)

    simulate(PIXEL, bench)


def test_pixel_run_polling_errors_and_interrupt():
    async def bench(ctx, dut, master, fake, rm):
        control, status, error = (rm[n].offset for n in ("CONTROL", "STATUS", "ERROR"))
        ready, busy, done, pend = (rm["STATUS"].field(n).mask
                                   for n in ("READY", "BUSY", "DONE", "IRQ_PENDING"))
        start, irq_en = rm["CONTROL"].field("START").mask, rm["CONTROL"].field("IRQ_EN").mask
        e = {f.name: f.mask for f in rm["ERROR"].fields}
        # Start before READY: ignored and flagged (the stand-in is ready from its 4th cycle).
        assert await master.write(ctx, control, start) == OKAY
        assert (await master.read(ctx, error))[0] == e["START_NOT_READY"]
        assert await master.write(ctx, error, e["START_NOT_READY"]) == OKAY   # W1C
        assert (await master.read(ctx, error))[0] == 0
        assert (await master.read(ctx, status))[0] == ready
        codes = [(7 * i + 3) % 256 for i in range(rm["INPUT"].count)]
        for i, code in enumerate(codes):
            assert await master.write(ctx, rm["INPUT"].address(i), code | 0xAB00) == OKAY
        assert fake.pixels == dict(enumerate(codes))   # low 8 bits: the pixel code
        # A byte without its strobe is written as 0 (here: the whole pixel code).
        assert await master.write(ctx, rm["INPUT"].address(1), 0xFF, strb=0b1110) == OKAY
        assert fake.pixels[1] == 0
        assert await master.write(ctx, rm["INPUT"].address(1), codes[1]) == OKAY
        assert await master.write(ctx, control, start | irq_en) == OKAY
        assert (await master.read(ctx, status))[0] & (busy | done) == busy
        # A write W held before its AW acts only on its own address: IRQ_EN (CONTROL, the
        # previous address) is untouched; a write to a read-only LOGIT while busy flags nothing.
        assert await master.write(ctx, rm["WEIGHT_BASE"].offset, 0, aw_delay=6) == OKAY
        assert (await master.read(ctx, control))[0] == irq_en
        assert await master.write(ctx, rm["LOGIT"].offset, 1) == OKAY
        assert (await master.read(ctx, error))[0] == 0
        assert await master.write(ctx, control, start | irq_en) == OKAY   # while busy
        assert await master.write(ctx, rm["INPUT"].address(0), 1) == SLVERR  # dropped
        assert (await master.read(ctx, error))[0] == e["START_BUSY"] | e["INPUT_BUSY"]
        assert fake.pixels[0] == codes[0] and fake.starts == 1
        assert await master.write(ctx, error, e["START_BUSY"]) == OKAY     # W1C: only that bit
        assert (await master.read(ctx, error))[0] == e["INPUT_BUSY"]
        while not ctx.get(dut.irq):
            await ctx.tick()
        value = (await master.read(ctx, status))[0]
        assert value == ready | done | pend
        assert (await master.read(ctx, rm["CYCLES"].offset))[0] == fake.run_cycles
        for c, want in enumerate(fake.logits):
            data, resp = await master.read(ctx, rm["LOGIT"].address(c))
            assert resp == OKAY and data == want % (1 << 32), (c, data, want)  # sign-extended
        assert await master.write(ctx, status, ready | busy | done) == OKAY  # RO bits: no-op
        assert ctx.get(dut.irq)
        assert await master.write(ctx, status, pend) == OKAY
        assert not ctx.get(dut.irq)
        assert (await master.read(ctx, status))[0] == ready | done
        # Interrupt disabled: pending still latches, irq stays low; enabling raises it.
        assert await master.write(ctx, control, start) == OKAY
        while (await master.read(ctx, status))[0] & busy:
            assert not ctx.get(dut.irq)
        assert (await master.read(ctx, status))[0] == ready | done | pend
        assert not ctx.get(dut.irq)
        assert await master.write(ctx, control, irq_en) == OKAY
        assert ctx.get(dut.irq)
        assert (await master.read(ctx, control))[0] == irq_en   # START reads 0
        # IRQ_EN is in byte 0: a write without that byte's strobe leaves it.
        assert await master.write(ctx, control, 0, strb=0b1110) == OKAY
        assert (await master.read(ctx, control))[0] == irq_en
        assert fake.starts == 2

    simulate(PIXEL, bench)


def test_dma_runs_read_then_network_then_write():
    """CONTROL.DMA (a pixel model with the AXI4 master), against stand-ins for the network and
    the mover: a START with DMA pulses ``io_clear`` in the accepting cycle and
    ``io_read_start`` the next, the network starts only the cycle after ``io_read_done``, the
    logit write starts the cycle after the network's done, and BUSY, DONE, IRQ_PENDING and
    ``irq`` wait for ``io_write_done``; ``io_error`` reads as ERROR.AXI_IO; the base registers
    reach the mover; a START without DMA touches none of it."""
    params = dataclasses.replace(PIXEL, axi_weights=True)
    rm = register_map(params)
    dut = ControlBlock(rm, fake_signature(params))
    fake = FakeNetwork(dut, params, run_cycles=30)
    events = []

    async def mover(ctx):
        cycle, read_at, write_at = 0, None, None
        async for _, _, *values in ctx.tick().sample(
                dut.io_clear, dut.io_read_start, dut.io_write_start, dut.net.start,
                dut.net.done, dut.irq):
            clear, read_start, write_start, start, done, irq = values
            cycle += 1
            if irq and not any(name == "irq" for name, _ in events):
                events.append(("irq", cycle))
            for name, value in zip(("clear", "read_start", "write_start", "net_start"),
                                   (clear, read_start, write_start, start)):
                if value:
                    events.append((name, cycle))
            ctx.set(dut.io_read_done, 0)
            ctx.set(dut.io_write_done, 0)
            if read_start:
                read_at = cycle + 15
            if write_start:
                assert done, "the logit write began before the network's done"
                write_at = cycle + 12
            if cycle == read_at:
                ctx.set(dut.io_read_done, 1)
                events.append(("read_done", cycle))
            if cycle == write_at:
                ctx.set(dut.io_write_done, 1)
                events.append(("write_done", cycle))

    async def bench(ctx):
        master = Master(dut.bus)
        control, status, error = (rm[n].offset for n in ("CONTROL", "STATUS", "ERROR"))
        ready, busy, done, pend = (rm["STATUS"].field(n).mask
                                   for n in ("READY", "BUSY", "DONE", "IRQ_PENDING"))
        start, irq_en, dma = (rm["CONTROL"].field(n).mask for n in ("START", "IRQ_EN", "DMA"))
        for _ in range(6):
            await ctx.tick()
        assert await master.write(ctx, rm["INPUT_BASE"].offset, 0x1234_5678) == OKAY
        assert await master.write(ctx, rm["OUTPUT_BASE"].offset, 0x0ABC_DEF0) == OKAY
        assert ctx.get(dut.input_base) == 0x1234_5678
        assert ctx.get(dut.output_base) == 0x0ABC_DEF0
        # a run without DMA: no mover pulses
        assert await master.write(ctx, control, start) == OKAY
        while (await master.read(ctx, status))[0] & busy:
            pass
        assert [name for name, _ in events] == ["clear", "net_start"], events
        events.clear()
        assert await master.write(ctx, status, pend) == OKAY
        assert await master.write(ctx, control, start | dma | irq_en) == OKAY
        assert (await master.read(ctx, control))[0] == dma | irq_en
        saw_busy_network_done = False
        while True:
            value = (await master.read(ctx, status))[0]
            if not value & busy:
                break
            assert not value & done, f"STATUS 0x{value:x} while busy"
            saw_busy_network_done |= bool(ctx.get(dut.net.done))
        assert saw_busy_network_done, "no read fell between the network's end and the write's"
        assert value == ready | done | pend and ctx.get(dut.irq)
        # (a stand-in's pulse, set after a sampled edge, reaches the block at the next one)
        names = [name for name, _ in events]
        assert names == ["clear", "read_start", "read_done", "net_start", "write_start",
                         "write_done", "irq"], events
        at = dict(events)
        assert at["read_start"] == at["clear"] + 1
        assert at["net_start"] == at["read_done"] + 2
        assert at["irq"] == at["write_done"] + 2
        assert fake.starts == 2
        assert (await master.read(ctx, error))[0] == 0
        ctx.set(dut.io_error, 1)
        assert (await master.read(ctx, error))[0] == rm["ERROR"].field("AXI_IO").mask
        ctx.set(dut.weight_error, 1)
        assert (await master.read(ctx, error))[0] == (rm["ERROR"].field("AXI_IO").mask |
                                                      rm["ERROR"].field("AXI_READ").mask)
        ctx.set(dut.io_error, 0)
        assert (await master.read(ctx, error))[0] == rm["ERROR"].field("AXI_READ").mask
        ctx.set(dut.weight_error, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(fake.process)
    sim.add_process(mover)
    sim.add_testbench(bench)
    sim.run()


def test_event_beats_wait_for_the_network():
    """EVENT writes are back-pressured through B until the network takes each beat; without a
    run they are dropped with SLVERR and flagged."""
    async def bench(ctx, dut, master, fake, rm):
        control, status, error = (rm[n].offset for n in ("CONTROL", "STATUS", "ERROR"))
        event = rm["EVENT"].offset
        for _ in range(6):
            await ctx.tick()
        assert await master.write(ctx, event, 3) == SLVERR
        assert (await master.read(ctx, error))[0] == rm["ERROR"].field("EVENT_IDLE").mask
        assert fake.beats == []
        assert await master.write(ctx, error, 0xFFFF_FFFF) == OKAY
        assert await master.write(ctx, control, 1) == OKAY
        rng = random.Random(3)
        beats = [rng.randrange(4) for _ in range(rm.parameters.T * rm.parameters.input_words)]
        for value in beats:
            assert await master.write(ctx, event, value | 0xFF0, b_delay=rng.randrange(3),
                                w_delay=rng.randrange(3)) == OKAY
        assert fake.beats == beats          # payload: the channel bits only (2 channels)
        while (await master.read(ctx, status))[0] & rm["STATUS"].field("BUSY").mask:
            pass
        assert (await master.read(ctx, error))[0] == 0     # nothing flagged by the run
        assert await master.write(ctx, event, 1) == SLVERR
        assert await master.read(ctx, event) == (0, OKAY)    # write-only: reads 0

    simulate(EVENTS, bench, run_cycles=10)


def test_random_register_walk_with_random_delays():
    """300 random reads and writes (storage, read-only, unmapped) with random strobes and random
    delays on all five channels, against a Python model of the registers."""
    rng = random.Random(11)

    async def bench(ctx, dut, master, fake, rm):
        model = {r.offset: r.reset for r in rm.registers if r.count == 1}
        storage = [rm[n].offset for n in ("TIME_STEPS", "WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE",
                                          "SCRATCH_BASE")]
        constants = [r.offset for r in rm.registers if r.access == "RO" and r.count == 1
                     and r.name not in ("CYCLES", "STEP", "TIME_STEP")]
        unmapped = [0x03C, 0x05C, 0x0800, 0x1FFC, 0x3FFC]
        for _ in range(300):
            addr = rng.choice(storage * 3 + constants + unmapped)
            delays = dict(aw_delay=rng.randrange(4), w_delay=rng.randrange(4),
                          b_delay=rng.randrange(4))
            if rng.random() < 0.5:
                value, strb = rng.getrandbits(32), rng.choice([0xF, 0xF, 0x1, 0x6, 0x8, 0])
                resp = await master.write(ctx, addr, value, strb=strb, **delays)
                assert resp == (SLVERR if rm.decode(addr) is None else OKAY), hex(addr)
                if addr in storage:
                    mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
                    model[addr] = (model[addr] & ~mask) | (value & mask)
            else:
                data, resp = await master.read(ctx, addr, ar_delay=rng.randrange(3),
                                               r_delay=rng.randrange(4))
                if rm.decode(addr) is None:
                    assert (data, resp) == (0, SLVERR), hex(addr)
                else:
                    assert (data, resp) == (model[addr], OKAY), hex(addr)

    simulate(EVENTS, bench)


# ----------------------------------------------------------------------------- generated files

def header_checks(rm, prefix: str) -> str:
    """C11 ``_Static_assert``s that every value of the header equals the Python map's."""
    P = prefix.upper()
    p = rm.parameters
    checks = [(f"{P}_ADDRESS_WIDTH", rm.address_width), (f"{P}_DATA_WIDTH", 32),
              *((f"{P}_PARAM_{name.upper()}", int(value))
                for name, value in dataclasses.asdict(p).items())]
    for r in rm.registers:
        checks.append((f"{P}_{r.name}_OFFSET", r.offset))
        if r.name in ("LOGIT", "INPUT"):
            checks += [(f"{P}_{r.name}_COUNT", r.count), (f"{P}_{r.name}_STRIDE", r.stride),
                       (f"{P}_{r.name}_ADDR({r.count - 1})", r.address(r.count - 1))]
        else:
            checks.append((f"{P}_{r.name}_RESET", r.reset))
        for f in r.fields:
            checks += [(f"{P}_{r.name}_{f.name}_SHIFT", f.bit),
                       (f"{P}_{r.name}_{f.name}_MASK", f.mask)]
    return "".join(f'_Static_assert(({name}) == {value}u, "{name}");\n'
                   for name, value in checks), len(checks)


def compile_c(tmp_path, header_name, header_text, body) -> subprocess.CompletedProcess:
    (tmp_path / header_name).write_text(header_text)
    source = tmp_path / "check.c"
    # Included twice: the include guard must hold.
    source.write_text(f'#include "{header_name}"\n#include "{header_name}"\n{body}')
    return subprocess.run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                           "-fsyntax-only", str(source)], capture_output=True, text=True)


CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
needs_cc = pytest.mark.skipif(CC is None, reason="no system C compiler (cc, gcc or clang) on "
                                                 "PATH to compile the generated header")


@needs_cc
@pytest.mark.parametrize("params", [PIXEL, EVENTS], ids=["pixel", "events"])
def test_header_compiles_and_equals_the_map(tmp_path, params):
    from rtl_gen.soc import c_header

    rm = register_map(params)
    text = c_header(rm, "network_core")
    assert text == c_header(rm, "network_core")
    body, count = header_checks(rm, "network_core")
    result = compile_c(tmp_path, "network_core_regs.h", text, body)
    assert result.returncode == 0, result.stderr
    # Every #define is checked (none is left out of the comparison) ...
    defines = re.findall(r"^#define (\w+)", text, re.MULTILINE)
    assert len(defines) == count + 1        # + the include guard
    # ... and a wrong value is caught: the checks are live.
    wrong = body.replace("NETWORK_CORE_CONTROL_OFFSET) == 32u",
                         "NETWORK_CORE_CONTROL_OFFSET) == 36u")
    assert wrong != body
    assert compile_c(tmp_path, "network_core_regs.h", text, wrong).returncode != 0


def test_fusesoc_parses_the_core_file(tmp_path):
    pytest.importorskip("fusesoc", reason="FuseSoC is not installed (pip install fusesoc)")
    from fusesoc.capi2.coreparser import Core2Parser
    from fusesoc.core import Core

    from rtl_gen.soc import fusesoc_core

    kwargs = dict(verilog="network_core.v", header="network_core_regs.h",
                  register_map="network_core_regs.json", lint_waivers="lint_waivers.vlt",
                  description="a test: core")
    for image in ("network_core_weights.hex", None):
        text = fusesoc_core("network_core", weight_image=image, **kwargs)
        assert text == fusesoc_core("network_core", weight_image=image, **kwargs)
        path = tmp_path / "network_core.core"
        path.write_text(text)
        core = Core(Core2Parser(), str(path))
        assert str(core.name) == ":sdt:network_core:0.1"
        files = core.get_files({"target": "default", "is_toplevel": True})
        assert [f["name"] for f in files] == ["network_core.v"] + ([image] if image else [])
        assert files[0]["file_type"] == "verilogSource"
        assert core.get_toplevel({"target": "default"}) == "network_core"
        lint = core.get_files({"target": "lint", "is_toplevel": True, "tool": "verilator"})
        assert "lint_waivers.vlt" in [f["name"] for f in lint]
        assert core.get_flags("lint")["tool"] == "verilator"


def tiny_net(events: bool):
    """A small random model, quantized: ``tiny`` at 16x16 (lanes 8, the head width).

    Weights are ``tests/test_quant_fold.py``'s random init scaled by 5 and the batch norms mildly
    randomized (``test_quant_fold.randomize_bn``'s spread makes this model's logits the same for
    every input: a useless check of the input path); here most spike maps fire and the logits
    depend on the input."""
    from torch import nn

    from golden.config import variant
    from golden.model import MetaSpikeFormer
    from quant.quantize import quantize_model

    overrides = (dict(in_channels=2, events=True, img_size=16, T=2) if events
                 else dict(T=1, img_size=16))
    torch.manual_seed(1234)
    model = MetaSpikeFormer(variant("tiny", **overrides))
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.mul_(5.0)
    model = model.double().eval()
    return model, quantize_model(model.float(), 8)


@pytest.mark.first
def test_rtl_gen_emits_the_core_with_its_header_map_and_core_file(tmp_path):
    """``network_core`` through rtl_gen: the JSON is the component's map; the core file parses
    and names files that were written; the Verilog lints clean. (Emitting twice gives the same
    bytes: the network's own emission is checked so in tests/test_rtl_gen.py; the core's
    register files are written from the same map object.)"""
    from rtl_gen.config import DEFAULT_UNITS, load
    from rtl_gen.emit import emit
    from rtl_gen.lint import lint

    assert "network_core" not in DEFAULT_UNITS and "network_core" not in load(None).units
    _, net = tiny_net(events=False)
    point = load(None, units=("network_core",), lanes=8, checkpoint="tiny-random")
    first = emit(point, tmp_path / "a", net=net)
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_file())
    assert {"network_core.v", "network_core_regs.h", "network_core_regs.json",
            "network_core.core", "network_core_weights.hex"} <= set(names)
    unit = first["units"][0]
    soc = unit["soc"]
    for entry in soc.values():
        assert (tmp_path / "a" / entry["file"]).exists()
    rm = RegisterMap.from_dict(json.loads((tmp_path / "a" / "network_core_regs.json").read_text()))
    assert rm == NetworkCore(net, lanes=8, weights="external").regmap
    assert rm.parameters.external_weights and not rm.parameters.events
    ports = {p["name"]: p for p in unit["ports"]}
    assert ports["s_axil_awaddr"] == {"name": "s_axil_awaddr", "direction": "input",
                                      "width": rm.address_width}
    assert ports["s_axil_rdata"]["direction"] == "output" and ports["irq"]["width"] == 1
    assert {"weight_addr", "weight_en", "weight_data"} <= set(ports)
    if importlib.util.find_spec("fusesoc") is not None:
        from fusesoc.capi2.coreparser import Core2Parser
        from fusesoc.core import Core

        core = Core(Core2Parser(), str(tmp_path / "a" / "network_core.core"))
        for f in core.get_files({"target": "lint", "is_toplevel": True, "tool": "verilator"}):
            assert (tmp_path / "a" / f["name"]).exists(), f["name"]
    result = lint([tmp_path / "a" / "network_core.v"], "network_core")
    assert result.ok, result.messages


def rm_classes(net) -> int:
    return net.layers["head"].weight.shape[0]


def test_rtl_gen_emits_the_axi_weight_core(tmp_path):
    """``"weights": "axi"`` through rtl_gen: the core has the m_axi_ read master and no weight
    port; the byte image beside it is the ring's image (its sha256 in the manifest); the header
    and the JSON map carry WEIGHT_BYTES and FEATURES.AXI_WEIGHTS; the core file names the image;
    the on-chip weight memory reported is the ring; the Verilog lints clean."""
    from hw.control import core_parameters, register_map
    from rtl_gen.config import load
    from rtl_gen.emit import emit
    from rtl_gen.lint import lint

    _, net = tiny_net(events=False)
    point = load(None, units=("network_core",), lanes=8, checkpoint="tiny-random",
                 weights="axi", weight_ring=256)
    manifest = emit(point, tmp_path / "a", net=net)
    unit = manifest["units"][0]
    ports = {p["name"] for p in unit["ports"]}
    assert {"m_axi_araddr", "m_axi_arlen", "m_axi_rdata", "m_axi_rready"} <= ports
    # a pixel model's DMA: the write side of the master
    assert {"m_axi_awaddr", "m_axi_awlen", "m_axi_wdata", "m_axi_wstrb", "m_axi_wlast",
            "m_axi_bresp", "m_axi_bready"} <= ports
    assert not {"weight_addr", "weight_en", "weight_data"} & ports
    core = NetworkCore(net, lanes=8, weights="axi", weight_ring=256)
    image = (tmp_path / "a" / "network_core_weights.bin").read_bytes()
    assert image == core.ring.image()
    memory = unit["weight_memory"]
    assert memory["bytes"] == len(image) and memory["axi"]["ring_depth"] == 256
    assert memory["memory_bits"]["weights"] == 256 * 8 * core.weight_width
    assert memory["memory_bits"]["weights_external_bytes"] == len(image)
    assert memory["dma"]["input"]["bytes"] == 3 * 16 * 16
    assert memory["dma"]["output"]["bytes"] == 4 * rm_classes(net)
    assert memory["dma"]["alignment_bytes"] == 8
    rm = RegisterMap.from_dict(json.loads((tmp_path / "a" / "network_core_regs.json").read_text()))
    assert rm == core.regmap == register_map(core_parameters(core.network))
    assert rm.parameters.axi_weights and rm["FEATURES"].reset & 4
    header = (tmp_path / "a" / "network_core_regs.h").read_text()
    assert "NETWORK_CORE_WEIGHT_BYTES_OFFSET 0x00000050u" in header
    assert "NETWORK_CORE_CONTROL_DMA_MASK 0x00000004u" in header
    assert "NETWORK_CORE_ERROR_AXI_IO_MASK 0x00000010u" in header
    if importlib.util.find_spec("fusesoc") is not None:
        from fusesoc.capi2.coreparser import Core2Parser
        from fusesoc.core import Core

        parsed = Core(Core2Parser(), str(tmp_path / "a" / "network_core.core"))
        names = [f["name"] for f in parsed.get_files({"target": "default", "is_toplevel": True,
                                                      "tool": "verilator"})]
        assert "network_core_weights.bin" in names
    result = lint([tmp_path / "a" / "network_core.v"], "network_core")
    assert result.ok, result.messages


# ----------------------------------------------------------------------------- Verilator

def core_verilog(net, lanes: int, weights: str = "internal") -> str:
    """The core's Verilog (weights inside, or ``"axi"``: over its AXI4 master, the image
    written beside it as ``.weights.bin``), converted once per design point (cached beside the
    network's, keyed on the net and every hw/ source)."""
    from amaranth.back import verilog

    from sim.e2e import ROOT as E2E_ROOT, _net_key

    cache = E2E_ROOT / "build" / "network_rtl"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"core-{_net_key(net, lanes, 'network_core', weights)}.v"
    if path.exists() and (weights != "axi" or path.with_suffix(".weights.bin").exists()):
        return path.read_text()
    core = NetworkCore(net, lanes=lanes, weights=weights)
    if weights == "axi":
        path.with_suffix(".weights.bin").write_bytes(core.ring.image())
    text = verilog.convert(core, name="network_core", emit_src=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def core_case(path: Path, events: bool, count: int = 2, seed: int = 0,
              weights: str = "internal") -> tuple:
    """Write the testbench's case: the register map, ``count`` random inputs whose golden logits
    all differ (so a wrong or stale input shows) and the integer golden model's logits for them;
    return ``(net, case)``."""
    from quant.intmodel import IntegerModel
    from sim.e2e import random_images

    _, net = tiny_net(events)
    integer = IntegerModel(net)
    cfg = net.cfg
    pool = 8
    if events:
        rng = np.random.default_rng(seed)
        frames = (rng.random((pool, cfg.T, cfg.in_channels, cfg.img_size, cfg.img_size))
                  < 0.2).astype(np.int64)
        logits = integer(torch.from_numpy(frames).transpose(0, 1))
        # Beats: per time step one per pixel, row-major; bit c = channel c.
        channel_bits = (1 << np.arange(cfg.in_channels)).reshape(1, -1, 1)
        inputs = [(f.reshape(cfg.T, cfg.in_channels, -1) * channel_bits).sum(axis=1).reshape(-1)
                  for f in frames]
    else:
        codes = integer.quantize_input(random_images(net, pool, seed))
        logits = integer(codes)
        inputs = [c.reshape(-1).numpy() for c in codes]
    chosen, seen = [], set()
    for index, row in enumerate(logits.tolist()):
        if tuple(row) not in seen and len(chosen) < count:
            seen.add(tuple(row))
            chosen.append(index)
    assert len(chosen) == count, f"only {len(chosen)} distinct logit rows in {pool} inputs"
    rm = NetworkCore(net, lanes=8, weights=weights).regmap
    case = {"regmap": rm.as_dict(),
            "inputs": [[int(v) for v in inputs[i]] for i in chosen],
            "logits": [logits[i].tolist() for i in chosen]}
    path.write_text(json.dumps(case))
    return net, case


# Slow: each case converts (about 9 s) and builds (about 45-70 s cold, about 10 s with a warm
# ccache) its own network, then simulates for about 7-10 s: 60-90 s cold on the shared two-core
# machine (docs/control.md). The fast tests above cover the register block's behaviour.
@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("events, weights", [(False, "internal"), (True, "internal"),
                                             (False, "axi"), (True, "axi")],
                         ids=["pixel", "events", "pixel-axi-weights", "events-axi-weights"])
def test_core_over_axi_lite_is_bit_exact(tmp_path, events, weights):
    """A whole small network behind the AXI4-Lite slave on Verilator, driven only through the
    bus (cocotbext-axi, random pauses on every channel) and ``irq``: logits read over the bus ==
    the integer golden model's; SLVERR, write-1-to-clear and START-while-busy checks
    (``sim.tb.control``). With ``weights="axi"`` the weights come over the core's AXI4 master
    from cocotbext-axi's AXI RAM (latency 1-64 cycles a burst, random pauses on AR and R):
    WEIGHT_BYTES is T times the image's layers after every run, and an image placed outside the memory
    sets ERROR.AXI_READ."""
    pytest.importorskip("cocotbext.axi", reason="cocotbext-axi is not installed "
                                                "(pip install cocotbext-axi)")
    from sim import toolchain

    begin = time.perf_counter()
    net, case = core_case(tmp_path / "case.json", events, weights=weights)
    text = core_verilog(net, 8, weights)
    convert_s = time.perf_counter() - begin
    begin = time.perf_counter()
    design = toolchain.build(text, "network_core")
    build_s = time.perf_counter() - begin
    begin = time.perf_counter()
    label = ("events" if events else "pixel") + ("_axi" if weights == "axi" else "")
    env = {"CORE_CASE": str(tmp_path / "case.json"),
           "CORE_RESULTS": str(tmp_path / "results.json")}
    if weights == "axi":
        from sim.e2e import ROOT as E2E_ROOT, _net_key

        env["CORE_WEIGHTS"] = str(E2E_ROOT / "build" / "network_rtl" /
                                  f"core-{_net_key(net, 8, 'network_core', weights)}.weights.bin")
        ring = NetworkCore(net, lanes=8, weights="axi").ring
        env["CORE_WEIGHT_RUN_BYTES"] = str(ring.bytes_per_run(ring.plan.T))
    count = toolchain.run(design, "sim.tb.control", name=f"control_{label}", extra_env=env)
    run_s = time.perf_counter() - begin
    results = json.loads((tmp_path / "results.json").read_text())
    print(f"{label}: case+convert {convert_s:.1f} s, build "
          f"{build_s:.1f} s, run {run_s:.1f} s ({count} cocotb tests); cycles "
          f"{[r['cycles'] for r in results['polling']]}, input loaded in "
          f"{[int(r['load_ns'] // 10) for r in results['polling']]} cycles, polls "
          f"{[r['polls'] for r in results['polling']]}")
    assert count == 4, count   # test_dma is skipped (and counted) without CONTROL.DMA
