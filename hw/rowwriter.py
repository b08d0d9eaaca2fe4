"""Spike rows to external memory: an AXI4 write master that stores one band of a map.

The write side of the band-streamed dataflow (``docs/weightfetch.md``, "Activations over
AXI4"), the counterpart of :class:`hw.rowreader.RowReader`: a layer that computes a band of
output rows leaves the band's spike rows, every channel, in external memory in the layout the
next layer's reader reads (:func:`hw.rowreader.map_image`). Nothing in the network uses it yet.

Memory layout and bands
    As :mod:`hw.rowreader`'s: row ``(c, y)`` at beat ``(c * H + y) * row_beats`` from
    ``base``, bit ``x`` column ``x``; a band is rows ``first .. last`` of every channel,
    :func:`hw.rowreader.band_config` gives the ``config`` values. The writer writes the band's
    beats and no other byte.

Ports
    ``config`` (In, :func:`hw.rowreader.band_config_layout`): held from ``start`` until ``busy``
    falls. ``start`` (In): pulse to write a band; ``busy`` (Out): from the cycle after
    ``start`` until the last write response has arrived. ``i`` (In,
    ``stream.Signature(addressing_input_layout(word_bits))``): one word a row in the band's
    ``(c, y)`` order, the row's bits from bit 0 (bits past the map's width zero: they are
    written as they come); ``last`` is not used (the configuration counts the rows).
    ``error`` (Out): sticky, a write answered with a response other than OKAY; cleared by
    ``start``. The AXI4 write channels are the flat ``m_axi_aw*`` / ``m_axi_w*`` / ``m_axi_b*``
    ports of :func:`hw.axi_io.axi4_write_ports`.

Bursts: the reader's (:func:`hw.rowreader.band_bursts`): INCR, full-width beats with every
strobe set, at most :data:`hw.rowreader.ROW_BURST` beats, each inside one aligned group of as
many beats; ID 0; an address a cycle on AW, any number outstanding. The W channel walks the
same bursts with a second walker, so ``wlast`` needs no queue of lengths, and it does not wait
for AW (AXI4 lets write data lead its address). ``bready`` is always 1.

Cost: a row's word waits in one register and leaves as ``row_beats`` W beats, a beat a cycle
when ``wready`` is high; ``i`` is ready when the register is empty or its last beat leaves, so
a band of ``n`` beats takes ``n`` cycles of W plus the last response's latency. Reference:
:func:`written_image` (the memory after a band). Tests: ``tests/test_rowwriter.py``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.addressing import addressing_input_layout
from hw.axi_io import axi4_write_ports
from hw.params import bits_for, ceil_div, check_int
from hw.rowreader import ROW_BURST, band_bursts, band_config_layout, map_image
from hw.weightfetch import AXI_PREFIX

__all__ = ["RowWriter", "written_image"]


def written_image(memory: bytes, spikes, first: int, last: int, *, base: int,
                  data_width: int = 64) -> bytes:
    """``memory`` after a :class:`RowWriter` wrote rows ``first .. last`` of the map
    ``spikes`` ``[C, H, W]`` stored at ``base``: those rows' bytes replaced by
    :func:`hw.rowreader.map_image`'s, every other byte as it was."""
    image = map_image(spikes, data_width)
    channels, height, width = spikes.shape
    row_bytes = ceil_div(width, data_width) * data_width // 8
    out = bytearray(memory)
    for c in range(channels):
        start = (c * height + first) * row_bytes
        end = (c * height + last + 1) * row_bytes
        out[base + start:base + end] = image[start:end]
    return bytes(out)


