"""Train a small Meta-SpikeFormer on the digits data with surrogate gradients.

This produces the demo checkpoint ``golden/checkpoints/demo.pth`` that ``quant/`` and the
simulators use. The exact command and the result are recorded in ``docs/golden.md``::

    python -m golden train --variant demo --out golden/checkpoints/demo.pth

An event model (``cfg.events``, e.g. ``--variant demo_dvs``) trains on the same digits seen by a
simulated event camera (:func:`golden.events.event_digits`); ``docs/events.md`` has its command.

Runs are reproducible: seeded initialisation, shuffling and augmentation, one CPU thread by default.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .cliargs import Parser
from .config import variant
from .data import digits_dataset
from .model import MetaSpikeFormer
from .progress import bar

__all__ = ["train", "evaluate", "wake_attention", "main"]


def _model_input(model: MetaSpikeFormer, x: torch.Tensor) -> torch.Tensor:
    """Return a batch as the model takes it: event frames ``[B, T, ...]`` become ``[T, B, ...]``."""
    return x.transpose(0, 1).contiguous() if model.cfg.events else x


def evaluate(model: MetaSpikeFormer, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> float:
    """Return the top-1 accuracy of ``model`` (eval mode) on ``x``, ``y``.

    ``x`` is batch first: images ``[N, C, H, W]``, or event frames ``[N, T, 2, H, W]`` for an
    event model (as :func:`golden.events.event_digits` returns them).
    """
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            out = model(_model_input(model, x[i:i + batch_size]))
            correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def _shift(x: torch.Tensor, max_shift: int, step: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each sample by a random multiple of ``step`` pixels, filling with zeros.

    ``x`` is ``[N, C, H, W]`` or ``[N, T, C, H, W]`` (event frames: all T frames of a sample move
    alike, and 0/1 values stay 0/1). Multiples of the upscaling factor keep the images on the
    digits' coarse pixel grid.
    """
    if max_shift == 0:
        return x
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    pad = max_shift * step
    padded = F.pad(x, [pad] * 4)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen) * step
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(shifts[i, 0]) + pad, int(shifts[i, 1]) + pad
        out[i] = padded[i, ..., dy:dy + h, dx:dx + w]
    return out


