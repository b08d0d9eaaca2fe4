"""cocotb test of the band core (``hw.bandcore.BandCore``): a driver's run over the AXI4-Lite slave.

Everything goes through cocotbext-axi: software's registers through ``AxiLiteMaster`` on the
``s_axil_*`` ports (random pauses on its five channels), every spike map and the weight image in
one RAM behind the ``m_axi_*`` master (its read side answering each burst after ``BAND_LATENCY``
cycles, :class:`sim.tb.axi_memory.LatencyAxiRamRead`; ``BAND_PAUSE`` pauses on all five
channels). The driver reads ID and the parameters, waits for READY, writes the four bases and
TIME_STEPS, STARTs with IRQ_EN, waits for ``irq``, reads STATUS, ERROR, CYCLES and the byte
counters, and clears the interrupt. The output map and the two maps still in the scratch slots
must equal the integer model's (``sim.cases_bandlayer.CHAIN_CASES[BAND_CASE]``), every other
byte unchanged, WRITE_BYTES the maps' size and READ_BYTES the bytes the RAM answered.
``BAND_RESULT`` (JSON) gets CYCLES and the counters.
"""

from __future__ import annotations

import json
import logging
import os
import random

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw.bandchain import chain_layout
from hw.bandcore import BAND_ID_VALUE, BandCoreParameters
from hw.control import AXIL_PREFIX, RegisterMap
from sim.cases_bandlayer import chain_case, chain_weights, check_chain_memory
from sim.tb.axi_memory import band_memory, random_pauses
from sim.tb.common import TB, env_int


async def count_beats(dut, valid, ready, counter: list):
    while True:
        await RisingEdge(dut.clk)
        if valid.value and ready.value:
            counter[0] += 1


@cocotb.test()
async def test_core_run(dut):
    case = chain_case(os.environ["BAND_CASE"])
    with open(os.environ["BAND_REGMAP"]) as handle:
        rm = RegisterMap.from_dict(json.load(handle), BandCoreParameters)
    seed = env_int("BAND_SEED", 1)
    pause = float(os.environ.get("BAND_PAUSE", "0"))
    axi_weights = rm.parameters.axi_weights
    memory, weight_base = chain_weights(case) if axi_weights else (case.memory, 0)
    tb = TB(dut)
    reads, _ = band_memory(dut, memory, seed=seed, pause=pause,
                           latency=os.environ.get("BAND_LATENCY", "1-64"))
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, AXIL_PREFIX), dut.clk, dut.rst)
    for log in (master.write_if.log, master.read_if.log):
        log.setLevel(logging.WARNING)
    if pause > 0:
        for index, channel in enumerate((
                master.write_if.aw_channel, master.write_if.w_channel, master.write_if.b_channel,
                master.read_if.ar_channel, master.read_if.r_channel)):
            channel.set_pause_generator(random_pauses(pause, seed + 6 + index))
    beats = [0]
    await tb.reset()
    cocotb.start_soon(count_beats(dut, dut.m_axi_rvalid, dut.m_axi_rready, beats))

    async def read(name):
        resp = await master.read(rm[name].offset, 4)
        assert resp.resp == AxiResp.OKAY, f"read {name}: {resp.resp!r}"
        return int.from_bytes(resp.data, "little")

    async def write(name, value):
        resp = await master.write(rm[name].offset, value.to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"write {name}: {resp.resp!r}"

    def mask(register, field):
        return rm[register].field(field).mask

    assert await read("ID") == BAND_ID_VALUE
    for name in ("LAYERS", "T", "DATA_WIDTH", "SCRATCH_SIZE", "INPUT_STEP_BYTES"):
        assert await read(name) == rm[name].reset, f"{name} reads another value than the map's"
    unmapped = await master.read(0xFC, 4)
    assert unmapped.resp == AxiResp.SLVERR
    while not await read("STATUS") & mask("STATUS", "READY"):
        pass
    low = random.Random(seed).randrange(8)     # bits below the bus width: ignored
    bases = {"INPUT_BASE": case.input_base, "OUTPUT_BASE": case.output_base,
             "SCRATCH_BASE": case.scratch_base}
    if axi_weights:
        bases["WEIGHT_BASE"] = weight_base
    for name, value in bases.items():
        await write(name, value | low)
    await write("TIME_STEPS", case.steps)
    await write("CONTROL", mask("CONTROL", "START") | mask("CONTROL", "IRQ_EN"))
    for _ in range(5_000_000):
        await RisingEdge(dut.clk)
        if dut.irq.value:
            break
    else:
        raise AssertionError("no interrupt")
    status = await read("STATUS")
    assert status == mask("STATUS", "READY") | mask("STATUS", "DONE") | \
        mask("STATUS", "IRQ_PENDING"), f"STATUS {status:#x} after the run"
    assert await read("ERROR") == 0
    cycles = await read("CYCLES")
    read_bytes = await read("READ_BYTES")
    write_bytes = await read("WRITE_BYTES")
    await write("STATUS", mask("STATUS", "IRQ_PENDING"))
    await RisingEdge(dut.clk)
    assert not dut.irq.value, "irq still high after IRQ_PENDING was cleared"

    check_chain_memory(case, reads.read(0, len(memory)), memory)
    layout = chain_layout(case.layers, max_steps=case.max_steps)
    assert write_bytes == case.steps * sum(s for _, _, s in layout["maps"][1:])
    assert read_bytes == rm.parameters.data_width // 8 * beats[0], (read_bytes, beats[0])
    if "BAND_RESULT" in os.environ:
        with open(os.environ["BAND_RESULT"], "w") as handle:
            json.dump({"cycles": cycles, "read_bytes": read_bytes, "write_bytes": write_bytes},
                      handle)
