"""Run the integer golden model: the arithmetic contract for the whole network, in PyTorch.

After the stem's input quantization every tensor is an integer tensor (uint8 spikes, int64
accumulators, membranes, streams and counts). Convolutions and matrix products are evaluated by
float BLAS used as an exact integer evaluator: every operand is an integer and the quantizer proves
every partial sum's magnitude below ``2**24`` (float32, used then) or ``2**53`` (float64), where
floating-point addition of integers is exact in any order; the result is converted back to int64
at once. All other steps (bias, shifts, adds, LIF compare/reset/halving, pooling) are int64 ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .graph import heads_merge, heads_view, trace_layout, walk
from .quantize import IntNet

__all__ = ["IntegerModel", "Trace"]

_EXACT_FLOAT32 = 2 ** 24


@dataclass
class Trace:
    """Hold per-layer integer tensors of one forward pass, keyed by the hardware's names.

    Members
    -------
    spikes : dict
        LIF module path -> uint8 spikes, golden's shape (``[T, B, C, H, W]``, ``[T, B, C, N]`` for
        token LIFs and SDSA-3's ``attn_lif``, ``[T, B, heads, 1, d]`` for SDSA-1/2's, ``[T, B, C]``
        for the head's ``lif``).
    membranes : dict
        LIF module path -> int64 membrane after each step (0 where it fired), spikes' shape.
    accumulators : dict
        Layer name -> int64 outputs ``[T, B, C, H, W]`` (the head: ``[T, B, classes]``); also
        ``<attn>.kv`` (``[T, B, heads, d, d]``, SDSA-3/4), ``<attn>.counts`` (pre-threshold)
        and ``<attn>.out`` (the uint8 spikes into ``proj_conv``).
    streams : dict
        Producer layer name -> the int64 residual stream right after its add (SEW shortcut:
        producer LIF name -> the int64 spike counts right after its spikes were added).
    residuals : dict
        Vanilla shortcut: layer name -> the int64 input of the block's output LIF,
        ``(acc << shift) + (identity if spike else 0)``.
    """

    spikes: dict = field(default_factory=dict)
    membranes: dict = field(default_factory=dict)
    accumulators: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)
    residuals: dict = field(default_factory=dict)


class _IntBackend:
    """Implement :func:`quant.graph.walk`'s primitives on integer tensors."""

    shortcuts = ("membrane", "sew", "vanilla")

    def __init__(self, model: "IntegerModel", trace: Trace | None) -> None:
        self.model = model
        self.net = model.net
        self.cfg = model.net.cfg
        self.fused_sepconv = model.net.fuse_sepconv
        self.trace = trace

    # Layers ------------------------------------------------------------------------------------
    def _evaluate(self, name, x, weight, layer):
        """Return ``conv(x, weight)`` exactly as int64 (float BLAS within its exact range)."""
        dtype = torch.float32 if layer.magnitude_bound < _EXACT_FLOAT32 else torch.float64
        w = self.model.weights[name][dtype]
        if layer.kind == "linear":
            return (x.to(dtype) @ w[:, :, 0, 0].T).to(torch.int64) + self.model.biases[name]
        out = F.conv2d(x.to(dtype), w, None, layer.stride, layer.padding, groups=layer.groups)
        return out.to(torch.int64) + self.model.biases[name].view(-1, *([1] * (out.dim() - 2)))

    def _check(self, name, out, layer):
        if self.model.check_bounds:
            low, high = int(out.min()), int(out.max())
            if low < int(layer.acc_low.min()) or high > int(layer.acc_high.max()):
                raise OverflowError(f"{name}: accumulator [{low}, {high}] outside its proven "
                                    f"bound [{layer.acc_low.min()}, {layer.acc_high.max()}]")

    def stem(self, name, codes):
        """Convolve pixel codes ``[B, C, H, W]`` once and repeat over T (the input is static)."""
        layer = self.net.layers[name]
        pad = layer.padding
        zero_point = torch.from_numpy(self.net.pixel.zero_point)
        B, C, H, W = codes.shape
        padded = zero_point.view(1, C, 1, 1).expand(B, C, H + 2 * pad, W + 2 * pad).clone()
        padded[:, :, pad:pad + H, pad:pad + W] = codes
        dtype = torch.float32 if layer.magnitude_bound < _EXACT_FLOAT32 else torch.float64
        out = F.conv2d(padded.to(dtype), self.model.weights[name][dtype], None, layer.stride, 0)
        out = out.to(torch.int64) + self.model.biases[name].view(1, -1, 1, 1)
        self._check(name, out, layer)
        out = out.unsqueeze(0).expand(self.cfg.T, *out.shape)
        if self.trace is not None:
            self.trace.accumulators[name] = out
        return out

    def spike_input(self, name, frames):
        """Take event frames ``[T, B, C, H, W]`` of 0/1 as the first layer's input spikes."""
        spikes = frames.to(torch.uint8)
        if self.trace is not None:
            self.trace.spikes[name] = spikes
        return spikes

    def conv(self, name, x):
        """Apply an integer layer to every time step of ``x``."""
        layer = self.net.layers[name]
        if layer.kind == "linear":
            out = self._evaluate(name, x, None, layer)
        else:
            out = self._evaluate(name, x.flatten(0, 1), None, layer)
            out = out.reshape(*x.shape[:2], *out.shape[1:])
        self._check(name, out, layer)
        if self.trace is not None:
            self.trace.accumulators[name] = out
        return out

    # Neurons -------------------------------------------------------------------------------
    def _lif(self, name, x, threshold):
        """Run integer LIF steps over T; return uint8 spikes and the membranes per step."""
        membrane = torch.zeros_like(x[0])
        spikes = torch.empty(x.shape, dtype=torch.uint8)
        membranes = torch.empty_like(x) if self.trace is not None else None
        for t in range(x.shape[0]):
            total = membrane + x[t]
            fired = total >= threshold
            membrane = torch.where(fired, 0, total >> 1)
            spikes[t] = fired
            if membranes is not None:
                membranes[t] = membrane
        return spikes, membranes

    def lif(self, name, x, theta, layout):
        """Fire the integer LIF ``name`` on ``[T, B, C, ...]`` with per-channel thresholds."""
        threshold = self.model.thresholds[name]
        threshold = threshold.view(-1, *([1] * (x.dim() - 3)))
        spikes, membranes = self._lif(name, x, threshold)
        if self.trace is not None:
            self.trace.spikes[name] = trace_layout(spikes, layout)
            self.trace.membranes[name] = trace_layout(membranes, layout)
        return spikes

    # Residual stream -----------------------------------------------------------------------
    def begin_stream(self, x, stream, producer):
        """Start a stream: the downsampler's output shifted to the stream's units."""
        out = x << self.model.shifts[producer]
        if self.trace is not None:
            self.trace.streams[producer] = out
        return out

    def add(self, stream, branch, producer):
        """Add a branch output, shifted left into the stream's units."""
        out = stream + (branch << self.model.shifts[producer])
        if self.trace is not None:
            self.trace.streams[producer] = out
        return out

    def count_stream(self, spikes, stream, producer):
        """Start a stream of spike counts (SEW) with the downsampler's spikes."""
        out = spikes.to(torch.int64)
        if self.trace is not None:
            self.trace.streams[producer] = out
        return out

    def add_spikes(self, stream, spikes, producer):
        """Count a branch output LIF's spikes into the stream (SEW): ``+1`` where it fired."""
        out = stream + spikes.to(torch.int64)
        if self.trace is not None:
            self.trace.streams[producer] = out
        return out

    def residual(self, branch, spikes, producer):
        """Return ``(acc << shift) + (identity if spike else 0)`` (vanilla): the spike selects
        the constant ``identity[c]``, it multiplies nothing."""
        identity = self.model.identities[producer]
        out = (branch << self.model.shifts[producer]) + torch.where(spikes.bool(), identity, 0)
        if self.trace is not None:
            self.trace.residuals[producer] = out
        return out

    # Attention -----------------------------------------------------------------------------
    def sdsa(self, prefix, q, k, v):
        """Compute SDSA-1/2/3/4 counts exactly and fire ``attn_lif``."""
        cfg = self.cfg
        name = f"{prefix}.attn_lif"
        threshold = self.model.thresholds[name].view(())
        # Counts are at most N*d (SDSA-3/4) or N (SDSA-1/2), far below 2**24: float32 is exact.
        qh = heads_view(q, cfg.num_heads).to(torch.float32)
        kh = heads_view(k, cfg.num_heads).to(torch.float32)
        if cfg.sdsa in (3, 4):
            vh = heads_view(v, cfg.num_heads).to(torch.float32)
            kv = kh.transpose(-2, -1) @ vh
            counts = (qh @ kv).to(torch.int64)
            counts = heads_merge(counts, q.shape)
            spikes, membranes = self._lif(name, counts, threshold)
            if self.trace is not None:
                self.trace.accumulators[f"{prefix}.kv"] = kv.to(torch.int64)
                self.trace.accumulators[f"{prefix}.counts"] = counts.flatten(3)
                self.trace.spikes[name] = spikes.flatten(3)
                self.trace.membranes[name] = membranes.flatten(3)
                self.trace.accumulators[f"{prefix}.out"] = spikes
            return spikes
        column = (kh * heads_view(v, cfg.num_heads).to(torch.float32) if cfg.sdsa == 1 else kh)
        counts = column.sum(-2, keepdim=True).to(torch.int64)
        mask, membranes = self._lif(name, counts, threshold)
        if self.trace is not None:
            self.trace.accumulators[f"{prefix}.counts"] = counts
            self.trace.spikes[name] = mask
            self.trace.membranes[name] = membranes
        out = heads_merge(heads_view(q, cfg.num_heads) & mask, q.shape)
        if self.trace is not None:
            self.trace.accumulators[f"{prefix}.out"] = out
        return out

    # Head ------------------------------------------------------------------------------------
    def pool(self, stream):
        """Sum the stream over positions (the mean's divisor lives in the LIF threshold; the
        vanilla shortcut's stream is spikes, summed as int64)."""
        return stream.flatten(3).sum(3, dtype=torch.int64)

    def finish(self, logits):
        """Sum the per-step logits over T (the mean's 1/T does not change the argmax)."""
        return logits.sum(0)


