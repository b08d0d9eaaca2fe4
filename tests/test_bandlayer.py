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

from hw.bandlayer import BandLayer, band_layer_reference
from hw.progengine_config import layer_config
from hw.rowreader import map_image
from quant.intops import conv2d_spikes
from sim.cases_accumulator import random_layer
from sim.cases_addressing import spike_map
from test_rowwriter import WriteMemory


class ReadMemory:
    """A cycle-by-cycle AXI4 read slave: call :meth:`step` once a cycle before the tick."""

    def __init__(self, dut, memory, rng, *, latency=(1, 64), pause=0.3):
        self.dut, self.memory, self.rng = dut, memory, rng
        self.latency, self.pause = latency, pause
        self.pending = []

    def step(self, ctx):
        dut, rng = self.dut, self.rng
        arready = rng.random() >= self.pause
        ctx.set(dut.m_axi_arready, arready)
        if arready and ctx.get(dut.m_axi_arvalid):
            self.pending.append([rng.randint(*self.latency), ctx.get(dut.m_axi_araddr),
                                 ctx.get(dut.m_axi_arlen) + 1])
        for entry in self.pending:
            entry[0] -= 1
        rvalid = bool(self.pending) and self.pending[0][0] <= 0 and rng.random() >= self.pause
        ctx.set(dut.m_axi_rvalid, rvalid)
        if rvalid:
            at = self.pending[0][1]
            ctx.set(dut.m_axi_rdata, int.from_bytes(self.memory[at:at + 8], "little"))
            ctx.set(dut.m_axi_rlast, self.pending[0][2] == 1)
            if ctx.get(dut.m_axi_rready):
                self.pending[0][1] += 8
                self.pending[0][2] -= 1
                if self.pending[0][2] == 0:
                    self.pending.pop(0)


def thresholds_for(rng, inputs, weight, bias, stride, padding, rate=0.35):
    """Per-channel thresholds near the (1 - rate) quantile of the first step's inputs, so the
    layer fires at about ``rate`` (any threshold is a valid input; these make the test see
    both spikes and silences)."""
    x = conv2d_spikes(inputs[0], weight, bias, stride=stride, padding=padding)
    q = np.quantile(x.reshape(x.shape[0], -1), 1 - rate, axis=1)
    return [max(1, int(v)) + int(rng.integers(0, 3)) for v in q]


# (cin, cout, kernel, stride, padding, height, width), lanes, band_rows, T
CASES = [
    ((5, 6, 3, 1, 1, 10, 9), 4, 3, 3),     # 3x3: halos of one row, 4 bands, G = 2
    ((3, 5, 7, 2, 3, 12, 11), 4, 2, 2),    # 7x7 stride 2: halos of three rows, padding 3
    ((4, 8, 1, 1, 0, 7, 70), 8, 4, 1),     # 1x1, rows of two 64-bit beats
]


@pytest.mark.parametrize("spec,lanes,band_rows,steps", CASES)
def test_a_layer_band_by_band_over_axi_equals_the_integer_model(spec, lanes, band_rows, steps):
    cin, cout, kernel, stride, padding, height, width = spec
    rng = np.random.default_rng(sum(spec) + steps)
    layer = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                         padding=padding, height=height, width=width, lanes=lanes)
    weight, bias = random_layer(rng, "conv", cin=cin, cout=cout, kernel=kernel)
    inputs = np.stack([spike_map(rng, (cin, height, width), 0.3) for _ in range(steps)])
    thresholds = thresholds_for(rng, inputs, weight, bias, stride, padding)
    want = band_layer_reference(inputs, weight, bias, thresholds, stride=stride,
                                padding=padding)
    assert 0.05 < want.mean() < 0.9, f"the layer should fire sometimes, not {want.mean():.2f}"
    dut = BandLayer(layer, weight, bias, thresholds, band_rows=band_rows)

    # On chip: one band, not the map.
    bits = dut.memory_bits
    whole_bank = layer.bank_words_needed * lanes * dut.accumulator_width
    assert bits["accumulator bank"] < whole_bank
    assert bits["membranes"] < layer.beats * lanes * dut.lif.membrane_width

    in_size = len(map_image(inputs[0]))
    out_size = len(map_image(want[0]))
    in_at = [0x1000 + t * in_size for t in range(steps)]
    out_at = [0x1000 + steps * in_size + 0x40 + t * out_size for t in range(steps)]
    garbage = random.Random(7)
    memory = bytearray(garbage.getrandbits(8) for _ in range(out_at[-1] + out_size + 0x100))
    for t in range(steps):
        memory[in_at[t]:in_at[t] + in_size] = map_image(inputs[t])
    before = bytes(memory)
    sim_rng = random.Random(sum(spec))
    reads = ReadMemory(dut, memory, sim_rng)
    writes = WriteMemory(dut, memory, sim_rng, data_width=64)
    cycles = {"n": 0}

    async def bench(ctx):
        while not ctx.get(dut.ready):
            await ctx.tick()
        for band in range(len(dut.bands)):
            for t in range(steps):
                ctx.set(dut.band, band)
                ctx.set(dut.first, t == 0)
                ctx.set(dut.input_base, in_at[t])
                ctx.set(dut.output_base, out_at[t])
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                for _ in range(100_000):
                    reads.step(ctx)
                    writes.step(ctx)
                    await ctx.tick()
                    cycles["n"] += 1
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
    for t in range(steps):
        got = bytes(memory[out_at[t]:out_at[t] + out_size])
        if got != map_image(want[t]):
            raise AssertionError(f"time step {t}: the output map in memory differs from the "
                                 f"integer model's")
    # nothing else written
    assert memory[:out_at[0]] == before[:out_at[0]]
    assert memory[out_at[-1] + out_size:] == before[out_at[-1] + out_size:]


def test_refusals():
    layer = layer_config(in_channels=2, out_channels=3, kernel=3, stride=1, padding=1,
                         height=6, width=6, lanes=4)
    weight = np.zeros((3, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="band_rows"):
        BandLayer(layer, weight, np.zeros(3, dtype=np.int64), [1, 1, 1], band_rows=7)
    with pytest.raises(ValueError, match="weight shape"):
        BandLayer(layer, weight[:, :1], np.zeros(3, dtype=np.int64), [1, 1, 1], band_rows=2)
    with pytest.raises(ValueError, match="thresholds"):
        BandLayer(layer, weight, np.zeros(3, dtype=np.int64), [1, 1], band_rows=2)
