"""Emit the Verilog of a design point, its memory images and a manifest of ports and parameters.

Everything written is a pure function of the design point (and the checkpoint it names): no dates,
no absolute paths, no source locations, so two runs give byte-identical files. Files are written
into a temporary directory beside the output and renamed into place at the end, so a failed run
leaves no half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from .config import DesignPoint

__all__ = ["LayerSpec", "EmittedUnit", "unit_factories", "layer_specs", "emit", "ports_of"]

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class LayerSpec:
    """One spike-input layer of a quantized network, as a synapse engine sees it."""

    name: str
    kind: str            # "conv", "linear" or "depthwise"
    weight: np.ndarray   # quant's canonical integer weights
    bias: np.ndarray
    height: int          # input map height (linear: tokens)
    width: int           # input map width (linear: 1)
    stride: int
    padding: int
    input_lif: str       # the LIF whose spikes feed the layer


@dataclass(frozen=True)
class EmittedUnit:
    """A unit ready to be converted: its Verilog module name, a factory and its parameters."""

    name: str
    factory: object      # () -> wiring.Component (a component can be elaborated only once)
    parameters: dict


def ports_of(unit: wiring.Component) -> list[dict]:
    """Return each port of a unit as ``{"name", "direction", "width"}`` in signature order."""
    ports = []
    for path, member, value in unit.signature.flatten(unit):
        ports.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(Value.cast(value)),
        })
    return ports


def layer_specs(checkpoint: str, weight_bits: int) -> tuple[list[LayerSpec], object]:
    """Quantize ``checkpoint`` and describe every layer that takes spikes (not the stem).

    Returns
    -------
    (specs, net)
        The layer specs in execution order and quant's :class:`~quant.quantize.IntNet`.
    """
    import torch  # noqa: PLC0415 - only this part of rtl_gen needs the model stack

    from golden.checkpoint import load_checkpoint  # noqa: PLC0415
    from quant.graph import plan  # noqa: PLC0415
    from quant.intmodel import IntegerModel  # noqa: PLC0415
    from quant.quantize import quantize_model  # noqa: PLC0415

    model = load_checkpoint(checkpoint)
    cfg = model.cfg
    pixel_range = (0.0, 255 / 16) if cfg.in_channels == 1 else (-2.2, 2.7)
    net = quantize_model(model, weight_bits, 8, pixel_range)
    planner = plan(cfg, fused_sepconv=net.fuse_sepconv)
    image = torch.zeros(1, cfg.in_channels, cfg.img_size, cfg.img_size, dtype=torch.int64)
    _, trace = IntegerModel(net).forward(image, trace=True)
    specs = []
    for name, layer in net.layers.items():
        source = planner.layer_inputs.get(name)
        if layer.kind == "stem" or source is None or source.kind != "spikes":
            continue
        shape = tuple(trace.spikes[source.source].shape)  # [T, B, C, H, W] or [T, B, C, N]
        if len(shape) == 5:
            height, width = shape[3], shape[4]
        else:
            height, width = shape[3], 1
        weight = np.asarray(layer.weight)
        if layer.kind == "linear" or (weight.ndim == 4 and len(shape) == 4):
            kind = "linear"
            weight = weight.reshape(weight.shape[0], weight.shape[1])
        elif layer.groups != 1:
            kind = "depthwise"
        else:
            kind = "conv"
        specs.append(LayerSpec(name=name, kind=kind, weight=weight, bias=np.asarray(layer.bias),
                               height=int(height), width=int(width), stride=int(layer.stride),
                               padding=int(layer.padding), input_lif=source.source))
    return specs, net


def unit_factories(point: DesignPoint) -> list[EmittedUnit]:
    """Return the units a design point asks for, in a fixed order."""
    from hw.addressing import SpikeAddressing  # noqa: PLC0415
    from hw.lif import LIF  # noqa: PLC0415
    from hw.sdsa import SDSA  # noqa: PLC0415

    units = []
    if "lif" in point.units:
        params = dict(lanes=point.lanes, input_width=point.lif_input_width)
        units.append(EmittedUnit("lif", lambda params=params: LIF(**params), params))
    if "addressing" in point.units:
        params = dict(width=point.spike_word_bits, ports=point.addressing_ports, max_words=4096)
        units.append(EmittedUnit("addressing", lambda params=params: SpikeAddressing(**params),
                                 params))
    if "sdsa" in point.units:
        params = dict(variant=point.sdsa_variant, tokens=point.tokens,
                      head_width=point.head_width, lanes=min(point.lanes, point.head_width))
        if point.sdsa_variant != 4:
            params["threshold"] = 8
        units.append(EmittedUnit("sdsa", lambda params=params: SDSA(**params), params))
    if "layers" in point.units and point.checkpoint is not None:
        from hw.accumulator import SynapseEngine  # noqa: PLC0415

        specs, _net = layer_specs(point.checkpoint, point.weight_bits)
        for spec in specs:
            params = dict(kind=spec.kind, lanes=point.lanes, height=spec.height,
                          width=spec.width, stride=spec.stride, padding=spec.padding)
            module = "layer_" + spec.name.replace(".", "_")

            def factory(spec=spec, params=params):
                return SynapseEngine(weight=spec.weight, bias=spec.bias, **params)
            described = dict(params, layer=spec.name, input_lif=spec.input_lif,
                             weight_shape=list(spec.weight.shape))
            units.append(EmittedUnit(module, factory, described))
    return units


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def emit(point: DesignPoint, out: Path) -> dict:
    """Write every unit's Verilog and ``manifest.json`` into ``out``; return the manifest.

    An existing ``out`` is replaced as a whole once everything has been generated.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        entries = []
        for unit in unit_factories(point):
            component = unit.factory()
            ports = ports_of(component)
            latency = getattr(component, "latency", None)
            text = verilog.convert(component, name=unit.name, emit_src=False)
            data = text.encode()
            (staging / f"{unit.name}.v").write_bytes(data)
            entries.append({
                "name": unit.name,
                "file": f"{unit.name}.v",
                "sha256": _sha256(data),
                "parameters": _jsonable(unit.parameters),
                "latency": latency if isinstance(latency, int) else None,
                "ports": ports,
            })
        manifest = {"format": MANIFEST_FORMAT, "design_point": point.as_dict(), "units": entries}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                               + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if hasattr(value, "value") and not isinstance(value, (int, str)):  # enums
        return _jsonable(value.value)
    return value
