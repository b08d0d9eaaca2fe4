"""Write tests/data/perf_rtl.json: the RTL's measured cycles per step, from co-simulation runs.

``python tests/data/make_perf_rtl.py OUT [--append] [--commit SHA] [--command CMD] [--sdsa N]
[--inputs random] [--lanes L] [--fold F] [--input-buffer B] CHECKPOINT:T:DIR ...``

Each ``DIR`` is a ``python -m sim.e2e --out DIR`` directory; its ``results_T<T>.json`` (written by
the cocotb testbench ``sim.tb.network``) holds, per image, the total cycles and a
``(t, step, cycles)`` mark whenever the sequencer entered another step. The marks are turned
into cycles per ``(t, step)`` (``sim.perf.rtl_step_cycles``) and stored with the commit
(``--commit``, default HEAD), a hash of ``hw/*.py`` and the command that made them
(``--command``, for the specs after it), so that a test failing after a hardware change can say
the numbers are stale. ``--sdsa N`` and ``--inputs random`` (for the specs after them) record a
random model of operator N (``sim.e2e.demo_model(..., sdsa=N)``) and seeded random images;
``--sdsa -`` and ``--inputs digits`` go back to the defaults. ``--lanes L`` and ``--fold F``
record the design point's lanes and column folding (``sim.e2e --lanes --fold``; stored with a
run only when not 16 and 1), ``--input-buffer B`` the engine's input buffer (stored when not 0). ``--append`` keeps the runs OUT
already holds and adds these, each with its own ``commit`` and ``hw_sha256`` (the file's own
stay those of its first runs).
These are measurements: nothing here comes from the cycle model.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sim.perf import rtl_step_cycles  # noqa: E402


def hw_digest() -> str:
    digest = hashlib.sha256()
    for source in sorted((ROOT / "hw").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def main(argv) -> int:
    out, specs = Path(argv[0]), list(argv[1:])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    append = "--append" in specs
    if append:
        specs.remove("--append")
    runs = []
    command = None
    sdsa, inputs = None, "digits"
    lanes, fold, buffer = 16, 1, 0
    while specs:
        spec = specs.pop(0)
        if spec == "--command":
            command = specs.pop(0)
            continue
        if spec == "--sdsa":
            value = specs.pop(0)
            sdsa = None if value == "-" else int(value)
            continue
        if spec == "--inputs":
            inputs = specs.pop(0)
            continue
        if spec == "--lanes":
            lanes = int(specs.pop(0))
            continue
        if spec == "--fold":
            fold = int(specs.pop(0))
            continue
        if spec == "--input-buffer":
            buffer = int(specs.pop(0))
            continue
        if spec == "--commit":  # the commit the runs were made at (default: HEAD)
            commit = specs.pop(0)
            continue
        checkpoint, T, directory = spec.rsplit(":", 2)
        T = int(T)
        results = json.loads((Path(directory) / f"results_T{T}.json").read_text())
        images = []
        for number, result in enumerate(results["images"]):
            cycles = rtl_step_cycles(result, 10 ** 6)
            images.append({"image": number, "cycles": result["cycles"],
                           "match": result["match"],
                           "steps": [[t, k, c] for (t, k), c in sorted(cycles.items())]})
        run = {"checkpoint": checkpoint, "T": T, "command": command, "images": images}
        if sdsa is not None:
            run["sdsa"] = sdsa
        if inputs != "digits":
            run["inputs"] = inputs
        if lanes != 16:
            run["lanes"] = lanes
        if fold != 1:
            run["fold"] = fold
        if buffer:
            run["input_buffer"] = buffer
        if append:
            run.update(commit=commit, hw_sha256=hw_digest())
        runs.append(run)
    if append:
        document = json.loads(out.read_text())
        document["runs"] += runs
        out.write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
        return 0
    out.write_text(json.dumps({
        "note": "Cycles per (time step, program step) measured on Verilator by sim.e2e's "
                "co-simulation (sim.tb.network's step marks); made by "
                "tests/data/make_perf_rtl.py from the runs' results_T<T>.json. Re-measure "
                "after any change to hw/ that moves a cycle.",
        "commit": commit, "hw_sha256": hw_digest(), "simulator": "verilator",
        "lanes": 16, "runs": runs}, indent=None, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
