"""Benchmark the synapse engine on Verilator: cycles per layer against the ideal SOPs / lanes.

Run ``python -m sim.bench_units`` (``--layers NAME ...`` to pick layers, ``--json PATH`` for the
file). For every layer and firing rate (1%, 10%, 50%, 100%) it reports:

* ``SOPs``: synaptic operations, the weight additions the spikes cause (valid taps only);
* ``ideal``: ``SOPs / lanes`` cycles;
* ``accumulate``: cycles from offering the first spike word to the first read-out beat (the
  addressing, decode and read-modify-write pipeline included) and its ratio to ideal;
* ``total``: accumulate plus the read-out of the bank (one cycle per bank word);
* the ratio of accumulate cycles at 10% to those at 100%, and Verilator's speed in cycles/s.

Weights are seeded random integers in quant's canonical layout; every frame is also checked
against quant.intops (the testbench raises on any difference).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from golden.cliargs import Parser

__all__ = ["LAYERS", "RATES", "bench_layer", "main"]

#: Layers shaped like the model's (C = 32 stage-1 width, 14x14 maps), with the lanes they use.
LAYERS = {
    "conv3x3_s1_32x32_14x14_L8": (dict(kind="conv", cin=32, cout=32, kernel=3),
                                  dict(lanes=8, height=14, width=14, padding=1)),
    "conv3x3_s2_32x64_28x28_L16": (dict(kind="conv", cin=32, cout=64, kernel=3),
                                   dict(lanes=16, height=28, width=28, stride=2, padding=1)),
    "conv7x7_fused_sepconv_16x16_14x14_L8": (dict(kind="conv", cin=16, cout=16, kernel=7),
                                             dict(lanes=8, height=14, width=14, padding=3)),
    "linear_mlp_64x128_N49_L16": (dict(kind="linear", cin=64, cout=128),
                                  dict(lanes=16, height=49)),
    "depthwise7x7_32_14x14_L8": (dict(kind="depthwise", cin=32, cout=32, kernel=7),
                                 dict(lanes=8, height=14, width=14, padding=3)),
}

#: Firing rates of the benchmark.
RATES = (0.01, 0.1, 0.5, 1.0)


def bench_layer(name: str, *, seed: int = 7, workdir: Path) -> dict:
    """Run one layer at every rate on Verilator; return its cycle table."""
    from amaranth.back import verilog  # noqa: PLC0415

    from hw.accumulator import SynapseEngine  # noqa: PLC0415
    from hw.packing import layer_sops  # noqa: PLC0415
    from sim import toolchain  # noqa: PLC0415
    from sim.cases_accumulator import (random_layer, spike_shape,  # noqa: PLC0415
                                       write_engine_case)
    from sim.cases_addressing import spike_map  # noqa: PLC0415

    layer, params = LAYERS[name]
    rng = np.random.default_rng(seed)
    weight, bias = random_layer(rng, **layer)
    dut = SynapseEngine(kind=layer["kind"], weight=weight, bias=bias, **params)
    frames = [spike_map(rng, spike_shape(dut), rate) for rate in RATES]
    case = workdir / f"{name}.npz"
    results = workdir / f"{name}.json"
    write_engine_case(case, name=name, seed=seed, kind=layer["kind"], weight=weight, bias=bias,
                      frames=frames, rates=RATES, **params)
    design = toolchain.build(verilog.convert(dut, name="synapse", emit_src=False), "synapse")
    toolchain.run(design, "sim.tb.accumulator", testcase="test_frames", name=f"bench-{name}",
                  extra_env={"SYN_CASE": str(case), "SYN_PATTERNS": "0",
                             "SYN_RESULTS": str(results)})
    measured = json.loads(results.read_text())
    rows = []
    for frame, spikes in zip(measured["frames"], frames):
        sops = layer_sops(layer["kind"], weight.shape, spikes,
                          stride=params.get("stride", 1), padding=params.get("padding", 0))
        ideal = sops / dut.lanes
        rows.append({
            "rate": frame["rate"], "spikes": frame["spikes"], "sops": sops, "ideal": ideal,
            "accumulate": frame["accumulate_cycles"], "readout": dut.bank_depth,
            "total": frame["cycles"],
            "accumulate_over_ideal": frame["accumulate_cycles"] / ideal if ideal else None,
        })
    by_rate = {row["rate"]: row for row in rows}
    return {
        "layer": name, "lanes": dut.lanes, "rows": rows,
        "ratio_10_to_100": by_rate[0.1]["accumulate"] / by_rate[1.0]["accumulate"],
        "ratio_10_to_100_total": by_rate[0.1]["total"] / by_rate[1.0]["total"],
        "cycles_per_second": measured["cycles_per_second"],
    }


def _print(result: dict) -> None:
    print(f"\n{result['layer']} (lanes {result['lanes']}, Verilator "
          f"{result['cycles_per_second']:,.0f} cycles/s)")
    print(f"{'rate':>6} {'SOPs':>10} {'ideal':>10} {'accumulate':>11} {'acc/ideal':>9} "
          f"{'read-out':>9} {'total':>9}")
    for row in result["rows"]:
        ratio = "-" if row["accumulate_over_ideal"] is None else \
            f"{row['accumulate_over_ideal']:.3f}"
        print(f"{row['rate']:>6.2f} {row['sops']:>10,} {row['ideal']:>10,.0f} "
              f"{row['accumulate']:>11,} {ratio:>9} {row['readout']:>9,} {row['total']:>9,}")
    print(f"cycles at 10% / cycles at 100%: accumulate {result['ratio_10_to_100']:.3f}, "
          f"with read-out {result['ratio_10_to_100_total']:.3f}")


def main(argv=None) -> int:
    """Run the benchmark and print the tables."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="*", default=sorted(LAYERS), choices=sorted(LAYERS))
    parser.add_argument("--json", type=Path, default=Path("build/bench/hw_units.json"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.layers:
            results.append(bench_layer(name, seed=args.seed, workdir=Path(workdir)))
    # Printed after all runs, so the simulator's log does not interleave with the tables.
    for result in results:
        _print(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
