"""Benchmark the golden model's CPU forward pass: time and peak memory.

``python -m golden bench [--variant 55M] [--batch 1 8] [--T 1] [--threads 1] [--repeats 3]``

Each (batch) point runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its
own; the time is the best of ``--repeats`` eval-mode forward passes under ``torch.no_grad`` after
one warm-up. ``--official DIR`` also times the official model (built from ``DIR``'s loader module,
which must expose ``official``, the official ``models.py``, with spikingjelly on the torch
backend) on the same weights and input, checks the outputs agree, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .cliargs import Parser

__all__ = ["run_point", "main"]


def run_point(variant_name: str, batch: int, T: int, threads: int, repeats: int,
              official_dir: str | None, which: str) -> dict:
    """Time one configuration in this process and return a result dict (``which``: model)."""
    import resource
    import time

    import torch

    from .config import variant
    from .model import MetaSpikeFormer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = variant(variant_name, T=T)
    model = MetaSpikeFormer(cfg).eval()
    if which == "official":
        sys.path.insert(0, official_dir)
        import importlib
        official = importlib.import_module("load_official")
        ref = official.official.Spiking_vit_MetaFormer(
            img_size_h=cfg.img_size, img_size_w=cfg.img_size, patch_size=16,
            in_channels=cfg.in_channels, num_classes=cfg.num_classes,
            embed_dim=list(cfg.embed_dim), num_heads=cfg.num_heads, mlp_ratios=cfg.mlp_ratio,
            depths=8, sr_ratios=1, kd=cfg.kd_head)
        ref.load_state_dict(model.state_dict())
        ref.T = T
        ref.eval()
        reset = official.functional.reset_net
        golden_model, model = model, ref
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, cfg.in_channels, cfg.img_size, cfg.img_size), generator=gen)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            if which == "official":
                reset(model)
            start = time.perf_counter()
            out = model(x)
            times.append(time.perf_counter() - start)
        agree = None
        if which == "official":
            agree = bool(torch.equal(out, golden_model(x)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(model=which, variant=cfg.name, batch=batch, T=T, threads=threads,
                best_s=min(times[1:]), first_s=times[0], peak_rss_mb=round(peak_mb, 1),
                outputs_equal_golden=agree)


def main(argv=None) -> int:
    """Run ``python -m golden bench``."""
    ap = Parser(prog="python -m golden bench", description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="55M")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--T", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--official", help="folder with load_official.py (scratch; not in the repo)")
    ap.add_argument("--point", help=argparse.SUPPRESS)  # internal: run one point, print JSON
    args = ap.parse_args(argv)
    if args.point:
        which, batch = args.point.split(":")
        print(json.dumps(run_point(args.variant, int(batch), args.T, args.threads, args.repeats,
                                   args.official, which)))
        return 0
    results = []
    for batch in args.batch:
        for which in (["golden", "official"] if args.official else ["golden"]):
            cmd = [sys.executable, "-m", "golden", "bench", "--variant", args.variant,
                   "--T", str(args.T), "--threads", str(args.threads), "--repeats",
                   str(args.repeats), "--point", f"{which}:{batch}"]
            if args.official:
                cmd += ["--official", args.official]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"{row['model']:<8} {row['variant']} batch {row['batch']} T={row['T']} "
                  f"threads {row['threads']}: best {row['best_s']:.3f} s "
                  f"(first {row['first_s']:.3f} s), peak RSS {row['peak_rss_mb']:.0f} MB"
                  + ("" if row["outputs_equal_golden"] is None else
                     f", outputs equal golden: {row['outputs_equal_golden']}"), flush=True)
    if args.official:
        for batch in args.batch:
            g = next(r for r in results if r["batch"] == batch and r["model"] == "golden")
            o = next(r for r in results if r["batch"] == batch and r["model"] == "official")
            print(f"batch {batch}: golden/official time ratio {g['best_s'] / o['best_s']:.3f}, "
                  f"peak memory ratio {g['peak_rss_mb'] / o['peak_rss_mb']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
