"""Emit Verilog for the project's hardware units: ``python -m rtl_gen [--out DIR]``.

For now this emits the LIF unit's default design point; the full design-point configuration of
issue 7 extends it. Output is deterministic: no source paths or dates are written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from hw.lif import LIF

#: The default LIF design point emitted by ``make rtl``.
DEFAULT_LIF = dict(lanes=16, input_width=16, threshold=None)


def emit(out: Path) -> list[Path]:
    """Write each unit's Verilog and a manifest into ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    lif = LIF(**DEFAULT_LIF)
    text = verilog.convert(lif, name="lif", emit_src=False)
    files = {"lif.v": text}
    manifest = {
        "format": 1,
        "units": [{
            "name": "lif",
            "file": "lif.v",
            "parameters": {"lanes": lif.lanes, "input_width": lif.input_width,
                           "membrane_width": lif.membrane_width,
                           "threshold": "streamed" if lif.thresholds is None else lif.thresholds},
            "latency": lif.latency,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }],
    }
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    written = []
    for name, content in files.items():
        # Write beside the target and rename, so an interrupted run never leaves half a file.
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as tmp:
            tmp.write(content)
        os.replace(tmp.name, out / name)
        written.append(out / name)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl_gen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/rtl"),
                        help="output directory (default: build/rtl)")
    args = parser.parse_args(argv)
    for path in emit(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
