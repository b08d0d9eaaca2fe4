"""AC accumulator (synapse engine): every synaptic operation is an addition triggered by a spike.

The engine takes one frame (one sample at one time step) of input spikes as bitmap words, turns the
set bits into spike addresses (:class:`hw.addressing.SpikeAddressing`), and for every spike adds the
weights it reaches into an accumulator bank that starts each frame holding the bias. When the frame
has ended it streams the bank out, one word of ``lanes`` output channels per beat, and puts the
bias back in each word it sends, so the next frame starts right away.

Kinds of layer (``kind``):

``"linear"`` (fully connected, or a 1x1 convolution on the ``N = H * W`` pixels of a map)
    Spikes ``[N, Cin]``; input word ``n`` holds token ``n``'s ``Cin`` spikes (bit ``i``: input
    channel ``i``). A spike ``(n, i)`` adds weight row ``i`` (``Cout`` values) to output ``n``.
``"conv"`` (dense ``k x k``, stride a power of two, zero padding)
    Spikes ``[Cin, H, W]``; input word ``c * H + y`` holds row ``y`` of channel ``c`` (bit ``x``:
    column ``x``). A spike ``(c, y, x)`` adds, for every tap ``(ky, kx)`` that lands on an output
    pixel ``(oy, ox)`` (``oy * stride - padding + ky == y``, likewise for ``x``, inside the output),
    the ``Cout`` weights ``weight[:, c, ky, kx]``. Taps that fall outside are skipped: they cost
    nothing.
``"depthwise"`` (``k x k`` per channel, stride a power of two, zero padding)
    Spikes and words as for ``"conv"``; a spike ``(c, y, x)`` adds ``weight[c, ky, kx]`` to output
    channel ``c`` only, one valid tap per cycle (one lane of ``lanes`` does useful work: see
    ``docs/hw-units.md``).

Cost: one cycle per (spike, valid tap, group of ``lanes`` output channels); depthwise: one cycle per
(spike, valid tap). Words without spikes cost one cycle of the addressing unit each, overlapped with
the accumulation of earlier spikes. Read-out: one cycle per bank word.

Weight memory (``weights``): the words :func:`hw.packing.pack_weights` builds from quant's
canonical arrays (its module docstring gives the layout); the layer's other integer helpers
(kinds, widths, bounds, lane packing, the output layout, SOP counts) live in ``hw.packing`` too and
are re-exported here.

Accumulator bank (``bank``): word ``position * G + g`` (``position = oy * Wo + ox``, or the token
``n``), ``lanes`` signed ``accumulator_width``-bit sums. Read-modify-write in two cycles: read in
the cycle a tap is issued, write the sum in the next; the read port is transparent to the write
port, so a tap issued right after one to the same word reads the value being written (back-to-back
updates of one word are exact, with no stall).

This module is one component, over ~400 lines: its constructor checks, properties and one
``elaborate`` (one pipeline: addressing, decode, tap generator, read-modify-write, read-out);
splitting it would scatter that pipeline.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.addressing import SpikeAddressing, addressing_input_layout
from hw.packing import (SynapseKind, accumulator_bound, canonical_weight, layer_sops, pack_lanes,
                        pack_weights, signed_width, synapse_output_layout)
from hw.params import bits_for, ceil_div, check_int, times

__all__ = ["SynapseEngine",
           # re-exported from hw.packing, their home
           "SynapseKind", "synapse_output_layout", "pack_weights", "pack_lanes",
           "accumulator_bound", "signed_width", "layer_sops"]


class SynapseEngine(wiring.Component):
    """Accumulate the weights addressed by input spikes into a bias-initialised bank.

    Parameters
    ----------
    kind : SynapseKind or str
        ``"linear"``, ``"conv"`` or ``"depthwise"`` (module docstring).
    weight : integer array
        The layer's integer weights in quant's canonical layout (see :func:`pack_weights`).
    bias : integer array ``[Cout]``, optional
        Initial value of every output; ``None``: zeros.
    lanes : int
        Output channels accumulated per cycle (>= 1).
    height, width : int
        Input map size (conv, depthwise). Linear: ``height`` is the number of tokens ``N`` and
        ``width`` must be 1 (or omitted).
    stride : int, optional
        Conv and depthwise: 1, 2, 4, ... (a power of two). Default 1.
    padding : int, optional
        Zero padding on every side (>= 0). Default 0.
    weight_width : int, optional
        Signed bits per stored weight; default and minimum: what the weights need.
    accumulator_width : int, optional
        Signed bits per accumulator; default and minimum: what :func:`accumulator_bound` proves
        the layer can reach, so a sum never wraps.

    Members
    -------
    i : In(stream.Signature(addressing_input_layout(word_bits)))
        Spike words of a frame (``bits``, ``last``), in the order the module docstring gives.
    o : Out(stream.Signature(synapse_output_layout(...)))
        The bank, word ``position * G + g`` in ascending order, after the frame's last spike.
    """

    def __init__(self, *, kind, weight, bias=None, lanes: int, height: int, width: int = 1,
                 stride: int = 1, padding: int = 0, weight_width: int | None = None,
                 accumulator_width: int | None = None):
        try:
            self._kind = SynapseKind(kind)
        except ValueError:
            raise ValueError(f"kind must be one of {[k.value for k in SynapseKind]}, "
                             f"not {kind!r}") from None
        self._lanes = check_int("lanes", lanes, 1)
        self._height = check_int("height", height, 1)
        self._width = check_int("width", width, 1)
        self._stride = check_int("stride", stride, 1)
        self._padding = check_int("padding", padding, 0)
        weight = canonical_weight(self._kind, weight)
        self._weight = weight
        cout, cin, kernel, _ = weight.shape
        if cout < 1 or cin < 1 or kernel < 1:
            raise ValueError(f"weight must have at least one output channel, input channel and "
                             f"tap, not shape {weight.shape}")
        if bias is None:
            bias = np.zeros(cout, dtype=np.int64)
        bias = np.asarray(bias)
        if bias.dtype.kind not in "biu":
            raise TypeError(f"bias must be an integer array, not dtype {bias.dtype}")
        bias = bias.astype(np.int64).reshape(-1)
        if bias.shape[0] != cout:
            raise ValueError(f"bias has {bias.shape[0]} entries but weight has {cout} output "
                             "channels")
        self._bias = bias
        if self._kind is SynapseKind.LINEAR:
            if self._width != 1 or self._stride != 1 or self._padding != 0:
                raise ValueError("a linear layer takes width=1, stride=1, padding=0, not "
                                 f"width={width}, stride={stride}, padding={padding}")
        elif self._stride & (self._stride - 1):
            raise ValueError(f"stride must be a power of two (1, 2, 4, ...), not {stride}")
        for name, size in (("height", self._height), ("width", self._width)):
            if kernel > size + 2 * self._padding:
                raise ValueError(
                    f"kernel {kernel} is larger than the padded image: {name} {size} + 2 * "
                    f"padding {self._padding} = {size + 2 * self._padding}")
        self._kernel = kernel
        self._cin = cin if self._kind is not SynapseKind.DEPTHWISE else cout
        self._cout = cout
        self._out_height = (self._height + 2 * self._padding - kernel) // self._stride + 1
        self._out_width = (self._width + 2 * self._padding - kernel) // self._stride + 1
        self._groups = ceil_div(cout, self._lanes)

        need_weight = signed_width(min(int(weight.min()), 0), max(int(weight.max()), 0))
        if weight_width is None:
            weight_width = need_weight
        self._weight_width = check_int("weight_width", weight_width, 1)
        if self._weight_width < need_weight:
            raise ValueError(
                f"weight_width {weight_width} is narrower than the {need_weight} bits the weights "
                f"need (range [{weight.min()}, {weight.max()}])")
        low, high = accumulator_bound(weight, bias)
        need_acc = signed_width(low, high)
        if accumulator_width is None:
            accumulator_width = need_acc
        self._accumulator_width = check_int("accumulator_width", accumulator_width, 1)
        if self._accumulator_width < need_acc:
            raise ValueError(
                f"accumulator_width {accumulator_width} is narrower than the {need_acc} bits the "
                f"accumulator range [{low}, {high}] (bias plus any subset of weights) needs")
        super().__init__({
            "i": In(stream.Signature(addressing_input_layout(self.word_bits))),
            "o": Out(stream.Signature(synapse_output_layout(
                self._lanes, self._accumulator_width, self.positions, self._groups))),
        })

    # -- parameters -------------------------------------------------------------------------

    @property
    def kind(self) -> SynapseKind:
        """Kind of layer."""
        return self._kind

    @property
    def lanes(self) -> int:
        """Output channels accumulated per cycle."""
        return self._lanes

    @property
    def in_channels(self) -> int:
        """Input channels."""
        return self._cin

    @property
    def out_channels(self) -> int:
        """Output channels."""
        return self._cout

    @property
    def kernel(self) -> int:
        """Kernel size ``k`` (1 for linear)."""
        return self._kernel

    @property
    def stride(self) -> int:
        """Stride."""
        return self._stride

    @property
    def padding(self) -> int:
        """Zero padding on every side."""
        return self._padding

    @property
    def height(self) -> int:
        """Input rows (linear: tokens)."""
        return self._height

    @property
    def width(self) -> int:
        """Input columns (linear: 1)."""
        return self._width

    @property
    def out_height(self) -> int:
        """Output rows (linear: tokens)."""
        return self._out_height

    @property
    def out_width(self) -> int:
        """Output columns (linear: 1)."""
        return self._out_width

    @property
    def groups(self) -> int:
        """Groups of ``lanes`` output channels, ``G = ceil(Cout / lanes)``."""
        return self._groups

    @property
    def positions(self) -> int:
        """Output pixels (or tokens)."""
        return self._out_height * self._out_width

    @property
    def bank_depth(self) -> int:
        """Words in the accumulator bank (and beats per frame on ``o``)."""
        return self.positions * self._groups

    @property
    def word_bits(self) -> int:
        """Bits per input spike word: ``Cin`` (linear) or ``width`` (conv, depthwise)."""
        return self._cin if self._kind is SynapseKind.LINEAR else self._width

    @property
    def words_per_frame(self) -> int:
        """Input words per frame: ``N`` (linear) or ``Cin * height``."""
        if self._kind is SynapseKind.LINEAR:
            return self._height
        return self._cin * self._height

    @property
    def weight_width(self) -> int:
        """Signed bits per stored weight."""
        return self._weight_width

    @property
    def accumulator_width(self) -> int:
        """Signed bits per accumulator."""
        return self._accumulator_width

    @property
    def weight_words(self) -> list[int]:
        """Contents of the weight memory (:func:`pack_weights`)."""
        return pack_weights(self._kind, self._weight, lanes=self._lanes,
                            weight_width=self._weight_width)

    @property
    def bias_words(self) -> list[int]:
        """Contents of the bias memory: word ``g`` holds the biases of group ``g``."""
        padded = np.zeros(self._groups * self._lanes, dtype=np.int64)
        padded[:self._cout] = self._bias
        return [pack_lanes(padded[g * self._lanes:(g + 1) * self._lanes],
                           self._accumulator_width) for g in range(self._groups)]

    @property
    def latency(self) -> int:
        """Cycles from the frame's last input word being accepted to its first output beat,
        when the engine is otherwise idle: addressing (1), tap decode (1), issue (1), write (1),
        bank read (1)."""
        return 5

    @property
    def init_cycles(self) -> int:
        """Cycles after reset spent writing the bias into the bank (once, not per frame)."""
        return self.bank_depth

    # -- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        lanes, kernel, stride = self._lanes, self._kernel, self._stride
        groups, padding = self._groups, self._padding
        stride_shift = stride.bit_length() - 1
        depthwise = self._kind is SynapseKind.DEPTHWISE
        linear = self._kind is SynapseKind.LINEAR
        acc_width, w_width = self._accumulator_width, self._weight_width

        # Row coordinates of each input word travel with it as the addressing unit's tag.
        tag_layout = data.StructLayout({
            "c": unsigned(bits_for(self._cin)),
            "y": unsigned(bits_for(self._height)),
            "cg": unsigned(bits_for(self._groups)),
        })
        m.submodules.addressing = addressing = SpikeAddressing(
            width=self.word_bits, ports=1, max_words=self.words_per_frame,
            tag_shape=None if linear else tag_layout)
        row_c = Signal(tag_layout["c"].shape)
        row_y = Signal(tag_layout["y"].shape)
        row_cg = Signal(tag_layout["cg"].shape)
        row_lane = Signal(bits_for(lanes))
        m.d.comb += [
            addressing.i.valid.eq(self.i.valid),
            addressing.i.payload.bits.eq(self.i.payload.bits),
            addressing.i.payload.last.eq(self.i.payload.last),
            self.i.ready.eq(addressing.i.ready),
        ]
        if not linear:
            m.d.comb += addressing.i.payload.tag.eq(Cat(row_c, row_y, row_cg))
            with m.If(self.i.valid & self.i.ready):
                with m.If(self.i.payload.last):
                    m.d.sync += [row_c.eq(0), row_y.eq(0), row_cg.eq(0), row_lane.eq(0)]
                with m.Elif(row_y == self._height - 1):
                    m.d.sync += [row_y.eq(0), row_c.eq(row_c + 1)]
                    with m.If(row_lane == lanes - 1):
                        m.d.sync += [row_lane.eq(0), row_cg.eq(row_cg + 1)]
                    with m.Else():
                        m.d.sync += row_lane.eq(row_lane + 1)
                with m.Else():
                    m.d.sync += row_y.eq(row_y + 1)

        # --- decode: a spike's input position -> the ranges of output pixels its taps reach ---
        spike = addressing.o.payload
        if linear:
            in_c, in_y, in_x, in_cg = spike.column[0], spike.word, Const(0, 1), Const(0, 1)
        else:
            in_c, in_y, in_x, in_cg = spike.tag.c, spike.tag.y, spike.column[0], spike.tag.cg

        def reach(coordinate, out_size):
            # Output indices o with 0 <= (coordinate + padding) - o * stride <= kernel - 1.
            # Signed, so that target - (kernel - 1) may go below 0 and >> floors.
            span = bits_for(max(self._height, self._width) + padding + 1) + 2
            target = Signal(signed(span))
            low = Signal(signed(span))
            high = Signal(signed(span))
            m.d.comb += [
                target.eq(coordinate + padding),
                low.eq((target - (kernel - 1) + (stride - 1)) >> stride_shift),
                high.eq(target >> stride_shift),
            ]
            first = Signal(signed(span))
            final = Signal(signed(span))
            m.d.comb += [
                first.eq(low),
                final.eq(high),
            ]
            with m.If(low < 0):
                m.d.comb += first.eq(0)
            with m.If(high > out_size - 1):
                m.d.comb += final.eq(out_size - 1)
            return target, first, final

        target_y, first_y, final_y = reach(in_y, self._out_height)
        target_x, first_x, final_x = reach(in_x, self._out_width)
        has_taps = Signal()
        m.d.comb += has_taps.eq((spike.count != 0) & (first_y <= final_y) & (first_x <= final_x))

        coord = lambda size: unsigned(bits_for(size + 1))  # noqa: E731
        decoded = Signal()  # the decode register holds an item for the tap generator
        dec = {
            "c": Signal.like(row_c, name="dec_c"),
            "cg": Signal.like(row_cg, name="dec_cg"),
            "target_y": Signal.like(target_y, name="dec_target_y"),
            "target_x": Signal.like(target_x, name="dec_target_x"),
            "first_y": Signal(coord(self._out_height), name="dec_first_y"),
            "final_y": Signal(coord(self._out_height), name="dec_final_y"),
            "first_x": Signal(coord(self._out_width), name="dec_first_x"),
            "final_x": Signal(coord(self._out_width), name="dec_final_x"),
            "taps": Signal(name="dec_taps"),
            "last": Signal(name="dec_last"),
        }
        take_decoded = Signal()  # the generator takes the decoded item this cycle
        m.d.comb += addressing.o.ready.eq(~decoded | take_decoded)
        with m.If(take_decoded):
            m.d.sync += decoded.eq(0)
        with m.If(addressing.o.valid & addressing.o.ready & (has_taps | spike.last)):
            # A spike whose taps all fall outside is dropped here, unless it ends the frame.
            m.d.sync += [
                decoded.eq(1),
                dec["c"].eq(in_c), dec["cg"].eq(in_cg),
                dec["target_y"].eq(target_y), dec["target_x"].eq(target_x),
                dec["first_y"].eq(first_y), dec["final_y"].eq(final_y),
                dec["first_x"].eq(first_x), dec["final_x"].eq(final_x),
                dec["taps"].eq(has_taps), dec["last"].eq(spike.last),
            ]

        # --- tap generator: one (output pixel, group) per cycle for the current spike ---
        busy = Signal()
        gen = {name: Signal.like(sig, name=f"gen_{name}") for name, sig in dec.items()}
        gen_oy = Signal.like(dec["first_y"], name="gen_oy")
        gen_ox = Signal.like(dec["first_x"], name="gen_ox")
        gen_g = Signal(bits_for(groups), name="gen_g")
        frame_done = Signal()  # the frame's last item has been issued
        reading = Signal()     # streaming the bank out
        initialising = Signal(init=1)  # writing the bias into the bank after reset

        accumulating = Signal()
        m.d.comb += accumulating.eq(~reading & ~initialising & ~frame_done)
        group_end = gen_g == (0 if depthwise else groups - 1)
        item_end = Signal()
        m.d.comb += item_end.eq(~gen["taps"] | (group_end & (gen_ox == gen["final_x"])
                                                & (gen_oy == gen["final_y"])))
        issue = Signal()
        m.d.comb += issue.eq(busy & gen["taps"] & accumulating)
        with m.If(busy & accumulating):
            with m.If(item_end):
                m.d.sync += busy.eq(0)
                with m.If(gen["last"]):
                    m.d.sync += frame_done.eq(1)
            with m.Elif(~group_end):
                m.d.sync += gen_g.eq(gen_g + 1)
            with m.Elif(gen_ox != gen["final_x"]):
                m.d.sync += [gen_g.eq(0), gen_ox.eq(gen_ox + 1)]
            with m.Else():
                m.d.sync += [gen_g.eq(0), gen_ox.eq(gen["first_x"]), gen_oy.eq(gen_oy + 1)]
        m.d.comb += take_decoded.eq(decoded & accumulating
                                    & (~busy | (item_end & ~gen["last"])))
        with m.If(take_decoded):
            m.d.sync += [busy.eq(1), gen_g.eq(0), gen_oy.eq(dec["first_y"]),
                         gen_ox.eq(dec["first_x"])]
            m.d.sync += [gen[name].eq(sig) for name, sig in dec.items()]

        ky = Signal(bits_for(kernel), name="ky")
        kx = Signal(bits_for(kernel), name="kx")
        m.d.comb += [
            ky.eq(gen["target_y"] - (gen_oy << stride_shift)),
            kx.eq(gen["target_x"] - (gen_ox << stride_shift)),
        ]
        weight_words = self.weight_words
        bank_depth = self.bank_depth
        weight_address = Signal(bits_for(len(weight_words)))
        bank_address = Signal(bits_for(bank_depth))
        # Constant factors as shifts and adds (hw.params.times): no multiplier outside the stem.
        tap = times(times(gen["c"], kernel) + ky, kernel) + kx
        position = times(gen_oy, self._out_width) + gen_ox
        if depthwise:
            m.d.comb += [
                weight_address.eq(tap),
                bank_address.eq(times(position, groups) + gen["cg"]),
            ]
        else:
            m.d.comb += [
                weight_address.eq(times(tap, groups) + gen_g),
                bank_address.eq(times(position, groups) + gen_g),
            ]

        # --- memories ---
        word_bits = lanes * acc_width
        m.submodules.weights = weights = Memory(
            shape=unsigned(lanes * w_width), depth=max(2, len(weight_words)),
            init=weight_words)
        # Depths of at least 2: a 1-word memory would have a 0-bit address, which the Verilog
        # back end emits as a [-1:0] vector that Verilator refuses.
        m.submodules.bank = bank = Memory(shape=unsigned(word_bits), depth=max(2, bank_depth),
                                          init=[])  # the bias goes in after reset
        m.submodules.biases = biases = Memory(
            shape=unsigned(word_bits), depth=max(2, groups), init=self.bias_words)
        weight_read = weights.read_port()
        bank_write = bank.write_port()
        bank_read = bank.read_port(transparent_for=(bank_write,))
        bias_read = biases.read_port(domain="comb")
        m.d.comb += weight_read.addr.eq(weight_address)

        # --- read-modify-write: read on issue, add and write in the next cycle ---
        pending = Signal()
        pending_address = Signal.like(bank_address)
        m.d.sync += [pending.eq(issue), pending_address.eq(bank_address)]
        total = Signal(word_bits)
        for lane in range(lanes):
            old = bank_read.data[lane * acc_width:(lane + 1) * acc_width].as_signed()
            add = weight_read.data[lane * w_width:(lane + 1) * w_width].as_signed()
            m.d.comb += total[lane * acc_width:(lane + 1) * acc_width].eq(old + add)

        # --- read-out of the bank, putting the bias back in each word sent ---
        read_next = Signal(bits_for(bank_depth + 1))  # next bank word to read
        out_address = Signal(bits_for(bank_depth))
        out_position = Signal.like(self.o.payload.position)
        out_group = Signal(bits_for(groups))
        next_position = Signal.like(out_position)
        next_group = Signal.like(out_group)
        init_address = Signal(bits_for(bank_depth))
        advance = Signal()
        m.d.comb += [
            self.o.payload.values.eq(bank_read.data),
            self.o.payload.position.eq(out_position),
            self.o.payload.group.eq(out_group),
            self.o.payload.last.eq(out_address == bank_depth - 1),
            bias_read.addr.eq(out_group),
            advance.eq(~self.o.valid | self.o.ready),
        ]

        with m.If(initialising):
            m.d.comb += [bank_write.addr.eq(init_address), bank_write.data.eq(bias_read.data),
                         bank_write.en.eq(1), bias_read.addr.eq(next_group)]
            m.d.sync += init_address.eq(init_address + 1)
            with m.If(next_group == groups - 1):
                m.d.sync += next_group.eq(0)
            with m.Else():
                m.d.sync += next_group.eq(next_group + 1)
            with m.If(init_address == bank_depth - 1):
                m.d.sync += [initialising.eq(0), next_group.eq(0)]
        with m.Elif(reading):
            m.d.comb += [bank_read.addr.eq(read_next), bank_read.en.eq(advance),
                         bank_write.addr.eq(out_address), bank_write.data.eq(bias_read.data),
                         bank_write.en.eq(self.o.valid & self.o.ready)]
            with m.If(advance):
                with m.If(read_next == bank_depth):
                    m.d.sync += [self.o.valid.eq(0), reading.eq(0), read_next.eq(0),
                                 next_position.eq(0), next_group.eq(0)]
                with m.Else():
                    m.d.sync += [self.o.valid.eq(1), out_address.eq(read_next),
                                 out_position.eq(next_position), out_group.eq(next_group),
                                 read_next.eq(read_next + 1)]
                    with m.If(next_group == groups - 1):
                        m.d.sync += [next_group.eq(0), next_position.eq(next_position + 1)]
                    with m.Else():
                        m.d.sync += next_group.eq(next_group + 1)
        with m.Else():
            m.d.comb += [bank_read.addr.eq(bank_address), bank_read.en.eq(1),
                         bank_write.addr.eq(pending_address), bank_write.data.eq(total),
                         bank_write.en.eq(pending)]
            with m.If(frame_done & ~pending):
                m.d.sync += [reading.eq(1), frame_done.eq(0)]
        return m
