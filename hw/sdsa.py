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

The LIF step is the project's integer contract (``quant.intops.lif_step``), built by
:func:`hw.neuron.lif_update` (the one place it is written): the threshold is in
doubled units on the raw count, so SDSA-3's official ``* 0.125`` then theta 0.5 is threshold
``lif_threshold(0.5, 0.125) == 8``. Membranes persist across time steps (per head, token and channel
for SDSA-3/4; per head and channel for SDSA-1/2) and are read as 0 in a sample's first time step.
``docs/units/sdsa.md`` describes the datapath, the cycle model and the ideal it is measured against.

Files: this one holds the unit (parameters, widths, the cycle model, the helpers both datapaths
use); ``hw/sdsa_matmul.py`` the SDSA-3/4 datapath and ``hw/sdsa_column.py`` the SDSA-1/2 one (mixins
of :class:`SDSA`); ``hw/sdsa_common.py`` the variants, payload layouts and small circuit helpers
(re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.neuron import lif_update
from hw.params import bits_for, ceil_div, check_int
from hw.sdsa_column import ColumnSumDatapath
from hw.sdsa_common import (DEFAULT_THRESHOLDS, Variant, _depth, _variant, sdsa_input_layout,
                            sdsa_output_layout)
from hw.sdsa_matmul import MatmulDatapath

__all__ = [
    "Variant",
    "SDSA",
    "sdsa_input_layout",
    "sdsa_output_layout",
    "DEFAULT_THRESHOLDS",
]


def _as_passes(spikes, tokens: int) -> list[list[int]]:
    """Return per-pass rows of spike counts from a ``[passes, N]`` or ``[steps, heads, N]``."""
    array = np.asarray(spikes, dtype=np.int64)
    if array.ndim not in (2, 3) or array.shape[-1] != tokens:
        raise ValueError(f"spike counts must be [passes, {tokens}] or [steps, heads, {tokens}], "
                         f"got shape {array.shape}")
    return array.reshape(-1, tokens).tolist()


class SDSA(MatmulDatapath, ColumnSumDatapath, wiring.Component):
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
            with the simulated unit); ``docs/units/sdsa.md`` explains each term.
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
        # The spike is decided by one carry chain on ``previous + x - threshold`` (carry-save,
        # :func:`hw.neuron.lif_update`), beside the membrane's adder instead of after it. The
        # counts and membranes are unsigned: they enter the signed compare zero-extended, and
        # the threshold gets a 0 on top so that its complement is ``-threshold - 1``. The
        # compare holds ``[-(2**tw - 1), 2**sw - 1]``.
        signed_threshold = Cat(threshold, Const(0, 1)).as_signed()
        compare_width = max(self._sum_width, self._threshold_width) + 1
        for lane in range(self._lanes):
            # Without a membrane memory nothing is carried (previous is 0).
            total = Signal(self._sum_width, name=f"{name}_u_{lane}")
            stored = None if membrane_read is None else membrane_read.data[lane]
            m.d.comb += new_membrane[lane].eq(lif_update(
                m, first=first, stored=stored, x=x[lane], threshold=signed_threshold,
                total=total, spike=spikes[lane], compare_width=compare_width,
                name=f"{name}_{lane}"))
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
