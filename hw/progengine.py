"""Programmable synapse engine: one AC accumulator shared by every convolution of a network.

:class:`hw.accumulator.SynapseEngine` computes one layer whose geometry and weights are fixed when
the hardware is built. :class:`ProgEngine` is the time-multiplexed version: the layer's geometry
arrives at run time on the ``config`` port (:func:`engine_config_layout`), the weights are read from
a memory outside the engine through a synchronous read port (``weight``, a
:class:`amaranth.lib.memory.ReadPort.Signature`), and the biases of every layer sit in one internal memory. Only dense ``k x k``
convolutions (stride a power of two, zero padding) are computed; a linear layer is the ``k = 1``
case on a ``[Cin, N, 1]`` map.

No multiplier is built: every run-time address is made of shifts by small run-time amounts, ORs and
at most one addition. That is why the layouts below pad the kernel, the output width and the number
of output groups to powers of two (``2**kernel_log``, ``2**out_width_log``, ``2**groups_log``).

Input frame (``i``)
    Spikes ``[Cin, H, W]``; word ``c * H + y`` holds row ``y`` of channel ``c`` (bit ``x``: column
    ``x``; bits at ``x >= W`` zero); ``last`` on word ``Cin * H - 1``. ``Cin`` is not configured:
    the frame ends on ``last``.
Weight memory (outside, ``weight_depth`` words of ``lanes`` signed ``weight_width``-bit weights,
lane 0 in the least significant bits)
    The weight of output channel ``g * lanes + l`` for input channel ``c`` and tap ``(ky, kx)`` is
    lane ``l`` of word ``weight_base + ((((c << kl) | ky) << kl | kx) << gl | g)`` (``kl =
    kernel_log``, ``gl = groups_log``). Holes (``ky, kx >= k``, ``g >= G``, channels ``>= Cout``)
    are zero. A layer occupies ``Cin << (2 * kl + gl)`` words: :func:`pack_layer_weights`.
Bias memory (inside, ``bias_words``)
    Word ``bias_base + g`` holds the ``lanes`` signed ``accumulator_width``-bit biases of output
    channels ``g * lanes + l``: :func:`pack_layer_biases`.
Accumulator bank (inside, ``bank_depth`` words of ``lanes`` signed ``accumulator_width``-bit sums)
    Word ``((oy << owl) | ox) << gl | g`` (``owl = out_width_log``) holds the partial sums of output
    pixel ``(oy, ox)``, group ``g``; a layer needs ``out_height << (owl + gl)`` words. The bank
    holds zero between frames: an init pass writes 0 everywhere after reset, and the read-out
    writes 0 back into each word it reads. The read-out adds the bias on the way out.
Output (``o``)
    One beat per (``oy``, ``ox``, ``group``), group fastest, then ``ox``, then ``oy``, after the
    frame's last spike has been accumulated: ``values`` (bank word plus bias), the coordinates,
    ``index`` (``0 .. out_height * out_width * G - 1``) and ``last``.

Pipeline: row counter (tags each input word with ``(c, y)`` using ``config.height``) -> input
register slice (a register and a skid register: ``i.ready`` is one LUT of flip-flops; with
``input_buffer`` a stage register, then the register and a FIFO, see below) ->
:class:`hw.addressing.SpikeAddressing` (one spike ``(c, y, x)`` per cycle) -> a two-entry spike
queue -> decode (the output rows and columns the spike's taps reach: ``first = max(0, ceil((t - k + 1) /
s))``, ``final = min(out - 1, floor(t / s))`` with ``t = coordinate + padding``, as arithmetic
right shifts by ``stride_log``, in two registered steps; spikes without a tap are dropped unless
they end the frame) -> tap
generator (one ``(oy, ox, g)`` per cycle, ``g`` fastest, then ``ox``, then ``oy``; ``ky = t_y -
(oy << stride_log)`` and ``kx`` likewise are counters stepped down by the stride; each counter's
end is a registered flag set one step ahead) ->
an address register (bank and weight addresses) -> read-modify-write of the bank in four stages:
issue (bank read and weight fetch from the address register), R (the bank word and the weight
word registered raw, nothing but wires after the block RAM), C (add) and D (write). No path runs
from the block RAM's output through the adder into its input in one cycle. The bank's read port
is not transparent; an update whose read misses the sums of the three updates before it (written
on or after its read's clock edge) takes the newest of them, of the same word, instead of the RAM
data (address compares in R, a registered select in C), so updates of one word 1, 2 or 3 cycles
apart are exact without a stall.

Column folding (``max_fold_log > 0``; a layer's ``fold_log``, ``F = 2**fold_log``)
    A layer of at most ``lanes / F`` output channels (so ``G = 1``) would leave most lanes idle:
    folded, a bank word holds ``F`` neighbouring output columns, column ``ox`` of word ``((oy <<
    owl) | (ox >> fold_log))`` in lanes ``(ox % F) * lanes / F + l``, and one update adds a
    spike's taps into all ``F`` columns at once. The tap generator steps words instead of
    columns (``kx`` of the word's column 0, ``u``, stepped by ``F * stride``), and the weight
    word ``((c << kl) | ky) << xl | u`` (``xl = kernel_x_log``, ``2**xl >= k + (F - 1) *
    stride``) holds in lanes ``j * lanes / F + l`` the weight of tap ``(ky, u - j * stride)``,
    zero where that tap is outside the kernel (:func:`pack_layer_weights`): the taps a column
    of the word does not reach add zero, so no run-time mask is needed. A column past
    ``out_width`` collects sums nobody reads. The read-out reads a word once per column (one
    beat per column as before), moves the column's lanes down to lane 0 and clears the others
    (``max_fold_log`` levels of 2:1 multiplexers and an AND in front of the bias adder), and
    writes zero back after the word's last column: the output beats are exactly those of the
    unfolded layer. Cost: one cycle per (spike, valid ``ky``, bank word its valid columns fall
    in). The weight memory holds ``2**xl`` words a row instead of ``2**kl``. Lanes must be a
    power of two; not built for a weight ring. With ``max_fold_log = 0`` none of it is built.

Bit planes (``max_planes > 1``; a layer's ``planes``, ``P``)
    SepConv unfused (``hw.planes``): a 1x1 layer whose input channel ``c' = c * P + p`` is bit
    plane ``p`` of weight channel ``c``. The row counter steps ``p`` from 0 to ``P - 1`` before
    ``c``, ``p`` travels with the spike beside ``c`` (the tag, the queue, decode, the tap
    generator, the address register, R), and C adds the weight shifted left by ``p``: one
    shifter a lane in front of the adder. The weight memory holds one word a weight channel, as
    for any layer (``Cin / P`` channels: ``LayerConfig.weight_channels``), so the weights keep
    their width. Not built for a weight ring or with column folding; with ``max_planes = 1``
    none of it is built.

Cost: one cycle per (spike, valid tap, group of ``lanes`` output channels). Words without spikes
cost one cycle of the addressing unit each, overlapped with the accumulation of earlier spikes.
With ``input_buffer = B`` (2..64) every word enters a stage register, which drops a word
without spikes that does not end the frame and passes the others on to a slice that holds up
to ``B`` words (the input register and a FIFO of ``B - 1``): an empty word costs nothing while
fewer than ``B`` words wait, so runs of empty rows (channels that did not fire) hide behind the
accumulation instead of stalling the producer one cycle a word. ``i.ready`` is "the stage's
word leaves": it is empty, or dropped, or the FIFO has room (``level != depth``); the drop
decision reads the stage's flip-flops (an OR over its bits), never the producer's output. The addressing unit, the queue and every
later stage are unchanged; the outputs are the same, only the cycles differ
(``sim.perf.engine_frame_timing``).
Read-out: bank read, a register of the raw bank and bias words, then the output register
(adds the bias): one cycle per output beat plus about five cycles of pipeline fill. Its counters,
end flags and bank and bias addresses are registers stepped incrementally (no run-time shift),
and ``o.ready`` reaches each stage's advance through one LUT (no chain through the stages).
After reset, ``bank_depth`` cycles clear the bank (``ready`` rises when done; no input is taken
before). The address stage holds shift multiplexers and one adder (``weight_base`` plus the tap
index); the spike queue's ``ready`` towards the addressing unit is a flip-flop and its slots take
the addressing unit's output with no multiplexer in front; decode takes two registered steps:
one adder and the run-time shift per coordinate, then the clamps and range compares.

A layer's side of this contract (the ``config`` and output layouts, :class:`LayerConfig`,
:func:`layer_config` and the memory images :func:`pack_layer_weights` and
:func:`pack_layer_biases`) lives in ``hw/progengine_config.py`` and is re-exported here. This file
stays over ~400 lines because it is one component whose ``elaborate`` is one pipeline (input slice,
addressing, spike queue, decode, tap generator, read-modify-write, read-out); splitting it would
scatter that pipeline across files.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from hw.addressing import SpikeAddressing, addressing_input_layout
from hw.params import NO_RW_CHECK, bits_for, check_int, rom_attrs
from hw.progengine_config import (LayerConfig, _range, band_layer, engine_config_layout,
                                  engine_output_layout, fold_log_for, layer_config, max_x_log,
                                  pack_layer_biases, pack_layer_weights)

__all__ = ["ProgEngine",
           # re-exported from hw.progengine_config, their home
           "LayerConfig", "layer_config", "band_layer", "fold_log_for", "engine_config_layout",
           "engine_output_layout", "pack_layer_weights", "pack_layer_biases"]


class ProgEngine(wiring.Component):
    """Accumulate spikes through run-time configured convolution layers (module docstring).

    Parameters
    ----------
    lanes : int
        Output channels accumulated per cycle (>= 1).
    word_bits : int
        Bits per input spike word: the widest input map's width (>= 1).
    max_words : int
        Most input words in a frame, the largest ``Cin * height`` (>= 1).
    max_channels : int
        Most input channels ``Cin`` (>= 1).
    max_side : int
        Largest of every layer's height, width, out_height and out_width (>= 1).
    max_padding : int
        Largest padding (>= 0).
    max_kernel_log, max_stride_log, max_groups_log : int
        Largest ``kernel_log``, ``stride_log`` and ``groups_log`` (>= 0 each; kernel_log <= 4,
        stride_log <= 4, groups_log <= 12).
    weight_width : int
        Signed bits per weight (>= 1).
    accumulator_width : int
        Signed bits per bank value and per output value (>= weight_width). The caller guarantees
        that every partial sum and every sum plus bias fits.
    weight_depth : int
        Words of the outside weight memory (>= 1); ``weight.addr`` has ``bits_for(weight_depth)``
        bits.
    bank_depth : int
        Words of the accumulator bank (>= 1); every layer needs ``out_height << (out_width_log +
        groups_log)`` of them.
    bias_words : list of int
        Contents of the bias memory (at least one word; :func:`pack_layer_biases`).
    max_fold_log : int
        0 (default): no column folding. Otherwise layers may fold up to ``2**max_fold_log``
        output columns a bank word (module docstring, "Column folding"); ``lanes`` must be a
        power of two of at least that many, and ``ring_pointer_bits`` 0.
    input_buffer : int
        0 (default): the input register slice takes every word. 2..64: words the input slice
        holds, words without spikes dropped on arrival (module docstring, "Cost").
    ring_pointer_bits : int
        0 (default): the weight memory holds every layer at its ``weight_base``. Otherwise the
        weight memory is a ring of ``weight_depth`` words (a power of two) that
        :class:`hw.weightfetch.WeightFetcher` fills block by block: a layer's ``weight_base`` is
        its ring base, addresses wrap modulo ``weight_depth``, and the ports below (this many
        bits wide) tell the fetcher which blocks the engine needs and has finished with.
    bias_memory : str
        Where the inside bias memory goes (:data:`hw.params.ROM_STYLES`): ``"logic"`` (default,
        the synthesis tool's choice) or ``"block"`` (block RAM: the bias read is a registered
        block-RAM read instead of a LUT-and-mux tree from ``bias_address``). Without effect when
        ``bias_port`` is set.
    bands : bool
        False (default): both axes share the layer's ``padding``. True: the ``config`` port adds
        ``padding_y``, the rows' top padding, so the engine can compute a band of a layer's output
        rows from the input rows it reaches (:func:`hw.progengine_config.band_layer`), its bank
        holding one band rather than the whole map. The Verilog without bands is unchanged.

    Members
    -------
    config : In(engine_config_layout(...))
        The layer; held stable from before a frame's first input word until its last output beat
        has been taken.
    i : In(stream.Signature(addressing_input_layout(word_bits)))
        Spike words of a frame (``bits``, ``last``), word ``c * height + y``.
    o : Out(stream.Signature(engine_output_layout(...)))
        The frame's outputs, ``(oy, ox, group)`` in ascending order, group fastest.
    weight : In(ReadPort.Signature(addr_width=weight_address_width, shape=lanes * weight_width))
        The weight memory's synchronous read port, driven by the engine (``addr``, ``en``; the
        word requested arrives on ``data`` the cycle after).
    bias : In(ReadPort.Signature(addr_width=bias_address_width, shape=lanes * accumulator_width))
        Only with ``bias_port=True``: the bias memory's read port, outside the engine (the same
        timing as the weight port; words :attr:`bias_words`). Otherwise the biases sit in a
        memory inside.
    ready : Out(1)
        1 once the bank has been cleared after reset.
    frame_start : In(1)
        Ring mode only: pulse before a frame's first word (``block_done`` restarts at 0).
    block_need : Out(ring_pointer_bits)
        Ring mode only: ``(c + 1) << B`` of the decoded spike's channel ``c`` (``B = 2 *
        kernel_log + groups_log``): the end of its weight block relative to the layer.
    block_need_load, block_need_take : Out(ring_pointer_bits), Out(1)
        Ring mode only: ``block_need``'s next value is ``block_need_load`` when
        ``block_need_take`` is high (the decode register takes an item), else it stays.
    block_ready : In(1)
        Ring mode only: the block ending at ``block_need`` is in the ring; the tap generator
        takes the decoded spike only then (combinational into its handshake).
    block_done : Out(ring_pointer_bits)
        Ring mode only: ``c << B`` of the oldest channel whose block may still be read; the
        reads of a block end at most one cycle after ``block_done`` passes it.
    """

    def __init__(self, *, lanes: int, word_bits: int, max_words: int, max_channels: int,
                 max_side: int, max_padding: int, max_kernel_log: int, max_stride_log: int,
                 max_groups_log: int, weight_width: int, accumulator_width: int,
                 weight_depth: int, bank_depth: int, bias_words, ring_pointer_bits: int = 0,
                 bias_port: bool = False, max_fold_log: int = 0, bias_memory: str = "logic",
                 input_buffer: int = 0, max_planes: int = 1, bands: bool = False):
        self._lanes = check_int("lanes", lanes, 1)
        self._word_bits = check_int("word_bits", word_bits, 1)
        self._max_words = check_int("max_words", max_words, 1)
        self._max_channels = check_int("max_channels", max_channels, 1)
        self._max_side = check_int("max_side", max_side, 1)
        self._max_padding = check_int("max_padding", max_padding, 0)
        self._max_kernel_log = check_int("max_kernel_log", max_kernel_log, 0, 4)
        self._max_stride_log = check_int("max_stride_log", max_stride_log, 0, 4)
        self._max_groups_log = check_int("max_groups_log", max_groups_log, 0, 12)
        self._weight_width = check_int("weight_width", weight_width, 1)
        self._accumulator_width = check_int("accumulator_width", accumulator_width,
                                            self._weight_width)
        self._weight_depth = check_int("weight_depth", weight_depth, 1)
        self._bank_depth = check_int("bank_depth", bank_depth, 1)
        if isinstance(bias_words, (str, bytes)) or not hasattr(bias_words, "__iter__"):
            raise TypeError(f"bias_words must be a list of integers, not {bias_words!r}")
        words = []
        limit = 1 << (self._lanes * self._accumulator_width)
        for index, word in enumerate(bias_words):
            words.append(check_int(f"bias_words[{index}]", word, 0, limit - 1))
        if not words:
            raise ValueError("bias_words must hold at least one word")
        self._bias_words = words
        self._ring = check_int("ring_pointer_bits", ring_pointer_bits, 0, 64)
        self._max_fold_log = check_int("max_fold_log", max_fold_log, 0, 8)
        if self._max_fold_log:
            if self._lanes & (self._lanes - 1) or self._lanes < 1 << self._max_fold_log:
                raise ValueError(f"column folding (max_fold_log {self._max_fold_log}) needs lanes "
                                 f"a power of two of at least {1 << self._max_fold_log}, not "
                                 f"{self._lanes}")
            if self._ring:
                raise ValueError("column folding (max_fold_log > 0) is not built for a weight "
                                 "ring (ring_pointer_bits > 0)")
        self._max_planes = check_int("max_planes", max_planes, 1, 64)
        if self._max_planes > 1 and (self._ring or self._max_fold_log):
            raise ValueError("bit planes (max_planes > 1) are not built with a weight ring or "
                             "column folding")
        self._input_buffer = check_int("input_buffer", input_buffer, 0, 64)
        if self._input_buffer == 1:
            raise ValueError("input_buffer must be 0 (the register slice, every word enters) or "
                             "2..64 (words held, words without spikes dropped), not 1")
        self._bands = bool(bands)
        self._bias_port = bool(bias_port)
        self._bias_attrs = rom_attrs("bias_memory", bias_memory)
        ring_ports = {}
        if self._bias_port:
            ring_ports["bias"] = In(ReadPort.Signature(
                addr_width=self.bias_address_width,
                shape=unsigned(self._lanes * self._accumulator_width)))
        if self._ring:
            ring_ports = {"frame_start": In(1), "block_done": Out(self._ring),
                          "block_need": Out(self._ring), "block_need_load": Out(self._ring),
                          "block_need_take": Out(1), "block_ready": In(1)}
        super().__init__({
            **ring_ports,
            "config": In(self.config_layout),
            "i": In(stream.Signature(addressing_input_layout(self._word_bits))),
            "o": Out(stream.Signature(self.output_layout)),
            "weight": In(ReadPort.Signature(addr_width=self.weight_address_width,
                                            shape=unsigned(self._lanes * self._weight_width))),
            "ready": Out(1),
        })

    # -- parameters -------------------------------------------------------------------------

    lanes = property(lambda self: self._lanes, doc="Output channels accumulated per cycle.")
    word_bits = property(lambda self: self._word_bits, doc="Bits per input spike word.")
    max_words = property(lambda self: self._max_words, doc="Most input words per frame.")
    max_channels = property(lambda self: self._max_channels, doc="Most input channels.")
    max_side = property(lambda self: self._max_side, doc="Largest map side.")
    max_padding = property(lambda self: self._max_padding, doc="Largest padding.")
    max_kernel_log = property(lambda self: self._max_kernel_log, doc="Largest kernel_log.")
    max_stride_log = property(lambda self: self._max_stride_log, doc="Largest stride_log.")
    max_groups_log = property(lambda self: self._max_groups_log, doc="Largest groups_log.")
    weight_width = property(lambda self: self._weight_width, doc="Signed bits per weight.")
    accumulator_width = property(lambda self: self._accumulator_width,
                                 doc="Signed bits per bank and output value.")
    weight_depth = property(lambda self: self._weight_depth, doc="Words of the weight memory.")
    bank_depth = property(lambda self: self._bank_depth, doc="Words of the accumulator bank.")
    max_fold_log = property(lambda self: self._max_fold_log,
                            doc="Largest fold_log (column folding; 0: none).")
    bands = property(lambda self: self._bands,
                     doc="Whether the ``config`` port has ``padding_y`` (bands of output rows).")
    input_buffer = property(lambda self: self._input_buffer,
                            doc="Words the input slice holds, dropping empty ones (0: the plain "
                                "register slice).")

    @property
    def bias_words(self) -> list[int]:
        """Contents of the bias memory (a copy)."""
        return list(self._bias_words)

    @property
    def bias_address_width(self) -> int:
        """Bits of the bias memory's address (of ``bias.addr`` with ``bias_port``)."""
        return (max(2, len(self._bias_words)) - 1).bit_length()

    @property
    def weight_address_width(self) -> int:
        """Bits of ``weight.addr``: ``bits_for(weight_depth)``."""
        return bits_for(self._weight_depth)

    @property
    def config_layout(self) -> data.StructLayout:
        """Layout of the ``config`` port (:func:`engine_config_layout`)."""
        return engine_config_layout(
            max_side=self._max_side, max_padding=self._max_padding,
            max_kernel_log=self._max_kernel_log, max_stride_log=self._max_stride_log,
            max_groups_log=self._max_groups_log, weight_depth=self._weight_depth,
            bias_depth=len(self._bias_words), max_fold_log=self._max_fold_log,
            max_planes=self._max_planes, bands=self._bands)

    @property
    def output_layout(self) -> data.StructLayout:
        """Payload layout of ``o`` (:func:`engine_output_layout`)."""
        return engine_output_layout(
            lanes=self._lanes, accumulator_width=self._accumulator_width,
            max_side=self._max_side, max_groups_log=self._max_groups_log,
            bank_depth=self._bank_depth)

    @property
    def init_cycles(self) -> int:
        """Cycles after reset spent clearing the bank (``ready`` low)."""
        return self._bank_depth

    @property
    def latency(self) -> int:
        """Cycles from the frame's last input word being accepted to its first output beat,
        when the engine is otherwise idle: input register slice (1), addressing, spike queue
        and two decode steps (3 in all), address register (1), issue (1), RAM data register
        (1), add (1), write (1), bank read (1), read-out register (1), output register (1)."""
        return 12

    def check_layer(self, layer: LayerConfig) -> None:
        """Raise ``ValueError`` naming the first way ``layer`` does not fit this engine."""
        checks = [
            ("lanes", layer.lanes, self._lanes, "=="),
            ("planes", layer.planes, self._max_planes, "<="),
            ("in_channels", layer.in_channels, self._max_channels, "<="),
            ("words per frame (in_channels * height)", layer.words_per_frame, self._max_words,
             "<="),
            ("width (word_bits)", layer.width, self._word_bits, "<="),
            ("height", layer.height, self._max_side, "<="),
            ("width", layer.width, self._max_side, "<="),
            ("out_height", layer.out_height, self._max_side, "<="),
            ("out_width", layer.out_width, self._max_side, "<="),
            ("padding", layer.padding, self._max_padding, "<="),
            ("padding_y (bands: the engine's bands option)", layer.padding_y, layer.padding,
             "<=" if self._bands else "=="),
            ("kernel_log", layer.kernel_log, self._max_kernel_log, "<="),
            ("stride_log", layer.stride_log, self._max_stride_log, "<="),
            ("groups_log", layer.groups_log, self._max_groups_log, "<="),
            ("fold_log", layer.fold_log, self._max_fold_log, "<="),
            ("kernel_x_log", layer.kernel_x_log,
             max_x_log(self._max_kernel_log, self._max_stride_log, self._max_fold_log)
             if self._max_fold_log else layer.kernel_log, "<=" if self._max_fold_log else "=="),
            *([("weight block (1 << (2 * kernel_log + groups_log))",
                1 << (2 * layer.kernel_log + layer.groups_log), self._weight_depth, "<="),
               ("weight_base", layer.weight_base, self._weight_depth - 1, "<=")]
              if self._ring else
              [("weight_base + weight_words_needed", layer.weight_base + layer.weight_words_needed,
                self._weight_depth, "<=")]),
            ("bias_base + groups", layer.bias_base + layer.groups, len(self._bias_words), "<="),
            ("bank_words_needed", layer.bank_words_needed, self._bank_depth, "<="),
        ]
        for name, value, limit, relation in checks:
            if not (value == limit if relation == "==" else value <= limit):
                raise ValueError(f"layer {name} = {value} must be {relation} {limit} for this "
                                 "engine")
        if self._ring and layer.weight_base % (1 << (2 * layer.kernel_log + layer.groups_log)):
            raise ValueError(f"layer weight_base = {layer.weight_base} must be a multiple of its "
                             "weight block in a ring")

    def config_value(self, layer: LayerConfig) -> data.Const:
        """Return the ``config`` constant of ``layer`` after :meth:`check_layer`."""
        self.check_layer(layer)
        layout = self.config_layout
        return layout.const({name: getattr(layer, name) for name, _ in layout})

    # -- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes, acc_width, w_width = self._lanes, self._accumulator_width, self._weight_width
        bank_depth = self._bank_depth
        side_bits = bits_for(self._max_side)
        tap_bits = max(1, self._max_kernel_log)
        fold = self._max_fold_log > 0   # column folding built (module docstring)
        x_log_max = max_x_log(self._max_kernel_log, self._max_stride_log, self._max_fold_log)
        tap_x_bits = max(1, x_log_max)
        x_log = cfg.kernel_x_log if fold else cfg.kernel_log
        group_bits = max(1, self._max_groups_log)
        bank_bits = bits_for(bank_depth)
        waddr_bits = self.weight_address_width

        # --- layer constants derived from config, registered (config is stable for a frame and
        # set no later than the cycle its first word is accepted; these are first used a cycle
        # after that) ---
        offset_low = Signal(signed(bits_for(self._max_padding + (1 << self._max_stride_log) + 1)
                                   + bits_for((1 << self._max_kernel_log) + 1) + 1))
        out_h_last = Signal(side_bits)
        out_w_last = Signal(side_bits)
        c_shift = Signal(_range(self._max_kernel_log + x_log_max + self._max_groups_log))
        stride = Signal(_range(1 << self._max_stride_log))
        # For the end-of-row flags of the tap generator and the read-out: a counter is at its
        # last value next cycle when it steps from the one before the last (``*_penult``), or
        # when it restarts at 0 and 0 is the last (``*_one``).
        groups_penult = Signal(group_bits)   # G - 2 (any value when G = 1: never compared)
        groups_one = Signal()                # G = 1
        out_w_penult = Signal(side_bits)
        out_w_one = Signal()
        out_h_penult = Signal(side_bits)
        out_h_one = Signal()
        # Bank address steps of the read-out: one output column (1 << gl) and one output row
        # (1 << (owl + gl)); each fits the bank whenever the step is taken.
        column_step = Signal(bank_bits)
        row_step = Signal(bank_bits)
        m.d.sync += [
            groups_penult.eq(cfg.groups - 2), groups_one.eq(cfg.groups == 1),
            out_w_penult.eq(cfg.out_width - 2), out_w_one.eq(cfg.out_width == 1),
            out_h_penult.eq(cfg.out_height - 2), out_h_one.eq(cfg.out_height == 1),
            column_step.eq(Const(1, 1) << cfg.groups_log),
            row_step.eq(Const(1, 1) << (cfg.out_width_log + cfg.groups_log)),
        ]
        # The decode's and the tap generator's own copies of the geometry (the config is the
        # network's descriptor registers, read by every unit across the die).
        padding_r = Signal.like(cfg.padding, name="cfg_padding")
        stride_log_r = Signal.like(cfg.stride_log, name="cfg_stride_log")
        out_height_r = Signal.like(cfg.out_height, name="cfg_out_height")
        out_width_r = Signal.like(cfg.out_width, name="cfg_out_width")
        m.d.sync += [padding_r.eq(cfg.padding), stride_log_r.eq(cfg.stride_log),
                     out_height_r.eq(cfg.out_height), out_width_r.eq(cfg.out_width)]
        # Bands of output rows: the rows' own top padding (``padding_y``) and offset; without
        # bands both axes share ``padding`` (and the Verilog is what it was before bands).
        padding_y_r, offset_low_y = padding_r, offset_low
        if self._bands:
            padding_y_r = Signal.like(cfg.padding_y, name="cfg_padding_y")
            offset_low_y = Signal.like(offset_low, name="offset_low_y")
            m.d.sync += [
                padding_y_r.eq(cfg.padding_y),
                offset_low_y.eq(cfg.padding_y + (Const(1, 1) << cfg.stride_log) - cfg.kernel),
            ]
        m.d.sync += [
            # ceil((t - k + 1) / s) = (t - k + s) >> stride_log, t = coordinate + padding
            offset_low.eq(cfg.padding + (Const(1, 1) << cfg.stride_log) - cfg.kernel),
            out_h_last.eq(cfg.out_height - 1),
            out_w_last.eq(cfg.out_width - 1),
            c_shift.eq(cfg.kernel_log + x_log + cfg.groups_log),
            stride.eq(Const(1, 1) << cfg.stride_log),
        ]
        if fold:
            # Column folding: the tap generator steps whole words of F columns, kx by F * s;
            # the read-out steps the bank address once per F columns and moves each column's
            # lanes down to lane 0 (``part`` = lanes / F lanes a column).
            lanes_log = self._lanes.bit_length() - 1
            stride_x = Signal(_range(1 << (self._max_stride_log + self._max_fold_log)))
            stride_x_log = Signal(_range(self._max_stride_log + self._max_fold_log))
            fold_penult = Signal(self._max_fold_log)   # F - 2 (never compared when F = 1)
            fold_one = Signal()                        # F = 1
            part = Signal(lanes_log + 1)               # lanes >> fold_log
            keep = Signal(lanes)                       # lanes below part
            m.d.sync += [
                stride_x.eq(Const(1, 1) << (cfg.stride_log + cfg.fold_log)),
                stride_x_log.eq(cfg.stride_log + cfg.fold_log),
                fold_penult.eq((Const(1, 1) << cfg.fold_log) - 2),
                fold_one.eq(cfg.fold_log == 0),
                part.eq(Const(lanes, lanes_log + 1) >> cfg.fold_log),
            ]
            with m.Switch(cfg.fold_log):
                for fold_log in range(self._max_fold_log + 1):
                    with m.Case(fold_log):
                        m.d.sync += keep.eq((1 << (lanes >> fold_log)) - 1)
        else:
            stride_x, stride_x_log = stride, stride_log_r

        initialising = Signal(init=1)  # clearing the bank after reset
        m.d.comb += self.ready.eq(~initialising)
        in_skid_valid = Signal()  # the input slice's skid register is full

        # --- row counter: the (c, y) of each input word travels with it as the tag ---
        planes = self._max_planes > 1   # bit planes built (``max_planes``)
        plane_bits = bits_for(self._max_planes - 1)
        tag_layout = data.StructLayout({
            "c": unsigned(bits_for(self._max_channels)),
            "y": unsigned(side_bits),
            **({"p": unsigned(plane_bits)} if planes else {}),
        })
        m.submodules.addressing = addressing = SpikeAddressing(
            width=self._word_bits, ports=1, max_words=self._max_words, tag_shape=tag_layout,
            registered=True)
        row_c = Signal(tag_layout["c"].shape)
        row_y = Signal(tag_layout["y"].shape)
        row_y_next = Signal(side_bits + 1)
        arrive = Signal()  # an input word is accepted this cycle
        word_layout = addressing_input_layout(self._word_bits, tag_layout)
        if self._input_buffer:
            # Every word enters a stage register first; from there a word with spikes (or the
            # frame's last) goes on into the input register or, while that is busy, a FIFO of
            # ``input_buffer - 1`` words, and any other word is dropped. The drop decision is
            # taken on the stage's flip-flops, not on the producer's combinational output.
            m.submodules.in_fifo = in_fifo = SyncFIFO(width=word_layout.size,
                                                      depth=self._input_buffer - 1)
            st_valid = Signal(name="in_stage_valid")
            st_word = Signal(word_layout, name="in_stage")
            st_kept = Signal(name="in_stage_kept")
            m.d.comb += st_kept.eq(st_valid & (st_word.bits.any() | st_word.last))
            # the stage is empty, or its word leaves (dropped, or into a FIFO with room)
            in_ready = ~st_kept | in_fifo.w_rdy
        else:
            in_ready = ~in_skid_valid
        m.d.comb += [
            # Only flip-flops behind i.ready: the producer may use it combinationally.
            self.i.ready.eq(in_ready & ~initialising),
            arrive.eq(self.i.valid & self.i.ready),
            row_y_next.eq(row_y + 1),
        ]
        if planes:
            # bit planes: the input channel's plane p counts 0 .. planes - 1, then the weight
            # channel c steps (``c' = c * planes + p``)
            row_p = Signal(plane_bits)
        with m.If(arrive):
            with m.If(self.i.payload.last):
                m.d.sync += [row_c.eq(0), row_y.eq(0)]
                if planes:
                    m.d.sync += row_p.eq(0)
            with m.Elif(row_y_next == cfg.height):
                m.d.sync += row_y.eq(0)
                if planes:
                    with m.If(row_p == cfg.planes_m1):
                        m.d.sync += [row_p.eq(0), row_c.eq(row_c + 1)]
                    with m.Else():
                        m.d.sync += row_p.eq(row_p + 1)
                else:
                    m.d.sync += row_c.eq(row_c + 1)
            with m.Else():
                m.d.sync += row_y.eq(row_y_next)

        # --- input register slice: the tagged word waits in a register (and a skid register
        # behind it) in front of the addressing unit, whose ready is combinational ---
        arriving = Signal(word_layout)
        in_valid = Signal()
        in_word = Signal(word_layout, name="in_word")
        in_skid = Signal(word_layout, name="in_skid")
        m.d.comb += [
            arriving.bits.eq(self.i.payload.bits), arriving.last.eq(self.i.payload.last),
            arriving.tag.eq(Cat(row_c, row_y, row_p) if planes else Cat(row_c, row_y)),
            addressing.i.valid.eq(in_valid),
            addressing.i.payload.eq(in_word),
        ]
        if self._input_buffer:
            # A word without spikes that does not end the frame is dropped from the stage (its
            # (c, y) has been counted): the addressing unit would only have spent a cycle on it.
            free = ~in_valid | addressing.i.ready
            m.d.comb += [in_fifo.w_data.eq(st_word),
                         in_fifo.r_en.eq(free),
                         # into the FIFO unless the input register takes it directly
                         in_fifo.w_en.eq(st_kept & ~(free & ~in_fifo.r_rdy))]
            with m.If(arrive):
                m.d.sync += [st_word.eq(arriving), st_valid.eq(1)]
            with m.Elif(~st_kept | in_fifo.w_rdy):
                m.d.sync += st_valid.eq(0)
            with m.If(free):
                with m.If(in_fifo.r_rdy):
                    m.d.sync += [in_word.eq(in_fifo.r_data), in_valid.eq(1)]
                with m.Elif(st_kept):
                    m.d.sync += [in_word.eq(st_word), in_valid.eq(1)]
                with m.Else():
                    m.d.sync += in_valid.eq(0)
        else:
            with m.If(~in_valid | addressing.i.ready):
                with m.If(in_skid_valid):
                    m.d.sync += [in_word.eq(in_skid), in_valid.eq(1), in_skid_valid.eq(0)]
                with m.Elif(arrive):
                    m.d.sync += [in_word.eq(arriving), in_valid.eq(1)]
                with m.Else():
                    m.d.sync += in_valid.eq(0)
            with m.Elif(arrive):
                m.d.sync += [in_skid.eq(arriving), in_skid_valid.eq(1)]

        # --- decode: a spike's input position -> the output rows and columns its taps reach ---
        # A two-entry queue of spikes first: the addressing unit's priority encoder ends in its
        # slots (no multiplexer in front of them), its ready is a flip-flop (so the tap
        # generator's end-of-item logic does not reach into the addressing unit), and the decode
        # adders, run-time shifts and compares start from flip-flops (and one multiplexer).
        spike_layout = data.StructLayout({
            "c": tag_layout["c"].shape, "y": unsigned(side_bits),
            "x": unsigned(bits_for(self._word_bits)), "any": 1, "last": 1,
            **({"p": unsigned(plane_bits)} if planes else {}),
        })
        spiked = Signal()       # the queue holds a spike (or an empty last beat)
        spikes_full = Signal()  # the queue holds two
        slots = [Signal(spike_layout, name=f"spike_slot_{n}") for n in range(2)]
        write_slot = Signal()
        read_slot = Signal()
        spike = Signal(spike_layout, name="spike")  # the queue's head
        incoming = Signal(spike_layout)
        source = addressing.o.payload
        accept = Signal()
        take_spike = Signal()  # decode takes the queue's head this cycle
        m.d.comb += [
            incoming.c.eq(source.tag.c), incoming.y.eq(source.tag.y),
            *([incoming.p.eq(source.tag.p)] if planes else []),
            incoming.x.eq(source.column[0]), incoming.any.eq(source.count != 0),
            incoming.last.eq(source.last),
            addressing.o.ready.eq(~spikes_full),
            accept.eq(addressing.o.valid & ~spikes_full),
            spike.eq(Mux(read_slot, slots[1], slots[0])),
        ]
        with m.If(accept):
            m.d.sync += write_slot.eq(~write_slot)
            with m.If(write_slot):
                m.d.sync += slots[1].eq(incoming)
            with m.Else():
                m.d.sync += slots[0].eq(incoming)
        with m.If(take_spike):
            m.d.sync += read_slot.eq(~read_slot)
        with m.If(accept & ~take_spike):
            m.d.sync += [spiked.eq(1), spikes_full.eq(spiked)]
        with m.Elif(take_spike & ~accept):
            m.d.sync += [spikes_full.eq(0), spiked.eq(spikes_full)]
        span = bits_for(max(self._max_side, self._word_bits) + self._max_padding
                        + (1 << self._max_stride_log) + (1 << self._max_kernel_log) + 2) + 2

        # Decode runs in two registered steps: the adders and run-time shifts (pre_*), then the
        # clamps and range compares (dec_*). In one cycle they were the engine's critical path.
        pre_valid = Signal(name="pre_valid")
        pre = {
            "c": Signal(spike_layout["c"].shape, name="pre_c"),
            "any": Signal(name="pre_any"), "last": Signal(name="pre_last"),
            **({"p": Signal(plane_bits, name="pre_p")} if planes else {}),
        }
        take_pre = Signal()  # the decode register takes the pre register's content

        def reach(coordinate, out_size, out_last, name, padding, offset):
            target = Signal(signed(span), name=f"target_{name}")
            low = Signal(signed(span), name=f"low_{name}")
            high = Signal(signed(span), name=f"high_{name}")
            pre_target = Signal(signed(span), name=f"pre_target_{name}")
            pre_low = Signal(signed(span), name=f"pre_low_{name}")
            pre_high = Signal(signed(span), name=f"pre_high_{name}")
            first = Signal(side_bits, name=f"first_{name}")
            final = Signal(side_bits, name=f"final_{name}")
            reaches = Signal(name=f"reaches_{name}")
            m.d.comb += [
                target.eq(coordinate + padding),
                # Arithmetic right shifts by the run-time stride_log: floor division by 2**s.
                low.eq((coordinate + offset) >> stride_log_r),
                high.eq(target >> stride_log_r),
            ]
            with m.If(take_spike):
                m.d.sync += [pre_target.eq(target), pre_low.eq(low), pre_high.eq(high)]
            m.d.comb += [
                first.eq(Mux(pre_low < 0, 0, pre_low)),
                final.eq(Mux(pre_high < out_size, pre_high, out_last)),
                # high >= 0 always (target >= 0); with low <= high and low < out the clamped
                # range [first, final] is not empty.
                reaches.eq((pre_low <= pre_high) & (pre_low < out_size)),
            ]
            return pre_target, first, final, reaches

        target_y, first_y, final_y, reaches_y = reach(spike["y"], out_height_r, out_h_last, "y",
                                                      padding_y_r, offset_low_y)
        target_x, first_x, final_x, reaches_x = reach(spike["x"], out_width_r, out_w_last, "x",
                                                      padding_r, offset_low)
        has_taps = Signal()
        m.d.comb += has_taps.eq(pre["any"] & reaches_y & reaches_x)
        with m.If(take_pre):
            m.d.sync += pre_valid.eq(0)
        with m.If(take_spike):
            m.d.sync += [pre_valid.eq(1), pre["c"].eq(spike["c"]), pre["any"].eq(spike["any"]),
                         pre["last"].eq(spike["last"])]
            if planes:
                m.d.sync += pre["p"].eq(spike["p"])

        decoded = Signal()  # the decode register holds an item for the tap generator
        dec = {
            "c": Signal.like(row_c, name="dec_c"),
            "target_y": Signal(span, name="dec_target_y"),  # >= 0: unsigned
            "target_x": Signal(span, name="dec_target_x"),
            "first_y": Signal(side_bits, name="dec_first_y"),
            "final_y": Signal(side_bits, name="dec_final_y"),
            "first_x": Signal(side_bits, name="dec_first_x"),
            "final_x": Signal(side_bits, name="dec_final_x"),
            "taps": Signal(name="dec_taps"),
            "last": Signal(name="dec_last"),
            **({"p": Signal(plane_bits, name="dec_p")} if planes else {}),
        }
        take_decoded = Signal()  # the generator takes the decoded item this cycle
        m.d.comb += [take_pre.eq(pre_valid & (~decoded | take_decoded)),
                     take_spike.eq(spiked & (~pre_valid | take_pre))]
        with m.If(take_decoded):
            m.d.sync += decoded.eq(0)
        # A spike whose taps all fall outside is dropped here, unless it ends the frame: the
        # decode registers take every item (their enable is the handshake alone, not the range
        # compares, which would otherwise drive the enables of all of them), and ``decoded``
        # says whether the item is kept.
        with m.If(take_pre):
            m.d.sync += [
                decoded.eq(has_taps | pre["last"]),
                dec["c"].eq(pre["c"]),
                dec["target_y"].eq(target_y), dec["target_x"].eq(target_x),
                dec["first_y"].eq(first_y), dec["final_y"].eq(final_y),
                dec["first_x"].eq(first_x >> cfg.fold_log if fold else first_x),
                dec["final_x"].eq(final_x >> cfg.fold_log if fold else final_x),
                dec["taps"].eq(has_taps), dec["last"].eq(pre["last"]),
            ]
            if planes:
                m.d.sync += dec["p"].eq(pre["p"])
        if self._ring:
            # Weight blocks (ring mode): the decoded item's block, [c << B, (c + 1) << B).
            # The block's end is computed a stage early (``pre_block_end``), so the next
            # ``block_need`` is one of two registers (the weight fetcher compares both).
            dec_block = Signal(self._ring, name="dec_block")
            dec_block_end = Signal(self._ring, name="dec_block_end")
            pre_block_end = Signal(self._ring, name="pre_block_end")
            with m.If(take_spike):
                m.d.sync += pre_block_end.eq((spike["c"] + 1) << c_shift)
            with m.If(take_pre):
                m.d.sync += [dec_block.eq(pre["c"] << c_shift),
                             dec_block_end.eq(pre_block_end)]
            m.d.comb += [self.block_need.eq(dec_block_end),
                         self.block_need_load.eq(pre_block_end),
                         self.block_need_take.eq(take_pre)]

        # --- tap generator: one (oy, ox, g) per cycle for the current spike ---
        # The end of each counter's run is a registered flag, set one step ahead, so the
        # handshake back to decode (take_decoded) is a LUT or two of flip-flops.
        busy = Signal()
        gen_cbase = Signal(waddr_bits)  # weight_base + (c << (2 kl + gl))
        if planes:
            # the item's plane: its weight's shift, carried beside the weight's address, the
            # weight word (R) and into C
            gen_p = Signal(plane_bits, name="gen_p")
            issue_p = Signal(plane_bits, name="issue_p")
            r_p = Signal(plane_bits, name="r_p")
            c_p = Signal(plane_bits, name="c_p")
        gen_first_x = Signal(side_bits)
        gen_x_penult = Signal(side_bits)  # final_x - 1
        gen_y_penult = Signal(side_bits)  # final_y - 1
        gen_x_single = Signal()           # first_x == final_x
        gen_kx_first = Signal(tap_x_bits)
        gen_taps = Signal()
        gen_last = Signal()
        gen_oy = Signal(side_bits)
        gen_ox = Signal(side_bits)
        gen_g = Signal(group_bits)
        gen_g_end = Signal()  # gen_g is the last group
        gen_x_end = Signal()  # gen_ox == final_x
        gen_y_end = Signal()  # gen_oy == final_y
        gen_ky = Signal(tap_bits)  # target_y - (oy << stride_log), kept as a counter
        gen_kx = Signal(tap_x_bits)  # target_x - (ox << stride_log); folded: of the word's column 0
        frame_done = Signal()  # the frame's last item has been issued
        reading = Signal()     # streaming the bank out

        accumulating = Signal()
        m.d.comb += accumulating.eq(~reading & ~initialising & ~frame_done)
        g_next = Signal(group_bits + 1)
        item_end = Signal()
        m.d.comb += [
            g_next.eq(gen_g + 1),
            item_end.eq(~gen_taps | (gen_g_end & gen_x_end & gen_y_end)),
        ]
        issue = Signal()
        m.d.comb += issue.eq(busy & gen_taps & accumulating)
        with m.If(busy & accumulating):
            with m.If(item_end):
                m.d.sync += busy.eq(0)
                with m.If(gen_last):
                    m.d.sync += frame_done.eq(1)
            with m.Elif(~gen_g_end):
                m.d.sync += [gen_g.eq(g_next), gen_g_end.eq(gen_g == groups_penult)]
            with m.Elif(~gen_x_end):
                m.d.sync += [gen_g.eq(0), gen_g_end.eq(groups_one),
                             gen_ox.eq(gen_ox + 1), gen_x_end.eq(gen_ox == gen_x_penult),
                             gen_kx.eq(gen_kx - stride_x)]
            with m.Else():
                m.d.sync += [gen_g.eq(0), gen_g_end.eq(groups_one),
                             gen_ox.eq(gen_first_x), gen_x_end.eq(gen_x_single),
                             gen_kx.eq(gen_kx_first),
                             gen_oy.eq(gen_oy + 1), gen_y_end.eq(gen_oy == gen_y_penult),
                             gen_ky.eq(gen_ky - stride)]
        block_ok = self.block_ready if self._ring else 1
        m.d.comb += take_decoded.eq(decoded & accumulating & (~busy | (item_end & ~gen_last))
                                    & block_ok)
        if self._ring:
            # The generator's item's block; before the frame's first item, 0. While the
            # generator is idle with an item decoded, every earlier item has been issued.
            gen_block = Signal(self._ring, name="gen_block")
            with m.If(self.frame_start):
                m.d.sync += gen_block.eq(0)
            with m.Elif(take_decoded):
                m.d.sync += gen_block.eq(dec_block)
            m.d.comb += self.block_done.eq(Mux(~busy & decoded, dec_block, gen_block))
        with m.If(take_decoded):
            kx_first = dec["target_x"] - (dec["first_x"] << stride_x_log)
            x_single = dec["first_x"] == dec["final_x"]
            m.d.sync += [
                busy.eq(1), gen_g.eq(0), gen_g_end.eq(groups_one),
                gen_oy.eq(dec["first_y"]), gen_ox.eq(dec["first_x"]),
                gen_x_end.eq(x_single), gen_x_single.eq(x_single),
                gen_y_end.eq(dec["first_y"] == dec["final_y"]),
                gen_ky.eq(dec["target_y"] - (dec["first_y"] << stride_log_r)),
                gen_kx.eq(kx_first), gen_kx_first.eq(kx_first),
                gen_first_x.eq(dec["first_x"]),
                gen_x_penult.eq(dec["final_x"] - 1), gen_y_penult.eq(dec["final_y"] - 1),
                gen_cbase.eq(cfg.weight_base + (dec["c"] << c_shift)),
                *([gen_p.eq(dec["p"])] if planes else []),
                gen_taps.eq(dec["taps"]), gen_last.eq(dec["last"]),
            ]

        # Address stage: shifts and ORs build both indices, one adder adds the layer's weight
        # base, all into registers, so the issue cycle's bank read and weight request start
        # from flip-flops.
        tap_index = Signal(self._max_kernel_log + x_log_max + self._max_groups_log + 1)
        gen_address = Signal(bank_bits)
        issue_valid = Signal()  # the issue stage holds an update
        bank_address = Signal(bank_bits)
        m.d.comb += [
            tap_index.eq((((gen_ky << x_log) | gen_kx) << cfg.groups_log) | gen_g),
            gen_address.eq((((gen_oy << cfg.out_width_log) | gen_ox) << cfg.groups_log) | gen_g),
            self.weight.en.eq(issue_valid),
        ]
        m.d.sync += [
            issue_valid.eq(issue),
            bank_address.eq(gen_address),
            self.weight.addr.eq(gen_cbase + tap_index),
        ]
        if planes:
            m.d.sync += [issue_p.eq(gen_p), r_p.eq(issue_p), c_p.eq(r_p)]

        # --- memories ---
        word_bits = lanes * acc_width
        # Depths of at least 2: a 1-word memory would have a 0-bit address, which the Verilog
        # back end emits as a [-1:0] vector that Verilator refuses.
        # Cleared by the init pass after reset. Not transparent, and no collision semantics
        # at all (``NO_RW_CHECK``): a word read in the cycle it is written is never used. In
        # accumulation the read at t meets update t - 3's write, and the forwarding below takes
        # that update's sum (``hit_3``) whenever the addresses match; the read-out reads word
        # ``i + 1`` (or the same word again, folded) while it wipes word ``i``, which is read
        # again only after it has been wiped; the init pass's reads are not used.
        m.submodules.bank = bank = Memory(shape=unsigned(word_bits), depth=max(2, bank_depth),
                                          init=[], attrs=NO_RW_CHECK)
        bank_write = bank.write_port()
        bank_read = bank.read_port()
        if self._bias_port:
            bias_read = self.bias
        else:
            m.submodules.biases = biases = Memory(
                shape=unsigned(word_bits), depth=max(2, len(self._bias_words)),
                init=self._bias_words, attrs=self._bias_attrs)
            bias_read = biases.read_port()

        # --- read-modify-write, four stages, one update per cycle ---
        # I (issue, cycle t): bank read address and weight request.
        # R (t + 1): the bank word (as of before the writes of t's clock edge) and the weight
        #     word arrive; both are registered raw, nothing else on the block RAM's output.
        # C (t + 2): old value = the newest in-flight sum of the same word, else the registered
        #     RAM data; plus the weight, into the D register.
        # D (t + 3): write the D register into the bank.
        # The read at t misses the writes of updates t - 1, t - 2 and t - 3 (the last one
        # commits on the same clock edge as the read), which in C sit in D, E and F: the
        # address compares are done in R and registered as a select for C.
        def lane_slice(lane, width):
            return slice(lane * width, (lane + 1) * width)

        r_valid_a = Signal()            # stage R holds an update
        r_addr_a = Signal(bank_bits, reset_less=True)
        c_valid = Signal()
        c_addr = Signal(bank_bits, reset_less=True)
        c_data = Signal(word_bits, reset_less=True)      # the RAM word, registered raw
        c_weight = Signal(lanes * w_width, reset_less=True)
        c_select = Signal(2, reset_less=True)   # 0: c_data, 1: D, 2: E, 3: F
        d_valid = Signal()
        d_addr = Signal(bank_bits, reset_less=True)
        d_sum = Signal(word_bits, reset_less=True)
        e_valid = Signal()
        e_addr = Signal(bank_bits, reset_less=True)
        e_sum = Signal(word_bits, reset_less=True)
        f_sum = Signal(word_bits)       # (F needs no address: its compare was made in R, as E, reset_less=True)
        # In R the update is one behind C, two behind D and three behind E.
        hit_1 = Signal()
        hit_2 = Signal()
        hit_3 = Signal()
        m.d.comb += [
            hit_1.eq(c_valid & (c_addr == r_addr_a)),
            hit_2.eq(d_valid & (d_addr == r_addr_a)),
            hit_3.eq(e_valid & (e_addr == r_addr_a)),
        ]
        m.d.sync += [
            r_valid_a.eq(issue_valid), r_addr_a.eq(bank_address),
            c_valid.eq(r_valid_a), c_addr.eq(r_addr_a), c_data.eq(bank_read.data),
            c_weight.eq(self.weight.data),
            c_select.eq(Mux(hit_1, 1, Mux(hit_2, 2, Mux(hit_3, 3, 0)))),
            d_valid.eq(c_valid), d_addr.eq(c_addr),
            e_valid.eq(d_valid), e_addr.eq(d_addr), e_sum.eq(d_sum),
            f_sum.eq(e_sum),
        ]
        old = Signal(word_bits)
        with m.Switch(c_select):
            with m.Case(0):
                m.d.comb += old.eq(c_data)
            with m.Case(1):
                m.d.comb += old.eq(d_sum)
            with m.Case(2):
                m.d.comb += old.eq(e_sum)
            with m.Case(3):
                m.d.comb += old.eq(f_sum)
        for lane in range(lanes):
            weight = c_weight[lane_slice(lane, w_width)].as_signed()
            m.d.sync += d_sum[lane_slice(lane, acc_width)].eq(
                old[lane_slice(lane, acc_width)].as_signed()
                + (weight << c_p if planes else weight))

        # --- read-out: counters (oy, ox, g) -> bank read (R) -> raw register (Q) -> output
        # register (adds the bias) ---
        # The counters, their end flags, and the bank and bias addresses they make are all
        # registers stepped incrementally (no run-time shift on the way), so a read needs only
        # read_word to choose among values made from flip-flops.
        next_oy = Signal(side_bits)
        next_ox = Signal(side_bits)
        next_g = Signal(group_bits)
        next_index = Signal(bank_bits)
        next_address = Signal(bank_bits)   # ((next_oy << owl) | next_ox) << gl | next_g
        pixel_address = Signal(bank_bits)  # the same with g = 0
        row_address = Signal(bank_bits)    # the same with ox = 0 and g = 0
        bias_address = Signal.like(cfg.bias_base)  # bias_base + next_g
        exhausted = Signal()  # every word of the frame has been read
        next_g_end = Signal()  # next_g is the last group
        next_x_end = Signal()  # next_ox == out_width - 1
        next_y_end = Signal()  # next_oy == out_height - 1
        pixel_next = Signal(bank_bits)
        row_next = Signal(bank_bits)
        m.d.comb += [pixel_next.eq(pixel_address + column_step),
                     row_next.eq(row_address + row_step)]
        coordinates = data.StructLayout({
            "oy": unsigned(side_bits), "ox": unsigned(side_bits), "g": unsigned(group_bits),
            "index": unsigned(bank_bits), "last": 1,
            # folded: the lane of the beat's column 0 and whether the beat is its word's last
            **({"offset": unsigned(lanes_log), "wipe": 1} if fold else {}),
        })
        if fold:
            next_j = Signal(self._max_fold_log)   # column within the bank word
            next_j_end = Signal()                 # next_j == F - 1
            next_offset = Signal(lanes_log)       # next_j * part
        # Stage R: the bank (and bias) word read last cycle, with its coordinates.
        r_valid = Signal()
        r_address = Signal(bank_bits, reset_less=True)
        r_place = Signal(coordinates, reset_less=True)
        # Stage Q: the same, registered raw off the block RAMs.
        q_valid = Signal()
        q_place = Signal(coordinates, reset_less=True)
        q_data = Signal(word_bits, reset_less=True)
        q_bias = Signal(word_bits, reset_less=True)
        # Each advance is one flip-flop OR o.ready (not a chain through the stages): whether
        # the stage and every stage after it are full is kept in its own flip-flop, so o.ready
        # goes through one LUT to each stage's advance.
        advance_out = Signal()  # the output register takes a new value (or empties)
        advance_q = Signal()    # stage Q takes a new word (or empties)
        advance_r = Signal()    # stage R takes a new word (or empties)
        read_word = Signal()    # read the next word of the frame this cycle
        full_qo = Signal()      # q_valid & o.valid
        full_rqo = Signal()     # r_valid & q_valid & o.valid
        can_read = Signal()     # reading & ~exhausted
        m.d.comb += [
            advance_out.eq(~self.o.valid | self.o.ready),
            advance_q.eq(~full_qo | self.o.ready),
            advance_r.eq(~full_rqo | self.o.ready),
            can_read.eq(reading & ~exhausted),
            read_word.eq(can_read & advance_r),
            bias_read.addr.eq(bias_address),
            bias_read.en.eq(read_word),
        ]
        init_address = Signal(bank_bits)

        r_valid_next = Signal()
        q_valid_next = Signal()
        o_valid_next = Signal()
        m.d.comb += [
            r_valid_next.eq(Mux(advance_r, read_word, r_valid)),
            q_valid_next.eq(Mux(advance_q, r_valid, q_valid)),
            o_valid_next.eq(Mux(advance_out, q_valid, self.o.valid)),
        ]
        m.d.sync += [
            r_valid.eq(r_valid_next), q_valid.eq(q_valid_next), self.o.valid.eq(o_valid_next),
            full_qo.eq(q_valid_next & o_valid_next),
            full_rqo.eq(r_valid_next & q_valid_next & o_valid_next),
        ]
        with m.If(initialising):
            m.d.comb += [bank_write.addr.eq(init_address), bank_write.data.eq(0),
                         bank_write.en.eq(1)]
            m.d.sync += init_address.eq(init_address + 1)
            with m.If(init_address == bank_depth - 1):
                m.d.sync += initialising.eq(0)
        with m.Elif(reading):
            m.d.comb += [bank_read.addr.eq(next_address), bank_read.en.eq(read_word),
                         # put zero back into each word as it leaves stage R
                         bank_write.addr.eq(r_address), bank_write.data.eq(0),
                         bank_write.en.eq(r_valid & advance_q & r_place.wipe if fold
                                          else r_valid & advance_q)]
            with m.If(read_word):
                m.d.sync += [r_address.eq(next_address), r_place.oy.eq(next_oy),
                             r_place.ox.eq(next_ox), r_place.g.eq(next_g),
                             r_place.index.eq(next_index),
                             r_place.last.eq(next_g_end & next_x_end & next_y_end),
                             next_index.eq(next_index + 1)]
                if fold:
                    m.d.sync += [r_place.offset.eq(next_offset),
                                 r_place.wipe.eq(next_j_end | next_x_end)]
                with m.If(~next_g_end):
                    m.d.sync += [next_g.eq(next_g + 1), next_g_end.eq(next_g == groups_penult),
                                 next_address.eq(next_address + 1),
                                 bias_address.eq(bias_address + 1)]
                with m.Else():
                    m.d.sync += [next_g.eq(0), next_g_end.eq(groups_one),
                                 bias_address.eq(cfg.bias_base)]
                    with m.If(~next_x_end):
                        m.d.sync += [next_ox.eq(next_ox + 1),
                                     next_x_end.eq(next_ox == out_w_penult)]
                        if fold:
                            with m.If(next_j_end):
                                m.d.sync += [next_address.eq(pixel_next),
                                             pixel_address.eq(pixel_next),
                                             next_j.eq(0), next_j_end.eq(fold_one),
                                             next_offset.eq(0)]
                            with m.Else():
                                m.d.sync += [next_j.eq(next_j + 1),
                                             next_j_end.eq(next_j == fold_penult),
                                             next_offset.eq(next_offset + part)]
                        else:
                            m.d.sync += [next_address.eq(pixel_next),
                                         pixel_address.eq(pixel_next)]
                    with m.Elif(~next_y_end):
                        if fold:
                            m.d.sync += [next_j.eq(0), next_j_end.eq(fold_one),
                                         next_offset.eq(0)]
                        m.d.sync += [next_ox.eq(0), next_x_end.eq(out_w_one),
                                     next_oy.eq(next_oy + 1),
                                     next_y_end.eq(next_oy == out_h_penult),
                                     next_address.eq(row_next), pixel_address.eq(row_next),
                                     row_address.eq(row_next)]
                    with m.Else():
                        # Back to (0, 0, 0) for the next frame (its flags are set when its
                        # read-out starts, under its config).
                        m.d.sync += [next_ox.eq(0), next_oy.eq(0), next_address.eq(0),
                                     pixel_address.eq(0), row_address.eq(0),
                                     exhausted.eq(1)]
                        if fold:
                            m.d.sync += [next_j.eq(0), next_offset.eq(0)]
            with m.If(exhausted & advance_r):
                # The frame's final word leaves stage R this cycle (or has left): accumulation
                # of the next frame may start, its bank words all zero again.
                m.d.sync += [reading.eq(0), exhausted.eq(0), next_index.eq(0)]
        with m.Else():
            m.d.comb += [bank_read.addr.eq(bank_address), bank_read.en.eq(1),
                         bank_write.addr.eq(d_addr), bank_write.data.eq(d_sum),
                         bank_write.en.eq(d_valid)]
            # Stage D writes this cycle; a read from the next cycle on sees it.
            with m.If(frame_done & ~issue_valid & ~r_valid_a & ~c_valid):
                # The counters are at (0, 0, 0); their end flags and the bias address follow
                # this frame's config.
                m.d.sync += [reading.eq(1), frame_done.eq(0),
                             next_g_end.eq(groups_one), next_x_end.eq(out_w_one),
                             next_y_end.eq(out_h_one), bias_address.eq(cfg.bias_base)]
                if fold:
                    m.d.sync += next_j_end.eq(fold_one)

        with m.If(advance_q):
            with m.If(r_valid):
                m.d.sync += [q_place.eq(r_place), q_data.eq(bank_read.data),
                             q_bias.eq(bias_read.data)]
        o_payload = Signal.like(self.o.payload, reset_less=True)   # data: o.valid gates it
        m.d.comb += self.o.payload.eq(o_payload)
        column = q_data
        if fold:
            # The beat's column: its lanes moved down by offset (a multiple of lanes / F, so
            # only the offset's top max_fold_log bits are ever set), the lanes of the word's
            # other columns cleared.
            for bit in range(lanes_log - self._max_fold_log, lanes_log):
                shifted = Signal(word_bits, name=f"fold_shift_{bit}")
                m.d.comb += shifted.eq(Mux(q_place.offset[bit],
                                           column >> ((1 << bit) * acc_width), column))
                column = shifted
            kept = Signal(word_bits, name="fold_kept")
            m.d.comb += kept.eq(column & Cat(*[keep[lane].replicate(acc_width)
                                               for lane in range(lanes)]))
            column = kept
        with m.If(advance_out):
            with m.If(q_valid):
                m.d.sync += [o_payload.oy.eq(q_place.oy), o_payload.ox.eq(q_place.ox),
                             o_payload.group.eq(q_place.g), o_payload.index.eq(q_place.index),
                             o_payload.last.eq(q_place.last)]
                for lane in range(lanes):
                    sl = lane_slice(lane, acc_width)
                    m.d.sync += o_payload.values[lane].eq(
                        column[sl].as_signed() + q_bias[sl].as_signed())
        return m
