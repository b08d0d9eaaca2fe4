"""Print the parameter count of every paper ablation on the C=48 (31.3M) model, beside the paper's.

``python -m golden params [--base 31M] [--json] [--readings]``. Models are built on PyTorch's meta
device, so no memory is allocated and the whole table takes about a second. ``--readings`` prints
the search over readings of the three Table-5 rows whose wording leaves the structure open
(``docs/ablations.md`` discusses it).
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
from dataclasses import dataclass

import torch

from .cliargs import Parser
from .config import ABLATIONS, ModelConfig, ablation, variant
from .model import MetaSpikeFormer, MS_ConvBlock, MS_DownSampling, SepConv

__all__ = ["count_parameters", "ablation_table", "PAPER_MILLIONS", "TOLERANCE", "Reading",
           "stage1_readings", "pyramid_readings", "conv_readings", "conv_grid", "main"]

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
    "stage1_2C_H4": "stage 1 as 2C at H/4 (our interpretation: stride-4 stem, both stage-1 "
                    "blocks at 2C)",
    "no_pyramid": "pyramid removed (our interpretation: stage 4 at stage 3's width, no "
                  "downsample4)",
    "all_conv": "fully Conv-based (block3/block4 are Conv-based blocks; paper's count not "
                "reproduced)",
    "all_transformer": "fully Transformer-based (ConvBlocks are Transformer-based blocks)",
}

# Parameter counts (millions) that the paper prints for the C=48 model. These are constants
# copied from the paper (Table 3 for the baseline, Table 5 for the ablations), not computed here.
# Ablations whose printed count this repository has not recorded are absent (shown as "-").
PAPER_MILLIONS = {
    "baseline": 31.3,
    "sdsa2": 28.6,
    "stage1_2C_H4": 31.8,
    "no_pyramid": 26.9,
    "all_conv": 36.0,
}

# A reading reproduces the paper's count when it is within this many parameters of it.
TOLERANCE = 150_000


def count_parameters(cfg) -> int:
    """Return the number of parameters of a model of ``cfg`` (built on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in MetaSpikeFormer(cfg).parameters())


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ablation_table(base: str = "31M") -> list[dict]:
    """Return one row per ablation: name, description, parameters, paper's count, differences."""
    base_cfg = variant(base)
    base_count = count_parameters(base_cfg)
    rows = []
    for name in ABLATIONS:
        count = count_parameters(ablation(name, base_cfg))
        paper = PAPER_MILLIONS.get(name) if base_cfg.name == "31M" else None
        rows.append(dict(ablation=name, description=DESCRIPTIONS.get(name, ""),
                         parameters=count, millions=round(count / 1e6, 2),
                         delta=count - base_count, paper_millions=paper,
                         minus_paper=None if paper is None else count - round(paper * 1e6)))
    return rows


# Readings of the three open Table-5 rows -------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One way to build a Table-5 row the paper describes in words, and its parameter count.

    ``assumes`` lists what the reading adds to the paper's words, ``()`` for none beyond the
    row's own statement; ``config`` is the :class:`ModelConfig` when the model can build it.
    """

    ablation: str
    label: str
    assumes: tuple
    parameters: int
    config: ModelConfig | None = None

    @property
    def minus_paper(self) -> int:
        """Return ``parameters`` minus the paper's printed count."""
        return self.parameters - round(PAPER_MILLIONS[self.ablation] * 1e6)

    @property
    def matches(self) -> bool:
        """Return whether the count is within ``TOLERANCE`` of the paper's."""
        return abs(self.minus_paper) <= TOLERANCE

    @property
    def rounds_to_paper(self) -> bool:
        """Return whether the count rounds to the paper's printed figure (0.1M)."""
        return round(self.parameters / 1e6, 1) == PAPER_MILLIONS[self.ablation]


def _base() -> ModelConfig:
    return variant("31M")


def stage1_readings() -> list[Reading]:
    """Return the readings of "stage 1 as 2C at H/4 (instead of C at H/2)" tried.

    Two choices: how the image reaches 2C channels at H/4 (a stride-4 stem; the official
    stride-2 stem to C and ``downsample1_2``; a stride-2 stem to 2C and a 3x3 stride-2 conv
    2C->2C), and how many blocks stage 1 keeps at 2C@H/4 (1, 2 as in the official stage 1, 3).
    """
    base = _base()
    d = base.depths
    c2 = base.stage_widths[1]
    rest = tuple(d[2:])
    rows = []
    for blocks in (1, 2, 3):
        block_note = () if blocks == d[0] + d[1] else (f"stage 1 holds {blocks} block(s), not "
                                                       f"{d[0] + d[1]}",)
        s4 = base.replace(stage1="2C@H/4", depths=(0, blocks) + rest).validate()
        rows.append(Reading("stage1_2C_H4", f"stride-4 stem to 2C, {blocks} block(s) at 2C",
                            ("7x7 stem with stride 4 straight to 2C",) + block_note,
                            count_parameters(s4), s4))
        kept = base.replace(depths=(0, blocks) + rest).validate()
        rows.append(Reading("stage1_2C_H4", f"official stem + downsample1_2, {blocks} block(s) "
                            f"at 2C", ("stem and downsample1_2 kept, nothing runs at H/2",)
                            + block_note, count_parameters(kept), kept))
        with torch.device("meta"):
            extra = _numel(MS_DownSampling(c2, c2, 3, 2, 1, False, base))
        rows.append(Reading("stage1_2C_H4", f"stride-2 stem to 2C + 3x3 s2 conv, {blocks} "
                            f"block(s) at 2C", ("7x7 stride-2 stem to 2C, then a 3x3 stride-2 "
                                                "conv 2C->2C",) + block_note,
                            count_parameters(s4) + extra))
    return rows


