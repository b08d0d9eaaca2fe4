"""hw.bandcore.BandCore: the band chain behind an AXI4-Lite register slave. Software's view of a
run (bases, TIME_STEPS, CONTROL.START, the interrupt, STATUS, CYCLES, the byte counters,
ERROR), driven through the slave on Amaranth's simulator with every map and weight in the
random AXI memory of the chain's tests, gives the integer model's maps; the register map, its C
header and JSON; errors and refusals.
"""

import dataclasses
import random
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bandchain import chain_layout
from hw.bandcore import BAND_ID_VALUE, BandCore, BandCoreParameters, band_register_map
from hw.control import OKAY, SLVERR, RegisterMap
from sim import toolchain
from sim.cases_bandlayer import chain_case, chain_weights
from test_bandchain import check_memory
from test_bandlayer import ReadMemory
from test_control import CC, Master, compile_c, header_checks, needs_cc
from test_rowwriter import WriteMemory

NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


class LitePorts:
    """The core's flat ``s_axil_*`` ports under the names :class:`test_control.Master` uses."""

    def __init__(self, dut):
        self._dut = dut

    def __getattr__(self, name):
        return getattr(self._dut, f"s_axil_{name}")


def core_for(name, weights="axi", **options):
    case = chain_case(name)
    dut = BandCore(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                   weights=weights,
                   weight_words=case.weight_words if weights == "axi" else None, **options)
    memory, weight_base = chain_weights(case) if weights == "axi" else (case.memory, 0)
    return case, dut, bytearray(memory), weight_base


def simulate(dut, memory, bench, *, seed=0, latency=(1, 64), write_latency=(1, 64), pause=0.3,
             bad_read=None):
    """Run ``bench(ctx, master, rm, reads, writes)`` with the AXI memory stepped every cycle
    beside it; return the memories' models."""
    rng = random.Random(seed)
    reads = ReadMemory(dut, memory, rng, latency=latency, pause=pause, bad_burst=bad_read)
    writes = WriteMemory(dut, memory, rng, data_width=64, latency=write_latency, pause=pause)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def memory_process(ctx):
        while True:
            reads.step(ctx)
            writes.step(ctx)
            await ctx.tick()

    async def testbench(ctx):
        await bench(ctx, Master(LitePorts(dut), limit=2_000_000), dut.regmap, reads, writes)

    sim.add_testbench(memory_process, background=True)
    sim.add_testbench(testbench)
    sim.run()
    return reads, writes


async def program(ctx, master, rm, case, weight_base, *, steps=None, low=0):
    """Write the bases (``low`` ORed into each: bits below the bus width, which the core
    ignores) and TIME_STEPS (``steps``: the value written; the case's by default); every write
    answered OKAY and read back as written."""
    values = {"INPUT_BASE": case.input_base | low, "OUTPUT_BASE": case.output_base | low,
              "SCRATCH_BASE": case.scratch_base | low,
              "TIME_STEPS": case.steps if steps is None else steps}
    if "WEIGHT_BASE" in rm:
        values["WEIGHT_BASE"] = weight_base | low
    for name, value in values.items():
        assert await master.write(ctx, rm[name].offset, value) == OKAY
        assert await master.read(ctx, rm[name].offset) == (value, OKAY)


async def wait_ready(ctx, master, rm):
    for _ in range(10_000):
        status, _ = await master.read(ctx, rm["STATUS"].offset)
        if status & rm["STATUS"].field("READY").mask:
            return
    raise AssertionError("READY never rose")


async def run_once(ctx, dut, master, rm, *, irq=True):
    """START (with IRQ_EN), wait for the interrupt line, return (status, error, cycles)."""
    control = rm["CONTROL"]
    value = control.field("START").mask | (control.field("IRQ_EN").mask if irq else 0)
    assert await master.write(ctx, control.offset, value) == OKAY
    for cycle in range(2_000_000):
        if ctx.get(dut.irq) if irq else not (
                (await master.read(ctx, rm["STATUS"].offset))[0]
                & rm["STATUS"].field("BUSY").mask):
            break
        await ctx.tick()
    else:
        raise AssertionError("the run never ended")
    status, _ = await master.read(ctx, rm["STATUS"].offset)
    error, _ = await master.read(ctx, rm["ERROR"].offset)
    cycles, _ = await master.read(ctx, rm["CYCLES"].offset)
    return status, error, cycles


