"""Logic-depth timing estimate of an ECP5 netlist, in seconds instead of a place-and-route run.

nextpnr takes 15-60 minutes on the whole shared network; this module reads the JSON netlist that
Yosys' ``synth_ecp5`` writes and ranks every register-to-register path by an estimated delay, so
that many deep paths can be found and fixed per place-and-route run. It is an estimate of logic
depth, not a timing signoff: real routing delays depend on placement and congestion.

Delay model (ECP5 speed grade 6; the numbers are nextpnr's, read from its critical-path reports
on this project's designs):

* start: flip-flop clock-to-Q 0.52 ns; block RAM (``DP16KD``, no output register) 5.83 ns;
  multiplier (``MULT18X18D``) 3.0 ns;
* each net: ``ROUTE_NS`` plus a little for fan-out (routing averaged 0.8-1.0 ns per hop on the
  critical paths of a design filling 80 % of an ECP5-25k);
* LUT4: 0.24 ns; carry cell (``CCU2C``): 0.45 ns from an input to the carry out, 0.44 ns to a sum,
  0.07 ns carry-in to carry-out (dedicated routing), 0.40 ns carry-in to a sum;
* distributed RAM (``TRELLIS_DPR16X4``) read: 0.5 ns from the read address;
* end: setup 0.1 ns at a flip-flop's data input, 0.2 ns at its clock enable, 0.42 ns at its
  local set/reset, 0.3 ns at a block RAM's inputs.

On the shared network's engine the estimate of the path nextpnr reported (13.52 ns) was 13.70 ns.

Command line: ``python -m rtl_gen.paths NETLIST.json [--top harness] [--limit 20]
[--threshold NS]``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path as FilePath

from golden.cliargs import Parser

__all__ = ["TimingPath", "estimate_paths", "main", "ROUTE_NS"]

ROUTE_NS = 0.75
_FANOUT_NS = 0.05              # per doubling of a net's fan-out
_LUT_NS = 0.24
_START_NS = {"TRELLIS_FF": 0.52, "DP16KD": 5.83, "MULT18X18D": 3.0}
_SETUP_NS = {"LSR": 0.42, "CE": 0.2}
_SEQUENTIAL = set(_START_NS)
_CLOCKS = {"CLK", "WCK", "CLKA", "CLKB"}


@dataclass(frozen=True)
class TimingPath:
    """One register-to-register path: its estimated delay and the nets it runs through."""

    delay_ns: float
    endpoint: str                            # "<cell type>.<port> <cell name>"
    nets: tuple[tuple[float, str, str], ...]  # (arrival ns, driver "<type>.<port>", net name)

    @property
    def levels(self) -> int:
        """Cells the path passes through between its start and end registers."""
        return len(self.nets) - 1

    def format(self) -> str:
        lines = [f"{self.delay_ns:6.2f} ns  {self.levels:2d} levels  -> {self.endpoint}"]
        lines += [f"          {arrival:6.2f}  {driver:18s} {net}" for arrival, driver, net
                  in self.nets]
        return "\n".join(lines)


class _Graph:
    def __init__(self, module: dict):
        self.cells = module.get("cells", {})
        self.names: dict[int, str] = {}
        for name, net in module.get("netnames", {}).items():
            for bit in net["bits"]:
                if isinstance(bit, int):
                    old = self.names.get(bit)
                    if old is None or (old.startswith("$") and not name.startswith("$")):
                        self.names[bit] = name
        self.driver: dict[int, tuple[str, str]] = {}
        self.fanout: dict[int, int] = {}
        for cell_name, cell in self.cells.items():
            directions = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                for bit in bits:
                    if not isinstance(bit, int):
                        continue
                    if directions.get(port) == "output":
                        self.driver[bit] = (cell_name, port)
                    else:
                        self.fanout[bit] = self.fanout.get(bit, 0) + 1
        self.arrival: dict[int, tuple[float, int | None]] = {}

    def route(self, bit: int) -> float:
        return ROUTE_NS + _FANOUT_NS * math.log2(max(1, self.fanout.get(bit, 1)))

    def _arcs(self, bit: int):
        """(input bit, delay from that input to ``bit``'s driver output) of ``bit``'s driver."""
        cell_name, port = self.driver[bit]
        cell = self.cells[cell_name]
        kind = cell["type"]
        directions = cell.get("port_directions", {})
        for in_port, bits in cell["connections"].items():
            if directions.get(in_port) != "input":
                continue
            if kind == "LUT4":
                if in_port not in ("A", "B", "C", "D"):
                    continue
                delay = _LUT_NS
            elif kind == "CCU2C":
                if in_port == "CIN":
                    yield from ((b, 0.07 if port == "COUT" else 0.40) for b in bits
                                if isinstance(b, int))
                    continue
                delay = 0.45 if port == "COUT" else 0.44
            elif kind == "TRELLIS_DPR16X4":
                if not in_port.startswith("RAD"):
                    continue
                delay = 0.5
            else:
                delay = 0.3
            for b in bits:
                if isinstance(b, int):
                    yield b, delay + self.route(b)

    def solve(self, root: int) -> tuple[float, int | None]:
        """Arrival time at ``root``'s driver output (iterative depth-first; loops are cut)."""
        if root in self.arrival:
            return self.arrival[root]
        stack = [(root, False)]
        while stack:
            bit, expanded = stack.pop()
            if bit in self.arrival and not expanded:
                continue
            driver = self.driver.get(bit)
            if driver is None:
                self.arrival[bit] = (0.0, None)
                continue
            kind = self.cells[driver[0]]["type"]
            if kind in _SEQUENTIAL:
                self.arrival[bit] = (_START_NS[kind], None)
                continue
            if not expanded:
                self.arrival[bit] = (0.0, None)      # provisional: cuts combinational loops
                stack.append((bit, True))
                stack.extend((b, False) for b, _ in self._arcs(bit) if b not in self.arrival)
                continue
            best = (0.8 if kind == "TRELLIS_DPR16X4" else 0.0, None)
            for b, delay in self._arcs(bit):
                t = self.arrival[b][0] + delay
                if t > best[0]:
                    best = (t, b)
            self.arrival[bit] = best
        return self.arrival[root]

    def trace(self, bit: int) -> tuple[tuple[float, str, str], ...]:
        nets, seen = [], set()
        while bit is not None and bit not in seen:
            seen.add(bit)
            cell_name, port = self.driver.get(bit, ("?", "?"))
            kind = self.cells[cell_name]["type"] if cell_name in self.cells else "?"
            nets.append((round(self.arrival[bit][0], 2), f"{kind}.{port}",
                         self.names.get(bit, f"<bit {bit}>")))
            bit = self.arrival[bit][1]
        return tuple(reversed(nets))


def _is_top(module: dict) -> bool:
    """Yosys marks the top module with ``top``: a binary string ("000...1") or a number."""
    value = str(module.get("attributes", {}).get("top", "0"))
    try:
        return int(value, 2 if set(value) <= {"0", "1"} else 10) != 0
    except ValueError:
        return False


def estimate_paths(netlist: dict, top: str | None = None, *, limit: int | None = 20,
                   threshold_ns: float | None = None) -> list[TimingPath]:
    """Return the slowest register-to-register paths of ``top`` in a ``synth_ecp5`` netlist.

    One path per endpoint register bit, slowest first; ``limit`` keeps the first paths (``None``:
    all), ``threshold_ns`` only those at least that slow. ``top`` defaults to the module marked
    ``top`` (or the only module).
    """
    modules = netlist.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise ValueError("netlist has no 'modules': not a Yosys JSON netlist")
    if top is None:
        tops = [name for name, module in modules.items() if _is_top(module)]
        if len(tops) != 1 and len(modules) != 1:
            raise ValueError(f"netlist has {len(tops)} top modules; name one with top= "
                             f"(modules: {', '.join(sorted(modules))})")
        top = tops[0] if len(tops) == 1 else next(iter(modules))
    if top not in modules:
        raise ValueError(f"top module {top!r} is not in the netlist (modules: "
                         f"{', '.join(sorted(modules))})")
    graph = _Graph(modules[top])
    found = []
    for cell_name, cell in graph.cells.items():
        kind = cell["type"]
        if kind not in _SEQUENTIAL and kind != "TRELLIS_DPR16X4":
            continue
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port) != "input" or port in _CLOCKS:
                continue
            if kind == "TRELLIS_DPR16X4" and port.startswith("RAD"):
                continue
            setup = 0.3 if kind == "DP16KD" else _SETUP_NS.get(port, 0.1)
            for bit in bits:
                if not isinstance(bit, int) or bit not in graph.driver:
                    continue
                arrival, _ = graph.solve(bit)
                delay = arrival + graph.route(bit) + setup
                if threshold_ns is None or delay >= threshold_ns:
                    found.append((delay, f"{kind}.{port} {cell_name}", bit))
    found.sort(key=lambda item: (-item[0], item[1]))
    if limit is not None:
        found = found[:limit]
    return [TimingPath(round(delay, 2), endpoint, graph.trace(bit))
            for delay, endpoint, bit in found]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m rtl_gen.paths",
        description="Rank the register-to-register paths of a synth_ecp5 JSON netlist by an "
                    "estimated delay (ECP5 grade 6 logic depth; not a timing signoff).")
    parser.add_argument("netlist", type=FilePath, help="JSON written by synth_ecp5 -json")
    parser.add_argument("--top", help="module to analyse (default: the top module)")
    parser.add_argument("--limit", type=int, default=20, help="paths to print (default 20)")
    parser.add_argument("--threshold", type=float, help="only paths at least this slow (ns)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, not {args.limit}")
    try:
        netlist = json.loads(args.netlist.read_text())
    except FileNotFoundError:
        parser.error(f"{args.netlist}: no such file")
    except json.JSONDecodeError as error:
        parser.error(f"{args.netlist}: not JSON ({error})")
    try:
        paths = estimate_paths(netlist, args.top, limit=args.limit,
                               threshold_ns=args.threshold)
    except ValueError as error:
        parser.error(f"{args.netlist}: {error}")
    for path in paths:
        print(path.format())
    if not paths:
        print("no register-to-register path" + (f" of {args.threshold} ns or more"
                                                  if args.threshold is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
