"""hw.rowwriter.RowWriter: a band of a spike map written over AXI4, one word a row.

Against a random AXI write memory (random AW and W ready, write data that may lead its address,
write responses after a random latency of 1-64 cycles with random pauses) and a random source:
the memory afterwards is exactly :func:`written_image` (the band's rows replaced, every other
byte as it was, over a memory of random garbage); every burst is INCR, full-width with every
strobe, at most 16 beats inside one aligned group, inside the band, ``wlast`` on its last beat
only; an error response is reported and cleared by the next start; and a band copied by a
``RowReader`` into a ``RowWriter`` (both on random memories) arrives whole.
"""

import random
import re

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.rowreader import ROW_BURST, RowReader, band_config, band_words, map_image
from hw.rowwriter import RowWriter, written_image
from sim.cases_addressing import spike_map

SEED = 20261208


class WriteMemory:
    """A cycle-by-cycle AXI4 write slave in Python for Amaranth's simulator: call :meth:`step`
    once a cycle before the tick, with the DUT's write ports; it checks every protocol rule the
    module docstring names and writes the memory."""

    def __init__(self, dut, memory: bytearray, rng, *, data_width, latency=(1, 64),
                 pause=0.3, bad_burst=None):
        self.dut, self.memory, self.rng = dut, memory, rng
        self.data_width, self.latency, self.pause = data_width, latency, pause
        self.bursts = []      # [address, beats] in AW order
        self.data = []        # W beats not yet matched to an address: (data, strobe, last)
        self.written = 0      # beats of the bursts written so far (in AW order)
        self.responses = []   # [due cycle count] of completed bursts
        self.done = 0         # bursts whose data is complete
        self.bad_burst = bad_burst
        self.burst_log = []

    def step(self, ctx):
        dut, rng, p = self.dut, self.rng, "m_axi"
        beat_bytes = self.data_width // 8
        awready = rng.random() >= self.pause
        ctx.set(getattr(dut, f"{p}_awready"), awready)
        if awready and ctx.get(getattr(dut, f"{p}_awvalid")):
            address = ctx.get(getattr(dut, f"{p}_awaddr"))
            beats = ctx.get(getattr(dut, f"{p}_awlen")) + 1
            assert ctx.get(getattr(dut, f"{p}_awburst")) == 1, "not INCR"
            assert [ctx.get(getattr(dut, f"{p}_{name}")) for name in
                    ("awid", "awlock", "awcache", "awprot")] == [0, 0, 3, 0]
            assert 1 << ctx.get(getattr(dut, f"{p}_awsize")) == beat_bytes, "not full width"
            assert address % beat_bytes == 0
            group = ROW_BURST * beat_bytes
            assert address // group == (address + beats * beat_bytes - 1) // group, \
                f"burst at {address:#x} of {beats} beats leaves its aligned group"
            self.bursts.append([address, beats])
            self.burst_log.append((address, beats))
        wready = rng.random() >= self.pause
        ctx.set(getattr(dut, f"{p}_wready"), wready)
        if wready and ctx.get(getattr(dut, f"{p}_wvalid")):
            strobe = ctx.get(getattr(dut, f"{p}_wstrb"))
            assert strobe == (1 << beat_bytes) - 1, f"strobe {strobe:#x}"
            self.data.append((ctx.get(getattr(dut, f"{p}_wdata")),
                              ctx.get(getattr(dut, f"{p}_wlast"))))
        # match W beats to bursts in order (data may lead its address)
        while self.data and self.done < len(self.bursts):
            address, beats = self.bursts[self.done]
            value, last = self.data.pop(0)
            at = address + self.written * beat_bytes
            self.memory[at:at + beat_bytes] = value.to_bytes(beat_bytes, "little")
            self.written += 1
            assert last == (self.written == beats), \
                f"wlast {last} on beat {self.written} of a {beats}-beat burst at {address:#x}"
            if self.written == beats:
                self.written = 0
                self.done += 1
                self.responses.append(rng.randint(*self.latency))
        for n in range(len(self.responses)):
            self.responses[n] -= 1
        bvalid = bool(self.responses) and self.responses[0] <= 0 and rng.random() >= self.pause
        ctx.set(getattr(dut, f"{p}_bvalid"), bvalid)
        answered = self.done - len(self.responses)
        ctx.set(getattr(dut, f"{p}_bresp"), 2 if bvalid and answered == self.bad_burst else 0)
        if bvalid:
            assert ctx.get(getattr(dut, f"{p}_bready"))
            self.responses.pop(0)

    @property
    def idle(self):
        return not self.data and not self.responses and self.done == len(self.bursts)


def send_words(ctx, dut, words, state, rng, rate):
    """One cycle of a random source offering ``words`` on ``dut.i``."""
    offer = state["next"] < len(words) and rng.random() < rate
    ctx.set(dut.i.valid, offer)
    if offer:
        ctx.set(dut.i.payload.bits, words[state["next"]])
        ctx.set(dut.i.payload.last, state["next"] == len(words) - 1)
        if ctx.get(dut.i.ready):
            state["next"] += 1


