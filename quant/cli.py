"""Quantize a checkpoint and export its memory images: ``python -m quant.cli CKPT --out DIR``.

Works on the official checkpoint layouts and on this project's own (``golden.checkpoint``). The
output directory receives one ``.hex`` per memory, ``manifest.json`` and ``report.json`` (widths
per layer); it is created whole or not at all.
"""

from __future__ import annotations

import os
import sys
import time

from golden.cliargs import Parser

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    """Return the command-line parser."""
    p = Parser(prog="python -m quant.cli", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="official .pth, project .pth or .safetensors")
    p.add_argument("--out", required=True, help="output directory (must not exist)")
    p.add_argument("--bits", type=int, default=8, help="weight bits, 2..16 (default 8)")
    p.add_argument("--pixel-bits", type=int, default=8, help="stem input code bits (default 8)")
    p.add_argument("--pixel-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="real input range; default: [0, 255/16] for the demo data (codes = raw "
                        "digit pixels), else ImageNet normalized [-2.2, 2.7]")
    p.add_argument("--variant", default=None,
                   help="model variant (15M, 31M, 55M, demo, tiny); default: from the "
                        "checkpoint's config or its shapes")
    p.add_argument("--T", type=int, default=None, help="time steps (default: the config's)")
    p.add_argument("--img-size", type=int, default=None, help="input side (default: config's)")
    p.add_argument("--no-fuse-sepconv", action="store_true",
                   help="keep SepConv's depthwise and pointwise convs apart (multiplies)")
    p.add_argument("--coe", action="store_true", help="also write Xilinx .coe files")
    return p


def main(argv=None) -> int:
    """Run the CLI; return the exit status (errors print one clear line, status 2)."""
    args = build_parser().parse_args(argv)
    from . import MAX_BITS, MIN_BITS  # no torch yet: argument errors are quick
    for flag, value in (("--bits", args.bits), ("--pixel-bits", args.pixel_bits)):
        if not MIN_BITS <= value <= MAX_BITS:
            print(f"error: {flag} {value} is out of range {MIN_BITS}..{MAX_BITS}", file=sys.stderr)
            return 2
    for flag, value in (("--T", args.T), ("--img-size", args.img_size)):
        if value is not None and value < 1:
            print(f"error: {flag} {value} is out of range: at least 1", file=sys.stderr)
            return 2
    if os.path.exists(args.out):
        print(f"error: output directory {args.out} already exists", file=sys.stderr)
        return 2
    if not os.path.exists(args.checkpoint):
        print(f"error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    import torch
    from golden.checkpoint import load_checkpoint
    from .images import export
    from .quantize import QuantizationError, quantize_model
    torch.set_num_threads(min(4, torch.get_num_threads()))
    overrides = {k: v for k, v in (("T", args.T), ("img_size", args.img_size)) if v is not None}
    start = time.perf_counter()
    try:
        model = load_checkpoint(args.checkpoint, args.variant, **overrides)
        pixel_range = args.pixel_range  # None: default_pixel_range of the model's config
        if model.cfg.events and pixel_range is not None:
            raise ValueError(f"--pixel-range: checkpoint {args.checkpoint} is an event model "
                             "(its input is spikes, it has no pixel codes)")
        try:
            net = quantize_model(model, args.bits, args.pixel_bits, pixel_range,
                                 fuse_sepconv=not args.no_fuse_sepconv)
        except QuantizationError as exc:
            raise QuantizationError(f"checkpoint {args.checkpoint}: {exc}") from exc
        manifest = export(net, args.out, coe=args.coe, report=net.report())
    except (ValueError, OverflowError, OSError, RuntimeError) as exc:
        # CheckpointError and QuantizationError are ValueErrors; nothing has been written.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    rows = net.report()
    widest = max((r.get("acc_bits", 0) for r in rows))
    kind = ", event input: no pixel codes" if model.cfg.events else ""
    print(f"quantized {args.checkpoint} ({model.cfg.name}{kind}, {args.bits}-bit weights) -> "
          f"{args.out}: {len(manifest['memories'])} memories, widest accumulator {widest} bits, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
