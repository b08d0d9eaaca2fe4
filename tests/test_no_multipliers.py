"""Nothing multiplies in hardware: no ``$mul`` cell in any unit's netlist, the stem's included.

The spike-driven units only add. The stem (the one layer on multi-bit pixel codes) computes its
products by shift and add over the code's bits (``hw/stem.py``), so it needs no multiplier either:
the whole network's netlist holds none, and synthesis maps no DSP block.

Amaranth's RTLIL names every ``*`` it elaborates as a ``$mul`` cell, so reading the netlist text is
an exact, fast check (synthesis would map such a cell, even one with a constant factor, onto a DSP
block). The control case proves the check sees a multiplier when there is one.
"""

import re

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal

from hw.accumulator import SynapseEngine
from hw.addressing import SpikeAddressing
from hw.depthwise import DepthwiseEngine
from hw.lif import LIF
from hw.lif_array import LIFArray
from hw.params import times
from hw.sdsa import SDSA
from hw.stem import StemConv

MUL = re.compile(r"^\s*cell \$mul\b", re.MULTILINE)


def multipliers(component) -> int:
    return len(MUL.findall(rtlil.convert(component, name="top")))


def random_weight(shape, seed=0):
    return np.random.default_rng(seed).integers(-8, 8, shape)


UNITS = {
    "conv3x3_stride2": lambda: SynapseEngine(kind="conv", weight=random_weight((6, 3, 3, 3)),
                                             bias=random_weight(6), lanes=4, height=14, width=14,
                                             stride=2, padding=1),
    "conv7x7": lambda: SynapseEngine(kind="conv", weight=random_weight((5, 3, 7, 7)), lanes=3,
                                     height=9, width=11, padding=3),
    "linear": lambda: SynapseEngine(kind="linear", weight=random_weight((7, 5)), lanes=4,
                                    height=13),
    "depthwise": lambda: SynapseEngine(kind="depthwise", weight=random_weight((6, 1, 3, 3)),
                                       lanes=4, height=7, width=7, padding=1),
    "depthwise_taps": lambda: DepthwiseEngine(random_weight((6, 7, 7)), random_weight(6),
                                              lanes=16, max_height=9, max_width=11),
    "lif": lambda: LIF(lanes=3, input_width=9),
    "lif_array": lambda: LIFArray(lanes=4, words=6, input_width=9,
                                  thresholds=list(range(1, 25))),
    "addressing": lambda: SpikeAddressing(width=12, ports=3, max_words=20),
    "sdsa3": lambda: SDSA(variant=3, tokens=7, head_width=13, heads=3, lanes=5),
    "sdsa1": lambda: SDSA(variant=1, tokens=7, head_width=13, heads=3),
}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_no_multiplier_cell(unit):
    assert multipliers(UNITS[unit]()) == 0


def test_check_sees_a_multiplier():
    m = Module()
    a, b, product = Signal(8), Signal(8), Signal(16)
    m.d.comb += product.eq(a * b)
    assert MUL.search(rtlil.convert(m, ports=[a, b, product]))


def test_stem_has_no_multiplier_cell():
    """The stem's products are shift-and-add trees over the pixel code's bits."""
    stem = StemConv(weight=random_weight((4, 1, 3, 3)), bias=random_weight(4), lanes=2,
                    height=6, width=6, stride=2, padding=1, pixel_bits=8)
    assert multipliers(stem) == 0


@pytest.mark.parametrize("constant", [0, 1, 2, 3, 7, 14, 49, 255])
def test_times_is_exact(constant):
    from amaranth.sim import Simulator

    m = Module()
    value, product = Signal(8), Signal(20)
    m.d.comb += product.eq(times(value, constant))
    seen = []

    async def bench(ctx):
        for v in (0, 1, 2, 5, 127, 128, 255):
            ctx.set(value, v)
            seen.append((v, ctx.get(product)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(v, v * constant) for v, _ in seen]


def modules_multiplying(rtlil_text: str) -> set:
    """Return the names of the RTLIL modules that hold a ``$mul`` cell."""
    found, module = set(), None
    for line in rtlil_text.splitlines():
        if line.startswith("module "):
            module = line.split()[1]
        elif MUL.match(line):
            found.add(module)
    return found


def test_shared_network_has_no_multiplier_cell():
    """The time-multiplexed demo network (the FPGA design): no $mul cell anywhere."""
    from hw.shared import SharedNetwork
    from sim.e2e import demo_model, quantized

    model, _ = demo_model(1)
    text = rtlil.convert(SharedNetwork(quantized(model), lanes=16, weights="external"),
                         name="shared_network")
    modules_with_mul = modules_multiplying(text)
    assert modules_with_mul == set(), modules_with_mul
