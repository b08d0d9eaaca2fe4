"""Print the parameter count of every paper ablation on the C=48 (31.3M) model.

``python -m golden params [--base 31M] [--json]``. Models are built on PyTorch's meta device, so no
memory is allocated and the whole table takes about a second.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from .config import ABLATIONS, ablation, variant
from .model import MetaSpikeFormer

__all__ = ["count_parameters", "ablation_table", "main"]

DESCRIPTIONS = {
    "baseline": "official model (SDSA-3, membrane shortcut, RepConv Q/K/V/proj)",
    "sdsa1": "SDSA-1: Q * SN(sum_N(K * V)) (V1 operator)",
    "sdsa2": "SDSA-2 (our interpretation): Q * SN(sum_N(K)), no V projection",
    "sdsa4": "SDSA-4: SDSA-3 with a learnable threshold per attention layer",
    "shortcut_vanilla": "vanilla shortcut: SN(branch + spikes), spike-valued stream",
    "shortcut_sew": "SEW shortcut: stream + SN(branch), integer spike counts",
    "qkv_linear": "RepConv-1/2/3 (Q/K/V) -> Linear (1x1 conv + BN)",
    "proj_linear": "RepConv-4 (projection) -> Linear (1x1 conv + BN)",
    "no_sepconv": "SepConv removed from the Conv-based blocks",
    "channel_mlp": "ChannelConv -> ChannelMLP in the Conv-based blocks",
    "stage1_2C_H4": "stage 1 as 2C at H/4 (stride-4 stem, no C@H/2 block)",
    "no_pyramid": "pyramid removed: stage 4 as wide as stage 3",
    "all_conv": "fully Conv-based (block3/block4 are Conv-based blocks)",
    "all_transformer": "fully Transformer-based (ConvBlocks are Transformer-based blocks)",
}


def count_parameters(cfg) -> int:
    """Return the number of parameters of a model of ``cfg`` (built on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in MetaSpikeFormer(cfg).parameters())


def ablation_table(base: str = "31M") -> list[dict]:
    """Return one row per ablation: name, description, parameters, change from the baseline."""
    base_cfg = variant(base)
    base_count = count_parameters(base_cfg)
    rows = []
    for name in ABLATIONS:
        count = count_parameters(ablation(name, base_cfg))
        rows.append(dict(ablation=name, description=DESCRIPTIONS.get(name, ""),
                         parameters=count, millions=round(count / 1e6, 1),
                         delta=count - base_count))
    return rows


def main(argv=None) -> int:
    """Run ``python -m golden params``."""
    ap = argparse.ArgumentParser(prog="python -m golden params", description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="31M", help="baseline variant (default 31M, C=48)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    rows = ablation_table(args.base)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"Parameters of each ablation on {variant(args.base).name} "
          f"(C={variant(args.base).stage_widths[0]}, no KD head)")
    print(f"{'ablation':<18} {'parameters':>12} {'M':>6} {'delta':>12}  description")
    for r in rows:
        print(f"{r['ablation']:<18} {r['parameters']:>12,} {r['millions']:>6.1f} "
              f"{r['delta']:>+12,}  {r['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
