"""Spike rows from external memory: an AXI4 read master that feeds an engine one band of a map.

The first unit of the band-streamed dataflow that ``sim.spill`` models (``docs/weightfetch.md``,
"Activations over AXI4"): an engine layer that works on a band of output rows reads the input
rows the band's taps reach, every channel, in the engine's ``(c, y)`` order. Nothing in the
network uses it yet: the spike maps are still on chip.

Memory layout (:func:`map_image`, the contract)
    A spike map ``[C, H, W]`` lies row after row, channel after channel: row ``(c, y)`` at byte
    ``base + (c * H + y) * row_beats * B`` (``B = data_width / 8`` bytes a beat, ``row_beats =
    ceil(W / data_width)``), bit ``x`` of the row (little-endian across the row's beats) is
    column ``x``, the bits past ``W`` zero. ``base`` is a multiple of ``B``.
A band (:func:`band_config`)
    Rows ``first .. last`` of every channel: per channel ``band_beats = (last - first + 1) *
    row_beats`` consecutive beats from beat ``first_beat + c * channel_beats`` (``first_beat =
    first * row_beats``, ``channel_beats = H * row_beats``, beats counted from ``base``). The
    configuration holds these products, computed when the layer is planned: no multiplier is
    built.

Ports
    ``config`` (In, :meth:`RowReader.config_layout`): ``base``, ``row_beats``, ``first_beat``,
    ``channel_beats``, ``band_beats``, ``channels``; held from ``start`` to the band's last word.
    ``start`` (In): pulse to read the band; ``busy`` (Out): from the cycle after ``start`` until
    the last word has been taken. ``o`` (Out, ``stream.Signature(addressing_input_layout(
    word_bits))``): one word a row, ``bits`` the row's ``row_beats * data_width`` bits cut to
    ``word_bits``, ``last`` on the band's final row: :class:`hw.progengine.ProgEngine`'s input.
    ``error`` (Out): sticky, an R beat answered with a response other than OKAY; cleared by
    ``start``. The AXI4 read channels are the flat ``m_axi_ar*`` / ``m_axi_r*`` ports of
    :func:`hw.weightfetch.axi4_read_ports`.

Bursts: INCR, full-width beats, at most :data:`ROW_BURST` beats, each inside one aligned group
of :data:`ROW_BURST` beats (none crosses a 4 KB boundary for a bus up to 256 bytes wide); one ID
(0); an address a cycle, any number outstanding. Cost: the R channel gives a beat a cycle when
the memory does and ``o`` is ready (a row's word waits in one output register; the R channel is
held while it is full and the beat would complete the next row), so a band of ``n`` beats takes
``n`` cycles after the first beat's latency.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout
from hw.params import bits_for, ceil_div, check_int
from hw.weightfetch import AXI_PREFIX, axi4_read_ports

__all__ = ["ROW_BURST", "RowReader", "band_bursts", "band_config_layout", "map_image", "band_config", "band_words"]

#: Most beats of one burst (and the alignment group every burst stays inside).
ROW_BURST = 16


def map_image(spikes, data_width: int = 64) -> bytes:
    """A spike map ``[C, H, W]`` of 0/1 as it lies in memory (module docstring)."""
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or (spikes.size and not np.isin(spikes, (0, 1)).all()):
        raise ValueError(f"spikes must be a [C, H, W] map of 0/1, not shape {spikes.shape}")
    channels, height, width = spikes.shape
    row_bytes = ceil_div(width, data_width) * data_width // 8
    out = bytearray()
    for c in range(channels):
        for y in range(height):
            value = sum(int(bit) << x for x, bit in enumerate(spikes[c, y]))
            out += value.to_bytes(row_bytes, "little")
    return bytes(out)


def band_config(channels: int, height: int, width: int, first: int, last: int, *,
                data_width: int = 64, base: int = 0) -> dict:
    """The ``config`` values of the band of rows ``first .. last`` of a ``[C, H, W]`` map at
    ``base`` (module docstring)."""
    check_int("channels", channels, 1)
    check_int("height", height, 1)
    check_int("width", width, 1)
    check_int("first", first, 0, height - 1)
    check_int("last", last, first, height - 1)
    if base % (data_width // 8):
        raise ValueError(f"base {base:#x} is not a multiple of the bus's {data_width // 8} bytes")
    row_beats = ceil_div(width, data_width)
    return {"base": base, "row_beats": row_beats, "first_beat": first * row_beats,
            "channel_beats": height * row_beats, "band_beats": (last - first + 1) * row_beats,
            "channels": channels}


def band_words(spikes, first: int, last: int) -> list[int]:
    """The words :class:`RowReader` gives for a band: rows ``first .. last`` of every channel,
    channel by channel, bit ``x`` column ``x``."""
    spikes = np.asarray(spikes)
    return [sum(int(bit) << x for x, bit in enumerate(spikes[c, y]))
            for c in range(spikes.shape[0]) for y in range(first, last + 1)]


def band_config_layout(*, max_row_beats: int, max_channels: int, max_beats: int,
                       address_width: int) -> data.StructLayout:
    """The ``config`` port of :class:`RowReader` and :class:`hw.rowwriter.RowWriter`: the
    fields of :func:`band_config`."""
    beats = unsigned(bits_for(max_beats + 1))     # 0 .. max_beats
    return data.StructLayout({
        "base": unsigned(address_width),
        "row_beats": unsigned(bits_for(max_row_beats + 1)),
        "first_beat": beats, "channel_beats": beats, "band_beats": beats,
        "channels": unsigned(bits_for(max_channels + 1)),
    })


def band_bursts(m: Module, cfg, start, advance, *, name: str, address_width: int,
                beat_log: int, beat_bits: int, rows: bool = False):
    """Build the walker over a band's bursts (module docstring, "Bursts"), in ``m``.

    ``cfg`` is a :meth:`RowReader.config_layout` value held for the band; ``start`` restarts
    the walk, and ``advance`` (while active) steps past the current burst. Returns ``(active,
    address, burst, walking)``: whether a burst is presented, its byte address and its beats (1
    .. :data:`ROW_BURST`), all registers, and whether the walk is not over (``active``, or the
    two cycles after ``start``, in which the first burst and the one after it are computed).
    The reader's AR channel and the writer's AW and W channels each walk the same bursts with
    one of these.

    The walk is channel by channel, each channel's band rows one run of consecutive beats; with
    ``rows``, row by row instead, each row every channel, one run of ``row_beats`` beats a
    channel (``(y, c)`` order, :class:`hw.rowwriter.RowWriter`'s ``order="rows"``).

    The walker looks one burst ahead: besides the presented burst it holds the one after it in
    registers, so ``advance`` only moves the next burst into place (and starts computing the one
    after from registers); no adder or compare of the walk lies behind the handshake.
    """
    group_log = ROW_BURST.bit_length() - 1
    run = cfg.row_beats if rows else cfg.band_beats             # beats of one run

    def state(prefix):
        fields = {
            "active": Signal(name=f"{name}_{prefix}active"),
            "address": Signal(address_width, name=f"{name}_{prefix}address"),  # the burst's
            "channel": Signal(address_width, name=f"{name}_{prefix}channel"),  # the run's first
            "left": Signal(beat_bits, name=f"{name}_{prefix}left"),    # run's beats from address
            "channels": Signal.like(cfg.channels, name=f"{name}_{prefix}channels"),  # after it
            "burst": Signal(group_log + 1, name=f"{name}_{prefix}burst"),   # the burst's beats
        }
        if rows:
            fields["row_first"] = Signal(address_width, name=f"{name}_{prefix}row_first")
            fields["rows_left"] = Signal(beat_bits, name=f"{name}_{prefix}rows_left")
        return fields

    def burst_at(beat, beats):
        """The beats of the burst at beat ``beat`` of its aligned group (an address's
        ``group_log`` bits above the beat's bytes) with ``beats`` of the run left: up to the
        end of the group (so that no burst crosses 4 KB)."""
        room = Signal(group_log + 1, name=f"{name}_room")
        fits = Signal(name=f"{name}_fits")   # beats < room: beats + beat < ROW_BURST
        total = Signal(group_log + 2, name=f"{name}_total")
        m.d.comb += [room.eq(ROW_BURST - beat),
                     total.eq(beats[:group_log + 1] + beat),
                     fits.eq((beats[group_log + 1:] == 0) & (total[group_log:] == 0))]
        return Mux(fits, beats[:group_log + 1], room)

    def step(s, enable):
        """With ``enable``, ``s`` := the burst after ``s``'s (``active`` 0 past the band's
        last). The next burst's length is an AND-OR of its three candidates (within the run,
        the next channel's run, the next row's), each from registers: a multiplexer there
        would let the synthesis tool merge the candidates' compares behind the selection."""
        to_next = s["address"] + (s["burst"] << beat_log)                  # within the run
        to_channel = s["channel"] + (cfg.channel_beats << beat_log)       # next channel's run
        small = Signal(name=f"{name}_small")                               # left - burst < 16
        end_run = Signal(name=f"{name}_end_run")
        last_channel = Signal(name=f"{name}_last_channel")
        in_run = Signal(group_log + 1, name=f"{name}_in_run")
        at_channel = Signal(group_log + 1, name=f"{name}_at_channel")
        m.d.comb += [
            small.eq((s["left"][group_log + 2:] == 0)
                     & (s["left"][:group_log + 2] < s["burst"] + ROW_BURST)),
            end_run.eq(s["left"] == s["burst"]),
            last_channel.eq(s["channels"] == 0),
            # A burst that does not end its run ends at its group's end (it took the group's
            # room), so the next one starts a whole group: min(left - burst, ROW_BURST), from
            # left's low bits and a zero test of its high ones (no wide subtraction in front).
            in_run.eq(Mux(small, (s["left"][:group_log + 1] - s["burst"])[:group_log + 1],
                          ROW_BURST)),
            # the next run's place in its group from the low bits alone (a narrow adder: the
            # whole address's carry chain stays out of the burst's length)
            at_channel.eq(burst_at((s["channel"][beat_log:beat_log + group_log]
                                    + cfg.channel_beats[:group_log])[:group_log], run)),
        ]
        burst = (in_run & ~end_run.replicate(group_log + 1)) | (
            at_channel & (end_run & ~last_channel).replicate(group_log + 1))
        if rows:
            to_row = s["row_first"] + (cfg.row_beats << beat_log)
            at_row = Signal(group_log + 1, name=f"{name}_at_row")
            m.d.comb += at_row.eq(burst_at((s["row_first"][beat_log:beat_log + group_log]
                                            + cfg.row_beats[:group_log])[:group_log], run))
            burst = burst | (at_row & (end_run & last_channel).replicate(group_log + 1))
        with m.If(enable):
            m.d.sync += s["burst"].eq(burst)
            with m.If(end_run):
                # the run's last burst: on to the next channel's run, the next row, or done
                with m.If(last_channel):
                    if rows:
                        with m.If(s["rows_left"] == cfg.row_beats):
                            m.d.sync += s["active"].eq(0)
                        with m.Else():
                            m.d.sync += [s["row_first"].eq(to_row), s["channel"].eq(to_row),
                                         s["address"].eq(to_row), s["left"].eq(run),
                                         s["channels"].eq(cfg.channels - 1),
                                         s["rows_left"].eq(s["rows_left"] - cfg.row_beats)]
                    else:
                        m.d.sync += s["active"].eq(0)
                with m.Else():
                    m.d.sync += [s["channel"].eq(to_channel), s["address"].eq(to_channel),
                                 s["left"].eq(run), s["channels"].eq(s["channels"] - 1)]
            with m.Else():
                m.d.sync += [s["address"].eq(to_next), s["left"].eq(s["left"] - s["burst"])]

    cur, nxt = state(""), state("next_")
    to_start = Signal(address_width, name=f"{name}_to_start")
    m.d.comb += to_start.eq(cfg.base + (cfg.first_beat << beat_log))
    # ``start`` loads the first run's address into both; the first burst's length is computed
    # in the cycle after, from registers (the band's tables and the base adder stay out of it),
    # and the burst after it in the cycle after that
    first = Signal(name=f"{name}_first")     # computing the first burst
    second = Signal(name=f"{name}_second")   # computing the burst after it
    advancing = Signal(name=f"{name}_advancing")
    m.d.comb += advancing.eq(cur["active"] & advance)
    with m.If(start):
        m.d.sync += [first.eq(cfg.band_beats != 0), second.eq(0)]
        for st in (cur, nxt):
            m.d.sync += [st["active"].eq(0), st["address"].eq(to_start),
                         st["channel"].eq(to_start), st["left"].eq(run),
                         st["channels"].eq(cfg.channels - 1)]
            if rows:
                m.d.sync += [st["row_first"].eq(to_start), st["rows_left"].eq(cfg.band_beats)]
    with m.Elif(first):
        first_burst = burst_at(cur["address"][beat_log:beat_log + group_log], cur["left"])
        m.d.sync += [first.eq(0), second.eq(1), cur["burst"].eq(first_burst),
                     nxt["burst"].eq(first_burst), nxt["active"].eq(1)]
    with m.Elif(second):
        m.d.sync += [second.eq(0), cur["active"].eq(1)]
    with m.Elif(advancing):
        m.d.sync += [cur[k].eq(nxt[k]) for k in cur]
    step(nxt, ~start & ~first & (second | advancing))
    return cur["active"], cur["address"], cur["burst"], cur["active"] | first | second


