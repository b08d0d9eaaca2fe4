"""SoC-facing shell of the band chain: an AXI4-Lite register slave around :class:`BandChain`.

:class:`BandCore` is the bounded-memory dataflow as an IP an SoC instantiates: every spike map
of a run (the input, the layers' outputs, the scratch maps between them) and, with
``weights="axi"``, every weight lie in external memory behind one AXI4 master (``m_axi_*``,
:class:`hw.bandchain.BandChain`'s); software sets the four region bases and the time steps
through an AXI4-Lite slave (``s_axil_*``, the names cocotbext-axi's ``AxiLiteBus.from_prefix``
expects), writes START and waits for the interrupt (``irq``) or polls STATUS. On chip stays one
band's worth of accumulators and membranes, two rows of the assembler, the weight RAM (at most
``weight_words`` words) and the biases and thresholds (:attr:`BandCore.memory_bits`): none of it
grows with the maps, and with ``weight_words`` none with the weights.

The register map is Python data, :func:`band_register_map` (the same :class:`hw.control.
RegisterMap` as the network core's, other registers): the hardware decodes it and ``rtl_gen``
writes the C header, the JSON map and the FuseSoC core from it. The AXI4-Lite protocol is the
network core's (:func:`hw.control.axi_lite_write_channel`, :func:`hw.control.
axi_lite_read_channel`): one write and one read in flight, responses held until taken,
unmapped addresses answer SLVERR.

Registers (byte offsets, 32-bit words, ``docs/bandcore.md``):

======== ================== ======= ==================================================
offset   name               access  meaning
======== ================== ======= ==================================================
0x000    ID                 RO      0x5342_0001: 'SB', map version 1
0x004    FEATURES           RO      bit 0 AXI_WEIGHTS: weights read over m_axi_
0x008    LAYERS             RO      conv + LIF layers of the chain
0x00C    LANES              RO      output channels the engine computes a cycle
0x010    T                  RO      most time steps of a run
0x014    DATA_WIDTH         RO      bits of the m_axi_ data bus
0x018    SCRATCH_SIZE       RO      bytes of the scratch region a run of T steps uses
0x01C    TIME_STEPS         RW      time steps of the next run (0 or > T: T)
0x020    CONTROL            RW      START [0] WO; IRQ_EN [1] RW
0x024    STATUS             R/W1C   READY [0], BUSY [1], DONE [2] RO; IRQ_PENDING [3] W1C
0x028    ERROR              R/W1C   START_BUSY [0], START_NOT_READY [1] W1C; AXI [2] RO
0x02C    CYCLES             RO      cycles of the last (or running) run
0x030    READ_BYTES         RO      bytes read over m_axi_ since START
0x034    WRITE_BYTES        RO      bytes written over m_axi_ since START
0x040    WEIGHT_BASE        RW      AXI weights only: byte address of the weight image
0x044    INPUT_BASE         RW      byte address of the input map (time step t at
                                    t * INPUT_STEP_BYTES)
0x048    OUTPUT_BASE        RW      byte address of the output map
0x04C    SCRATCH_BASE       RW      byte address of the scratch region (SCRATCH_SIZE bytes)
0x050    INPUT_STEP_BYTES   RO      bytes of one time step of the input map
0x054    OUTPUT_STEP_BYTES  RO      bytes of one time step of the output map
0x058    WEIGHT_IMAGE_BYTES RO      AXI weights only: bytes of the weight image
======== ================== ======= ==================================================

Clock and reset: Amaranth's ``sync`` domain (``clk``, ``rst`` active high, synchronous).

Reference: the chain's, :func:`hw.bandchain.band_chain_reference`; the map,
:func:`band_register_map`. Tests: ``tests/test_bandcore.py`` (Amaranth's simulator and, through
cocotbext-axi's AxiLiteMaster and AXI RAM, Verilator and Icarus).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.bandchain import BandChain
from hw.bandlayer import ConvLIF
from hw.control import (AXIL_PREFIX, Field, Register, RegisterMap, axi4_lite_signature,
                        axi_lite_ports, axi_lite_read_channel, axi_lite_write_channel)

__all__ = ["BAND_ID_VALUE", "BandCoreParameters", "band_register_map", "BandCore"]

#: ID register: ``'S' 'B'`` (sdt band core) in bits 31:16, register-map version 1 in 15:0.
BAND_ID_VALUE = 0x5342_0001

#: The AXI4-Lite byte address: 0x00 .. 0xFF.
BAND_ADDRESS_WIDTH = 8


@dataclass(frozen=True)
class BandCoreParameters:
    """What the band core's register map depends on (all of it readable from the map)."""

    layers: int
    lanes: int
    T: int
    data_width: int
    axi_weights: bool
    scratch_bytes: int
    input_step_bytes: int
    output_step_bytes: int
    weight_image_bytes: int


