"""Firing rates, synaptic operations and energy of a Meta-SpikeFormer, per layer and in total.

Two estimates side by side:

``paper``
    The method of the paper's authors (Horowitz 45 nm, 32-bit float):
    ``E = 4.6 pJ * MACs(stem) + 0.9 pJ * sum of SOPs`` with ``SOP(l) = fr_in(l) * T * FLOPs(l)``,
    ``FLOPs_conv = k*k*h_out*w_out*c_in*c_out / groups``, ``FLOPs_fc = in*out``. The stem is
    counted at every time step (the official graph runs it T times; hardware can run it once).
``memory``
    A memory-aware estimate for an int8 accelerator: every operation at ``add_pj`` (0.03 pJ, an
    8-bit add) or ``mac_pj`` (0.2 + 0.03 pJ for a non-binary input), plus ``sram_pj_per_byte``
    (1.25 pJ) for every byte moved: the layer's weights (``weight_bytes`` each) read once per time
    step, its input spikes (1 bit each) read once per time step, and each output neuron's
    membrane/accumulator (``state_bytes``) read and written once per time step.

Event input (``cfg.events``): the stem's input is binary ON/OFF event frames, so the stem is
counted like every other layer on spikes, as SOPs (``SOP = fr_in * T * FLOPs``, 0.9 pJ each; input
``events``), and an event model's fused report has no MAC at all.

Graphs. ``fused`` (default, what the paper's numbers assume): every RepConv chain is one dense
3x3 conv and SepConv's depthwise + last pointwise pair is one dense 7x7 conv, both on spikes, so
every layer but the stem has a binary input. ``unfused``: the training graph as it runs; a layer
whose input is not binary (RepConv internals, SepConv's last 1x1, SEW streams) is counted as MACs
on every input (dense), which is what it costs without re-parameterisation.

The SDSA products count as additions: ``K^T V`` adds a V row per K spike (``fr_k * N * C * d``),
``Q (K^T V)`` adds a KV row per Q spike (``fr_q * N * C * d``); SDSA-1/2 column sums add one per K
spike (``fr_k * N * C``). Masks (ANDs) and residual-stream additions are not counted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .cliargs import Parser
from .model import MetaSpikeFormer, MS_Attention, RepConv, SepConv, record_spikes

__all__ = ["EnergyConstants", "LayerCost", "measure", "firing_rates", "format_table", "main"]


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation and per byte, in pJ, and the memory-aware model's word sizes."""

    mac_pj: float = 4.6            # paper: 32-bit float multiply-accumulate
    ac_pj: float = 0.9             # paper: 32-bit float accumulate
    int_add_pj: float = 0.03       # 8-bit integer add (Horowitz 45 nm)
    int_mac_pj: float = 0.23       # 8-bit multiply (0.2) + add (0.03)
    sram_pj_per_byte: float = 1.25  # reading or writing one byte of on-chip SRAM
    weight_bytes: int = 1          # int8 weights
    state_bytes: int = 2           # membrane potential / accumulator word


@dataclass
class LayerCost:
    """Describe one layer's work for one image (all time steps)."""

    name: str
    kind: str            # conv, fc, sdsa
    input_from: str      # spike layer (or 'pixels', 'non-binary') that feeds it
    binary_input: bool
    fr_in: float         # firing rate of the input (fraction of non-zero inputs)
    flops: float         # dense operations per time step
    params: int          # weights in the (fused) layer
    in_elems: int        # input elements per time step
    out_elems: int       # output elements per time step
    T: int
    sop: float = 0.0     # synaptic operations (additions) over T steps
    macs: float = 0.0    # multiply-accumulates over T steps
    energy_paper_pj: float = 0.0
    energy_memory_pj: float = 0.0
    bytes_moved: float = 0.0


def _conv_flops(module: nn.Module, out_shape) -> float:
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    k = 1
    for s in module.kernel_size:
        k *= s
    spatial = 1
    for s in out_shape[2:]:
        spatial *= s
    return k * spatial * module.in_channels * module.out_channels / module.groups


