"""Spike addressing unit as Verilog on Verilator and Icarus through cocotb, against its model."""

import pytest
from amaranth.back import verilog
from amaranth.hdl import unsigned

from hw.addressing import SpikeAddressing
from sim import toolchain
from subsets import fast_few

DESIGN_POINTS = {
    "one_bit_words": dict(width=1, ports=1, max_words=40),
    "width_64_one_port": dict(width=64, ports=1, max_words=16),
    "width_56_four_ports_tagged": dict(width=56, ports=4, max_words=12, tag_bits=9),
    "width_16_registered_tagged": dict(width=16, ports=1, max_words=5, tag_bits=16,
                                       registered=True),
    "width_13_three_ports_registered": dict(width=13, ports=3, max_words=7, registered=True),
}


#: Icarus tests skip, saying how to install it, where iverilog is missing.
NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


@pytest.mark.verilator
@pytest.mark.parametrize("point", fast_few(sorted(DESIGN_POINTS), {
    "width_56_four_ports_tagged", "width_13_three_ports_registered"}))
def test_addressing_on_verilator(point):
    run_point(point)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("point", sorted(DESIGN_POINTS))
def test_addressing_on_icarus(point):
    run_point(point, "icarus")


def run_point(point, simulator=None):
    """Build the design point and run sim.tb.addressing on it (default: $SIM or Verilator)."""
    params = dict(DESIGN_POINTS[point])
    tag_bits = params.pop("tag_bits", 0)
    dut = SpikeAddressing(**params, tag_shape=unsigned(tag_bits) if tag_bits else None)
    design = toolchain.build(verilog.convert(dut, name="addressing", emit_src=False),
                             "addressing", simulator=simulator)
    toolchain.run(design, "sim.tb.addressing", name=point, extra_env={
        "ADDR_WIDTH": str(dut.width),
        "ADDR_PORTS": str(dut.ports),
        "ADDR_MAX_WORDS": str(dut.max_words),
        "ADDR_TAG_BITS": str(tag_bits),
        "ADDR_SEED": "2024",
    })
