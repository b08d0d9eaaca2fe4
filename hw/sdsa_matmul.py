"""SDSA-3 and SDSA-4 (``SN(Q (K^T V))``) hardware: the datapath of :class:`hw.sdsa.SDSA` for
these variants, as a mixin of that class (it reads the unit's parameters and shared helpers).

Per head: the K rows (their V rows as tags) go through one addressing unit and add V rows into
``K^T V`` (phase LOAD), then the stored Q rows go through it and add ``K^T V`` rows into each
token's counts (phase QPASS); each token's counts then run through the channel LIF
(:meth:`hw.sdsa.SDSA._lif_chunk`, i.e. :func:`hw.neuron.lif_update`), chunk by chunk, into the
output. ``docs/units/sdsa.md`` describes the pipeline and its cycle model
(:meth:`hw.sdsa.SDSA.cycles`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from hw.addressing import SpikeAddressing
from hw.params import bits_for, log2_ceil
from hw.sdsa_common import _chunks_of, _counter, _depth, _Phase, _select

__all__ = ["MatmulDatapath"]


class MatmulDatapath:
    """``elaborate`` of SDSA-3/4: mixed into :class:`hw.sdsa.SDSA`, not used alone."""

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
        # Not zeroed when unused: ``row`` (below) is the column register itself, whose fan-out
        # (KV address, the written-row select and its decoder) is the unit's widest. Without an
        # address, a KV read at a stray row is discarded (``s1_zero``) and nothing is written.
        addressing = SpikeAddressing(width=d, ports=1, max_words=n, tag_shape=unsigned(d),
                                     registered=True, zero_unused=False)
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
        # (data registers are reset-less: their valid bits carry the reset)
        inp = Signal(self.i.payload.shape(), name="inp", reset_less=True)  # the pipeline's beat
        inp_valid = Signal(name="inp_valid")
        inp_ready = Signal(name="inp_ready")
        spare = Signal(self.i.payload.shape(), name="in_spare", reset_less=True)
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
        counts = Signal(counts_layout, name="counts", reset_less=True)   # counts_valid gates
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
        l1_x = Signal(self._chunk_layout(self._count_width), name="l1_x", reset_less=True)
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