def row_order_words(spikes, first, last):
    """The band's words in ``(y, c)`` order (``order="rows"``)."""
    return [sum(int(bit) << x for x, bit in enumerate(spikes[c, y]))
            for y in range(first, last + 1) for c in range(spikes.shape[0])]


def run_bands(spikes, bands, *, data_width=64, base=0x0FC0, seed=0, bad_burst=None,
              order="channels"):
    """Write ``bands`` of ``spikes`` one after another; return the memory, the bursts, the
    error flag after each band and the garbage the memory held before."""
    channels, height, width = spikes.shape
    dut = RowWriter(word_bits=width, max_channels=channels,
                    max_beats=channels * height * -(-width // data_width),
                    data_width=data_width, order=order)
    rng = random.Random(seed)
    size = base + len(map_image(spikes, data_width)) + 256
    garbage = random.Random(seed + 1)
    before = bytes(garbage.getrandbits(8) for _ in range(size))
    memory = bytearray(before)
    slave = WriteMemory(dut, memory, rng, data_width=data_width, bad_burst=bad_burst)
    log = {"errors": []}

    async def bench(ctx):
        for first, last in bands:
            ctx.set(dut.config, band_config(channels, height, width, first, last,
                                            data_width=data_width, base=base))
            ctx.set(dut.start, 1)
            slave.step(ctx)
            await ctx.tick()
            ctx.set(dut.start, 0)
            words = (band_words if order == "channels" else row_order_words)(spikes, first, last)
            state = {"next": 0}
            for _ in range(50_000):
                slave.step(ctx)      # first: i.ready depends on wready
                send_words(ctx, dut, words, state, rng, 0.7)
                await ctx.tick()
                if not ctx.get(dut.busy):
                    break
            else:
                raise AssertionError("the writer never finished")
            assert state["next"] == len(words), "busy fell before every word was taken"
            assert slave.idle, "busy fell with a write response outstanding"
            log["errors"].append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bytes(memory), slave.burst_log, log["errors"], before


@pytest.mark.parametrize("order", ["channels", "rows"])
@pytest.mark.parametrize("shape,data_width,bands", [
    ((3, 5, 7), 64, [(0, 4)]),
    ((4, 6, 20), 64, [(0, 1), (2, 4), (5, 5)]),
    ((2, 9, 64), 32, [(0, 8)]),                 # two beats a row
    ((3, 5, 130), 32, [(1, 3), (0, 0), (4, 4)]),  # five beats a row, out of order
    ((5, 40, 16), 128, [(0, 39)]),              # many rows: bursts of 16
    ((2, 100, 40), 64, [(3, 99)]),              # runs of 97 beats: six bursts a channel
    ((3, 3, 700), 64, [(0, 2)]),                # rows of 11 beats: a row's runs split by groups
])
def test_bands_land_exactly_where_the_reader_reads_them(shape, data_width, bands, order):
    rng = np.random.default_rng(SEED)
    spikes = spike_map(rng, shape, 0.4)
    base = 0x0FC0
    memory, bursts, errors, before = run_bands(spikes, bands, data_width=data_width, base=base,
                                               seed=len(bands), order=order)
    want = before
    for first, last in bands:
        want = written_image(want, spikes, first, last, base=base, data_width=data_width)
    assert memory == want
    assert errors == [0] * len(bands)
    # every beat of the bands once, no other
    beat_bytes = data_width // 8
    beats = sorted(a + n * beat_bytes for a, count in bursts for n in range(count))
    assert len(beats) == len(set(beats))
    row_beats = -(-shape[2] // data_width)
    expect = sorted(base + ((c * shape[1] + y) * row_beats + k) * beat_bytes
                    for first, last in bands for c in range(shape[0])
                    for y in range(first, last + 1) for k in range(row_beats))
    assert beats == expect
    # each burst as long as it may be: it ends at its aligned group's end or at its run's end
    # (a run: a channel's rows of the band, or with order="rows" one row of one channel)
    group = ROW_BURST * beat_bytes
    run_ends = {base + ((c * shape[1] + y) * row_beats + row_beats) * beat_bytes
                for first, last in bands for c in range(shape[0])
                for y in (range(first, last + 1) if order == "rows" else [last])}
    for address, count in bursts:
        end = address + count * beat_bytes
        assert end % group == 0 or end in run_ends, f"a short burst at {address:#x}"
    if order == "rows":
        # a burst never spans two rows: each row of each channel is its own run
        row_bytes = row_beats * beat_bytes
        for address, count in bursts:
            assert (address - base) // row_bytes == (address - base + count * beat_bytes - 1) \
                // row_bytes


def test_written_image_is_the_map_image_when_every_row_is_written():
    spikes = spike_map(np.random.default_rng(1), (3, 4, 130), 0.5)   # three beats a row
    size = 0x40 + 3 * 4 * 24
    assert written_image(bytes(size), spikes, 0, 3, base=0x40)[0x40:] == map_image(spikes)
    half = written_image(bytes(size), spikes, 1, 2, base=0x40)[0x40:]
    assert half != map_image(spikes) and half[24:72] == map_image(spikes)[24:72]


def test_an_error_response_is_reported_and_cleared_by_the_next_start():
    spikes = spike_map(np.random.default_rng(2), (3, 6, 10), 0.5)
    _, bursts, errors, _ = run_bands(spikes, [(0, 5), (0, 5)], bad_burst=1)
    assert len(bursts) > 2
    assert errors == [1, 0]


def test_a_band_copied_from_a_reader_into_a_writer():
    """RowReader -> RowWriter, each on its own random memory: a band of one map's rows lands
    at another base, byte for byte, under random latency, pauses and back-pressure."""
    spikes = spike_map(np.random.default_rng(3), (4, 12, 70), 0.4)
    channels, height, width = spikes.shape
    reader = RowReader(word_bits=width, max_channels=channels, max_beats=channels * height * 2)
    writer = RowWriter(word_bits=width, max_channels=channels, max_beats=channels * height * 2)
    top = Module()
    top.submodules.reader = reader
    top.submodules.writer = writer
    wiring.connect(top, reader.o, writer.i)
    source = bytes(0x100) + map_image(spikes)
    garbage = random.Random(9)
    before = bytes(garbage.getrandbits(8) for _ in range(0x3000))
    target = bytearray(before)
    rng = random.Random(4)
    slave = WriteMemory(writer, target, rng, data_width=64)
    first, last = 3, 8

    async def bench(ctx):
        ctx.set(reader.config, band_config(channels, height, width, first, last, base=0x100))
        ctx.set(writer.config, band_config(channels, height, width, first, last, base=0x1040))
        ctx.set(reader.start, 1)
        ctx.set(writer.start, 1)
        slave.step(ctx)
        await ctx.tick()
        ctx.set(reader.start, 0)
        ctx.set(writer.start, 0)
        pending = []
        for _ in range(20_000):
            slave.step(ctx)          # first: the reader's rready depends on wready
            arready = rng.random() >= 0.3
            ctx.set(reader.m_axi_arready, arready)
            if arready and ctx.get(reader.m_axi_arvalid):
                pending.append([rng.randint(1, 64), ctx.get(reader.m_axi_araddr),
                                ctx.get(reader.m_axi_arlen) + 1])
            for entry in pending:
                entry[0] -= 1
            rvalid = bool(pending) and pending[0][0] <= 0 and rng.random() >= 0.3
            ctx.set(reader.m_axi_rvalid, rvalid)
            if rvalid:
                at = pending[0][1]
                ctx.set(reader.m_axi_rdata, int.from_bytes(source[at:at + 8], "little"))
                ctx.set(reader.m_axi_rlast, pending[0][2] == 1)
            if rvalid and ctx.get(reader.m_axi_rready):
                pending[0][1] += 8
                pending[0][2] -= 1
                if pending[0][2] == 0:
                    pending.pop(0)
            await ctx.tick()
            if not ctx.get(writer.busy) and not ctx.get(reader.busy):
                break
        else:
            raise AssertionError("the copy never finished")
        assert slave.idle and not pending

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert bytes(target) == written_image(before, spikes, first, last, base=0x1040)


def test_refusals_and_verilog(tmp_path):
    from amaranth.back import verilog

    from rtl_gen.lint import lint

    with pytest.raises(ValueError, match="data_width"):
        RowWriter(word_bits=8, max_channels=1, max_beats=1, data_width=48)
    with pytest.raises(ValueError, match="order"):
        RowWriter(word_bits=8, max_channels=1, max_beats=1, order="columns")
    with pytest.raises(ValueError, match="word_bits"):
        RowWriter(word_bits=0, max_channels=1, max_beats=1)
    dut = RowWriter(word_bits=130, max_channels=8, max_beats=8 * 16 * 3)
    widths = {name: len(getattr(dut, name)) for name in (
        "start", "busy", "error", "m_axi_awaddr", "m_axi_awlen", "m_axi_wdata", "m_axi_wstrb")}
    assert widths == {"start": 1, "busy": 1, "error": 1, "m_axi_awaddr": 32, "m_axi_awlen": 8,
                      "m_axi_wdata": 64, "m_axi_wstrb": 8}
    text = verilog.convert(dut, name="rowwriter")
    source = tmp_path / "rowwriter.v"
    source.write_text(text)
    result = lint([source], "rowwriter")
    assert result.ok, result.messages
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    code = re.sub(r"\(\*.*?\*\)", "", code)          # attributes
    assert not re.search(r"[\w)\]]\s*\*\s*[\w(]", code), "a multiplier in the Verilog"
