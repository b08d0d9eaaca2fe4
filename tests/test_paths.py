"""rtl_gen.paths: the logic-depth estimate used to rank paths before place and route."""

from __future__ import annotations

import json
import subprocess

import pytest

from rtl_gen import paths, synth
from rtl_gen.paths import ROUTE_NS, estimate_paths

TOP = {"top": "00000000000000000000000000000001"}


def _ff(d, q, ce=None):
    cell = {"type": "TRELLIS_FF",
            "port_directions": {"CLK": "input", "DI": "input", "Q": "output"},
            "connections": {"CLK": [2], "DI": [d], "Q": [q]}}
    if ce is not None:
        cell["port_directions"]["CE"] = "input"
        cell["connections"]["CE"] = [ce]
    return cell


def _lut(inputs, out):
    ports = dict(zip("ABCD", inputs))
    cell = {"type": "LUT4", "port_directions": {p: "input" for p in ports},
            "connections": {p: [b] for p, b in ports.items()}}
    cell["port_directions"]["Z"] = "output"
    cell["connections"]["Z"] = [out]
    return cell


def _netlist(cells, names=None, attributes=TOP):
    netnames = {name: {"bits": [bit]} for name, bit in (names or {}).items()}
    return {"modules": {"t": {"attributes": dict(attributes), "cells": cells,
                              "netnames": netnames}}}


def test_delay_follows_the_model_and_ranks_deepest_first():
    # r0 -> 3 LUTs -> r1 ; r0 -> 1 LUT -> r2
    cells = {"r0": _ff(40, 10), "a": _lut([10], 11), "b": _lut([11], 12), "c": _lut([12], 13),
             "r1": _ff(13, 20), "s": _lut([10], 14), "r2": _ff(14, 21)}
    # Net 10 fans out to two LUTs (and its FF's own input is not on it): the model adds
    # 0.05 ns per doubling of fan-out.
    route10 = ROUTE_NS + 0.05
    found = estimate_paths(_netlist(cells, {"q0": 10, "x": 11, "y": 12, "z": 13}))
    assert [p.endpoint for p in found[:2]] == ["TRELLIS_FF.DI r1", "TRELLIS_FF.DI r2"]
    deep, shallow = found[0], found[1]
    assert deep.delay_ns == round(0.52 + route10 + 3 * 0.24 + 2 * ROUTE_NS + ROUTE_NS + 0.1, 2)
    assert shallow.delay_ns == round(0.52 + route10 + 0.24 + ROUTE_NS + 0.1, 2)
    assert deep.levels == 3 and shallow.levels == 1
    assert [net for _, _, net in deep.nets] == ["q0", "x", "y", "z"]
    assert deep.nets[0][1] == "TRELLIS_FF.Q"


def test_block_ram_output_starts_late_and_enables_cost_more():
    ram = {"type": "DP16KD", "port_directions": {"CLKA": "input", "DOA0": "output",
                                                  "ADA0": "input"},
           "connections": {"CLKA": [2], "DOA0": [30], "ADA0": [40]}}
    cells = {"ram": ram, "l": _lut([30], 31), "r": _ff(45, 46, ce=31), "q": _ff(47, 40)}
    found = estimate_paths(_netlist(cells))
    assert found[0].endpoint == "TRELLIS_FF.CE r"
    assert found[0].delay_ns == round(5.83 + ROUTE_NS + 0.24 + ROUTE_NS + 0.2, 2)
    # The flip-flop q drives the RAM's address: a path ending at the RAM (setup 0.3 ns).
    into_ram = [p for p in found if p.endpoint == "DP16KD.ADA0 ram"]
    assert into_ram and into_ram[0].delay_ns == round(0.52 + ROUTE_NS + 0.3, 2)


