"""Fold a trained Meta-SpikeFormer into plain convolutions with bias, in float64.

Every batch norm (eval statistics) folds into the conv or linear layer before it; every RepConv
chain, with BNAndPad's pad value and the outer BN, folds into one dense 3x3 conv with bias and
zero padding; SepConv's depthwise 7x7 and the pointwise conv after it fold into one dense 7x7 conv
on spikes (or stay apart, ``fuse_sepconv=False``). The result, a :class:`FoldedNet`, holds one
:class:`FoldedLayer` per weight memory of the hardware, named by the module path of the layer
whose output it produces (``block3.0.attn.q_conv``, ``ConvBlock1_1.0.Conv.pwconv2``, ...).

The folds are exact identities of real arithmetic; in float64 they agree with the unfolded model
to rounding (tests check 1e-9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .graph import sepconv_fused

__all__ = ["FoldedLayer", "FoldedNet", "bn_affine", "fold_bn", "fold_repconv",
           "fold_sepconv_pair", "fold_model"]

_F64 = torch.float64


@dataclass
class FoldedLayer:
    """Describe one folded layer: a conv (or linear, as 1x1) with float64 weight and bias.

    Members
    -------
    name : str
        Module path of the layer whose output this is (the hardware and trace name).
    weight : torch.Tensor
        float64 ``[Cout, Cin, kh, kw]`` (``[Cout, Cin/groups, kh, kw]`` when grouped).
    bias : torch.Tensor
        float64 ``[Cout]``.
    stride, padding, groups : int
        Geometry; padding always inserts zeros of the input (spikes or stem-space pixels).
    kind : str
        ``'stem'`` (input: pixels), ``'conv'`` (input: spikes), ``'depthwise'`` (input: spikes,
        unfused SepConv), ``'pointwise_int'`` (input: integers, unfused SepConv, multiplies) or
        ``'linear'`` (the classifier, input: spikes).
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int = 1
    padding: int = 0
    groups: int = 1
    kind: str = "conv"

    @property
    def out_channels(self) -> int:
        """Return the number of output channels."""
        return self.weight.shape[0]


@dataclass
class FoldedNet:
    """Hold the folded layers of a model and the constants its LIFs and SDSA need.

    Members
    -------
    cfg : golden.config.ModelConfig
        The model's configuration.
    layers : dict
        Layer name -> :class:`FoldedLayer`, in execution order.
    attn_thresholds : dict
        Attention module path -> float theta of ``attn_lif`` (SDSA-4: the learned value).
    fuse_sepconv : bool or tuple of str
        Whether SepConv's depthwise + pointwise pair is one dense 7x7 conv: in every block
        (True), in none (False) or in the blocks named (``quant.graph.sepconv_fused``).
    """

    cfg: object
    layers: dict = field(default_factory=dict)
    attn_thresholds: dict = field(default_factory=dict)
    fuse_sepconv: bool | tuple = True


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(scale, shift)`` in float64 with ``BN(x) == scale * x + shift`` (eval mode)."""
    if not getattr(bn, "track_running_stats", True) or bn.running_mean is None:
        raise ValueError(f"{bn!r} has no running statistics; it cannot be folded")
    mean = bn.running_mean.detach().to(_F64)
    var = bn.running_var.detach().to(_F64)
    gamma = bn.weight.detach().to(_F64) if bn.affine else torch.ones_like(mean)
    beta = bn.bias.detach().to(_F64) if bn.affine else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a batch norm into the conv or linear layer before it.

    Parameters
    ----------
    weight : torch.Tensor
        ``[Cout, ...]`` weight of the layer.
    bias : torch.Tensor or None
        ``[Cout]`` bias, or None for a bias-free layer.
    bn : nn.BatchNorm1d or nn.BatchNorm2d
        The norm applied to the layer's output.

    Returns
    -------
    (weight, bias)
        float64, ``weight * scale`` per output channel and ``bias * scale + shift``.
    """
    scale, shift = bn_affine(bn)
    weight = weight.detach().to(_F64)
    bias = torch.zeros_like(scale) if bias is None else bias.detach().to(_F64)
    view = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(view), bias * scale + shift


