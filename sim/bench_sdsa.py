"""Benchmark the SDSA unit: cycles on Verilator against the ideal and against a dense evaluation.

For each lanes setting and firing rate it draws one seeded time step of Q, K, V spikes for every
head, runs it through the unit on Verilator (cocotb, no idle input, no backpressure, outputs checked
against the integer golden SDSA) and prints:

* ``cycles``: measured, first input beat offered to last output beat taken;
* ``model``: :meth:`hw.sdsa.SDSA.cycles` (the benchmark fails if the two differ);
* ``ideal``: the additions the spikes require divided by the lanes, ``(S_K + S_Q) * d / lanes``
  summed over heads (``S_K``, ``S_Q``: set bits of K and Q);
* ``dense``: a dense evaluation of the same products with the same lanes,
  ``heads * 2 * N * d * ceil(d / lanes)`` (every (token, row) pair of ``K^T V`` and ``Q KV``).

Run: ``.venv/bin/python -m sim.bench_sdsa`` (defaults: N=196, d=64, 8 heads, lanes 64 and 16).
``--model-only`` skips Verilator and uses the cycle model.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from golden.cliargs import Parser
from hw.sdsa import SDSA
from hw.sdsa_common import Variant
from sim.cases_sdsa import random_case

RATES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def measure(dut: SDSA, cases: dict, workdir: Path) -> dict:
    """Run ``{name: case}`` on Verilator without stalls; return measured cycles per name."""
    from amaranth.back import verilog  # noqa: PLC0415

    from sim import toolchain  # noqa: PLC0415
    from sim.tb.sdsa import write_cases  # noqa: PLC0415

    design = toolchain.build(verilog.convert(dut, name="sdsa", emit_src=False), "sdsa")
    label = f"bench_l{dut.lanes}"
    case_file, report = workdir / f"{label}.npz", workdir / f"{label}.json"
    write_cases(case_file, {name: (case, (1,), (1,)) for name, case in cases.items()})
    toolchain.run(design, "sim.tb.sdsa", name=label, extra_env={
        "SDSA_VARIANT": str(dut.variant.value), "SDSA_TOKENS": str(dut.tokens),
        "SDSA_HEAD_WIDTH": str(dut.head_width), "SDSA_HEADS": str(dut.heads),
        "SDSA_THRESHOLDS": ",".join(map(str, dut.thresholds)),
        "SDSA_CASES": str(case_file), "SDSA_REPORT": str(report),
    })
    return json.loads(report.read_text())


def main(argv=None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=196)
    parser.add_argument("--head-width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--lanes", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--variant", type=int, default=3, choices=(3, 4))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--model-only", action="store_true",
                        help="use the cycle model instead of running Verilator")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    title = (f"SDSA-{args.variant}: N={args.tokens} d={args.head_width} heads={args.heads}, "
             f"one time step, seed {args.seed}, "
             f"{'cycle model' if args.model_only else 'measured on Verilator'}")
    lines = [title, f"{'lanes':>5} {'rate':>5} {'S_K':>7} {'S_Q':>7} {'cycles':>8} {'ideal':>9} "
                    f"{'/ideal':>6} {'dense':>8} {'/dense':>6}"]
    rows = []
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for lanes in args.lanes:
            dut = SDSA(variant=Variant(args.variant), tokens=args.tokens,
                       head_width=args.head_width, heads=args.heads, lanes=lanes)
            rng = np.random.default_rng(args.seed)
            cases = {f"rate_{rate}": random_case(rng, tokens=args.tokens,
                                                 head_width=args.head_width, heads=args.heads,
                                                 steps=1, rate=rate)
                     for rate in args.rates}
            measured = {} if args.model_only else measure(dut, cases, Path(tmp))
            for rate in args.rates:
                case = cases[f"rate_{rate}"]
                q_counts, k_counts = case.q.sum(axis=3), case.k.sum(axis=3)
                model = dut.cycles(q_counts, k_counts)
                cycles = measured.get(f"rate_{rate}", model)
                if cycles != model:
                    print(f"  measured {cycles} cycles but the model says {model}",
                          file=sys.stderr)
                    status = 1
                s_k, s_q = int(k_counts.sum()), int(q_counts.sum())
                ideal = dut.ideal_cycles(q_spikes=s_q, k_spikes=s_k)
                dense = args.heads * dut.dense_cycles()
                ratio = cycles / ideal if ideal else float("inf")
                lines.append(f"{lanes:>5} {rate:>5.2f} {s_k:>7} {s_q:>7} {cycles:>8} "
                             f"{ideal:>9.0f} {ratio:>6.3f} {dense:>8} {cycles / dense:>6.3f}")
                rows.append(dict(lanes=lanes, rate=rate, k_spikes=s_k, q_spikes=s_q,
                                 cycles=cycles, model=model, ideal=ideal, dense=dense,
                                 over_ideal=ratio, over_dense=cycles / dense))
    # Printed last: the simulator's log would otherwise be interleaved with the table.
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
