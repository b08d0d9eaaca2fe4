"""hw.rowreader.RowReader: a band of a spike map read over AXI4, one word a row.

Against a random AXI memory model (random read latency 1-64 cycles, random AR and R pauses) and
a random consumer: the words are exactly :func:`band_words` of the map, in order, ``last`` on
the band's final row only; every burst is INCR, full-width, at most 16 beats inside one aligned
group of 16, inside the band's rows; the reader asks for every beat of the band once; an error
response is reported; a second band after the first, with the same build.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.rowreader import ROW_BURST, RowReader, band_config, band_words, map_image

SEED = 20261207


def run_band(spikes, bands, *, data_width=64, base=0x0FC0, seed=0, latency=(1, 64),
             pause=0.3, ready=0.7, bad_beat=None):
    """Run the reader over ``bands`` (``(first, last)`` each, one after the other) of
    ``spikes`` stored at ``base``; return the words, last flags, bursts and error flags."""
    channels, height, width = spikes.shape
    image = map_image(spikes, data_width)
    beat_bytes = data_width // 8
    dut = RowReader(word_bits=width, max_channels=channels,
                    max_beats=channels * height * -(-width // data_width),
                    data_width=data_width)
    rng = random.Random(seed)
    log = {"words": [], "bursts": [], "errors": []}

    async def bench(ctx):
        memory = bytes(base) + image
        pending = []       # [due cycle, address, beats left]
        served = 0         # R beats handed over, all bands
        for first, last in bands:
            config = band_config(channels, height, width, first, last,
                                 data_width=data_width, base=base)
            ctx.set(dut.config, config)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            words, cycle = [], 0
            expected = len(band_words(spikes, first, last))
            # a generous bound: a few cycles a beat under the random pauses, plus latencies
            bound = 500 + 40 * expected * -(-width // data_width)
            while len(words) < expected:
                cycle += 1
                assert cycle < bound, "the reader stalls"
                arready = rng.random() >= pause
                ctx.set(dut.m_axi_arready, arready)
                if arready and ctx.get(dut.m_axi_arvalid):
                    address = ctx.get(dut.m_axi_araddr)
                    beats = ctx.get(dut.m_axi_arlen) + 1
                    assert ctx.get(dut.m_axi_arsize) == (beat_bytes - 1).bit_length()
                    assert ctx.get(dut.m_axi_arburst) == 1
                    # one ID, normal access, bufferable and modifiable, unprivileged secure data
                    assert (ctx.get(dut.m_axi_arid), ctx.get(dut.m_axi_arlock),
                            ctx.get(dut.m_axi_arcache), ctx.get(dut.m_axi_arprot)) == (0, 0, 3, 0)
                    log["bursts"].append((address, beats))
                    pending.append([cycle + rng.randint(*latency), address, beats])
                rvalid = bool(pending) and pending[0][0] <= cycle and rng.random() >= pause
                ctx.set(dut.m_axi_rvalid, rvalid)
                if rvalid:
                    _, address, beats = pending[0]
                    ctx.set(dut.m_axi_rdata,
                            int.from_bytes(memory[address:address + beat_bytes], "little"))
                    ctx.set(dut.m_axi_rlast, beats == 1)
                    ctx.set(dut.m_axi_rresp, 2 if served == bad_beat else 0)
                o_ready = rng.random() < ready
                ctx.set(dut.o.ready, o_ready)
                if o_ready and ctx.get(dut.o.valid):
                    words.append((ctx.get(dut.o.payload.bits), ctx.get(dut.o.payload.last)))
                if rvalid and ctx.get(dut.m_axi_rready):
                    served += 1
                    pending[0][1] += beat_bytes
                    pending[0][2] -= 1
                    if pending[0][2] == 0:
                        pending.pop(0)
                await ctx.tick()
            ctx.set(dut.o.ready, 0)
            ctx.set(dut.m_axi_rvalid, 0)
            await ctx.tick()
            assert not ctx.get(dut.busy) and not ctx.get(dut.m_axi_arvalid)
            assert not pending, "beats requested past the band"
            log["words"].append(words)
            log["errors"].append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return log


@pytest.mark.parametrize("shape, data_width, bands", [
    ((3, 7, 5), 64, [(0, 6), (2, 4)]),        # a row in part of one beat; whole map, then a band
    ((4, 9, 100), 64, [(3, 8), (0, 0)]),      # two beats a row
    ((2, 6, 224), 64, [(1, 3)]),              # four beats a row (a 224-wide map)
    ((5, 4, 40), 32, [(0, 3), (3, 3)]),       # a 32-bit bus, two beats a row
    ((2, 40, 64), 128, [(5, 38)]),            # one 128-bit beat a row, long bands: many bursts
    ((1, 3, 8), 64, [(2, 2), (0, 2)]),        # a band of one beat
    ((2, 100, 40), 64, [(3, 99)]),            # runs of 97 beats: six bursts a channel
])
def test_band_words_and_bursts(shape, data_width, bands):
    rng = np.random.default_rng(SEED + sum(shape))
    spikes = (rng.random(shape) < 0.3).astype(np.uint8)
    base = 0x0FC0 - 0x0FC0 % (data_width // 8)    # bursts run into a 4 KB boundary
    log = run_band(spikes, bands, data_width=data_width, base=base, seed=sum(shape))
    row_beats = -(-shape[2] // data_width)
    beat_bytes = data_width // 8
    requested = []
    for address, beats in log["bursts"]:
        assert 1 <= beats <= ROW_BURST
        first_beat = (address - base) // beat_bytes
        assert (address - base) % beat_bytes == 0
        # inside one aligned group of 16 beats (counted from address 0)
        assert (address // beat_bytes) // ROW_BURST == (address // beat_bytes + beats - 1) \
            // ROW_BURST
        requested += range(first_beat, first_beat + beats)
    expected_beats = []
    for (first, last), words in zip(bands, log["words"]):
        assert [w for w, _ in words] == band_words(spikes, first, last)
        assert [flag for _, flag in words] == [0] * (len(words) - 1) + [1]
        for c in range(shape[0]):
            start = (c * shape[1] + first) * row_beats
            expected_beats += range(start, start + (last - first + 1) * row_beats)
    assert requested == expected_beats      # every beat of each band, once, in order
    assert log["errors"] == [0] * len(bands)


def test_an_error_response_is_reported_and_cleared_by_the_next_start():
    spikes = (np.random.default_rng(SEED).random((2, 5, 30)) < 0.5).astype(np.uint8)
    log = run_band(spikes, [(0, 4), (0, 4)], bad_beat=3, seed=1)
    assert log["errors"] == [1, 0]
    assert [w for w, _ in log["words"][1]] == band_words(spikes, 0, 4)


def test_references_and_refusals():
    spikes = np.zeros((1, 2, 9), np.uint8)
    spikes[0, 1, 8] = 1
    image = map_image(spikes, 64)
    assert len(image) == 16 and image[8:] == (256).to_bytes(8, "little")
    assert band_words(spikes, 1, 1) == [256]
    assert band_config(3, 10, 100, 2, 5, data_width=64, base=64) == {
        "base": 64, "row_beats": 2, "first_beat": 4, "channel_beats": 20, "band_beats": 8,
        "channels": 3}
    with pytest.raises(ValueError, match="multiple"):
        band_config(1, 2, 9, 0, 1, base=4)
    with pytest.raises(ValueError, match="last"):
        band_config(1, 4, 9, 3, 2)
    with pytest.raises(ValueError, match="0/1"):
        map_image(np.full((1, 1, 2), 2))
    with pytest.raises(ValueError, match="data_width"):
        RowReader(word_bits=8, max_channels=1, max_beats=1, data_width=48)


@pytest.mark.verilator
def test_verilog_is_lint_clean_and_multiplies_nothing(tmp_path):
    """Verilator -Wall on the emitted Verilog (rtl_gen.lint's waivers), and no ``*`` in it."""
    import re

    from amaranth.back import verilog

    from rtl_gen.lint import lint

    dut = RowReader(word_bits=224, max_channels=64, max_beats=64 * 56 * 4)
    text = verilog.convert(dut, name="rowreader")
    source = tmp_path / "rowreader.v"
    source.write_text(text)
    result = lint([source], "rowreader")
    assert result.ok, result.messages
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    code = re.sub(r"\(\*.*?\*\)", "", code)          # attributes
    assert not re.search(r"[\w)\]]\s*\*\s*[\w(]", code)


def engine_from_memory(net, jobs, memory, *, seed=5):
    """Run ``jobs`` (``(engine LayerConfig, RowReader config)`` each, one after the other) on
    ``net``'s engine fed by a :class:`RowReader` from ``memory`` (bytes from address 0), under
    random read latency 1-64, 30 % AR and R pauses and a consumer taking 70 % of cycles; return
    each job's output beats."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    engine, harness = net.engine, net.harness
    reader = RowReader(word_bits=engine.word_bits, max_channels=engine.max_channels,
                       max_beats=engine.max_words)
    top = Module()
    top.submodules.harness = harness
    top.submodules.reader = reader
    wiring.connect(top, reader.o, engine.i)
    rng = random.Random(seed)
    received = []

    async def bench(ctx):
        pending = []
        for layer, band in jobs:
            ctx.set(harness.config, engine.config_value(layer))
            ctx.set(reader.config, band)
            while not ctx.get(engine.ready):
                await ctx.tick()
            ctx.set(reader.start, 1)
            await ctx.tick()
            ctx.set(reader.start, 0)
            beats = []
            for _ in range(20_000):
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
                    ctx.set(reader.m_axi_rdata, int.from_bytes(memory[at:at + 8], "little"))
                    ctx.set(reader.m_axi_rlast, pending[0][2] == 1)
                ready = rng.random() < 0.7
                ctx.set(engine.o.ready, ready)
                if ready and ctx.get(engine.o.valid):
                    beats.append(ctx.get(engine.o.payload))
                if rvalid and ctx.get(reader.m_axi_rready):
                    pending[0][1] += 8
                    pending[0][2] -= 1
                    if pending[0][2] == 0:
                        pending.pop(0)
                await ctx.tick()
                if len(beats) == layer.beats:
                    break
            ctx.set(engine.o.ready, 0)
            ctx.set(reader.m_axi_rvalid, 0)
            assert not pending and not ctx.get(reader.error)
            received.append(beats)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return received


def test_an_engine_computes_a_layer_from_a_map_in_external_memory():
    """The reader's words drive ``ProgEngine``'s input directly: a 3x3 conv (and a stride-2
    7x7) whose input map lies in a random AXI memory, read as one band of every row, gives
    every output beat ``==`` quant.intops.conv2d_spikes (``tests/test_progengine.py``'s
    check), under random memory latency and pauses and a random output consumer."""
    from sim.cases_addressing import spike_map
    from test_progengine import Network, check

    net = Network(3, 4, [(3, 6, 3, 1, 1, 6, 7), (2, 5, 7, 2, 3, 9, 8)])
    frames = [(n, spike_map(net.rng, (c.in_channels, c.height, c.width), 0.4))
              for n, (c, _, _) in enumerate(net.layers)]
    base = 0x2000
    jobs = []
    address = base
    for n, spikes in frames:
        cfg = net.layers[n][0]
        jobs.append((cfg, band_config(cfg.in_channels, cfg.height, cfg.width, 0,
                                      cfg.height - 1, base=address)))
        address += len(map_image(spikes))
    memory = bytes(base) + b"".join(map_image(s) for _, s in frames)
    received = engine_from_memory(net, jobs, memory)
    check(net, frames, received, "from external memory")
