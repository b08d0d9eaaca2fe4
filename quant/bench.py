"""Measure the quantized network: accuracy, agreement, speed, and the 55M export.

``python -m quant.bench accuracy --ckpt golden/checkpoints/demo.pth`` prints float vs integer
accuracy, top-1 agreement and per-layer spike agreement at 8, 6 and 4 bits on the demo data.
``python -m quant.bench speed`` times the integer golden model against the float forward (demo and
55M at 224, T=1). ``python -m quant.bench export55m`` quantizes a random-weight 55M checkpoint in
the official layout through the CLI and reports time and peak memory.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time

import torch

from golden.cliargs import Parser

__all__ = ["accuracy_table", "speed", "export_55m", "main"]


def _demo_range(cfg):
    # Demo pixels are k/16, k = 0..16: 8-bit codes of step 1/16 represent them exactly.
    return (0.0, 255 / 16) if cfg.in_channels == 1 else (-2.2, 2.7)


def accuracy_table(ckpt: str, bits_list=(8, 6, 4), batch: int = 120, limit: int | None = None,
                   fuse_sepconv: bool = True) -> list[dict]:
    """Return one row per weight width: accuracies, top-1 agreement, spike agreement per layer."""
    from golden.checkpoint import load_checkpoint
    from golden.data import digits_dataset
    from .intmodel import IntegerModel
    from .quantize import quantize_model

    model = load_checkpoint(ckpt).eval()
    cfg = model.cfg
    data = digits_dataset(cfg.img_size, "test", 0)
    x, y = data.tensors
    if limit:
        x, y = x[:limit], y[:limit]
    with torch.no_grad():
        float_pred, float_spikes = [], {}
        for i in range(0, len(x), batch):
            logits, spikes = model(x[i:i + batch], trace=True)
            float_pred.append(logits.argmax(1))
            for k, v in spikes.items():
                float_spikes.setdefault(k, []).append(v.to(torch.uint8))
    float_pred = torch.cat(float_pred)
    float_spikes = {k: torch.cat(v, 1) for k, v in float_spikes.items()}
    rows = []
    for bits in bits_list:
        int_model = IntegerModel(quantize_model(model, bits, 8, _demo_range(cfg),
                                                fuse_sepconv=fuse_sepconv))
        preds, agree = [], {k: 0 for k in float_spikes}
        for i in range(0, len(x), batch):
            logits, trace = int_model(x[i:i + batch], trace=True)
            preds.append(logits.argmax(1))
            for k in agree:
                agree[k] += (trace.spikes[k] == float_spikes[k][:, i:i + batch]).sum().item()
        pred = torch.cat(preds)
        layer_agreement = {k: agree[k] / float_spikes[k].numel() for k in agree}
        rows.append({
            "bits": bits, "float_acc": (float_pred == y).float().mean().item(),
            "int_acc": (pred == y).float().mean().item(),
            "top1_agreement": (pred == float_pred).float().mean().item(),
            "spike_agreement_mean": sum(layer_agreement.values()) / len(layer_agreement),
            "spike_agreement_min": min(layer_agreement.values()),
            "worst_layer": min(layer_agreement, key=layer_agreement.get),
            "per_layer": layer_agreement, "samples": len(x)})
    return rows


def _time(fn, reps: int) -> float:
    fn()                                  # warm-up: allocator and kernel selection
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def speed(name: str, img_size: int | None = None, batch: int = 1, reps: int = 3,
          threads: int = 1) -> dict:
    """Time float forward vs integer golden forward (no trace) on a random-weight model."""
    from golden.config import variant
    from golden.model import MetaSpikeFormer
    from .intmodel import IntegerModel
    from .quantize import quantize_model

    torch.set_num_threads(threads)
    overrides = {"T": 1} if img_size is None else {"T": 1, "img_size": img_size}
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant(name, **overrides)).eval()
    # Make the random network fire like a trained one (default init is nearly silent).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
                m.weight.mul_(3.0)
    cfg = model.cfg
    x = torch.randn(batch, cfg.in_channels, cfg.img_size, cfg.img_size)
    int_model = IntegerModel(quantize_model(model, 8, 8, (-2.2, 2.7)))
    with torch.no_grad():
        t_float = _time(lambda: model(x), reps)
    t_int = _time(lambda: int_model(x), reps)
    return {"model": name, "img_size": cfg.img_size, "batch": batch, "threads": threads,
            "float_s": t_float, "int_s": t_int, "ratio": t_int / t_float}


def export_55m(workdir: str | None = None) -> dict:
    """Quantize a random 55M model saved in the official layout, through the CLI."""
    from golden.config import variant
    from golden.model import MetaSpikeFormer
    from .cli import main as cli_main

    torch.set_num_threads(1)
    work = workdir or tempfile.mkdtemp(prefix="quant55m-")
    ckpt = os.path.join(work, "55M_kd_random.pth")
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("55M", kd_head=True))
    # The released layout: {'model': state_dict, ...training extras}, no 'config'.
    torch.save({"model": model.state_dict(), "epoch": 0}, ckpt)
    del model
    out = os.path.join(work, "images")
    start = time.perf_counter()
    status = cli_main([ckpt, "--out", out])
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) if status == 0 \
        else 0
    return {"status": status, "seconds": elapsed, "peak_rss_mib": peak_kib / 1024,
            "output_mib": size / 2 ** 20, "out": out}


def main(argv=None) -> int:
    """Run one of the benchmarks and print its table."""
    p = Parser(prog="python -m quant.bench")
    p.add_argument("what", choices=["accuracy", "speed", "export55m"])
    p.add_argument("--ckpt", default="golden/checkpoints/demo.pth")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-fuse-sepconv", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "accuracy":
        rows = accuracy_table(args.ckpt, args.bits, fuse_sepconv=not args.no_fuse_sepconv)
        print("| bits | float acc | int acc | top-1 agreement | spike agreement mean | min "
              "(layer) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['bits']} | {r['float_acc']:.4f} | {r['int_acc']:.4f} | "
                  f"{r['top1_agreement']:.4f} | {r['spike_agreement_mean']:.4f} | "
                  f"{r['spike_agreement_min']:.4f} ({r['worst_layer']}) |")
        print(f"({rows[0]['samples']} test images)")
    elif args.what == "speed":
        for name, size in (("demo", None), ("55M", 224)):
            r = speed(name, size, threads=args.threads)
            print(f"{name} @ {r['img_size']}, T=1, batch 1, {r['threads']} thread(s): float "
                  f"{r['float_s'] * 1e3:.1f} ms, integer {r['int_s'] * 1e3:.1f} ms, "
                  f"ratio {r['ratio']:.2f}")
    else:
        r = export_55m()
        print(f"55M export: status {r['status']}, {r['seconds']:.1f} s, peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB, output {r['output_mib']:.0f} MiB in {r['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
