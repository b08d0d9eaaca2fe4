"""Meta-SpikeFormer (Spike-Driven Transformer V2) in plain PyTorch, with the official module tree.

Module and parameter names match the official ``classification/models.py`` of
BICLab/Spike-Driven-Transformer-V2 (commit 35f245f), so its checkpoints load strictly; see
``docs/golden.md`` and ``docs/reference-model.md`` for the facts this follows. Every LIF is a
named :class:`~golden.lif.MultiStepLIF` submodule, so a module path such as
``block3.0.attn.q_lif`` names one spike tensor; :func:`record_spikes` collects them.

Tensors inside the network are ``[T, B, C, H, W]``; convolutions and batch norms run on the
``T*B``-merged batch, as in the official code, so BN statistics are shared over T and B.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .lif import MultiStepLIF

__all__ = ["MetaSpikeFormer", "BNAndPadLayer", "RepConv", "SepConv", "MS_ConvBlock", "MS_MLP",
           "MS_Attention", "MS_Block", "MS_DownSampling", "record_spikes", "build_model",
           "lif_modules"]


def _merge(x: torch.Tensor) -> torch.Tensor:
    """Merge T and B: ``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def _split(x: torch.Tensor, T: int) -> torch.Tensor:
    """Split the merged batch back: ``[T*B, ...] -> [T, B, ...]``."""
    return x.reshape(T, -1, *x.shape[1:])


class BNAndPadLayer(nn.Module):
    """Batch-normalise, then pad with the value the BN gives for a zero input.

    The pad value ``beta - mean * gamma / sqrt(var + eps)`` (running statistics, also in training)
    is what makes a RepConv chain fold exactly into one dense 3x3 conv with bias.

    Parameters
    ----------
    pad_pixels : int
        Border width added on every side.
    num_features : int
        Channels.
    """

    def __init__(self, pad_pixels: int, num_features: int, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps, momentum)
        self.pad_pixels = pad_pixels

    def pad_values(self) -> torch.Tensor:
        """Return the per-channel pad value ``beta - mean * gamma / sqrt(var + eps)``."""
        bn = self.bn
        return (bn.bias.detach()
                - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``pad(BN(x))`` on a ``[N, C, H, W]`` tensor."""
        out = self.bn(x)
        p = self.pad_pixels
        if p > 0:
            value = self.pad_values().view(1, -1, 1, 1)
            out = F.pad(out, [p] * 4)
            # The gradient flows through the BN output only; the border is a constant, as in the
            # official layer (its parameters are detached there too).
            out[:, :, :p, :] = value
            out[:, :, -p:, :] = value
            out[:, :, :, :p] = value
            out[:, :, :, -p:] = value
        return out


class RepConv(nn.Module):
    """Run the re-parameterisable chain 1x1 conv -> BN+pad -> 3x3 depthwise -> 1x1 conv -> BN.

    Attribute ``body`` is ``Sequential(conv1x1, BNAndPadLayer, Sequential(dw3x3, pw1x1, BN))``
    to keep the official state-dict keys (``body.0``, ``body.1.bn``, ``body.2.0/1/2``).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1, 1, 0, bias=False),
            BNAndPadLayer(pad_pixels=1, num_features=in_channels),
            nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, 1, 0, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_channels),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the chain to a ``[N, C, H, W]`` tensor."""
        return self.body(x)


def _projection(kind: str, dim: int) -> nn.Sequential:
    """Build a Q/K/V or output projection: RepConv + BN (official) or 1x1 conv + BN (linear)."""
    if kind == "repconv":
        return nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
    return nn.Sequential(nn.Conv2d(dim, dim, 1, 1, 0, bias=False), nn.BatchNorm2d(dim))


def _stream_lif(cfg: ModelConfig) -> nn.Module:
    """Build the neuron that reads the residual stream: a LIF, or nothing when it holds spikes."""
    return MultiStepLIF() if cfg.shortcut == "membrane" else nn.Identity()


class _Residual(nn.Module):
    """Add a branch to the residual stream as the shortcut kind says (mix-in for blocks)."""

    def _add(self, x: torch.Tensor, branch_out: torch.Tensor, out_lif: nn.Module | None,
             shortcut: str) -> torch.Tensor:
        if shortcut == "membrane":
            return x + branch_out
        if shortcut == "sew":
            return x + out_lif(branch_out)
        return out_lif(branch_out + x)


class SepConv(nn.Module):
    """Run SepConv: LIF -> 1x1 (C->2C) -> BN -> LIF -> 7x7 depthwise -> 1x1 (2C->C) -> BN."""

    def __init__(self, dim: int, cfg: ModelConfig, expansion: int = 2) -> None:
        super().__init__()
        med = int(expansion * dim)
        self.lif1 = _stream_lif(cfg)
        self.pwconv1 = nn.Conv2d(dim, med, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = MultiStepLIF()
        self.dwconv = nn.Conv2d(med, med, kernel_size=7, padding=3, groups=med, bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, kernel_size=1, stride=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the branch output for a ``[T, B, C, H, W]`` stream."""
        T = x.shape[0]
        x = self.lif1(x)
        x = _split(self.bn1(self.pwconv1(_merge(x))), T)
        x = self.lif2(x)
        x = self.dwconv(_merge(x))
        return _split(self.bn2(self.pwconv2(x)), T)


