"""Emit Verilog for a design point: ``python -m rtl_gen [--config FILE] [--checkpoint PATH] [...]``.

Writes each unit's Verilog and ``manifest.json`` (ports, parameters, latencies, sha256) under
``--out`` (default ``build/rtl``), and for ``network_core`` its C header, JSON register map and
FuseSoC core file; ``--checkpoint`` replaces the design point's ``checkpoint`` (the one the
``shared_network`` and ``network_core`` units are generated from); ``--lint`` runs Verilator's
``-Wall`` lint on every file; ``--synth`` adds Yosys/nextpnr estimates (``synth.json`` and a
table). Output is byte-identical on every run. The emission is :func:`rtl_gen.emit.emit`, which
``rtl_gen.api`` calls too.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from golden.cliargs import Parser

from .config import NETWORK_UNITS, ConfigError, load


def _spread(report: dict, device: str) -> str:
    """Return ``min-max`` Fmax over the placement seeds of ``device`` ("-" for one seed)."""
    seeds = report.get("fmax_seeds", {}).get(device, {})
    if len(seeds) < 2:
        return "-"
    return f"{min(seeds.values())}-{max(seeds.values())} ({len(seeds)} seeds)"


def _table(reports) -> str:
    rows = [("unit", "ECP5 LUT4", "ECP5 FF", "ECP5 mult", "ECP5-6 MHz", "min-max", "ECP5 device",
             "depth ns", "iCE40 LC", "iCE40 MHz")]
    for r in reports:
        ecp5 = r["cells"].get("ecp5", {})
        ice = r["utilisation"].get("ice40-hx8k", {})
        placed = [d for d in r["fmax_mhz"] if d.startswith("ecp5")]
        device = placed[0] if placed else "-"
        rows.append((
            r["name"], str(ecp5.get("LUT4", "-")), str(ecp5.get("TRELLIS_FF", "-")),
            str(r["multipliers"].get("ecp5", "-")),
            str(r["fmax_mhz"].get(device, "-")), _spread(r, device), device,
            str(r.get("depth_estimate", {}).get("ns", "-")),
            str(ice.get("ICESTORM_LC", ["-"])[0]),
            str(r["fmax_mhz"].get("ice40-hx8k", "-")),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main(argv=None) -> int:
    parser = Parser(prog="python -m rtl_gen",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="design point JSON (default: rtl_gen/configs/default.json fields)")
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint the shared_network unit is generated from, in place "
                             "of the design point's 'checkpoint' field")
    parser.add_argument("--out", type=Path, default=Path("build/rtl"),
                        help="output directory, replaced as a whole (default: build/rtl)")
    parser.add_argument("--lint", action="store_true", help="lint every emitted file")
    parser.add_argument("--synth", action="store_true",
                        help="synthesis estimates with YoWASP (needs the 'synth' extra)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="nextpnr placement seeds with --synth (Fmax: median, min-max spread)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="nextpnr runs at a time with --synth (one per seed)")
    parser.add_argument("--units", default=None,
                        help="comma-separated subset of the design point's units")
    args = parser.parse_args(argv)
    if any(seed < 0 for seed in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        print(f"error: --seeds must be distinct integers >= 0, not {args.seeds}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1, not {args.jobs}", file=sys.stderr)
        return 2
    try:
        overrides = {}
        if args.units:
            overrides["units"] = tuple(u for u in args.units.split(",") if u)
        point = load(args.config, **overrides)
        needs_checkpoint = any(unit in point.units for unit in NETWORK_UNITS)
        if args.checkpoint is not None:
            if not needs_checkpoint:
                raise ConfigError(f"--checkpoint {args.checkpoint}: {point.source} emits no "
                                  f"'shared_network' unit and no 'network_core' unit (units: "
                                  f"{list(point.units)})")
            if not Path(args.checkpoint).exists():
                raise ConfigError(f"checkpoint {args.checkpoint} (--checkpoint) does not exist")
            point = dataclasses.replace(point, checkpoint=str(args.checkpoint)).validated()
        if needs_checkpoint and not Path(point.checkpoint).exists():
            raise ConfigError(f"{point.source}: field 'checkpoint' names {point.checkpoint}, "
                              "which does not exist")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from .emit import emit, quantized_network, unit_factories  # noqa: PLC0415 - config good

    try:
        if needs_checkpoint:
            # Load, check and quantize the checkpoint before anything is generated or written
            # (golden.checkpoint.check_values, quant's range checks): a bad one is one line.
            quantized_network(point.checkpoint, point.weight_bits, point.time_steps,
                              point.sepconv, point.lanes, point.input_buffer, point.fold)
        manifest = emit(point, args.out)
    except (ValueError, OSError) as error:  # ConfigError, CheckpointError, QuantizationError
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except NotImplementedError as error:  # a model the network RTL cannot build: refused
        print(f"error: checkpoint {point.checkpoint} cannot be built as a shared network: "
              f"{' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for unit in manifest["units"]:
        print(f"wrote {args.out / unit['file']}")
        for entry in unit.get("soc", {}).values():   # network_core: header, JSON map, .core
            print(f"wrote {args.out / entry['file']}")
    print(f"wrote {args.out / 'manifest.json'}")
    status = 0
    if args.lint:
        from .lint import lint  # noqa: PLC0415

        for unit in manifest["units"]:
            result = lint([args.out / unit["file"]], unit["name"])
            print(f"lint {unit['name']}: {'clean' if result.ok else 'FAILED'}")
            if not result.ok:
                print(result.messages)
                status = 1
    if args.synth:
        from . import synth  # noqa: PLC0415

        missing = synth.available()
        if missing:
            print(f"error: {missing}", file=sys.stderr)
            return 2
        reports = []
        for unit in unit_factories(point):
            if unit.name not in {u["name"] for u in manifest["units"]}:
                continue
            print(f"synthesizing {unit.name} ...", flush=True)
            options = {}
            if unit.name in NETWORK_UNITS:
                # Too big for an iCE40 HX8K; place on the smallest ECP5 it fits.
                options = dict(targets=("generic", "ecp5"),
                               devices=("ecp5-25k-6", "ecp5-85k-6"), first_fit=True,
                               abc9=False)
            reports.append(synth.synthesize(unit.name, unit.factory,
                                            args.out.parent / "synth" / unit.name,
                                            seeds=args.seeds, jobs=args.jobs,
                                            **options).as_dict())
        report_path = args.out.parent / "synth" / "synth.json"
        report_path.write_text(json.dumps({"design_point": point.as_dict(), "units": reports},
                                          indent=2, sort_keys=True) + "\n")
        print(_table(reports))
        print(f"wrote {report_path}")
        for r in reports:
            for error in r["errors"]:
                print(f"synthesis error in {r['name']}: {error}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