def _weights(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


class _Recorder:
    """Collect, for every conv/linear, its input rate and sizes during one forward pass."""

    def __init__(self, model: nn.Module):
        self.rows: dict = {}
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(mod, inputs, out):
            x = inputs[0].detach()
            if isinstance(mod, nn.Linear):
                batch = x.numel() // mod.in_features
            else:
                batch = x.shape[0]
            binary = bool(((x == 0) | (x == 1)).all())
            self.rows[name] = dict(module=mod, fr=float((x != 0).float().mean()),
                                   binary=binary, batch=batch,
                                   flops=_conv_flops(mod, out.shape),
                                   in_elems=x[0].numel() if not isinstance(mod, nn.Linear)
                                   else mod.in_features,
                                   out_elems=out[0].numel() if not isinstance(mod, nn.Linear)
                                   else mod.out_features)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def firing_rates(spikes: dict) -> dict:
    """Return ``{LIF path: fraction of ones}`` from a :func:`record_spikes` dict."""
    return {name: float(s.float().mean()) for name, s in spikes.items()}


def measure(model: MetaSpikeFormer, images: torch.Tensor, graph: str = "fused",
            constants: EnergyConstants = EnergyConstants()) -> tuple[list, dict]:
    """Run ``images`` through ``model`` (eval mode) and return ``(layers, firing_rates)``.

    Parameters
    ----------
    model : MetaSpikeFormer
    images : torch.Tensor
        ``[B, C, H, W]``, or event frames ``[T, B, 2, H, W]`` for an event model
        (``cfg.events``); rates are averaged over the batch and the time steps.
    graph : str
        ``'fused'`` (re-parameterised: the paper's assumption) or ``'unfused'``.
    """
    if graph not in ("fused", "unfused"):
        raise ValueError(f"graph={graph!r} is not 'fused' or 'unfused'")
    T = model.cfg.T
    model.eval()
    rec = _Recorder(model)
    try:
        with torch.no_grad(), record_spikes(model) as spikes:
            model(images)
    finally:
        rec.close()
    rates = firing_rates(spikes)
    fused_into = {}  # member conv -> the fused layer's name
    fused_layers = []
    if graph == "fused":
        for name, mod in model.named_modules():
            if isinstance(mod, RepConv):
                members = [f"{name}.body.0", f"{name}.body.2.0", f"{name}.body.2.1"]
                first, last = rec.rows[members[0]], rec.rows[members[2]]
                k = 9
                spatial = last["out_elems"] // last["module"].out_channels
                cin, cout = first["module"].in_channels, last["module"].out_channels
                fused_layers.append((members[0], dict(
                    name=name + " (fused 3x3)", fr=first["fr"], binary=first["binary"],
                    flops=k * spatial * cin * cout, params=k * cin * cout + cout,
                    in_elems=first["in_elems"], out_elems=last["out_elems"])))
                fused_into.update({m: name for m in members})
            elif isinstance(mod, SepConv):
                dw, pw = rec.rows[f"{name}.dwconv"], rec.rows[f"{name}.pwconv2"]
                spatial = pw["out_elems"] // pw["module"].out_channels
                cin, cout = pw["module"].in_channels, pw["module"].out_channels
                fused_layers.append((f"{name}.dwconv", dict(
                    name=f"{name}.dwconv+pwconv2 (fused 7x7)", fr=dw["fr"], binary=dw["binary"],
                    flops=49 * spatial * cin * cout, params=49 * cin * cout,
                    in_elems=dw["in_elems"], out_elems=pw["out_elems"])))
                fused_into.update({f"{name}.dwconv": name, f"{name}.pwconv2": name})
    fused_at = dict(fused_layers)
    stem = "downsample1_1.encode_conv"
    layers = []
    for name, row in rec.rows.items():
        if name in fused_into and name not in fused_at:
            continue
        spec = fused_at.get(name) or dict(
            name=name, fr=row["fr"], binary=row["binary"], flops=row["flops"],
            params=_weights(row["module"]), in_elems=row["in_elems"],
            out_elems=row["out_elems"])
        kind = "fc" if isinstance(row["module"], nn.Linear) else "conv"
        if name == stem:
            # Pixels multiply; event frames (0/1, checked by the model) are spikes like any other.
            source = "events" if model.cfg.events else "pixels"
            binary = model.cfg.events and spec["binary"]
        else:
            source = "spikes" if spec["binary"] else "non-binary"
            binary = spec["binary"]
        layers.append(LayerCost(name=spec["name"], kind=kind, input_from=source,
                                binary_input=binary, fr_in=spec["fr"],
                                flops=spec["flops"], params=int(spec["params"]),
                                in_elems=int(spec["in_elems"]), out_elems=int(spec["out_elems"]),
                                T=T))
        # The SDSA products follow the Q/K/V projections in execution order.
        if name.endswith("attn.proj_conv.0.body.0") or name.endswith("attn.proj_conv.0"):
            layers.extend(_sdsa_rows(model, name.split(".proj_conv")[0], rates, spikes, T))
    for layer in layers:
        _cost(layer, constants)
    return layers, rates


def _sdsa_rows(model, attn_name, rates, spikes, T) -> list:
    attn: MS_Attention = model.get_submodule(attn_name)
    q = spikes[f"{attn_name}.q_lif"]
    C, N = q.shape[2], q.shape[3] * q.shape[4]
    d = C // attn.num_heads
    fr_q, fr_k = rates[f"{attn_name}.q_lif"], rates[f"{attn_name}.k_lif"]
    if attn.sdsa in (3, 4):
        return [LayerCost(f"{attn_name} K^T V", "sdsa", "k_lif/v_lif", True, fr_k,
                          N * C * d, 0, 2 * N * C, C * d, T),
                LayerCost(f"{attn_name} Q (K^T V)", "sdsa", "q_lif", True, fr_q,
                          N * C * d, 0, N * C, N * C, T)]
    return [LayerCost(f"{attn_name} column sum", "sdsa", "k_lif", True, fr_k, N * C, 0,
                      2 * N * C, C, T)]


def _cost(layer: LayerCost, k: EnergyConstants) -> None:
    T = layer.T
    if layer.binary_input:
        layer.sop = layer.fr_in * T * layer.flops
        layer.energy_paper_pj = k.ac_pj * layer.sop
        ops_pj = k.int_add_pj * layer.sop
    else:
        # The stem (pixels) and any non-binary input: every input multiplies.
        layer.macs = T * layer.flops
        layer.energy_paper_pj = k.mac_pj * layer.macs
        ops_pj = k.int_mac_pj * layer.macs
    weight_bytes = layer.params * k.weight_bytes * T
    input_bytes = (layer.in_elems / 8 if layer.binary_input else layer.in_elems) * T
    state_bytes = 2 * layer.out_elems * k.state_bytes * T
    layer.bytes_moved = weight_bytes + input_bytes + state_bytes
    layer.energy_memory_pj = ops_pj + k.sram_pj_per_byte * layer.bytes_moved


def totals(layers: list) -> dict:
    """Return the network totals of a :func:`measure` layer list."""
    return dict(sop=sum(x.sop for x in layers), macs=sum(x.macs for x in layers),
                energy_paper_mj=sum(x.energy_paper_pj for x in layers) * 1e-9,
                energy_memory_mj=sum(x.energy_memory_pj for x in layers) * 1e-9,
                bytes_moved=sum(x.bytes_moved for x in layers))


def format_table(layers: list, rates: dict, graph: str) -> str:
    """Return the terminal report: firing rates, then per-layer costs and totals."""
    out = io.StringIO()
    out.write(f"Firing rates ({len(rates)} spike layers)\n")
    for name, r in rates.items():
        out.write(f"  {name:<40} {r:7.4f}\n")
    out.write(f"\nPer-layer cost per image ({graph} graph; paper: 4.6 pJ/MAC, 0.9 pJ/SOP; "
              f"memory-aware: int8 ops + 1.25 pJ/byte)\n")
    out.write(f"  {'layer':<52} {'in':<10} {'fr_in':>6} {'FLOPs':>11} {'SOP':>11} "
              f"{'MAC':>10} {'E_paper uJ':>10} {'E_mem uJ':>9}\n")
    for x in layers:
        out.write(f"  {x.name[:52]:<52} {x.input_from:<10} {x.fr_in:6.3f} {x.flops:11.3e} "
                  f"{x.sop:11.3e} {x.macs:10.3e} {x.energy_paper_pj * 1e-6:10.4f} "
                  f"{x.energy_memory_pj * 1e-6:9.4f}\n")
    t = totals(layers)
    out.write(f"\nTotal: SOP {t['sop']:.4e}, MAC {t['macs']:.4e}; energy by the paper's method "
              f"{t['energy_paper_mj']:.5f} mJ, memory-aware {t['energy_memory_mj']:.5f} mJ "
              f"({t['bytes_moved'] / 1e6:.3f} MB moved)\n")
    return out.getvalue()


def _images(model: MetaSpikeFormer, n: int, source: str) -> tuple[torch.Tensor, str]:
    cfg = model.cfg
    if cfg.events:
        return _event_images(model, n, source)
    if source == "digits" or (source == "auto" and cfg.in_channels == 1
                              and cfg.num_classes == 10 and cfg.img_size % 8 == 0):
        from .data import digits_dataset
        return digits_dataset(cfg.img_size, "test", 0).tensors[0][:n], "digits test split"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, cfg.in_channels, cfg.img_size, cfg.img_size), generator=gen)
    return x, "seeded N(0,1) noise (no data set for this configuration)"


