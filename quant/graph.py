"""Walk Meta-SpikeFormer's dataflow once, for every arithmetic: float, integer and scale planning.

:func:`walk` states the network's structure (which layer feeds which LIF, which producers write
which residual stream) once, in terms of a few primitives that a *backend* implements. The float64
folded model (:class:`FloatBackend`), the integer golden model (``quant.intmodel``) and the
quantizer's bookkeeping (:class:`Planner`) are three backends of the same walk, so they cannot
disagree about the structure.

Names: every LIF is called by its module path in ``golden.model`` (``block3.0.attn.q_lif``);
every layer by its folded name (``quant.fold``); every residual stream by the downsampler that
starts it (``downsample3``).

Shortcuts (``cfg.shortcut``, ``golden.model._Residual``):

* ``'membrane'`` (official): the stream holds membrane-like sums, ``U += branch`` (``add``); every
  reader of the stream is a LIF (``encode_lif``, ``Conv.lif1``, ``lif1``, ``fc1_lif``,
  ``head_lif``).
* ``'sew'``: each downsampler ends in ``out_lif`` and its spikes start a stream of spike counts
  (``count_stream``); each branch ends in its own LIF (``Conv_out_lif``, ``out_lif``,
  ``attn_out_lif``) whose spikes are added to the counts (``add_spikes``). The stream's readers
  have no LIF in front: the convs read the counts themselves.
* ``'vanilla'``: the stream is the block's spikes. Each downsampler ends in ``out_lif``; each
  branch's output LIF takes the branch output plus the incoming spikes (``residual``); the convs
  read the spikes.

A backend lists the shortcuts it implements in ``shortcuts`` (absent: the membrane shortcut only);
:func:`walk` refuses any other with ``NotImplementedError`` naming ``cfg.shortcut``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from golden.config import STAGE_NAMES
from golden.lif import MultiStepLIF

__all__ = ["walk", "stage_order", "FloatBackend", "Planner", "Sym"]


def stage_order(cfg) -> list[str]:
    """Return the downsamplers and block lists that exist for ``cfg``, in execution order."""
    order = ["downsample1_1"]
    if cfg.stage1 == "C@H/2":
        order += ["ConvBlock1_1", "downsample1_2"]
    order += ["ConvBlock1_2", "downsample2", "ConvBlock2_1", "ConvBlock2_2", "downsample3",
              "block3"]
    if getattr(cfg, "downsample4", True):   # False: the no-pyramid reading (docs/ablations.md)
        order.append("downsample4")
    order.append("block4")
    return order


def walk(cfg, ops, image):
    """Run the network's dataflow on a backend and return what ``ops.finish`` returns.

    Parameters
    ----------
    cfg : golden.config.ModelConfig
    ops : backend
        Implements ``stem, spike_input, conv, lif, begin_stream, add, sdsa, pool, finish`` (see
        :class:`FloatBackend` for their meaning) and, if it lists ``'sew'`` or ``'vanilla'`` in
        its ``shortcuts``, ``count_stream, add_spikes`` (SEW) and ``residual`` (vanilla).
    image
        Whatever the backend's ``stem`` takes; with ``cfg.events``, whatever its
        ``spike_input`` takes (event frames ``[T, B, 2, H, W]`` of 0/1).

    Raises
    ------
    NotImplementedError
        If ``cfg.shortcut`` is not in the backend's ``shortcuts``.
    """
    supported = getattr(ops, "shortcuts", ("membrane",))
    if cfg.shortcut not in supported:
        backend = f"{type(ops).__module__}.{type(ops).__qualname__}"
        raise NotImplementedError(
            f"shortcut={cfg.shortcut!r} is not implemented by {backend} (it runs the "
            f"{' and '.join(supported)} shortcut{'s' if len(supported) > 1 else ''} only)")
    if cfg.events:
        # Event frames are spikes already: the first layer is a conv on spikes like any other.
        first = ops.conv("downsample1_1.encode_conv", ops.spike_input("input", image))
    else:
        first = ops.stem("downsample1_1.encode_conv", image)
    stream = _begin(cfg, ops, first, "downsample1_1")
    for part in stage_order(cfg)[1:]:
        if part.startswith("downsample"):
            spikes = _stream_spikes(cfg, ops, f"{part}.encode_lif", stream, "map")
            stream = _begin(cfg, ops, ops.conv(f"{part}.encode_conv", spikes), part)
            continue
        stage = STAGE_NAMES.index(part)
        for index in range(cfg.depths[stage]):
            prefix = f"{part}.{index}"
            if cfg.is_transformer_stage(stage):
                stream = _transformer_block(cfg, ops, prefix, stream)
            else:
                stream = _conv_block(cfg, ops, prefix, stream)
    pooled = ops.pool(stream)
    spikes = ops.lif("lif", pooled, 1.0, "head")
    return ops.finish(ops.conv("head", spikes))


def _begin(cfg, ops, x, part):
    """Start the stream of downsampler ``part`` with its conv's output ``x`` (the shortcut's way).

    Membrane: the sums start the stream. SEW: ``out_lif``'s spikes start a stream of counts.
    Vanilla: ``out_lif``'s spikes are the stream.
    """
    if cfg.shortcut == "membrane":
        return ops.begin_stream(x, part, f"{part}.encode_conv")
    spikes = ops.lif(f"{part}.out_lif", x, 1.0, "map")
    if cfg.shortcut == "sew":
        return ops.count_stream(spikes, part, f"{part}.out_lif")
    return spikes


def _stream_spikes(cfg, ops, name, stream, layout):
    """Return what a branch reads from the stream: LIF ``name``'s spikes (membrane shortcut), or
    the stream itself (SEW: the counts; vanilla: the spikes), like ``golden.model._stream_lif``."""
    if cfg.shortcut == "membrane":
        return ops.lif(name, stream, 1.0, layout)
    return stream


def _merge(cfg, ops, stream, branch, producer, out_lif):
    """Put a branch's output (layer ``producer``) into the stream, like ``_Residual._add``.

    Membrane: ``U + branch``. SEW: ``U + out_lif(branch)`` (counts). Vanilla:
    ``out_lif(branch + S)``.
    """
    if cfg.shortcut == "membrane":
        return ops.add(stream, branch, producer)
    if cfg.shortcut == "sew":
        return ops.add_spikes(stream, ops.lif(out_lif, branch, 1.0, "map"), out_lif)
    return ops.lif(out_lif, ops.residual(branch, stream, producer), 1.0, "map")


def _conv_block(cfg, ops, prefix, stream):
    """Walk ``MS_ConvBlock``: SepConv then ChannelConv (or ChannelMLP), each added to the stream."""
    if cfg.sepconv:
        spikes = _stream_spikes(cfg, ops, f"{prefix}.Conv.lif1", stream, "map")
        spikes = ops.lif(f"{prefix}.Conv.lif2", ops.conv(f"{prefix}.Conv.pwconv1", spikes), 1.0,
                         "map")
        if sepconv_fused(ops.fused_sepconv, prefix):
            branch = ops.conv(f"{prefix}.Conv.pwconv2", spikes)
        else:
            branch = ops.conv(f"{prefix}.Conv.pwconv2", ops.conv(f"{prefix}.Conv.dwconv", spikes))
        stream = _merge(cfg, ops, stream, branch, f"{prefix}.Conv.pwconv2",
                        f"{prefix}.Conv_out_lif")
    if cfg.channel_mixer == "conv":
        spikes = _stream_spikes(cfg, ops, f"{prefix}.lif1", stream, "map")
        spikes = ops.lif(f"{prefix}.lif2", ops.conv(f"{prefix}.conv1", spikes), 1.0, "map")
        return _merge(cfg, ops, stream, ops.conv(f"{prefix}.conv2", spikes), f"{prefix}.conv2",
                      f"{prefix}.out_lif")
    return _mlp(cfg, ops, prefix, stream)


def _mlp(cfg, ops, block, stream):
    """Walk block ``block``'s ``MS_MLP`` on the stream's tokens (1x1 convs on the map are the same
    arithmetic); its output LIF (SEW, vanilla) is the block's ``out_lif``."""
    prefix = f"{block}.mlp"
    spikes = _stream_spikes(cfg, ops, f"{prefix}.fc1_lif", stream, "tokens")
    spikes = ops.lif(f"{prefix}.fc2_lif", ops.conv(f"{prefix}.fc1_conv", spikes), 1.0, "tokens")
    return _merge(cfg, ops, stream, ops.conv(f"{prefix}.fc2_conv", spikes), f"{prefix}.fc2_conv",
                  f"{block}.out_lif")


