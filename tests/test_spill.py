"""sim.spill: the first-order model of activations and weights over AXI4 (not built).

The band arithmetic is checked on cases counted by hand; the step traffic against quantities
computed here from the plan (input rows, stream sizes) and from ``hw.weightfetch.WeightRing``;
the membranes' traffic against the time steps; bad arguments are one error line.
"""

import json

import pytest
import torch

from hw.params import ceil_div
from hw.program import SinkKind, StepKind
from hw.weightfetch import WeightRing
from sim.project import make_case, sizing_plan
from sim.spill import band_rows, input_rows_read, main, spill

torch.set_num_threads(1)


def test_band_rows_fill_the_bank():
    assert band_rows(100, 10, 3, 1) == 6      # 16 words a row (8 columns x 2 groups)
    assert band_rows(1000, 10, 3, 1) == 10    # never more than the map
    assert band_rows(10, 10, 3, 1) == 0       # not one row: refused by spill()


@pytest.mark.parametrize("height, out, kernel, stride, padding, rows, expected", [
    (8, 8, 3, 1, 1, 8, 8),     # one band: every row once
    (8, 8, 3, 1, 1, 4, 10),    # rows 0-4, then 3-7: two halo rows again
    (8, 8, 3, 1, 1, 1, 22),    # 2 + 3 x 6 + 2
    (8, 4, 3, 2, 1, 2, 9),     # stride 2: rows 0-3, then 3-7
    (8, 8, 1, 1, 0, 3, 8),     # 1x1: no halo
    (5, 5, 7, 1, 3, 5, 5),     # a 7x7 whose taps reach past the map on both sides
])
def test_input_rows_read(height, out, kernel, stride, padding, rows, expected):
    assert input_rows_read(height, out, kernel, stride, padding, rows) == expected


@pytest.fixture(scope="module")
def demo():
    case = make_case(variant_name="demo", T=2)
    return sizing_plan(case.net, 16), case.trace


def test_traffic_of_each_step(demo):
    plan, trace = demo
    mem = plan.memory
    big = spill(plan, trace, bank_kbit=4096)
    ring = WeightRing(plan, data_width=64)
    per_step = {layer.name: ring.layer_size(layer) for layer in ring.layers}
    assert sum(r["weight_bytes"] for r in big["steps"]) == plan.T * ring.bytes_per_step
    for row in big["steps"]:
        step = plan.steps[row["step"]]
        assert row["spill_cycles"] == max(row["cycles"], row["beats"]) + 30
        assert row["beats"] == ceil_div(row["read_bytes"] + row["write_bytes"]
                                        + row["weight_bytes"], 8)
        if step.kind is not StepKind.LAYER:
            continue
        c = mem.layers[step.layer].config
        assert row["weight_bytes"] == per_step[step.layer]
        assert row["band_rows"] == c.out_height          # the whole map in one band
        rows = input_rows_read(c.height, c.out_height, c.kernel, c.stride, c.padding,
                               c.out_height)
        read = c.in_channels * rows * ceil_div(c.width, 8)
        if step.sink.kind is SinkKind.ADD:
            place = mem.streams[step.sink.target]
            size = ceil_div(c.out_channels * c.out_height ** 2 * place.bits, 8)
            assert row["read_bytes"] == read + size and row["write_bytes"] == size
        elif step.sink.kind is SinkKind.LIF and row["t"] == 0:
            spikes = ceil_div(c.out_channels * c.out_height * c.out_width, 8)
            membranes = ceil_div(spikes * 8 * mem.lif_bits, 8)   # written for t = 1
            assert row["read_bytes"] == read and row["write_bytes"] == spikes + membranes
    assert big["total"]["ratio"] >= 1


def test_membranes_cross_time_steps_and_a_small_bank_rereads_halos(demo):
    plan, trace = demo
    big = spill(plan, trace, bank_kbit=4096)
    small = spill(plan, trace, bank_kbit=16)
    lif_rows = {}
    for row in big["steps"]:
        step = plan.steps[row["step"]]
        if step.kind is StepKind.LAYER and step.sink.kind is SinkKind.LIF:
            lif_rows.setdefault(row["step"], {})[row["t"]] = row
    for rows in lif_rows.values():
        # t = 0 writes its membranes for t = 1, t = 1 reads them and writes none (T = 2)
        assert rows[0]["read_bytes"] < rows[1]["read_bytes"]
        assert rows[0]["write_bytes"] > rows[1]["write_bytes"]
    assert small["total"]["write_bytes"] == big["total"]["write_bytes"]
    assert small["total"]["read_bytes"] > big["total"]["read_bytes"]
    assert small["total"]["banded_layers"] > 0 == big["total"]["banded_layers"]
    assert small["total"]["halo_max"] > 1


def test_a_bank_without_room_for_one_row_is_refused(demo):
    plan, trace = demo
    with pytest.raises(ValueError, match="one output row takes"):
        spill(plan, trace, bank_kbit=1)
    with pytest.raises(ValueError, match="holds no bank word"):
        spill(plan, trace, bank_kbit=0.1)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["--variant", "demo", "--lanes", "16", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and "bus-bound" in text
    doc = json.loads(out.read_text())
    assert doc["total"]["spill_cycles"] == sum(r["spill_cycles"] for r in doc["steps"])


@pytest.mark.parametrize("argv, words", [
    (["--bus", "48"], "--bus 48"),
    (["--latency", "0"], "--latency 0"),
    (["--bank-kbit", "0"], "--bank-kbit 0"),
    (["--variant", "demo", "--bank-kbit", "1"], "one output row takes"),
    (["--checkpoint", "no/such.pth"], "no/such.pth"),
    (["--variant", "nosuch"], "nosuch"),
    (["--variant", "demo_dvs"], "event models"),
    (["--bogus"], "--bogus"),
    (["--lanes", "x"], "--lanes"),
])
def test_bad_arguments_are_one_error_line(capsys, argv, words):
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
