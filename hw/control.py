"""SoC-facing shell of the network: an AXI4-Lite register slave around the shared network.

:class:`NetworkCore` is what an SoC instantiates: one AXI4-Lite slave port (32-bit data, byte
addresses; Verilog ports ``s_axil_awaddr`` ... ``s_axil_rready``, the names cocotbext-axi's
``AxiLiteBus.from_prefix(dut, "s_axil")`` and vendor interface inference expect), an ``irq`` line
and, with ``weights="external"``, the network's weight read port. Behind the port:

* :class:`ControlBlock`: the AXI4-Lite protocol (independent valid/ready on AW, W, B, AR and R;
  AW and W in either order or together; B and R held until taken) and the registers, driving the
  network's bare ports (:func:`hw.shared.network_signature`);
* :class:`hw.shared.SharedNetwork`, unchanged.

The register map is Python data, :func:`register_map` (name, offset, access, reset, fields,
description of every register): the hardware decodes the offsets and bits it gives, and
``rtl_gen`` writes the C header, the JSON map and ``docs/control.md``'s table from the same object,
so there is one source of truth. :meth:`RegisterMap.decode` is the reference address decoder (which
register, or unmapped: SLVERR).

With ``weights="axi"`` the network's AXI4 read master (``m_axi_``, :mod:`hw.weightfetch`) is a
port of the core too and WEIGHT_BASE tells it where the weight image lies. Not here (see
``docs/control.md``): input, output, spike maps, streams and membranes over AXI4; the INPUT_BASE,
OUTPUT_BASE and SCRATCH_BASE registers are plain storage reserved for that and do nothing today.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi_io import AxiIoMover, EventPlayer, axi4_write_ports
from hw.shared import SharedNetwork, network_signature
from hw.weightfetch import AXI_PREFIX

__all__ = [
    "ID_VALUE", "OKAY", "SLVERR", "AXIL_PREFIX",
    "CoreParameters", "Field", "Register", "RegisterMap", "register_map", "core_parameters",
    "axi4_lite_signature", "axi_lite_write_channel", "axi_lite_read_channel", "LiteWrite",
    "LiteRead", "ControlBlock", "NetworkCore",
]

#: AXI response codes (AXI4 spec, ``xRESP``).
OKAY = 0b00
SLVERR = 0b10

#: ID register: ``'S' 'D'`` (sdt) in bits 31:16, register-map version 5 in bits 15:0 (2: AXI_WEIGHTS,
#: WEIGHT_BYTES and ERROR.AXI_READ; 3: TIME_STEPS, T chosen per run; 4: CONTROL.DMA, the input
#: and logits over the AXI4 master, ERROR.AXI_IO; 5: CONTROL.DMA for event models too).
ID_VALUE = 0x5344_0005

#: Prefix of the AXI4-Lite ports in the Verilog (``s_axil_awaddr`` ...).
AXIL_PREFIX = "s_axil"

#: Byte offset of the logit array (one word per class; at most :data:`MAX_CLASSES`).
LOGIT_OFFSET = 0x1000
MAX_CLASSES = 1024
#: Lowest byte offset of the pixel input window (pixel models); it grows to a power of two.
INPUT_WINDOW_MIN = 0x2000

#: Access of a register (a field may also be ``W1C``: a written 1 clears it).
ACCESS = ("RO", "RW", "WO", "R/W1C")


@dataclass(frozen=True)
class CoreParameters:
    """What the register map depends on (all of it visible to software through the map).

    ``input_words``: pixel codes a run reads (``C * H * W``, pixel models) or event beats a time
    step takes (``H * W``, event models); ``input_bits``: bits of a pixel code, or of an event
    beat (the channels).
    """

    classes: int
    T: int
    lanes: int
    input_words: int
    input_bits: int
    logit_bits: int
    events: bool
    external_weights: bool
    #: The weights come from external memory through the core's AXI4 read master
    #: (``weights="axi"``): WEIGHT_BASE is live, WEIGHT_BYTES and ERROR.AXI_READ exist.
    axi_weights: bool = False

    @property
    def axi_io(self) -> bool:
        """A core with the AXI4 master: CONTROL.DMA moves its input (pixel codes, or a run's
        event beats) and logits over it (:class:`hw.axi_io.AxiIoMover`); INPUT_BASE and
        OUTPUT_BASE are live."""
        return self.axi_weights


@dataclass(frozen=True)
class Field:
    """Bits ``bit .. bit + width - 1`` of a register."""

    name: str
    bit: int
    width: int
    access: str
    description: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.bit


@dataclass(frozen=True)
class Register:
    """One 32-bit register, or an array of ``count`` words ``stride`` bytes apart.

    ``access``: ``RO`` (writes ignored, OKAY), ``RW``, ``WO`` (reads return 0) or ``R/W1C``
    (readable; a written 1 clears a ``W1C`` field's bit). Fields carry their own access.
    """

    name: str
    offset: int
    access: str
    reset: int
    description: str
    fields: tuple = ()
    count: int = 1
    stride: int = 4

    def __post_init__(self):
        for access in (self.access, *(f.access for f in self.fields)):
            if access not in ACCESS + ("W1C",):
                raise ValueError(f"register {self.name}: unknown access {access!r}")

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    def address(self, index: int = 0) -> int:
        """Byte offset of word ``index`` of the register."""
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}[{index}]: the register has {self.count} word(s)")
        return self.offset + index * self.stride


@dataclass(frozen=True)
class RegisterMap:
    """The whole map: the design's parameters (a dataclass: :class:`CoreParameters` for the
    network core, :class:`hw.bandcore.BandCoreParameters` for the band core), the registers by
    ascending offset, and the width of the AXI4-Lite byte address
    (``s_axil_awaddr``/``s_axil_araddr``)."""

    parameters: object
    registers: tuple
    address_width: int
    data_width: int = 32

    def __getitem__(self, name: str) -> Register:
        for register in self.registers:
            if register.name == name:
                return register
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(register.name == name for register in self.registers)

    def decode(self, address: int):
        """Reference decoder: ``(register, index)`` for a byte address, or None (unmapped,
        SLVERR). Bits 1:0 (the byte within the word) are ignored; addresses wrap at
        ``address_width`` bits, as the port truncates them."""
        word = (address % (1 << self.address_width)) & ~3
        for register in self.registers:
            offset = word - register.offset
            if 0 <= offset < register.count * register.stride and offset % register.stride == 0:
                return register, offset // register.stride
        return None

    # -- serialisation (the JSON map that rtl_gen writes) ------------------------------------
    FORMAT = 1

    def as_dict(self) -> dict:
        return {"format": self.FORMAT, "data_width": self.data_width,
                "address_width": self.address_width, "parameters": asdict(self.parameters),
                "registers": [{**asdict(r), "fields": [asdict(f) for f in r.fields]}
                              for r in self.registers]}

    @classmethod
    def from_dict(cls, values: dict, parameters: type = None) -> "RegisterMap":
        """The map :meth:`as_dict` gave; ``parameters``: the dataclass of its design
        parameters (default :class:`CoreParameters`, the network core's)."""
        if values.get("format") != cls.FORMAT:
            raise ValueError(f"register map format {values.get('format')!r}; "
                             f"expected {cls.FORMAT}")
        registers = tuple(
            Register(**{**r, "fields": tuple(Field(**f) for f in r["fields"])})
            for r in values["registers"])
        return cls((parameters or CoreParameters)(**values["parameters"]), registers,
                   values["address_width"], values["data_width"])

    def markdown(self) -> str:
        """The map as a Markdown table (``docs/control.md`` holds it for the documented
        example)."""
        rows = ["| offset | name | access | reset | fields | description |",
                "|---|---|---|---|---|---|"]
        for r in self.registers:
            offset = f"`0x{r.offset:04X}`"
            if r.count > 1:
                offset += f" + 4 n (n < {r.count})"
            bits = "; ".join(
                f"`{f.name}` [{f.bit + f.width - 1}:{f.bit}] {f.access}" if f.width > 1 else
                f"`{f.name}` [{f.bit}] {f.access}" for f in r.fields) or "-"
            rows.append(f"| {offset} | `{r.name}` | {r.access} | `0x{r.reset:08X}` | {bits} | "
                        f"{r.description} |")
        return "\n".join(rows) + "\n"


def _pow2_at_least(value: int) -> int:
    return 1 << max(0, value - 1).bit_length()


def register_map(parameters: CoreParameters) -> RegisterMap:
    """Return the register map of a core (reference for :class:`ControlBlock`, the C header,
    the JSON map and the docs).

    Raises ``ValueError`` for a design the map cannot describe (more than 1024 classes, logits
    wider than 32 bits).
    """
    p = parameters
    if not 1 <= p.classes <= MAX_CLASSES:
        raise ValueError(f"{p.classes} classes: the register map holds 1..{MAX_CLASSES} logits")
    if not 1 <= p.logit_bits <= 32:
        raise ValueError(f"{p.logit_bits}-bit logits do not fit a 32-bit register")
    F = Field
    regs = [
        Register("ID", 0x000, "RO", ID_VALUE,
                 "Identification: 0x5344 ('SD') in bits 31:16, register-map version in 15:0.",
                 (F("MAGIC", 16, 16, "RO", "0x5344"), F("VERSION", 0, 16, "RO", "map version"))),
        Register("FEATURES", 0x004, "RO",
                 int(p.events) | int(p.external_weights) << 1 | int(p.axi_weights) << 2,
                 "What this design point is built with.",
                 (F("EVENTS", 0, 1, "RO", "1: event input (EVENT register), "
                                          "0: pixel input (INPUT window)"),
                  F("EXTERNAL_WEIGHTS", 1, 1, "RO", "1: the weight memory is outside the core "
                                                    "(weight_addr/weight_en/weight_data port)"),
                  F("AXI_WEIGHTS", 2, 1, "RO", "1: the weights are read from external memory "
                                               "at WEIGHT_BASE through the m_axi_ port"))),
        Register("CLASSES", 0x008, "RO", p.classes, "Number of classes (LOGIT words)."),
        Register("LANES", 0x00C, "RO", p.lanes, "Lanes of the engine (output channels a cycle)."),
        Register("T", 0x010, "RO", p.T, "Most time steps of a run (the design's; TIME_STEPS "
                                        "chooses a run's)."),
        Register("INPUT_WORDS", 0x014, "RO", p.input_words,
                 "Event beats per time step (H * W)." if p.events else
                 "Pixel words of one input (C * H * W)."),
        Register("LOGIT_BITS", 0x018, "RO", p.logit_bits,
                 "Signed width of a logit before its sign extension to 32 bits."),
        Register("TIME_STEPS", 0x01C, "RW", 0,
                 "Time steps of the next run, 1 to T (0, or more than T: T), sampled at START; "
                 "hold it while BUSY. A run of fewer time steps equals a design generated for "
                 "them (logits summed over the run's time steps)."),
        Register("CONTROL", 0x020, "RW", 0, "Start a run; enable the interrupt.",
                 (F("START", 0, 1, "WO", "write 1: start a run if READY and not BUSY "
                                         "(else ignored and flagged in ERROR); reads 0"),
                  F("IRQ_EN", 1, 1, "RW", "1: irq = STATUS.IRQ_PENDING"),
                  *((F("DMA", 2, 1, "RW", "1: a START first reads the input (" +
                       ("the run's event beats, a byte each, TIME_STEPS time steps of "
                        "INPUT_WORDS" if p.events else "a byte a pixel code") +
                       ") from INPUT_BASE, and the run ends after the "
                       "logits (a 32-bit word each) are written to "
                       "OUTPUT_BASE, both over the m_axi_ port"),)
                    if p.axi_io else ()))),
        Register("STATUS", 0x024, "R/W1C", 0, "Run state and the interrupt.",
                 (F("READY", 0, 1, "RO", "the engine has cleared its bank after reset: START "
                                         "is accepted"),
                  F("BUSY", 1, 1, "RO", "a run is in progress (from an accepted START to the "
                                        "end of the run)"),
                  F("DONE", 2, 1, "RO", "the last run has ended (cleared by the next START; "
                                        "with DMA, once its logits are written)"),
                  F("IRQ_PENDING", 3, 1, "W1C", "set when a run ends; write 1 to clear"))),
        Register("ERROR", 0x028, "R/W1C", 0, "Sticky error flags; write 1 to clear.",
                 (F("START_BUSY", 0, 1, "W1C", "START written while BUSY (ignored)"),
                  F("START_NOT_READY", 1, 1, "W1C", "START written while not READY (ignored)"),
                  *((F("EVENT_IDLE", 2, 1, "W1C",
                       "EVENT written while no run could take it (dropped, SLVERR)"),)
                    if p.events else
                    (F("INPUT_BUSY", 2, 1, "W1C",
                       "INPUT written while BUSY (dropped, SLVERR)"),)),
                  *((F("AXI_READ", 3, 1, "RO", "a weight read of the last run was answered "
                                               "SLVERR or DECERR (cleared by START)"),)
                    if p.axi_weights else ()),
                  *((F("AXI_IO", 4, 1, "RO", "the last run's input read or logit write (DMA) "
                                             "was answered SLVERR or DECERR (cleared by "
                                             "START)"),)
                    if p.axi_io else ()))),
        Register("CYCLES", 0x02C, "RO", 0,
                 "Cycles since the last accepted START (frozen at the end of the run)." +
                 (" With DMA, the network's cycles: from the end of the input read to the "
                  "start of the logit write." if p.axi_io else "")),
        Register("STEP", 0x030, "RO", 0, "Program step now running (for observers)."),
        Register("TIME_STEP", 0x034, "RO", 0, "Time step now running (for observers)."),
    ]
    if p.events:
        regs.append(Register(
            "EVENT", 0x038, "WO", 0,
            "One event beat: bit c = channel c fired at the next pixel (row-major, H * W beats "
            "a time step, T time steps a run). Write after START; the write response waits "
            "until the network takes the beat." +
            (" Not during a CONTROL.DMA run, whose beats come from INPUT_BASE (the write waits "
             "for the run's end, then answers SLVERR)." if p.axi_io else ""),
            (F("CHANNELS", 0, p.input_bits, "WO", "bit c: channel c fired (higher bits of "
                                                  "the word are ignored)"),)))
    for index, name in enumerate(("WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE")):
        if name == "WEIGHT_BASE" and p.axi_weights:
            regs.append(Register(
                name, 0x040, "RW", 0,
                "Byte address of the weight image (make rtl's .weights.bin, a multiple of 64) "
                "in the memory behind the m_axi_ port; hold it while BUSY."))
            continue
        if name in ("INPUT_BASE", "OUTPUT_BASE") and p.axi_io:
            what = ("the logits (a little-endian sign-extended 32-bit word a class)"
                    if name == "OUTPUT_BASE" else
                    "the run's event beats (a byte a beat, bit c = channel c; time step t's "
                    "beat n, pixel n in row-major order, at INPUT_BASE + t * INPUT_WORDS + n)"
                    if p.events else
                    "the input image (a byte a pixel code, pixel (c * H + y) * W + x at "
                    "INPUT_BASE + n)")
            regs.append(Register(
                name, 0x040 + 4 * index, "RW", 0,
                f"Byte address of {what} in the memory behind the m_axi_ port, used by a START "
                "with CONTROL.DMA; a multiple of the bus width in bytes (lower bits ignored); "
                "hold it while BUSY."))
            continue
        regs.append(Register(
            name, 0x040 + 4 * index, "RW", 0,
            ("Reserved for the AXI4 memory master (the scratch region is not used yet): "
             "plain storage, no effect." if p.axi_io else
             "Reserved for the AXI4 memory master (input, output and scratch regions are not "
             "read over it yet): plain storage, no effect.")))
    if p.axi_weights:
        regs.append(Register(
            "WEIGHT_BYTES", 0x050, "RO", 0,
            "Bytes read over the m_axi_ port since the last START (T times the weight image "
            "at the end of a run: every weight once per time step)."))
    regs.append(Register("LOGIT", LOGIT_OFFSET, "RO", 0,
                         "Logit of class n (summed over T), sign-extended to 32 bits.",
                         count=p.classes))
    address_width = (2 * LOGIT_OFFSET - 1).bit_length()    # 0x0000 .. 0x1FFF
    if not p.events:
        window = max(INPUT_WINDOW_MIN, _pow2_at_least(4 * p.input_words))
        regs.append(Register(
            "INPUT", window, "WO", 0,
            "Pixel word n (n = (c * H + y) * W + x). Write while not BUSY; reads return 0.",
            (F("CODE", 0, p.input_bits, "WO", "the unsigned pixel code (higher bits of the word "
                                              "are ignored)"),),
            count=p.input_words))
        address_width = window.bit_length()                 # window .. 2 * window - 1
    return RegisterMap(p, tuple(regs), address_width)


def core_parameters(network: SharedNetwork) -> CoreParameters:
    """Return the :class:`CoreParameters` of a shared network."""
    plan = network.plan
    cfg = plan.net.cfg
    return CoreParameters(
        classes=network.logits.shape().length, T=plan.T, lanes=plan.lanes,
        input_words=cfg.img_size ** 2 if plan.events else plan.pixel_words,
        input_bits=cfg.in_channels if plan.events else plan.net.pixel.bits,
        logit_bits=plan.logit_bits, events=bool(plan.events),
        external_weights=hasattr(network, "weight_addr"),
        axi_weights=network.weights_mode == "axi")


def axi4_lite_signature(address_width: int) -> wiring.Signature:
    """AXI4-Lite, 32-bit data, from the master's side (a slave's port is ``In`` of it).

    ``awprot``/``arprot`` are present (a slave may ignore them, as :class:`ControlBlock` does) so
    that interconnects and verification IP find every AXI4-Lite signal.
    """
    return wiring.Signature({
        "awaddr": Out(address_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(address_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


@dataclass(frozen=True)
class LiteWrite:
    """The register side of :func:`axi_lite_write_channel`: ``offered`` (a whole write is held
    and no B response waits), ``accept`` (it is taken this cycle: ``offered & ready``),
    ``ready`` (comb, 1 unless driven: the register side can take it), ``error`` (comb: answer
    SLVERR), ``word`` (the register word, address bits above 1:0), ``raw``/``strobe`` (the data
    and byte strobes as written), ``data`` (bytes whose strobe is 0 read as 0)."""

    offered: Signal
    accept: Signal
    ready: Signal
    error: Signal
    word: object
    raw: Signal
    strobe: Signal
    data: Signal


@dataclass(frozen=True)
class LiteRead:
    """The register side of :func:`axi_lite_read_channel`: ``word`` (the held read's register
    word), ``data`` and ``error`` (comb: its value, and SLVERR), sampled into R the cycle after
    the read is taken."""

    word: object
    data: Signal
    error: Signal


def axi_lite_write_channel(m: Module, bus, address_width: int) -> LiteWrite:
    """Add an AXI4-Lite slave's write side to ``m``: AW and W are each taken (``awready``,
    ``wready``) into a holding register when it is empty, in any order or in the same cycle;
    once both are held and no B response waits the write is offered to the registers, and when
    they accept it its response is held in ``bvalid``/``bresp`` until ``bready``."""
    aw_held = Signal(name="aw_held")
    aw_addr = Signal(address_width, name="aw_addr")
    w_held = Signal(name="w_held")
    w_data = Signal(32, name="w_data")
    w_strb = Signal(4, name="w_strb")
    m.d.comb += [bus.awready.eq(~aw_held), bus.wready.eq(~w_held)]
    with m.If(bus.awvalid & ~aw_held):
        m.d.sync += [aw_held.eq(1), aw_addr.eq(bus.awaddr)]
    with m.If(bus.wvalid & ~w_held):
        m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
    offered = Signal(name="write_offered")
    accept = Signal(name="write_accept")
    write_error = Signal(name="write_error")
    write_ready = Signal(name="write_ready", init=1)
    m.d.comb += [offered.eq(aw_held & w_held & ~bus.bvalid),
                 accept.eq(offered & write_ready)]
    with m.If(accept):
        m.d.sync += [aw_held.eq(0), w_held.eq(0), bus.bvalid.eq(1),
                     bus.bresp.eq(Mux(write_error, SLVERR, OKAY))]
    with m.If(bus.bvalid & bus.bready):
        m.d.sync += bus.bvalid.eq(0)
    strobe = Cat(w_strb[i].replicate(8) for i in range(4))
    wdata = Signal(32, name="w_strobed")
    m.d.comb += wdata.eq(w_data & strobe)
    return LiteWrite(offered, accept, write_ready, write_error, aw_addr[2:], w_data, w_strb,
                     wdata)


def axi_lite_read_channel(m: Module, bus, address_width: int) -> LiteRead:
    """Add an AXI4-Lite slave's read side to ``m``: one read taken into a holding register
    (``arready`` while it is empty) and answered from :attr:`LiteRead.data` in the next cycle,
    ``rvalid``/``rdata``/``rresp`` held until ``rready``."""
    ar_held = Signal(name="ar_held")
    ar_addr = Signal(address_width, name="ar_addr")
    read_data = Signal(32, name="read_data")
    read_error = Signal(name="read_error")
    m.d.comb += bus.arready.eq(~ar_held)
    with m.If(bus.arvalid & ~ar_held):
        m.d.sync += [ar_held.eq(1), ar_addr.eq(bus.araddr)]
    with m.If(ar_held & ~bus.rvalid):
        m.d.sync += [ar_held.eq(0), bus.rvalid.eq(1), bus.rdata.eq(read_data),
                     bus.rresp.eq(Mux(read_error, SLVERR, OKAY))]
    with m.If(bus.rvalid & bus.rready):
        m.d.sync += bus.rvalid.eq(0)
    return LiteRead(ar_addr[2:], read_data, read_error)


class ControlBlock(wiring.Component):
    """AXI4-Lite slave and the registers of :func:`register_map`, driving a network's ports.

    Parameters
    ----------
    regmap : RegisterMap
    network : wiring.Signature
        The network's own ports (:func:`hw.shared.network_signature`); the block drives their
        ``In`` members and reads their ``Out`` members.

    Members
    -------
    bus : In(axi4_lite_signature(regmap.address_width))
        The slave port. One write and one read in flight: AW and W are each taken (``awready``,
        ``wready``) into a holding register when it is empty, in any order or in the same cycle;
        the write is done once both are held and no B response waits, and its response is held
        in ``bvalid``/``bresp`` until ``bready``. A read is taken into a holding register and
        answered from registers in the next cycle, ``rvalid``/``rdata``/``rresp`` held until
        ``rready``. Unmapped addresses answer SLVERR (writes do nothing, reads return 0). Byte
        strobes: a byte whose ``wstrb`` bit is 0 is written as 0, except that the RW storage
        registers keep it. ``awprot``/``arprot`` are ignored; address bits 1:0 too.
    irq : Out(1)
        ``STATUS.IRQ_PENDING & CONTROL.IRQ_EN``.
    io_clear, io_read_start, io_write_start : Out(1); io_read_done, io_write_done, io_error :
    In(1); input_base, output_base : Out(32)
        Only where ``regmap.parameters.axi_io``: the :class:`hw.axi_io.AxiIoMover`'s controls.
        A START with CONTROL.DMA pulses ``io_clear`` in the accepting cycle and
        ``io_read_start`` a cycle later; ``net.start`` pulses the cycle after ``io_read_done``;
        the network's end pulses ``io_write_start`` a cycle later, and the run ends (BUSY
        falls, IRQ_PENDING rises, DONE reads 1) at ``io_write_done``. ``io_active`` (Out)
        is high while a CONTROL.DMA run is BUSY (an event model's core feeds the network's
        event beats from the mover's buffer then).
    net : In(network)
        The network's ports, seen from the other side. ``net.start`` pulses one cycle after the
        write that STARTs a run is accepted (a register; BUSY is already set in that cycle).

    Registers: :func:`register_map` (``docs/control.md``).
    """

    def __init__(self, regmap: RegisterMap, network: wiring.Signature):
        self.regmap = regmap
        self._network = network
        events = "events" in network.members
        if events != regmap.parameters.events:
            raise ValueError("the register map and the network disagree on event input")
        ports = {"bus": In(axi4_lite_signature(regmap.address_width)), "irq": Out(1),
                 "net": In(network), "weight_base": Out(32)}
        if regmap.parameters.axi_weights:
            ports.update(weight_error=In(1), weight_bytes=In(32))
        if regmap.parameters.axi_io:
            ports.update(io_clear=Out(1), io_read_start=Out(1), io_read_done=In(1),
                         io_write_start=Out(1), io_write_done=In(1), io_error=In(1),
                         io_active=Out(1),
                         input_base=Out(32), output_base=Out(32))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        rm, p = self.regmap, self.regmap.parameters
        bus, net = self.bus, self.net
        aw = rm.address_width
        implemented = {"ID", "FEATURES", "CLASSES", "LANES", "T", "TIME_STEPS", "INPUT_WORDS",
                       "LOGIT_BITS",
                       "CONTROL", "STATUS", "ERROR", "CYCLES", "STEP", "TIME_STEP", "EVENT",
                       "WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE", "LOGIT",
                       "INPUT", "WEIGHT_BYTES"}
        unknown = [r.name for r in rm.registers if r.name not in implemented]
        if unknown:
            raise ValueError(f"registers {unknown} of the map have no hardware")

        def word(name, index=0):
            return rm[name].address(index) >> 2

        def bit(register, name):
            return rm[register].field(name).bit

        # --- state ------------------------------------------------------------------------
        busy = Signal(name="busy")
        pending = Signal(name="irq_pending")
        irq_en = Signal(name="irq_en")
        error = Signal(32, name="error_flags")
        done_q = Signal(name="done_q")
        dma = Signal(name="dma")                 # CONTROL.DMA
        run_dma = Signal(name="run_dma")         # CONTROL.DMA as the running START found it
        storage = {name: Signal(32, name=name.lower()) for name in
                   ("TIME_STEPS", "WEIGHT_BASE", "INPUT_BASE", "OUTPUT_BASE", "SCRATCH_BASE")}
        asked = storage["TIME_STEPS"]
        m.d.comb += [self.irq.eq(pending & irq_en),
                     self.weight_base.eq(storage["WEIGHT_BASE"]),
                     # more than the port holds: 0 (all T), as the network reads any value > T
                     net.time_steps.eq(Mux(asked > p.T, 0, asked))]

        # --- write channel: AW and W held independently, then one register write -------------
        write = axi_lite_write_channel(m, bus, aw)
        offered, accept = write.offered, write.accept
        write_error, write_ready = write.error, write.ready
        w_data, w_strb, wdata, w_word = write.raw, write.strobe, write.data, write.word

        # --- start, busy, done, interrupt ------------------------------------------------
        start_request = Signal(name="start_request")
        start = Signal(name="start_accept")
        m.d.comb += start.eq(start_request & net.ready & ~busy)
        # The network sees the accepted START a cycle later, from a register: the decode of the
        # AXI4-Lite write stays off the network's enables. BUSY is set in the accepting cycle,
        # so no second START slips in between.
        start_q = Signal(name="start_q")
        m.d.comb += net.start.eq(start_q)
        run_end = Signal(name="run_end")          # the run has ended (BUSY falls)
        clear_pending = Signal(name="clear_pending")
        m.d.sync += done_q.eq(net.done)
        if p.axi_io:
            net_end = Signal(name="net_end")      # the network's done rises
            m.d.comb += net_end.eq(busy & net.done & ~done_q)
            # DMA: read the input, run, write the logits; the run ends at the write's end.
            m.d.comb += [self.input_base.eq(storage["INPUT_BASE"]),
                         self.output_base.eq(storage["OUTPUT_BASE"]),
                         self.io_clear.eq(start),
                         run_end.eq(Mux(run_dma, self.io_write_done, net_end))]
            # A START comes only with a CONTROL write, whose DMA bit it takes (the stored
            # bit changes at the same edge).
            start_dma = wdata[bit("CONTROL", "DMA")]
            m.d.sync += [start_q.eq((start & ~start_dma) | self.io_read_done),
                         self.io_read_start.eq(start & start_dma),
                         self.io_write_start.eq(net_end & run_dma)]
            with m.If(start):
                m.d.sync += run_dma.eq(start_dma)
            m.d.comb += self.io_active.eq(busy & run_dma)
        else:
            m.d.sync += start_q.eq(start)
            m.d.comb += run_end.eq(busy & net.done & ~done_q)   # done rises
        with m.If(start):
            m.d.sync += busy.eq(1)
        with m.If(run_end):
            m.d.sync += busy.eq(0)
        with m.If(clear_pending):
            m.d.sync += pending.eq(0)
        with m.If(run_end):                       # a run ending now wins over a clear
            m.d.sync += pending.eq(1)

        # --- register writes ----------------------------------------------------------------
        if p.events:
            m.d.comb += net.events.payload.eq(wdata)
        else:
            input_reg = rm["INPUT"]
            pixel_bits = len(net.load_data)
            # The window is aligned to its power-of-two length, which holds every pixel word:
            # the word's low bits are the pixel address.
            m.d.comb += [net.load_address.eq(w_word[:len(net.load_address)]),
                         net.load_data.eq(wdata[:pixel_bits])]
        with m.Switch(w_word):
            with m.Case(word("CONTROL")):
                m.d.comb += start_request.eq(accept & wdata[bit("CONTROL", "START")])
                with m.If(accept & w_strb[0]):
                    m.d.sync += irq_en.eq(wdata[bit("CONTROL", "IRQ_EN")])
                    if p.axi_io:
                        m.d.sync += dma.eq(wdata[bit("CONTROL", "DMA")])
                with m.If(start_request & busy):
                    m.d.sync += error[bit("ERROR", "START_BUSY")].eq(1)
                with m.If(start_request & ~busy & ~net.ready):
                    m.d.sync += error[bit("ERROR", "START_NOT_READY")].eq(1)
            with m.Case(word("STATUS")):
                m.d.comb += clear_pending.eq(accept & wdata[bit("STATUS", "IRQ_PENDING")])
            with m.Case(word("ERROR")):
                with m.If(accept):
                    m.d.sync += error.eq(error & ~wdata)
            for name, reg in storage.items():
                with m.Case(word(name)):
                    with m.If(accept):
                        for i in range(4):
                            with m.If(w_strb[i]):
                                m.d.sync += reg[8 * i:8 * i + 8].eq(w_data[8 * i:8 * i + 8])
            read_only = [word(r.name) for r in rm.registers
                         if r.access == "RO" and r.count == 1]
            with m.Case(*read_only):
                pass                                  # writes ignored, OKAY
            if p.events:
                with m.Case(word("EVENT")):
                    # The beat waits for the network (back-pressure through B); with no run in
                    # progress nothing would ever take it: dropped, SLVERR, flagged.
                    m.d.comb += [net.events.valid.eq(offered & busy),
                                 write_ready.eq(net.events.ready | ~busy),
                                 write_error.eq(~busy)]
                    with m.If(accept & ~busy):
                        m.d.sync += error[bit("ERROR", "EVENT_IDLE")].eq(1)
            with m.Default():
                logits = rm["LOGIT"]
                first, last = word("LOGIT"), word("LOGIT", logits.count - 1)
                in_logits = (w_word >= first) & (w_word <= last)
                if p.events:
                    m.d.comb += write_error.eq(~in_logits)
                else:
                    first_in, last_in = word("INPUT"), word("INPUT", input_reg.count - 1)
                    in_input = (w_word >= first_in) & (w_word <= last_in)
                    m.d.comb += write_error.eq(~in_logits & ~(in_input & ~busy))
                    m.d.comb += net.load_enable.eq(accept & in_input & ~busy)
                    with m.If(accept & in_input & busy):
                        m.d.sync += error[bit("ERROR", "INPUT_BUSY")].eq(1)

        # --- read channel: one read held, answered from registers in the next cycle ---------
        read = axi_lite_read_channel(m, bus, aw)
        read_data, read_error, r_word = read.data, read.error, read.word
        error_value = error
        if p.axi_weights:
            error_value = error_value | (self.weight_error << bit("ERROR", "AXI_READ"))
        if p.axi_io:
            error_value = error_value | (self.io_error << bit("ERROR", "AXI_IO"))
        values = {
            "CONTROL": Cat(Const(0, 1), irq_en, dma) if p.axi_io else Cat(Const(0, 1), irq_en),
            # with DMA, DONE waits for the logit write (the network's done rises before it)
            "STATUS": Cat(net.ready, busy, net.done & ~(busy & run_dma) if p.axi_io
                          else net.done, pending),
            "ERROR": error_value,
            **({"WEIGHT_BYTES": self.weight_bytes} if p.axi_weights else {}),
            "CYCLES": net.cycles,
            "STEP": net.step,
            "TIME_STEP": net.time_step,
            **storage,
        }
        with m.Switch(r_word):
            for reg in rm.registers:
                if reg.name in ("LOGIT", "INPUT"):
                    continue
                with m.Case(word(reg.name)):
                    if reg.access == "RO" and reg.name not in values:
                        m.d.comb += read_data.eq(reg.reset)      # constants
                    elif reg.name in values:
                        m.d.comb += read_data.eq(values[reg.name])
                    # write-only (EVENT): reads 0
            for index in range(rm["LOGIT"].count):
                with m.Case(word("LOGIT", index)):
                    m.d.comb += read_data.eq(net.logits[index])  # signed: sign-extended
            with m.Default():
                if p.events:
                    m.d.comb += read_error.eq(1)
                else:
                    first_in, last_in = word("INPUT"), word("INPUT", rm["INPUT"].count - 1)
                    m.d.comb += read_error.eq(~((r_word >= first_in) & (r_word <= last_in)))
        return m


def axi_lite_ports(address_width: int, prefix: str = AXIL_PREFIX) -> dict:
    """Flat slave ports ``{prefix}_awaddr`` ... (the flipped :func:`axi4_lite_signature`), so
    the Verilog names are the conventional ones, not Amaranth's ``bus__awaddr``."""
    return {f"{prefix}_{name}": In(member.shape) if member.flow == Out else Out(member.shape)
            for name, member in axi4_lite_signature(address_width).members.items()}


class NetworkCore(wiring.Component):
    """A :class:`hw.shared.SharedNetwork` behind an AXI4-Lite register slave, with an interrupt.

    Parameters
    ----------
    net : quant.quantize.IntNet
    lanes, weights
        As :class:`hw.shared.SharedNetwork`.

    Members
    -------
    s_axil_awaddr, s_axil_awprot, s_axil_awvalid, s_axil_awready, s_axil_wdata, s_axil_wstrb,
    s_axil_wvalid, s_axil_wready, s_axil_bresp, s_axil_bvalid, s_axil_bready, s_axil_araddr,
    s_axil_arprot, s_axil_arvalid, s_axil_arready, s_axil_rdata, s_axil_rresp, s_axil_rvalid,
    s_axil_rready
        The AXI4-Lite slave port (:class:`ControlBlock`'s ``bus``); addresses are
        ``regmap.address_width`` bits.
    irq : Out(1)
        Level interrupt: a run has ended (``STATUS.IRQ_PENDING``) and ``CONTROL.IRQ_EN`` is set.
    weight_addr, weight_en : Out; weight_data : In
        Only with ``weights="external"``: the network's weight read port, passed through.
    m_axi_ar*, m_axi_r*
        Only with ``weights="axi"``: the network's AXI4 read master
        (:func:`hw.weightfetch.axi4_read_ports`), passed through; it reads the weight image at
        WEIGHT_BASE. A pixel model's core shares it with its :class:`hw.axi_io.AxiIoMover`,
        which owns AR and R while it reads the input of a DMA run (before the network starts).
    m_axi_aw*, m_axi_w*, m_axi_b*
        Only with ``weights="axi"`` and a pixel model: the mover's AXI4 write master
        (:func:`hw.axi_io.axi4_write_ports`), which writes a DMA run's logits at OUTPUT_BASE.

    Clock and reset: Amaranth's ``sync`` domain (``clk``, ``rst`` active high, synchronous);
    an AXI ``ARESETn`` is its inverse.

    Registers (:func:`register_map`; byte offsets, 32-bit words; ``docs/control.md``):

    ======== =============== ======= ================================================
    offset   name            access  meaning
    ======== =============== ======= ================================================
    0x000    ID              RO      0x5344_0004: 'SD', map version 4
    0x004    FEATURES        RO      bit0 EVENTS (event input), bit1 EXTERNAL_WEIGHTS,
                                     bit2 AXI_WEIGHTS
    0x008    CLASSES         RO      number of classes
    0x00C    LANES           RO      engine lanes
    0x010    T               RO      most time steps of a run
    0x014    INPUT_WORDS     RO      pixel words (C*H*W) or event beats a time step (H*W)
    0x018    LOGIT_BITS      RO      signed logit width before sign extension
    0x01C    TIME_STEPS      RW      time steps of the next run (0 or > T: T), read at START
    0x020    CONTROL         RW      bit0 START (write 1; reads 0), bit1 IRQ_EN, bit2 DMA
                                     (AXI weights, pixel model: input and logits over m_axi_)
    0x024    STATUS          R/W1C   bit0 READY, bit1 BUSY, bit2 DONE, bit3 IRQ_PENDING (W1C)
    0x028    ERROR           R/W1C   bit0 START_BUSY, bit1 START_NOT_READY, bit2 INPUT_BUSY
                                     (pixel) / EVENT_IDLE (event); all W1C; bit3 AXI_READ
                                     (AXI weights only, RO: a weight read answered an error);
                                     bit4 AXI_IO (DMA: an input read or logit write did)
    0x02C    CYCLES          RO      cycles of the last run (running count while BUSY)
    0x030    STEP            RO      program step running
    0x034    TIME_STEP       RO      time step running
    0x038    EVENT           WO      event models only: one beat, B waits until it is taken
    0x040    WEIGHT_BASE     RW      AXI weights: byte address of the weight image; else
                                     reserved (no effect)
    0x044    INPUT_BASE      RW      DMA: byte address of the input (a byte a pixel code); else
                                     reserved (no effect)
    0x048    OUTPUT_BASE     RW      DMA: byte address of the logits (32 bits each); else
                                     reserved (no effect)
    0x04C    SCRATCH_BASE    RW      reserved (no effect yet)
    0x050    WEIGHT_BYTES    RO      AXI weights only: bytes read over m_axi_ since START
    0x1000   LOGIT[n]        RO      class n's logit, sign-extended (n < CLASSES)
    2^k      INPUT[n]        WO      pixel models only: pixel word n (window at the power of
                                     two >= max(0x2000, 4 * INPUT_WORDS))
    ======== =============== ======= ================================================

    Anything else answers SLVERR.
    """

    def __init__(self, net, *, lanes: int = 16, weights: str = "internal", **network):
        self.network = SharedNetwork(net, lanes=lanes, weights=weights, **network)
        plan = self.network.plan
        self.network_ports = wiring.Signature(network_signature(
            net, plan.steps, plan.pixel_words, plan.logit_bits))
        self.regmap = register_map(core_parameters(self.network))
        ports = {**axi_lite_ports(self.regmap.address_width), "irq": Out(1)}
        if weights == "external":
            for name in ("weight_addr", "weight_en", "weight_data"):
                ports[name] = self.network.signature.members[name]
        self._axi = [name for name in self.network.signature.members
                     if name.startswith(AXI_PREFIX + "_")]
        for name in self._axi:
            ports[name] = self.network.signature.members[name]
        self.mover = self.player = None
        if self.regmap.parameters.axi_io:
            members = self.network.signature.members
            rp = self.regmap.parameters
            # event models: a run's T time steps of beats, read before the run into the
            # player's buffer (hw.axi_io.EventPlayer), which feeds the events port
            self.mover = AxiIoMover(
                input_words=rp.input_words, pixel_bits=rp.input_bits,
                frames=plan.T if rp.events else 1,
                classes=rp.classes, logit_bits=plan.logit_bits,
                address_width=Shape.cast(members[f"{AXI_PREFIX}_araddr"].shape).width,
                data_width=Shape.cast(members[f"{AXI_PREFIX}_rdata"].shape).width)
            if rp.events:
                self.player = EventPlayer(beats=self.mover.input_words, bits=rp.input_bits)
            ports.update(axi4_write_ports(self.mover.address_width, self.mover.data_width))
        super().__init__(ports)

    @property
    def ring(self):
        """``weights="axi"``: the network's :class:`hw.weightfetch.WeightRing`, else None."""
        return self.network.ring

    @property
    def T(self) -> int:
        return self.network.T

    @property
    def lanes(self) -> int:
        return self.network.lanes

    @property
    def weight_words(self) -> list[int]:
        return self.network.weight_words

    @property
    def weight_width(self) -> int:
        return self.network.weight_width

    def memory_report(self) -> dict:
        return self.network.memory_report()

    def padding_report(self) -> dict:
        return self.network.padding_report()

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = network = self.network
        m.submodules.control = control = ControlBlock(self.regmap, self.network_ports)
        for name, member in axi4_lite_signature(self.regmap.address_width).members.items():
            port, inner = getattr(self, f"{AXIL_PREFIX}_{name}"), getattr(control.bus, name)
            m.d.comb += inner.eq(port) if member.flow == Out else port.eq(inner)
        m.d.comb += self.irq.eq(control.irq)
        for path, member, theirs in self.network_ports.flatten(network):
            ours = control.net
            for part in path:
                ours = getattr(ours, part)
            if self.player is not None and path[0] == "events":
                # a DMA run's beats come from the player (an EVENT write waits meanwhile)
                active, played = self.player.active, getattr(self.player.o, path[1])
                if path[1] == "ready":
                    m.d.comb += [ours.eq(theirs & ~active), played.eq(theirs & active)]
                else:
                    m.d.comb += theirs.eq(Mux(active, played, ours))
                continue
            if self.mover is not None and path[0] in ("load_address", "load_data",
                                                      "load_enable"):
                # the pixel port: the mover's while it reads (the bus's writes need ~BUSY)
                mine = getattr(self.mover, path[0])
                m.d.comb += theirs.eq(ours | mine if path[0] == "load_enable"
                                      else Mux(self.mover.reading, mine, ours))
                continue
            m.d.comb += theirs.eq(ours) if member.flow == In else ours.eq(theirs)
        if hasattr(self, "weight_addr"):
            m.d.comb += [self.weight_addr.eq(network.weight_addr),
                         self.weight_en.eq(network.weight_en),
                         network.weight_data.eq(self.weight_data)]
        if self.mover is not None:
            # The mover owns AR and R while it reads the input (``reading``, a register),
            # before the network starts: the weight fetcher has nothing in flight then.
            m.submodules.mover = mover = self.mover
            reading = mover.reading
            for name in self._axi:
                outer, inner = getattr(self, name), getattr(network, name)
                theirs = getattr(mover, name)
                if self.signature.members[name].flow == Out:
                    m.d.comb += outer.eq(Mux(reading, theirs, inner))
                elif name.endswith(("_arready", "_rvalid")):
                    m.d.comb += [inner.eq(outer & ~reading), theirs.eq(outer & reading)]
                else:
                    m.d.comb += [inner.eq(outer), theirs.eq(outer)]
            for name in axi4_write_ports(1, 32):
                outer, theirs = getattr(self, name), getattr(mover, name)
                flow = self.signature.members[name].flow
                m.d.comb += outer.eq(theirs) if flow == Out else theirs.eq(outer)
            if self.player is not None:
                m.submodules.player = player = self.player
                m.d.comb += [player.load_address.eq(mover.load_address),
                             player.load_data.eq(mover.load_data),
                             player.load_enable.eq(mover.load_enable),
                             player.rewind.eq(mover.read_done),
                             player.active.eq(control.io_active & ~reading)]
                if mover.frames > 1:            # the run's time steps (0: all T)
                    m.d.comb += mover.read_frames.eq(control.net.time_steps)
            m.d.comb += [mover.clear.eq(control.io_clear),
                         mover.read_start.eq(control.io_read_start),
                         mover.input_base.eq(control.input_base),
                         mover.output_base.eq(control.output_base),
                         mover.write_start.eq(control.io_write_start),
                         mover.logits.eq(network.logits),
                         control.io_read_done.eq(mover.read_done),
                         control.io_write_done.eq(mover.write_done),
                         control.io_error.eq(mover.error)]
        elif self._axi:
            for name in self._axi:
                outer, inner = getattr(self, name), getattr(network, name)
                flow = self.signature.members[name].flow
                m.d.comb += outer.eq(inner) if flow == Out else inner.eq(outer)
        if self._axi:
            m.d.comb += [network.weight_address.eq(control.weight_base),
                         control.weight_error.eq(network.weight_error),
                         control.weight_bytes.eq(network.weight_bytes)]
        return m