class RowReader(wiring.Component):
    """Read a band of a spike map over AXI4, one word a row (module docstring).

    Parameters
    ----------
    word_bits : int
        Bits of an output word: the widest map's width (>= 1).
    max_channels : int
        Most channels of a band (>= 1).
    max_beats : int
        Most beats from ``base`` to a band's end: ``C * H * row_beats`` of the largest map (>= 1).
    data_width : int
        AXI data bits: 32, 64, 128, 256, 512 or 1024 (default 64).
    address_width : int
        AXI address bits (default 32).
    """

    def __init__(self, *, word_bits: int, max_channels: int, max_beats: int,
                 data_width: int = 64, address_width: int = 32):
        self._word_bits = check_int("word_bits", word_bits, 1)
        self._max_channels = check_int("max_channels", max_channels, 1)
        self._max_beats = check_int("max_beats", max_beats, 1)
        if data_width not in (32, 64, 128, 256, 512, 1024):
            raise ValueError(f"data_width must be one of 32, 64, 128, 256, 512, 1024 (bits), "
                             f"not {data_width}")
        self._data_width = data_width
        self._address_width = check_int("address_width", address_width, 12, 64)
        self._max_row_beats = ceil_div(self._word_bits, data_width)
        super().__init__({
            "config": In(self.config_layout),
            "start": In(1),
            "busy": Out(1),
            "error": Out(1),
            "o": Out(stream.Signature(addressing_input_layout(self._word_bits))),
            **axi4_read_ports(self._address_width, data_width),
        })

    @property
    def config_layout(self) -> data.StructLayout:
        """The ``config`` port: :func:`band_config`'s fields (:func:`band_config_layout`)."""
        return band_config_layout(max_row_beats=self._max_row_beats,
                                  max_channels=self._max_channels, max_beats=self._max_beats,
                                  address_width=self._address_width)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw, p = self._data_width, AXI_PREFIX
        port = {name: getattr(self, f"{p}_{name}") for name in (
            "arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot",
            "arvalid", "arready", "rdata", "rresp", "rlast", "rvalid", "rready")}
        beat_log = (dw // 8 - 1).bit_length()
        beat_bits = bits_for(self._max_beats + 1)
        m.d.comb += [port["arid"].eq(0), port["arsize"].eq(beat_log), port["arburst"].eq(1),
                     port["arlock"].eq(0), port["arcache"].eq(3), port["arprot"].eq(0)]

        # --- AR walker: the band's beats channel by channel, bursts inside aligned groups ---
        a_active, address, burst, _ = band_bursts(
            m, cfg, self.start, port["arready"], name="a", address_width=self._address_width,
            beat_log=beat_log, beat_bits=beat_bits)
        m.d.comb += [
            port["arvalid"].eq(a_active),
            port["araddr"].eq(address),
            port["arlen"].eq(burst - 1),
        ]

        # --- R side: a row's beats into the row register; the beat that ends a row goes,
        # with the beats before it, into the output register ---
        row = Signal(self._max_row_beats * dw)
        merged = Signal(self._max_row_beats * dw)  # the row with this beat in its place
        r_index = Signal(range(max(2, self._max_row_beats)))  # the row's beat this beat is
        r_row_end = Signal()         # this beat ends its row
        r_left = Signal(beat_bits)   # beats of the current channel's band not yet received
        r_channels = Signal.like(cfg.channels)   # channels after the current one
        o_valid = Signal()
        o_word = Signal(self._word_bits)
        o_last = Signal()
        busy = Signal()
        take = Signal()
        for k in range(self._max_row_beats):
            m.d.comb += merged[k * dw:(k + 1) * dw].eq(
                Mux(r_index == k, port["rdata"], row[k * dw:(k + 1) * dw]))
        m.d.comb += [
            r_row_end.eq(r_index == cfg.row_beats - 1),
            # a beat that ends a row needs the output register free, or leaving
            port["rready"].eq(busy & (~r_row_end | ~o_valid | self.o.ready)),
            take.eq(port["rvalid"] & port["rready"]),
            self.o.valid.eq(o_valid),
            self.o.payload.bits.eq(o_word),
            self.o.payload.last.eq(o_last),
            self.busy.eq(busy),
        ]
        with m.If(self.o.ready & o_valid):
            m.d.sync += o_valid.eq(0)
        with m.If(self.start):
            m.d.sync += [busy.eq(cfg.band_beats != 0), r_index.eq(0), self.error.eq(0),
                         o_valid.eq(0), r_left.eq(cfg.band_beats),
                         r_channels.eq(cfg.channels - 1)]
        with m.Elif(busy):
            with m.If(take):
                m.d.sync += row.eq(merged)
                with m.If(port["rresp"] != 0):
                    m.d.sync += self.error.eq(1)
                with m.If(r_row_end):
                    m.d.sync += [r_index.eq(0), o_valid.eq(1), o_word.eq(merged),
                                 o_last.eq((r_left == 1) & (r_channels == 0))]
                with m.Else():
                    m.d.sync += r_index.eq(r_index + 1)
                with m.If(r_left == 1):
                    m.d.sync += [r_left.eq(cfg.band_beats), r_channels.eq(r_channels - 1)]
                with m.Else():
                    m.d.sync += r_left.eq(r_left - 1)
            with m.If(o_valid & self.o.ready & o_last):
                m.d.sync += busy.eq(0)
        return m
