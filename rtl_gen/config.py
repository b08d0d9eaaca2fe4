"""Design points: one JSON object that says what ``make rtl`` emits.

Fields (all optional; defaults in :class:`DesignPoint`):

``name``               a label used in reports (letters, digits, ``_`` and ``-``)
``lanes``              neurons / output channels per cycle in every unit, 1..256
``addressing_ports``   spike addresses per cycle of the addressing unit, 1..``lanes``
``lif_input_width``    signed width of a LIF input (and membrane), 2..32
``spike_word_bits``    bits per spike bitmap word the addressing unit takes, 1..1024
``sdsa_variant``       1, 2, 3 or 4 (``docs/sdsa-variants.md``)
``tokens``             tokens N of the SDSA unit, 1..4096
``head_width``         head width d of the SDSA unit, 1..1024
``units``              which units to emit, a list drawn from :data:`UNITS` (default
                       :data:`DEFAULT_UNITS`: every unit but ``network_core``)
``checkpoint``         the checkpoint the ``shared_network`` and ``network_core`` units are
                       generated from (a path relative to the config file or the working
                       directory), or ``null``
``weight_bits``        weight bits of its quantization, 2..16
``time_steps``         time steps T the network units run per image, 1..16, or ``null``:
                       the checkpoint's own T (an event model's T is its frames per sample)
``weights``            where the network units' weights live: ``"external"`` (default: a
                       synchronous read port to an outside memory, its ``$readmemh`` image
                       emitted beside it) or ``"axi"`` (an AXI4 read master streams them from
                       external memory into an on-chip ring, ``hw/weightfetch.py``; the
                       memory's byte image is emitted as ``<unit>_weights.bin``)
``axi_data_width``     ``weights: "axi"``: bits of the AXI data bus, 32..1024 (a power of two)
``weight_ring``        ``weights: "axi"``: words of the on-chip weight ring (a power of two), or
                       ``null``: four of the largest weight blocks, at least 1,024
``schedule``           the network units' order of (time step, step): ``"time"`` (default: every
                       step of a time step, then the next; every LIF site keeps its membranes)
                       or ``"layer"`` (every time step of a step, then the next step: one
                       site's membranes at a time, the streams kept per time step; with
                       ``weights: "axi"`` a layer that fits the ring is read once per run)
``fold``               column folding of the network units' engine: a layer of at most
                       ``lanes / F`` output channels accumulates ``F`` neighbouring output
                       columns a cycle, ``F`` up to ``fold`` (1: none, the default; a power of
                       two up to ``lanes``, which must then be a power of two; not with
                       ``weights: "axi"``; ``hw/progengine.py``, "Column folding")
``input_buffer``       words the network units' engine input slice holds, dropping the spike
                       map's empty rows as they arrive (0: none, the default; 2..64;
                       ``hw/progengine.py``, "Cost"): the same results, fewer cycles where a
                       layer's source has runs of empty rows
``sepconv``            how the network units run SepConv's ``dwconv -> pwconv2``: ``"fused"``
                       (default: one dense 7x7 conv on the engine), ``"unfused"`` (the
                       depthwise engine on the spikes, its sums' bit planes, a 1x1 conv on
                       the engine: ``hw/sepconv.py``; every weight word is then as wide as
                       the planes' shifted weights) or ``"auto"`` (per block, whichever the
                       cycle model finds faster on four calibration inputs, the held-out
                       digits for the demo: ``sim.sepconv.choose``)
``parameters``         where the ``shared_network`` unit's biases and LIF thresholds live:
                       ``"internal"`` (default: memories inside) or ``"external"`` (read ports
                       of the same timing as the weight port, ``bias_*`` and ``threshold_*``,
                       their ``$readmemh`` images emitted beside it: the design then holds no
                       parameter; needs ``weights: "external"`` and not ``network_core``)
``bias_memory``        where the network units' bias memory goes when it is inside:
                       ``"logic"`` (default: Yosys's choice, a ROM of LUTs and muxes) or
                       ``"block"`` (block RAM, ``ram_style``: the bias read is one registered
                       block-RAM read, off the critical path of a wide design point)
``threshold_memory``   where the LIF thresholds go when they are inside: ``"auto"`` (default:
                       Yosys's choice, block RAM on every shipped point) or ``"logic"`` (LUTs
                       and multiplexers, ``ram_style``: no block RAM, whose slow
                       clock-to-output then no longer crosses the die to the LIF lanes)

Units: ``shared_network`` is the time-multiplexed network (one engine, one LIF array, weights read
through a port from an outside memory whose image is emitted beside it); ``network_core`` is the
same network behind an AXI4-Lite register slave with an interrupt (``hw.control.NetworkCore``,
``docs/control.md``), emitted with its C header, JSON register map and FuseSoC core file. The
one-engine-per-layer ``network`` unit was retired; a design point naming it is refused with that
reason.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

from hw.params import ROM_STYLES, THRESHOLD_STYLES

__all__ = ["UNITS", "DEFAULT_UNITS", "NETWORK_UNITS", "ConfigError", "DesignPoint", "load"]

#: Units ``make rtl`` knows how to emit.
UNITS = ("lif", "addressing", "sdsa", "shared_network", "network_core")

#: Units a design point emits when it names none (``network_core`` only when asked for: it
#: converts the whole network a second time).
DEFAULT_UNITS = ("lif", "addressing", "sdsa", "shared_network")

#: Units generated from the checkpoint (they need field ``checkpoint``).
NETWORK_UNITS = ("shared_network", "network_core")


class ConfigError(ValueError):
    """A design point is invalid; the message names the file, the field and what is allowed."""


def _int_in(source: str, name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{source}: field '{name}' must be an integer in {low}..{high}, "
                          f"not {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ConfigError(f"{source}: field '{name}' must be an integer in {low}..{high}, "
                          f"not {value!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{source}: field '{name}' is {value}; allowed: {low}..{high}")
    return value


@dataclass(frozen=True)
class DesignPoint:
    """One hardware design point shared by ``rtl_gen``, the testbenches and the reports."""

    name: str = "default"
    lanes: int = 16
    addressing_ports: int = 1
    lif_input_width: int = 16
    spike_word_bits: int = 32
    sdsa_variant: int = 3
    tokens: int = 4
    head_width: int = 16
    units: tuple = DEFAULT_UNITS
    checkpoint: str | None = "golden/checkpoints/demo.pth"
    weight_bits: int = 8
    time_steps: int | None = None
    weights: str = "external"
    axi_data_width: int = 64
    weight_ring: int | None = None
    schedule: str = "time"
    parameters: str = "internal"
    fold: int = 1
    input_buffer: int = 0
    bias_memory: str = "logic"
    threshold_memory: str = "auto"
    sepconv: str = "fused"
    source: str = field(default="<defaults>", compare=False)

    def validated(self) -> "DesignPoint":
        """Return this design point after checking every field; raise :class:`ConfigError`."""
        src = self.source
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ConfigError(f"{src}: field 'name' must be 1-64 letters, digits, '_' or '-', "
                              f"not {self.name!r}")
        _int_in(src, "lanes", self.lanes, 1, 256)
        _int_in(src, "addressing_ports", self.addressing_ports, 1, self.lanes)
        _int_in(src, "lif_input_width", self.lif_input_width, 2, 32)
        _int_in(src, "spike_word_bits", self.spike_word_bits, 1, 1024)
        if self.sdsa_variant not in (1, 2, 3, 4) or isinstance(self.sdsa_variant, bool):
            raise ConfigError(f"{src}: field 'sdsa_variant' is {self.sdsa_variant!r}; "
                              "allowed: 1, 2, 3, 4")
        _int_in(src, "tokens", self.tokens, 1, 4096)
        _int_in(src, "head_width", self.head_width, 1, 1024)
        _int_in(src, "weight_bits", self.weight_bits, 2, 16)
        if self.time_steps is not None:
            _int_in(src, "time_steps", self.time_steps, 1, 16)
        if self.weights not in ("external", "axi"):
            raise ConfigError(f"{src}: field 'weights' is {self.weights!r}; allowed: "
                              "'external', 'axi'")
        if self.axi_data_width not in (32, 64, 128, 256, 512, 1024) or isinstance(
                self.axi_data_width, bool):
            raise ConfigError(f"{src}: field 'axi_data_width' is {self.axi_data_width!r}; "
                              "allowed: 32, 64, 128, 256, 512, 1024")
        if self.weight_ring is not None:
            ring = _int_in(src, "weight_ring", self.weight_ring, 2, 1 << 20)
            if ring & (ring - 1):
                raise ConfigError(f"{src}: field 'weight_ring' is {ring}; allowed: a power of "
                                  "two in 2..1048576, or null")
        if self.schedule not in ("time", "layer"):
            raise ConfigError(f"{src}: field 'schedule' is {self.schedule!r}; allowed: 'time', "
                              "'layer'")
        fold = _int_in(src, "fold", self.fold, 1, self.lanes)
        if fold & (fold - 1) or (fold > 1 and self.lanes & (self.lanes - 1)):
            raise ConfigError(f"{src}: field 'fold' is {fold} at lanes {self.lanes}; allowed: a "
                              "power of two up to lanes, and above 1 only when lanes is a power "
                              "of two")
        if fold > 1 and self.weights == "axi":
            raise ConfigError(f"{src}: field 'fold' is {fold} but 'weights' is 'axi'; column "
                              "folding is not built for the weight ring (allowed with 'axi': 1)")
        buffer = _int_in(src, "input_buffer", self.input_buffer, 0, 64)
        if buffer == 1:
            raise ConfigError(f"{src}: field 'input_buffer' is 1; allowed: 0 (none) or 2..64")
        if self.parameters not in ("internal", "external"):
            raise ConfigError(f"{src}: field 'parameters' is {self.parameters!r}; allowed: "
                              "'internal', 'external'")
        if self.parameters == "external" and self.weights != "external":
            raise ConfigError(f"{src}: field 'parameters' is 'external' but 'weights' is "
                              f"{self.weights!r}; external biases and thresholds need "
                              "weights 'external'")
        if self.parameters == "external" and "network_core" in self.units:
            raise ConfigError(f"{src}: field 'parameters' is 'external', which the unit "
                              "'network_core' does not support; allowed with it: 'internal'")
        if self.bias_memory not in ROM_STYLES:
            raise ConfigError(f"{src}: field 'bias_memory' is {self.bias_memory!r}; allowed: "
                              + ", ".join(repr(style) for style in ROM_STYLES))
        if self.bias_memory != "logic" and self.parameters == "external":
            raise ConfigError(f"{src}: field 'bias_memory' is {self.bias_memory!r} but "
                              "'parameters' is 'external' (no bias memory inside); allowed with "
                              "it: 'logic'")
        if self.threshold_memory not in THRESHOLD_STYLES:
            raise ConfigError(f"{src}: field 'threshold_memory' is {self.threshold_memory!r}; "
                              "allowed: " + ", ".join(repr(s) for s in THRESHOLD_STYLES))
        if self.threshold_memory != "auto" and self.parameters == "external":
            raise ConfigError(f"{src}: field 'threshold_memory' is {self.threshold_memory!r} "
                              "but 'parameters' is 'external' (no threshold memory inside); "
                              "allowed with it: 'auto'")
        if self.sepconv not in ("fused", "unfused", "auto"):
            raise ConfigError(f"{src}: field 'sepconv' is {self.sepconv!r}; allowed: 'fused', "
                              "'unfused', 'auto'")
        if self.sepconv != "fused" and (self.weights == "axi" or fold > 1):
            raise ConfigError(f"{src}: field 'sepconv' is {self.sepconv!r} but "
                              + ("'weights' is 'axi'" if self.weights == "axi" else
                                 f"'fold' is {fold}")
                              + "; the engine's bit planes are not built with a weight ring or "
                              "column folding (allowed with them: 'fused')")
        if isinstance(self.units, str) or not all(isinstance(u, str) for u in self.units):
            raise ConfigError(f"{src}: field 'units' must be a list of names from {list(UNITS)}, "
                              f"not {self.units!r}")
        if "network" in self.units:
            raise ConfigError(f"{src}: field 'units' names 'network', the one-engine-per-layer "
                              "network, which was retired; use 'shared_network'")
        unknown = [u for u in self.units if u not in UNITS]
        if unknown:
            raise ConfigError(f"{src}: field 'units' has unknown unit(s) {unknown}; "
                              f"allowed: {list(UNITS)}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise ConfigError(f"{src}: field 'checkpoint' must be a path or null, "
                              f"not {self.checkpoint!r}")
        for unit in NETWORK_UNITS:
            if unit in self.units and self.checkpoint is None:
                raise ConfigError(f"{src}: unit '{unit}' needs field 'checkpoint' (a path)")
        return self

    def as_dict(self) -> dict:
        """Return the fields that define the design point (for manifests)."""
        values = dataclasses.asdict(self)
        values.pop("source")
        if values["parameters"] == "internal":   # the default unnamed: manifests unchanged
            values.pop("parameters")
        if values["fold"] == 1:                  # likewise
            values.pop("fold")
        if values["input_buffer"] == 0:          # likewise
            values.pop("input_buffer")
        if values["bias_memory"] == "logic":     # likewise
            values.pop("bias_memory")
        if values["threshold_memory"] == "auto":  # likewise
            values.pop("threshold_memory")
        if values["sepconv"] == "fused":         # likewise
            values.pop("sepconv")
        values["units"] = list(self.units)
        return values


def load(path: str | Path | None = None, **overrides) -> DesignPoint:
    """Read a design point from a JSON file (``None``: the defaults), apply ``overrides``.

    Raises
    ------
    ConfigError
        If the file is missing or not JSON, has an unknown field, or a field is out of range.
    """
    values: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"design point file {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: must hold one JSON object, not {type(values).__name__}")
    values.update(overrides)
    allowed = [f.name for f in dataclasses.fields(DesignPoint) if f.name != "source"]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; allowed fields: {allowed}")
    if "units" in values and isinstance(values["units"], list):
        values["units"] = tuple(values["units"])
    if values.get("checkpoint") and path is not None:
        candidate = Path(values["checkpoint"])
        relative = path.parent / candidate
        if not candidate.is_absolute() and not candidate.exists() and relative.exists():
            values["checkpoint"] = str(relative)
    return DesignPoint(source=source, **values).validated()