def pyramid_readings() -> list[Reading]:
    """Return the readings of "remove the pyramid (stage 4 as wide as stage 3)" tried.

    Choices: the one width (stage 3's 8C, or stage 4's 10C for both), whether ``downsample4``
    (stride 1, so only a width change) stays, and whether stage 4's two blocks stay.
    """
    base = _base()
    c2, c4, c8, last = base.embed_dim
    d = base.depths
    rows = []
    for width_label, changes in (("8C", dict(pyramid=False)),
                                 ("10C", dict(embed_dim=(c2, c4, last, last)))):
        for ds4 in (True, False):
            for stage4_blocks in (d[5], 0):
                assumes = []
                if width_label == "10C":
                    assumes.append("stage 3 widened to 10C instead of stage 4 narrowed")
                if not ds4:
                    assumes.append("no downsample4 (stage 3 flows into stage 4)")
                else:
                    assumes.append("downsample4 kept as a width-preserving 3x3 conv")
                if stage4_blocks != d[5]:
                    assumes.append("stage 4's blocks dropped")
                cfg = base.replace(downsample4=ds4, depths=tuple(d[:5]) + (stage4_blocks,),
                                   **changes).validate()
                label = (f"one width {width_label}, downsample4 {'kept' if ds4 else 'removed'}, "
                         f"{d[4]}+{stage4_blocks} blocks")
                rows.append(Reading("no_pyramid", label, tuple(assumes), count_parameters(cfg),
                                    cfg))
    return rows


@functools.lru_cache(maxsize=None)
def _conv_block(width: int, sepconv: int, mixer: str, ratio: int) -> int:
    """Parameters of one Conv-based block: SepConv with expansion ``sepconv`` (0: none), then
    ChannelConv (``mixer='conv'``, 3x3) or ChannelMLP (``'mlp'``) with hidden ``ratio * width``."""
    base = _base()
    with torch.device("meta"):
        count = _numel(MS_ConvBlock(width, base.replace(sepconv=False, channel_mixer=mixer,
                                                        mlp_ratio=ratio)))
        if sepconv:
            count += _numel(SepConv(width, base, expansion=sepconv))
    return count


@functools.lru_cache(maxsize=None)
def _skeleton(w3: int, w4: int) -> int:
    """Parameters of the baseline without block3/block4, with stage widths ``w3``, ``w4``."""
    base = _base()
    c2, c4 = base.embed_dim[:2]
    return count_parameters(base.replace(embed_dim=(c2, c4, w3, w4),
                                         depths=tuple(base.depths[:4]) + (0, 0)))


def conv_grid() -> list[Reading]:
    """Return the grid over readings of "fully Conv-based" (block3/block4 as Conv-based blocks).

    Grid: stage 3/4 widths from the paper's width set {2C, 4C, 8C, 10C} (stage 4 at least as
    wide as stage 3), block counts 0-6 in stage 3 and 0-2 in stage 4, SepConv with expansion 2
    (official), 1 or none, and the channel mixer ChannelConv 3x3 with ratio 4 (official), 3, 2, 1
    or ChannelMLP with ratio 8, 4, 2, 1. ``assumes`` lists every departure from the official
    Conv-based block at the official widths and depths.
    """
    base = _base()
    c = base.stage_widths[0]
    widths = [2 * c, 4 * c, 8 * c, 10 * c]
    w3_0, w4_0 = base.stage_widths[4:]
    n3_0, n4_0 = base.depths[4:]
    mixers = [("conv", r) for r in (4, 3, 2, 1)] + [("mlp", r) for r in (8, 4, 2, 1)]
    rows = []
    for w3, w4 in itertools.product(widths, widths):
        if w4 < w3:
            continue
        for sep, (mixer, ratio), n3, n4 in itertools.product((2, 1, 0), mixers, range(7),
                                                             range(3)):
            assumes = []
            if (w3, w4) != (w3_0, w4_0):
                assumes.append(f"stage 3/4 widths {w3 // c}C/{w4 // c}C")
            if (n3, n4) != (n3_0, n4_0):
                assumes.append(f"{n3}+{n4} blocks")
            if sep != 2:
                assumes.append("no SepConv" if sep == 0 else f"SepConv expansion {sep}")
            if mixer == "mlp":
                assumes.append(f"ChannelMLP ratio {ratio}")
            elif ratio != base.mlp_ratio:
                assumes.append(f"ChannelConv ratio {ratio}")
            count = (_skeleton(w3, w4) + n3 * _conv_block(w3, sep, mixer, ratio)
                     + n4 * _conv_block(w4, sep, mixer, ratio))
            rows.append(Reading("all_conv", "grid", tuple(assumes), count))
    return rows


