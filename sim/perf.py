"""Cycle model of the shared network (:class:`hw.shared.SharedNetwork`), from first principles.

``python -m sim.perf --checkpoint PATH [--images N] [--T 1 2] [--rtl-report FILE] [--json OUT]``

Given the network's plan (:class:`hw.plan.SharedPlan`) and the integer golden model's firing
trace of an image (:class:`quant.intmodel.Trace`, the object ``sim.e2e`` gets from
``golden_run``), :class:`CycleModel` predicts the cycles of every program step at every time
step, and the total per image, as the RTL counts them (``sim.tb.network`` notes the ``cycles``
counter whenever the sequencer moves to another step). Nothing here is fitted to measured
numbers: every constant below is a register count read off the RTL and named after it, and the
data-dependent terms (spikes per input row word, the valid taps of each spike, output groups,
read-out words, K and Q set bits per SDSA token) come from the trace. ``docs/perf.md`` gives
the equations per step kind and the measured agreement.

Timing of one step (cycles counted from the one in which the sequencer enters the step):

* the sequencer decodes the step (cycle 0), loads the descriptor (cycle 1) and pulses
  ``step_start`` (cycle ``S = 2``); the step's final write ``F`` is registered (``finished``)
  and the next step is entered one cycle later, so a step lasts ``F - S + 4`` cycles
  (:data:`SEQ_BEFORE_START` + :data:`SEQ_AFTER_FINISH`), at least 5.
* ``F - S`` is the datapath's own time: the stem's taps, the engine's accumulation and
  read-out, the stream reader's words, the pool's groups, the SDSA's feed and passes, and the
  fill and drain of the pipelines between them.

With ``--rtl-report`` the CLI compares the prediction with a co-simulation's measured cycles:
a ``report_T{T}.json`` of ``sim.e2e`` (per step, summed over time steps, mean over images) or a
``results_T{T}.json`` of the testbench (per image, per step and time step).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.cliargs import Parser
from hw.params import ceil_div
from hw.stem import row_split
from hw.program import SinkKind, StepKind

__all__ = ["CycleModel", "CONSTANTS", "engine_frame_cycles", "engine_frame_timing",
           "spike_taps", "sdsa_cycles", "column_sdsa_cycles", "sdsa_step_cycles", "map_spikes",
           "stem_cycles", "event_in_cycles",
           "stream_lif_cycles",
           "pool_lif_cycles", "band_step_cycles", "band_load_cycles",
           "band_chain_cycles", "rtl_step_cycles", "check_agreement", "load_trace", "read_rtl",
           "evaluate", "main"]

# --- constants: pipeline depths, each read off the RTL -------------------------------------------

#: Sequencer (``hw/sequencer.py``): phase 0 registers the decoded step index (``hit``), phase 3
#: loads the descriptor, phase 1 pulses ``step_start``: the start is the step's third cycle.
SEQ_BEFORE_START = 2
#: Sequencer: ``finish`` is registered into ``finished`` (1), and in the cycle that sees it phase
#: 2 moves to the next step (1): the next step begins two cycles after the final write.
SEQ_AFTER_FINISH = 2

#: Spike-map reader (``hw/mapreader.py``), engine feed: ``feeding`` set (1), read address to the
#: memory (1), the whole output word registered in ``spike_word`` (1), the chosen bank registered
#: in ``fo_bits`` (1): the first row word is offered to the engine 4 cycles after ``start``.
READER_FEED_LATENCY = 4
#: ProgEngine input register slice (``in_word``): a word offered in cycle c reaches the
#: addressing unit in c + 1.
ENGINE_INPUT_SLICE = 1
#: ProgEngine, after the last accumulation is issued: the read-out waits until the three stages
#: behind the tap generator are empty (``issue_valid``: the address register, ``r_valid_a``: R,
#: ``c_valid``: C; D writes in the same cycle as the first read): 4 cycles after the last issue.
ENGINE_DRAIN = 4
#: ProgEngine read-out: ``reading`` set (1), bank read (R, 1), raw register (Q, 1), output
#: register adding the bias (1): the first output beat 4 cycles after the drain condition holds,
#: then one beat per cycle.
ENGINE_READOUT_LATENCY = 4
#: SepConv unfused (``hw.planes.PlaneWriter``): the depthwise engine's last tile of a channel
#: taken, the half's ``full`` flag set, the first word in the output register.
PLANE_WRITER_LATENCY = 2
#: LIF array (``hw.lif.LIFArray``, ``pipelined=True``): input beat to output beat.
LIF_LATENCY = 3
#: Stream write stage (``hw.residual.StreamWriteStage``): ``written_last`` two cycles after the
#: last beat is offered (stage B, stage C).
STREAM_WRITE_LATENCY = 2
#: Stream reader (``hw.residual.StreamReader``): ``rd_busy`` set (1), the memory read (1), the word
#: registered on ``o`` (1): word i leaves 3 + i cycles after ``start``.
STREAM_READ_LATENCY = 3
#: Pool (``hw.residual.Pool``): ``firing`` is set the cycle after the last stream word (1) and
#: each group's sums are chosen into the output register (1).
POOL_LATENCY = 2
#: Spike-map writer (``hw.mapwriter.SpikeMapWriter``): a row's first map word is written the cycle
#: after its last beat, its words (``ceil(G / P)``: ``P`` groups packed a word,
#: ``hw.plan.SharedMap.words``) in consecutive cycles.
WRITER_FLUSH_DELAY = 1
#: Stem (``hw.stem.StemConv.cycles``): the start register, the last tap through stages 1 to 5 and
#: the output register.
STEM_PIPELINE = 7
#: SDSA feed (``hw/mapreader.py``): ``sd_active`` is set by ``start`` (1); the q, k and v reads
#: issue on three consecutive cycles (2 more for the v read), each through the address register
#: ``sd_raddr`` (1), the memory (1) and ``spike_word`` (1), and the v row's register sets
#: ``sd_beat`` (1): a token is offered 7 cycles after ``start``...
SDSA_FEED_LATENCY = 7
#: ... and ``sd_active`` is set again only by the SDSA's taking a token, so the next token is
#: offered 7 cycles after the take: the reads of two tokens never overlap.
SDSA_FEED_PERIOD = 7
#: SDSA-2 has no V: its feed (``SpikeMapReader(values=False)``) reads only the q and k rows, and
#: the k row's register sets ``sd_beat``: one read (one cycle) fewer, so a token is offered 6
#: cycles after ``start`` or after the previous take (latency and period alike).
SDSA_FEED_QK = 6
#: SDSA feed of a head of ``G`` word groups: each row takes ``G`` reads, one a cycle, so a token
#: is offered ``(G - 1) * rows`` cycles later than a one-word head's (rows: 3, or 2 for SDSA-2).
#: The network then splits each output row into ``G`` beats (``sdsa_ser_*`` in ``hw/shared.py``:
#: a register, then one beat a cycle) and the writer flushes ``G / P`` words a row:
#: ``SDSA_SERIAL_DELAY + (G - 1) + (G / P - 1)`` more cycles after the last output beat than a
#: one-word head.
SDSA_SERIAL_DELAY = 1
#: SDSA input buffer (``hw/sdsa.py``): ``i.ready`` is "the spare slot is empty"; two beats wait.
SDSA_INPUT_SLOTS = 2
#: SDSA-1/2 (``hw/sdsa_column.py``) take a token in the cycle it is offered while ``phase`` is
#: LOAD (``i.ready`` is that compare, no buffer). The head's last token sets ``phase`` to LIF
#: (1 cycle); the LIF takes one chunk a cycle (``C`` cycles, the last one sets QPASS), the Q pass
#: issues one stored Q row a cycle (``N`` cycles, the last one sets LOAD): the next head's first
#: token is taken no earlier than ``COLUMN_LIF_DELAY + C + N`` cycles after the head's last.
COLUMN_LIF_DELAY = 1
#: SDSA-1/2 Q pass: a Q row's read issues (``out_issue``), the row memory answers with
#: ``out_stage_valid`` (1) and the masked row is registered on ``o`` (1): each output beat leaves
#: 2 cycles after its issue (``SDSA.latency`` counts the same 2 from the end of the LIF).
COLUMN_OUTPUT_LATENCY = 2
#: Event input (``hw/shared.py``, event models): ``events_taking`` is set the cycle after
#: ``start``, so the first beat is taken 1 cycle after it (the port offering a beat every cycle).
EVENT_TAKE_DELAY = 1

CONSTANTS = {name: globals()[name] for name in (
    "SEQ_BEFORE_START", "SEQ_AFTER_FINISH", "READER_FEED_LATENCY", "ENGINE_INPUT_SLICE",
    "ENGINE_DRAIN", "ENGINE_READOUT_LATENCY", "LIF_LATENCY", "STREAM_WRITE_LATENCY",
    "STREAM_READ_LATENCY", "POOL_LATENCY", "WRITER_FLUSH_DELAY", "STEM_PIPELINE",
    "SDSA_FEED_LATENCY", "SDSA_FEED_PERIOD", "SDSA_FEED_QK", "SDSA_SERIAL_DELAY",
    "SDSA_INPUT_SLOTS",
    "COLUMN_LIF_DELAY", "COLUMN_OUTPUT_LATENCY", "EVENT_TAKE_DELAY", "PLANE_WRITER_LATENCY")}


def _step_cycles(datapath: int) -> int:
    """Cycles of a step whose final write comes ``datapath`` cycles after its start."""
    return SEQ_BEFORE_START + datapath + SEQ_AFTER_FINISH


# --- the stem ------------------------------------------------------------------------------------

def stem_cycles(positions: int, groups: int, in_channels: int, kernel: int,
                rows: int | None = None) -> int:
    """Cycles from ``start`` to the stem's last output beat: one tap per cycle (one weight word,
    one pixel, ``lanes`` MACs), ``positions * G * Cin * rows * k`` taps, plus the pipeline.
    ``rows``: kernel rows a tap walks, ``k``, or ``ceil(k / 2)`` with the row split
    (:func:`hw.stem.row_split`: the two halves of the lanes take the two halves of the rows)."""
    rows = kernel if rows is None else rows
    return positions * groups * in_channels * rows * kernel + STEM_PIPELINE


# --- the event input ----------------------------------------------------------------------------

def event_in_cycles(pixels: int) -> int:
    """Cycles of an event-input step: ``pixels`` beats, one a cycle from ``EVENT_TAKE_DELAY``
    after the start, then the last row's flush (one word: the input is one channel group)."""
    return _step_cycles(EVENT_TAKE_DELAY + pixels - 1 + WRITER_FLUSH_DELAY)