def band_register_map(p: BandCoreParameters) -> RegisterMap:
    """Return the band core's register map (the reference for the hardware's decoder, the C
    header, the JSON map and ``docs/bandcore.md``). Raises ``ValueError`` for a design whose
    sizes do not fit a 32-bit register."""
    for name in ("scratch_bytes", "input_step_bytes", "output_step_bytes",
                 "weight_image_bytes"):
        if not 0 <= getattr(p, name) < 1 << 32:
            raise ValueError(f"{name} = {getattr(p, name)} does not fit a 32-bit register")
    F = Field
    align = ("a multiple of the bus width in bytes (DATA_WIDTH / 8; lower bits ignored); "
             "sampled at START, hold it while BUSY")
    regs = [
        Register("ID", 0x000, "RO", BAND_ID_VALUE,
                 "Identification: 0x5342 ('SB') in bits 31:16, register-map version in 15:0.",
                 (F("MAGIC", 16, 16, "RO", "0x5342"), F("VERSION", 0, 16, "RO", "map version"))),
        Register("FEATURES", 0x004, "RO", int(p.axi_weights),
                 "What this design point is built with.",
                 (F("AXI_WEIGHTS", 0, 1, "RO", "1: the weights are read from WEIGHT_BASE over "
                                               "the m_axi_ port; 0: they are in an on-chip "
                                               "ROM"),)),
        Register("LAYERS", 0x008, "RO", p.layers, "Conv + LIF layers of the chain."),
        Register("LANES", 0x00C, "RO", p.lanes, "Output channels the engine computes a cycle."),
        Register("T", 0x010, "RO", p.T, "Most time steps of a run (TIME_STEPS chooses a "
                                        "run's)."),
        Register("DATA_WIDTH", 0x014, "RO", p.data_width, "Bits of the m_axi_ data bus."),
        Register("SCRATCH_SIZE", 0x018, "RO", p.scratch_bytes,
                 "Bytes of the scratch region a run of T time steps reads and writes (two "
                 "slots of the intermediate maps)."),
        Register("TIME_STEPS", 0x01C, "RW", 0,
                 "Time steps of the next run, 1 to T (0, or more than T: T), sampled at START. "
                 "Time step t of a map lies t map sizes after its base; a layer's membranes "
                 "start from 0 at the run's first time step."),
        Register("CONTROL", 0x020, "RW", 0, "Start a run; enable the interrupt.",
                 (F("START", 0, 1, "WO", "write 1: start a run if READY and not BUSY (else "
                                         "ignored and flagged in ERROR); reads 0"),
                  F("IRQ_EN", 1, 1, "RW", "1: irq = STATUS.IRQ_PENDING"))),
        Register("STATUS", 0x024, "R/W1C", 0, "Run state and the interrupt.",
                 (F("READY", 0, 1, "RO", "the engine has cleared its bank after reset: START "
                                         "is accepted"),
                  F("BUSY", 1, 1, "RO", "a run is in progress (from an accepted START to the "
                                        "last write's response)"),
                  F("DONE", 2, 1, "RO", "the last run has ended (cleared by the next START)"),
                  F("IRQ_PENDING", 3, 1, "W1C", "set when a run ends; write 1 to clear"))),
        Register("ERROR", 0x028, "R/W1C", 0, "Error flags.",
                 (F("START_BUSY", 0, 1, "W1C", "START written while BUSY (ignored)"),
                  F("START_NOT_READY", 1, 1, "W1C", "START written while not READY (ignored)"),
                  F("AXI", 2, 1, "RO", "a read or write of the last run over m_axi_ was "
                                       "answered SLVERR or DECERR (the run went on; cleared "
                                       "by START)"))),
        Register("CYCLES", 0x02C, "RO", 0,
                 "Cycles from the accepted START to the end of the run (counting while BUSY; "
                 "frozen at the end)."),
        Register("READ_BYTES", 0x030, "RO", 0,
                 "Bytes read over m_axi_ since the last accepted START (R beats times "
                 "DATA_WIDTH / 8)."),
        Register("WRITE_BYTES", 0x034, "RO", 0,
                 "Bytes written over m_axi_ since the last accepted START (W beats times "
                 "DATA_WIDTH / 8)."),
    ]
    if p.axi_weights:
        regs.append(Register("WEIGHT_BASE", 0x040, "RW", 0,
                             f"Byte address of the weight image (python -m rtl_gen.band's "
                             f"band_core_weights.bin); {align}."))
    regs += [
        Register("INPUT_BASE", 0x044, "RW", 0,
                 f"Byte address of the input spike map (layer 0's), T time steps; {align}."),
        Register("OUTPUT_BASE", 0x048, "RW", 0,
                 f"Byte address of the output spike map (the last layer's); {align}."),
        Register("SCRATCH_BASE", 0x04C, "RW", 0,
                 f"Byte address of the scratch region (SCRATCH_SIZE bytes); {align}."),
        Register("INPUT_STEP_BYTES", 0x050, "RO", p.input_step_bytes,
                 "Bytes of one time step of the input map."),
        Register("OUTPUT_STEP_BYTES", 0x054, "RO", p.output_step_bytes,
                 "Bytes of one time step of the output map."),
    ]
    if p.axi_weights:
        regs.append(Register("WEIGHT_IMAGE_BYTES", 0x058, "RO", p.weight_image_bytes,
                             "Bytes of the weight image."))
    return RegisterMap(p, tuple(regs), BAND_ADDRESS_WIDTH)


