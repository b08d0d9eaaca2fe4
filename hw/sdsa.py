"""Spike-driven self-attention (SDSA-1 to SDSA-4) per head, by addressing: additions only.

One :class:`SDSA` unit takes the binary Q, K and V rows of every token of one head (one stream beat
per token), heads one after another, and emits one beat of output spikes per token. Nothing in it
multiplies: every product of spike matrices is a sequence of row additions addressed by set bits.

SDSA-3 and SDSA-4, ``SN(Q (K^T V))``::

    KV[i, :] += V[n, :]   for every token n and every set bit i of K[n]   (counts in [0, N])
    A[n, :]  += KV[i, :]  for every set bit i of Q[n]                    (counts in [0, N*d])
    u = v + A[n, j];  spike iff u >= threshold;  v' = 0 on spike else u >> 1

SDSA-1, ``Q AND SN(sum_n K AND V)``, and SDSA-2 (our interpretation, see
``docs/sdsa-variants.md``: no V, ``Q AND SN(sum_n K)``) add a d-bit row per token into d
column counters, run one LIF step per channel and mask every Q row with the channel spikes.

The LIF step is the project's integer contract (``quant.intops.lif_step``): the threshold is in
doubled units on the raw count, so SDSA-3's official ``* 0.125`` then theta 0.5 is threshold
``lif_threshold(0.5, 0.125) == 8``. Membranes persist across time steps (per head, token and channel
for SDSA-3/4; per head and channel for SDSA-1/2) and are read as 0 in a sample's first time step.
``docs/sdsa-unit.md`` describes the datapath, the cycle model and the ideal it is measured against.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .addressing import SpikeAddressing
from .neuron import lif_update
from .params import bits_for, ceil_div, check_int, log2_ceil

__all__ = [
    "Variant",
    "SDSA",
    "sdsa_input_layout",
    "sdsa_output_layout",
    "DEFAULT_THRESHOLDS",
]


class Variant(enum.Enum, shape=3):
    """Name the spike-driven self-attention operator a unit computes."""

    #: ``Q AND SN(sum over tokens of K AND V)`` (Spike-Driven Transformer V1).
    SDSA1 = 1
    #: ``Q AND SN(sum over tokens of K)``: OUR INTERPRETATION of the unpublished SDSA-2.
    SDSA2 = 2
    #: ``SN(Q (K^T V))`` with a fixed threshold (the official Meta-SpikeFormer operator).
    SDSA3 = 3
    #: SDSA-3 whose threshold is read from a per-layer threshold memory (learned, quantized).
    SDSA4 = 4


#: Thresholds on the raw counts when none is given: V1's channel neuron (theta 0.5 on counts of
#: scale 1) gives 1; SDSA-3's ``* 0.125`` then theta 0.5 gives 8; SDSA-4 starts at SDSA-3's value.
DEFAULT_THRESHOLDS = {Variant.SDSA1: 1, Variant.SDSA2: 1, Variant.SDSA3: 8, Variant.SDSA4: (8,)}


def _variant(value) -> Variant:
    if isinstance(value, Variant):
        return value
    try:
        return Variant(operator.index(value))
    except (TypeError, ValueError):
        raise ValueError(f"variant must be a Variant or one of 1, 2, 3, 4, not {value!r}") from None


def _as_passes(spikes, tokens: int) -> list[list[int]]:
    """Return per-pass rows of spike counts from a ``[passes, N]`` or ``[steps, heads, N]``."""
    array = np.asarray(spikes, dtype=np.int64)
    if array.ndim not in (2, 3) or array.shape[-1] != tokens:
        raise ValueError(f"spike counts must be [passes, {tokens}] or [steps, heads, {tokens}], "
                         f"got shape {array.shape}")
    return array.reshape(-1, tokens).tolist()


def _counter(count: int, name: str) -> Signal:
    """Return a register counting ``0 .. count - 1``, at least 1 bit wide.

    Amaranth emits a 0-bit signal as a ``[-1:0]`` Verilog vector, which is two bits wide there and
    trips Verilator's lint; one spare bit costs nothing and keeps the Verilog plain.
    """
    return Signal(range(max(count, 2)), name=name)


def _select(m: Module, index, options, shape, name: str) -> Signal:
    """Return ``options[index]`` through a multiplexer.

    A variable slice (``word_select``, an array view indexed by a signal) scales the index by the
    element width, which Amaranth emits as a multiplication; a ``Switch`` keeps the unit free of
    multiplier cells (``tests/test_sdsa_synth.py``).
    """
    selected = Signal(shape, name=name)
    if len(options) == 1:  # no index to decode (a one-chunk row)
        m.d.comb += selected.eq(options[0])
        return selected
    with m.Switch(index):
        for position, option in enumerate(options):
            with m.Case(position):
                m.d.comb += selected.eq(option)
    return selected


def _chunks_of(value, lanes: int, chunks: int) -> list:
    """Split a padded ``chunks * lanes``-bit value into its chunks (constant slices)."""
    return [value[c * lanes:(c + 1) * lanes] for c in range(chunks)]


def _depth(words: int) -> int:
    """Return a memory depth of at least 2, so that the address port is never 0 bits wide."""
    return max(words, 2)


def sdsa_input_layout(head_width: int, *, variant=Variant.SDSA3, layers: int = 1):
    """Return the payload layout of an SDSA unit's input stream: one token of one head.

    Fields, first in the least significant bits: ``q``, ``k`` and (except SDSA-2) ``v``, each a
    ``head_width``-bit spike row (bit j: channel j of the head); ``first`` (1 on a sample's first
    time step; read on the first beat of each time step); for SDSA-4, ``layer`` (which entry of the
    threshold memory this time step uses, ``ceil(log2(layers))`` bits; read with ``first``).
    """
    variant = _variant(variant)
    fields = {"q": head_width, "k": head_width}
    if variant != Variant.SDSA2:
        fields["v"] = head_width
    fields["first"] = 1
    if variant == Variant.SDSA4:
        fields["layer"] = log2_ceil(layers)
    return data.StructLayout(fields)


def sdsa_output_layout(head_width: int):
    """Return the payload layout of an SDSA unit's output stream: ``spikes`` of one token."""
    return data.StructLayout({"spikes": head_width})