class RowWriter(wiring.Component):
    """Write a band of a spike map over AXI4, one input word a row (module docstring).

    Parameters
    ----------
    word_bits : int
        Bits of an input word: the widest map's width (>= 1).
    max_channels : int
        Most channels of a band (>= 1).
    max_beats : int
        Most beats from ``base`` to a band's end: ``C * H * row_beats`` of the largest map (>= 1).
    data_width : int
        AXI data bits: 32, 64, 128, 256, 512 or 1024 (default 64).
    address_width : int
        AXI address bits (default 32).
    order : str
        ``"channels"`` (default): the input words come in the band's ``(c, y)`` order, a
        channel's band rows one run of beats. ``"rows"``: in ``(y, c)`` order, row by row, every
        channel of a row one after another, as a layer's output leaves its engine (a row of
        every channel at a time; :class:`hw.bandlayer.RowAssembler`); each row a run of
        ``row_beats`` beats (shorter bursts, the same bytes).
    """

    def __init__(self, *, word_bits: int, max_channels: int, max_beats: int,
                 data_width: int = 64, address_width: int = 32, order: str = "channels"):
        if order not in ("channels", "rows"):
            raise ValueError(f"order must be 'channels' or 'rows', not {order!r}")
        self._rows = order == "rows"
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
            "i": In(stream.Signature(addressing_input_layout(self._word_bits))),
            **axi4_write_ports(self._address_width, data_width),
        })

    @property
    def config_layout(self) -> data.StructLayout:
        """The ``config`` port: :func:`hw.rowreader.band_config`'s fields."""
        return band_config_layout(max_row_beats=self._max_row_beats,
                                  max_channels=self._max_channels, max_beats=self._max_beats,
                                  address_width=self._address_width)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dw, p = self._data_width, AXI_PREFIX
        port = {name: getattr(self, f"{p}_{name}") for name in (
            "awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot",
            "awvalid", "awready", "wdata", "wstrb", "wlast", "wvalid", "wready", "bresp",
            "bvalid", "bready")}
        beat_log = (dw // 8).bit_length() - 1
        beat_bits = len(cfg.band_beats)
        m.d.comb += [port["awid"].eq(0), port["awsize"].eq(beat_log), port["awburst"].eq(1),
                     port["awlock"].eq(0), port["awcache"].eq(3), port["awprot"].eq(0),
                     port["wstrb"].eq(-1), port["bready"].eq(1)]

        # --- AW: the band's bursts, an address a cycle ---
        aw_active, aw_address, aw_burst, aw_walking = band_bursts(
            m, cfg, self.start, port["awready"], name="aw", address_width=self._address_width,
            beat_log=beat_log, beat_bits=beat_bits, rows=self._rows)
        m.d.comb += [port["awvalid"].eq(aw_active), port["awaddr"].eq(aw_address),
                     port["awlen"].eq(aw_burst - 1)]

        # --- W: the same bursts walked again for wlast; a row's word leaves beat by beat ---
        w_fire = Signal()
        w_last = Signal()
        w_active, _, w_burst, w_walking = band_bursts(
            m, cfg, self.start, w_fire & w_last, name="w", address_width=self._address_width,
            beat_log=beat_log, beat_bits=beat_bits, rows=self._rows)
        w_count = Signal(range(ROW_BURST))   # beats of the current burst sent
        w_rest = Signal(range(ROW_BURST + 1))   # after its first beat: the burst's beats left
        word = Signal(self._max_row_beats * dw)
        have = Signal()                      # word holds a row not yet sent whole
        index = Signal(range(max(2, self._max_row_beats)))   # the row's next beat
        row_end = Signal()
        busy = Signal()
        m.d.comb += [
            # the burst's last beat: from registers and small compares (no subtraction in front
            # of the handshake, which steps the W walker)
            w_last.eq(Mux(w_count == 0, w_burst == 1, w_rest == 1)),
            row_end.eq(index == cfg.row_beats - 1),
            port["wvalid"].eq(have & w_active),
            # the row's beat ``index``: a multiplexer over the few beats a row has, no product
            port["wdata"].eq(Array(word.word_select(k, dw)
                                   for k in range(self._max_row_beats))[index]),
            port["wlast"].eq(w_last),
            w_fire.eq(port["wvalid"] & port["wready"]),
            # (``busy`` is a register: no word is taken before the band's start or in its cycle)
            self.i.ready.eq(busy & (~have | (w_fire & row_end))),
        ]
        # w_count, index and have are 0 at a band's end (a burst ends on wlast, a row's word
        # leaves whole), so ``start`` needs not clear them; a new word sets index to 0.
        with m.If(~self.start):
            with m.If(w_fire):
                with m.If(w_last):
                    m.d.sync += w_count.eq(0)
                with m.Else():
                    m.d.sync += w_count.eq(w_count + 1)
                m.d.sync += w_rest.eq(Mux(w_count == 0, w_burst, w_rest) - 1)
                with m.If(row_end):
                    m.d.sync += have.eq(0)
                with m.Else():
                    m.d.sync += index.eq(index + 1)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [word.eq(self.i.payload.bits), have.eq(1), index.eq(0)]

        # --- B: count the bursts whose response is due; busy until none is ---
        due = Signal(beat_bits)
        b_fire = Signal()
        m.d.comb += b_fire.eq(port["bvalid"])
        aw_fire = Signal()
        m.d.comb += aw_fire.eq(aw_active & port["awready"])
        with m.If(aw_fire & ~b_fire):
            m.d.sync += due.eq(due + 1)
        with m.Elif(b_fire & ~aw_fire):
            m.d.sync += due.eq(due - 1)
        m.d.comb += self.busy.eq(busy)
        with m.If(self.start):
            m.d.sync += [busy.eq(cfg.band_beats != 0), self.error.eq(0)]
        with m.Else():
            with m.If(b_fire & (port["bresp"] != 0)):
                m.d.sync += self.error.eq(1)
            with m.If(busy & ~aw_walking & ~w_walking & (due == 0)):
                m.d.sync += busy.eq(0)
        return m
