"""Synapse engine as Verilog on Verilator and Icarus through cocotb, against quant.intops."""

import numpy as np
import pytest
from amaranth.back import verilog

from hw.accumulator import SynapseEngine
from sim import toolchain
from sim.cases_accumulator import random_layer, spike_shape, write_engine_case
from sim.cases_addressing import FIRING_RATES, spike_map
from subsets import fast_few

#: name: (layer parameters, engine parameters, patterns, slow)
DESIGN_POINTS = {
    "linear_odd_sizes": (dict(kind="linear", cin=37, cout=19),
                         dict(lanes=4, height=7), True, False),
    "linear_one_lane_one_channel": (dict(kind="linear", cin=5, cout=1),
                                    dict(lanes=1, height=3), True, False),
    "conv3x3_stride2": (dict(kind="conv", cin=6, cout=10, kernel=3),
                        dict(lanes=4, height=9, width=11, stride=2, padding=1), True, False),
    "depthwise7x7": (dict(kind="depthwise", cin=6, cout=6, kernel=7),
                     dict(lanes=4, height=8, width=7, padding=3), False, False),
    "conv3x3_stride1_realistic": (dict(kind="conv", cin=32, cout=32, kernel=3),
                                  dict(lanes=8, height=14, width=14, padding=1), False, True),
    "conv7x7_fused_sepconv": (dict(kind="conv", cin=16, cout=16, kernel=7),
                              dict(lanes=8, height=14, width=14, padding=3), False, True),
    "linear_mlp_realistic": (dict(kind="linear", cin=64, cout=128),
                             dict(lanes=16, height=49), False, True),
}


#: Icarus tests skip, saying how to install it, where iverilog is missing.
NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


def run_point(name, tmp_path, seed=2024, simulator=None):
    layer, params, patterns, _ = DESIGN_POINTS[name]
    rng = np.random.default_rng(seed)
    weight, bias = random_layer(rng, **layer)
    dut = SynapseEngine(kind=layer["kind"], weight=weight, bias=bias, **params)
    frames = [spike_map(rng, spike_shape(dut), rate) for rate in FIRING_RATES]
    case = tmp_path / f"{name}.npz"
    write_engine_case(case, name=name, seed=seed, kind=layer["kind"], weight=weight, bias=bias,
                      frames=frames, rates=FIRING_RATES, **params)
    design = toolchain.build(verilog.convert(dut, name="synapse", emit_src=False), "synapse",
                             simulator=simulator)
    toolchain.run(design, "sim.tb.accumulator", name=name, extra_env={
        "SYN_CASE": str(case), "SYN_PATTERNS": "1" if patterns else "0"})


@pytest.mark.verilator
@pytest.mark.parametrize("point", fast_few(sorted(k for k, v in DESIGN_POINTS.items() if not v[3]),
                                           {"conv3x3_stride2", "linear_odd_sizes"}))
def test_engine_on_verilator(point, tmp_path):
    run_point(point, tmp_path)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("point", sorted(k for k, v in DESIGN_POINTS.items() if not v[3]))
def test_engine_on_icarus(point, tmp_path):
    run_point(point, tmp_path, simulator="icarus")


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("point", sorted(k for k, v in DESIGN_POINTS.items() if v[3]))
def test_engine_on_verilator_realistic(point, tmp_path):
    run_point(point, tmp_path)