class _Phase(enum.Enum, shape=2):
    """Name the part of a head pass: loading tokens (KV / column sums), LIF, Q pass."""

    LOAD = 0
    LIF = 1
    QPASS = 2


class SDSA(wiring.Component):
    """Compute one spike-driven self-attention layer, head by head, with additions on spikes.

    Beats arrive token by token for head 0, then head 1, and so on (``tokens * heads`` beats per
    time step); output beats leave in the same order, one per token. The first beat of a time step
    carries ``first`` (and ``layer`` for SDSA-4) for all heads of that step.

    Parameters
    ----------
    variant : Variant or int
        1, 2, 3 or 4 (see :class:`Variant`; 2 is our interpretation).
    tokens : int
        Tokens N per head (>= 1).
    head_width : int
        Channels d per head (>= 1).
    heads : int
        Heads per layer, processed one after another (>= 1). Membranes are kept for every head.
    lanes : int, optional
        Counter additions per cycle, 1..``head_width`` (default ``head_width``). A KV or Q.KV row
        addition takes ``ceil(head_width / lanes)`` cycles; so does the LIF step of one row.
    threshold : int or sequence of int, optional
        Integer threshold on the raw count (doubled units, ``quant.intops.lif_threshold``), in
        ``[1, 2 * max_count - 1]``: larger ones can never be reached. SDSA-4: the initial contents
        of the threshold memory, one per layer (an int: one layer). Defaults:
        :data:`DEFAULT_THRESHOLDS`.

    Members
    -------
    i : In(stream.Signature(sdsa_input_layout(...)))
        Q, K, V rows of one token of one head. SDSA-3/4: ``i.ready`` is a register (a two-beat
        input buffer takes a beat whenever its spare slot is empty); a taken beat enters the
        pipeline a cycle later.
    o : Out(stream.Signature(sdsa_output_layout(head_width)))
        Output spikes of one token of one head.
    """

    def __init__(self, *, variant, tokens: int, head_width: int, heads: int = 1,
                 lanes: int | None = None, threshold: int | Sequence[int] | None = None):
        self._variant = _variant(variant)
        self._tokens = check_int("tokens", tokens)
        self._head_width = check_int("head_width", head_width)
        self._heads = check_int("heads", heads)
        self._lanes = check_int("lanes", self._head_width if lanes is None else lanes,
                               1, self._head_width)
        matmul = self._variant in (Variant.SDSA3, Variant.SDSA4)
        # The largest count the neuron sees: a column sum of N bits, or Q (K^T V) <= N * d.
        self._max_count = self._tokens * (self._head_width if matmul else 1)
        highest = 2 * self._max_count - 1  # v < max_count keeps u = v + x below 2 * max_count
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS[self._variant]
        if self._variant == Variant.SDSA4:
            if isinstance(threshold, Sequence) and not isinstance(threshold, (str, bytes)):
                values = tuple(threshold)
                if not values:
                    raise ValueError("threshold must hold at least one layer's threshold")
            else:
                values = (threshold,)
            self._thresholds = tuple(
                check_int(f"threshold[{layer}]", value, 1, highest)
                for layer, value in enumerate(values)
            )
            # Any legal threshold may be written into the memory, so size the membrane for all.
            membrane_max = (highest - 1) >> 1
        else:
            if isinstance(threshold, Sequence):
                raise TypeError(f"threshold of {self._variant.name} must be one integer, not "
                                f"{threshold!r} (only SDSA4 has a threshold per layer)")
            self._thresholds = (check_int("threshold", threshold, 1, highest),)
            membrane_max = (self._thresholds[0] - 1) >> 1  # below threshold, then halved
        self._count_width = self._max_count.bit_length()
        self._kv_width = self._tokens.bit_length()
        self._membrane_width = membrane_max.bit_length()
        self._sum_width = (self._max_count + membrane_max).bit_length()
        self._threshold_width = highest.bit_length()
        self._chunks = ceil_div(self._head_width, self._lanes)
        super().__init__({
            "i": In(stream.Signature(sdsa_input_layout(
                self._head_width, variant=self._variant, layers=len(self._thresholds)))),
            "o": Out(stream.Signature(sdsa_output_layout(self._head_width))),
        })

    # Parameters ------------------------------------------------------------------------------
    @property
    def variant(self) -> Variant:
        """The operator computed."""
        return self._variant

    @property
    def tokens(self) -> int:
        """Tokens N per head."""
        return self._tokens

    @property
    def head_width(self) -> int:
        """Channels d per head."""
        return self._head_width

    @property
    def heads(self) -> int:
        """Heads per time step, processed one after another."""
        return self._heads

    @property
    def lanes(self) -> int:
        """Counter additions per cycle."""
        return self._lanes

    @property
    def chunks(self) -> int:
        """Cycles per row addition or row LIF step: ``ceil(head_width / lanes)``."""
        return self._chunks

    @property
    def threshold(self) -> int:
        """The threshold (SDSA-1..3) or the first layer's initial threshold (SDSA-4)."""
        return self._thresholds[0]

    @property
    def thresholds(self) -> tuple[int, ...]:
        """Initial contents of the threshold memory (SDSA-4; one entry for the others)."""
        return self._thresholds

    @property
    def layers(self) -> int:
        """Entries of the threshold memory (1 except for SDSA-4)."""
        return len(self._thresholds)

    @property
    def max_count(self) -> int:
        """Largest count the neuron can see: N (SDSA-1/2) or N * d (SDSA-3/4)."""
        return self._max_count

    @property
    def count_width(self) -> int:
        """Unsigned width of the neuron's input counts (``Q.KV`` or column sums)."""
        return self._count_width

    @property
    def kv_width(self) -> int:
        """Unsigned width of a ``K^T V`` entry, in ``[0, N]``."""
        return self._kv_width

    @property
    def membrane_width(self) -> int:
        """Unsigned width of a stored membrane (0: the threshold leaves nothing to keep)."""
        return self._membrane_width

    @property
    def threshold_width(self) -> int:
        """Unsigned width of a threshold (a word of SDSA-4's threshold memory)."""
        return self._threshold_width

    @property
    def latency(self) -> int:
        """Cycles from the issue of a token's last accumulation (SDSA-3/4) or from the end of a
        head's LIF step (SDSA-1/2) to that token's output beat, without backpressure."""
        if self._variant in (Variant.SDSA3, Variant.SDSA4):
            return self._chunks + 3
        return 2

    # Cycle model -----------------------------------------------------------------------------
    def cycles(self, q_spikes, k_spikes) -> int:
        """Return the cycles a run takes with no idle input and no backpressure (cycle model).

        Parameters
        ----------
        q_spikes, k_spikes
            Set bits of each Q row and K row, ``[passes, N]``: one pass per head per time step,
            in stream order (a ``[steps, heads, N]`` array is flattened the same way).

        Returns
        -------
        int
            Cycles from the first offered input beat to the cycle the last output beat is
            taken, counted inclusively. It models the schedule exactly (the tests compare it
            with the simulated unit); ``docs/sdsa-unit.md`` explains each term.
        """
        q_spikes = _as_passes(q_spikes, self._tokens)
        k_spikes = _as_passes(k_spikes, self._tokens)
        if len(q_spikes) != len(k_spikes):
            raise ValueError(f"q_spikes has {len(q_spikes)} passes, k_spikes {len(k_spikes)}")
        n, chunks = self._tokens, self._chunks
        if self._variant in (Variant.SDSA1, Variant.SDSA2):
            # Load N beats, C LIF cycles, N Q rows out; the last row leaves a cycle later.
            return len(q_spikes) * (2 * n + chunks) + 2
        # The input buffer hands the pipeline each beat a cycle after it is offered: the whole
        # schedule starts at cycle 1.
        accept = 1              # cycle the pipeline takes the next input beat
        released = 1            # first cycle stage 1 is not holding a stalled accumulation
        lif_start = 1 - chunks  # cycle the LIF took the first chunk of the previous token
        done = 0
        for q_row, k_row in zip(q_spikes, k_spikes):
            # Phase A: a K row's addresses appear a cycle after it is taken and issue one
            # (row, chunk) update per cycle; the next row is taken with the last update. An
            # empty row makes no address (one cycle to take it) unless it ends the head.
            for token, k in enumerate(k_row):
                start = max(accept + 1, released)
                if k:
                    accept = start + k * chunks - 1
                elif token == n - 1:
                    accept = start
                else:
                    accept += 1
            # Phase B: Q[0] enters as the last K address leaves; its addresses follow at once.
            issue = accept + 1
            for q in q_row:
                last = issue + max(1, q * chunks) - 1
                # Stage 1 hands the token to the LIF once the LIF has taken the previous one.
                handoff = max(last + 1, lif_start + chunks - 1)
                lif_start = max(handoff + 1, lif_start + chunks)
                issue = released = handoff
                done = lif_start + chunks + 1
            accept = last  # the next head's first row enters with the last Q address
        return done + 1

    def ideal_cycles(self, q_spikes: int, k_spikes: int, v_spikes: int = 0,
                     kv_spikes: int = 0) -> float:
        """Return the additions the spikes require, divided by :attr:`lanes`, for one head.

        SDSA-3/4: every K spike adds a d-entry V row into KV and every Q spike adds a d-entry KV
        row into the token's counts: ``(k_spikes + q_spikes) * d / lanes``. SDSA-1: one increment
        per set bit of ``K AND V`` (``kv_spikes``); SDSA-2: per K spike.
        """
        if self._variant == Variant.SDSA1:
            return kv_spikes / self._lanes
        if self._variant == Variant.SDSA2:
            return k_spikes / self._lanes
        return (k_spikes + q_spikes) * self._head_width / self._lanes

    def dense_cycles(self) -> int:
        """Return the cycles a dense evaluation with the same lanes needs for one head.

        SDSA-3/4: ``K^T V`` and ``Q KV`` each visit all ``N * d`` (token, row) pairs, one row
        addition of ``ceil(d / lanes)`` cycles each. SDSA-1/2: all ``N * d`` column entries.
        """
        if self._variant in (Variant.SDSA3, Variant.SDSA4):
            return 2 * self._tokens * self._head_width * self._chunks
        return self._tokens * self._chunks

    # Hardware --------------------------------------------------------------------------------
    def elaborate(self, platform):
        if self._variant in (Variant.SDSA3, Variant.SDSA4):
            return self._elaborate_matmul()
        return self._elaborate_column_sum()

    def _chunk_layout(self, width: int):
        return data.ArrayLayout(unsigned(width), self._lanes)

    def _padded(self, m: Module, row, name: str) -> Signal:
        """Return ``row`` zero-padded to ``chunks * lanes`` bits, so it splits into chunks."""
        padded = Signal(self._chunks * self._lanes, name=name)
        m.d.comb += padded.eq(row)
        return padded

    def _memories(self, m: Module, membranes: int):
        """Create the membrane and threshold memories; return the LIF's read/write ports."""
        membrane_read = membrane_write = threshold_read = None
        if self._membrane_width:
            membrane = Memory(shape=self._chunk_layout(self._membrane_width),
                              depth=_depth(membranes), init=[])
            m.submodules.membrane = membrane
            membrane_write = membrane.write_port()
            membrane_read = membrane.read_port(transparent_for=(membrane_write,))
        if self._variant == Variant.SDSA4:
            thresholds = Memory(shape=unsigned(self._threshold_width),
                                depth=_depth(self.layers), init=self._thresholds)
            m.submodules.thresholds = thresholds
            # A handful of words read asynchronously: distributed RAM / registers, no pipeline.
            threshold_read = thresholds.read_port(domain="comb")
        return membrane_read, membrane_write, threshold_read

    def _lif_chunk(self, m: Module, *, x, first, threshold, membrane_read, name="lif"):
        """Build ``lanes`` integer LIF neurons on one chunk; return (spikes, new membranes).

        ``membrane_read.data`` holds the stored membranes of this chunk (ignored when ``first``).
        """
        spikes = Signal(self._lanes, name=f"{name}_spikes")
        new_membrane = Signal(self._chunk_layout(max(self._membrane_width, 1)),
                              name=f"{name}_new_membrane")
        for lane in range(self._lanes):
            # Unsigned counts: the plain compare (the LIF units' carry-save form is for signed
            # inputs); without a membrane memory nothing is carried (previous is 0).
            total = Signal(self._sum_width, name=f"{name}_u_{lane}")
            stored = None if membrane_read is None else membrane_read.data[lane]
            m.d.comb += new_membrane[lane].eq(lif_update(
                m, first=first, stored=stored, x=x[lane], threshold=threshold, total=total,
                spike=spikes[lane], name=name))
        return spikes, new_membrane

    def _chunk_flags(self, m: Module, name: str):
        """Return (``chunk == 0``, ``chunk == chunks - 1``) flags of a chunk counter.

        Registers kept by :meth:`_advance_chunk` (a flag instead of a compare on the counter),
        or constants when a row is one chunk.
        """
        if self._chunks == 1:
            return Const(1, 1), Const(1, 1)
        zero = Signal(name=f"{name}_zero", init=1)
        last = Signal(name=f"{name}_last")
        return zero, last

    def _advance_chunk(self, m: Module, counter, zero, last):
        """Step a chunk counter (wrapping after ``chunks - 1``) and its flags."""
        chunks = self._chunks
        if chunks == 1:
            return
        with m.If(last):
            m.d.sync += [counter.eq(0), zero.eq(1), last.eq(0)]
        with m.Else():
            m.d.sync += [counter.eq(counter + 1), zero.eq(0), last.eq(counter == chunks - 2)]

    def _step_context(self, m: Module, accepted, token, head, payload=None):
        """Latch ``first`` (and SDSA-4's ``layer``) on the first beat of each time step.

        ``payload``: the accepted beat (default: the input stream's).
        """
        if payload is None:
            payload = self.i.payload
        step_first = Signal(name="step_first")
        step_layer = Signal(bits_for(self.layers), name="step_layer")
        step_start = Signal(name="step_start")
        m.d.comb += step_start.eq((token == 0) & (head == 0))
        with m.If(accepted & step_start):
            m.d.sync += step_first.eq(payload.first)
            if self._variant == Variant.SDSA4:
                m.d.sync += step_layer.eq(payload.layer)
        # The beat that starts the step uses its own flags, not the stale registers.
        first = Mux(step_start, payload.first, step_first)
        layer = (Mux(step_start, payload.layer, step_layer)
                 if self._variant == Variant.SDSA4 else step_layer)
        return first, layer

    # SDSA-3 / SDSA-4 -------------------------------------------------------------------------
    def _elaborate_matmul(self):
        m = Module()
        n, d, lanes, chunks = self._tokens, self._head_width, self._lanes, self._chunks
        chunk_bits = log2_ceil(chunks)

        phase = Signal(_Phase, name="phase")

        # Q rows wait here until KV is complete.
        q_memory = Memory(shape=d, depth=_depth(n), init=[])
        m.submodules.q_rows = q_memory
        q_write = q_memory.write_port()
        # Transparent: with N = 1, Q[0] is read back in the cycle it is written.
        q_read = q_memory.read_port(transparent_for=(q_write,))

        # K^T V, one word per (row i, chunk c) at address {i, c}: lanes counts of [0, N].
        kv_memory = Memory(shape=self._chunk_layout(self._kv_width), depth=_depth(d << chunk_bits),
                           init=[])
        m.submodules.kv = kv_memory
        kv_write = kv_memory.write_port()
        # Transparent: a row updated in consecutive cycles reads the value being written.
        kv_read = kv_memory.read_port(transparent_for=(kv_write,))
        # Rows of KV written in this head pass; an unwritten row reads as 0, so KV never needs
        # clearing between heads.
        row_written = Signal(d, name="row_written")

        membrane_read, membrane_write, threshold_read = self._memories(
            m, self._heads * n * chunks)

        # One addressing unit serves both passes, which never overlap: the head's K rows as one
        # frame (tag: the token's V row), then each stored Q row as a frame of its own, so an
        # empty Q row still yields a beat (count 0, last) that carries its token to the LIF.
        # Registered: its columns and flags come from registers, so the KV address and the row's
        # written flag do not wait on a priority encoder (same beats and cycles).
        addressing = SpikeAddressing(width=d, ports=1, max_words=n, tag_shape=unsigned(d),
                                     registered=True)
        m.submodules.addressing = addressing
        beat = addressing.o.payload
        has_address = Signal(name="has_address")
        row = _counter(d, "row")
        m.d.comb += [has_address.eq(beat.count != 0), row.eq(beat.column[0])]

        # Input buffer, two beats: ``i.ready`` is a register (the spare slot is empty), so the
        # producer's handshake never waits on the pipeline's stall logic, and the pipeline reads
        # the beat from a register, so the addressing unit's peel logic starts at a register.
        # A beat reaches the pipeline one cycle after it is offered; with a producer that offers
        # a beat in every cycle the buffer never runs dry, so the whole schedule is one cycle
        # later than without it.
        inp = Signal(self.i.payload.shape(), name="inp")  # the beat the pipeline sees
        inp_valid = Signal(name="inp_valid")
        inp_ready = Signal(name="inp_ready")
        spare = Signal(self.i.payload.shape(), name="in_spare")
        spare_valid = Signal(name="in_spare_valid")
        m.d.comb += self.i.ready.eq(~spare_valid)
        with m.If(~spare_valid):  # (only read once marked valid below)
            m.d.sync += spare.eq(self.i.payload)
        with m.If(~inp_valid | inp_ready):  # the pipeline's slot is free after this cycle
            m.d.sync += [inp.eq(Mux(spare_valid, spare.as_value(), self.i.payload.as_value())),
                         inp_valid.eq(spare_valid | self.i.valid), spare_valid.eq(0)]
        with m.Elif(~spare_valid):
            m.d.sync += spare_valid.eq(self.i.valid)

        # Input side: token and head of the next beat, and the time step's flags.
        in_token = _counter(n, "in_token")
        in_head = _counter(self._heads, "in_head")
        accepted = Signal(name="accepted")
        m.d.comb += accepted.eq(inp_valid & inp_ready)
        first, layer = self._step_context(m, accepted, in_token, in_head, inp)
        pass_first = Signal(name="pass_first")
        pass_layer = Signal(bits_for(self.layers), name="pass_layer")

        # Stage 1 of the accumulate pipeline (one cycle after the KV read is issued).
        s1_valid = Signal(name="s1_valid")
        s1_load = Signal(name="s1_load")              # 1: a KV update, 0: a Q.KV accumulation
        s1_address = Signal(len(kv_read.addr), name="s1_address")
        s1_chunk = _counter(chunks, "s1_chunk")
        s1_v = Signal(lanes, name="s1_v")
        s1_zero = Signal(name="s1_zero")              # the KV word reads as 0 (row not written)
        s1_last = Signal(name="s1_last")              # the token's last accumulation
        s1_hand = Signal(name="s1_hand")              # s1_valid & ~s1_load & s1_last
        s1_first = Signal(name="s1_first")
        s1_layer = Signal(bits_for(self.layers), name="s1_layer")
        s1_stall = Signal(name="s1_stall")

        # Issue: one (row, chunk) KV update or Q.KV accumulation per cycle, chunk by chunk.
        chunk = _counter(chunks, "chunk")
        # chunk == 0 and chunk == chunks - 1, as registers (constants with one chunk).
        chunk_zero, chunk_last = self._chunk_flags(m, "chunk")
        fresh = Signal(name="fresh")
        row_fresh = Signal(name="row_fresh")
        issue = Signal(name="issue")
        consume = Signal(name="consume")
        token_last = Signal(name="token_last")
        m.d.comb += [
            # A row is fresh (reads as 0) if unwritten when its chunk 0 issued.
            row_fresh.eq(Mux(chunk_zero, ~row_written.bit_select(row, 1), fresh)),
            # (The LIF phase is SDSA-1/2's: phase is LOAD or QPASS here.)
            issue.eq(addressing.o.valid & ~s1_stall),
            consume.eq(issue & (~has_address | chunk_last)),
            addressing.o.ready.eq(consume),
            token_last.eq(beat.last & (~has_address | chunk_last)),
        ]
        tag_padded = self._padded(m, beat.tag, "tag_padded")

        # KV read port: held while stage 1 stalls.
        m.d.comb += [kv_read.en.eq(~s1_stall),
                     kv_read.addr.eq(Cat(chunk[:chunk_bits], row))]
        with m.If(~s1_stall):
            m.d.sync += [
                s1_valid.eq(issue & (has_address | (phase == _Phase.QPASS))),
                s1_load.eq(phase == _Phase.LOAD),
                s1_address.eq(kv_read.addr),
                s1_chunk.eq(chunk),
                s1_first.eq(pass_first),
                s1_layer.eq(pass_layer),
            ]
            with m.If(phase == _Phase.LOAD):
                m.d.sync += [
                    s1_v.eq(_select(m, chunk, _chunks_of(tag_padded, lanes, chunks), lanes,
                                    "tag_chunk")),
                    s1_zero.eq(row_fresh),
                    s1_last.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    s1_v.eq(0),
                    # An empty Q row is a null accumulation: it only marks the token's end.
                    s1_zero.eq(~has_address | ~row_written.bit_select(row, 1)),
                    s1_last.eq(token_last),
                ]
            m.d.sync += s1_hand.eq(issue & (phase == _Phase.QPASS) & token_last)
        with m.If(issue & has_address):
            m.d.sync += fresh.eq(row_fresh)
            self._advance_chunk(m, chunk, chunk_zero, chunk_last)
            with m.If((phase == _Phase.LOAD) & chunk_zero):
                m.d.sync += row_written.bit_select(row, 1).eq(1)

        # The addressing unit's input: the input stream's K rows (Q rows go to memory), then,
        # from the head's last beat on, the stored Q rows read back. The unit holds one word, so
        # Q[0] enters in the cycle the last K word's final address leaves, and the next head's
        # first K row in the cycle the last Q row's does: no cycle is lost between passes.
        q_pending = Signal(name="q_pending")          # the Q read port holds a row to feed
        q_next = Signal(range(n + 1), name="q_next")  # the row the next read fetches
        q_tokens = _counter(n, "q_tokens")  # tokens whose accumulation has finished
        with m.If(q_pending):
            feed = Signal(name="feed")
            m.d.comb += [
                addressing.i.valid.eq(1),
                addressing.i.payload.bits.eq(q_read.data),
                addressing.i.payload.last.eq(1),
                feed.eq(addressing.i.ready),
                q_read.addr.eq(q_next),
                q_read.en.eq(feed),  # hold the row on the port until it is taken
            ]
            with m.If(feed):
                m.d.sync += [q_pending.eq(q_next != n), q_next.eq(q_next + 1)]
        with m.Else():
            m.d.comb += [
                addressing.i.valid.eq(inp_valid),
                addressing.i.payload.bits.eq(inp.k),
                addressing.i.payload.last.eq(in_token == n - 1),
                addressing.i.payload.tag.eq(inp.v),
                inp_ready.eq(addressing.i.ready),
                q_read.addr.eq(0),  # Q[0] is on the port when the feeding starts
            ]

        m.d.comb += [
            q_write.addr.eq(in_token),
            q_write.data.eq(inp.q),
            q_write.en.eq(accepted),
        ]
        with m.If(accepted):
            m.d.sync += in_token.eq(Mux(in_token == n - 1, 0, in_token + 1))
            with m.If(in_token == 0):
                m.d.sync += [pass_first.eq(first), pass_layer.eq(layer)]
            with m.If(in_token == n - 1):
                m.d.sync += [
                    q_pending.eq(1),
                    q_next.eq(1),
                    in_head.eq(Mux(in_head == self._heads - 1, 0, in_head + 1)),
                ]
        with m.If((phase == _Phase.LOAD) & consume & beat.last):
            # KV is complete once this update lands (the KV read port is transparent).
            m.d.sync += phase.eq(_Phase.QPASS)
        with m.If((phase == _Phase.QPASS) & consume & beat.last):
            m.d.sync += q_tokens.eq(Mux(q_tokens == n - 1, 0, q_tokens + 1))
            with m.If(q_tokens == n - 1):
                # The head's last accumulation has issued: the next head's K addresses follow
                # (stage 1's KV read is protected by the stall) and KV starts over, unwritten.
                m.d.sync += [phase.eq(_Phase.LOAD), row_written.eq(0)]

        # Stage 1: KV update (phase A) or accumulation into the token's counts (phase B).
        kv_word = Signal(self._chunk_layout(self._kv_width), name="kv_word")
        m.d.comb += kv_word.eq(Mux(s1_zero, 0, kv_read.data))
        m.d.comb += [kv_write.addr.eq(s1_address), kv_write.en.eq(s1_valid & s1_load)]
        for lane in range(lanes):
            m.d.comb += kv_write.data[lane].eq(kv_word[lane] + s1_v[lane])

        counts_layout = data.ArrayLayout(self._chunk_layout(self._count_width), chunks)
        accumulator = Signal(counts_layout, name="accumulator")
        summed = Signal(counts_layout, name="summed")
        m.d.comb += summed.eq(accumulator)
        chunk_counts = _select(m, s1_chunk, [accumulator[c] for c in range(chunks)],
                               self._chunk_layout(self._count_width), "accumulator_chunk")
        chunk_sums = Signal(self._chunk_layout(self._count_width), name="chunk_sums")
        for lane in range(lanes):
            m.d.comb += chunk_sums[lane].eq(chunk_counts[lane] + kv_word[lane])
        if chunks == 1:
            m.d.comb += summed[0].eq(chunk_sums)
        else:
            with m.Switch(s1_chunk):
                for c in range(chunks):
                    with m.Case(c):
                        m.d.comb += summed[c].eq(chunk_sums)

        # The finished token's counts wait here for the LIF.
        counts = Signal(counts_layout, name="counts")
        counts_valid = Signal(name="counts_valid")
        counts_first = Signal(name="counts_first")
        counts_layer = Signal(bits_for(self.layers), name="counts_layer")
        lif_chunk = _counter(chunks, "lif_chunk")
        lif_zero, lif_last = self._chunk_flags(m, "lif_chunk")
        lif_take = Signal(name="lif_take")
        l1_stall = Signal(name="l1_stall")
        m.d.comb += [
            lif_take.eq(counts_valid & ~l1_stall),
            s1_stall.eq(s1_hand & counts_valid & ~(lif_take & lif_last)),
        ]
        with m.If(lif_take):
            self._advance_chunk(m, lif_chunk, lif_zero, lif_last)
            with m.If(lif_last):
                m.d.sync += counts_valid.eq(0)
        with m.If(s1_valid & ~s1_load & ~s1_stall):
            with m.If(s1_last):
                m.d.sync += [
                    accumulator.eq(0),
                    counts.eq(summed),
                    counts_valid.eq(1),
                    counts_first.eq(s1_first),
                    counts_layer.eq(s1_layer),
                ]
            with m.Else():
                m.d.sync += accumulator.eq(summed)

        counts_chunk = _select(m, lif_chunk, [counts[c] for c in range(chunks)],
                               self._chunk_layout(self._count_width), "counts_chunk")
        self._lif_to_output(m, counts_chunk, lif_chunk, lif_take, l1_stall, counts_first,
                            counts_layer, membrane_read, membrane_write, threshold_read,
                            self._heads * n * chunks)
        return m

    def _lif_to_output(self, m, x, chunk, take, l1_stall, first, layer, membrane_read,
                       membrane_write, threshold_read, membranes):
        """Run one LIF chunk per taken ``x`` and emit each completed row as an output beat."""
        lanes, chunks = self._lanes, self._chunks
        # Membranes are visited in a fixed order (head, token, chunk): a counter addresses them.
        membrane_address = _counter(membranes, "membrane_address")
        l1_valid = Signal(name="l1_valid")
        l1_x = Signal(self._chunk_layout(self._count_width), name="l1_x")
        l1_chunk = _counter(chunks, "l1_chunk")
        l1_first = Signal(name="l1_first")
        l1_layer = Signal(bits_for(self.layers), name="l1_layer")
        l1_address = _counter(membranes, "l1_address")
        l1_row_end = Signal(name="l1_row_end")
        m.d.comb += l1_stall.eq(l1_valid & l1_row_end & self.o.valid & ~self.o.ready)
        if membrane_read is not None:
            m.d.comb += [membrane_read.addr.eq(membrane_address), membrane_read.en.eq(take)]
        with m.If(take):
            m.d.sync += [
                membrane_address.eq(Mux(membrane_address == membranes - 1, 0,
                                        membrane_address + 1)),
                l1_x.eq(x), l1_chunk.eq(chunk), l1_first.eq(first), l1_layer.eq(layer),
                l1_address.eq(membrane_address),
                l1_row_end.eq(1 if chunks == 1 else chunk == chunks - 1),
            ]
        with m.If(~l1_stall):
            m.d.sync += l1_valid.eq(take)

        if threshold_read is not None:
            m.d.comb += threshold_read.addr.eq(l1_layer)
            threshold = threshold_read.data
        else:
            threshold = Const(self._thresholds[0], self._threshold_width)
        spikes, new_membrane = self._lif_chunk(m, x=l1_x, first=l1_first, threshold=threshold,
                                               membrane_read=membrane_read)
        if membrane_write is not None:
            m.d.comb += [
                membrane_write.addr.eq(l1_address),
                membrane_write.data.eq(new_membrane),
                membrane_write.en.eq(l1_valid & ~l1_stall),
            ]
        row = Signal(chunks * lanes, name="row")
        full_row = Signal(chunks * lanes, name="full_row")
        m.d.comb += full_row.eq(row)
        if chunks == 1:
            m.d.comb += full_row.eq(spikes)
        else:
            with m.Switch(l1_chunk):
                for c in range(chunks):
                    with m.Case(c):
                        m.d.comb += full_row[c * lanes:(c + 1) * lanes].eq(spikes)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(l1_valid & ~l1_stall):
            m.d.sync += row.eq(full_row)
            with m.If(l1_row_end):
                m.d.sync += [self.o.valid.eq(1),
                             self.o.payload.spikes.eq(full_row[:self._head_width])]

    # SDSA-1 / SDSA-2 -------------------------------------------------------------------------
    def _elaborate_column_sum(self):
        m = Module()
        n, d, lanes, chunks = self._tokens, self._head_width, self._lanes, self._chunks
        phase = Signal(_Phase, name="phase")

        q_memory = Memory(shape=d, depth=_depth(n), init=[])
        m.submodules.q_rows = q_memory
        q_write = q_memory.write_port()
        q_read = q_memory.read_port()
        membrane_read, membrane_write, threshold_read = self._memories(m, self._heads * chunks)

        in_token = _counter(n, "in_token")
        in_head = _counter(self._heads, "in_head")
        accepted = Signal(name="accepted")
        m.d.comb += [
            self.i.ready.eq(phase == _Phase.LOAD),
            accepted.eq(self.i.valid & self.i.ready),
        ]
        first, _ = self._step_context(m, accepted, in_token, in_head)
        pass_first = Signal(name="pass_first")

        # Column sums: one d-bit row per token added into d counters (1-bit increments).
        column_layout = data.ArrayLayout(self._chunk_layout(self._count_width), chunks)
        columns = Signal(column_layout, name="columns")
        if self._variant == Variant.SDSA1:
            row_bits = self.i.payload.k & self.i.payload.v
        else:
            row_bits = self.i.payload.k
        row_padded = self._padded(m, row_bits, "row_padded")
        m.d.comb += [
            q_write.addr.eq(in_token),
            q_write.data.eq(self.i.payload.q),
            q_write.en.eq(accepted),
        ]
        with m.If(accepted):
            for index in range(chunks * lanes):
                column = columns[index // lanes][index % lanes]
                m.d.sync += column.eq(Mux(in_token == 0, 0, column) + row_padded[index])
            m.d.sync += in_token.eq(Mux(in_token == n - 1, 0, in_token + 1))
            with m.If(in_token == 0):
                m.d.sync += pass_first.eq(first)
            with m.If(in_token == n - 1):
                m.d.sync += [
                    phase.eq(_Phase.LIF),
                    in_head.eq(Mux(in_head == self._heads - 1, 0, in_head + 1)),
                ]

        # Q pass state, needed by the LIF phase: the mask may change only once the previous
        # head's last Q row has been masked.
        out_stage_valid = Signal(name="out_stage_valid")

        # LIF phase: one chunk of channel neurons per cycle into the mask.
        lif_chunk = _counter(chunks, "lif_chunk")
        lif_take = Signal(name="lif_take")
        m.d.comb += lif_take.eq((phase == _Phase.LIF) & ~out_stage_valid)
        membrane_address = _counter(self._heads * chunks, "membrane_address")
        columns_chunk = _select(m, lif_chunk, [columns[c] for c in range(chunks)],
                                self._chunk_layout(self._count_width), "columns_chunk")
        if membrane_read is not None:
            m.d.comb += [membrane_read.addr.eq(membrane_address), membrane_read.en.eq(lif_take)]
        l1_valid = Signal(name="l1_valid")
        l1_x = Signal(self._chunk_layout(self._count_width), name="l1_x")
        l1_chunk = _counter(chunks, "l1_chunk")
        l1_first = Signal(name="l1_first")
        l1_address = _counter(self._heads * chunks, "l1_address")
        m.d.sync += l1_valid.eq(lif_take)
        with m.If(lif_take):
            m.d.sync += [
                l1_x.eq(columns_chunk), l1_chunk.eq(lif_chunk), l1_first.eq(pass_first),
                l1_address.eq(membrane_address),
                membrane_address.eq(Mux(membrane_address == self._heads * chunks - 1, 0,
                                        membrane_address + 1)),
            ]
            with m.If(lif_chunk == chunks - 1):
                m.d.sync += [lif_chunk.eq(0), phase.eq(_Phase.QPASS)]
            with m.Else():
                m.d.sync += lif_chunk.eq(lif_chunk + 1)
        threshold = Const(self._thresholds[0], self._threshold_width)
        spikes, new_membrane = self._lif_chunk(m, x=l1_x, first=l1_first, threshold=threshold,
                                               membrane_read=membrane_read)
        if membrane_write is not None:
            m.d.comb += [
                membrane_write.addr.eq(l1_address),
                membrane_write.data.eq(new_membrane),
                membrane_write.en.eq(l1_valid),
            ]
        mask = Signal(chunks * lanes, name="mask")
        with m.If(l1_valid):
            with m.Switch(l1_chunk):
                for c in range(chunks):
                    with m.Case(c):
                        m.d.sync += mask[c * lanes:(c + 1) * lanes].eq(spikes)

        # Q pass: read each stored Q row and emit it masked by the channel spikes.
        out_token = _counter(n, "out_token")
        out_issue = Signal(name="out_issue")
        out_stall = Signal(name="out_stall")
        m.d.comb += [
            out_stall.eq(out_stage_valid & self.o.valid & ~self.o.ready),
            out_issue.eq((phase == _Phase.QPASS) & ~out_stall),
            q_read.addr.eq(out_token),
            q_read.en.eq(out_issue),
        ]
        with m.If(~out_stall):
            m.d.sync += out_stage_valid.eq(out_issue)
        with m.If(out_issue):
            m.d.sync += out_token.eq(Mux(out_token == n - 1, 0, out_token + 1))
            with m.If(out_token == n - 1):
                m.d.sync += phase.eq(_Phase.LOAD)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(out_stage_valid & ~out_stall):
            m.d.sync += [self.o.valid.eq(1),
                         self.o.payload.spikes.eq(q_read.data & mask[:d])]
        return m