def _event_images(model: MetaSpikeFormer, n: int, source: str) -> tuple[torch.Tensor, str]:
    """Return ``[T, n, 2, H, W]`` event frames for an event model, and where they came from."""
    cfg = model.cfg
    if source != "random" and cfg.num_classes == 10 and cfg.img_size % 8 == 0:
        from .events import event_split
        x, _ = event_split("test", cfg.T, cfg.img_size, limit=n)
        return (x.transpose(0, 1).contiguous(),
                "digits test split seen by the simulated event camera (golden.events)")
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((cfg.T, n, 2, cfg.img_size, cfg.img_size), generator=gen) < 0.1).float()
    return x, "seeded random event frames (10 % ones; no data set for this configuration)"


def main(argv=None) -> int:
    """Run ``python -m golden energy``."""
    ap = Parser(prog="python -m golden energy",
                                 description="Firing rates and energy of a model, per layer.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--ckpt", help="checkpoint to load (default: the demo checkpoint)")
    src.add_argument("--variant", help="a named variant with random weights instead")
    ap.add_argument("--T", type=int, help="override the time steps")
    ap.add_argument("--images", type=int, default=64,
                    help="images (event models: event samples) to average over")
    ap.add_argument("--data", choices=("auto", "digits", "random"), default="auto",
                    help="digits: the held-out digits (an event model sees them through the "
                    "simulated event camera); random: seeded noise (random event frames)")
    ap.add_argument("--graph", choices=("fused", "unfused"), default="fused")
    ap.add_argument("--sram-pj-per-byte", type=float, default=1.25)
    ap.add_argument("--csv", help="write the per-layer table to this CSV file")
    ap.add_argument("--json", help="write layers, rates and totals to this JSON file")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    problem = None
    if args.images < 1:
        problem = f"--images {args.images} is out of range: at least 1"
    elif args.T is not None and args.T < 1:
        problem = f"--T {args.T} is out of range: at least 1"
    elif args.threads < 1:
        problem = f"--threads {args.threads} is out of range: at least 1"
    elif not 0 <= args.sram_pj_per_byte < float("inf"):
        problem = f"--sram-pj-per-byte {args.sram_pj_per_byte} must be finite and >= 0"
    for flag, target in (("--csv", args.csv), ("--json", args.json)):
        if problem is None and target:
            parent = os.path.dirname(os.path.abspath(target))
            if not os.path.isdir(parent):
                problem = f"{flag} {target}: directory {parent} does not exist"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    overrides = {"T": args.T} if args.T is not None else {}
    try:
        if args.variant:
            from .config import variant
            torch.manual_seed(0)
            model = MetaSpikeFormer(variant(args.variant, **overrides))
            what = f"variant {args.variant} (random weights, seed 0)"
        else:
            from pathlib import Path

            from .checkpoint import load_checkpoint
            path = args.ckpt or str(Path(__file__).parent / "checkpoints" / "demo.pth")
            model = load_checkpoint(path, **overrides)
            what = f"checkpoint {path}"
    except (ValueError, OSError, RuntimeError) as exc:
        # CheckpointError is a ValueError; a missing file is an OSError. One line, nothing written.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    images, data = _images(model, args.images, args.data)
    constants = EnergyConstants(sram_pj_per_byte=args.sram_pj_per_byte)
    layers, rates = measure(model, images, args.graph, constants)
    count = images.shape[1] if model.cfg.events else len(images)
    print(f"{what}, T={model.cfg.T}, {count} {'samples' if model.cfg.events else 'images'} "
          f"from {data}")
    print(format_table(layers, rates, args.graph))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(layers[0])))
            writer.writeheader()
            writer.writerows(asdict(x) for x in layers)
        print(f"wrote {args.csv}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(source=what, data=data, graph=args.graph, T=model.cfg.T,
                           constants=asdict(constants), firing_rates=rates,
                           layers=[asdict(x) for x in layers], totals=totals(layers)),
                      f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