def bytes_of(case):
    """Bytes a run writes: every layer's output map, ``steps`` time steps (each row once)."""
    maps = chain_layout(case.layers, max_steps=case.max_steps)["maps"]
    return case.steps * sum(size for _, _, size in maps[1:])


# make test: the ROM chain (four with weights over AXI4 runs on Verilator there, and the chain
# in passes in tests/test_bandchain.py); all three in make test-all
@pytest.mark.parametrize("name,weights", [
    pytest.param("four", "axi", marks=pytest.mark.slow),
    pytest.param("split", "axi", marks=pytest.mark.slow), ("tiny", "rom")])
def test_a_run_through_the_registers_equals_the_integer_model(name, weights):
    """Software's run: wait for READY, write the bases and TIME_STEPS, START with IRQ_EN, wait
    for ``irq``: STATUS reads DONE | READY | IRQ_PENDING (not BUSY), ERROR 0, every map the
    integer model's and every other byte unchanged; WRITE_BYTES is the maps' size, READ_BYTES
    the beats the memory answered, and both are the sums of ``BandChain.traffic``'s layers;
    writing IRQ_PENDING clears it and drops ``irq``. The ROM
    case writes its bases with low bits set (ignored: the bus width's alignment)."""
    case, dut, memory, weight_base = core_for(name, weights)
    original = bytes(memory)
    seen = {}

    async def bench(ctx, master, rm, reads, writes):
        await wait_ready(ctx, master, rm)
        await program(ctx, master, rm, case, weight_base, low=5 if name == "tiny" else 0)
        status, error, cycles = await run_once(ctx, dut, master, rm)
        seen.update(status=status, error=error, cycles=cycles)
        seen["read"] = (await master.read(ctx, rm["READ_BYTES"].offset))[0]
        seen["written"] = (await master.read(ctx, rm["WRITE_BYTES"].offset))[0]
        seen["beats"] = sum(beats for _, beats in reads.log)
        pending = rm["STATUS"].field("IRQ_PENDING").mask
        assert await master.write(ctx, rm["STATUS"].offset, pending) == OKAY
        assert not ctx.get(dut.irq)
        seen["after"] = (await master.read(ctx, rm["STATUS"].offset))[0]

    simulate(dut, memory, bench, seed=3)
    fields = {f.name: f.mask for f in dut.regmap["STATUS"].fields}
    assert seen["status"] == fields["READY"] | fields["DONE"] | fields["IRQ_PENDING"]
    assert seen["after"] == fields["READY"] | fields["DONE"]
    assert seen["error"] == 0
    check_memory(case, chain_layout(case.layers, max_steps=case.max_steps), memory, original)
    assert seen["written"] == bytes_of(case)
    assert seen["read"] == 8 * seen["beats"] > 0
    # the per-layer traffic model adds up to both counters
    traffic = dut.chain.traffic(case.steps)
    assert seen["read"] == sum(r["weights"] + r["read"] for r in traffic)
    assert seen["written"] == sum(r["written"] for r in traffic)
    assert all(r["written"] == r["write_floor"] and r["read"] >= r["read_floor"]
               and r["weights"] >= r["weight_floor"] for r in traffic)
    if weights == "axi":
        assert seen["read"] >= len(dut.weight_image) + case.steps * \
            chain_layout(case.layers, max_steps=case.max_steps)["maps"][0][2]


