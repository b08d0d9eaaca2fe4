"""Write tests/data/perf_axi.json: measured RTL cycles of the demo with its weights over AXI4.

``python tests/data/make_perf_axi.py OUT WIDTH:LATENCY:RING:DIR ...``

Each ``DIR`` is a ``python -m sim.e2e --weights axi --axi-width WIDTH --axi-latency LATENCY
--axi-pause 0 [--weight-ring RING] --images N --T 1 --out DIR`` directory of the trained demo
(RING 0: the default ring); its ``results_T1.json`` (the cocotb testbench's) holds, per image,
the total cycles and the ``(t, step, cycles)`` marks. Every image becomes one run, stored with
the commit and a hash of ``hw/*.py``. These are measurements: nothing here comes from the
cycle model.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv) -> int:
    out, specs = Path(argv[0]), argv[1:]
    digest = hashlib.sha256()
    for source in sorted((ROOT / "hw").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    runs = []
    for spec in specs:
        width, latency, ring, directory = spec.split(":", 3)
        results = json.loads((Path(directory) / "results_T1.json").read_text())["images"]
        for image, result in enumerate(results):
            if not result["match"]:
                raise SystemExit(f"{directory}: image {image} was not bit-exact")
            runs.append({"width": int(width), "latency": int(latency),
                         "ring": int(ring) or None, "image": image, "T": 1,
                         "cycles": result["cycles"], "steps": result["steps"]})
    data = {"about": "Measured RTL cycles (Verilator, sim.tb.network's step marks) of the trained "
                     "demo checkpoint, 16 lanes, T=1, the first held-out digits, weights over "
                     "AXI4 from the testbench's AXI RAM at a fixed latency with no pauses: "
                     "python -m sim.e2e --weights axi --axi-width W --axi-latency L --axi-pause 0 "
                     "[--weight-ring N] --images 2 --T 1. Written by tests/data/make_perf_axi.py. "
                     "Measurements: nothing here comes from the cycle model.",
            "commit": commit, "hw_sha256": digest.hexdigest()[:16], "runs": runs}
    out.write_text(json.dumps(data, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