def _transformer_block(cfg, ops, prefix, stream):
    """Walk ``MS_Block``: SDSA then ChannelMLP, each added to the stream."""
    attn = f"{prefix}.attn"
    spikes = _stream_spikes(cfg, ops, f"{attn}.head_lif", stream, "map")
    q = ops.lif(f"{attn}.q_lif", ops.conv(f"{attn}.q_conv", spikes), 1.0, "map")
    k = ops.lif(f"{attn}.k_lif", ops.conv(f"{attn}.k_conv", spikes), 1.0, "map")
    v = None
    if cfg.sdsa != 2:
        v = ops.lif(f"{attn}.v_lif", ops.conv(f"{attn}.v_conv", spikes), 1.0, "map")
    out = ops.sdsa(attn, q, k, v)
    stream = _merge(cfg, ops, stream, ops.conv(f"{attn}.proj_conv", out), f"{attn}.proj_conv",
                    f"{prefix}.attn_out_lif")
    return _mlp(cfg, ops, prefix, stream)


def heads_view(spikes: torch.Tensor, heads: int) -> torch.Tensor:
    """Reshape ``[T, B, C, H, W]`` to ``[T, B, heads, N, d]`` (heads are contiguous channels)."""
    T, B, C, H, W = spikes.shape
    return (spikes.flatten(3).transpose(-1, -2).reshape(T, B, H * W, heads, C // heads)
            .permute(0, 1, 3, 2, 4))


def heads_merge(x: torch.Tensor, shape) -> torch.Tensor:
    """Invert :func:`heads_view`: ``[T, B, heads, N, d] -> [T, B, C, H, W]``."""
    T, B, C, H, W = shape
    return x.permute(0, 1, 3, 2, 4).reshape(T, B, H * W, C).transpose(-1, -2).reshape(shape)


def trace_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Return a LIF's ``[T, B, C, H, W]`` tensor in the shape ``golden.model`` records it."""
    if layout == "tokens":
        return x.flatten(3)
    return x


class FloatBackend:
    """Compute the folded network in float64 with the float LIF; the check that folding is exact.

    Parameters
    ----------
    net : quant.fold.FoldedNet
    trace : bool
        Keep every LIF's spikes (``self.spikes``, golden's module paths and shapes) and every
        layer's output (``self.accumulators``).
    """

    shortcuts = ("membrane", "sew", "vanilla")

    def __init__(self, net, trace: bool = False) -> None:
        self.net = net
        self.cfg = net.cfg
        self.fused_sepconv = net.fuse_sepconv
        self.trace = trace
        self.spikes: dict = {}
        self.accumulators: dict = {}

    def stem(self, name, image):
        """Return the stem conv's output ``[T, B, C, H, W]`` for ``[B, C, H, W]`` images."""
        x = image.to(torch.float64)
        out = self._conv2d(name, x)
        return out.unsqueeze(0).expand(self.cfg.T, *out.shape)

    def spike_input(self, name, frames):
        """Return event frames ``[T, B, C, H, W]`` (0/1) as the first layer's input spikes."""
        x = frames.to(torch.float64)
        if self.trace:
            self.spikes[name] = x
        return x

    def _conv2d(self, name, x):
        layer = self.net.layers[name]
        return F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding,
                        groups=layer.groups)

    def conv(self, name, x):
        """Apply a folded layer to every time step of ``x``."""
        layer = self.net.layers[name]
        if layer.kind == "linear":
            out = x @ layer.weight[:, :, 0, 0].T + layer.bias
        else:
            out = self._conv2d(name, x.flatten(0, 1))
            out = out.reshape(*x.shape[:2], *out.shape[1:])
        if self.trace:
            self.accumulators[name] = out
        return out

    def lif(self, name, x, theta, layout):
        """Fire the float LIF (golden's expressions) on ``[T, ...]``."""
        spikes = MultiStepLIF(threshold=theta)(x)
        if self.trace:
            self.spikes[name] = trace_layout(spikes, layout)
        return spikes

    def begin_stream(self, x, stream, producer):
        """Start a residual stream with a downsampler's output."""
        return x

    def add(self, stream, branch, producer):
        """Add a branch output to the stream."""
        return stream + branch

    def count_stream(self, spikes, stream, producer):
        """Start a stream of spike counts (SEW) with LIF ``producer``'s spikes."""
        return spikes

    def add_spikes(self, stream, spikes, producer):
        """Add LIF ``producer``'s spikes to a stream of counts (SEW)."""
        return stream + spikes

    def residual(self, branch, spikes, producer):
        """Return layer ``producer``'s output plus the block's incoming spikes (vanilla)."""
        return branch + spikes

    def sdsa(self, prefix, q, k, v):
        """Apply the configured SDSA and its ``attn_lif``; return ``[T, B, C, H, W]`` spikes."""
        cfg = self.cfg
        theta = self.net.attn_thresholds[prefix]
        qh, kh = heads_view(q, cfg.num_heads), heads_view(k, cfg.num_heads)
        if cfg.sdsa in (3, 4):
            vh = heads_view(v, cfg.num_heads)
            x = (qh @ (kh.transpose(-2, -1) @ vh)) * cfg.attn_scale
            out = MultiStepLIF(threshold=theta)(heads_merge(x, q.shape))
            if self.trace:
                self.spikes[f"{prefix}.attn_lif"] = out.flatten(3)
            return out
        column = ((kh * heads_view(v, cfg.num_heads)) if cfg.sdsa == 1 else kh).sum(-2, True)
        mask = MultiStepLIF(threshold=theta)(column)
        if self.trace:
            self.spikes[f"{prefix}.attn_lif"] = mask
        return heads_merge(qh * mask, q.shape)

    def pool(self, stream):
        """Average the stream over positions: ``[T, B, C]``."""
        return stream.flatten(3).mean(3)

    def finish(self, logits):
        """Return the mean over T of ``[T, B, classes]`` logits."""
        return logits.mean(0)


