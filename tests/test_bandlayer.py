"""hw.bandlayer.BandLayer: a conv + LIF layer whose input and output spike maps lie in a random
AXI memory, computed band by band over several time steps, gives output maps ``==`` the integer
model's (``band_layer_reference``: quant.intops' conv2d_spikes and lif_step), with every other
byte of the memory untouched, and on-chip memories sized by the band, not the map.

The memory: read latency 1-64 cycles a burst, 30 % pauses on AR, R, AW, W and B, write data that
may lead its address (``test_rowwriter.WriteMemory``).
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.bandlayer import BandLayer, ConvLIF
from hw.progengine_config import layer_config
from hw.rowreader import map_image
from sim.cases_bandlayer import CASES, band_case
from test_rowwriter import WriteMemory


class ReadMemory:
    """A cycle-by-cycle AXI4 read slave: call :meth:`step` once a cycle before the tick."""

    def __init__(self, dut, memory, rng, *, latency=(1, 64), pause=0.3, bad_burst=None):
        self.dut, self.memory, self.rng = dut, memory, rng
        self.latency, self.pause = latency, pause
        self.pending = []
        self.bursts = 0            # bursts requested so far
        self.log = []              # (byte address, beats) of each burst requested
        self.bad_burst = bad_burst  # this burst (counted from 0) is answered SLVERR

    def step(self, ctx):
        dut, rng = self.dut, self.rng
        arready = rng.random() >= self.pause
        ctx.set(dut.m_axi_arready, arready)
        if arready and ctx.get(dut.m_axi_arvalid):
            assert ctx.get(dut.m_axi_araddr) % 8 == 0, "a read address not on a beat"
            self.pending.append([rng.randint(*self.latency), ctx.get(dut.m_axi_araddr),
                                 ctx.get(dut.m_axi_arlen) + 1, self.bursts == self.bad_burst])
            self.log.append((ctx.get(dut.m_axi_araddr), ctx.get(dut.m_axi_arlen) + 1))
            self.bursts += 1
        for entry in self.pending:
            entry[0] -= 1
        rvalid = bool(self.pending) and self.pending[0][0] <= 0 and rng.random() >= self.pause
        ctx.set(dut.m_axi_rvalid, rvalid)
        if rvalid:
            at = self.pending[0][1]
            ctx.set(dut.m_axi_rdata, int.from_bytes(self.memory[at:at + 8], "little"))
            ctx.set(dut.m_axi_rlast, self.pending[0][2] == 1)
            ctx.set(dut.m_axi_rresp, 2 if self.pending[0][3] else 0)
            if ctx.get(dut.m_axi_rready):
                self.pending[0][1] += 8
                self.pending[0][2] -= 1
                if self.pending[0][2] == 0:
                    self.pending.pop(0)


def drive(dut, memory: bytearray, starts, *, seed=0, stray=True, bad_read=None,
          bad_write=None):
    """Run ``dut`` (a band unit) once per entry of ``starts`` (``{port: value}``, set before
    its ``start`` pulse), one after another, on ``memory`` through a random AXI memory
    (:class:`ReadMemory`, ``test_rowwriter.WriteMemory``). With ``stray``, 40 cycles into each
    run ``start`` is pulsed again with the next band, which a busy unit must ignore. Returns
    each run's ``error`` flag; without ``bad_read`` / ``bad_write`` (the burst, counted from 0
    over the whole drive, answered SLVERR) every flag must be 0. Each run must end with nothing
    outstanding."""
    rng = random.Random(seed)
    reads = ReadMemory(dut, memory, rng, bad_burst=bad_read)
    writes = WriteMemory(dut, memory, rng, data_width=64, bad_burst=bad_write)
    errors = []

    async def bench(ctx):
        if hasattr(dut, "ready"):
            while not ctx.get(dut.ready):
                await ctx.tick()
        for number, values in enumerate(starts):
            for port, value in values.items():
                ctx.set(getattr(dut, port), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for cycle in range(200_000):
                if stray and cycle in (40, 41):
                    ctx.set(dut.start, cycle == 40)
                    ctx.set(dut.band, (values.get("band", 0) + cycle - 39) % len(dut.bands))
                reads.step(ctx)
                writes.step(ctx)
                await ctx.tick()
                if not ctx.get(dut.busy):
                    break
            else:
                raise AssertionError(f"start {number} ({values}) never finished")
            errors.append(ctx.get(dut.error))
            assert writes.idle and not reads.pending

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if bad_read is None and bad_write is None:
        assert not any(errors), f"error responses: {errors}"
    return errors


# make test-all runs these cases (and on Verilator and Icarus); make test covers the band
# datapath through test_bandchain.py's chain and test_ports_and_error_responses below
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_layer_band_by_band_over_axi_equals_the_integer_model(name):
    case = band_case(name)
    layer, lanes, steps = case.layer, case.layer.lanes, case.steps
    want = case.want
    assert 0.05 < want.mean() < 0.9, f"the layer should fire sometimes, not {want.mean():.2f}"
    dut = BandLayer(layer, case.weight, case.bias, case.thresholds, band_rows=case.band_rows)

    # On chip: one band, not the map.
    bits = dut.memory_bits
    if name == "3x3":   # two rows of 2 groups x 4 lanes x 9 columns; 8 thresholds
        assert bits["row assembler"] == 144
        assert bits["thresholds"] == 8 * (dut.lif.membrane_width + 1)
    whole_bank = layer.bank_words_needed * lanes * dut.accumulator_width
    assert bits["accumulator bank"] < whole_bank
    assert bits["membranes"] < layer.beats * lanes * dut.lif.membrane_width

    memory = bytearray(case.memory)
    sim_rng = random.Random(steps)
    reads = ReadMemory(dut, memory, sim_rng)
    writes = WriteMemory(dut, memory, sim_rng, data_width=64)

    async def bench(ctx):
        while not ctx.get(dut.ready):
            await ctx.tick()
        for band in range(len(dut.bands)):
            for t in range(steps):
                ctx.set(dut.band, band)
                ctx.set(dut.first, t == 0)
                ctx.set(dut.input_base, case.in_at[t])
                ctx.set(dut.output_base, case.out_at[t])
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for cycle in range(100_000):
                    # a start while busy, with another band and bases, is ignored
                    stray = cycle == 40
                    ctx.set(dut.start, stray)
                    if stray:
                        ctx.set(dut.band, (band + 1) % len(dut.bands))
                        ctx.set(dut.output_base, case.in_at[0])
                        ctx.set(dut.first, t != 0)
                    reads.step(ctx)
                    writes.step(ctx)
                    await ctx.tick()
                    if not ctx.get(dut.busy):
                        break
                else:
                    raise AssertionError(f"band {band}, step {t} never finished")
                assert not ctx.get(dut.error)
                assert writes.idle and not reads.pending

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    out_size = case.out_size
    for t in range(steps):
        got = bytes(memory[case.out_at[t]:case.out_at[t] + out_size])
        if got != map_image(want[t]):
            raise AssertionError(f"time step {t}: the output map in memory differs from the "
                                 f"integer model's")
    # nothing else written
    first, end = case.out_at[0], case.out_at[-1] + out_size
    assert memory[:first] == case.memory[:first] and memory[end:] == case.memory[end:]


def test_ports_and_error_responses():
    """The ports' widths; a read or a write answered with an error sets ``error`` (sticky until
    the next start, which clears it)."""
    case = band_case("3x3")
    dut = BandLayer(case.layer, case.weight, case.bias, case.thresholds,
                    band_rows=case.band_rows)
    widths = {name: len(getattr(dut, name)) for name in (
        "start", "busy", "ready", "error", "first", "band", "input_base", "m_axi_araddr",
        "m_axi_awaddr", "m_axi_wdata")}
    assert widths == {"start": 1, "busy": 1, "ready": 1, "error": 1, "first": 1, "band": 2,
                      "input_base": 32, "m_axi_araddr": 32, "m_axi_awaddr": 32,
                      "m_axi_wdata": 64}
    axi = BandLayer(case.layer, case.weight, case.bias, case.thresholds,
                    band_rows=case.band_rows, weights="axi")
    assert len(axi.load) == 1 and not hasattr(dut, "load")
    # the assembler's two rows of every output channel (2 groups x 4 lanes x 9 columns)
    assert dut.memory_bits["row assembler"] == 2 * 2 * 4 * 9 == 2 * len(dut.assembler.i.payload) \
        * case.layer.groups * case.layer.out_width
    for side in ("read", "write"):
        memory = bytearray(case.memory)
        rng = random.Random(1)
        reads = ReadMemory(dut, memory, rng, bad_burst=1 if side == "read" else None)
        writes = WriteMemory(dut, memory, rng, data_width=64,
                             bad_burst=1 if side == "write" else None)
        flags = []

        async def bench(ctx):
            while not ctx.get(dut.ready):
                await ctx.tick()
            for _ in range(2):
                ctx.set(dut.band, 0)
                ctx.set(dut.first, 1)
                ctx.set(dut.input_base, case.in_at[0])
                ctx.set(dut.output_base, case.out_at[0])
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for _ in range(100_000):
                    reads.step(ctx)
                    writes.step(ctx)
                    await ctx.tick()
                    if not ctx.get(dut.busy):
                        break
                flags.append(ctx.get(dut.error))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        assert flags == [1, 0], f"{side} error: {flags}"


def test_refusals():
    layer = layer_config(in_channels=2, out_channels=3, kernel=3, stride=1, padding=1,
                         height=6, width=6, lanes=4)
    weight = np.zeros((3, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="band_rows"):
        BandLayer(layer, weight, np.zeros(3, dtype=np.int64), [1, 1, 1], band_rows=7)
    with pytest.raises(ValueError, match="^weight shape"):   # one layer: no "layer 0: "
        BandLayer(layer, weight[:, :1], np.zeros(3, dtype=np.int64), [1, 1, 1], band_rows=2)
    spec = ConvLIF(layer, weight, np.zeros(3, dtype=np.int64), [1, 1, 1])
    with pytest.raises(ValueError, match="^layer 1: weight shape"):
        BandLayer([spec, spec._replace(weight=weight[:, :1])], band_rows=2)
    with pytest.raises(ValueError, match="thresholds"):
        BandLayer(layer, weight, np.zeros(3, dtype=np.int64), [1, 1], band_rows=2)


def test_row_assembler_words_last_flags_and_a_narrower_second_layer():
    """RowAssembler alone: beats in ``(y, x, g)`` order give one word a channel a row, in
    ``(y, c)`` order, ``last`` on a row's last channel, bits past the width zero, also for a
    narrower, fewer-channel layer after a wider one (stale bits of the first must not show),
    under a random source and a random consumer."""
    from hw.bandlayer import RowAssembler

    lanes, W, G = 4, 9, 3
    dut = RowAssembler(lanes=lanes, max_width=W, max_groups=G)
    rng = np.random.default_rng(5)
    layers = [(9, 3, 11, 3), (5, 2, 6, 2)]     # width, groups, channels, rows
    maps = [rng.integers(0, 2, size=(g * lanes, rows, w)) for w, g, _, rows in layers]
    got = []
    pick = random.Random(6)

    async def bench(ctx):
        for (w, g, channels, rows), spikes in zip(layers, maps):
            ctx.set(dut.config.width, w)
            ctx.set(dut.config.groups, g)
            ctx.set(dut.config.channels, channels)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            beats = [sum(int(spikes[gg * lanes + lane, y, x]) << lane for lane in range(lanes))
                     for y in range(rows) for x in range(w) for gg in range(g)]
            words = []
            sent = 0
            while len(words) < rows * channels:
                offer = sent < len(beats) and pick.random() < 0.8
                ctx.set(dut.i.valid, offer)
                if offer:
                    ctx.set(dut.i.payload, beats[sent])
                ready = pick.random() < 0.6
                ctx.set(dut.o.ready, ready)
                if offer and ctx.get(dut.i.ready):
                    sent += 1
                if ready and ctx.get(dut.o.valid):
                    words.append((ctx.get(dut.o.payload.bits), ctx.get(dut.o.payload.last)))
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            got.append(words)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (w, g, channels, rows), spikes, words in zip(layers, maps, got):
        want = [(sum(int(spikes[c, y, x]) << x for x in range(w)), int(c == channels - 1))
                for y in range(rows) for c in range(channels)]
        assert words == want


@pytest.mark.slow   # 5-10 s of Verilog conversion: make test-all
def test_band_units_verilog_is_lint_clean_and_multiplies_nothing(tmp_path):
    """The band layer's and the stream units' Verilog pass the project's lint, and no ``*``
    appears in them (every band constant is a table entry, every address a shift or a sum)."""
    import re

    from amaranth.back import verilog

    from hw.bandstream import BandStream, BandStreamLIF
    from rtl_gen.lint import lint
    from sim.cases_bandlayer import stream_case

    case, scase = band_case("3x3"), stream_case("3x3")
    units = {
        "band_layer": BandLayer(case.layer, case.weight, case.bias, case.thresholds,
                                band_rows=case.band_rows),
        "band_stream": BandStream(scase.layer, scase.weight, scase.bias, scase.shifts,
                                  stream_bits=scase.bits, band_rows=scase.band_rows),
        "band_stream_lif": BandStreamLIF(channels=6, height=9, width=8, lanes=4, stream_bits=12,
                                         thresholds=[9] * 6, band_rows=3),
    }
    for name, unit in units.items():
        text = verilog.convert(unit, name=name, emit_src=False)
        source = tmp_path / f"{name}.v"
        source.write_text(text)
        result = lint([source], name)
        assert result.ok, (name, result.messages)
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        code = re.sub(r"\(\*.*?\*\)", "", code)
        assert not re.search(r"[\w)\]]\s*\*\s*[\w(]", code), f"{name}: a multiplier"
