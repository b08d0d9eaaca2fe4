"""Emit the band core: ``python -m rtl_gen.band [--case NAME] [--weights axi|rom] [...]``.

The band core (:class:`hw.bandcore.BandCore`) is a chain of conv + LIF layers whose every spike
map (and, with ``--weights axi``, every weight) lies in external memory behind one AXI4 master,
controlled through an AXI4-Lite slave. The chain is one of ``sim.cases_bandlayer.CHAIN_CASES``
(``--case``; or that tuple as JSON text: ``[lanes, [H, W, Cin], [[Cout, k, stride, pad], ...],
band_rows, steps, T]``), its weights drawn from the case's seed. Writes under ``--out``
(default ``build/rtl-band``), replaced as a whole once everything is generated:

- ``band_core.v`` (time-0 safe Verilog), ``lint_waivers.vlt``;
- ``band_core_regs.h``, ``band_core_regs.json`` (the register map), ``band_core.core``
  (FuseSoC CAPI2);
- ``band_core_weights.bin`` (``--weights axi``: the bytes to place at WEIGHT_BASE);
- ``band_core_input.bin`` (the case's input spike map, TIME_STEPS time steps, for INPUT_BASE)
  and ``band_core_output.bin`` (the integer model's output map, what OUTPUT_BASE must hold
  after the run);
- ``manifest.json``: files and sha256, the register map's parameters, every on-chip memory's
  bits, the regions' sizes and the bytes a run reads and writes, layer by layer against their
  floors (``hw.bandchain.BandChain.traffic``; printed too).

``--band-bits`` bounds the accumulator bank and membranes together, ``--weight-words`` the
weight RAM (``hw.bandchain.BandChain``). ``--lint`` runs Verilator's ``-Wall`` lint;
``--synth`` places and routes the core on ``--device`` (an ECP5) in the project's synthesis
harness with each of ``--seeds`` (``rtl_gen.synth``; ``<out>-synth/synth.json``). Output is
byte-identical on every run. Bad arguments: one line, status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from golden.cliargs import Parser

MANIFEST_FORMAT = 1
UNIT = "band_core"


def build(case_name: str, *, weights: str = "axi", band_bits: int | None = None,
          weight_words: int | None = None):
    """Return ``(case, core)`` for a chain case (``ValueError`` for a case or option the chain
    refuses)."""
    from hw.bandcore import BandCore
    from sim.cases_bandlayer import chain_case

    try:
        case = chain_case(case_name)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"--case {case_name!r}: not a chain case name or its JSON tuple "
                         f"({error})") from None
    rows = None if band_bits is not None else case.band_rows
    if weights == "axi" and weight_words is None:
        weight_words = case.weight_words
    core = BandCore(case.layers, band_rows=rows, band_bits=band_bits,
                    max_steps=case.max_steps, weights=weights, weight_words=weight_words)
    return case, core


def emit(case_name: str, out: Path, *, weights: str = "axi", band_bits: int | None = None,
         weight_words: int | None = None) -> dict:
    """Write the band core's files into ``out`` (module docstring); return the manifest."""
    from hw import verilog
    from hw.bandchain import chain_layout
    from hw.rowreader import map_image

    from . import soc
    from .emit import _sha256, staged_directory
    from .lint import WAIVER_FILE_TEXT

    case, core = build(case_name, weights=weights, band_bits=band_bits,
                       weight_words=weight_words)
    layout = chain_layout(case.layers, max_steps=case.max_steps)
    regmap = core.regmap
    files = {
        f"{UNIT}.v": verilog.convert(core, name=UNIT, emit_src=False).encode(),
        "lint_waivers.vlt": WAIVER_FILE_TEXT.encode(),
        f"{UNIT}_regs.h": soc.c_header(regmap, UNIT).encode(),
        f"{UNIT}_regs.json": soc.register_json(regmap).encode(),
        f"{UNIT}_input.bin": b"".join(map_image(step) for step in case.inputs),
        f"{UNIT}_output.bin": b"".join(map_image(step) for step in case.want[-1]),
    }
    weight_file = None
    if weights == "axi":
        weight_file = f"{UNIT}_weights.bin"
        files[weight_file] = core.weight_image
    files[f"{UNIT}.core"] = soc.fusesoc_core(
        UNIT, verilog=f"{UNIT}.v", header=f"{UNIT}_regs.h", register_map=f"{UNIT}_regs.json",
        weight_image=None, lint_waivers="lint_waivers.vlt",
        description="Chain of spiking conv + LIF layers over AXI4 external memory behind an "
                    "AXI4-Lite register slave (sdt-codesign rtl_gen.band; docs/bandcore.md)"
    ).encode()
    maps = layout["maps"]
    p = regmap.parameters
    manifest = {
        "format": MANIFEST_FORMAT,
        "unit": UNIT,
        "case": case_name,
        "weights": weights,
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)}
                  for name, data in sorted(files.items())},
        "fusesoc_vlnv": soc.vlnv(UNIT),
        "register_map": {"file": f"{UNIT}_regs.json", "address_width": regmap.address_width,
                         "parameters": dict(sorted(vars(p).items()))},
        "band_rows": list(core.chain.band_rows),
        "passes": len(core.chain.passes),
        "time_steps": case.steps,
        "on_chip_memory_bits": dict(sorted(core.memory_bits.items())),
        "regions": {
            "input": {"register": "INPUT_BASE", "bytes": case.steps * maps[0][2],
                      "file": f"{UNIT}_input.bin"},
            "output": {"register": "OUTPUT_BASE", "bytes": case.steps * maps[-1][2],
                       "file": f"{UNIT}_output.bin"},
            "scratch": {"register": "SCRATCH_BASE", "bytes": layout["scratch_bytes"]},
            **({"weights": {"register": "WEIGHT_BASE", "bytes": len(core.weight_image),
                            "file": weight_file}} if weight_file else {}),
            "alignment_bytes": p.data_width // 8,
        },
        "bytes_written_per_run": case.steps * sum(size for _, _, size in maps[1:]),
        # a run of the case's time steps, layer by layer (BandChain.traffic): what READ_BYTES
        # and WRITE_BYTES add up to, and each layer's floors
        "traffic_per_layer": core.chain.traffic(case.steps),
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with staged_directory(out) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
    return manifest


