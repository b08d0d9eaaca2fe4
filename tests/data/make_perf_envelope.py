"""Write tests/data/perf_envelope.json: measured RTL cycles of the envelope models.

``python tests/data/make_perf_envelope.py OUT MODEL:LANES:DIR ...``

Each ``DIR`` is a ``python -m sim.e2e --checkpoint MODEL.pth --lanes LANES --T 1 --images 1
--inputs random --out DIR`` directory, ``MODEL.pth`` saved from ``sim.e2e.random_model`` (seed 0)
of ``tests/test_shared_envelope.py``'s ``MODEL`` configuration (``odd``, ``odd4``) by
``python tests/data/make_perf_envelope.py --save MODEL PATH``; its ``results_T1.json`` (the cocotb
testbench's) holds the image's total cycles and the ``(t, step, cycles)`` marks, stored with the
commit and a hash of ``hw/*.py``. These are measurements: nothing here comes from the cycle model.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv) -> int:
    if argv[0] == "--save":
        sys.path.insert(0, str(ROOT / "tests"))
        from golden.checkpoint import save_checkpoint
        from sim.e2e import random_model
        from test_shared_envelope import config

        model = random_model(config(argv[1]), 0)
        save_checkpoint(model, argv[2])
        print(f"wrote {argv[2]}")
        return 0
    out, specs = Path(argv[0]), argv[1:]
    digest = hashlib.sha256()
    for source in sorted((ROOT / "hw").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    runs = []
    for spec in specs:
        model, lanes, directory = spec.split(":", 2)
        result = json.loads((Path(directory) / "results_T1.json").read_text())["images"][0]
        if not result["match"]:
            raise SystemExit(f"{directory}: the image was not bit-exact")
        runs.append({"model": model, "seed": 0, "inputs": "random", "lanes": int(lanes), "T": 1,
                     "cycles": result["cycles"], "steps": result["steps"]})
    data = {"about": "Measured RTL cycles (Verilator; sim.tb.network's step marks [t, step, cycle "
                     "since start]) of tests/test_shared_envelope.py's models "
                     "(sim.e2e.random_model, seed 0) on the seeded random image: python -m "
                     "sim.e2e --checkpoint MODEL.pth --lanes L --T 1 --images 1 --inputs random. "
                     "Written by tests/data/make_perf_envelope.py. Measurements: nothing here "
                     "comes from the cycle model.",
            "commit": commit, "hw_sha256": digest.hexdigest()[:16], "runs": runs}
    out.write_text(json.dumps(data, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