def test_cycles_register_is_the_chain_model_plus_one():
    """On a memory that never pauses, CYCLES = ``sim.perf.band_chain_cycles`` + 1 (the start
    register), and TIME_STEPS = 0 runs T time steps."""
    from sim.perf import band_chain_cycles

    case, dut, memory, weight_base = core_for("tiny")
    assert case.steps == case.max_steps
    seen = {}

    async def bench(ctx, master, rm, reads, writes):
        await wait_ready(ctx, master, rm)
        await program(ctx, master, rm, case, weight_base, steps=0)
        seen["run"] = await run_once(ctx, dut, master, rm)

    simulate(dut, memory, bench, latency=(9, 9), write_latency=(5, 5), pause=0)
    model = band_chain_cycles(dut.chain, np.asarray(case.inputs), steps=case.steps,
                              read_delay=8, write_delay=4)
    assert seen["run"][2] == model["cycles"] + 1


def test_start_while_busy_unmapped_addresses_and_an_error_response():
    """STATUS reads READY | BUSY during a run (not DONE), and IRQ_PENDING rises at its end
    though the last write was a W1C of it; byte strobes write their bytes alone; a START while
    BUSY is ignored and
    flagged (ERROR.START_BUSY, cleared by writing 1); an
    unmapped address answers SLVERR both ways and a write to an RO register is ignored (OKAY);
    a read answered SLVERR sets ERROR.AXI, which the next START clears; the run still ends."""
    case, dut, memory, weight_base = core_for("tiny")
    seen = {}

    async def bench(ctx, master, rm, reads, writes):
        assert await master.read(ctx, rm["ID"].offset) == (BAND_ID_VALUE, OKAY)
        assert await master.write(ctx, rm["ID"].offset, 0) == OKAY
        assert await master.read(ctx, rm["ID"].offset) == (BAND_ID_VALUE, OKAY)
        assert await master.read(ctx, 0xFC) == (0, SLVERR)
        assert await master.write(ctx, 0xFC, 1) == SLVERR
        await wait_ready(ctx, master, rm)
        await program(ctx, master, rm, case, weight_base)
        start = rm["CONTROL"].field("START").mask
        assert await master.write(ctx, rm["CONTROL"].offset, start) == OKAY
        assert await master.write(ctx, rm["CONTROL"].offset, start) == OKAY   # while BUSY
        seen["during"] = (await master.read(ctx, rm["STATUS"].offset))[0]
        # a W1C of IRQ_PENDING while none is pending, the last write before the run ends:
        # the end still sets it
        pending = rm["STATUS"].field("IRQ_PENDING").mask
        assert await master.write(ctx, rm["STATUS"].offset, pending) == OKAY
        busy = rm["STATUS"].field("BUSY").mask
        while (await master.read(ctx, rm["STATUS"].offset))[0] & busy:
            pass
        for _ in range(3):
            await ctx.tick()
        seen["ended"] = (await master.read(ctx, rm["STATUS"].offset))[0]
        # byte strobes: a one-byte write changes that byte of a base register alone
        base = rm["INPUT_BASE"].offset
        assert await master.write(ctx, base, 0x1234_5778) == OKAY
        assert await master.write(ctx, base, 0xAB, strb=0b0001) == OKAY
        assert await master.write(ctx, base + 2, 0xCD << 16, strb=0b0100) == OKAY
        seen["strobed"] = (await master.read(ctx, base))[0]
        assert await master.write(ctx, base, case.input_base) == OKAY
        seen["error"] = (await master.read(ctx, rm["ERROR"].offset))[0]
        assert await master.write(ctx, rm["ERROR"].offset, 0xFFFF_FFFF) == OKAY
        seen["cleared"] = (await master.read(ctx, rm["ERROR"].offset))[0]
        reads.bad_burst = reads.bursts + 2
        seen["bad"] = await run_once(ctx, dut, master, rm, irq=False)
        reads.bad_burst = None
        seen["good"] = await run_once(ctx, dut, master, rm, irq=False)

    simulate(dut, memory, bench, seed=5)
    status = dut.regmap["STATUS"]
    assert seen["during"] == status.field("READY").mask | status.field("BUSY").mask
    assert seen["ended"] == status.field("READY").mask | status.field("DONE").mask | \
        status.field("IRQ_PENDING").mask
    assert seen["strobed"] == 0x12CD_57AB
    error = dut.regmap["ERROR"]
    assert seen["error"] == error.field("START_BUSY").mask
    assert seen["cleared"] == 0
    assert seen["bad"][1] == error.field("AXI").mask
    assert seen["good"][1] == 0


