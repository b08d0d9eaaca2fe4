"""Emit the Verilog of a design point, its memory images and a manifest of ports and parameters
(and, for the SoC-facing ``network_core``, its C header, JSON register map and FuseSoC core file).

Everything written is a pure function of the design point (and the checkpoint it names): no dates,
no absolute paths, no source locations, so two runs give byte-identical files. Files are written
into a temporary directory beside the output and renamed into place at the end, so a failed run
leaves no half-written output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Value
from amaranth.lib import wiring

from hw import verilog
from hw.params import ceil_div

from .config import NETWORK_UNITS, DesignPoint

__all__ = ["EmittedUnit", "network_options", "unit_factories", "quantized_network", "emit",
           "ports_of"]

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class EmittedUnit:
    """A unit ready to be converted: its Verilog module name, a factory and its parameters."""

    name: str
    factory: object      # () -> wiring.Component (a component can be elaborated only once)
    parameters: dict
    net: object = None   # the quantized network whose memory images go with the unit
    weight_image: bool = False  # write the unit's packed weight memory as a hex image
    soc: bool = False    # an SoC-facing unit: also its C header, JSON register map, .core file


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


def quantized_network(checkpoint: str, weight_bits: int, time_steps: int | None,
                      sepconv: str = "fused", lanes: int = 16, input_buffer: int = 0,
                      fold: int = 1):
    """Load ``checkpoint`` at ``time_steps`` (None: its own T) and quantize it (quant's defaults
    otherwise; ``sepconv="unfused"``: SepConv's depthwise and pointwise convs kept apart;
    ``"auto"``: per block, the faster on the network units' engine of ``lanes``,
    ``input_buffer`` and ``fold``, :func:`sim.sepconv.choose`)."""
    from golden.checkpoint import load_checkpoint  # noqa: PLC0415 - only the network needs it
    from quant.quantize import QuantizationError, quantize_model  # noqa: PLC0415

    overrides = {} if time_steps is None else {"T": time_steps}
    model = load_checkpoint(checkpoint, **overrides)  # checks keys, shapes and values
    try:
        setting = sepconv == "fused"
        if sepconv == "auto":
            from sim.sepconv import choose  # noqa: PLC0415

            setting = choose(model, lanes, weight_bits=weight_bits, input_buffer=input_buffer,
                             fold=fold)["fused"]
        net = quantize_model(model, weight_bits, fuse_sepconv=setting)
    except QuantizationError as error:
        raise QuantizationError(f"checkpoint {checkpoint}: {error}") from error
    return net


def network_options(point: DesignPoint, unit: str) -> dict:
    """Keyword arguments of a network unit (``hw.shared.SharedNetwork`` for ``unit``
    ``"shared_network"``, ``hw.control.NetworkCore`` for ``"network_core"``) that a design point
    sets, beyond ``lanes`` and the weights' placement: ``schedule``, ``fold``, ``input_buffer``,
    ``bias_memory``,
    ``threshold_memory`` and (``shared_network`` only) ``parameters``. A field at its default is
    left out, so the manifests of default points do not name it. ``rtl_gen.dse`` builds its
    points' units from the same function: a field a sweep sets reaches the netlist it
    synthesizes."""
    options = {}
    if point.schedule != "time":
        options["schedule"] = point.schedule
    if point.fold != 1:
        options["fold"] = point.fold
    if point.input_buffer:
        options["input_buffer"] = point.input_buffer
    if point.bias_memory != "logic":
        options["bias_memory"] = point.bias_memory
    if point.threshold_memory != "auto":
        options["threshold_memory"] = point.threshold_memory
    if unit == "shared_network" and point.parameters != "internal":
        options["parameters"] = point.parameters
    return options


def unit_factories(point: DesignPoint, net=None) -> list[EmittedUnit]:
    """Return the units a design point asks for, in a fixed order.

    ``net``: the quantized network of the ``shared_network`` unit when the caller holds it
    already (``rtl_gen.api``: the very net it simulates); default: ``point.checkpoint``
    quantized by :func:`quantized_network`.
    """
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
        # No threshold given: the unit takes its variant's official value (SDSA-3: 8).
        params = dict(variant=point.sdsa_variant, tokens=point.tokens,
                      head_width=point.head_width, lanes=min(point.lanes, point.head_width))
        units.append(EmittedUnit("sdsa", lambda params=params: SDSA(**params), params))
    if any(unit in point.units for unit in NETWORK_UNITS):
        if net is None:
            net = quantized_network(point.checkpoint, point.weight_bits, point.time_steps,
                                    point.sepconv, point.lanes, point.input_buffer, point.fold)
        elif (net.weight_bits != point.weight_bits
              or point.time_steps not in (None, net.cfg.T)
              or net.fuse_sepconv != {"fused": True, "unfused": False}.get(
                  point.sepconv, net.fuse_sepconv)
              or (point.sepconv == "auto" and isinstance(net.fuse_sepconv, bool))):
            raise ValueError(f"the net has T={net.cfg.T}, {net.weight_bits}-bit weights and "
                             f"SepConv fused {net.fuse_sepconv}; the "
                             f"design point asks for T={point.time_steps}, "
                             f"{point.weight_bits}-bit weights and SepConv {point.sepconv}")
        params = dict(lanes=point.lanes, checkpoint=point.checkpoint,
                      weight_bits=point.weight_bits, time_steps=net.cfg.T,
                      model=net.cfg.name, weights=point.weights)
        if point.sepconv != "fused":
            params["sepconv"] = point.sepconv
            if point.sepconv == "auto":   # the blocks the choice fused
                params["sepconv_fused"] = list(net.fuse_sepconv)
        placement = {"weights": "external"}
        if point.weights == "axi":
            placement = {"weights": "axi", "axi_data_width": point.axi_data_width,
                         "weight_ring": point.weight_ring}
            params.update(axi_data_width=point.axi_data_width, weight_ring=point.weight_ring)
        options = network_options(point, "network_core")
        placement.update(options)
        params.update(options)
    if "shared_network" in point.units:
        from hw.shared import SharedNetwork  # noqa: PLC0415

        shared = {**placement, **network_options(point, "shared_network")}
        shared_params = {**params, **network_options(point, "shared_network")}
        units.append(EmittedUnit(
            "shared_network",
            lambda net=net: SharedNetwork(net, lanes=point.lanes, **shared),
            shared_params, net, weight_image=True))
    if "network_core" in point.units:
        from hw.control import NetworkCore  # noqa: PLC0415

        # The same network (weights outside, as ``shared_network``) behind the AXI4-Lite slave.
        units.append(EmittedUnit(
            "network_core",
            lambda net=net: NetworkCore(net, lanes=point.lanes, **placement),
            dict(params), net, weight_image=True, soc=True))
    return units


def weight_image_text(component) -> str:
    """Return a packed weight memory as ``$readmemh`` text: one word per line, lowest first."""
    digits = ceil_div(component.weight_width * component.lanes, 4)
    return "".join(f"{word:0{digits}x}\n" for word in component.weight_words)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def emit(point: DesignPoint, out: Path, net=None) -> dict:
    """Write every unit's Verilog and ``manifest.json`` into ``out``; return the manifest.

    An existing ``out`` is replaced as a whole once everything has been generated. ``net``: as
    :func:`unit_factories`.
    """
    with staged_directory(out) as staging:
        entries = []
        for unit in unit_factories(point, net):
            component = unit.factory()
            ports = ports_of(component)
            latency = getattr(component, "latency", None)
            # Time-0 safe: the same meaning under IEEE 1364 and 1800 simulators (hw/verilog.py).
            text = verilog.convert(component, name=unit.name, emit_src=False)
            data = text.encode()
            (staging / f"{unit.name}.v").write_bytes(data)
            images = None
            if unit.net is not None:
                # The weights are also initial values inside the Verilog; the images are the same
                # numbers in quant's documented format, for flows that load memories themselves.
                from quant.images import write_images  # noqa: PLC0415

                (staging / f"{unit.name}_images").mkdir()
                write_images(unit.net, str(staging / f"{unit.name}_images"))
                images = f"{unit.name}_images/manifest.json"
            weight_memory = None
            if unit.weight_image and getattr(component, "ring", None) is not None:
                ring = component.ring
                image = ring.image()
                (staging / f"{unit.name}_weights.bin").write_bytes(image)
                weight_memory = {
                    "file": f"{unit.name}_weights.bin", "sha256": _sha256(image),
                    "bytes": len(image),
                    "protocol": "external memory read over the m_axi_ AXI4 port: place the "
                                "file's bytes at WEIGHT_BASE (weight_address), a multiple of 64",
                    "layout": "docs/weightfetch.md",
                    "axi": ring.manifest(),
                    "memory_bits": component.memory_report(),
                    "memory_padding": component.padding_report(),
                }
                mover = getattr(component, "mover", None)
                if mover is not None:       # CONTROL.DMA: the input and logits in memory too
                    weight_memory["dma"] = {
                        "input": {"base_register": "INPUT_BASE", "bytes": mover.input_words,
                                  "layout": "a byte per event beat (bit c: channel c), time "
                                            "step t's beat n (pixel n, row-major) at "
                                            "INPUT_BASE + t * H * W + n; a run of TIME_STEPS "
                                            "time steps reads that many H * W bytes (bytes: "
                                            "all T)"
                                  if getattr(component, "player", None) is not None else
                                  "a byte per pixel code, pixel (c * H + y) * W + x "
                                  "at INPUT_BASE + n"},
                        "output": {"base_register": "OUTPUT_BASE", "bytes": 4 * mover.classes,
                                   "layout": "a little-endian sign-extended 32-bit word per "
                                             "class, class c at OUTPUT_BASE + 4 c"},
                        "alignment_bytes": mover.beat_bytes,
                        "doc": "docs/control.md",
                    }
            elif unit.weight_image:
                text_image = weight_image_text(component).encode()
                (staging / f"{unit.name}_weights.hex").write_bytes(text_image)
                weight_memory = {
                    "file": f"{unit.name}_weights.hex", "sha256": _sha256(text_image),
                    "words": len(component.weight_words),
                    "width": component.lanes * component.weight_width,
                    "protocol": "synchronous read: weight_data holds word weight_addr in the "
                                "cycle after weight_en is 1 (a block RAM read port); load the "
                                "file with $readmemh",
                    "layout": "docs/shared-network.md",
                    "memory_bits": component.memory_report(),
                    "memory_padding": component.padding_report(),
                }
            extra = {}
            if getattr(component, "parameters", "internal") == "external":
                extra["parameter_memories"] = _write_parameter_images(staging, unit.name,
                                                                      component)
            if unit.soc:
                extra = _write_soc_files(staging, unit.name, component,
                                         weight_memory["file"] if weight_memory else None)
            entries.append({
                **extra,
                "name": unit.name,
                "memory_images": images,
                "weight_memory": weight_memory,
                "file": f"{unit.name}.v",
                "sha256": _sha256(data),
                "parameters": _jsonable(unit.parameters),
                "latency": latency if isinstance(latency, int) else None,
                "ports": ports,
            })
        from .lint import WAIVER_FILE_TEXT  # noqa: PLC0415

        # The waivers travel with the Verilog so users lint it exactly as the project does.
        (staging / "lint_waivers.vlt").write_text(WAIVER_FILE_TEXT)
        manifest = {"format": MANIFEST_FORMAT, "design_point": point.as_dict(), "units": entries,
                    "lint_waivers": "lint_waivers.vlt"}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                               + "\n")
    return manifest


@contextlib.contextmanager
def staged_directory(out: Path):
    """Yield an empty directory beside ``out`` to write into; when the block ends normally it
    replaces ``out`` as a whole, and on any exception it is removed and ``out`` left as it
    was: no half-written output."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the output is an ordinary directory
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_parameter_images(staging: Path, name: str, component) -> dict:
    """Write the ``$readmemh`` images of a network whose biases and thresholds sit behind
    ports (``parameters="external"``); return their manifest entries."""
    entries = {}
    for memory, words, width in (
            ("biases", component.bias_words, len(component.bias_data)),
            ("thresholds", component.threshold_words, len(component.threshold_data))):
        digits = ceil_div(width, 4)
        text = "".join(f"{word:0{digits}x}\n" for word in words).encode()
        (staging / f"{name}_{memory}.hex").write_bytes(text)
        port = memory[:-1] if memory == "thresholds" else "bias"
        entries[memory] = {
            "file": f"{name}_{memory}.hex", "sha256": _sha256(text), "words": len(words),
            "width": width,
            "protocol": f"synchronous read: {port}_data holds word {port}_addr in the cycle "
                        f"after {port}_en is 1 (a block RAM read port); load the file with "
                        "$readmemh",
        }
    return entries


def _write_soc_files(staging: Path, name: str, component, weight_image: str | None) -> dict:
    """Write an SoC unit's C header, JSON register map and FuseSoC core file; return their
    manifest entries."""
    from . import soc  # noqa: PLC0415

    regmap = component.regmap
    files = {"header": f"{name}_regs.h", "register_map": f"{name}_regs.json",
             "fusesoc_core": f"{name}.core"}
    texts = {
        "header": soc.c_header(regmap, name),
        "register_map": soc.register_json(regmap),
        "fusesoc_core": soc.fusesoc_core(
            name, verilog=f"{name}.v", header=files["header"],
            register_map=files["register_map"], weight_image=weight_image,
            lint_waivers="lint_waivers.vlt",
            description="Meta-SpikeFormer network behind an AXI4-Lite register slave "
                        "(sdt-codesign rtl_gen; docs/control.md)"),
    }
    entry = {}
    for key, text in texts.items():
        data = text.encode()
        (staging / files[key]).write_bytes(data)
        entry[key] = {"file": files[key], "sha256": _sha256(data)}
    entry["fusesoc_core"]["vlnv"] = soc.vlnv(name)
    entry["register_map"]["address_width"] = regmap.address_width
    return {"soc": entry}


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
