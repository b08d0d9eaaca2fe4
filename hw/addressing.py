"""Spike addressing (address-event representation): turn spike bitmaps into set-bit addresses.

A *frame* is a spike bitmap sent as a sequence of ``width``-bit words, word 0 first; the beat
carrying the frame's final word has ``last`` set. Bit ``b`` of word ``w`` is the spike at flat
address ``w * width + b`` (bit 0, the least significant, is the lowest address). The unit emits the
addresses of the set bits, up to ``ports`` per output beat, in ascending address order: every beat
holds addresses of one word only, lowest first, and beats follow word order.

Cost: a word with ``n`` set bits occupies the unit for ``max(1, ceil(n / ports))`` cycles; a word
with no set bit produces no output beat (it only advances the address), except a frame's last word,
which always produces a beat (possibly with ``count == 0``) so that ``last`` reaches the consumer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import bits_for, check_int, log2_ceil

__all__ = ["SpikeAddressing", "addressing_input_layout", "addressing_output_layout",
           "check_int", "bits_for"]


def addressing_input_layout(width: int, tag_shape=None) -> data.StructLayout:
    """Return the payload layout of :class:`SpikeAddressing`'s input stream.

    Fields, first in the least significant bits: ``bits`` (the spike word, bit 0 lowest address),
    ``last`` (1: final word of the frame) and, when ``tag_shape`` is given, ``tag`` (carried
    unchanged to every output beat made from this word).
    """
    fields = {"bits": width, "last": 1}
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


def addressing_output_layout(width: int, ports: int, max_words: int,
                             tag_shape=None) -> data.StructLayout:
    """Return the payload layout of :class:`SpikeAddressing`'s output stream.

    Fields, first in the least significant bits:

    ``count``
        Number of valid entries (``0 .. ports``); entries ``count ..`` of ``address`` and
        ``column`` are 0 (any value with ``SpikeAddressing(zero_unused=False)``).
    ``address``
        ``ports`` flat addresses ``word * width + column``, ascending.
    ``column``
        ``ports`` bit positions within the word.
    ``word``
        Index of the word, within its frame, that these addresses come from.
    ``last``
        1 on the final beat of a frame.
    ``tag``
        Only with ``tag_shape``: the tag of the word.
    """
    fields = {
        "count": unsigned((ports).bit_length()),
        "address": data.ArrayLayout(unsigned(bits_for(max_words * width)), ports),
        "column": data.ArrayLayout(unsigned(bits_for(width)), ports),
        "word": unsigned(bits_for(max_words)),
        "last": 1,
    }
    if tag_shape is not None:
        fields["tag"] = tag_shape
    return data.StructLayout(fields)


class SpikeAddressing(wiring.Component):
    """Emit the addresses of the set bits of spike bitmap words, up to ``ports`` per cycle.

    Parameters
    ----------
    width : int
        Bits per input word (>= 1; need not be a power of two).
    ports : int, optional
        Most addresses per output beat (1 .. ``width``); default 1.
    max_words : int
        Most words in one frame (>= 1). It sizes the address and word counters; a longer frame
        would wrap them, so a producer must end frames (``last``) within this many words.
    tag_shape : shape-castable, optional
        Shape of a side-band ``tag`` carried from each input word to its output beats (the
        synapse engine passes row coordinates this way). ``None``: no tag field.
    registered : bool, optional
        ``False`` (default): the output columns come from priority encoders on the word being
        sent. ``True``: the columns of the next beat, its ``has`` flags and the final-beat flag
        are computed a cycle ahead into registers (from the input word when a word is taken,
        else from the bits left after the current beat), so ``o.payload.column`` comes from
        registers, ``count``, ``last`` and ``address`` from a gate of registers (or the base
        adder for a width that is not a power of two), and ``i.ready`` is one gate of
        ``o.ready`` and registers.
        The beats and their cycles are exactly those of ``False``; it costs the peel logic twice
        (input word and held word) and ``ports`` column registers.
    zero_unused : bool, optional
        ``True`` (default): entries ``count ..`` of ``address`` and ``column`` are 0.
        ``False``: they hold any value (no gate on the way out: with ``registered`` the columns
        are the column registers themselves, for a consumer whose address fans out widely and
        that looks at an entry only below ``count``).

    Members
    -------
    i : In(stream.Signature(addressing_input_layout(width, tag_shape)))
        Spike words.
    o : Out(stream.Signature(addressing_output_layout(width, ports, max_words, tag_shape)))
        Set-bit addresses; the first beat of a word appears :attr:`latency` cycles after the word
        is accepted, and the next word is accepted in the cycle its final beat is taken, so
        words of at most ``ports`` set bits flow at one per cycle.

    Notes
    -----
    ``o.valid`` comes from a register; ``i.ready`` depends combinationally on ``o.ready`` (the
    unit takes a new word in the cycle its current word's final beat leaves).
    """

    def __init__(self, *, width: int, ports: int = 1, max_words: int, tag_shape=None,
                 registered: bool = False, zero_unused: bool = True):
        self._registered = bool(registered)
        self._zero_unused = bool(zero_unused)
        self._width = check_int("width", width, 1)
        self._ports = check_int("ports", ports, 1, self._width)
        self._max_words = check_int("max_words", max_words, 1)
        if tag_shape is not None:
            try:
                Shape.cast(tag_shape)
            except TypeError:
                raise TypeError(f"tag_shape must be shape-castable, not {tag_shape!r}") from None
        self._tag_shape = tag_shape
        super().__init__({
            "i": In(stream.Signature(addressing_input_layout(self._width, tag_shape))),
            "o": Out(stream.Signature(addressing_output_layout(
                self._width, self._ports, self._max_words, tag_shape))),
        })

    @property
    def width(self) -> int:
        """Bits per input word."""
        return self._width

    @property
    def ports(self) -> int:
        """Most addresses per output beat."""
        return self._ports

    @property
    def max_words(self) -> int:
        """Most words per frame."""
        return self._max_words

    @property
    def tag_shape(self):
        """Shape of the side-band tag, or ``None``."""
        return self._tag_shape

    @property
    def zero_unused(self) -> bool:
        """Whether entries past ``count`` read as 0 (see the parameter)."""
        return self._zero_unused

    @property
    def registered(self) -> bool:
        """Whether the output columns and flags come from registers (see the parameter)."""
        return self._registered

    @property
    def address_width(self) -> int:
        """Width of each output address."""
        return bits_for(self._max_words * self._width)

    def _drive_entry(self, m, port, column, address, used):
        """Drive output entry ``port``: gated by ``used`` with ``zero_unused``, else as is."""
        entry = [self.o.payload.column[port].eq(column), self.o.payload.address[port].eq(address)]
        if self._zero_unused:
            with m.If(used):
                m.d.comb += entry
        else:
            m.d.comb += entry

    @property
    def latency(self) -> int:
        """Cycles from an accepted word to its first output beat, without backpressure."""
        return 1

    def elaborate(self, platform):
        if self._registered:
            return self._elaborate_registered()
        m = Module()
        width, ports = self._width, self._ports
        layout = self.o.payload.shape()

        # The word being split into addresses (its bits still to send), with its position.
        held = Signal()
        remaining = Signal(width)
        held_word = Signal.like(self.o.payload.word)
        held_base = Signal(self.address_width)
        held_last = Signal()
        # Position of the next input word within the frame.
        next_word = Signal.like(held_word)
        next_base = Signal.like(held_base)

        # Set bits of ``remaining`` not yet sent. Counting them, instead of asking whether the
        # peeled word is empty, keeps the word's carry chains off the handshake logic: the loop
        # from ``remaining`` back into itself is only the ``ports`` peels and a multiplexer.
        pending = Signal(range(width + 1))
        final_beat = Signal()  # the current beat sends the word's last set bits
        # (With ports >= width every beat is final; a comparison would be constant.)
        m.d.comb += final_beat.eq(1 if ports >= width else pending <= ports)

        # Peel the lowest set bit ``ports`` times: x & (x - 1) clears it. The column comes from a
        # priority encoder on the word itself (no carry chain on the way to the output).
        rest = remaining
        found = []
        column_shape = layout["column"].shape.elem_shape
        for port in range(ports):
            column = Signal(column_shape, name=f"column_{port}")
            for bit in reversed(range(width)):  # the last assignment wins: the lowest set bit
                with m.If(rest[bit]):
                    m.d.comb += column.eq(bit)
            has = Signal(name=f"has_{port}")
            m.d.comb += has.eq(pending > port)
            if width & (width - 1) == 0:
                # A power-of-two word: the base is the word index shifted, so no adder.
                address = Cat(column[:log2_ceil(width)], held_word)
            else:
                address = held_base + column
            self._drive_entry(m, port, column, address, has)
            found.append(has)
            after = Signal(width, name=f"remaining_{port + 1}")
            m.d.comb += after.eq(rest & (rest - 1))
            rest = after
        m.d.comb += [
            self.o.valid.eq(held),
            self.o.payload.count.eq(Mux(final_beat, pending, ports)),
            self.o.payload.word.eq(held_word),
            self.o.payload.last.eq(held_last & final_beat),
        ]
        if self._tag_shape is not None:
            held_tag = Signal(self._tag_shape)
            m.d.comb += self.o.payload.tag.eq(held_tag)

        finishing = Signal()  # the current word's final beat leaves this cycle
        m.d.comb += [
            finishing.eq(held & self.o.ready & final_beat),
            self.i.ready.eq(~held | finishing),
        ]
        with m.If(held & self.o.ready):
            m.d.sync += [remaining.eq(rest), pending.eq(pending - ports)]
        with m.If(finishing):
            m.d.sync += [held.eq(0), pending.eq(0)]

        with m.If(self.i.valid & self.i.ready):
            self._count_words(m, next_word, next_base)
            # An empty word makes no beat unless it ends the frame.
            with m.If(self.i.payload.bits.any() | self.i.payload.last):
                m.d.sync += [
                    held.eq(1),
                    remaining.eq(self.i.payload.bits),
                    pending.eq(sum(self.i.payload.bits[i] for i in range(width))),
                    held_word.eq(next_word),
                    held_base.eq(next_base),
                    held_last.eq(self.i.payload.last),
                ]
                if self._tag_shape is not None:
                    m.d.sync += held_tag.eq(self.i.payload.tag)
        return m

    @staticmethod
    def _lowest(bits):
        """Return (any set bit, index of the lowest set bit) of ``bits``, as a radix-4 tree.

        Each level picks the first of (up to) four groups that has a set bit: two LUT levels
        per four-fold width, no carry chain. The index is meaningless when no bit is set.
        """
        width = len(bits)
        if width <= 4:
            index = Const(width - 1, 2)
            for bit in reversed(range(width - 1)):
                index = Mux(bits[bit], bit, index)
            return bits.any(), index
        size = 4
        while size * 4 < width:
            size *= 4
        groups = [SpikeAddressing._lowest(bits[start:start + size])
                  for start in range(0, width, size)]
        group_any = Cat(*(found for found, _ in groups))
        _, group = SpikeAddressing._lowest(group_any)
        low = groups[-1][1]
        for found, index in reversed(groups[:-1]):
            low = Mux(found, index, low)
        return group_any.any(), Cat(low[:log2_ceil(size)], group[:2])

    @staticmethod
    def _two_or_more(bits):
        """Return (any set bit, at least two set bits) of ``bits``, as a balanced tree."""
        if len(bits) == 1:
            return bits[0], Const(0, 1)
        half = len(bits) // 2
        low_any, low_two = SpikeAddressing._two_or_more(bits[:half])
        high_any, high_two = SpikeAddressing._two_or_more(bits[half:])
        return low_any | high_any, low_two | high_two | (low_any & high_any)

    def _peel(self, m: Module, source, prefix: str):
        """Peel the lowest set bit of ``source`` ``ports`` times.

        Return (columns, has, final, rest): the column of each peeled bit (any value where none
        is left), whether each peel found a bit, whether no bit is left after the ``ports`` peels,
        and the bits left.
        """
        column_shape = self.o.payload.shape()["column"].shape.elem_shape
        rest = source
        columns, has = [], []
        for port in range(self._ports):
            found, index = self._lowest(rest)
            column = Signal(column_shape, name=f"{prefix}_column_{port}")
            has_bit = Signal(name=f"{prefix}_has_{port}")
            # (Not cleared when nothing is found: the output shows a column only with its flag.)
            m.d.comb += [column.eq(index), has_bit.eq(found)]
            after = Signal(self._width, name=f"{prefix}_rest_{port + 1}")
            m.d.comb += after.eq(rest & (rest - 1))
            columns.append(column)
            has.append(has_bit)
            rest = after
        final = Signal(name=f"{prefix}_final")
        if self._ports == 1:
            # At most one set bit: a tree on the word itself, not on the peeled word's carry chain.
            m.d.comb += final.eq(~self._two_or_more(source)[1])
        else:
            m.d.comb += final.eq(~rest.any())
        return columns, has, final, rest

    def _elaborate_registered(self):
        """The ``registered=True`` unit: same beats and cycles, register-driven outputs."""
        m = Module()
        width, ports = self._width, self._ports
        column_shape = self.o.payload.shape()["column"].shape.elem_shape

        held = Signal()
        rest = Signal(width)                # set bits left after the current beat
        columns = [Signal(column_shape, name=f"column_{port}") for port in range(ports)]
        has = [Signal(name=f"has_{port}") for port in range(ports)]  # beat entry ``port`` is used
        final_beat = Signal()               # the current beat sends the word's last set bits
        held_word = Signal.like(self.o.payload.word)
        held_base = Signal(self.address_width)
        held_last = Signal()
        next_word = Signal.like(held_word)
        next_base = Signal.like(held_base)

        for port in range(ports):
            if width & (width - 1) == 0:
                address = Cat(columns[port][:log2_ceil(width)], held_word)
            else:
                address = held_base + columns[port]
            self._drive_entry(m, port, columns[port], address, has[port])
        m.d.comb += [
            self.o.valid.eq(held),
            # The used entries are a prefix: their number is the count (``ports`` unless final).
            self.o.payload.count.eq(sum(has)),
            self.o.payload.word.eq(held_word),
            self.o.payload.last.eq(held_last & final_beat),
        ]
        if self._tag_shape is not None:
            held_tag = Signal(self._tag_shape)
            m.d.comb += self.o.payload.tag.eq(held_tag)

        # The next beat, from the held word's remaining bits or from a newly taken word. Both
        # are computed; the handshake only selects which one the registers load.
        next_columns, next_has, next_final, next_rest = self._peel(m, rest, "next")
        in_columns, in_has, in_final, in_rest = self._peel(m, self.i.payload.bits, "in")

        finishing = Signal()
        m.d.comb += [
            finishing.eq(held & self.o.ready & final_beat),
            self.i.ready.eq(~held | finishing),
        ]
        # The beat registers load the input word's first beat whenever the unit is ready, a
        # word offered or not: they matter only while ``held``, and ``held`` is set only by a
        # word that makes a beat (an empty word peels to the same all-clear state that finishing
        # a word leaves). So only ``held`` waits on the input word's content.
        with m.If(self.i.ready):
            m.d.sync += [
                rest.eq(in_rest),
                final_beat.eq(in_final),
                held_word.eq(next_word),
                held_base.eq(next_base),
                held_last.eq(self.i.payload.last),
            ]
            m.d.sync += [c.eq(n) for c, n in zip(columns, in_columns)]
            m.d.sync += [h.eq(n) for h, n in zip(has, in_has)]
            if self._tag_shape is not None:
                m.d.sync += held_tag.eq(self.i.payload.tag)
        with m.Elif(self.o.ready):  # held: the next beat of the held word
            m.d.sync += [rest.eq(next_rest), final_beat.eq(next_final)]
            m.d.sync += [c.eq(n) for c, n in zip(columns, next_columns)]
            m.d.sync += [h.eq(n) for h, n in zip(has, next_has)]
        with m.If(finishing):
            m.d.sync += held.eq(0)

        with m.If(self.i.valid & self.i.ready):
            self._count_words(m, next_word, next_base)
            # An empty word makes no beat unless it ends the frame.
            with m.If(self.i.payload.bits.any() | self.i.payload.last):
                m.d.sync += held.eq(1)
        return m

    def _count_words(self, m, next_word, next_base):
        """In an accepting cycle: step the index and base address of the frame's next word."""
        with m.If(self.i.payload.last):
            m.d.sync += [next_word.eq(0), next_base.eq(0)]
        with m.Else():
            m.d.sync += [next_word.eq(next_word + 1), next_base.eq(next_base + self._width)]
