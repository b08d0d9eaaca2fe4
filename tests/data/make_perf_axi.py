"""Write tests/data/perf_axi.json (or perf_axi_layer.json): measured RTL cycles of the demo with
its weights over AXI4.

``python tests/data/make_perf_axi.py OUT [--schedule layer --design-T N] WIDTH:LATENCY:RING:DIR ...``

Each ``DIR`` is a ``python -m sim.e2e --weights axi --axi-width WIDTH --axi-latency LATENCY
--axi-pause 0 [--weight-ring RING] [--schedule layer --max-T N] --images I --T ... --out DIR``
directory of the trained demo (RING 0: the default ring); each ``results_T<t>.json`` in it (the
cocotb testbench's, a run of ``t`` time steps) holds, per image, the total cycles and the
``(t, step, cycles)`` marks. Every image of every run becomes one entry, stored with the commit
and a hash of ``hw/*.py``. These are measurements: nothing here comes from the cycle model.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--schedule", choices=("time", "layer"), default="time")
    parser.add_argument("--design-T", type=int, default=1)
    args = parser.parse_args(argv)
    digest = hashlib.sha256()
    for source in sorted((ROOT / "hw").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    runs = []
    for spec in args.specs:
        width, latency, ring, directory = spec.split(":", 3)
        files = sorted(Path(directory).glob("results_T*.json"),
                       key=lambda path: int(re.findall(r"\d+", path.name)[-1]))
        if not files:
            raise SystemExit(f"{directory}: no results_T*.json")
        for path in files:
            T = int(re.findall(r"\d+", path.name)[-1])
            results = json.loads(path.read_text())["images"]
            for image, result in enumerate(results):
                if not result["match"]:
                    raise SystemExit(f"{path}: image {image} was not bit-exact")
                run = {"width": int(width), "latency": int(latency), "ring": int(ring) or None,
                       "image": image, "T": T, "cycles": result["cycles"],
                       "steps": result["steps"]}
                if args.schedule != "time" or args.design_T != 1:
                    run.update(schedule=args.schedule, design_T=args.design_T)
                runs.append(run)
    how = ("" if args.schedule == "time" and args.design_T == 1 else
           f" --schedule {args.schedule} --max-T {args.design_T}")
    data = {"about": "Measured RTL cycles (Verilator, sim.tb.network's step marks) of the trained "
                     "demo checkpoint, 16 lanes, the first held-out digits, weights over "
                     "AXI4 from the testbench's AXI RAM at a fixed latency with no pauses: "
                     "python -m sim.e2e --weights axi --axi-width W --axi-latency L --axi-pause 0 "
                     f"[--weight-ring N]{how} --images I --T .... Written by "
                     "tests/data/make_perf_axi.py. Measurements: nothing here comes from the "
                     "cycle model.",
            "commit": commit, "hw_sha256": digest.hexdigest()[:16], "runs": runs}
    args.out.write_text(json.dumps(data, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