def test_control_register_bits_strobes_and_a_start_before_ready():
    """A START right after reset, before READY, is ignored and flagged START_NOT_READY; CONTROL
    reads back IRQ_EN alone (START reads 0) and takes it from byte 0's strobe only; a later
    write to another register whose W comes before its AW leaves CONTROL alone."""
    _, dut, memory, _ = core_for("tiny", "rom")
    seen = {}

    async def bench(ctx, master, rm, reads, writes):
        control, irq_en = rm["CONTROL"].offset, rm["CONTROL"].field("IRQ_EN").mask
        start = rm["CONTROL"].field("START").mask
        assert await master.write(ctx, control, start) == OKAY
        seen["early"] = ((await master.read(ctx, rm["STATUS"].offset))[0],
                         (await master.read(ctx, rm["ERROR"].offset))[0])
        assert await master.write(ctx, control, irq_en, strb=0b0001) == OKAY
        seen["set"] = (await master.read(ctx, control))[0]
        assert await master.write(ctx, control, 0, strb=0b1110) == OKAY
        seen["kept"] = (await master.read(ctx, control))[0]
        assert await master.write(ctx, rm["TIME_STEPS"].offset, 0, aw_delay=4) == OKAY
        seen["other"] = (await master.read(ctx, control))[0]
        assert await master.write(ctx, control, 0) == OKAY
        seen["cleared"] = (await master.read(ctx, control))[0]

    simulate(dut, memory, bench)
    rm = dut.regmap
    status, error = seen["early"]
    assert not status & rm["STATUS"].field("BUSY").mask
    assert not status & rm["STATUS"].field("READY").mask, "READY before the check: no test"
    assert error == rm["ERROR"].field("START_NOT_READY").mask
    irq_en = rm["CONTROL"].field("IRQ_EN").mask
    assert (seen["set"], seen["kept"], seen["other"], seen["cleared"]) == (irq_en, irq_en,
                                                                            irq_en, 0)


def test_register_map_is_aligned_disjoint_and_round_trips():
    case, dut, _, _ = core_for("four")
    rm = dut.regmap
    offsets = [r.offset for r in rm.registers]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < 1 << rm.address_width for o in offsets)
    assert RegisterMap.from_dict(rm.as_dict(), BandCoreParameters) == rm
    p = rm.parameters
    layout = chain_layout(case.layers, max_steps=case.max_steps)
    assert (p.layers, p.T, p.data_width) == (4, case.max_steps, 64)
    assert p.scratch_bytes == layout["scratch_bytes"]
    assert (p.input_step_bytes, p.output_step_bytes) == (layout["maps"][0][2],
                                                         layout["maps"][-1][2])
    assert p.weight_image_bytes == len(dut.weight_image)
    rom = BandCore(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                   weights="rom").regmap
    assert "WEIGHT_BASE" not in rom and "WEIGHT_IMAGE_BYTES" not in rom
    assert rom["FEATURES"].reset == 0 and rm["FEATURES"].reset == 1
    assert rom.parameters.weight_image_bytes == 0 and not rom.parameters.axi_weights
    one = core_for("one", "rom")[1].regmap          # one layer: no scratch maps
    assert (one["LAYERS"].reset, one["SCRATCH_SIZE"].reset, one["LANES"].reset) == (1, 0, 4)
    with pytest.raises(ValueError, match="scratch_bytes = 4294967296 does not fit"):
        band_register_map(dataclasses.replace(p, scratch_bytes=1 << 32))