def fold_repconv(body: nn.Sequential, outer_bn: nn.Module | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a RepConv chain (and the BN after it) into one dense 3x3 conv with bias.

    The chain is ``1x1 conv -> BN + pad(BN(0)) -> 3x3 depthwise (no padding) -> 1x1 conv -> BN``.
    Because the border carries the value the BN gives for a zero input, the chain equals the same
    chain applied to a zero-padded input; every step is affine, so it is one 3x3 conv with padding
    1 of zeros: ``W[o,i,y,x] = sum_m P[o,m] D[m,y,x] a[m] A[m,i]`` (outer scales on ``o``), and
    the bias carries the BN shift ``c[m]`` through the depthwise kernel sums.

    Parameters
    ----------
    body : nn.Sequential
        ``RepConv.body``: ``(conv1x1, BNAndPadLayer, Sequential(dw3x3, pw1x1, BN))``.
    outer_bn : nn.Module, optional
        The extra BN after the RepConv (Q/K/V and the output projection have one).

    Returns
    -------
    (weight, bias)
        float64 ``[Cout, Cin, 3, 3]`` and ``[Cout]``, for a conv with stride 1 and zero padding 1.
    """
    conv_a, bn_pad, tail = body[0], body[1], body[2]
    dw, pw, bn_b = tail[0], tail[1], tail[2]
    if bn_pad.pad_pixels != 1 or dw.padding not in ((0, 0), 0) or dw.kernel_size != (3, 3):
        raise ValueError("fold_repconv expects BNAndPad(pad 1) and a 3x3 depthwise with no padding")
    a_weight = conv_a.weight.detach().to(_F64)[:, :, 0, 0]                  # [M, Cin]
    a_scale, a_shift = bn_affine(bn_pad.bn)                                 # [M]
    d_weight = dw.weight.detach().to(_F64)[:, 0]                            # [M, 3, 3]
    p_weight = pw.weight.detach().to(_F64)[:, :, 0, 0]                      # [Cout, M]
    out_scale, out_shift = bn_affine(bn_b)
    if outer_bn is not None:
        scale2, shift2 = bn_affine(outer_bn)
        out_scale, out_shift = out_scale * scale2, out_shift * scale2 + shift2
    weight = torch.einsum("om,myx,m,mi->oiyx", p_weight, d_weight, a_scale, a_weight)
    bias = p_weight @ (a_shift * d_weight.sum(dim=(1, 2)))
    return weight * out_scale.view(-1, 1, 1, 1), bias * out_scale + out_shift


def fold_sepconv_pair(dwconv: nn.Conv2d, pwconv: nn.Conv2d,
                      bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a depthwise conv, the pointwise conv after it and a BN into one dense conv.

    Nothing non-linear sits between them, and the depthwise conv pads its (spike) input with
    zeros, which the pointwise conv maps to zero: the dense conv pads with zeros too.

    Returns
    -------
    (weight, bias)
        float64 ``[Cout, Cmid, k, k]`` (``W[o,m,y,x] = P[o,m] D[m,y,x]`` times the BN scale) and
        ``[Cout]``, for a conv with the depthwise conv's stride and padding.
    """
    d_weight = dwconv.weight.detach().to(_F64)[:, 0]                        # [M, k, k]
    p_weight = pwconv.weight.detach().to(_F64)[:, :, 0, 0]                  # [Cout, M]
    dense = torch.einsum("om,myx->omyx", p_weight, d_weight)
    return fold_bn(dense, None, bn)


def _conv_bn(name: str, conv: nn.Module, bn: nn.Module, kind: str = "conv") -> FoldedLayer:
    """Fold ``bn(conv(x))`` for a Conv1d/Conv2d into a :class:`FoldedLayer`."""
    weight, bias = fold_bn(conv.weight, conv.bias, bn)
    if weight.dim() == 3:                       # Conv1d k=1 on tokens: a 1x1 conv on the map
        weight = weight.unsqueeze(-1)
    stride = conv.stride[0] if isinstance(conv.stride, tuple) else conv.stride
    padding = conv.padding[0] if isinstance(conv.padding, tuple) else conv.padding
    return FoldedLayer(name, weight, bias, stride, padding, 1, kind)


def _projection(name: str, seq: nn.Sequential) -> FoldedLayer:
    """Fold a Q/K/V/output projection: RepConv + BN (dense 3x3) or 1x1 conv + BN."""
    first = seq[0]
    if hasattr(first, "body"):
        weight, bias = fold_repconv(first.body, seq[1])
        return FoldedLayer(name, weight, bias, 1, 1)
    return _conv_bn(name, first, seq[1])


def fold_model(model: nn.Module, fuse_sepconv: bool | tuple = True) -> FoldedNet:
    """Fold every layer of a :class:`golden.model.MetaSpikeFormer` (eval statistics).

    Parameters
    ----------
    model : golden.model.MetaSpikeFormer
        The float model; it is not modified.
    fuse_sepconv : bool
        Fold SepConv's depthwise 7x7 and last 1x1 into one dense 7x7 conv on spikes (default).
        False keeps them apart: a depthwise conv on spikes (additions) then a 1x1 conv on its
        integer outputs (multiplications, see :func:`quant.report.layer_costs`). A tuple of
        block paths (``"ConvBlock1_1.0"``) fuses those blocks' SepConv and keeps the others
        apart; a path that is not a block with a SepConv raises ``ValueError``.

    Returns
    -------
    FoldedNet
    """
    cfg = model.cfg
    if not isinstance(fuse_sepconv, bool):
        if isinstance(fuse_sepconv, str) or not all(isinstance(p, str) for p in fuse_sepconv):
            raise ValueError(f"fuse_sepconv must be True, False or block paths, not "
                             f"{fuse_sepconv!r}")
        fuse_sepconv = tuple(sorted(set(fuse_sepconv)))
        blocks = {f"{stage}.{index}" for stage, part in model.stages()
                  if isinstance(part, nn.ModuleList)
                  for index, block in enumerate(part) if getattr(block, "has_sepconv", False)}
        unknown = [p for p in fuse_sepconv if p not in blocks]
        if unknown:
            raise ValueError(f"fuse_sepconv names {unknown}, not blocks with a SepConv; "
                             f"allowed: {sorted(blocks)}")
    # Every shortcut folds alike: the shortcuts differ in LIFs and adds, which hold no weights
    # (quant.graph.walk says where they sit).
    net = FoldedNet(cfg=cfg, fuse_sepconv=fuse_sepconv)
    layers = net.layers
    for stage, part in model.stages():
        if not isinstance(part, nn.ModuleList):
            # With event input the first layer's input is spikes: an ordinary conv.
            first = stage == "downsample1_1" and not cfg.events
            kind = "stem" if first else "conv"
            layer = _conv_bn(f"{stage}.encode_conv", part.encode_conv, part.encode_bn, kind)
            layers[layer.name] = layer
            continue
        for index, block in enumerate(part):
            prefix = f"{stage}.{index}"
            if hasattr(block, "attn"):
                attn = block.attn
                names = ["q_conv", "k_conv"] + (["v_conv"] if hasattr(attn, "v_conv") else [])
                for proj in names + ["proj_conv"]:
                    layer = _projection(f"{prefix}.attn.{proj}", getattr(attn, proj))
                    layers[layer.name] = layer
                theta = (attn.attn_threshold.detach().item() if hasattr(attn, "attn_threshold")
                         else attn.attn_lif.threshold)
                net.attn_thresholds[f"{prefix}.attn"] = float(theta)
                _mlp(layers, f"{prefix}.mlp", block.mlp)
                continue
            if block.has_sepconv:
                sep = block.Conv
                layer = _conv_bn(f"{prefix}.Conv.pwconv1", sep.pwconv1, sep.bn1)
                layers[layer.name] = layer
                if sepconv_fused(fuse_sepconv, prefix):
                    weight, bias = fold_sepconv_pair(sep.dwconv, sep.pwconv2, sep.bn2)
                    layers[f"{prefix}.Conv.pwconv2"] = FoldedLayer(
                        f"{prefix}.Conv.pwconv2", weight, bias, 1, sep.dwconv.padding[0])
                else:
                    dw = sep.dwconv
                    layers[f"{prefix}.Conv.dwconv"] = FoldedLayer(
                        f"{prefix}.Conv.dwconv", dw.weight.detach().to(_F64),
                        torch.zeros(dw.out_channels, dtype=_F64), 1, dw.padding[0],
                        dw.groups, "depthwise")
                    layer = _conv_bn(f"{prefix}.Conv.pwconv2", sep.pwconv2, sep.bn2,
                                     "pointwise_int")
                    layers[layer.name] = layer
            if block.mixer == "conv":
                for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                    layer = _conv_bn(f"{prefix}.{conv}", getattr(block, conv), getattr(block, bn))
                    layers[layer.name] = layer
            else:
                _mlp(layers, f"{prefix}.mlp", block.mlp)
    weight = model.head.weight.detach().to(_F64)
    bias = model.head.bias.detach().to(_F64)
    if hasattr(model, "head_kd"):
        # Eval output is (head(x) + head_kd(x)) / 2: one linear layer with the averaged weights.
        weight = (weight + model.head_kd.weight.detach().to(_F64)) / 2
        bias = (bias + model.head_kd.bias.detach().to(_F64)) / 2
    layers["head"] = FoldedLayer("head", weight[:, :, None, None], bias, kind="linear")
    return net


def _mlp(layers: dict, prefix: str, mlp: nn.Module) -> None:
    """Fold ChannelMLP's two Conv1d + BN1d pairs."""
    for conv, bn in (("fc1_conv", "fc1_bn"), ("fc2_conv", "fc2_bn")):
        layer = _conv_bn(f"{prefix}.{conv}", getattr(mlp, conv), getattr(mlp, bn))
        layers[layer.name] = layer
