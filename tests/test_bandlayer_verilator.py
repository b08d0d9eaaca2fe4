"""The band units' Verilog on Verilator and Icarus through cocotb, on cocotbext-axi's AXI4 RAM
with random latency (1-64 cycles a burst) and 20 % pauses on every channel: the band layer's
output maps ``==`` the integer model's (``sim/tb/bandlayer.py``), the residual stream begun and
added into ``==`` the reference (``sim/tb/bandstream.py``), the stream LIF's spike maps ``==``
lif_step's (``sim/tb/bandstreamlif.py``), a chain of band layers run from one start (its
weights on chip or loaded over AXI4) ``==`` the chained model (``sim/tb/bandchain.py``), the rest
of the memory untouched."""

import pytest
from amaranth.back import verilog

from hw.bandlayer import BandLayer
from hw.bandstream import BandStream
from sim import toolchain
from sim.cases_bandlayer import CASES, STREAM_CASES, band_case, stream_case

NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)


def run_case(name, simulator=None, *, latency="1-64", pause=0.2, result=None):
    case = band_case(name)
    dut = BandLayer(case.layer, case.weight, case.bias, case.thresholds,
                    band_rows=case.band_rows)
    design = toolchain.build(verilog.convert(dut, name="band_layer", emit_src=False),
                             "band_layer", simulator=simulator)
    env = {"BAND_CASE": name, "BAND_LATENCY": latency, "BAND_PAUSE": str(pause),
           "BAND_SEED": "3"}
    if result is not None:
        env["BAND_RESULT"] = str(result)
    toolchain.run(design, "sim.tb.bandlayer", name=f"{name}-{latency}-{pause}", extra_env=env)


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_band_layer_on_verilator(name):
    run_case(name)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("name", ["3x3", "7x7s2"])
def test_band_layer_on_icarus(name):
    run_case(name, "icarus")


def run_stream_case(name, simulator=None):
    case = stream_case(name)
    dut = BandStream(case.layer, case.weight, case.bias, case.shifts, stream_bits=case.bits,
                     band_rows=case.band_rows)
    design = toolchain.build(verilog.convert(dut, name="band_stream", emit_src=False),
                             "band_stream", simulator=simulator)
    toolchain.run(design, "sim.tb.bandstream", name=f"stream-{name}", extra_env={
        "BAND_CASE": name, "BAND_LATENCY": "1-64", "BAND_PAUSE": "0.2", "BAND_SEED": "5"})


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STREAM_CASES))
def test_band_stream_on_verilator(name):
    run_stream_case(name)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("name", sorted(STREAM_CASES))
def test_band_stream_on_icarus(name):
    run_stream_case(name, "icarus")


def run_stream_lif_case(name, simulator=None):
    from hw.bandstream import BandStreamLIF
    from sim.cases_bandlayer import stream_lif_case

    case = stream_lif_case(name)
    dut = BandStreamLIF(channels=case.channels, height=case.height, width=case.width,
                        lanes=case.lanes, stream_bits=case.bits, thresholds=case.thresholds,
                        band_rows=case.band_rows)
    design = toolchain.build(verilog.convert(dut, name="band_stream_lif", emit_src=False),
                             "band_stream_lif", simulator=simulator)
    toolchain.run(design, "sim.tb.bandstreamlif", name=f"lif-{name}", extra_env={
        "BAND_CASE": name, "BAND_LATENCY": "1-64", "BAND_PAUSE": "0.2", "BAND_SEED": "7"})


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name", ["G3", "wide"])
def test_band_stream_lif_on_verilator(name):
    run_stream_lif_case(name)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("name", ["G3", "wide"])
def test_band_stream_lif_on_icarus(name):
    run_stream_lif_case(name, "icarus")


def run_chain_case(name, weights, simulator=None, *, latency="1-64", pause=0.2, result=None):
    from hw.bandchain import BandChain
    from sim.cases_bandlayer import chain_case

    case = chain_case(name)
    dut = BandChain(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                    weights=weights, weight_words=case.weight_words if weights == "axi" else None)
    design = toolchain.build(verilog.convert(dut, name="band_chain", emit_src=False),
                             "band_chain", simulator=simulator)
    env = {"BAND_CASE": name, "BAND_WEIGHTS": weights, "BAND_LATENCY": latency,
           "BAND_PAUSE": str(pause), "BAND_SEED": "9"}
    if result is not None:
        env["BAND_RESULT"] = str(result)
    toolchain.run(design, "sim.tb.bandchain", name=f"chain-{name}-{weights}-{latency}-{pause}",
                  extra_env=env)


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name, weights", [("four", "rom"), ("four", "axi"), ("wide", "rom"),
                                           ("wide", "axi"), ("split", "axi")])
def test_band_chain_on_verilator(name, weights):
    run_chain_case(name, weights)


@pytest.mark.icarus
@pytest.mark.slow
@NEEDS_ICARUS
@pytest.mark.parametrize("name", ["four", "wide", "split"])
def test_band_chain_on_icarus(name):
    run_chain_case(name, "axi", "icarus")


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("name, weights, latency", [("split", "axi", 30), ("wide", "rom", 7)])
def test_band_chain_cycles_on_verilator_are_the_models(tmp_path, name, weights, latency):
    """With a fixed read latency and no pauses, the Verilog's cycles from start to done ==
    ``sim.perf.band_chain_cycles`` for cocotbext-axi's RAM (reads ``latency +
    AXI_MEMORY_OFFSET`` after the AR handshake, B ``AXI_WRITE_OFFSET`` after the last W)."""
    import json

    import numpy as np

    from hw.bandchain import BandChain
    from sim.cases_bandlayer import chain_case
    from sim.perf import AXI_MEMORY_OFFSET, AXI_WRITE_OFFSET, band_chain_cycles

    result = tmp_path / "result.json"
    run_chain_case(name, weights, latency=str(latency), pause=0, result=result)
    case = chain_case(name)
    dut = BandChain(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                    weights=weights, weight_words=case.weight_words if weights == "axi" else None)
    model = band_chain_cycles(dut, np.asarray(case.inputs), steps=case.steps,
                              read_delay=latency + AXI_MEMORY_OFFSET,
                              write_delay=AXI_WRITE_OFFSET)
    assert json.loads(result.read_text())["cycles"] == model["cycles"]
