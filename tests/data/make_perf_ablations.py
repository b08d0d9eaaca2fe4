"""Write tests/data/perf_ablations.json: Table-5 ablations of the demo, bit-exact and measured.

``python tests/data/make_perf_ablations.py OUT [WORKDIR] [NAME ...] [--append]``

For each ablation of ``sim.paper.DEMO_ABLATIONS`` (or the NAMEs given) this runs the public
command lines:

* ``python -m sim.paper --variant demo --img-size 32 --ablation NAME --seed S --out CKPT``
  (random weights calibrated so that every LIF fires 1 % to 50 % on the seeded random image);
* ``python -m sim.e2e --checkpoint CKPT --inputs random --seed S --images 1 --max-T 4 --T 1 4``
  (one build for T = 4, run for 1 and for 4 time steps),

and stores, per ablation and T, the image's total cycles, whether logits and every spike map
were bit-exact, and the testbench's ``(t, step, cycle)`` marks, with the commit and a hash of
``hw/*.py``. ``--append`` keeps the runs OUT holds (but those of the NAMEs given) and adds these,
each with its own ``commit`` and ``hw_sha256``. A run that is not bit-exact stops the script
(nothing is written). These are measurements: nothing here comes from the cycle model.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sim.paper import DEMO_ABLATIONS  # noqa: E402

TSTEPS = (1, 4)


def main(argv) -> int:
    append = "--append" in argv
    argv = [arg for arg in argv if arg != "--append"]
    out = Path(argv[0])
    work = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="ablations-"))
    names = argv[2:] or list(DEMO_ABLATIONS)
    digest = hashlib.sha256()
    for source in sorted((ROOT / "hw").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    runs = []
    for name in names:
        seed = DEMO_ABLATIONS[name]
        checkpoint = work / f"{name}.pth"
        begin = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sim.paper", "--variant", "demo", "--img-size",
                        "32", "--ablation", name, "--seed", str(seed), "--out", str(checkpoint)],
                       cwd=ROOT, check=True)
        directory = work / name
        subprocess.run([sys.executable, "-m", "sim.e2e", "--checkpoint", str(checkpoint),
                        "--inputs", "random", "--seed", str(seed), "--images", "1", "--max-T",
                        str(max(TSTEPS)), "--T", *map(str, TSTEPS), "--out", str(directory)],
                       cwd=ROOT, check=True)
        for T in TSTEPS:
            result = json.loads((directory / f"results_T{T}.json").read_text())["images"][0]
            if not result["match"]:
                raise SystemExit(f"{name} at T={T}: the image was not bit-exact")
            runs.append({"ablation": name, "seed": seed, "T": T, "max_T": max(TSTEPS),
                         "cycles": result["cycles"], "match": result["match"],
                         "steps": result["steps"]})
            if append:
                runs[-1].update(commit=commit, hw_sha256=digest.hexdigest()[:16])
        print(f"{name}: {time.perf_counter() - begin:.0f} s", flush=True)
    data = {"about": "Measured RTL cycles (Verilator; sim.tb.network's step marks [t, step, cycle "
                     "since start]) of the demo with each Table-5 ablation "
                     "(sim.paper --variant demo --ablation NAME --seed S) on the seeded random "
                     "image: python -m sim.e2e --checkpoint CKPT --inputs random --seed S "
                     "--images 1 --max-T 4 --T 1 4. Written by "
                     "tests/data/make_perf_ablations.py. Measurements: nothing here comes from "
                     "the cycle model.",
            "commit": commit, "hw_sha256": digest.hexdigest()[:16], "runs": runs}
    if append and out.exists():
        old = json.loads(out.read_text())
        kept = [run for run in old["runs"] if run["ablation"] not in names]
        data = dict(old, runs=kept + runs)
    out.write_text(json.dumps(data, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