def main(argv=None) -> int:
    parser = Parser(prog="python -m rtl_gen.band", description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="four",
                        help="a chain case of sim.cases_bandlayer.CHAIN_CASES, or its JSON tuple "
                             "(default: four)")
    parser.add_argument("--weights", choices=("axi", "rom"), default="axi",
                        help="weights over AXI4 from WEIGHT_BASE (default) or in an on-chip ROM")
    parser.add_argument("--band-bits", type=int, default=None,
                        help="bits the accumulator bank and membranes may take together "
                             "(default: the case's band rows)")
    parser.add_argument("--weight-words", type=int, default=None,
                        help="depth of the weight RAM (--weights axi; default: the case's, or "
                             "the largest layer's)")
    parser.add_argument("--out", type=Path, default=Path("build/rtl-band"))
    parser.add_argument("--lint", action="store_true", help="lint the Verilog (Verilator -Wall)")
    parser.add_argument("--synth", action="store_true",
                        help="Yosys and nextpnr on --device (needs the 'synth' extra): "
                             "<out>-synth/synth.json and a line per seed")
    parser.add_argument("--device", default="ecp5-25k-6", choices=("ecp5-25k-6", "ecp5-85k-6"),
                        help="the device --synth places on (default ecp5-25k-6)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="nextpnr placement seeds with --synth (default 1 2 3)")
    args = parser.parse_args(argv)
    if args.weights == "rom" and args.weight_words is not None:
        parser.error("--weight-words bounds the weight RAM of --weights axi")
    for name in ("band_bits", "weight_words"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} {value}: must be >= 1")
    try:
        manifest = emit(args.case, args.out, weights=args.weights, band_bits=args.band_bits,
                        weight_words=args.weight_words)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bits = manifest["on_chip_memory_bits"]
    print(f"{args.out}/{UNIT}.v: {manifest['register_map']['parameters']['layers']} layers, "
          f"band rows {manifest['band_rows']}, {manifest['passes']} passes")
    print("on-chip memory bits: " + ", ".join(f"{k} {v}" for k, v in bits.items()) +
          f" (total {sum(bits.values())})")
    regions = manifest["regions"]
    for index, x in enumerate(manifest["traffic_per_layer"]):
        weights = (f"weights {x['weights']} B ({x['weights'] / x['weight_floor']:.2f}x their "
                   f"{x['weight_floor']}), " if x["weight_floor"] else "")
        print(f"layer {index}: {weights}maps read {x['read']} B "
              f"({x['read'] / x['read_floor']:.2f}x the input map), written {x['written']} B "
              f"({x['written'] / x['write_floor']:.2f}x the output map)")
    print("external memory bytes: " + ", ".join(
        f"{k} {v['bytes']}" for k, v in regions.items() if isinstance(v, dict)) +
        f"; written per run {manifest['bytes_written_per_run']}")
    if args.lint:
        from .lint import lint

        result = lint([args.out / f"{UNIT}.v"], UNIT)
        print(f"lint {UNIT}: {'clean' if result.ok else 'FAILED'}")
        if not result.ok:
            print(result.messages, file=sys.stderr)
            return 1
    if args.synth:
        return _synthesize(args)
    return 0


def _synthesize(args) -> int:
    """Place and route the emitted design point on ``args.device`` with each seed."""
    from . import synth

    missing = synth.available()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    workdir = args.out.parent / f"{args.out.name}-synth"
    report = synth.synthesize(
        UNIT, lambda: build(args.case, weights=args.weights, band_bits=args.band_bits,
                            weight_words=args.weight_words)[1],
        workdir, targets=("ecp5",), devices=(args.device,), seeds=tuple(args.seeds))
    data = report.as_dict()
    (workdir / "synth.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    for error in report.errors:
        print(f"synthesis error: {error}", file=sys.stderr)
    cells = report.cells.get("ecp5", {})
    print(f"ECP5 cells: LUT4 {cells.get('LUT4', '-')}, FF {cells.get('TRELLIS_FF', '-')}, "
          f"DP16KD {cells.get('DP16KD', 0)}, multipliers {report.multipliers.get('ecp5', '-')}")
    for seed, mhz in report.fmax_seeds.get(args.device, {}).items():
        print(f"{args.device} seed {seed}: {mhz} MHz")
    used = report.utilisation.get(args.device, {})
    print(f"{args.device} utilisation: " + ", ".join(f"{bel} {u}/{a}" for bel, (u, a)
                                                     in sorted(used.items())))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