class MS_MLP(nn.Module):
    """Run ChannelMLP on tokens: LIF -> Conv1d (C->hC, bias) -> BN1d -> LIF -> Conv1d -> BN1d."""

    def __init__(self, dim: int, hidden: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1_conv = nn.Conv1d(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = _stream_lif(cfg)
        self.fc2_conv = nn.Conv1d(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = MultiStepLIF()
        self.c_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the branch output for a ``[T, B, C, H, W]`` stream."""
        T, B, C, H, W = x.shape
        x = self.fc1_lif(x.flatten(3))
        x = _split(self.fc1_bn(self.fc1_conv(_merge(x))), T)
        x = self.fc2_lif(x)
        x = self.fc2_bn(self.fc2_conv(_merge(x)))
        return x.reshape(T, B, C, H, W)


class MS_ConvBlock(_Residual):
    """Run the Conv-based block: ``U1 = U + SepConv(U)``, ``U2 = U1 + ChannelConv(U1)``.

    With ``cfg.sepconv=False`` the first step is skipped; with ``cfg.channel_mixer='mlp'`` the
    channel mixer is an :class:`MS_MLP` named ``mlp``.
    """

    def __init__(self, dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.shortcut = cfg.shortcut
        ratio = cfg.mlp_ratio
        self.has_sepconv = cfg.sepconv
        self.mixer = cfg.channel_mixer
        if cfg.sepconv:
            self.Conv = SepConv(dim, cfg)
            if cfg.shortcut != "membrane":
                self.Conv_out_lif = MultiStepLIF()
        if cfg.channel_mixer == "conv":
            self.lif1 = _stream_lif(cfg)
            self.conv1 = nn.Conv2d(dim, dim * ratio, kernel_size=3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(dim * ratio)
            self.lif2 = MultiStepLIF()
            self.conv2 = nn.Conv2d(dim * ratio, dim, kernel_size=3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(dim)
        else:
            self.mlp = MS_MLP(dim, dim * ratio, cfg)
        if cfg.shortcut != "membrane":
            self.out_lif = MultiStepLIF()

    def _channel_conv(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        x = _split(self.bn1(self.conv1(_merge(self.lif1(x)))), T)
        return _split(self.bn2(self.conv2(_merge(self.lif2(x)))), T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the new residual stream for a ``[T, B, C, H, W]`` stream."""
        if self.has_sepconv:
            x = self._add(x, self.Conv(x), getattr(self, "Conv_out_lif", None), self.shortcut)
        mixed = self._channel_conv(x) if self.mixer == "conv" else self.mlp(x)
        return self._add(x, mixed, getattr(self, "out_lif", None), self.shortcut)


class MS_Attention(nn.Module):
    """Run spike-driven self-attention (SDSA-1/2/3/4) with its Q/K/V and output projections.

    Official name: ``MS_Attention_RepConv_qkv_id``. SDSA-3 (official):
    ``attn_lif((Q_S (K_S^T V_S)) * 0.125)`` with threshold 0.5, per head over contiguous channel
    groups. SDSA-1: ``Q_S * attn_lif(sum_N(K_S * V_S))``. SDSA-2 (our interpretation, no V):
    ``Q_S * attn_lif(sum_N(K_S))``. SDSA-4: SDSA-3 with a learnable threshold ``attn_threshold``.
    """

    def __init__(self, dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        if dim % cfg.num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads "
                             f"{cfg.num_heads}")
        self.dim = dim
        self.num_heads = cfg.num_heads
        self.sdsa = cfg.sdsa
        self.scale = cfg.attn_scale
        self.head_lif = _stream_lif(cfg)
        self.q_conv = _projection(cfg.qkv, dim)
        self.k_conv = _projection(cfg.qkv, dim)
        if cfg.sdsa != 2:
            self.v_conv = _projection(cfg.qkv, dim)
        self.q_lif = MultiStepLIF()
        self.k_lif = MultiStepLIF()
        if cfg.sdsa != 2:
            self.v_lif = MultiStepLIF()
        self.attn_lif = MultiStepLIF(threshold=cfg.attn_threshold)
        if cfg.sdsa == 4:
            self.attn_threshold = nn.Parameter(torch.tensor(float(cfg.attn_threshold)))
        self.proj_conv = _projection(cfg.proj, dim)

    def _heads(self, s: torch.Tensor) -> torch.Tensor:
        """Reshape ``[T, B, C, H, W]`` spikes to ``[T, B, heads, N, d]``."""
        T, B, C, H, W = s.shape
        return (s.flatten(3).transpose(-1, -2)
                .reshape(T, B, H * W, self.num_heads, C // self.num_heads)
                .permute(0, 1, 3, 2, 4).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the projected attention output for a ``[T, B, C, H, W]`` stream."""
        T, B, C, H, W = x.shape
        N = H * W
        x = _merge(self.head_lif(x))
        q = self._heads(self.q_lif(_split(self.q_conv(x), T)))
        k = self._heads(self.k_lif(_split(self.k_conv(x), T)))
        if self.sdsa in (3, 4):
            v = self._heads(self.v_lif(_split(self.v_conv(x), T)))
            out = (q @ (k.transpose(-2, -1) @ v)) * self.scale
            out = out.transpose(3, 4).reshape(T, B, C, N).contiguous()
            threshold = self.attn_threshold if self.sdsa == 4 else None
            out = self.attn_lif(out, threshold)
        else:
            if self.sdsa == 1:
                v = self._heads(self.v_lif(_split(self.v_conv(x), T)))
                column = (k * v).sum(dim=-2, keepdim=True)
            else:
                column = k.sum(dim=-2, keepdim=True)
            out = q * self.attn_lif(column)
            out = out.transpose(3, 4).reshape(T, B, C, N)
        out = out.reshape(T, B, C, H, W)
        return _split(self.proj_conv(_merge(out)), T)


class MS_Block(_Residual):
    """Run the Transformer-based block: ``U1 = U + SDSA(U)``, ``U2 = U1 + ChannelMLP(U1)``."""

    def __init__(self, dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.shortcut = cfg.shortcut
        self.attn = MS_Attention(dim, cfg)
        self.mlp = MS_MLP(dim, dim * cfg.mlp_ratio, cfg)
        if cfg.shortcut != "membrane":
            self.attn_out_lif = MultiStepLIF()
            self.out_lif = MultiStepLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the new residual stream for a ``[T, B, C, H, W]`` stream."""
        x = self._add(x, self.attn(x), getattr(self, "attn_out_lif", None), self.shortcut)
        return self._add(x, self.mlp(x), getattr(self, "out_lif", None), self.shortcut)


class MS_DownSampling(nn.Module):
    """Run a downsampler: [LIF ->] conv (with bias) -> BN; the stem has no input LIF."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, first_layer: bool, cfg: ModelConfig) -> None:
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size,
                                     stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(out_channels)
        if not first_layer and cfg.shortcut == "membrane":
            self.encode_lif = MultiStepLIF()
        if cfg.shortcut != "membrane":
            # With spike-valued streams the downsampler is the stream's first producer.
            self.out_lif = MultiStepLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``[T, B, C_out, H_out, W_out]`` for a ``[T, B, C_in, H, W]`` input."""
        T = x.shape[0]
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        x = _split(self.encode_bn(self.encode_conv(_merge(x))), T).contiguous()
        if hasattr(self, "out_lif"):
            x = self.out_lif(x)
        return x


class MetaSpikeFormer(nn.Module):
    """Build Meta-SpikeFormer from a :class:`~golden.config.ModelConfig`.

    Parameters
    ----------
    cfg : ModelConfig
        Validated on construction.

    Notes
    -----
    ``forward`` takes ``[B, C, H, W]`` images (repeated ``cfg.T`` times) or ``[T, B, C, H, W]``
    and returns logits ``[B, classes]``, the mean over T. With ``cfg.events`` it takes only
    ``[T, B, 2, H, W]`` event frames of 0s and 1s (``T = cfg.T``) and raises ``ValueError``
    for anything else. With a KD head it returns
    ``(head, head_kd)`` in training mode and their mean in eval mode, like the official model.
    ``forward(x, trace=True)`` returns ``(logits, spikes)`` with ``spikes`` a dict from each LIF's
    module path to its ``[T, B, ...]`` output.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        w1, w2, w3, _, w5, w6 = cfg.stage_widths
        d = cfg.depths

        def blocks(stage: int, width: int) -> nn.ModuleList:
            kind = MS_Block if cfg.is_transformer_stage(stage) else MS_ConvBlock
            return nn.ModuleList([kind(width, cfg) for _ in range(d[stage])])

        if cfg.stage1 == "C@H/2":
            self.downsample1_1 = MS_DownSampling(cfg.in_channels, w1, 7, 2, 3, True, cfg)
            self.ConvBlock1_1 = blocks(0, w1)
            self.downsample1_2 = MS_DownSampling(w1, w2, 3, 2, 1, False, cfg)
        else:
            # One stride-4 stem straight to 2C: stage 1 runs only at quarter resolution.
            self.downsample1_1 = MS_DownSampling(cfg.in_channels, w2, 7, 4, 3, True, cfg)
            self.ConvBlock1_1 = nn.ModuleList()
        self.ConvBlock1_2 = blocks(1, w2)
        self.downsample2 = MS_DownSampling(w2, w3, 3, 2, 1, False, cfg)
        self.ConvBlock2_1 = blocks(2, w3)
        self.ConvBlock2_2 = blocks(3, w3)
        self.downsample3 = MS_DownSampling(w3, w5, 3, 2, 1, False, cfg)
        self.block3 = blocks(4, w5)
        if cfg.downsample4:
            self.downsample4 = MS_DownSampling(w5, w6, 3, 1, 1, False, cfg)
        # else: block3's stream goes straight into block4 (same width; validate() checks it).
        self.block4 = blocks(5, w6)
        self.lif = MultiStepLIF()
        self.head = nn.Linear(w6, cfg.num_classes)
        if cfg.kd_head:
            self.head_kd = nn.Linear(w6, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Official init: trunc-normal(0.02) linear weights, zero bias; the rest PyTorch default.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def T(self) -> int:
        """Return the configured number of time steps."""
        return self.cfg.T

    def stages(self):
        """Yield ``(name, module)`` for the feature extractor's parts in execution order."""
        order = ["downsample1_1", "ConvBlock1_1", "downsample1_2", "ConvBlock1_2", "downsample2",
                 "ConvBlock2_1", "ConvBlock2_2", "downsample3", "block3", "downsample4",
                 "block4"]
        for name in order:
            if hasattr(self, name):
                yield name, getattr(self, name)

    def _time_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.events:
            return self._event_input(x)
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.cfg.T, 1, 1, 1, 1)
        elif x.dim() != 5:
            raise ValueError(f"expected images [B, C, H, W] or [T, B, C, H, W], got shape "
                             f"{tuple(x.shape)}")
        c, s = self.cfg.in_channels, self.cfg.img_size
        if x.shape[2] != c or x.shape[3] < 16 or x.shape[4] < 16:
            raise ValueError(f"expected {c} input channels and an image of at least 16x16 "
                             f"(configured {s}x{s}), got shape {tuple(x.shape)}")
        return x

    def _event_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check an event-frame input ``[T, B, 2, H, W]`` of 0/1 values and return it as is."""
        T, s = self.cfg.T, self.cfg.img_size
        if x.dim() != 5 or x.shape[0] != T or x.shape[2] != 2 or min(x.shape[3:]) < 16:
            hint = (" (an event model takes frames per time step, it does not repeat an image)"
                    if x.dim() == 4 else
                    " (a batch-first [B, T, ...] tensor needs x.transpose(0, 1))"
                    if x.dim() == 5 and x.shape[1] == T and x.shape[0] != T else "")
            raise ValueError(f"event model: expected binary event frames [T={T}, B, 2, H, W] "
                             f"(H, W at least 16, configured {s}x{s}), got shape "
                             f"{tuple(x.shape)}{hint}")
        binary = (x == 0) | (x == 1)
        if not bool(binary.all()):
            bad = x[~binary]
            raise ValueError(f"event model: input values must all be 0 or 1 (event frames), "
                             f"found {bad.numel()} other value(s), e.g. {float(bad[0])!r}")
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the final residual stream ``[T, B, last, H/16, W/16]``."""
        for _, part in self.stages():
            if isinstance(part, nn.ModuleList):
                for blk in part:
                    x = blk(x)
            else:
                x = part(x)
        return x

    def forward(self, x: torch.Tensor, trace: bool = False):
        """Return logits ``[B, classes]`` (and a spike dict when ``trace``)."""
        if trace:
            with record_spikes(self) as spikes:
                out = self.forward(x)
            return out, spikes
        x = self.forward_features(self._time_input(x))
        x_lif = self.lif(x.flatten(3).mean(3))
        out = self.head(x_lif).mean(0)
        if hasattr(self, "head_kd"):
            out_kd = self.head_kd(x_lif).mean(0)
            if self.training:
                return out, out_kd
            return (out + out_kd) / 2
        return out


def lif_modules(model: nn.Module) -> dict:
    """Return ``{module path: MultiStepLIF}`` for every spiking neuron layer, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}


@contextlib.contextmanager
def record_spikes(model: nn.Module, detach: bool = True):
    """Record every LIF's output while the block runs.

    Yields
    ------
    dict
        Filled during the forward pass: module path -> ``[T, B, ...]`` spike tensor.
    """
    spikes: dict = {}
    handles = []
    for name, mod in lif_modules(model).items():
        def hook(_m, _inp, out, name=name):
            spikes[name] = out.detach() if detach else out
        handles.append(mod.register_forward_hook(hook))
    try:
        yield spikes
    finally:
        for h in handles:
            h.remove()


def build_model(cfg: ModelConfig | str, **overrides) -> MetaSpikeFormer:
    """Return a freshly initialised model for a config or a variant name."""
    from .config import variant
    if isinstance(cfg, str):
        cfg = variant(cfg, **overrides)
    elif overrides:
        cfg = cfg.replace(**overrides)
    return MetaSpikeFormer(cfg)


