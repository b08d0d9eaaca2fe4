"""Memory-backed integer LIF neurons: one array serves a whole layer across time steps.

The neurons are those of ``hw.lif`` (tau = 2, hard reset, the arithmetic contract), built by
:func:`hw.neuron.lif_update`; here their membranes live in a memory (one word of ``lanes``
membranes per address) and per-channel thresholds in a threshold memory. Each beat updates one
word by one time step; ``docs/hw-units.md`` (LIF array) describes the unit.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from hw.neuron import lif_update
from hw.params import bits_for, ceil_div, check_int, threshold_attrs

__all__ = ["LIFArray", "lif_array_input_layout", "lif_array_output_layout"]


def lif_array_input_layout(lanes: int, input_width: int, words: int,
                           groups: int) -> data.StructLayout:
    """Return the payload layout of a :class:`LIFArray`'s input stream.

    Fields, first in the least significant bits: ``x`` (``lanes`` signed inputs), ``address``
    (membrane word: which ``lanes`` neurons), ``group`` (threshold word: channels
    ``group * lanes + l``) and ``first`` (1: first time step of a sample, the stored membrane
    counts as 0).
    """
    return data.StructLayout({
        "x": data.ArrayLayout(signed(input_width), lanes),
        "address": unsigned(bits_for(words)),
        "group": unsigned(bits_for(groups)),
        "first": 1,
    })


def lif_array_output_layout(lanes: int, membrane_width: int, words: int) -> data.StructLayout:
    """Return the payload layout of a :class:`LIFArray`'s output stream: ``spikes`` (bit i:
    lane i), the ``membrane`` potentials after the step and the ``address`` of the word."""
    return data.StructLayout({
        "spikes": lanes,
        "membrane": data.ArrayLayout(signed(membrane_width), lanes),
        "address": unsigned(bits_for(words)),
    })


class LIFArray(wiring.Component):
    """Compute integer LIF neurons whose membranes live in memory, ``lanes`` per beat.

    Each beat updates the ``lanes`` neurons of membrane word ``address`` by one time step, with
    the thresholds of threshold word ``group``, exactly as :class:`hw.lif.LIF` (and
    ``quant.intops.lif_step``) do. Membranes persist across beats (time steps) until a beat with
    ``first`` set treats its word's stored membrane as 0 (a new sample). Successive beats may
    address the same word back to back: the membrane read is transparent to the write of the
    beat before.

    Parameters
    ----------
    lanes : int
        Neurons per beat (>= 1).
    words : int
        Membrane words (>= 1); ``words * lanes`` neurons in all.
    input_width : int
        Signed width of each input (>= 2).
    membrane_width : int, optional
        Signed width of each stored membrane; default ``input_width``, never narrower (the
        bound ``|v| < 2**(input_width-1)`` needs ``input_width`` bits).
    thresholds : sequence of int
        One integer threshold per channel (doubled units), ``channels = len(thresholds)``; each in
        the signed range of ``v + x``. Threshold word ``g`` holds channels ``g * lanes + l``
        (zero past the end).

    pipelined : bool, optional
        Register the membrane and threshold words the memories return before the neurons use
        them (one more cycle of latency, same throughput). Without it the path runs from a
        memory's output through the adder and the threshold compare into the membrane memory in
        one cycle, which a block RAM's clock-to-output makes slow. The membrane of the beat just
        ahead, written while this beat's word is registered, is forwarded. A beat's ``first`` is
        applied as its membrane word is registered (a new sample's word is registered as 0), so
        no flag fans out to every lane's adder in the computing cycle.
    threshold_port : bool, optional
        The threshold memory sits outside: a ``threshold`` read port (words
        :attr:`threshold_words`, data the cycle after ``en``, as the memory inside).
    threshold_memory : str, optional
        ``"auto"`` (default: the synthesis tool's choice; a registered read) or ``"logic"`` (LUTs
        and multiplexers, :data:`hw.params.THRESHOLD_STYLES`: a combinational read from a
        register of the group, so the ROM's logic has a whole cycle before the neurons' stage-2
        register); the same data in the same cycles either way.

    Members
    -------
    i : In(stream.Signature(lif_array_input_layout(...)))
    o : Out(stream.Signature(lif_array_output_layout(...)))
        Results :attr:`latency` cycles after the input beat when not stalled.
    threshold : In(ReadPort.Signature(addr_width=threshold_address_width, shape=...))
        Only with ``threshold_port``.

    Notes
    -----
    Memories: ``membranes`` (``words`` x ``lanes * membrane_width`` bits, lane 0 in the least
    significant bits, zero after configuration; not cleared by reset: ``first`` clears) and
    ``thresholds`` (``ceil(channels / lanes)`` x ``lanes * (membrane_width + 1)`` bits).
    """

    def __init__(self, *, lanes: int, words: int, input_width: int,
                 membrane_width: int | None = None, thresholds: Sequence[int],
                 pipelined: bool = False, threshold_port: bool = False,
                 threshold_memory: str = "auto"):
        self._threshold_attrs = threshold_attrs("threshold_memory", threshold_memory)
        self._threshold_logic = threshold_memory == "logic"
        if threshold_port and threshold_memory != "auto":
            raise ValueError(f"threshold_memory={threshold_memory!r} needs the threshold memory "
                             "inside (threshold_port=False)")
        self._pipelined = bool(pipelined)
        self._threshold_port = bool(threshold_port)
        self._lanes = check_int("lanes", lanes)
        self._words = check_int("words", words)
        self._input_width = check_int("input_width", input_width, 2)
        if membrane_width is None:
            membrane_width = input_width
        self._membrane_width = check_int("membrane_width", membrane_width, 2)
        if self._membrane_width < self._input_width:
            raise ValueError(
                f"membrane_width {membrane_width} is narrower than input_width {input_width}: "
                "the membrane bound |v| < 2**(input_width-1) needs at least input_width bits"
            )
        self._sum_width = self._membrane_width + 1
        if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__len__"):
            raise TypeError(f"thresholds must be a sequence of integers, not {thresholds!r}")
        values = tuple(operator.index(t) for t in thresholds)
        if not values:
            raise ValueError("thresholds must hold at least one channel's threshold")
        low, high = -(1 << (self._sum_width - 1)), (1 << (self._sum_width - 1)) - 1
        for channel, value in enumerate(values):
            if not low <= value <= high:
                raise ValueError(
                    f"threshold {value} of channel {channel} is outside [{low}, {high}], the "
                    f"range of v + x with {self._sum_width - 1}-bit operands")
        self._thresholds = values
        self._groups = ceil_div(len(values), self._lanes)
        port = {}
        if self._threshold_port:
            port["threshold"] = In(ReadPort.Signature(
                addr_width=self.threshold_address_width,
                shape=unsigned(self._lanes * self._sum_width)))
        super().__init__({
            **port,
            "i": In(stream.Signature(lif_array_input_layout(
                self._lanes, self._input_width, self._words, self._groups))),
            "o": Out(stream.Signature(lif_array_output_layout(
                self._lanes, self._membrane_width, self._words))),
        })

    @property
    def lanes(self) -> int:
        """Neurons per beat."""
        return self._lanes

    @property
    def words(self) -> int:
        """Membrane words."""
        return self._words

    @property
    def input_width(self) -> int:
        """Signed width of each input."""
        return self._input_width

    @property
    def membrane_width(self) -> int:
        """Signed width of each stored membrane."""
        return self._membrane_width

    @property
    def thresholds(self) -> tuple[int, ...]:
        """Per-channel thresholds."""
        return self._thresholds

    @property
    def groups(self) -> int:
        """Threshold words, ``ceil(channels / lanes)``."""
        return self._groups

    @property
    def threshold_words(self) -> list[int]:
        """Contents of the threshold memory, lane 0 in the least significant bits."""
        width = self._sum_width
        padded = list(self._thresholds) + [0] * (self._groups * self._lanes - len(self._thresholds))
        return [sum((padded[g * self._lanes + lane] & ((1 << width) - 1)) << (lane * width)
                    for lane in range(self._lanes)) for g in range(self._groups)]

    @property
    def threshold_address_width(self) -> int:
        """Bits of the threshold memory's address (of ``threshold.addr`` with
        ``threshold_port``)."""
        return (max(2, self._groups) - 1).bit_length()

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without backpressure."""
        return 3 if self._pipelined else 2

    def elaborate(self, platform):
        m = Module()
        lanes, mw, sw = self._lanes, self._membrane_width, self._sum_width
        # Depths of at least 2: a 0-bit address becomes a [-1:0] vector Verilator refuses.
        m.submodules.membranes = membranes = Memory(
            shape=unsigned(lanes * mw), depth=max(2, self._words), init=[])
        if not self._threshold_port:
            m.submodules.thresholds = thresholds = Memory(
                shape=unsigned(lanes * sw), depth=max(2, self._groups),
                init=self.threshold_words, attrs=self._threshold_attrs)
        membrane_write = membranes.write_port()
        membrane_read = membranes.read_port(transparent_for=(membrane_write,))
        if self._threshold_port:
            threshold_read = self.threshold
        elif self._threshold_logic:
            # A ROM of LUTs read combinationally from a register of the group (written as a
            # beat enters, as a block RAM registers its address): the same data in the same
            # cycles, with the whole cycle for the ROM's levels of logic.
            threshold_read = thresholds.read_port(domain="comb")
        else:
            threshold_read = thresholds.read_port()

        # Stage 1 holds a beat whose membrane and threshold words are being read.
        held = Signal()
        # Data registers carry no reset (their valid bits do): a reset net to every lane's
        # registers is a routing load on an FPGA and changes nothing a reset must.
        held_x = Signal.like(self.i.payload.x, reset_less=True)
        held_address = Signal.like(self.i.payload.address, reset_less=True)
        held_first = Signal(reset_less=True)
        advance = Signal()  # stage 1 may move its beat to the output register
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            # Reading only when a beat enters keeps a stalled beat's words on the read ports.
            membrane_read.addr.eq(self.i.payload.address),
            membrane_read.en.eq(self.i.ready),
        ]
        if self._threshold_logic:
            held_group = Signal.like(self.i.payload.group, reset_less=True)
            with m.If(self.i.ready):
                m.d.sync += held_group.eq(self.i.payload.group)
            m.d.comb += threshold_read.addr.eq(held_group)
        else:
            m.d.comb += [threshold_read.addr.eq(self.i.payload.group),
                         threshold_read.en.eq(self.i.ready)]
        o_payload = Signal.like(self.o.payload, reset_less=True)
        m.d.comb += self.o.payload.eq(o_payload)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        move = Signal()  # stage 1 hands its beat on (to the output, or pipelined to stage 2)
        if not self._pipelined:
            m.d.comb += [move.eq(held & advance), self.i.ready.eq(~held | advance)]
        with m.If(move):
            m.d.sync += held.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(1), held_x.eq(self.i.payload.x),
                         held_address.eq(self.i.payload.address),
                         held_first.eq(self.i.payload.first)]

        new_word = Signal(lanes * mw)
        spikes = Signal(lanes)
        # The neurons compute from stage 1 (as read) or, pipelined, from stage 2's registers.
        c_valid, c_x, c_first, c_address = held, held_x, held_first, held_address
        c_membranes, c_thresholds = membrane_read.data, threshold_read.data
        leave = Signal()  # the computing stage hands its beat to the output register
        if self._pipelined:
            p2 = Signal(name="p2_valid")
            p2_x = Signal.like(held_x, name="p2_x", reset_less=True)
            p2_address = Signal.like(held_address, name="p2_address", reset_less=True)
            p2_membranes = Signal(lanes * mw, name="p2_membranes", reset_less=True)
            p2_thresholds = Signal(lanes * sw, name="p2_thresholds", reset_less=True)
            m.d.comb += [
                leave.eq(p2 & advance),
                move.eq(held & (~p2 | advance)),
                self.i.ready.eq(~held | ~p2 | advance),
            ]
            with m.If(leave):
                m.d.sync += p2.eq(0)
            with m.If(move):
                # The beat leaving stage 2 now writes after this beat's word was read: forward.
                same = leave & (p2_address == held_address)
                # A first beat's stored membrane is 0 (``lif_update``'s ``first``), applied
                # here: one LUT with the forwarding choice, off the adder's path.
                m.d.sync += [p2.eq(1), p2_x.eq(held_x), p2_address.eq(held_address),
                             p2_membranes.eq(Mux(held_first, 0,
                                                 Mux(same, new_word, membrane_read.data))),
                             p2_thresholds.eq(threshold_read.data)]
            c_valid, c_x, c_first, c_address = p2, p2_x, Const(0, 1), p2_address
            c_membranes, c_thresholds = p2_membranes, p2_thresholds
        else:
            m.d.comb += leave.eq(held & advance)
        for lane in range(lanes):
            previous = Signal(signed(mw), name=f"previous_{lane}")
            total = Signal(signed(sw), name=f"total_{lane}")
            threshold = c_thresholds[lane * sw:(lane + 1) * sw].as_signed()
            m.d.comb += new_word[lane * mw:(lane + 1) * mw].eq(lif_update(
                m, first=c_first, stored=c_membranes[lane * mw:(lane + 1) * mw].as_signed(),
                x=c_x[lane], threshold=threshold, total=total, spike=spikes[lane],
                previous=previous, compare_width=sw + 1, name=f"lane_{lane}"))
        with m.If(leave):
            m.d.comb += [membrane_write.addr.eq(c_address), membrane_write.data.eq(new_word),
                         membrane_write.en.eq(1)]
            m.d.sync += [self.o.valid.eq(1), o_payload.spikes.eq(spikes),
                         o_payload.membrane.eq(new_word), o_payload.address.eq(c_address)]
        return m