def test_ports_and_addresses_wrap_at_eight_bits():
    """The core's ports: the 8-bit AXI4-Lite slave (as the map says), ``irq``, and the chain's
    AXI4 master (32-bit addresses), nothing else; a read of an offset + 0x100 reads the register at the offset
    (the port holds 8 address bits), and the last word, 0xFC, is unmapped."""
    from amaranth.hdl import Shape

    _, dut, memory, _ = core_for("tiny", "rom")
    members = dut.signature.members
    assert dut.regmap.address_width == 8
    assert Shape.cast(members["s_axil_awaddr"].shape).width == 8
    assert Shape.cast(members["s_axil_araddr"].shape).width == 8
    assert Shape.cast(members["m_axi_araddr"].shape).width == 32
    assert Shape.cast(members["m_axi_awaddr"].shape).width == 32
    assert Shape.cast(members["irq"].shape).width == 1
    assert set(members) == {f"s_axil_{name}" for name in (
        "awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp",
        "bvalid", "bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp",
        "rvalid", "rready")} | {"irq"} | {n for n in dut.chain.signature.members
                                         if n.startswith("m_axi_")}
    seen = {}

    async def bench(ctx, master, rm, reads, writes):
        seen["wrapped"] = await master.read(ctx, 0x100 + rm["LAYERS"].offset)
        seen["last"] = await master.read(ctx, 0xFC)

    simulate(dut, memory, bench)
    assert seen["wrapped"] == (2, OKAY)
    assert seen["last"] == (0, SLVERR)


@needs_cc
def test_header_compiles_and_equals_the_map(tmp_path):
    from rtl_gen.soc import c_header

    rm = core_for("four")[1].regmap
    text = c_header(rm, "band_core")
    body, count = header_checks(rm, "band_core")
    result = compile_c(tmp_path, "band_core_regs.h", text, body)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^#define (\w+)", text, re.MULTILINE)) == count + 1
    assert "BAND_CORE_PARAM_SCRATCH_BYTES" in text and CC


# ----------------------------------------------------------------------- Verilator and Icarus

def run_core_case(tmp_path, name, weights, simulator=None):
    """The band core's Verilog under cocotb (``sim/tb/bandcore.py`` through
    ``sim.bench_band.run_core``): a driver's whole run over cocotbext-axi's AxiLiteMaster,
    every map and weight in cocotbext-axi's RAM (latency 1-64, 20 % pauses)."""
    from sim.bench_band import run_core

    result = run_core(name, weights, simulator)
    case = chain_case(name)
    assert result["write_bytes"] == bytes_of(case)


@pytest.mark.verilator
def test_band_core_on_verilator(tmp_path):
    """make test: the four-layer chain, weights over AXI4, latency 1-64, 20 % pauses on all ten
    channels (five of the master, five of the slave)."""
    run_core_case(tmp_path, "four", "axi")


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name, weights", [("split", "axi"), ("wide", "rom")])
def test_band_core_more_on_verilator(tmp_path, name, weights):
    run_core_case(tmp_path, name, weights)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("name", ["four", "split"])
def test_band_core_on_icarus(tmp_path, name):
    run_core_case(tmp_path, name, "axi", "icarus")


# ------------------------------------------------------------------ emission (rtl_gen.band)

