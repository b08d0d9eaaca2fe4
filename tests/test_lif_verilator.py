"""LIF unit as Verilog on Verilator and Icarus through cocotb, against the integer reference."""

import pytest
from amaranth.back import verilog

from hw.lif import LIF
from sim import toolchain
from subsets import fast_few

DESIGN_POINTS = {
    "one_lane": dict(lanes=1, input_width=4, threshold=3),
    "four_lanes_per_lane_thresholds": dict(lanes=4, input_width=8, threshold=(1, 2, 100, 255)),
    "width_not_power_of_two_streamed": dict(lanes=3, input_width=7, membrane_width=9),
}


#: Icarus tests skip, saying how to install it, where iverilog is missing.
NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


@pytest.mark.verilator
@pytest.mark.parametrize("point", fast_few(sorted(DESIGN_POINTS), {
    "four_lanes_per_lane_thresholds", "width_not_power_of_two_streamed"}))
def test_lif_on_verilator(point):
    run_point(point)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("point", sorted(DESIGN_POINTS))
def test_lif_on_icarus(point):
    run_point(point, "icarus")


def run_point(point, simulator=None):
    """Build the design point and run sim.tb.lif on it (default simulator: $SIM or Verilator)."""
    params = DESIGN_POINTS[point]
    dut = LIF(**params)
    design = toolchain.build(verilog.convert(dut, name="lif", emit_src=False), "lif",
                             simulator=simulator)
    thresholds = "" if dut.thresholds is None else ",".join(map(str, dut.thresholds))
    toolchain.run(design, "sim.tb.lif", name=point, extra_env={
        "LIF_LANES": str(dut.lanes),
        "LIF_INPUT_WIDTH": str(dut.input_width),
        "LIF_MEMBRANE_WIDTH": str(dut.membrane_width),
        "LIF_THRESHOLDS": thresholds,
    })