def wake_attention(model: MetaSpikeFormer, bias: float = 2.0) -> None:
    """Set the bias of the BN after each Q/K/V projection so ``q/k/v_lif`` fire often at init.

    Why: in a small model ``attn_lif`` is silent at initialisation (it needs a count
    ``Q_S K_S^T V_S >= 8``, and sparse Q/K/V rarely reach it). ``proj_conv`` then sees an all-zero
    batch, its three training-mode BNs see zero variance and each has a gain of
    ``gamma / sqrt(eps)`` (about 316) in the backward pass: a 3e7 gradient from a dead path swamps
    everything upstream and nothing learns. A BN bias of 2 makes Q/K/V fire about half the time, so
    attention is alive from the first step. It changes the initial values only, not the
    architecture or the state-dict layout.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("attn.q_conv.1", "attn.k_conv.1", "attn.v_conv.1")):
                module.bias.fill_(bias)


def train(cfg, epochs: int = 30, batch_size: int = 64, lr: float = 3e-3,
          weight_decay: float = 0.02, label_smoothing: float = 0.05, max_shift: int = 1,
          seed: int = 0, data_seed: int = 0, qkv_bn_bias: float = 2.0, log=print,
          event_seed: int = 0):
    """Train a model of ``cfg`` on digits and return ``(model, history)``.

    Parameters
    ----------
    cfg : ModelConfig
        Must have ``in_channels=1`` (or ``2`` with ``events=True``: the digits as event frames
        from :func:`golden.events.event_digits`), ``num_classes=10`` and an ``img_size``
        multiple of 8.
    epochs, batch_size, lr, weight_decay, label_smoothing
        AdamW with a one-epoch linear warm-up, then cosine decay to zero.
    max_shift : int
        Random translation of up to this many original (8x8) pixels per axis.
    qkv_bn_bias : float
        Initial bias of the BN after each Q/K/V projection (see :func:`wake_attention`).
    seed, data_seed
        Seed of initialisation, shuffling and augmentation; seed of the train/test split.
    event_seed : int
        Seed of the simulated event camera (event models only).
    log : callable
        Receives one progress line per epoch.
    """
    channels = 2 if cfg.events else 1
    if cfg.in_channels != channels or cfg.num_classes != 10:
        raise ValueError(f"digits need in_channels={channels} and num_classes=10, got "
                         f"{cfg.in_channels} and {cfg.num_classes}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if cfg.events:
        from .events import event_digits
        x_train, y_train, x_test, y_test = event_digits(cfg.T, cfg.img_size, event_seed,
                                                        data_seed)
    else:
        x_train, y_train = digits_dataset(cfg.img_size, "train", data_seed).tensors
        x_test, y_test = digits_dataset(cfg.img_size, "test", data_seed).tensors
    model = MetaSpikeFormer(cfg)
    wake_attention(model, qkv_bn_bias)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    step_px = cfg.img_size // 8
    history = []
    start = time.time()
    steps = bar(total=total, desc=f"training {cfg.name}", unit="batch")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), batch_size):
            steps.update()
            idx = order[i:i + batch_size]
            xb, yb = _shift(x_train[idx], max_shift, step_px, gen), y_train[idx]
            out = model(_model_input(model, xb))
            logits = out if isinstance(out, torch.Tensor) else out[0]
            if isinstance(out, tuple):
                # A KD head without a teacher learns the labels too.
                loss = sum(F.cross_entropy(o, yb, label_smoothing=label_smoothing)
                           for o in out) / len(out)
            else:
                loss = F.cross_entropy(out, yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        test_acc = evaluate(model, x_test, y_test)
        row = dict(epoch=epoch, loss=loss_sum / len(y_train), train_acc=correct / len(y_train),
                   test_acc=test_acc, seconds=time.time() - start)
        history.append(row)
        with steps.external_write_mode():  # the log line above the bar, not through it
            log(f"epoch {epoch:3d}/{epochs}  loss {row['loss']:.4f}  train acc "
                f"{row['train_acc']:.4f}  test acc {test_acc:.4f}  ({row['seconds']:.0f} s)")
    steps.close()
    return model, history


def main(argv=None) -> int:
    """Run the training command line; see ``python -m golden train --help``."""
    ap = Parser(prog="python -m golden train",
                                 description="Train a small Meta-SpikeFormer on digits "
                                 "(surrogate gradients, CPU) and save an official-format "
                                 "checkpoint.")
    ap.add_argument("--variant", default="demo", help="base configuration (default: demo)")
    ap.add_argument("--embed-dim", type=int, nargs=4, help="override embed_dim (2C 4C 8C last)")
    ap.add_argument("--depths", type=int, nargs=6, help="override the six block counts")
    ap.add_argument("--heads", type=int, help="override num_heads")
    ap.add_argument("--img-size", type=int, help="override img_size (multiple of 16)")
    ap.add_argument("--T", type=int, help="override the time steps")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override any config field, e.g. --set sdsa=1 --set sepconv=false")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.02)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--max-shift", type=int, default=1,
                    help="random translation in original 8x8 pixels")
    ap.add_argument("--qkv-bn-bias", type=float, default=2.0,
                    help="initial bias of the BN after Q/K/V (keeps attention alive at init)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split")
    ap.add_argument("--event-seed", type=int, default=0,
                    help="seed of the simulated event camera (event models only)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", help="checkpoint path (.pth or .safetensors)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {}
    if args.embed_dim:
        overrides["embed_dim"] = tuple(args.embed_dim)
    if args.depths:
        overrides["depths"] = tuple(args.depths)
    for name, value in (("num_heads", args.heads), ("img_size", args.img_size), ("T", args.T)):
        if value is not None:
            overrides[name] = value
    for item in args.set:
        field, _, value = item.partition("=")
        overrides[field] = json.loads(value)
    cfg = variant(args.variant, **overrides)
    n_params = sum(p.numel() for p in MetaSpikeFormer(cfg).parameters())
    print(f"training {cfg.name}: embed_dim={cfg.embed_dim} depths={cfg.depths} "
          f"heads={cfg.num_heads} img={cfg.img_size} T={cfg.T}"
          f"{' events' if cfg.events else ''}, {n_params:,} parameters, "
          f"{args.threads} thread(s)", flush=True)
    model, history = train(cfg, args.epochs, args.batch_size, args.lr, args.weight_decay,
                           args.label_smoothing, args.max_shift, args.seed, args.data_seed,
                           args.qkv_bn_bias,
                           log=lambda line: print(line, flush=True), event_seed=args.event_seed)
    final = history[-1]
    print(f"final held-out accuracy {final['test_acc']:.4f} "
          f"({round(final['test_acc'] * 360)}/360 if the default split), "
          f"{final['seconds']:.0f} s")
    if args.out:
        command = "python -m golden train " + " ".join(shlex.quote(a) for a in
                                                       (argv if argv is not None
                                                        else sys.argv[1:]))
        save_checkpoint(model, args.out, test_accuracy=final["test_acc"],
                        train_seconds=round(final["seconds"], 1), epochs=args.epochs,
                        command=command, torch_version=str(torch.__version__))
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