# --- the engine ----------------------------------------------------------------------------------

def _axis_taps(coordinate: int, size_out: int, kernel: int, stride: int, padding: int,
               fold_log: int = 0) -> int:
    """Output rows (or columns) an input row (column) reaches: ``oy`` with ``0 <= oy < out`` and
    ``0 <= coordinate + padding - oy * stride < kernel`` (the engine's decode); with
    ``fold_log``, the bank words of ``2**fold_log`` columns those columns fall in (column
    folding: one cycle a word)."""
    target = coordinate + padding
    low = -((kernel - 1 - target) // stride)  # ceil((target - kernel + 1) / stride)
    high = target // stride
    first, final = max(0, low), min(size_out - 1, high)
    if not (low <= high and low < size_out):
        return 0
    return (final >> fold_log) - (first >> fold_log) + 1


def spike_taps(config, axis: str = "y") -> np.ndarray:
    """Tap-generator steps per input row (``axis="y"``: the valid ``ky``) or column (``"x"``:
    the valid ``kx``, or with column folding the bank words they fall in) of a layer."""
    size, out = (config.height, config.out_height) if axis == "y" else \
        (config.width, config.out_width)
    fold_log = getattr(config, "fold_log", 0) if axis == "x" else 0
    # a band of output rows (``hw.progengine_config.band_layer``) has its own top padding
    padding = getattr(config, "padding_y", None) if axis == "y" else None
    padding = config.padding if padding is None else padding
    return np.array([_axis_taps(c, out, config.kernel, config.stride, padding, fold_log)
                     for c in range(size)], dtype=np.int64)


@dataclass
class EngineTiming:
    """When a frame's events happen, in cycles after the step's ``start``."""

    words: int
    spikes: int
    updates: int          # (spike, valid tap, group) updates issued
    last_issue: int       # cycle of the last bank update's issue (-1: none)
    frame_end: int        # cycle the tap generator finishes the frame's last item
    first_beat: int       # first read-out beat
    last_beat: int        # last read-out beat


def engine_frame_timing(config, spikes: np.ndarray, gate=None, buffer: int = 0,
                        delay: int = 0, pace: int = 1) -> EngineTiming:
    """Return the engine's timing of one frame fed by the spike-map reader (module docstring).

    ``spikes``: the source map ``[Cin, H, W]`` (0/1). The frame is the reader's row words,
    channel-major, one offered per cycle from :data:`READER_FEED_LATENCY` on. Stages, each an
    exact recurrence over the items that pass it:

    * addressing unit (:class:`hw.addressing.SpikeAddressing`): takes a word when its previous
      word's last spike leaves (an empty word: the cycle after); a word with ``n`` spikes emits
      one per cycle from the cycle after it was taken; an empty word emits nothing unless it
      ends the frame (then one beat that carries ``last``);
    * a two-entry spike queue whose ``full`` flag is a register: beat ``j`` enters once beat
      ``j - 2`` has left it;
    * decode, two registers (``pre``, ``dec``), each passing an item on in the cycle the next
      stage takes the one before; a spike whose taps all fall outside is dropped at ``dec``;
    * the tap generator: a kept item costs ``taps * G`` cycles (one bank update each, ``G`` the
      output groups); the frame's last item, with no taps, costs one;
    * the read-out starts once the last item is done and the read-modify-write has drained
      (:data:`ENGINE_DRAIN`), then one beat per output word (``out_h * out_w * G``).

    ``buffer`` (the engine's ``input_buffer``, 2..64; 0: none): every word enters a stage
    register, which drops an empty word that does not end the frame the cycle after and passes
    a kept one on into a slice of ``buffer`` words once the slice has room (the kept word
    ``buffer`` places back has been taken by the addressing unit in an earlier cycle). The
    reader offers word ``w`` from cycle ``READER_FEED_LATENCY + w``, after its previous word,
    and no earlier than the cycle the stage's word leaves; a kept word reaches the addressing
    unit :data:`ENGINE_INPUT_SLICE` cycles after it leaves the stage. An empty word then costs
    nothing. Without ``buffer`` the slice never fills before the addressing unit takes its word,
    and the reader's pace is the only bound.

    ``gate`` (weights over AXI, :class:`AxiFetchModel`): ``gate(c, t)`` is told that from cycle
    ``t`` the engine holds channel ``c``'s item with the generator idle (its ``block_done``) and
    returns the first cycle channel ``c``'s weight block is in the ring; the generator takes the
    item no earlier.

    ``delay``: the frame's first word is offered this many cycles later (SepConv unfused: the
    plane writer's first word, after the depthwise engine's first channel), then one a cycle.
    ``pace`` (without ``buffer``): one word every ``pace`` cycles at the most (the band reader,
    :class:`hw.rowreader.RowReader`, over rows of ``pace`` bus beats).
    """
    if buffer and pace != 1:
        raise ValueError("pace applies to an engine without input_buffer")
    spikes = np.asarray(spikes).reshape(config.in_channels, config.height, config.width)
    ty = spike_taps(config, "y")
    tx = spike_taps(config, "x")
    groups = config.groups
    words = config.in_channels * config.height
    # The beats the addressing unit makes: per word, its spikes' taps; an empty last word makes
    # one beat without taps.
    rows = spikes.reshape(words, config.width)
    first_word = READER_FEED_LATENCY + ENGINE_INPUT_SLICE + delay
    word_free = first_word      # earliest cycle the addressing unit takes the next word
    a_hist = [-10, -10]         # queue entry cycles of the last two beats (A)
    p_hist = [-10, -10]         # pre entry cycles of the last two beats (P)
    d_prev = -10                # dec entry cycle of the previous beat (D)
    dec_free = -10              # first cycle dec may take the next item
    gen_free = -10              # first cycle the tap generator may take the next item
    last_issue = -1
    updates = 0
    spikes_total = 0
    frame_end = None
    takes = []                  # cycles the addressing unit takes each kept word (buffer)
    offered = -10               # cycle the stage accepted the previous word (buffer)
    moved = -10                 # cycle the previous word left the stage (buffer)
    for w in range(words):
        row = rows[w]
        columns = np.flatnonzero(row)
        last_word = w == words - 1
        if buffer:
            offered = max(READER_FEED_LATENCY + delay + w, offered + 1, moved)
            moved = offered + 1
            if columns.size == 0 and not last_word:
                continue                     # dropped from the stage
            if len(takes) >= buffer:
                moved = max(moved, takes[-buffer] + 1)
            taken = max(word_free, moved + ENGINE_INPUT_SLICE)
            takes.append(taken)
        else:
            taken = max(word_free, first_word + w * pace)
            if columns.size == 0 and not last_word:
                word_free = taken + 1
                continue
        y = w % config.height
        items = [int(ty[y] * tx[x]) for x in columns] if columns.size else [0]
        spikes_total += columns.size
        valid = taken + 1
        for n, taps in enumerate(items):
            last = last_word and n == len(items) - 1
            a = max(valid, p_hist[-2] + 1)          # queue not full
            p = max(a + 1, d_prev, p_hist[-1] + 1)  # pre free (or freed this cycle)
            d = max(p + 1, dec_free)
            kept = taps > 0 or last
            if kept:
                g = max(d + 1, gen_free)            # the generator takes it
                if gate is not None:
                    g = max(g, gate(w // config.height, max(d, gen_free)))
                cost = taps * groups if taps else 1
                gen_free = g + cost                 # its item_end cycle
                dec_free = g
                if taps:
                    last_issue = g + cost
                    updates += cost
                if last:
                    frame_end = g + cost
            else:
                dec_free = d + 1
            a_hist = [a_hist[-1], a]
            p_hist = [p_hist[-1], p]
            d_prev = d
            valid = a + 1
        word_free = a_hist[-1]
    # ``frame_done`` is a register set the cycle after the last item ends.
    drained = max(frame_end + 1, last_issue + ENGINE_DRAIN)
    first_beat = drained + ENGINE_READOUT_LATENCY
    return EngineTiming(words=words, spikes=spikes_total, updates=updates,
                        last_issue=last_issue, frame_end=frame_end, first_beat=first_beat,
                        last_beat=first_beat + config.beats - 1)


def engine_frame_cycles(config, spikes: np.ndarray, sink: SinkKind, gate=None,
                        map_words: int | None = None, buffer: int = 0, delay: int = 0) -> int:
    """Cycles of a layer step (the engine frame, then its sink's final write; ``map_words``: the
    words a row of the LIF's map is written as, default the output groups; ``buffer``: the
    engine's ``input_buffer``; ``delay``: :func:`engine_frame_timing`'s)."""
    timing = engine_frame_timing(config, spikes, gate, buffer, delay)
    if map_words is None:
        map_words = config.groups
    if sink is SinkKind.LIF:
        # The LIF array, then the last row's map words.
        final = timing.last_beat + LIF_LATENCY + WRITER_FLUSH_DELAY + map_words - 1
    elif sink in (SinkKind.ADD, SinkKind.BEGIN):
        final = timing.last_beat + STREAM_WRITE_LATENCY
    else:  # the logits register takes the last beat; ``finish`` is that beat
        final = timing.last_beat
    return _step_cycles(final)


# --- stream LIF and pool -------------------------------------------------------------------------

def stream_lif_cycles(words: int, map_words: int) -> int:
    """A LIF on a residual stream: the reader's words, the LIF array, the last row's map words."""
    last_word = STREAM_READ_LATENCY + words - 1
    return _step_cycles(last_word + LIF_LATENCY + WRITER_FLUSH_DELAY + map_words - 1)


def pool_lif_cycles(words: int, pool_groups: int, map_words: int) -> int:
    """The head's pool: the reader's words summed, one group's sums a beat, the LIF, the row."""
    last_word = STREAM_READ_LATENCY + words - 1
    last_group = last_word + POOL_LATENCY + pool_groups - 1
    return _step_cycles(last_group + LIF_LATENCY + WRITER_FLUSH_DELAY + map_words - 1)


def pool_pass_cycles(words: int) -> int:
    """A pass of the head's pool that keeps its sums (SEW): it ends with the reader's last word."""
    return _step_cycles(STREAM_READ_LATENCY + words - 1)


# --- SDSA ----------------------------------------------------------------------------------------

def sdsa_cycles(k_spikes, q_spikes, chunks: int = 1, *, feed: bool = True,
                period=None) -> int:
    """Cycles from the first offered token to the SDSA's last output beat, inclusive.

    ``k_spikes`` and ``q_spikes``: set bits of each K and Q row, ``[passes, N]`` (one pass per
    head, in feed order). This is :meth:`hw.sdsa.SDSA.cycles`' schedule (K pass: ``k * C``
    cycles per row, an empty row 1; Q pass: ``max(1, q * C)`` per row, the LIF ``C`` per token;
    the last token's LIF and output ``C + 3`` after its last accumulation), with the arrival of
    each token added: token ``i`` is offered :data:`SDSA_FEED_PERIOD` cycles after token ``i -
    1`` was taken, and taken once the two-beat input buffer has room (token ``i - 2`` has
    entered the pipeline). ``feed=False`` offers a token in every cycle instead: the unit's own
    no-idle-input model, :meth:`hw.sdsa.SDSA.cycles`. ``period``: one for every head, or a
    list of each head's (a dense map's heads read different numbers of words a row).
    """
    if period is None:
        period = SDSA_FEED_PERIOD if feed else 1
    slots = SDSA_INPUT_SLOTS if feed else None
    k_rows = np.asarray(k_spikes, dtype=np.int64).reshape(len(k_spikes), -1).tolist()
    q_rows = np.asarray(q_spikes, dtype=np.int64).reshape(len(q_spikes), -1).tolist()
    n = len(k_rows[0])
    periods = [period] * len(k_rows) if np.ndim(period) == 0 else list(period)
    taken = []          # cycle each token is taken from the feed (X)
    entered = []        # cycle each token's K row enters the addressing unit

    def arrive(index: int, ready: int) -> int:
        """Cycle token ``index``'s K row enters the pipeline, ``ready`` the pipeline's earliest."""
        step = periods[index // n]
        x = 0 if index == 0 else taken[-1] + step if step > 1 else index
        if slots is not None and index >= slots:
            x = max(x, entered[index - slots] + 1)
        taken.append(x)
        cycle = max(ready, x + 1)
        entered.append(cycle)
        return cycle

    accept = arrive(0, 1)
    released = 1
    lif_start = 1 - chunks
    done = 0
    index = 0
    for head, (q_row, k_row) in enumerate(zip(q_rows, k_rows)):
        for token, k in enumerate(k_row):
            if token:
                accept = arrive(index, accept)
            index += 1
            start = max(accept + 1, released)
            if k:
                accept = start + k * chunks - 1
            elif token == n - 1:
                accept = start
            else:
                accept += 1
        issue = accept + 1
        last = issue
        for q in q_row:
            last = issue + max(1, q * chunks) - 1
            handoff = max(last + 1, lif_start + chunks - 1)
            lif_start = max(handoff + 1, lif_start + chunks)
            issue = released = handoff
            done = lif_start + chunks + 1
        if head + 1 < len(k_rows):
            accept = arrive(index, last)
    return done + 1


def column_sdsa_cycles(passes: int, tokens: int, chunks: int = 1, *,
                       period: int | None = SDSA_FEED_PERIOD, beats: int = 1) -> int:
    """Cycles from the first offered token to an SDSA-1/2 unit's last output beat, inclusive.

    ``passes`` heads times time steps of ``tokens`` tokens each. No term depends on the spikes:
    a token is taken the cycle it is offered while the unit loads (the feed offers token ``i``
    ``period`` cycles after it took token ``i - 1``); after a head's last token (taken at
    ``X``) the unit runs its LIF (``COLUMN_LIF_DELAY + C`` cycles) and its Q pass (``N`` rows, one
    a cycle, each leaving ``COLUMN_OUTPUT_LATENCY`` cycles after its issue), and takes the next
    head's first token from ``X + COLUMN_LIF_DELAY + C + N`` on. ``period=None`` offers a token in
    every cycle it can be taken: the unit's own model, :meth:`hw.sdsa.SDSA.cycles`.

    ``beats``: cycles between two output rows taken downstream (a head of ``G`` word groups:
    the network splits each row into ``G`` beats, so it takes a row every ``G`` cycles). The Q
    pass then stalls: row ``i`` leaves ``COLUMN_OUTPUT_LATENCY + i * G`` cycles after the pass
    starts, and the pass issues its last row (and loads again) ``COLUMN_OUTPUT_LATENCY + 1 +
    (N - 3) * G`` cycles after it starts (``N`` for ``N < 3``: the rows fit the pipeline).
    """
    steps = ([1 if period is None else period] * passes if np.ndim(period) == 0
             else list(period))
    depth = COLUMN_OUTPUT_LATENCY + 1    # rows in flight: issued, staged, offered
    q_pass = tokens if tokens < depth else depth + (tokens - depth) * beats
    taken = 0                   # cycle the current token is taken (the first is offered at 0)
    for head in range(passes):
        step = steps[head]
        if head:
            # Offered ``step`` after the previous take; taken once the unit loads again.
            taken = max(taken + step, taken + COLUMN_LIF_DELAY + chunks + q_pass)
        taken += (tokens - 1) * step        # the head's last token
    last_beat = (taken + COLUMN_LIF_DELAY + chunks + COLUMN_OUTPUT_LATENCY
                 + (tokens - 1) * beats)
    return last_beat + 1


def sdsa_step_cycles(k_spikes, q_spikes, chunks: int = 1, *, variant: int = 3,
                     groups: int = 1, serial: bool | None = None,
                     map_words: int | None = None, reads=None) -> int:
    """An SDSA step: the feed's first token, the SDSA, the last row written.

    ``variant``: the operator (1 to 4). SDSA-3/4 run :func:`sdsa_cycles` (data-dependent);
    SDSA-1/2 :func:`column_sdsa_cycles` (only the token and head counts matter), with the feed's
    period of three rows (SDSA-1) or two (SDSA-2, no V). ``groups``: word groups a head
    (:data:`SDSA_SERIAL_DELAY`); ``chunks``: the unit's cycles a row addition (``groups``, the
    unit having ``lanes`` counters); ``serial``: whether the network splits output rows (it
    does when any of its blocks' heads is wider than one word; default ``groups > 1``);
    ``map_words``: the words a head's output row is written as (``groups / pack``, default
    ``groups``); ``reads``: the words the feed reads a row, per pass (head, in feed order;
    default ``groups`` each; a dense map's head that straddles one word more reads
    ``groups + 1``, :meth:`hw.plan.SharedPlan.head_reads`).
    """
    extra = groups - 1
    passes = len(k_spikes)
    reads = [groups] * passes if reads is None else list(reads)
    rows = 2 if variant == 2 else 3   # the q, k (and v) rows a token reads
    # a token is offered ``rows`` cycles later a word more a row
    periods = [(SDSA_FEED_QK if variant == 2 else SDSA_FEED_PERIOD) + rows * (r - 1)
               for r in reads]
    if serial is None:
        serial = groups > 1
    if map_words is None:
        map_words = groups
    tail = (WRITER_FLUSH_DELAY + extra + map_words - 1
            + (SDSA_SERIAL_DELAY if serial else 0))
    # the first token: as a later one, but counted from ``start`` (SDSA_FEED_LATENCY)
    latency = periods[0] + (0 if variant == 2 else SDSA_FEED_LATENCY - SDSA_FEED_PERIOD)
    if variant in (1, 2):
        passes, tokens = np.asarray(k_spikes).reshape(len(k_spikes), -1).shape
        last_beat = latency + column_sdsa_cycles(passes, tokens, chunks, period=periods,
                                                 beats=groups) - 1
    else:
        last_beat = latency + sdsa_cycles(k_spikes, q_spikes, chunks, period=periods) - 1
    return _step_cycles(last_beat + tail)


# --- the whole network ---------------------------------------------------------------------------

def map_spikes(net, trace, lif: str):
    """Return the spikes the shared network stores in ``lif``'s map, ``[T, B, C, ...]``.

    Every map holds its LIF's spikes (``trace.spikes``), except the attention map of SDSA-1/2:
    there the trace's ``attn_lif`` spikes are the channel mask (``[T, B, heads, 1, d]``), and the
    map holds what the unit writes, the Q rows masked by it (``<attn>.out``, ``[T, B, C, H, W]``).
    """
    prefix = lif.removesuffix(".attn_lif")
    if prefix != lif and net.attention[prefix].sdsa in (1, 2):
        return trace.accumulators[f"{prefix}.out"]
    return trace.spikes[lif]



class CycleModel:
    """Predict the shared network's cycles per step from an integer trace (module docstring).

    Parameters
    ----------
    plan : hw.plan.SharedPlan
        The network's plan (``SharedNetwork(net).plan``, or ``SharedPlan(net, lanes)``).
    time_steps : int, optional
        Time steps of the run (the network's ``time_steps`` port), 1 to ``plan.T``; default
        ``plan.T``.
    """

    def __init__(self, plan, *, ring=None, latency: int | None = None,
                 time_steps: int | None = None):
        self.plan = plan
        #: Weights over AXI4 (``hw.weightfetch.WeightRing``) and the memory's fixed latency:
        #: engine layers then wait for their blocks (:class:`AxiFetchModel`); None: on chip.
        self.ring, self.latency = ring, latency
        #: Unfused SepConv steps whose prediction is a lower bound, not exact: some channel's
        #: depthwise sums may come later than the plane writer asks for them
        #: (:meth:`_unfused_frame`); filled as steps are predicted.
        self.inexact: set[str] = set()
        if (ring is None) != (latency is None):
            raise ValueError("ring and latency go together (weights over AXI4) or not at all")
        self.steps = plan.steps
        self.T = plan.T if time_steps is None else int(time_steps)
        if not 1 <= self.T <= plan.T:
            raise ValueError(f"time_steps {time_steps} is out of range: 1..{plan.T}")
        net = plan.net
        stem = plan.stem_layer
        self._stem = None
        if stem is not None:   # an event model has no stem (its first layer is an engine layer)
            cout, cin, k, _ = np.asarray(stem.weight).shape
            size = net.cfg.img_size
            out = (size + 2 * int(stem.padding) - k) // int(stem.stride) + 1
            rows = ceil_div(k, row_split(cout, plan.lanes, k))
            self._stem = (out * out, ceil_div(cout, plan.lanes), cin, k, rows)

    @property
    def stem_cycles(self) -> int:
        """Cycles from the stem's start to its last output beat (:func:`stem_cycles`)."""
        return stem_cycles(*self._stem)

    def _map(self, trace, lif: str, t: int, image: int, physical: bool = True) -> np.ndarray:
        """``lif``'s spikes ``[C, H, W]``: the map's physical channels (head-aligned attention
        maps with their zero padding), or the model's (``physical=False``)."""
        info = self.plan.memory.maps[lif]
        spikes = np.asarray(map_spikes(self.plan.net, trace, lif)[t, image])
        spikes = spikes.reshape(info.logical_channels, info.side, info.side)
        return info.physical(spikes) if physical else spikes

    def _unfused_frame(self, step, spikes, trace, t: int, image: int):
        """SepConv unfused: the engine's frame (the depthwise sums' planes, ``hw.planes``) and
        the cycles its first word comes later than a map reader's would.

        The depthwise engine takes the reader's first row at :data:`READER_FEED_LATENCY`, one
        cycle before :func:`hw.depthwise.depthwise_cycles`'s cycle 1, so it hands over channel
        0's last tile at ``READER_FEED_LATENCY - 1 + depthwise_cycles(channel 0)``; the plane
        writer offers the first word :data:`PLANE_WRITER_LATENCY` cycles later, then one a
        cycle. Exact when every later channel's sums are ready before the writer reaches it
        (the depthwise engine keeps ahead: a channel's planes are ``2 * P * H`` words, more
        cycles than its rows, spikes and tiles take on the demo); a layer where the depthwise
        engine may be the slower is named in :attr:`inexact`, its prediction a lower bound
        (``docs/perf.md``)."""
        from hw.depthwise import depthwise_cycles, depthwise_geometry, spike_cycles
        from hw.planes import plane_frame

        plan = self.plan
        place = plan.depthwise[step.depthwise]
        sums = np.zeros((place.channels, place.side, place.side), np.int64)
        real = np.asarray(trace.accumulators[step.depthwise][t, image], dtype=np.int64)
        sums[:len(real)] = real.reshape(len(real), place.side, place.side)
        frame = plane_frame(sums, plan.planes)
        kernel = plan.dw_weight.shape[-1]
        first = READER_FEED_LATENCY - 1 + depthwise_cycles(spikes[:1], kernel, plan.dw_lanes)
        # The assumption, checked per channel: while the writer sends a channel's 2 * P * H
        # words, the depthwise engine adds the channel after it (its rows and spikes), lets
        # its last add land and hands over its tiles; a channel that needs longer may hold the
        # writer up, and the prediction is then a lower bound.
        words = 2 * plan.planes * place.side
        rows, cols = depthwise_geometry(kernel, plan.dw_lanes)
        tiles = ceil_div(place.side, rows) * ceil_div(place.side, cols)
        per_row = [spike_cycles(y, place.side, kernel, plan.dw_lanes) for y in range(place.side)]
        for c in range(1, len(spikes)):
            adds = sum(max(1, int(spikes[c, y].sum()) * per_row[y]) for y in range(place.side))
            if adds + 5 + tiles + PLANE_WRITER_LATENCY > words:
                self.inexact.add(step.name)
                break
        return frame, first + PLANE_WRITER_LATENCY - READER_FEED_LATENCY

    def step_cycles(self, step, trace, t: int, image: int, fetch=None, entry: int = 0,
                    visit: int | None = None) -> int:
        """Cycles of one step at time step ``t`` for image ``image`` of the trace (``fetch``:
        the run's :class:`AxiFetchModel`, the step entered in cycle ``entry``; ``visit``: the
        how-manieth visit of the step this is, ``t`` unless the step runs downwards, which the
        fetcher counts as it counts the others)."""
        plan, mem = self.plan, self.plan.memory
        if step.kind is StepKind.STEM:
            return _step_cycles(self.stem_cycles + STREAM_WRITE_LATENCY)
        if step.kind is StepKind.EVENT_IN:
            return event_in_cycles(plan.input_map.side ** 2)
        if step.kind is StepKind.LAYER:
            config = mem.layers[step.layer].config
            gate = None
            if fetch is not None:
                start = entry + SEQ_BEFORE_START
                fetch.layer_start(t if visit is None else visit, self._layer_index[step.layer],
                                  start)
                gate = fetch.gate(start)
            words = (mem.maps[step.sink.spike_map].words
                     if step.sink.kind is SinkKind.LIF else None)
            spikes = self._map(trace, step.source, t, image)
            delay = 0
            if step.depthwise is not None:
                spikes, delay = self._unfused_frame(step, spikes, trace, t, image)
            return engine_frame_cycles(config, spikes, step.sink.kind, gate, words,
                                       plan.input_buffer, delay)
        if step.kind in (StepKind.STREAM_LIF, StepKind.RESIDUAL_LIF):
            # a residual LIF (vanilla) reads its spikes beside the stream words, in lockstep
            stream = mem.streams[step.source]
            return stream_lif_cycles(stream.words, mem.maps[step.sink.spike_map].words)
        if step.kind is StepKind.POOL_LIF:
            if step.source is None:   # a pool of spikes (vanilla): the map's words
                info = mem.maps[step.residual]
                words, groups = info.side ** 2 * info.groups, info.groups
            else:
                stream = mem.streams[step.source]
                words, groups = stream.words, stream.groups
            if step.sink.kind is SinkKind.POOL:   # SEW: a pass that keeps its sums
                return pool_pass_cycles(words)
            return pool_lif_cycles(words, groups, mem.maps[step.sink.spike_map].words)
        if step.kind is StepKind.SDSA:
            attn = plan.net.attention[step.source]
            d, heads, n = attn.head_width, attn.heads, attn.tokens

            def rows(lif):
                spikes = self._map(trace, lif, t, image, physical=False).reshape(heads, d, n)
                return spikes.sum(axis=1)          # [heads, N] set bits per token row

            # A head of G word groups: the unit adds ``lanes`` counters a cycle (G chunks a
            # row), the feed reads G words a row.
            groups = plan.head_groups[step.source]
            return sdsa_step_cycles(rows(step.attention.k), rows(step.attention.q),
                                    chunks=groups, variant=attn.sdsa, groups=groups,
                                    serial=max(plan.head_groups.values()) > 1,
                                    map_words=groups // mem.maps[step.sink.spike_map].pack,
                                    reads=[r for _, _, r in plan.head_reads(step.source)])
        raise ValueError(f"step {step.name}: kind {step.kind.label} does not run")

    def predict(self, trace, image: int = 0) -> dict:
        """Return ``{"steps": [{"t", "step", "kind", "name", "cycles"}], "total": cycles}`` of
        one image: every (time step, step) the sequencer visits, in order."""
        rows = []
        fetch = None
        if self.ring is not None:
            fetch = AxiFetchModel(self.ring, self.T, self.latency)
            self._layer_index = {layer.name: i for i, layer in enumerate(self.ring.layers)}
        entry = 0
        # the sequencer's visits in its schedule's order: never begin_stem (the stem's
        # descriptor does its work), and a kept stem (``plan.stem_once``) at t = 0 only
        seen = {}
        for t, k in self.plan.visits(self.T):
            step = self.steps[k]
            seen[k] = visit = seen.get(k, -1) + 1
            cycles = self.step_cycles(step, trace, t, image, fetch, entry, visit)
            entry += cycles
            rows.append({"t": t, "step": k, "kind": step.kind.label, "name": step.name,
                         "cycles": cycles})
        return {"steps": rows, "total": sum(r["cycles"] for r in rows)}


# --- weights over AXI4 ---------------------------------------------------------------------------

#: The testbench's external memory (``sim/tb/axi_memory.py``, fixed latency ``L``, no pauses):
#: a burst whose AR handshake is in cycle ``a`` has its first beat on the bus in cycle
#: ``a + L + AXI_MEMORY_OFFSET`` at the earliest (the AR sink hands the request over after the
#: edge that took it, the answer waits for ``L`` counted edges, and the R source drives the beat
#: after the next edge), then one beat a cycle.
AXI_MEMORY_OFFSET = 2
#: ... and its write side (cocotbext-axi's RAM, ``sim.tb.axi_memory.BoundedAxiRamWrite``): the
#: B handshake of a burst comes this many cycles after its last W beat's. Found by comparing
#: the band chain's model with Verilator (0, 1 and 2 tried; 2 is exact on every case), not
#: read off cocotbext-axi's source.
AXI_WRITE_OFFSET = 2


class AxiFetchModel:
    """When each weight block reaches the ring (:class:`hw.weightfetch.WeightFetcher`), for a
    memory of fixed ``latency`` that never pauses.

    The fetcher's AR walker prepares a burst a cycle (two more at a layer change: the layer's
    constants, then its first page's room) and starts a block only when it ends at most
    ``depth`` words past ``free``; the memory answers each burst ``latency + AXI_MEMORY_OFFSET``
    cycles after its handshake, beats back to back, in order; the R walker takes a beat a cycle
    but for one cycle at each layer change; a block is usable the cycle after its last beat, or
    a cycle later where that beat came in the cycle after the R walker's layer load (a one-beat
    first block: ``block_ready`` compares a cycle-old block end). ``free`` comes from the
    engine: :meth:`layer_start` and the engine model's gate (:meth:`gate`). Cycles are absolute,
    from the run's ``start`` (cycle 0). The visits are the ring's
    (:meth:`hw.weightfetch.WeightRing.visits`): under the layer schedule a layer kept in the
    ring is fetched at its first visit only, and its visits but the last free nothing.
    """

    def __init__(self, ring, T: int, latency: int):
        from hw.weightfetch import BOUNDARY, MAX_BURST

        self.ring, self.latency = ring, int(latency)
        beat_bytes = ring.data_width // 8
        self.blocks = []       # (position, size, [burst beats], first block of a visit)
        self.first = {}        # (t, layer index) -> index of the first block the visit reads
        self.hold = set()      # (t, layer index) of visits that free nothing (kept layers)
        fetched = {}           # layer index -> first block of its latest fetching visit
        for visit in ring.visits(T):
            li, layer = visit.layer, ring.layers[visit.layer]
            if visit.fetch:
                fetched[li] = len(self.blocks)
                block_beats = layer.block_words * ring.beats
                for c in range(layer.channels):
                    address = layer.address + c * block_beats * beat_bytes
                    left, bursts = block_beats, []
                    while left:
                        room = (BOUNDARY - address % BOUNDARY) // beat_bytes
                        beats = min(left, MAX_BURST, room)
                        bursts.append(beats)
                        address += beats * beat_bytes
                        left -= beats
                    self.blocks.append((visit.position + (c << layer.block_log),
                                        1 << layer.block_log, bursts, c == 0))
            self.first[(visit.t, li)] = fetched[li]
            if visit.hold:
                self.hold.add((visit.t, li))
        self.free_cycles = [0]    # free is free_values[i] from free_cycles[i] on (monotone)
        self.free_values = [0]
        self.ready = []           # cycle each block is usable, in order
        self.prepare = 0          # cycle of the last prepare (the AR walker loads at cycle 1,
        #                           its first page's room at 2)
        self.beat_end = 0         # cycle of the last beat taken
        self.layer = None         # (t, layer index) of the engine's layer
        self.base = 0             # sequence position of the engine's layer

    # -- the engine's side ------------------------------------------------------------------
    def _free_from(self, cycle: int, value: int) -> None:
        if value > self.free_values[-1]:
            cycle = max(cycle, self.free_cycles[-1])
            self.free_cycles.append(cycle)
            self.free_values.append(value)

    def layer_start(self, t: int, li: int, start: int) -> None:
        """The engine's layer ``li`` of time step ``t`` starts (``step_start`` in ``start``):
        ``free`` is its first block three cycles later (``g_cur``, ``free_d``, ``free``)."""
        self.layer = (t, li)
        self.base = self.blocks[self.first[(t, li)]][0]
        self._free_from(start + 3, self.base)

    def gate(self, start: int):
        """The ``gate`` of :func:`engine_frame_timing` for the engine step starting in
        ``start``: times relative to it."""
        first = self.first[self.layer]
        hold = self.layer in self.hold

        def block_ready(channel: int, idle: int) -> int:
            index = first + channel
            if not hold:
                self._free_from(start + idle + 2, self.blocks[index][0])
            return self.ready_at(index) - start
        return block_ready

    # -- the fetcher's side -----------------------------------------------------------------
    def _free_at_least(self, value: int) -> int:
        import bisect

        index = bisect.bisect_left(self.free_values, value)
        if index == len(self.free_values):
            raise RuntimeError("the fetch model waits for a block the engine has not reached")
        return self.free_cycles[index]

    def ready_at(self, index: int) -> int:
        """Cycle block ``index`` (run order) is usable by the engine."""
        depth = self.ring.depth
        while len(self.ready) <= index:
            j = len(self.ready)
            position, size, bursts, first = self.blocks[j]
            change = first and j > 0        # a_load, a_page: two cycles between layers
            prepare = max(self.prepare + (3 if change else 1),
                          self._free_at_least(position + size - depth), 3)
            beat = self.beat_end + (2 if change else 1)
            if j == 0:
                beat = max(beat, 2)          # w_load after start
            after_load = beat               # the first cycle after the R walker's load
            for n, beats in enumerate(bursts):
                if n:
                    prepare += 1
                handshake = prepare + 1
                beat = max(beat, handshake + self.latency + AXI_MEMORY_OFFSET)
                last = beat + beats - 1
                beat = last + 1
            self.prepare, self.beat_end = prepare, last
            self.ready.append(last + 1 + (first and last == after_load))
        return self.ready[index]


# --- the band datapath over AXI4 (hw.bandlayer, hw.bandchain) ----------------------------------

#: BandLayer: ``start`` (cycle 0) is sampled into the band register, ``go`` loads the band's
#: constants (1), ``run`` starts the units (2); the AR walkers compute the first burst's length
#: (``first``, 3) and the one after it (``second``, 4): the first AR request is valid in cycle 5.
BAND_FIRST_AR = 5
#: RowReader: the R beat that ends a row is registered in the output register, so a row's word
#: is offered the cycle after its last beat...
BAND_ROW_REGISTER = 1
#: ... RowAssembler: a row's last beat sets ``pending`` (1), ``pending & ~emitting`` loads the
#: row into the shadow register (1): the row's first channel word leaves two cycles after its
#: last beat came in, and the next row's first beat is taken no earlier than that cycle.
BAND_ASSEMBLER_DELAY = 2
#: RowWriter: the W beats of a word leave from the cycle after the word is taken, one a cycle.
BAND_WRITE_DELAY = 1
#: BandLayer: from the last burst's B handshake to the first cycle the datapath's ``busy``
#: reads low (the writer's ``busy``, then the datapath's register; counted on the simulated
#: RTL, not derived register by register).
BAND_BUSY_TAIL = 3


def band_step_cycles(band, spikes, *, out_channels: int, read_delay: int, write_delay: int,
                     data_width: int = 64) -> int:
    """Cycles of one band and time step of :class:`hw.bandlayer.BandLayer`, from its ``start``
    to the cycle ``busy`` reads low, over a memory that never pauses.

    ``band``: the band's :class:`hw.progengine_config.LayerConfig`
    (:func:`hw.progengine_config.band_layer`); ``spikes``: its input rows ``[Cin, rows, W]``;
    ``out_channels``: the channels the band writes (a pass's); ``read_delay``: cycles from an AR
    handshake to its first R beat, then one beat a cycle; ``write_delay``: cycles from a burst's
    last W beat to its B handshake.

    Stages: the reader's rows arrive one every ``row_beats`` cycles from the first burst's
    latency on, and the engine model (:func:`engine_frame_timing` with that ``delay`` and
    ``pace``) gives its read-out; each read-out beat reaches the assembler :data:`LIF_LATENCY`
    cycles later, one a cycle, but a row's first beat waits until the row before has moved to
    the shadow register (:data:`BAND_ASSEMBLER_DELAY`), which waits until the row before that
    has left; the shadow gives a word a channel, one every ``row_beats`` (output) cycles (the
    writer's W beats); the band ends :data:`BAND_BUSY_TAIL` cycles after the last burst's B.
    """
    rows_in = ceil_div(band.width, data_width)
    rows_out = ceil_div(band.out_width, data_width)
    # the addressing unit takes the first word ENGINE_INPUT_SLICE after the reader offers it
    first_offer = BAND_FIRST_AR + read_delay + rows_in - 1 + BAND_ROW_REGISTER
    delay = first_offer - READER_FEED_LATENCY
    timing = engine_frame_timing(band, spikes, delay=delay, pace=rows_in)
    beats_a_row = band.out_width * band.groups
    beat = timing.first_beat + LIF_LATENCY - 1    # the LIF's output beat before the first
    gate = emitted = word = -(1 << 40)
    for _ in range(band.out_height):
        beat = max(beat + 1, gate) + beats_a_row - 1          # the row's last beat taken
        # the shadow takes the row (once the row before has left it)
        shadow = max(beat + BAND_ASSEMBLER_DELAY - 1, emitted + 1)
        gate = shadow + 1                                     # the next row's first beat
        word = max(shadow + 1, word + rows_out)               # the first channel's word
        word += (out_channels - 1) * rows_out                 # one every rows_out cycles
        emitted = word
    response = word + BAND_WRITE_DELAY + rows_out - 1 + write_delay
    return response + BAND_BUSY_TAIL


#: BandLayer, a weight load: its words are the reader's rows (the whole load one channel's
#: band), taken as they come; ``busy`` reads low this many cycles after the last R beat (the
#: reader's output register, its ``busy``, the datapath's; counted on the simulated RTL).
BAND_LOAD_TAIL = 3
#: BandChain: ``start`` is sampled in IDLE; LOAD computes the first band's addresses, ISSUE
#: pulses the datapath's ``start`` (:data:`BAND_CHAIN_FIRST_ISSUE` cycles after the cycle that
#: sampled ``start``). After a run, WAIT sees ``busy`` low: the next step is issued the cycle
#: after (1), the next band or the band after a load goes through LOAD first (2); after the
#: last run DONE raises ``done`` the cycle after.
BAND_CHAIN_FIRST_ISSUE = 2


def band_load_cycles(beats: int, *, read_delay: int) -> int:
    """Cycles of a weight load of ``beats`` bus beats on :class:`hw.bandlayer.BandLayer`, from
    its ``start`` to the cycle ``busy`` reads low."""
    return BAND_FIRST_AR + read_delay + beats - 1 + BAND_LOAD_TAIL


def band_chain_cycles(chain, inputs, *, steps: int | None = None, read_delay: int,
                      write_delay: int) -> dict:
    """Cycles of a :class:`hw.bandchain.BandChain` run over ``inputs`` (``[T, Cin, H, W]``
    spike maps, ``T = steps``) for a memory that never pauses (:func:`band_step_cycles`).

    Returns ``{"cycles": C, "loads": cycles of the weight loads, "runs": [(band, t, cycles),
    ...]}``: ``done`` is raised ``C`` cycles after the cycle that samples ``start`` (the chain
    ``ready``). The layers' maps come from :func:`hw.bandchain.band_chain_reference`.
    """
    from hw.bandchain import band_chain_reference
    from hw.progengine_config import band_layer

    inputs = np.asarray(inputs)
    steps = len(inputs) if steps is None else steps
    maps = [inputs] + band_chain_reference(inputs[:steps], chain.layers)
    dp = chain.datapath
    axi = hasattr(chain, "weight_places")
    cycle = BAND_CHAIN_FIRST_ISSUE     # the first issue (IDLE sampled start in cycle 0)
    runs, loads = [], 0
    previous = None
    for band, (first_out, last_out) in enumerate(dp.bands):
        index = dp.band_layers[band]
        chain_pass = chain.passes[index]
        if axi and (band == 0 or dp.band_layers[band - 1] != index):
            if previous is not None:
                cycle += 2
            load = band_load_cycles(dp.load_beats[index], read_delay=read_delay)
            loads += load
            cycle += load
            previous = "load"
        if previous is not None:
            cycle += 2
        config, first_in, last_in = band_layer(chain_pass.spec.layer, first_out, last_out)
        for t in range(steps):
            if t:
                cycle += 1
            spikes = maps[chain_pass.layer][t][:, first_in:last_in + 1, :]
            cycles = band_step_cycles(config, spikes, out_channels=config.out_channels,
                                      read_delay=read_delay, write_delay=write_delay,
                                      data_width=dp.data_width)
            runs.append((band, t, cycles))
            cycle += cycles
        previous = "band"
    # DONE the cycle after the last run's busy reads low
    return {"cycles": cycle + 1, "loads": loads, "runs": runs}


# --- measured cycles and agreement ---------------------------------------------------------------

#: The issue's targets: every step within 10 %, the total within 3 % of the RTL's cycles.
TARGET_STEP = 0.10
TARGET_TOTAL = 0.03


def rtl_step_cycles(result: dict, steps: int) -> dict:
    """Return ``{(t, step): cycles}`` of one image of the testbench's results (``sim.tb.network``
    notes ``(t, step, cycles)`` whenever the step changes; the last step ends at ``cycles``)."""
    marks = [tuple(e) for e in result["steps"]]
    if not marks or marks[0][1] != 0:
        marks = [(0, 0, 0)] + marks  # the first run after reset records no change into step 0
    out = {}
    for (t0, k0, c0), (_, _, c1) in zip(marks, marks[1:]):
        out[(t0, k0)] = out.get((t0, k0), 0) + c1 - c0
    t, k, c = marks[-1]
    out[(t, k)] = out.get((t, k), 0) + result["cycles"] - c
    return {key: value for key, value in out.items() if key[1] < steps}


def check_agreement(predicted: dict, measured: dict, *, step_tolerance: float = TARGET_STEP,
                    total_tolerance: float = TARGET_TOTAL, names=None) -> list[str]:
    """Return one line per disagreement of ``predicted`` with ``measured`` (``{key: cycles}``,
    the same keys): a step off by more than ``step_tolerance`` (relative), or the total by more
    than ``total_tolerance``; ``[]`` when they agree. ``names``: ``key -> label`` for messages."""
    failures = []
    for key in sorted(measured):
        got, want = predicted.get(key, 0), measured[key]
        if abs(got - want) > step_tolerance * want:
            label = names(key) if names else key
            failures.append(f"step {label}: model {got}, RTL {want} ({_percent(got, want)})")
    missing = sorted(set(predicted) - set(measured))
    if missing:
        failures.append(f"the model predicts steps the RTL did not run: {missing}")
    got = sum(predicted.get(key, 0) for key in measured)
    want = sum(measured.values())
    if abs(got - want) > total_tolerance * want:
        failures.append(f"total: model {got}, RTL {want} ({_percent(got, want)})")
    return failures


def _percent(got: float, want: float) -> str:
    return f"{100 * (got / want - 1):+.2f} %" if want else "n/a"


# --- evaluation and CLI --------------------------------------------------------------------------

def load_trace(checkpoint, images: int, T: int, lanes: int = 16, seed: int = 0, *,
               sdsa: int | None = None, inputs=None, describe: bool = False, fold: int = 1,
               input_buffer: int = 0):
    """Return ``(CycleModel, plan, trace)`` for ``images`` inputs at ``T``: the checkpoint (or
    ``"random"``: ``sim.e2e``'s seeded model; ``sdsa``: its operator, as
    ``sim.e2e.demo_model``) quantized as ``sim.e2e`` does, and the integer golden model's trace
    (``sim.e2e.golden_run``'s, without the float model). ``inputs`` as
    ``sim.e2e.select_inputs``: ``None`` (the held-out digits for a model taking 1x32x32, else
    seeded random images), ``"digits"``, ``"random"`` or a ``.npy`` / ``.pt`` file. Raises
    ``sim.e2e.InputError`` (a ``ValueError``) for inputs the model does not take. ``describe``:
    a fourth value, the line saying what the inputs are (``sim.e2e.Inputs.description``).
    ``fold``, ``input_buffer``: the plan's column folding and engine input buffer
    (``hw.plan.SharedPlan``)."""
    import torch

    from hw.plan import SharedPlan
    from quant.intmodel import IntegerModel
    from sim.e2e import demo_model, quantized, select_inputs

    torch.set_num_threads(1)
    model, _ = demo_model(T, checkpoint, seed, sdsa=sdsa)
    net = quantized(model)
    plan = SharedPlan(net, lanes, fold=fold, input_buffer=input_buffer)
    chosen = select_inputs(net, images, inputs, seed)
    x = chosen.images
    integer = IntegerModel(net)
    if net.cfg.events:   # event frames [N, T, C, H, W], integers already
        _, trace = integer.forward(x.to(torch.int64).transpose(0, 1), trace=True)
    else:
        _, trace = integer.forward(integer.quantize_input(x), trace=True)
    if describe:
        return CycleModel(plan), plan, trace, chosen.description
    return CycleModel(plan), plan, trace


def read_rtl(path, plan, T: int) -> dict:
    """Read a co-simulation's measured cycles for the program of ``plan`` at ``T``.

    ``path``: a testbench ``results_T*.json`` (per image: ``{(t, step): cycles}``) or a
    ``sim.e2e`` ``report_T*.json`` (per step: cycles summed over t, mean over images). Returns
    ``{"per_image": [...] or None, "per_step": {step: cycles}, "totals": [...]}``; raises
    ``ValueError`` for a file of another T or another network.
    """
    data = json.loads(Path(path).read_text())
    steps = plan.steps
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a report or results file")
    if isinstance(data.get("images"), list):
        per_image = [rtl_step_cycles(result, len(steps)) for result in data["images"]]
        for cycles in per_image:
            if {t for t, _ in cycles} != set(range(T)) or any(
                    steps[k].kind is StepKind.BEGIN_STEM for _, k in cycles):
                raise ValueError(f"{path}: its steps are not this network's program at T={T}")
        means = {}
        for cycles in per_image:
            for (_, k), value in cycles.items():
                means[k] = means.get(k, 0) + value / len(per_image)
        return {"per_image": per_image, "per_step": means,
                "totals": [sum(c.values()) for c in per_image]}
    if isinstance(data.get("report"), list):
        if data.get("T") != T:
            raise ValueError(f"{path} is a report of T={data.get('T')}, not T={T}")
        rows = data["report"]
        if [row.get("name") for row in rows] != [step.name for step in steps]:
            raise ValueError(f"{path}: its steps are not this network's program")
        return {"per_image": None,
                "per_step": {row["step"]: row["cycles"] for row in rows
                             if steps[row["step"]].kind is not StepKind.BEGIN_STEM},
                "totals": data.get("rtl_cycles")}
    raise ValueError(f"{path}: neither a sim.e2e report (report_T*.json) nor testbench results "
                     "(results_T*.json)")


def evaluate(checkpoint, images: int, T: int, lanes: int = 16, rtl_path=None,
             inputs=None, fold: int = 1, input_buffer: int = 0) -> dict:
    """Predict ``images`` inputs (``inputs``: as :func:`load_trace`) at ``T`` and, with
    ``rtl_path``, compare (see CLI)."""
    model, plan, trace, described = load_trace(checkpoint, images, T, lanes, inputs=inputs,
                                               describe=True, fold=fold,
                                               input_buffer=input_buffer)
    predictions = [model.predict(trace, image) for image in range(images)]
    rtl = read_rtl(rtl_path, plan, T) if rtl_path else None
    if rtl and rtl["per_image"] is not None and len(rtl["per_image"]) < images:
        raise ValueError(f"{rtl_path} holds {len(rtl['per_image'])} image(s), not {images}")
    mean = {}
    for prediction in predictions:
        for row in prediction["steps"]:
            mean[row["step"]] = mean.get(row["step"], 0) + row["cycles"] / images
    rows = []
    for k, step in enumerate(plan.steps):
        if step.kind is StepKind.BEGIN_STEM:
            continue
        row = {"step": k, "name": step.name, "kind": step.kind.label, "model": mean[k]}
        if rtl:
            want = rtl["per_step"].get(k, 0)
            row.update(rtl=want, error=row["model"] / want - 1 if want else 0.0)
        rows.append(row)
    out = {"checkpoint": str(checkpoint), "T": T, "images": images, "inputs": described,
           "lanes": lanes,
           "steps": rows, "model_total": sum(r["model"] for r in rows),
           "model_totals": [p["total"] for p in predictions], "predicted": predictions}
    if rtl:
        want = sum(r["rtl"] for r in rows)
        worst = max(rows, key=lambda r: abs(r["error"]))
        out.update(rtl_report=str(rtl_path), rtl_total=want,
                   total_error=out["model_total"] / want - 1,
                   worst_step={"step": worst["step"], "name": worst["name"],
                               "error": worst["error"]})
        if rtl["per_image"] is not None:
            out["per_image"] = []
            for image, measured in enumerate(rtl["per_image"][:images]):
                predicted = {(r["t"], r["step"]): r["cycles"] for r in predictions[image]["steps"]}
                errors = {key: predicted.get(key, 0) / value - 1
                          for key, value in measured.items()}
                key = max(errors, key=lambda key: abs(errors[key]))
                out["per_image"].append({
                    "image": image, "model": predictions[image]["total"],
                    "rtl": sum(measured.values()),
                    "error": predictions[image]["total"] / sum(measured.values()) - 1,
                    "worst": {"t": key[0], "step": key[1], "name": plan.steps[key[1]].name,
                              "model": predicted.get(key, 0), "rtl": measured[key],
                              "error": errors[key]},
                    "steps_exact": sum(predicted.get(k, 0) == v for k, v in measured.items()),
                    "steps": len(measured)})
    return out


def print_evaluation(result: dict) -> None:
    """Print one evaluation: per step, the model (and the RTL and the error)."""
    rtl = "rtl_total" in result
    mean = ", mean over images" if result["images"] > 1 else ""
    print(f"=== T={result['T']}: {result['images']} image(s) of {result['checkpoint']}{mean}; "
          "cycles summed over time steps")
    print(f"inputs: {result['inputs']}")
    head = f"{'step':>4}  {'name':<34} {'kind':<13} {'model':>10}"
    print(head + (f" {'RTL':>10} {'error':>8}" if rtl else ""))
    for row in result["steps"]:
        line = f"{row['step']:>4}  {row['name'][:34]:<34} {row['kind']:<13} {row['model']:>10.1f}"
        if rtl:
            line += f" {row['rtl']:>10.1f} {100 * row['error']:>+7.2f}%"
        print(line)
    line = f"{'':>4}  {'total':<34} {'':<13} {result['model_total']:>10.1f}"
    if rtl:
        line += f" {result['rtl_total']:>10.1f} {100 * result['total_error']:>+7.2f}%"
    print(line)
    if rtl:
        worst = result["worst_step"]
        print(f"worst step: {worst['name']} ({100 * worst['error']:+.2f} %)")
        for entry in result.get("per_image", []):
            w = entry["worst"]
            print(f"image {entry['image']}: model {entry['model']}, RTL {entry['rtl']} "
                  f"({100 * entry['error']:+.2f} %); {entry['steps_exact']} of {entry['steps']} "
                  f"steps exact; worst t={w['t']} {w['name']}: {w['model']} vs {w['rtl']} "
                  f"({100 * w['error']:+.2f} %)")
    else:
        for image, total in enumerate(result["model_totals"]):
            print(f"image {image}: model {total} cycles")


def _report_T(path: Path, data) -> int | None:
    """The T of a report or results file: its ``T`` field, else ``*_T<T>.json``."""
    if isinstance(data, dict) and isinstance(data.get("T"), int):
        return data["T"]
    stem = path.stem
    if "_T" in stem and stem.rsplit("_T", 1)[1].isdigit():
        return int(stem.rsplit("_T", 1)[1])
    return None


def main(argv=None) -> int:
    """Print (and with ``--json`` write) the predicted cycles; 0 on success, 2 on bad input."""
    p = Parser(prog="python -m sim.perf", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint (.pth / .safetensors), or 'random': sim.e2e's seeded model")
    p.add_argument("--images", type=int, default=1, help="inputs (default 1)")
    p.add_argument("--inputs", default=None, metavar="FILE|digits|random",
                   help="as sim.e2e: a .npy/.pt of images [N, C, H, W] in the model's pixel range, "
                        "'digits' or 'random' (default: the held-out digits for a model taking "
                        "1x32x32, else seeded random images)")
    p.add_argument("--T", type=int, nargs="+", default=[1], help="time steps (default 1)")
    p.add_argument("--lanes", type=int, default=16, help="lanes (default 16)")
    p.add_argument("--fold", type=int, default=1,
                   help="column folding up to this many columns a bank word (a power of two up "
                        "to --lanes, lanes then a power of two; default 1: none)")
    p.add_argument("--input-buffer", type=int, default=0, metavar="WORDS",
                   help="words the engine's input slice holds, dropping empty rows (0: none, "
                        "the default; 2..64; hw/progengine.py, \"Cost\")")
    p.add_argument("--rtl-report", action="append", default=[], metavar="FILE",
                   help="a co-simulation's report_T<T>.json (sim.e2e) or results_T<T>.json "
                        "(testbench) to compare with; repeat for several T")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the predictions (and the comparison) as JSON")
    args = p.parse_args(argv)
    problem = None
    if args.images < 1:
        problem = f"--images {args.images} is out of range: at least 1"
    elif min(args.T) < 1:
        problem = f"--T {min(args.T)} is out of range: at least 1"
    elif len(set(args.T)) != len(args.T):
        problem = f"--T {' '.join(map(str, args.T))} repeats a time step"
    elif not 1 <= args.lanes <= 256:
        problem = f"--lanes {args.lanes} is out of range: 1..256"
    elif args.fold < 1 or args.fold & (args.fold - 1) or args.fold > args.lanes or (
            args.fold > 1 and args.lanes & (args.lanes - 1)):
        problem = (f"--fold {args.fold} is out of range: a power of two from 1 to --lanes "
                   f"{args.lanes} (lanes a power of two when above 1)")
    elif args.input_buffer != 0 and not 2 <= args.input_buffer <= 64:
        problem = f"--input-buffer {args.input_buffer} is out of range: 0 (none) or 2..64"
    elif args.checkpoint != "random" and not Path(args.checkpoint).is_file():
        problem = f"checkpoint {args.checkpoint} does not exist"
    elif args.json and not Path(args.json).resolve().parent.is_dir():
        problem = f"--json {args.json}: directory {Path(args.json).parent} does not exist"
    reports = {}
    for name in args.rtl_report:
        if problem:
            break
        path = Path(name)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            problem = f"--rtl-report {name} does not exist"
            break
        except (OSError, ValueError) as error:
            problem = f"--rtl-report {name} is not JSON: {' '.join(str(error).split())}"
            break
        T = _report_T(path, data)
        if T is None:
            problem = f"--rtl-report {name}: its T is unknown (no T field, not *_T<T>.json)"
        elif T not in args.T:
            runs = " ".join(map(str, args.T))
            problem = f"--rtl-report {name} is for T={T}, not one of --T {runs}"
        elif T in reports:
            problem = f"--rtl-report {name}: a second file for T={T}"
        if problem:
            break
        reports[T] = path
    results = []
    if problem is None:
        # Everything is loaded and compared before anything is printed or written.
        try:
            for T in args.T:
                results.append(evaluate(args.checkpoint, args.images, T, args.lanes,
                                        reports.get(T), args.inputs, args.fold,
                                        args.input_buffer))
        except (ValueError, OSError, KeyError, NotImplementedError) as error:
            problem = " ".join(str(error).split())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for number, result in enumerate(results):
        if number:
            print()
        print_evaluation(result)
    if args.json:
        document = {"constants": CONSTANTS, "runs": results}
        Path(args.json).write_text(json.dumps(document, indent=1, default=_jsonable) + "\n")
    return 0


def _jsonable(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main())