def test_carry_chain_uses_dedicated_routing():
    def ccu(a, cin, s0, cout):
        conns = {"A0": [a], "S0": [s0], "COUT": [cout]}
        dirs = {"A0": "input", "S0": "output", "COUT": "output"}
        if cin is not None:
            conns["CIN"] = [cin]
            dirs["CIN"] = "input"
        return {"type": "CCU2C", "port_directions": dirs, "connections": conns}
    cells = {"r0": _ff(90, 50), "c0": ccu(50, None, 60, 61), "c1": ccu(91, 61, 62, 63),
             "c2": ccu(92, 63, 64, 65), "r1": _ff(64, 70)}
    found = estimate_paths(_netlist(cells))
    # Into the chain (0.45), carry to carry (0.07), carry to sum (0.40); no routing inside.
    assert found[0].endpoint == "TRELLIS_FF.DI r1"
    assert found[0].delay_ns == round(0.52 + ROUTE_NS + 0.45 + 0.07 + 0.40 + ROUTE_NS + 0.1, 2)


def test_combinational_loop_terminates():
    cells = {"r0": _ff(99, 10), "a": _lut([10, 12], 11), "b": _lut([11], 12), "r1": _ff(12, 13)}
    found = estimate_paths(_netlist(cells))
    assert found and found[0].endpoint == "TRELLIS_FF.DI r1"


def test_limit_and_threshold():
    cells = {"r0": _ff(40, 10), "a": _lut([10], 11), "r1": _ff(11, 20), "r2": _ff(10, 21)}
    netlist = _netlist(cells)
    assert len(estimate_paths(netlist, limit=None)) == 2
    assert len(estimate_paths(netlist, limit=1)) == 1
    slow = estimate_paths(netlist, limit=None, threshold_ns=2.0)
    assert [p.endpoint for p in slow] == ["TRELLIS_FF.DI r1"]


def test_bad_netlists_are_named():
    with pytest.raises(ValueError, match="not a Yosys JSON netlist"):
        estimate_paths({"cells": {}})
    with pytest.raises(ValueError, match="top module 'nope' is not in the netlist"):
        estimate_paths(_netlist({}), "nope")
    two = {"modules": {"a": {"attributes": TOP, "cells": {}},
                       "b": {"attributes": TOP, "cells": {}}}}
    with pytest.raises(ValueError, match="2 top modules"):
        estimate_paths(two)


def test_cli(tmp_path, capsys):
    cells = {"r0": _ff(40, 10), "a": _lut([10], 11), "r1": _ff(11, 20)}
    path = tmp_path / "n.json"
    path.write_text(json.dumps(_netlist(cells)))
    assert paths.main([str(path), "--limit", "1"]) == 0
    assert "TRELLIS_FF.DI r1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        paths.main([str(tmp_path / "missing.json")])
    assert exit_info.value.code == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_yosys_netlist_adder_is_deeper_than_a_gate(tmp_path):
    """On a real synth_ecp5 netlist: a registered 24-bit adder's top bit is the slowest path."""
    if synth.yosys_executable() is None:
        pytest.skip("YoWASP Yosys is not installed (the 'dev' extra installs it)")
    (tmp_path / "t.v").write_text(
        "module t(input clk, input [23:0] a, input [23:0] b, output reg [23:0] s,"
        " output reg g);\n"
        "  reg [23:0] ra, rb;\n"
        "  always @(posedge clk) begin ra <= a; rb <= b; s <= ra + rb; g <= ra[0] & rb[0]; end\n"
        "endmodule\n")
    subprocess.run([synth.yosys_executable(), "-q", "-p",
                    "read_verilog t.v; synth_ecp5 -top t -json t.json"],
                   cwd=tmp_path, check=True, capture_output=True)
    found = estimate_paths(json.loads((tmp_path / "t.json").read_text()), "t", limit=None)
    assert found[0].nets[-1][1].startswith("CCU2C")       # through the carry chain
    gate = [p for p in found if p.levels == 1]
    assert gate and found[0].delay_ns > gate[0].delay_ns