def test_emission_is_byte_identical_and_its_files_are_the_design(tmp_path):
    """``python -m rtl_gen.band`` twice gives byte-identical directories; the manifest lists
    every file with its sha256; the weight image is the core's, the input and output files the
    case's maps (``map_image``), the register JSON parses back to the core's map; the FuseSoC
    core names the Verilog and the top level."""
    import hashlib
    import json

    from hw.rowreader import map_image
    from rtl_gen.band import main

    for out in ("a", "b"):
        assert main(["--out", str(tmp_path / out)]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(set(names) - {"manifest.json"})
    for name, entry in manifest["files"].items():
        data = (tmp_path / "a" / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    case, dut, _, _ = core_for("four")
    assert (tmp_path / "a" / "band_core_weights.bin").read_bytes() == dut.weight_image
    assert (tmp_path / "a" / "band_core_input.bin").read_bytes() == b"".join(
        map_image(step) for step in case.inputs)
    assert (tmp_path / "a" / "band_core_output.bin").read_bytes() == b"".join(
        map_image(step) for step in case.want[-1])
    regmap = json.loads((tmp_path / "a" / "band_core_regs.json").read_text())
    assert RegisterMap.from_dict(regmap, BandCoreParameters) == dut.regmap
    assert manifest["on_chip_memory_bits"] == dut.memory_bits
    assert manifest["bytes_written_per_run"] == bytes_of(case)
    assert manifest["traffic_per_layer"] == dut.chain.traffic(case.steps)
    core = (tmp_path / "a" / "band_core.core").read_text()
    assert "- band_core.v: {file_type: verilogSource}" in core
    assert "toplevel: band_core" in core


def test_fusesoc_parses_the_band_core_file(tmp_path):
    pytest.importorskip("fusesoc", reason="FuseSoC is not installed (pip install fusesoc)")
    from fusesoc.capi2.coreparser import Core2Parser
    from fusesoc.core import Core

    from rtl_gen.band import main

    assert main(["--weights", "rom", "--case", "tiny", "--out", str(tmp_path / "o")]) == 0
    core = Core(Core2Parser(), str(tmp_path / "o" / "band_core.core"))
    assert str(core.name) == ":sdt:band_core:0.1"
    files = core.get_files({"target": "default", "is_toplevel": True})
    assert [f["name"] for f in files] == ["band_core.v"]
    assert core.get_toplevel({"target": "default"}) == "band_core"


@pytest.mark.parametrize("args, message", [
    (["--case", "nope"], "--case 'nope': not a chain case name or its JSON tuple"),
    (["--band-bits", "0"], "--band-bits 0: must be >= 1"),
    (["--band-bits", "10"], "layer 0: a band of one output row needs"),
    (["--weights", "rom", "--weight-words", "64"], "--weight-words bounds the weight RAM"),
    (["--weight-words", "8"], "layer 0: one group of 4 output channels needs"),
])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    """In the test's process (``main(argv)``, streams captured); the first case also as a real
    command line."""
    from rtl_gen.band import main

    out = tmp_path / "out"
    try:
        code = main([*args, "--out", str(out)])
    except SystemExit as parser_exit:      # argparse's refusals
        code = parser_exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists() and not list(tmp_path.iterdir())
    if args[0] == "--case":
        import subprocess
        import sys

        result = subprocess.run([sys.executable, "-m", "rtl_gen.band", *args, "--out", str(out)],
                                capture_output=True, text=True)
        assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
        assert message in result.stderr and not out.exists()


def test_docs_hold_the_generated_table():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "bandcore.md").read_text()
    assert core_for("four")[1].regmap.markdown() in text, \
        "docs/bandcore.md's register table is stale: regenerate it from " \
        "core_for('four')[1].regmap.markdown() (tests/test_bandcore.py)"


@pytest.mark.verilator
@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
def test_cycles_are_the_same_on_verilator_and_icarus():
    """The same run on a memory of fixed latency that never pauses reads the same CYCLES,
    READ_BYTES and WRITE_BYTES on Verilator (two-state, cycle-based) and Icarus (four-state,
    event-driven), and CYCLES is the chain model's + 1: the Verilog's timing does not depend
    on the simulator."""
    from sim.bench_band import run_core
    from sim.perf import AXI_MEMORY_OFFSET, AXI_WRITE_OFFSET, band_chain_cycles

    runs = [run_core("four", "axi", simulator, latency="12", pause=0, seed=2)
            for simulator in ("verilator", "icarus")]
    assert runs[0] == runs[1]
    case, dut, _, _ = core_for("four")
    model = band_chain_cycles(dut.chain, np.asarray(case.inputs), steps=case.steps,
                              read_delay=12 + AXI_MEMORY_OFFSET, write_delay=AXI_WRITE_OFFSET)
    assert runs[0]["cycles"] == model["cycles"] + 1
    assert runs[0]["write_bytes"] == bytes_of(case)
