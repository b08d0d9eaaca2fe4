"""Configuration of a Meta-SpikeFormer: widths, depths, sizes, time steps and ablation switches.

One frozen dataclass, :class:`ModelConfig`, describes a design point; ``quant/``, ``hw/`` and the
reports read the same object. :func:`variant` returns the paper's models and the small ones used by
tests and the demo.

Widths follow the official code's ``embed_dim``, four numbers ``(2C, 4C, 8C, last)``: the stage
widths are ``C = embed_dim[0] // 2`` (stem and ``ConvBlock1_1``), ``embed_dim[0] = 2C``
(``ConvBlock1_2``), ``embed_dim[1] = 4C`` (stage 2), ``embed_dim[2] = 8C`` (``block3``) and
``embed_dim[3]`` (``block4``, the head's input).

``depths`` gives the length of each of the official ``nn.ModuleList`` s, in order
``(ConvBlock1_1, ConvBlock1_2, ConvBlock2_1, ConvBlock2_2, block3, block4)``; the official
models use ``(1, 1, 1, 1, 6, 2)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["ModelConfig", "variant", "VARIANTS", "ABLATIONS", "ablation", "STAGE_NAMES"]

STAGE_NAMES = ("ConvBlock1_1", "ConvBlock1_2", "ConvBlock2_1", "ConvBlock2_2", "block3", "block4")

_SDSA = (1, 2, 3, 4)
_SHORTCUTS = ("membrane", "sew", "vanilla")
_PROJECTIONS = ("repconv", "linear")
_MIXERS = ("conv", "mlp")
_STAGE1 = ("C@H/2", "2C@H/4")
_BLOCK_TYPES = ("mixed", "conv", "transformer")


@dataclass(frozen=True)
class ModelConfig:
    """Describe one Meta-SpikeFormer design point.

    Members
    -------
    embed_dim : tuple of 4 int
        Official ``embed_dim``: ``(2C, 4C, 8C, last)``. Stage-1 width is ``embed_dim[0] // 2``.
    depths : tuple of 6 int
        Blocks in ``ConvBlock1_1, ConvBlock1_2, ConvBlock2_1, ConvBlock2_2, block3, block4``.
    num_heads : int
        Attention heads in every Transformer-based block (8 in all official models).
    mlp_ratio : int
        Hidden expansion of ChannelConv and ChannelMLP (4 in the official code).
    img_size : int
        Square input side in pixels.
    in_channels : int
        Input image channels.
    num_classes : int
        Classifier outputs.
    T : int
        Time steps; the image is repeated T times.
    kd_head : bool
        Build ``head_kd`` (the distillation head of the released ImageNet checkpoints).
    sdsa : int
        Spike-driven self-attention operator 1, 2, 3 (official) or 4. See ``docs/sdsa-variants.md``.
    shortcut : str
        ``'membrane'`` (official), ``'sew'`` or ``'vanilla'``.
    qkv : str
        Q/K/V projections: ``'repconv'`` (official) or ``'linear'`` (1x1 conv + BN).
    proj : str
        Attention output projection: ``'repconv'`` (official) or ``'linear'``.
    sepconv : bool
        Keep SepConv in the Conv-based blocks (official: True).
    channel_mixer : str
        Conv-based blocks' channel mixer: ``'conv'`` (ChannelConv, official) or ``'mlp'``.
    stage1 : str
        ``'C@H/2'`` (official) or ``'2C@H/4'``: a stride-4 stem straight to ``2C`` channels, with
        no ``ConvBlock1_1`` and no ``downsample1_2``.
    pyramid : bool
        False makes stage 4 as wide as stage 3 (``embed_dim[3]`` is replaced by ``embed_dim[2]``).
    downsample4 : bool
        Build ``downsample4`` (official: True, a stride-1 3x3 conv from stage 3's width to stage
        4's). False leaves it out, so ``block3``'s residual stream flows straight into ``block4``;
        allowed only when both stages have the same width (``pyramid=False``). The Table-5
        "no pyramid" reading (``ablation('no_pyramid')``, see ``docs/ablations.md``) uses it.
        ``quant.graph.stage_order`` leaves it out too, so the folded, integer and hardware
        programs follow (``tests/test_quant_fold.py`` checks the fold against this model).
    block_types : str
        ``'mixed'`` (official: Conv-based stages 1-2, Transformer-based stages 3-4), ``'conv'``
        (all Conv-based) or ``'transformer'`` (all Transformer-based). Module names are kept.
    attn_scale : float
        Factor applied to ``Q_S K_S^T V_S`` in SDSA-3/4 (0.125 in the official code).
    attn_threshold : float
        Threshold of ``attn_lif`` (0.5 in the official code; also SDSA-1/2's neuron).
    events : bool
        The input is binary ON/OFF event frames ``[T, B, 2, H, W]`` (one frame per time step,
        channel 0 OFF, channel 1 ON; see ``golden/events.py``); the first layer then acts on
        spikes. Needs ``in_channels=2``. Changes no parameter or state-dict key; the forward pass
        refuses a 4-D image (nothing is repeated over T) and any value other than 0 or 1.
    """

    embed_dim: tuple = (96, 192, 384, 480)
    depths: tuple = (1, 1, 1, 1, 6, 2)
    num_heads: int = 8
    mlp_ratio: int = 4
    img_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    T: int = 1
    kd_head: bool = False
    sdsa: int = 3
    shortcut: str = "membrane"
    qkv: str = "repconv"
    proj: str = "repconv"
    sepconv: bool = True
    channel_mixer: str = "conv"
    stage1: str = "C@H/2"
    pyramid: bool = True
    downsample4: bool = True
    block_types: str = "mixed"
    attn_scale: float = 0.125
    attn_threshold: float = 0.5
    events: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        # Lists from JSON or callers become tuples so the config stays hashable and frozen.
        object.__setattr__(self, "embed_dim", tuple(self.embed_dim))
        object.__setattr__(self, "depths", tuple(self.depths))

    # Derived sizes -------------------------------------------------------------------------
    @property
    def stage_widths(self) -> tuple:
        """Return the widths of the six block lists, in ``STAGE_NAMES`` order."""
        c2, c4, c8, last = self.embed_dim
        if not self.pyramid:
            last = c8
        return (c2 // 2, c2, c4, c4, c8, last)

    @property
    def last_width(self) -> int:
        """Return the width of the head's input."""
        return self.stage_widths[-1]

    @property
    def total_stride(self) -> int:
        """Return the input-to-stage-3 downsampling factor (16)."""
        return 16

    @property
    def stage_sizes(self) -> tuple:
        """Return the spatial side of each of the six block lists."""
        s = self.img_size
        return (s // 2, s // 4, s // 8, s // 8, s // 16, s // 16)

    def map_sides(self) -> dict:
        """Return the side of the square map each stream, downsampler and block list works on.

        Keys are the official module-list names (``downsample1_1`` ... ``block4``); the quantizer,
        the network generators and the co-simulation all size their maps from this one table.
        """
        s = self.img_size
        first = s // 4 if self.stage1 == "2C@H/4" else s // 2
        return {"downsample1_1": first, "ConvBlock1_1": s // 2, "downsample1_2": s // 4,
                "ConvBlock1_2": s // 4, "downsample2": s // 8, "ConvBlock2_1": s // 8,
                "ConvBlock2_2": s // 8, "downsample3": s // 16, "block3": s // 16,
                "downsample4": s // 16, "block4": s // 16}

    # Checks --------------------------------------------------------------------------------
    def validate(self) -> "ModelConfig":
        """Check every field; raise ``ValueError`` naming the field, the value and what is allowed.

        Returns
        -------
        ModelConfig
            ``self``, so ``cfg = ModelConfig(...).validate()`` reads naturally.
        """
        def bad(field_name, value, allowed):
            raise ValueError(f"ModelConfig.{field_name}={value!r} is not allowed: {allowed}")

        if len(self.embed_dim) != 4 or not all(_is_pos_int(w) for w in self.embed_dim):
            bad("embed_dim", self.embed_dim, "4 positive ints (2C, 4C, 8C, last)")
        if self.embed_dim[0] % 2:
            bad("embed_dim", self.embed_dim, "embed_dim[0] = 2C must be even")
        if len(self.depths) != 6 or not all(_is_int(d) and d >= 0 for d in self.depths):
            bad("depths", self.depths, "6 ints >= 0 for " + ", ".join(STAGE_NAMES))
        for name in ("num_heads", "mlp_ratio", "img_size", "in_channels", "num_classes", "T"):
            if not _is_pos_int(getattr(self, name)):
                bad(name, getattr(self, name), "a positive int")
        if self.sdsa not in _SDSA:
            bad("sdsa", self.sdsa, f"one of {_SDSA}")
        if self.shortcut not in _SHORTCUTS:
            bad("shortcut", self.shortcut, f"one of {_SHORTCUTS}")
        if self.qkv not in _PROJECTIONS:
            bad("qkv", self.qkv, f"one of {_PROJECTIONS}")
        if self.proj not in _PROJECTIONS:
            bad("proj", self.proj, f"one of {_PROJECTIONS}")
        if self.channel_mixer not in _MIXERS:
            bad("channel_mixer", self.channel_mixer, f"one of {_MIXERS}")
        if self.stage1 not in _STAGE1:
            bad("stage1", self.stage1, f"one of {_STAGE1}")
        if self.block_types not in _BLOCK_TYPES:
            bad("block_types", self.block_types, f"one of {_BLOCK_TYPES}")
        if not isinstance(self.sepconv, bool):
            bad("sepconv", self.sepconv, "True or False")
        if not isinstance(self.pyramid, bool):
            bad("pyramid", self.pyramid, "True or False")
        if not isinstance(self.downsample4, bool):
            bad("downsample4", self.downsample4, "True or False")
        if not self.downsample4 and self.stage_widths[4] != self.stage_widths[5]:
            bad("downsample4", self.downsample4,
                f"False only when stage 4 is as wide as stage 3 (widths "
                f"{self.stage_widths[4]} and {self.stage_widths[5]}; use pyramid=False)")
        if not isinstance(self.kd_head, bool):
            bad("kd_head", self.kd_head, "True or False")
        if not isinstance(self.events, bool):
            bad("events", self.events, "True or False")
        if self.events and self.in_channels != 2:
            bad("events", self.events,
                f"True only with in_channels=2 (one OFF and one ON channel), got "
                f"in_channels={self.in_channels}")
        if not self.attn_threshold > 0:
            bad("attn_threshold", self.attn_threshold, "a number > 0")
        # Every list that holds Transformer-based blocks splits its width into heads.
        for stage, (width, n) in enumerate(zip(self.stage_widths, self.depths)):
            if n and self.is_transformer_stage(stage) and width % self.num_heads:
                bad("num_heads", self.num_heads,
                    f"must divide the width {width} of {STAGE_NAMES[stage]} "
                    f"(embed_dim={self.embed_dim})")
        stride = self.total_stride
        if self.img_size < stride or self.img_size % stride:
            bad("img_size", self.img_size,
                f"a multiple of the total downsampling {stride} (the stem and three stride-2 "
                f"convs), e.g. 16, 32, 224")
        return self

    def is_transformer_stage(self, stage: int) -> bool:
        """Return whether the block list ``STAGE_NAMES[stage]`` holds Transformer-based blocks."""
        if self.block_types == "conv":
            return False
        if self.block_types == "transformer":
            return True
        return stage >= 4

    # Serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Return the fields as a JSON-compatible dict (lists for tuples)."""
        d = dataclasses.asdict(self)
        d["embed_dim"] = list(self.embed_dim)
        d["depths"] = list(self.depths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build a config from :meth:`to_dict` output; unknown keys are an error.

        A missing key takes its default, so a config saved before a field existed still loads
        (e.g. one without ``events`` is a frame model, ``events=False``).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        """Return a copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_pos_int(v) -> bool:
    return _is_int(v) and v > 0


_IMAGENET = dict(img_size=224, in_channels=3, num_classes=1000, num_heads=8,
                 depths=(1, 1, 1, 1, 6, 2))

VARIANTS = {
    # The paper's models. 15.1M exists in the official repo only in det/seg configs.
    "15M": dict(embed_dim=(64, 128, 256, 360), **_IMAGENET),
    "31M": dict(embed_dim=(96, 192, 384, 480), **_IMAGENET),
    "55M": dict(embed_dim=(128, 256, 512, 640), **_IMAGENET),
    # The demo model: digits upscaled to 32x32, one block per list, stage 2 has one block.
    "demo": dict(embed_dim=(16, 32, 64, 64), depths=(1, 1, 1, 0, 1, 1), num_heads=4,
                 img_size=32, in_channels=1, num_classes=10, T=1),
    # The demo model on event-camera input: 2 channels (OFF, ON) of binary event frames, T=4
    # (one frame per time bin); see golden/events.py and docs/events.md.
    "demo_dvs": dict(embed_dim=(16, 32, 64, 64), depths=(1, 1, 1, 0, 1, 1), num_heads=4,
                     img_size=32, in_channels=2, num_classes=10, T=4, events=True),
    # The smallest useful model for fast tests (every module kind present once).
    "tiny": dict(embed_dim=(8, 16, 16, 16), depths=(1, 1, 1, 1, 1, 1), num_heads=2,
                 img_size=32, in_channels=3, num_classes=5, T=2),
}

_ALIASES = {
    "15.1m": "15M", "15m": "15M", "metaspikformer_8_256": "15M",
    "31.3m": "31M", "31m": "31M", "metaspikformer_8_384": "31M",
    "55.4m": "55M", "55m": "55M", "metaspikformer_8_512": "55M",
    "demo": "demo", "tiny": "tiny", "demo_dvs": "demo_dvs",
}


def variant(name: str, **overrides) -> ModelConfig:
    """Return the named model's configuration, with optional field overrides.

    Parameters
    ----------
    name : str
        ``'15M'``, ``'31M'``, ``'55M'`` (aliases: ``'15.1M'``, ``'31.3M'``, ``'55.4M'``,
        ``'metaspikformer_8_384'``, ``'metaspikformer_8_512'``), ``'demo'``, ``'demo_dvs'`` (the
        demo on event frames) or ``'tiny'``.
    **overrides
        Fields to change, e.g. ``T=4`` or ``kd_head=True``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or an invalid result.
    """
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"unknown Meta-SpikeFormer variant {name!r}; known: "
                         f"{sorted(VARIANTS)} and aliases {sorted(_ALIASES)}")
    fields = dict(VARIANTS[key])
    fields.update(overrides)
    fields.setdefault("name", key)
    return ModelConfig(**fields).validate()


def _stage1_at_quarter(cfg: ModelConfig) -> dict:
    # OUR INTERPRETATION (docs/ablations.md): one stride-4 stem straight to 2C, and stage 1 keeps
    # its block count, all of it at 2C and H/4 (ConvBlock1_1's blocks join ConvBlock1_2).
    d = cfg.depths
    return dict(stage1="2C@H/4", depths=(0, d[0] + d[1]) + tuple(d[2:]))


# Paper Table 5 ablations, as changes to the C=48 (31.3M) baseline: a dict of field changes, or a
# function of the base config returning one (for changes that depend on the base's depths).
# Three rows need readings of the paper's words; docs/ablations.md lists the readings tried.
ABLATIONS = {
    "baseline": {},
    "sdsa1": dict(sdsa=1),
    "sdsa2": dict(sdsa=2),
    "sdsa4": dict(sdsa=4),
    "shortcut_vanilla": dict(shortcut="vanilla"),
    "shortcut_sew": dict(shortcut="sew"),
    "qkv_linear": dict(qkv="linear"),
    "proj_linear": dict(proj="linear"),
    "no_sepconv": dict(sepconv=False),
    "channel_mlp": dict(channel_mixer="mlp"),
    # OUR INTERPRETATION: stride-4 stem, stage 1's two blocks both at 2C@H/4 (paper 31.8M).
    "stage1_2C_H4": _stage1_at_quarter,
    # OUR INTERPRETATION: stage 4 as wide as stage 3 and no downsample4 between them (26.9M).
    "no_pyramid": dict(pyramid=False, downsample4=False),
    # Literal reading; the paper's 36.0M is not reproduced (docs/ablations.md).
    "all_conv": dict(block_types="conv"),
    "all_transformer": dict(block_types="transformer"),
}


def ablation(name: str, base: str | ModelConfig = "31M") -> ModelConfig:
    """Return ``base`` with the named Table-5 ablation applied (see ``ABLATIONS``)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {list(ABLATIONS)}")
    cfg = variant(base) if isinstance(base, str) else base
    changes = ABLATIONS[name]
    if callable(changes):
        changes = changes(cfg)
    return cfg.replace(name=f"{cfg.name}:{name}", **changes).validate()
