"""A run's input and output over AXI4: pixel codes read from external memory, logits written back.

:class:`AxiIoMover` is the part of the SoC core (:class:`hw.control.NetworkCore` with
``weights="axi"``) that lets a driver leave the input image and the logits in memory instead of
moving them word by word over AXI4-Lite. With ``CONTROL.DMA`` set, a START first reads the
image at ``INPUT_BASE`` into the network's pixel memory, then runs the network, then writes the
logits to ``OUTPUT_BASE``, and only then ends the run (``docs/control.md``, "Input and output
over AXI4").

Memory layout (the reference functions below are the contract):

Input (:func:`input_bytes`)
    One byte per pixel code, pixel ``n = (c * H + y) * W + x`` at ``INPUT_BASE + n``, the code in
    the byte's low ``pixel_bits`` bits (the other bits are ignored): what
    ``IntegerModel.quantize_input`` gives, as ``uint8``. ``INPUT_BASE`` is a multiple of the bus
    width in bytes (its low bits are ignored).
Output (:func:`output_bytes`)
    One little-endian 32-bit word per class, the logit sign-extended, class ``c`` at
    ``OUTPUT_BASE + 4 * c``: the same values as the LOGIT registers. ``OUTPUT_BASE`` is a
    multiple of the bus width in bytes. Bytes past the last class in the last beat are not
    written (``wstrb`` 0).

Bursts: INCR, full-width beats, at most :data:`IO_BURST` beats, each inside one aligned group of
:data:`IO_BURST` beats (so none crosses a 4 KB boundary for any bus up to 256 bytes wide); one
ID (0); reads are issued back to back (any number outstanding, the R channel back-pressured
while the pixels of a beat go out), one write burst at a time (AW and its W beats together, the
next burst after the B response).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from hw.weightfetch import AXI_PREFIX, axi4_read_ports

__all__ = ["IO_BURST", "AxiIoMover", "EventPlayer", "axi4_write_ports", "event_bytes", "input_bytes", "output_bytes",
           "io_bursts"]

#: Most beats of one input or output burst (and the alignment group of every burst).
IO_BURST = 16


def axi4_write_ports(address_width: int, data_width: int, id_width: int = 1) -> dict:
    """The AXI4 write master's flat ports (``m_axi_aw*``, ``m_axi_w*``, ``m_axi_b*``)."""
    p = AXI_PREFIX
    return {
        f"{p}_awid": Out(id_width), f"{p}_awaddr": Out(address_width), f"{p}_awlen": Out(8),
        f"{p}_awsize": Out(3), f"{p}_awburst": Out(2), f"{p}_awlock": Out(1),
        f"{p}_awcache": Out(4), f"{p}_awprot": Out(3), f"{p}_awvalid": Out(1),
        f"{p}_awready": In(1),
        f"{p}_wdata": Out(data_width), f"{p}_wstrb": Out(data_width // 8), f"{p}_wlast": Out(1),
        f"{p}_wvalid": Out(1), f"{p}_wready": In(1),
        f"{p}_bid": In(id_width), f"{p}_bresp": In(2), f"{p}_bvalid": In(1),
        f"{p}_bready": Out(1),
    }


def input_bytes(codes) -> bytes:
    """The input image as it lies in memory: one byte per pixel code, in pixel order."""
    values = np.asarray(codes, dtype=np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError("pixel codes must lie in 0..255 to be stored a byte each")
    return values.astype(np.uint8).tobytes()


def event_bytes(beats) -> bytes:
    """A run's event beats as they lie in memory (event models, CONTROL.DMA): a byte per beat
    (bit ``c``: channel ``c`` fired), time step ``t``'s beat ``n`` (row-major pixel ``n``) at
    ``t * H * W + n``: the beats in the order the network takes them."""
    return input_bytes(beats)


def output_bytes(logits) -> bytes:
    """The logits as the mover writes them: a little-endian sign-extended 32-bit word each."""
    return np.asarray(logits, dtype=np.int64).astype("<i4").tobytes()


def io_bursts(base: int, beats: int, beat_bytes: int) -> list[tuple[int, int]]:
    """``(address, beats)`` of the bursts moving ``beats`` beats from ``base`` (rounded down to
    a beat): each at most :data:`IO_BURST` beats and inside one aligned group of them."""
    address = base - base % beat_bytes
    out = []
    while beats:
        index = address // beat_bytes
        length = min(IO_BURST - index % IO_BURST, beats)
        out.append((address, length))
        address += length * beat_bytes
        beats -= length
    return out


class AxiIoMover(wiring.Component):
    """Read pixel codes over AXI4 into the network's pixel port; write the logits back.

    Parameters
    ----------
    input_words : int
        Pixel codes of one input (``C * H * W``), or event beats of one time step (``H * W``).
    pixel_bits : int
        Bits of a code or beat (at most 8: a byte each in memory).
    frames : int
        Most inputs a read moves, one after another in memory (event models: ``T`` time steps
        of event beats, time step ``t``'s beat ``n`` at byte ``t * input_words + n``); with
        more than one, port ``read_frames`` chooses a read's. :attr:`input_words` is then the most
        codes a read loads, ``frames * input_words``.
    classes, logit_bits : int
        The logits' count and signed width (at most 32).
    address_width, data_width : int
        The AXI4 bus (``data_width`` a power of two, 32 to 2048 bits).

    Ports
    -----
    clear : In(1)
        Pulse: clear ``error`` (the core pulses it at every accepted START).
    read_start : In(1)
        Pulse: read ``input_words`` bytes from ``input_base`` (``frames`` times the frame's,
        with ``frames``). Not while reading.
    read_frames : In(range(frames + 1))
        Only with ``frames > 1``: the frames the next read moves (1 to ``frames``; 0: all
        ``frames``), sampled at ``read_start``.
    input_base, output_base : In(address_width)
        Byte addresses, held from ``read_start`` / ``write_start`` to ``read_done`` /
        ``write_done``; the low ``log2(data_width / 8)`` bits are ignored.
    load_address, load_data, load_enable : Out
        The pixel port (:class:`hw.shared.SharedNetwork`'s ``load_*``): one code a cycle while a
        beat's codes go out, pixel ``n`` at address ``n``.
    read_done : Out(1)
        Pulse, the cycle after the last code's ``load_enable``.
    reading : Out(1)
        A register, 1 from the cycle after ``read_start`` to ``read_done``: the mover owns the
        AR and R channels (the core gives them to the weight fetcher otherwise).
    write_start : In(1)
        Pulse: write ``logits`` (held until ``write_done``) to ``output_base``.
    logits : In(ArrayLayout(signed(logit_bits), classes))
    write_done : Out(1)
        Pulse, the cycle after the last burst's B response.
    error : Out(1)
        Sticky: a read or write of the mover was answered SLVERR or DECERR (cleared by
        ``clear``). The pixels of a failed read are loaded as answered; nothing else changes.
    m_axi_ar* / m_axi_r*
        The read master (:func:`hw.weightfetch.axi4_read_ports`), valid only while ``reading``.
    m_axi_aw* / m_axi_w* / m_axi_b*
        The write master (:func:`axi4_write_ports`).

    Cycles: a read takes the memory's latency plus ``input_words`` cycles when the memory
    answers at full rate (a beat every ``data_width / 8`` cycles); a write ``ceil(classes /
    (data_width / 32))`` beats, one burst (of at most :data:`IO_BURST` beats) at a time, each
    waiting for its B response.

    Reference: :func:`input_bytes`, :func:`output_bytes`, :func:`io_bursts`. Tests:
    ``tests/test_axi_io.py``.
    """

    def __init__(self, *, input_words: int, pixel_bits: int, classes: int, logit_bits: int,
                 address_width: int, data_width: int = 64, frames: int = 1):
        if not 1 <= pixel_bits <= 8:
            raise ValueError(f"pixel_bits {pixel_bits}: the input holds a byte a pixel (1..8)")
        if not 1 <= logit_bits <= 32:
            raise ValueError(f"logit_bits {logit_bits}: the output holds 32 bits a logit")
        if data_width not in (32, 64, 128, 256, 512, 1024, 2048):
            raise ValueError(f"data_width {data_width}: a power of two, 32..2048")
        if input_words < 1 or classes < 1 or frames < 1:
            raise ValueError("input_words, classes and frames must be at least 1")
        self.frame_words, self.frames = input_words, frames
        self.input_words, self.pixel_bits = frames * input_words, pixel_bits
        self.classes, self.logit_bits = classes, logit_bits
        self.address_width, self.data_width = address_width, data_width
        super().__init__({
            "clear": In(1), "read_start": In(1), "input_base": In(address_width),
            "output_base": In(address_width),
            "load_address": Out(bits_for(self.input_words)), "load_data": Out(pixel_bits),
            "load_enable": Out(1), "read_done": Out(1), "reading": Out(1),
            "write_start": In(1),
            "logits": In(data.ArrayLayout(signed(logit_bits), classes)),
            "write_done": Out(1), "error": Out(1),
            **({"read_frames": In(range(frames + 1))} if frames > 1 else {}),
            **axi4_read_ports(address_width, data_width),
            **axi4_write_ports(address_width, data_width),
        })

    def _port(self, name):
        return getattr(self, f"{AXI_PREFIX}_{name}")

    @property
    def beat_bytes(self) -> int:
        return self.data_width // 8

    @property
    def input_beats(self) -> int:
        """Beats of the longest read (``input_words`` bytes)."""
        return -(-self.input_words // self.beat_bytes)

    def read_beats(self, frames: int = 1) -> int:
        """Beats of a read of ``frames`` frames."""
        return -(-frames * self.frame_words // self.beat_bytes)

    @property
    def output_beats(self) -> int:
        return -(-self.classes // (self.data_width // 32))

    def elaborate(self, platform):
        m = Module()
        AW, B = self.address_width, self.beat_bytes
        beat_log = ceil_log2(B)
        group_log = ceil_log2(IO_BURST)
        port = self._port

        with m.If(self.clear):
            m.d.sync += self.error.eq(0)

        def issue_length(beat_index, left):
            """Beats of the next burst: to the end of the aligned group, at most ``left``."""
            to_group = IO_BURST - beat_index[:group_log]
            return Mux(left < to_group, left, to_group)

        # --- read: AR bursts back to back, R beats unpacked a byte a cycle ---------------------
        in_beats = self.input_beats
        ar_beat = Signal(AW - beat_log)            # next burst's beat address
        ar_left = Signal(range(in_beats + 1))      # beats not yet requested
        r_left = Signal(range(in_beats + 1))       # beats not yet received
        # The next burst's beats, a register: after the first burst every burst starts a group
        # (a burst ends at its group's end unless it is the last), so the next length is
        # ``min(left, IO_BURST)`` of the beats left after this one; no carry chain of the beat
        # address lies before the AR handshake's adds.
        ar_len = Signal(range(IO_BURST + 1))
        ar_after = Signal(range(in_beats + 1))
        m.d.comb += ar_after.eq(ar_left - ar_len)
        m.d.comb += [port("arid").eq(0), port("araddr").eq(Cat(Const(0, beat_log), ar_beat)),
                     port("arlen").eq(ar_len - 1), port("arsize").eq(beat_log),
                     port("arburst").eq(0b01), port("arlock").eq(0), port("arcache").eq(0b0011),
                     port("arprot").eq(0),
                     port("arvalid").eq(self.reading & (ar_left != 0))]
        with m.If(port("arvalid") & port("arready")):
            m.d.sync += [ar_beat.eq(ar_beat + ar_len), ar_left.eq(ar_after),
                         ar_len.eq(Mux(ar_after < IO_BURST, ar_after, IO_BURST))]

        shift = Signal(self.data_width)            # the beat's bytes not yet loaded, low first
        held = Signal(range(B + 1))                # how many
        pixel = Signal(range(self.input_words + 1))
        emit = Signal()
        m.d.comb += [emit.eq(held != 0),
                     self.load_enable.eq(emit), self.load_address.eq(pixel),
                     self.load_data.eq(shift[:self.pixel_bits]),
                     # a new beat once the held one is gone by the end of this cycle
                     port("rready").eq(self.reading & (r_left != 0) & (held <= 1))]
        with m.If(emit):
            m.d.sync += [shift.eq(shift >> 8), held.eq(held - 1), pixel.eq(pixel + 1)]
        beat_taken = port("rvalid") & port("rready")
        if self.frames == 1:
            last_beat_bytes = (self.input_words - 1) % B + 1    # codes in the last beat
            last_pixel = self.input_words - 1
            read_beats = in_beats
        else:
            # a read of f frames: its beats, the codes in its last beat and its last code's
            # address, from tables indexed by f (registers loaded at read_start)
            counts = [(f or self.frames) * self.frame_words for f in range(self.frames + 1)]
            last_beat_bytes = Signal(range(B + 1), name="last_beat_bytes")
            last_pixel = Signal(range(self.input_words), name="last_pixel")
            read_beats = Signal(range(in_beats + 1), name="read_beats")
            m.d.comb += read_beats.eq(Array(Const(self.read_beats(f or self.frames),
                                                  len(read_beats))
                                            for f in range(self.frames + 1))[self.read_frames])
            with m.If(self.read_start):
                m.d.sync += [
                    last_beat_bytes.eq(Array(Const((n - 1) % B + 1, len(last_beat_bytes))
                                             for n in counts)[self.read_frames]),
                    last_pixel.eq(Array(Const(n - 1, len(last_pixel))
                                        for n in counts)[self.read_frames])]
        with m.If(beat_taken):
            m.d.sync += [shift.eq(port("rdata")), r_left.eq(r_left - 1),
                         held.eq(Mux(r_left == 1, last_beat_bytes, B))]
            with m.If(port("rresp")[1]):
                m.d.sync += self.error.eq(1)
        last_code = emit & (pixel == last_pixel)
        m.d.sync += self.read_done.eq(last_code)
        with m.If(last_code):
            m.d.sync += self.reading.eq(0)
        with m.If(self.read_start):
            m.d.sync += [self.reading.eq(1), ar_beat.eq(self.input_base[beat_log:]),
                         ar_len.eq(issue_length(self.input_base[beat_log:], read_beats)),
                         ar_left.eq(read_beats), r_left.eq(read_beats), pixel.eq(0),
                         held.eq(0)]

        # --- write: one burst at a time, AW and W together, then B --------------------------
        out_beats = self.output_beats
        per_beat = self.data_width // 32
        def extended(c):                           # logit c sign-extended to 32 bits
            value = self.logits[c]
            return Cat(value, value[-1].replicate(32 - self.logit_bits))

        beat_rows = [Cat(*[extended(c) for c in range(index * per_beat,
                                                      min((index + 1) * per_beat, self.classes))])
                     for index in range(out_beats)]
        strobes = []
        for index in range(out_beats):
            used = min(per_beat, self.classes - index * per_beat)
            strobes.append((1 << (4 * used)) - 1)
        wdata = Array(beat_rows)
        wstrb = Array(Const(s, B) for s in strobes)

        aw_pending = Signal()
        w_active = Signal()
        aw_beat = Signal(AW - beat_log)            # this burst's beat address
        w_beat = Signal(range(out_beats + 1))      # next beat of the output (its logits)
        w_left = Signal(range(out_beats + 1))      # beats of the output not yet in a burst
        burst = Signal(range(IO_BURST + 1))        # this burst's beats; 0: none in flight
        burst_left = Signal(range(IO_BURST + 1))   # its W beats still to send
        # The next burst's beats, a register like the read side's ``ar_len``: every burst but
        # the first starts a group.
        next_len = Signal(range(IO_BURST + 1))
        w_after = Signal(range(out_beats + 1))
        m.d.comb += w_after.eq(w_left - next_len)
        # B is taken whenever a burst is in flight: a slave answers only after its AW and last
        # W, and one burst at a time means any B is this burst's.
        bdone = Signal()
        m.d.comb += bdone.eq(port("bvalid") & port("bready"))
        m.d.comb += [port("awid").eq(0), port("awaddr").eq(Cat(Const(0, beat_log), aw_beat)),
                     port("awlen").eq(burst - 1), port("awsize").eq(beat_log),
                     port("awburst").eq(0b01), port("awlock").eq(0),
                     port("awcache").eq(0b0011), port("awprot").eq(0),
                     port("awvalid").eq(aw_pending),
                     port("wdata").eq(wdata[w_beat]), port("wstrb").eq(wstrb[w_beat]),
                     port("wlast").eq(burst_left == 1), port("wvalid").eq(w_active),
                     port("bready").eq(burst != 0)]
        with m.If((burst == 0) & (w_left != 0)):    # the next burst
            m.d.sync += [aw_pending.eq(1), w_active.eq(1), burst.eq(next_len),
                         burst_left.eq(next_len), w_left.eq(w_after),
                         next_len.eq(Mux(w_after < IO_BURST, w_after, IO_BURST))]
        with m.If(port("awvalid") & port("awready")):
            m.d.sync += [aw_pending.eq(0), aw_beat.eq(aw_beat + burst)]
        with m.If(port("wvalid") & port("wready")):
            m.d.sync += [w_beat.eq(w_beat + 1), burst_left.eq(burst_left - 1)]
            with m.If(burst_left == 1):
                m.d.sync += w_active.eq(0)
        with m.If(bdone):
            m.d.sync += burst.eq(0)
            with m.If(port("bresp")[1]):
                m.d.sync += self.error.eq(1)
        m.d.sync += self.write_done.eq(bdone & (w_left == 0))
        with m.If(self.write_start):
            m.d.sync += [aw_beat.eq(self.output_base[beat_log:]), w_beat.eq(0),
                         w_left.eq(out_beats), burst.eq(0),
                         next_len.eq(issue_length(self.output_base[beat_log:], out_beats))]
        return m


class EventPlayer(wiring.Component):
    """Hold a DMA run's event beats on chip and offer them to the network in order.

    An event model's CONTROL.DMA run first reads its ``T * H * W`` event beats (a byte each,
    :func:`event_bytes`) through :class:`AxiIoMover` into this buffer, then runs: the network
    takes the beats from ``o`` in the order they were loaded, ``H * W`` at each time step's
    event-input step. The buffer is the run's input, like a pixel model's pixel memory: it
    grows with the input, not with the model.

    Parameters
    ----------
    beats : int
        Most beats of a run (``T * H * W``).
    bits : int
        Bits of a beat (the event channels).

    Ports
    -----
    load_address, load_data, load_enable : In
        The mover's load port: beat ``n`` written at address ``n``.
    rewind : In(1)
        Pulse: the next beat offered is beat 0 (the core pulses it when the read is done).
    active : In(1)
        ``o.valid`` only while high (the run's network phase).
    o : Out(stream.Signature(unsigned(bits)))
        The beats, one a cycle while taken: a beat is read from the buffer (a synchronous read
        port) when the output register is empty or being taken.

    Latency: beat 0 is held in the output register two cycles after ``rewind``; beat ``n + 1``
    the cycle after beat ``n`` is taken. Reference: the beats in load order. Tests:
    ``tests/test_axi_io.py``.
    """

    def __init__(self, *, beats: int, bits: int):
        if beats < 1 or not 1 <= bits <= 8:
            raise ValueError(f"an event buffer of {beats} beats of {bits} bits: beats >= 1, "
                             "bits 1..8")
        self.beats, self.bits = beats, bits
        super().__init__({
            "load_address": In(bits_for(beats)), "load_data": In(bits), "load_enable": In(1),
            "rewind": In(1), "active": In(1),
            "o": Out(stream.Signature(unsigned(bits))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = Memory(shape=unsigned(self.bits), depth=self.beats,
                                              init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        m.d.comb += [write.addr.eq(self.load_address), write.data.eq(self.load_data),
                     write.en.eq(self.load_enable)]
        address = Signal(range(self.beats + 1), name="player_address")  # next beat to read
        held = Signal(name="player_held")   # the read port's data is a beat not yet taken
        take = Signal()
        fetch = Signal()
        m.d.comb += [self.o.valid.eq(held & self.active), self.o.payload.eq(read.data),
                     take.eq(self.o.valid & self.o.ready),
                     fetch.eq((~held | take) & (address != self.beats)),
                     read.addr.eq(address), read.en.eq(fetch)]
        with m.If(fetch):
            m.d.sync += [address.eq(address + 1), held.eq(1)]
        with m.Elif(take):
            m.d.sync += held.eq(0)
        with m.If(self.rewind):
            m.d.sync += [address.eq(0), held.eq(0)]
        return m
