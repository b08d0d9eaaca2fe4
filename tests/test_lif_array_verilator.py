"""Memory-backed LIF array as Verilog on Verilator and Icarus through cocotb, against lif_step."""

import numpy as np
import pytest
from amaranth.back import verilog

from hw.lif_array import LIFArray
from sim import toolchain
from sim.cases_lif_array import lif_array_case
from subsets import fast_few

DESIGN_POINTS = {
    "one_lane_one_channel": dict(lanes=1, words=3, channels=1, input_width=4),
    "sixteen_lanes_layer": dict(lanes=16, words=40, channels=40, input_width=16,
                                membrane_width=17),
    "odd_widths": dict(lanes=5, words=7, channels=13, input_width=7, membrane_width=9),
}


#: Icarus tests skip, saying how to install it, where iverilog is missing.
NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


@pytest.mark.verilator
@pytest.mark.parametrize("point", fast_few(sorted(DESIGN_POINTS), {
    "one_lane_one_channel", "odd_widths"}))
def test_lif_array_on_verilator(point):
    run_point(point)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("point", sorted(DESIGN_POINTS))
def test_lif_array_on_icarus(point):
    run_point(point, "icarus")


def run_point(point, simulator=None):
    """Build the design point and run sim.tb.lif_array on it (default: $SIM or Verilator)."""
    params = DESIGN_POINTS[point]
    seed = 4242
    # The testbench draws the same case from the seed; its thresholds configure the design.
    case = lif_array_case(np.random.default_rng(seed), lanes=params["lanes"],
                          words=params["words"], channels=params["channels"],
                          input_width=params["input_width"], steps=4)
    dut = LIFArray(lanes=params["lanes"], words=params["words"],
                   input_width=params["input_width"],
                   membrane_width=params.get("membrane_width"), thresholds=case.thresholds)
    design = toolchain.build(verilog.convert(dut, name="lif_array", emit_src=False), "lif_array",
                             simulator=simulator)
    toolchain.run(design, "sim.tb.lif_array", name=point, extra_env={
        "LIFA_LANES": str(dut.lanes), "LIFA_WORDS": str(dut.words),
        "LIFA_CHANNELS": str(params["channels"]), "LIFA_INPUT_WIDTH": str(dut.input_width),
        "LIFA_MEMBRANE_WIDTH": str(dut.membrane_width), "LIFA_SEED": str(seed),
    })