@dataclass
class Sym:
    """Stand for a tensor during planning: what produced it.

    Members
    -------
    kind : str
        ``'layer'`` (a layer's output), ``'stream'``, ``'pooled'``, ``'spikes'``, ``'attention'``
        or ``'residual'`` (vanilla: a layer's output plus the block's incoming spikes).
    source : str
        The layer, stream or LIF name (``'pooled'``: the stream, or with the vanilla shortcut
        the LIF whose spikes are pooled).
    after : str
        For a stream: the producer whose add made this value of it (a layer; SEW: a LIF). For
        ``'residual'``: the LIF whose spikes are added.
    """

    kind: str
    source: str
    after: str = ""


@dataclass
class Planner:
    """Record the structure facts the quantizer needs, by walking the network symbolically.

    Members
    -------
    streams : dict
        Stream name -> list of producer layer names (the downsampler first); membrane shortcut.
    count_streams : dict
        SEW: stream name -> list of the LIFs whose spikes it counts (the downsampler's first).
    residuals : dict
        Vanilla: layer name -> the LIF whose spikes are added to its output.
    lif_inputs : dict
        LIF name -> :class:`Sym` of its input, in execution order.
    layer_inputs : dict
        Layer name -> :class:`Sym` of its input.
    attention : list
        Attention module paths, in order.
    """

    shortcuts = ("membrane", "sew", "vanilla")

    fused_sepconv: bool = True
    streams: dict = field(default_factory=dict)
    count_streams: dict = field(default_factory=dict)
    residuals: dict = field(default_factory=dict)
    lif_inputs: dict = field(default_factory=dict)
    layer_inputs: dict = field(default_factory=dict)
    lif_layouts: dict = field(default_factory=dict)
    attention: list = field(default_factory=list)

    def stem(self, name, image):
        """Record the stem."""
        self.layer_inputs[name] = Sym("image", "image")
        return Sym("layer", name)

    def spike_input(self, name, frames):
        """Record the event input: spikes, like a LIF's output."""
        return Sym("spikes", name)

    def conv(self, name, x):
        """Record a layer and its input."""
        self.layer_inputs[name] = x
        return Sym("layer", name)

    def lif(self, name, x, theta, layout):
        """Record a LIF and its input."""
        self.lif_inputs[name] = x
        self.lif_layouts[name] = layout
        return Sym("spikes", name)

    def begin_stream(self, x, stream, producer):
        """Record a stream's first producer."""
        self.streams[stream] = [producer]
        return Sym("stream", stream, producer)

    def add(self, stream, branch, producer):
        """Record a branch producer of a stream."""
        self.streams[stream.source].append(producer)
        return Sym("stream", stream.source, producer)

    def count_stream(self, spikes, stream, producer):
        """Record a stream of spike counts and its first LIF (SEW)."""
        self.count_streams[stream] = [producer]
        return Sym("stream", stream, producer)

    def add_spikes(self, stream, spikes, producer):
        """Record a LIF whose spikes are added to a stream of counts (SEW)."""
        self.count_streams[stream.source].append(producer)
        return Sym("stream", stream.source, producer)

    def residual(self, branch, spikes, producer):
        """Record a layer whose output gets the block's incoming spikes added (vanilla)."""
        self.residuals[producer] = spikes.source
        return Sym("residual", producer, spikes.source)

    def sdsa(self, prefix, q, k, v):
        """Record an attention module and its ``attn_lif``."""
        self.attention.append(prefix)
        self.lif_inputs[f"{prefix}.attn_lif"] = Sym("attention", prefix)
        self.lif_layouts[f"{prefix}.attn_lif"] = "attention"
        return Sym("spikes", f"{prefix}.attn_lif")

    def pool(self, stream):
        """Record the head's pooling of the last stream (vanilla: of the last spikes)."""
        return Sym("pooled", stream.source)

    def finish(self, logits):
        """Return the planner itself."""
        return self


def sepconv_fused(setting, prefix: str) -> bool:
    """Whether the SepConv of block ``prefix`` (``"ConvBlock1_1.0"``) is fused under ``setting``:
    ``True`` (every one, the default), ``False`` (none) or a tuple of the block paths whose
    SepConv is fused (the others stay apart: ``quant.fold.fold_model``'s ``fuse_sepconv``)."""
    if isinstance(setting, bool):
        return setting
    return prefix in setting


def plan(cfg, fused_sepconv: bool = True) -> Planner:
    """Return the :class:`Planner` filled by walking ``cfg``'s network."""
    return walk(cfg, Planner(fused_sepconv=fused_sepconv), None)
