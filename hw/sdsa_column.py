"""SDSA-1 (``Q AND SN(sum_n K AND V)``) and SDSA-2 (``Q AND SN(sum_n K)``, our interpretation)
hardware: the datapath of :class:`hw.sdsa.SDSA` for these variants, as a mixin of that class.

Per head: each token's row (``K AND V``, or ``K``) adds into ``d`` column counters while its Q row
is stored (phase LOAD); one LIF step per channel (:meth:`hw.sdsa.SDSA._lif_chunk`, i.e.
:func:`hw.neuron.lif_update`) turns the column sums into a channel mask, chunk by chunk (phase
LIF); every stored Q row leaves masked by it (phase QPASS). ``docs/units/sdsa.md`` describes it.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.memory import Memory

from hw.sdsa_common import Variant, _counter, _depth, _Phase, _select

__all__ = ["ColumnSumDatapath"]


class ColumnSumDatapath:
    """``elaborate`` of SDSA-1/2: mixed into :class:`hw.sdsa.SDSA`, not used alone."""

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
        l1_x = Signal(self._chunk_layout(self._count_width), name="l1_x", reset_less=True)
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