def conv_readings() -> list[Reading]:
    """Return the named readings of "fully Conv-based" (each one a config the model builds)."""
    base = _base()
    named = [
        ("Conv-based blocks everywhere (official block)", (), dict(block_types="conv")),
        ("ConvFormer: SepConv + ChannelMLP everywhere", ("ChannelMLP in every block",),
         dict(block_types="conv", channel_mixer="mlp")),
        ("Conv-based blocks, ChannelConv ratio 1 everywhere", ("ChannelConv ratio 1",),
         dict(block_types="conv", mlp_ratio=1)),
        ("Conv-based blocks without SepConv, ratio 1", ("no SepConv", "ChannelConv ratio 1"),
         dict(block_types="conv", mlp_ratio=1, sepconv=False)),
        ("Conv-based blocks, 2+0 blocks in stages 3/4", ("2+0 blocks",),
         dict(block_types="conv", depths=tuple(base.depths[:4]) + (2, 0))),
        ("Conv-based blocks, 1+1 blocks in stages 3/4", ("1+1 blocks",),
         dict(block_types="conv", depths=tuple(base.depths[:4]) + (1, 1))),
    ]
    rows = []
    for label, assumes, changes in named:
        cfg = base.replace(**changes).validate()
        rows.append(Reading("all_conv", label, assumes, count_parameters(cfg), cfg))
    # Stage 3/4 only: ConvFormer blocks (SDSA -> SepConv, ChannelMLP kept), by composition.
    c8, last = base.stage_widths[4:]
    n3, n4 = base.depths[4:]
    convformer = (_skeleton(c8, last) + n3 * _conv_block(c8, 2, "mlp", base.mlp_ratio)
                  + n4 * _conv_block(last, 2, "mlp", base.mlp_ratio))
    rows.insert(2, Reading("all_conv", "stages 3/4 as ConvFormer blocks (SDSA -> SepConv)",
                           ("ChannelMLP kept in stages 3/4",), convformer))
    return rows


def _format_readings(rows: list[Reading]) -> list[str]:
    out = []
    for r in rows:
        flag = "within 0.15M" if r.matches else ""
        out.append(f"  {r.parameters:>12,} {r.parameters / 1e6:>7.2f} {r.minus_paper / 1e6:>+8.2f}"
                   f"  {flag:<12}  {r.label}")
    return out


def readings_report() -> str:
    """Return the text of ``python -m golden params --readings``."""
    lines = []
    for name, rows in (("stage1_2C_H4", stage1_readings()), ("no_pyramid", pyramid_readings()),
                       ("all_conv", conv_readings())):
        lines.append(f"{name} (paper {PAPER_MILLIONS[name]}M): parameters, M, minus paper (M)")
        lines += _format_readings(rows)
    grid = conv_grid()
    hits = sorted((r for r in grid if r.matches), key=lambda r: (len(r.assumes), r.parameters))
    lines.append(f"all_conv grid: {len(grid)} readings, {len(hits)} within 0.15M of the paper")
    for r in hits:
        lines.append(f"  {r.parameters:>12,} {r.minus_paper / 1e6:>+6.2f}  {len(r.assumes)} "
                     f"assumptions: {'; '.join(r.assumes)}")
    lines.append("all_conv grid: closest reading with k assumptions")
    for k in range(max(len(r.assumes) for r in grid) + 1):
        best = min((r for r in grid if len(r.assumes) == k), key=lambda r: abs(r.minus_paper))
        lines.append(f"  k={k}: {best.parameters:>12,} {best.minus_paper / 1e6:>+7.2f}  "
                     f"{'; '.join(best.assumes) or 'official block, widths, depths'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run ``python -m golden params``."""
    ap = Parser(prog="python -m golden params", description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="31M", help="baseline variant (default 31M, C=48)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--readings", action="store_true",
                    help="print the readings tried for the three open Table-5 rows")
    args = ap.parse_args(argv)
    if args.readings:
        print(readings_report())
        return 0
    rows = ablation_table(args.base)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"Parameters of each ablation on {variant(args.base).name} "
          f"(C={variant(args.base).stage_widths[0]}, no KD head); paper: Table 3/5 of the paper")
    print(f"{'ablation':<18} {'parameters':>12} {'M':>7} {'paper M':>7} {'ours-paper':>10} "
          f"{'delta':>12}  description")
    for r in rows:
        paper = "-" if r["paper_millions"] is None else f"{r['paper_millions']:.1f}"
        diff = "-" if r["minus_paper"] is None else f"{r['minus_paper'] / 1e6:+.2f}M"
        print(f"{r['ablation']:<18} {r['parameters']:>12,} {r['millions']:>7.2f} {paper:>7} "
              f"{diff:>10} {r['delta']:>+12,}  {r['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