class IntegerModel:
    """Run a quantized network (:class:`~quant.quantize.IntNet`) on integer tensors.

    Parameters
    ----------
    net : IntNet
    check_bounds : bool
        Verify at run time that every accumulator stays inside its proven bound (a failed proof
        becomes an error, never a wrapped value). Costs a min/max per layer.
    """

    def __init__(self, net: IntNet, check_bounds: bool = True) -> None:
        self.net = net
        self.check_bounds = check_bounds
        self.weights = {}
        self.biases = {}
        self.shifts = {}
        self.identities = {}
        for name, layer in net.layers.items():
            w = torch.from_numpy(layer.weight)
            # Integer weights are exact in float32 up to 2**24 (at most 16-bit here).
            self.weights[name] = {torch.float32: w.to(torch.float32),
                                  torch.float64: w.to(torch.float64)}
            self.biases[name] = torch.from_numpy(layer.bias)
            if layer.shift is not None:
                self.shifts[name] = torch.from_numpy(layer.shift).view(-1, 1, 1)
            if layer.identity is not None:
                self.identities[name] = torch.from_numpy(layer.identity).view(-1, 1, 1)
        self.thresholds = {name: torch.from_numpy(lif.threshold)
                           for name, lif in net.lifs.items()}

    @property
    def cfg(self):
        """Return the model configuration."""
        return self.net.cfg

    def quantize_input(self, images) -> torch.Tensor:
        """Return int64 pixel codes for float images ``[B, C, H, W]`` (the only float step)."""
        if isinstance(images, torch.Tensor):
            images = images.detach().to(torch.float64).numpy()
        return torch.from_numpy(self.net.pixel.codes(images))

    def check_events(self, frames) -> torch.Tensor:
        """Return event frames ``[T, B, C, H, W]`` as int64 after checking shape and 0/1 values."""
        cfg = self.cfg
        frames = torch.as_tensor(frames)
        shape = (cfg.T, cfg.in_channels, cfg.img_size, cfg.img_size)
        if frames.dim() != 5 or (frames.shape[0], *frames.shape[2:]) != shape:
            raise ValueError(f"expected event frames [T={cfg.T}, B, {cfg.in_channels}, "
                             f"{cfg.img_size}, {cfg.img_size}], got {tuple(frames.shape)}")
        if bool(((frames != 0) & (frames != 1)).any()):
            raise ValueError("event frames must hold only 0 and 1")
        return frames.to(torch.int64)

    def forward(self, images, trace: bool = False):
        """Return int64 logits ``[B, classes]``, summed over T (and a :class:`Trace`).

        Parameters
        ----------
        images : torch.Tensor
            Float images ``[B, C, H, W]`` (quantized with the net's pixel codes) or int64 codes;
            with ``cfg.events``, event frames ``[T, B, C, H, W]`` of 0/1 (:meth:`check_events`).
        trace : bool
            Also return every LIF's spikes and membranes and every layer's accumulators.
        """
        if self.cfg.events:
            codes = self.check_events(images)
        else:
            if images.dim() != 4 or images.shape[1] != self.cfg.in_channels:
                raise ValueError(f"expected images [B, {self.cfg.in_channels}, H, W], got "
                                 f"{tuple(images.shape)}")
            codes = images if not images.is_floating_point() else self.quantize_input(images)
        record = Trace() if trace else None
        logits = walk(self.cfg, _IntBackend(self, record), codes.to(torch.int64))
        return (logits, record) if trace else logits

    __call__ = forward

    def dequantize(self, logits: torch.Tensor) -> torch.Tensor:
        """Return float64 logits comparable with the float model's (mean over T)."""
        return logits.to(torch.float64) * self.net.logit_scale / self.cfg.T