class BandCore(wiring.Component):
    """A :class:`hw.bandchain.BandChain` behind an AXI4-Lite register slave, with an interrupt.

    Parameters: those of :class:`hw.bandchain.BandChain` (``layers``, ``band_rows`` or
    ``band_bits``, ``max_steps``, ``weight_width``, ``data_width``, ``weights``,
    ``weight_words``); the m_axi_ addresses are 32 bits.

    Members
    -------
    s_axil_awaddr ... s_axil_rready
        The AXI4-Lite slave (:func:`hw.control.axi4_lite_signature`, 8-bit byte addresses).
    irq : Out(1)
        ``STATUS.IRQ_PENDING & CONTROL.IRQ_EN`` (a level).
    m_axi_ar* ... m_axi_b*
        The chain's AXI4 master, passed through.

    Cycles: the chain's ``start`` is a register, one cycle after the cycle that accepts the
    START write; BUSY rises with it and falls after the chain's ``done``, and CYCLES counts the
    cycles BUSY is high: the chain's cycles (:func:`sim.perf.band_chain_cycles`) + 1.
    """

    def __init__(self, layers: Sequence[ConvLIF], *, max_steps: int, band_rows=None,
                 band_bits: int | None = None, weight_width: int = 8, data_width: int = 64,
                 weights: str = "axi", weight_words: int | None = None):
        self.chain = BandChain(layers, band_rows=band_rows, band_bits=band_bits,
                               max_steps=max_steps, weight_width=weight_width,
                               data_width=data_width, address_width=32, weights=weights,
                               weight_words=weight_words)
        chain = self.chain
        maps = chain.layout["maps"]
        axi_weights = weights == "axi"
        self.regmap = band_register_map(BandCoreParameters(
            layers=len(chain.layers), lanes=chain.layers[0].layer.lanes, T=max_steps,
            data_width=data_width, axi_weights=axi_weights,
            scratch_bytes=chain.layout["scratch_bytes"], input_step_bytes=maps[0][2],
            output_step_bytes=maps[-1][2],
            weight_image_bytes=len(chain.weight_image) if axi_weights else 0))
        self._axi = [name for name in chain.signature.members if name.startswith("m_axi_")]
        ports = {**axi_lite_ports(self.regmap.address_width), "irq": Out(1)}
        for name in self._axi:
            ports[name] = chain.signature.members[name]
        super().__init__(ports)

    @property
    def memory_bits(self) -> dict[str, int]:
        """Bits of each on-chip memory (the chain's datapath's)."""
        return self.chain.memory_bits

    @property
    def weight_image(self) -> bytes:
        """``weights="axi"``: the bytes to put at WEIGHT_BASE."""
        return self.chain.weight_image

    def elaborate(self, platform):
        m = Module()
        m.submodules.chain = chain = self.chain
        rm, p = self.regmap, self.regmap.parameters
        for name in self._axi:
            ours, theirs = getattr(self, name), getattr(chain, name)
            if self.signature.members[name].flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)

        # the flat s_axil_ ports under the member names of the AXI4-Lite signature
        bus = SimpleNamespace(**{name: getattr(self, f"{AXIL_PREFIX}_{name}")
                                 for name in axi4_lite_signature(rm.address_width).members})

        def word(name):
            return rm[name].offset >> 2

        def bit(register, name):
            return rm[register].field(name).bit

        write = axi_lite_write_channel(m, bus, rm.address_width)
        read = axi_lite_read_channel(m, bus, rm.address_width)

        busy = Signal(name="busy")
        pending = Signal(name="irq_pending")
        irq_en = Signal(name="irq_en")
        ended = Signal(name="ended")              # STATUS.DONE
        flags = Signal(2, name="start_errors")    # ERROR.START_BUSY, START_NOT_READY
        cycles = Signal(32, name="cycles")
        read_bytes = Signal(32, name="read_bytes")
        write_bytes = Signal(32, name="write_bytes")
        storage = {name: Signal(32, name=name.lower()) for name in
                   ("TIME_STEPS", "WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE")
                   if name in rm}
        m.d.comb += self.irq.eq(pending & irq_en)

        # the chain's inputs: the bases with their bytes below the bus width cleared
        low = (p.data_width // 8).bit_length() - 1
        for name, port in (("INPUT_BASE", chain.input_base), ("OUTPUT_BASE", chain.output_base),
                           ("SCRATCH_BASE", chain.scratch_base),
                           ("WEIGHT_BASE", getattr(chain, "weight_base", None))):
            if name in storage:
                m.d.comb += port.eq(Cat(Const(0, low), storage[name][low:]))
        asked = storage["TIME_STEPS"]
        m.d.comb += chain.steps.eq(Mux((asked == 0) | (asked > p.T), p.T, asked))

        # --- start, busy, done, interrupt ---------------------------------------------------
        start_request = Signal(name="start_request")
        start = Signal(name="start_accept")
        start_q = Signal(name="start_q")
        run_end = Signal(name="run_end")
        clear_pending = Signal(name="clear_pending")
        m.d.comb += [start.eq(start_request & chain.ready & ~busy),
                     chain.start.eq(start_q), run_end.eq(busy & chain.done)]
        m.d.sync += start_q.eq(start)
        with m.If(start):
            m.d.sync += [busy.eq(1), ended.eq(0), cycles.eq(0), read_bytes.eq(0),
                         write_bytes.eq(0)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            beat = p.data_width // 8
            with m.If(chain.m_axi_rvalid & chain.m_axi_rready):
                m.d.sync += read_bytes.eq(read_bytes + beat)
            with m.If(chain.m_axi_wvalid & chain.m_axi_wready):
                m.d.sync += write_bytes.eq(write_bytes + beat)
        with m.If(run_end):
            m.d.sync += [busy.eq(0), ended.eq(1)]
        with m.If(clear_pending):
            m.d.sync += pending.eq(0)
        with m.If(run_end):                       # a run ending now wins over a clear
            m.d.sync += pending.eq(1)

        # --- register writes ----------------------------------------------------------------
        wdata = write.data
        with m.Switch(write.word):
            with m.Case(word("CONTROL")):
                m.d.comb += start_request.eq(write.accept & wdata[bit("CONTROL", "START")])
                with m.If(write.accept & write.strobe[0]):
                    m.d.sync += irq_en.eq(wdata[bit("CONTROL", "IRQ_EN")])
                with m.If(start_request & busy):
                    m.d.sync += flags[0].eq(1)
                with m.If(start_request & ~busy & ~chain.ready):
                    m.d.sync += flags[1].eq(1)
            with m.Case(word("STATUS")):
                m.d.comb += clear_pending.eq(write.accept & wdata[bit("STATUS", "IRQ_PENDING")])
            with m.Case(word("ERROR")):
                with m.If(write.accept):
                    m.d.sync += flags.eq(flags & ~wdata[:2])
            for name, reg in storage.items():
                with m.Case(word(name)):
                    with m.If(write.accept):
                        for i in range(4):
                            with m.If(write.strobe[i]):
                                m.d.sync += reg[8 * i:8 * i + 8].eq(write.raw[8 * i:8 * i + 8])
            with m.Case(*[word(r.name) for r in rm.registers if r.access == "RO"]):
                pass                                  # writes ignored, OKAY
            with m.Default():
                m.d.comb += write.error.eq(1)

        # --- register reads -----------------------------------------------------------------
        values = {
            "CONTROL": Cat(Const(0, 1), irq_en),
            "STATUS": Cat(chain.ready, busy, ended, pending),
            "ERROR": Cat(flags, chain.error),
            "CYCLES": cycles, "READ_BYTES": read_bytes, "WRITE_BYTES": write_bytes,
            **storage,
        }
        with m.Switch(read.word):
            for reg in rm.registers:
                with m.Case(word(reg.name)):
                    m.d.comb += read.data.eq(values.get(reg.name, reg.reset))
            with m.Default():
                m.d.comb += read.error.eq(1)
        return m
