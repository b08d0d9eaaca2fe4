"""Integer leaky integrate-and-fire neurons (tau = 2, hard reset), as the arithmetic contract says.

Each stream beat is one time step of ``lanes`` neurons::

    u      = v + x                 (input_width + 1 bits; never overflows)
    spike  = u >= threshold        (>=, not >)
    v_next = 0 if spike else u >>> 1   (arithmetic shift: floor)

The threshold is in doubled units (``ceil(2 * theta / scale)``, see ``quant.intops``). A beat whose
``first`` flag is set starts a new sample: the stored membrane is treated as 0.

:class:`LIF` keeps one membrane per lane in registers; :class:`LIFArray` keeps the membranes of
many neurons in a memory (one word of ``lanes`` membranes per address) and reads per-channel
thresholds from a threshold memory, so one array serves a whole layer across time steps.
:func:`lif_update` builds the update above for one neuron; it is the only place it is written,
used by both units here and by the SDSA unit's channel neurons (``hw.sdsa``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.params import bits_for, ceil_div, check_int

__all__ = ["LIF", "lif_input_layout", "lif_output_layout",
           "LIFArray", "lif_array_input_layout", "lif_array_output_layout", "lif_update"]


def _fires(m: Module, previous, x, threshold, width: int, name: str) -> Signal:
    """Return a signal that is 1 where ``previous + x >= threshold``, with one carry chain.

    ``previous + x - threshold = previous + x + ~threshold + 1``: a carry-save step (one LUT level,
    no carries) turns the three operands into two, so a single carry chain decides the sign. A
    plain ``previous + x >= threshold`` puts two chains in series on the neuron's critical path.
    ``width`` must hold every value of ``previous + x - threshold`` (the sum's width plus one).
    """
    a, b, c = (Signal(signed(width), name=f"{name}_{part}") for part in ("v", "x", "t"))
    difference = Signal(signed(width), name=f"{name}_difference")
    m.d.comb += [
        a.eq(previous), b.eq(x), c.eq(~threshold),
        difference.eq((a ^ b ^ c) + (((a & b) | (a & c) | (b & c)) << 1) + 1),
    ]
    fire = Signal(name=f"{name}_fire")
    m.d.comb += fire.eq(~difference[-1])
    return fire


def lif_update(m: Module, *, first, stored, x, threshold, total, spike, previous=None,
               compare_width: int | None = None, name: str = "lif", registers=()):
    """Build one integer LIF neuron's time step into ``m``; return its next membrane.

    The one place the update of ``docs/arithmetic.md`` (``quant.intops.lif_step``) is written,
    for :class:`LIF`, :class:`LIFArray` and the SDSA unit's channel neurons::

        previous = 0 if first else stored        (a new sample starts from 0)
        u        = previous + x                  -> ``total``
        spike    = u >= threshold                -> ``spike``
        v_next   = 0 if spike else u >>> 1       (returned: hard reset, else halve with floor)

    Parameters
    ----------
    first, stored
        ``first`` selects 0 instead of the stored membrane ``stored``; ``stored=None``: no
        membrane is kept (the threshold leaves nothing to carry), ``previous`` is 0.
    x, threshold
        The input and the threshold (doubled units) of this neuron.
    total, spike
        Signals (or slices) the sum ``u`` and the spike are assigned to. ``total``'s shape sets
        the arithmetic: signed for the LIF units, unsigned for SDSA's counts; ``v_next`` is
        ``total >> 1``, so a signed total shifts arithmetically (floor).
    previous : Signal, optional
        A signal to hold ``0 if first else stored`` (the LIF units name it); without one the
        expression feeds the sum directly.
    compare_width : int, optional
        ``None``: ``spike`` is ``total >= threshold``. An int: the spike is decided by
        :func:`_fires` (one carry chain for ``previous + x - threshold``), which needs this width
        (the sum's width plus one).
    name : str
        Prefix of the signals :func:`_fires` creates.
    registers : sequence of Signal, optional
        Registers that take ``v_next`` at the clock edge (:class:`LIF`'s membranes and output),
        written as ``If(spike)``/``Else`` in ``m.d.sync`` inside whatever ``m.If`` is open.

    Returns
    -------
    The expression ``Mux(spike, 0, total >> 1)`` (what the memory-backed units write back); with
    ``registers`` it has already been assigned to them and the return value may be ignored.

    The statements go into ``m`` in one fixed order (the compare's, then ``previous``, ``total``
    and ``spike``, then the registers), so each unit's netlist, and its Verilog, is the one it
    had when it wrote the update itself.
    """
    value = Const(0, 1) if stored is None else Mux(first, 0, stored)
    operand = value if previous is None else previous
    if compare_width is None:
        decision = total >= threshold
    else:
        decision = _fires(m, operand, x, threshold, compare_width, name)
    statements = [] if previous is None else [previous.eq(value)]
    m.d.comb += statements + [total.eq(operand + x), spike.eq(decision)]
    halved = total >> 1  # on a signed total an arithmetic shift: floor
    if registers:
        with m.If(spike):
            for register in registers:
                m.d.sync += register.eq(0)
        with m.Else():
            for register in registers:
                m.d.sync += register.eq(halved)
    return Mux(spike, 0, halved)


def lif_input_layout(lanes: int, input_width: int, *, streamed_threshold: bool = False):
    """Return the payload layout of a LIF's input stream.

    Fields, first in the least significant bits: ``x`` (``lanes`` signed inputs), ``first``
    (1: first time step of a sample) and, with ``streamed_threshold``, ``threshold`` (``lanes``
    signed thresholds of ``input_width + 1`` bits).
    """
    fields = {"x": data.ArrayLayout(signed(input_width), lanes), "first": 1}
    if streamed_threshold:
        fields["threshold"] = data.ArrayLayout(signed(input_width + 1), lanes)
    return data.StructLayout(fields)


def lif_output_layout(lanes: int, membrane_width: int):
    """Return the payload layout of a LIF's output stream: ``spikes`` (bit i: lane i) and the
    ``membrane`` potentials after the step (0 where a spike fired)."""
    return data.StructLayout({
        "spikes": lanes,
        "membrane": data.ArrayLayout(signed(membrane_width), lanes),
    })


class LIF(wiring.Component):
    """Compute ``lanes`` integer LIF neurons, one time step per beat, membranes kept in registers.

    Parameters
    ----------
    lanes : int
        Neurons updated per beat (>= 1).
    input_width : int
        Signed width of each input ``x`` (>= 2).
    membrane_width : int, optional
        Signed width of each stored membrane; defaults to ``input_width``. It may not be narrower:
        ``|v| < 2**(input_width-1)`` is what proves ``v_next`` fits (``docs/arithmetic.md``).
    threshold : int or sequence of int, optional
        Integer threshold of every lane (one int) or of each lane (``lanes`` ints), each in the
        signed ``input_width + 1``-bit range of ``u``. ``None``: thresholds arrive with each beat
        in the payload's ``threshold`` field.

    Members
    -------
    i : In(stream.Signature(lif_input_layout(...)))
        Inputs of one time step.
    o : Out(stream.Signature(lif_output_layout(...)))
        Spikes and membranes of that step, :attr:`latency` cycles later when not stalled.
    """

    def __init__(self, *, lanes: int, input_width: int, membrane_width: int | None = None,
                 threshold: int | Sequence[int] | None = None):
        self._lanes = check_int("lanes", lanes)
        self._input_width = check_int("input_width", input_width, 2)
        if membrane_width is None:
            membrane_width = input_width
        self._membrane_width = check_int("membrane_width", membrane_width, 2)
        if self._membrane_width < self._input_width:
            raise ValueError(
                f"membrane_width {membrane_width} is narrower than input_width {input_width}: "
                "the membrane bound |v| < 2**(input_width-1) needs at least input_width bits"
            )
        sum_width = max(self._input_width, self._membrane_width) + 1
        self._sum_width = sum_width
        if threshold is None:
            self._thresholds = None
        else:
            if isinstance(threshold, Sequence):
                thresholds = tuple(operator.index(t) for t in threshold)
                if len(thresholds) != self._lanes:
                    raise ValueError(
                        f"threshold has {len(thresholds)} values but lanes is {self._lanes}"
                    )
            else:
                thresholds = (operator.index(threshold),) * self._lanes
            low, high = -(1 << (sum_width - 1)), (1 << (sum_width - 1)) - 1
            for lane, value in enumerate(thresholds):
                if not low <= value <= high:
                    raise ValueError(
                        f"threshold {value} of lane {lane} is outside [{low}, {high}], the range "
                        f"of v + x with {sum_width - 1}-bit operands"
                    )
            self._thresholds = thresholds
        super().__init__({
            "i": In(stream.Signature(lif_input_layout(
                self._lanes, self._input_width, streamed_threshold=threshold is None))),
            "o": Out(stream.Signature(lif_output_layout(self._lanes, self._membrane_width))),
        })

    @property
    def lanes(self) -> int:
        """Neurons per beat."""
        return self._lanes

    @property
    def input_width(self) -> int:
        """Signed width of each input."""
        return self._input_width

    @property
    def membrane_width(self) -> int:
        """Signed width of each stored membrane potential."""
        return self._membrane_width

    @property
    def thresholds(self) -> tuple[int, ...] | None:
        """Per-lane constant thresholds, or ``None`` when they arrive with each beat."""
        return self._thresholds

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without backpressure."""
        return 1

    def elaborate(self, platform):
        m = Module()
        membrane = [Signal(signed(self._membrane_width), name=f"membrane_{lane}")
                    for lane in range(self._lanes)]

        # One register stage: the output holds until taken; a new beat enters when it is.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.o.valid.eq(1)
            for lane in range(self._lanes):
                previous = Signal(signed(self._membrane_width), name=f"previous_{lane}")
                total = Signal(signed(self._sum_width), name=f"total_{lane}")
                fire = Signal(name=f"fire_{lane}")
                if self._thresholds is None:
                    threshold = self.i.payload.threshold[lane]
                else:
                    threshold = Const(self._thresholds[lane], signed(self._sum_width))
                lif_update(m, first=self.i.payload.first, stored=membrane[lane],
                           x=self.i.payload.x[lane], threshold=threshold, total=total,
                           spike=fire, previous=previous, compare_width=self._sum_width + 1,
                           name=f"lane_{lane}",
                           registers=(membrane[lane], self.o.payload.membrane[lane]))
                m.d.sync += self.o.payload.spikes[lane].eq(fire)
        return m


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
    the thresholds of threshold word ``group``, exactly as :class:`LIF` (and
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
        ahead, written while this beat's word is registered, is forwarded.

    Members
    -------
    i : In(stream.Signature(lif_array_input_layout(...)))
    o : Out(stream.Signature(lif_array_output_layout(...)))
        Results :attr:`latency` cycles after the input beat when not stalled.

    Notes
    -----
    Memories: ``membranes`` (``words`` x ``lanes * membrane_width`` bits, lane 0 in the least
    significant bits, zero after configuration; not cleared by reset: ``first`` clears) and
    ``thresholds`` (``ceil(channels / lanes)`` x ``lanes * (membrane_width + 1)`` bits).
    """

    def __init__(self, *, lanes: int, words: int, input_width: int,
                 membrane_width: int | None = None, thresholds: Sequence[int],
                 pipelined: bool = False):
        self._pipelined = bool(pipelined)
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
        super().__init__({
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
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without backpressure."""
        return 3 if self._pipelined else 2

    def elaborate(self, platform):
        m = Module()
        lanes, mw, sw = self._lanes, self._membrane_width, self._sum_width
        # Depths of at least 2: a 0-bit address becomes a [-1:0] vector Verilator refuses.
        m.submodules.membranes = membranes = Memory(
            shape=unsigned(lanes * mw), depth=max(2, self._words), init=[])
        m.submodules.thresholds = thresholds = Memory(
            shape=unsigned(lanes * sw), depth=max(2, self._groups), init=self.threshold_words)
        membrane_write = membranes.write_port()
        membrane_read = membranes.read_port(transparent_for=(membrane_write,))
        threshold_read = thresholds.read_port()

        # Stage 1 holds a beat whose membrane and threshold words are being read.
        held = Signal()
        held_x = Signal.like(self.i.payload.x)
        held_address = Signal.like(self.i.payload.address)
        held_first = Signal()
        advance = Signal()  # stage 1 may move its beat to the output register
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            # Reading only when a beat enters keeps a stalled beat's words on the read ports.
            membrane_read.addr.eq(self.i.payload.address),
            membrane_read.en.eq(self.i.ready),
            threshold_read.addr.eq(self.i.payload.group),
            threshold_read.en.eq(self.i.ready),
        ]
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
            p2_x = Signal.like(held_x, name="p2_x")
            p2_first = Signal(name="p2_first")
            p2_address = Signal.like(held_address, name="p2_address")
            p2_membranes = Signal(lanes * mw, name="p2_membranes")
            p2_thresholds = Signal(lanes * sw, name="p2_thresholds")
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
                m.d.sync += [p2.eq(1), p2_x.eq(held_x), p2_first.eq(held_first),
                             p2_address.eq(held_address),
                             p2_membranes.eq(Mux(same, new_word, membrane_read.data)),
                             p2_thresholds.eq(threshold_read.data)]
            c_valid, c_x, c_first, c_address = p2, p2_x, p2_first, p2_address
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
            m.d.sync += [self.o.valid.eq(1), self.o.payload.spikes.eq(spikes),
                         self.o.payload.membrane.eq(new_word),
                         self.o.payload.address.eq(c_address)]
        return m
