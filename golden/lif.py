"""Multi-step leaky integrate-and-fire neuron, as the official Meta-SpikeFormer uses it.

The official model builds every neuron as spikingjelly 0.0.0.0.12
``MultiStepLIFNode(tau=2.0, detach_reset=True)`` with defaults ``decay_input=True``,
``v_reset=0.0`` and the ``Sigmoid(alpha=4)`` surrogate. This module re-derives that neuron in plain
PyTorch. Per time step ``t`` (``V[-1] = 0``)::

    H[t] = V[t-1] + (X[t] - V[t-1]) / tau        # charge, the input decays too
    S[t] = 1 if H[t] - V_th >= 0 else 0          # fire (>=, not >)
    V[t] = (1 - S[t]) * H[t] + S[t] * 0.0        # hard reset; S detached in the graph

The float expressions are the same ones, in the same order, as spikingjelly's torch backend, so
the two agree bit for bit, not just within a tolerance. The backward pass uses
``dS/dH = alpha * sigmoid(alpha * (H - V_th)) * (1 - sigmoid(alpha * (H - V_th)))`` and, because
the reset is detached, ``dV/dH = 1 - S``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SigmoidSurrogateSpike", "spike_fn", "MultiStepLIF", "lif_reference"]

SURROGATE_ALPHA = 4.0


class SigmoidSurrogateSpike(torch.autograd.Function):
    """Fire a Heaviside step forward, pass the sigmoid surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        """Return ``(x >= 0)`` in ``x``'s dtype and keep ``x`` for the backward pass."""
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        """Return ``grad * alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))``."""
        (x,) = ctx.saved_tensors
        sgax = (x * ctx.alpha).sigmoid()
        return grad_output * (1.0 - sgax) * sgax * ctx.alpha, None


def spike_fn(x: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """Apply the Heaviside spike with the sigmoid surrogate gradient.

    Parameters
    ----------
    x : torch.Tensor
        Membrane potential minus threshold.
    alpha : float
        Surrogate sharpness; the official model uses 4.
    """
    return SigmoidSurrogateSpike.apply(x, alpha)


class MultiStepLIF(nn.Module):
    """Run a layer of LIF neurons over the leading time axis of a ``[T, ...]`` tensor.

    Parameters
    ----------
    threshold : float
        Firing threshold ``V_th`` (1.0 everywhere in the official model, 0.5 for ``attn_lif``).
    tau : float
        Membrane time constant; 2.0 in the official model.
    alpha : float
        Sigmoid surrogate sharpness; 4.0 in the official model.

    Notes
    -----
    The neuron holds no parameters or buffers, so it adds no state-dict entries, like the official
    one. Every call starts from ``V = 0``: the official code resets all neurons between samples
    (``functional.reset_net``), which a stateless call makes automatic. A learnable threshold
    (SDSA-4) is passed per call as a tensor through ``forward(x, threshold=...)``.
    """

    def __init__(self, threshold: float = 1.0, tau: float = 2.0,
                 alpha: float = SURROGATE_ALPHA) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.threshold = float(threshold)
        self.tau = float(tau)
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        """Describe the neuron's constants."""
        return f"threshold={self.threshold}, tau={self.tau}, alpha={self.alpha}"

    def forward(self, x_seq: torch.Tensor,
                threshold: torch.Tensor | float | None = None) -> torch.Tensor:
        """Return the binary spike train (same shape and dtype as ``x_seq``).

        Parameters
        ----------
        x_seq : torch.Tensor
            Input currents, time first: ``[T, ...]`` with ``T >= 1``.
        threshold : torch.Tensor or float, optional
            Overrides the constant threshold (used by the learnable-threshold SDSA-4).
        """
        if x_seq.dim() < 2:
            raise ValueError(f"MultiStepLIF expects [T, ...] with at least 2 dims, got shape "
                             f"{tuple(x_seq.shape)}")
        v_th = self.threshold if threshold is None else threshold
        steps = x_seq.shape[0]
        # Without autograd, `h >= v_th` equals spikingjelly's `h - v_th >= 0` for finite floats
        # (a rounded difference is zero only when the operands are equal) and saves a pass.
        fast = not (torch.is_grad_enabled() and (x_seq.requires_grad
                                                 or isinstance(v_th, torch.Tensor)
                                                 and v_th.requires_grad))
        spikes = []
        v = None
        for t in range(steps):
            x = x_seq[t]
            if v is None:
                # spikingjelly starts from V = 0.0: `0.0 + (x - 0.0) / tau` is `x / tau` exactly
                # (up to the sign of a zero, which no comparison or later sum can see).
                h = x / self.tau
            else:
                h = v + (x - v) / self.tau
            if fast:
                s = (h >= v_th).to(x.dtype)
            else:
                s = spike_fn(h - v_th, self.alpha)
            spikes.append(s)
            if t + 1 < steps:  # the last step's reset is never read
                s_d = s.detach()
                v = (1.0 - s_d) * h + s_d * 0.0
        if len(spikes) == 1:
            return spikes[0].unsqueeze(0)
        return torch.stack(spikes, 0)


def lif_reference(inputs: list[float], threshold: float = 1.0,
                  tau: float = 2.0) -> list[int]:
    """Return the spikes of one neuron for a list of inputs, in plain Python floats.

    A readable restatement of the neuron's rule for tests and for the integer model's authors.
    """
    v = 0.0
    out = []
    for x in inputs:
        h = v + (x - v) / tau
        s = 1 if h >= threshold else 0
        v = 0.0 if s else h
        out.append(s)
    return out
