"""Projection of the shared network's throughput, memory and energy for the paper's models.

``python -m sim.project [--variant 15M 31M 55M | --checkpoint PATH] [--img-size N] [--T 1 4]
[--lanes 16 32 ... 1024] [--clock-mhz 100 500] [--rates 0.05 0.1 0.2] [--out DIR]``

For each model (a named variant with calibrated random weights, or a checkpoint), each T and
each lane count, and each clock:

* **cycles per image** from the cycle model (:class:`sim.perf.CycleModel`, validated step for
  step against Verilator at 8, 16 and 32 lanes; at other lane counts it is the same equations,
  unmeasured) on one firing trace of the integer golden model. The trace does not depend on the
  lanes: it is made once per model and T, and each lane count gets its own plan
  (:class:`hw.plan.SharedPlan`) and prediction;
* **images/s** at each clock (``clock / cycles``; the cycles run from ``start`` to ``done``:
  loading the pixels through ``load_*``, one 8-bit code a cycle, is given apart, and with it a
  second images/s for a design that does not overlap the load with the run);
* **on-chip memory** bits per memory (``SharedPlan.memory_report``) and each memory's padding
  (``SharedPlan.padding_report``: bits against what the contents need);
* **energy per image** by the paper's method and memory-aware (:func:`golden.energy.measure`,
  fused graph, float model on the same images); it does not depend on the lanes;
* **external-memory bytes per image**, under the simplest assumption: every packed weight word
  is read once per time step (``memory_report()["weights"] / 8 * T``) and the pixels once; all
  else stays on chip. The weights' AXI4 read master (``weights="axi"``, ``hw/weightfetch.py``)
  moves these bytes in the RTL; here they are a bandwidth requirement, not a measurement;
* with ``--fold F``, column folding up to ``min(F, lanes)`` (``hw/progengine.py``): the same
  cycle model, validated against Verilator with folding at 16 and 64 lanes.

Firing: ``--checkpoint`` uses the checkpoint's own trace on its inputs (``--inputs``: the
held-out digits for a 1x32x32 model, else seeded random images, or a file). Otherwise each
variant is a calibrated random model of its structure (:func:`sim.e2e.random_model`, as
``sim.paper`` makes them): seeded weights whose batch-norm biases are shifted so that every LIF
fires about 10 % (Q, K, V 25 %) on the seeded random image, calibrated at T = 1 and run at T;
the trace is of that image. ``--rates`` recalibrates to other targets (each target scaled by
``rate / 0.10``). The printout and the files state the assumption.

A lane count whose plan fails (the message), runs out of memory (``--plan-memory-gb``) or takes
longer than ``--lane-timeout`` (each lane count runs in a forked child) is a row marked not
computed, with the reason. The plan here skips packing the weight words (their contents change
no cycle and no memory size; packing is 95 % of a plan's time); ``--full-plan`` packs them, and
``tests/test_project.py`` holds both equal.

Writes ``projection.csv``, ``projection.json`` (sorted keys, fixed float formatting, no times or
paths of this run: identical inputs give identical bytes) and ``projection.png`` (images/s and
synaptic operations per cycle against lanes, log axes, no date metadata). Bad arguments: one
``error:`` line, exit status 2, nothing written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from golden.cliargs import Parser

__all__ = ["DEFAULT_VARIANTS", "DEFAULT_LANES", "DEFAULT_CLOCKS", "ANCHORS", "BASE_RATE",
           "sizing_plan", "lane_point", "run_isolated", "Case", "make_case", "project",
           "rows", "format_table", "write_outputs", "main"]

DEFAULT_VARIANTS = ("15M", "31M", "55M")
DEFAULT_LANES = (16, 32, 64, 128, 256, 512, 1024)
DEFAULT_CLOCKS = (100.0, 500.0)
#: The firing rate ``sim.e2e.random_model`` calibrates every LIF to (Q, K, V: 2.5 times it).
BASE_RATE = 0.10

#: Reference points for the synaptic operations per cycle, as the project's issue gives them
#: (not checked here against the publications).
ANCHORS = (
    {"name": "28 nm Spikformer accelerator", "sop_per_cycle": 6900.0, "clock_mhz": 500.0,
     "note": "about 6.9 K synaptic operations per cycle at 500 MHz (issue's figure)"},
    {"name": "FireFly, mid-range FPGA", "sop_per_cycle": 18000.0, "clock_mhz": None,
     "note": "about 18 K dense operations per cycle (issue's figure; dense, so not directly "
             "comparable with sparse SOPs)"},
)

#: The paper's own energies (its Table 1) as far as this project has them: the issue that asked
#: for the projection quotes one, 15M at 224x224 and T=1 (not checked here against the
#: publication). A case of that model, size and T is compared with it (:func:`paper_energy`).
PAPER_ENERGY_RECORDS = (
    {"model": "15M", "img_size": 224, "T": 1, "mj": 4.0, "pj_per_sop": 0.9,
     "source": "the issue's reading of the paper's Table 1 (4.0 mJ at 0.9 pJ per AC)"},
)
PAPER_ENERGIES = ("the paper's Table-1 energies: only the issue's figure for 15M at 224x224, "
                  "T=1 (4.0 mJ) is recorded, and a 15M T=1 case is compared with it (the "
                  "synaptic operations it implies at 0.9 pJ, against the case's); no other "
                  "model or T has one here")


def paper_energy(info: dict) -> dict | None:
    """The paper's energy for a case (``info``: a projection's ``case``), compared with the
    case's: ``mj``, ``implied_sop`` (``mj / pj_per_sop``), ``sop_ratio`` (implied / the case's
    SOPs) and ``source``; None when no record matches its model, size and T."""
    for record in PAPER_ENERGY_RECORDS:
        if (record["model"], record["img_size"], record["T"]) == (
                info["model"], info["img_size"], info["T"]):
            implied = record["mj"] * 1e9 / record["pj_per_sop"]
            sop = info["energy"]["sop"]
            return {"mj": _num(record["mj"]), "implied_sop": _num(implied),
                    "sop_ratio": _num(implied / sop) if sop else None,
                    "source": record["source"]}
    return None

NOT_BUILT = ("external memory: only the weights stream in over AXI4 (weights 'axi', "
             "hw/weightfetch.py: each weight read once per time step); spike maps, streams and "
             "membranes stay on chip, and with --fold > 1 the weights must be on chip (column "
             "folding is not built for the weight ring); the bytes are the weights' reads and "
             "the pixels")

PARALLELISM = ("the engine's parallelism is lanes output channels per cycle (one spike, one "
               "valid tap, one group of lanes outputs a cycle); with column folding (--fold F) "
               "a layer of at most lanes / F output channels adds a spike's taps into F "
               "neighbouring output columns a cycle. A step with no more output channels than "
               "lanes (G = 1) and no folding does not speed up with more lanes, and attention "
               "heads narrower than the lanes that do not divide them are padded to whole words "
               "(more channels; heads that divide the lanes share words)")

GOAL_FPS = 30.0
GOAL_CLOCK = 500.0

CSV_FIELDS = (
    "case", "model", "img_size", "T", "firing", "lanes", "clock_mhz", "status", "reason",
    "cycles", "images_per_s", "latency_ms", "load_cycles", "images_per_s_with_load",
    "sop_per_image", "sop_per_cycle", "lane_utilisation", "g1_cycle_share",
    "onchip_bits", "weights_bits", "spike_maps_bits", "streams_bits", "membranes_bits",
    "bank_bits", "weights_overhead", "spike_maps_overhead", "streams_overhead",
    "membranes_overhead", "energy_paper_mj", "energy_memory_mj", "ext_bytes_per_image",
    "ext_bytes_per_image_unpadded", "ext_gbyte_per_s", "mean_firing_rate",
    "axi_cycles", "axi_ratio", "axi_ring_bits", "axi_read_bytes", "axi_floor_ratio")


def _num(value):
    """A float in a fixed format (10 significant digits): the files' numbers, byte-stable."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.10g}")


def _fmt(value) -> str:
    """A CSV cell: integers as is, floats with 10 significant digits, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _one_line(error) -> str:
    return " ".join(str(error).split())


# --- the plan and the prediction at one lane count ------------------------------------------------

def sizing_plan(net, lanes: int, full: bool = False, fold: int = 1, input_buffer: int = 0):
    """``SharedPlan(net, lanes, fold=fold, input_buffer=input_buffer)``, without packing the weight words unless ``full``:
    the same program, memory map, sizes, limits and padding (the weight memory's contents are
    zeros)."""
    from hw.plan import SharedPlan

    return SharedPlan(net, lanes, pack_weights=full, fold=fold, input_buffer=input_buffer)


def _step_groups(plan, step) -> int:
    """Output word groups of a step (``ceil(channels / lanes)``; a head's for an SDSA step)."""
    from hw.program import StepKind

    mem = plan.memory
    if step.kind is StepKind.STEM:
        return plan.stem_groups
    if step.kind is StepKind.LAYER:
        return mem.layers[step.layer].config.groups
    if step.kind in (StepKind.STREAM_LIF, StepKind.POOL_LIF, StepKind.RESIDUAL_LIF):
        return mem.sites[step.sink.target].groups   # (a SEW pool pass: its LIF's)
    if step.kind is StepKind.SDSA:
        return plan.head_groups[step.source]
    return 1


def trace_sops(plan, trace, image: int = 0) -> int:
    """Synaptic operations of one image, summed over time steps, as the hardware does them: each
    engine layer's spikes times their valid taps times the output channels
    (:func:`hw.packing.layer_sops`, the model's own channels, no padding), and each SDSA step's
    additions (SDSA-3/4: a ``d``-wide row per Q and K spike; SDSA-1: a count per set bit of K
    AND V; SDSA-2: per K spike). The stem's multiplications are not synaptic operations."""
    from hw.packing import layer_sops
    from hw.program import StepKind
    from sim.perf import map_spikes

    net, mem = plan.net, plan.memory
    total = 0
    for t in range(plan.T):
        for step in plan.steps:
            if step.kind is StepKind.LAYER:
                layer = net.layers[step.layer]
                info = mem.maps[step.source]
                spikes = np.asarray(map_spikes(net, trace, step.source)[t, image])
                shape = np.asarray(layer.weight).shape
                if step.layer == "head":
                    total += layer_sops("linear", shape[:2], spikes.reshape(1, -1))
                else:
                    total += layer_sops("conv", shape, spikes.reshape(
                        info.logical_channels, info.side, info.side),
                        stride=int(layer.stride), padding=int(layer.padding))
            elif step.kind is StepKind.SDSA:
                attn = net.attention[step.source]
                q = np.asarray(trace.spikes[step.attention.q][t, image])
                k = np.asarray(trace.spikes[step.attention.k][t, image])
                if attn.sdsa == 1:
                    v = np.asarray(trace.spikes[step.attention.v][t, image])
                    total += int((k & v).sum())
                elif attn.sdsa == 2:
                    total += int(k.sum())
                else:
                    total += int(q.sum() + k.sum()) * attn.head_width
    return total


def lane_point(net, trace, lanes: int, images: int = 1, full_plan: bool = False,
               fold: int = 1, input_buffer: int = 0, axi: dict | None = None) -> dict:
    """Plan ``net`` at ``lanes`` (column folding up to ``fold``; the engine's input buffer) and predict the cycles of
    ``trace``'s images (mean over them).

    Returns ``cycles`` (mean per image), ``per_image``, ``steps`` (per program step: name, kind,
    groups, cycles summed over time steps, mean over images), ``kinds`` (cycles per step kind),
    ``g1_cycles`` (cycles of steps with one output group: they gain nothing from more lanes),
    ``memory`` (``memory_report``), ``padding`` (``padding_report``), ``weight_depth``, ``sops``
    (:func:`trace_sops`, mean per image; the same at every lane count).

    ``axi`` (``{"bus": bits, "latency": cycles, "ring_words": words or None}``): the weights
    also stream in over AXI4 (:class:`hw.weightfetch.WeightRing` of that bus width and ring,
    None: its default depth; :class:`sim.perf.CycleModel` with the ring and a fixed read
    latency), and ``axi`` is added: ``cycles`` (mean per image), ``ratio`` (to the on-chip
    ``cycles``), ``ring_words``, ``ring_bits``, ``read_bytes`` and ``floor_bytes`` per image
    (the weights at their bits, once per time step).
    """
    from hw.program import StepKind
    from sim.perf import CycleModel

    plan = sizing_plan(net, lanes, full_plan, fold, input_buffer)
    model = CycleModel(plan)
    per_step = {}
    totals = []
    for image in range(images):
        prediction = model.predict(trace, image)
        totals.append(prediction["total"])
        for row in prediction["steps"]:
            per_step[row["step"]] = per_step.get(row["step"], 0) + row["cycles"]
    steps, kinds, g1 = [], {}, 0.0
    for k, step in enumerate(plan.steps):
        if step.kind is StepKind.BEGIN_STEM:
            continue
        cycles = per_step[k] / images
        groups = _step_groups(plan, step)
        steps.append({"step": k, "name": step.name, "kind": step.kind.label, "groups": groups,
                      "cycles": cycles})
        kinds[step.kind.label] = kinds.get(step.kind.label, 0.0) + cycles
        if groups == 1:
            g1 += cycles
    padding = plan.padding_report()
    sops = sum(trace_sops(plan, trace, image) for image in range(images)) / images
    over_axi = None
    if axi is not None:
        from hw.weightfetch import WeightRing

        ring = WeightRing(plan, axi.get("ring_words"), data_width=axi["bus"])
        ring_model = CycleModel(plan, ring=ring, latency=axi["latency"])
        ring_cycles = sum(ring_model.predict(trace, image)["total"]
                          for image in range(images)) / images
        over_axi = {"bus_bits": axi["bus"], "latency": axi["latency"], "ring_words": ring.depth,
                    "ring_bits": ring.memory_bits(), "cycles": ring_cycles,
                    "ratio": ring_cycles / (sum(totals) / images),
                    "read_bytes": ring.bytes_per_run(plan.T),
                    "floor_bytes": plan.T * ring.floor_bytes()}
    extra = {"fold": fold} if fold != 1 else {}   # the default unnamed: outputs unchanged
    if input_buffer:
        extra["input_buffer"] = input_buffer
    if over_axi is not None:
        extra["axi"] = over_axi
    return {"lanes": lanes, **extra, "cycles": sum(totals) / images, "per_image": totals,
            "sops": sops,
            "steps": steps, "kinds": kinds, "g1_cycles": g1,
            "memory": plan.memory_report(), "weight_depth": plan.weight_depth,
            "weights_needed_bits": padding["weights"]["needed"],
            "padding": {name: entry["overhead"] for name, entry in padding.items()}}


def _vm_bytes() -> int:
    """This process's virtual memory size (``/proc/self/status``), 0 when unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(connection, function, memory_bytes):
    """Run ``function`` in a forked child under an address-space limit; send its outcome."""
    try:
        if memory_bytes:
            import resource

            limit = _vm_bytes() + memory_bytes
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        outcome = ("ok", function())
    except MemoryError:
        outcome = ("memory", None)
    except (ValueError, NotImplementedError, KeyError) as error:
        outcome = ("error", _one_line(error))
    except BaseException as error:   # anything else: reported, never a hung parent
        outcome = ("error", f"{type(error).__name__}: {_one_line(error)}")
    try:
        connection.send(outcome)
    except MemoryError:
        connection.send(("memory", None))
    connection.close()


def run_isolated(function, timeout_s: float, memory_gb: float):
    """Run ``function()`` in a forked child: ``(result, None)``, or ``(None, reason)`` when it
    raises, runs out of ``memory_gb`` more address space, or takes over ``timeout_s``."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    memory_bytes = int(memory_gb * 2 ** 30) if memory_gb else 0
    child = context.Process(target=_child, args=(send, function, memory_bytes))
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s if timeout_s else None):
            child.kill()
            return None, f"not computed: took longer than {timeout_s:g} s (--lane-timeout)"
        try:
            status, value = receive.recv()
        except EOFError:
            child.join()
            return None, (f"not computed: the planning process died (exit status "
                          f"{child.exitcode}), most likely out of memory")
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()
    if status == "ok":
        return value, None
    if status == "memory":
        return None, (f"not computed: the plan needs more than {memory_gb:g} GB "
                      "(--plan-memory-gb; the padded weights of head-aligned attention maps "
                      "grow with the lanes)")
    return None, f"not computed: {value}"


# --- the models -----------------------------------------------------------------------------------

def _targets(sdsa: int, rate: float):
    """``sim.e2e.calibration_targets`` scaled by ``rate / BASE_RATE`` (capped at 0.95)."""
    from sim.e2e import calibration_targets

    base = calibration_targets(sdsa)
    scale = rate / BASE_RATE
    return lambda name: min(0.95, base(name) * scale)


_RATE_MODELS = {}


def calibrated_model(cfg, seed: int = 0, rate: float = BASE_RATE):
    """The calibrated random model of ``cfg``: :func:`sim.e2e.random_model` at the base rate;
    at another ``rate`` the same seeded weights calibrated to the scaled targets (at T = 1 on
    the seeded random image, then run at ``cfg.T``)."""
    from sim.e2e import random_model

    if rate == BASE_RATE:
        return random_model(cfg, seed)
    from golden.model import MetaSpikeFormer
    from sim.e2e import _random_weights, calibrate_firing, quantized, random_images

    base = cfg.replace(T=1)
    key = (json.dumps(base.to_dict(), sort_keys=True), seed, rate)
    if key not in _RATE_MODELS:
        model = _random_weights(base, seed)
        images = random_images(quantized(model), 1, seed)
        calibrate_firing(model, images, _targets(cfg.sdsa, rate))
        _RATE_MODELS[key] = {name: value.clone() for name, value in model.state_dict().items()}
    model = MetaSpikeFormer(cfg).double().eval()
    model.load_state_dict(_RATE_MODELS[key])
    return model


class Case:
    """One model at one T and firing assumption: its integer net, trace, energy and firing."""

    def __init__(self, *, label, model_name, cfg, model, firing, inputs_text, rate, seed,
                 images, trace_images, net, trace):
        self.label = label
        self.model_name = model_name
        self.cfg = cfg
        self.model = model
        self.firing = firing
        self.inputs_text = inputs_text
        self.rate = rate
        self.seed = seed
        self.images = images
        self.trace_images = trace_images
        self.net = net
        self.trace = trace
        self.energy = None
        self.firing_rates = None


def make_case(*, variant_name=None, checkpoint=None, img_size=None, T=1, rate=BASE_RATE,
              seed=0, images=1, inputs=None) -> Case:
    """Build a :class:`Case`: the model, its integer net and trace, its energy and firing."""
    import torch

    from golden.energy import measure, totals
    from quant.intmodel import IntegerModel
    from sim.e2e import quantized, select_inputs
    from sim.perf import map_spikes

    torch.set_num_threads(1)
    if checkpoint is not None:
        from golden.checkpoint import load_checkpoint

        overrides = {"T": T} if img_size is None else {"T": T, "img_size": img_size}
        model = load_checkpoint(checkpoint, **overrides).double().eval()
        cfg = model.cfg
        name = Path(checkpoint).name
        firing = f"the checkpoint's own firing ({name})"
    else:
        from golden.config import variant

        cfg = variant(variant_name, T=T, **({} if img_size is None else {"img_size": img_size}))
        model = calibrated_model(cfg, seed, rate)
        name = cfg.name
        firing = (f"calibrated random model (sim.e2e.random_model, seed {seed}): every LIF "
                  f"~{100 * rate:g} %, Q/K/V ~{250 * rate:g} % on the seeded random image at "
                  "T=1 (the trace's image), run at T")
    net = quantized(model)
    if checkpoint is None:
        inputs = "random"
    chosen = select_inputs(net, images, inputs, seed)
    integer = IntegerModel(net)
    x = chosen.images
    if cfg.events:
        _, trace = integer.forward(x.to(torch.int64).transpose(0, 1), trace=True)
        energy_input = x.transpose(0, 1).to(torch.float64)
    else:
        _, trace = integer.forward(integer.quantize_input(x), trace=True)
        energy_input = x.to(torch.float64)
    label = f"{name} {cfg.img_size}x{cfg.img_size} T={cfg.T}"
    if checkpoint is None and rate != BASE_RATE:
        label += f" rate {rate:g}"
    case = Case(label=label, model_name=name, cfg=cfg, model=model, firing=firing,
                inputs_text=chosen.description, rate=rate if checkpoint is None else None,
                seed=seed, images=len(x), trace_images=x, net=net, trace=trace)
    layers, _ = measure(model, energy_input)
    case.energy = totals(layers)
    rates = [float(np.asarray(map_spikes(net, trace, lif)).mean()) for lif in net.lifs]
    case.firing_rates = {"mean": float(np.mean(rates)), "median": float(np.median(rates)),
                         "min": float(np.min(rates)), "max": float(np.max(rates)),
                         "lifs": len(rates)}
    return case


# --- the projection -------------------------------------------------------------------------------

def project(case: Case, lanes, *, timeout_s: float = 900.0, memory_gb: float = 8.0,
            full_plan: bool = False, log=None, fold: int = 1, input_buffer: int = 0,
            axi: dict | None = None) -> dict:
    """Every lane count of one case: ``{"case": ..., "points": [...]}`` (lanes ascending;
    column folding up to ``min(fold, lanes)``)."""
    cfg = case.cfg
    points = []
    for count in sorted(lanes):
        begin = time.perf_counter()
        result, reason = run_isolated(
            lambda count=count: lane_point(case.net, case.trace, count, case.images, full_plan,
                                           min(fold, count), input_buffer, axi),
            timeout_s, memory_gb)
        wall = time.perf_counter() - begin
        if log:
            what = f"{result['cycles']:,.0f} cycles" if result else reason
            if result and "axi" in result:
                what += (f", {result['axi']['cycles']:,.0f} with the weights over AXI4 "
                         f"({result['axi']['ratio']:.4f}x)")
            log(f"  {case.label}, {count} lanes: {what} ({wall:.1f} s)")
        points.append(result if result else {"lanes": count, "reason": reason})
    load = 0 if cfg.events else cfg.in_channels * cfg.img_size ** 2
    energy = case.energy
    info = {
        "label": case.label, "model": case.model_name, "img_size": cfg.img_size, "T": cfg.T,
        "sdsa": cfg.sdsa, "embed_dim": list(cfg.embed_dim), "firing": case.firing,
        "rate_target": case.rate, "seed": case.seed, "inputs": case.inputs_text,
        "images": case.images, "load_cycles": load,
        "firing_rates": {k: _num(v) for k, v in case.firing_rates.items()},
        "energy": {"sop": _num(energy["sop"]), "macs": _num(energy["macs"]),
                   "paper_mj": _num(energy["energy_paper_mj"]),
                   "memory_mj": _num(energy["energy_memory_mj"]),
                   "bytes_moved": _num(energy["bytes_moved"])},
        "weight_bits": int(case.net.weight_bits),
    }
    info["paper_energy"] = paper_energy(info)
    return {"case": info, "points": points}


def rows(projections, clocks) -> list[dict]:
    """The flat table: one row per (case, lanes, clock)."""
    out = []
    for projection in projections:
        case = projection["case"]
        T, load = case["T"], case["load_cycles"]
        pixels_bytes = load  # 8-bit pixel codes, read once per image
        for point in projection["points"]:
            for clock in clocks:
                row = {field: None for field in CSV_FIELDS}
                row.update(case=case["label"], model=case["model"], img_size=case["img_size"],
                           T=T, firing="checkpoint" if case["rate_target"] is None else
                           f"random {case['rate_target']:g}", lanes=point["lanes"],
                           clock_mhz=_num(clock), energy_paper_mj=case["energy"]["paper_mj"],
                           energy_memory_mj=case["energy"]["memory_mj"],
                           load_cycles=load,
                           mean_firing_rate=case["firing_rates"]["mean"])
                if "cycles" not in point:
                    row.update(status="not computed", reason=point["reason"])
                    out.append(row)
                    continue
                cycles = point["cycles"]
                memory = point["memory"]
                per_s = clock * 1e6 / cycles
                ext = memory["weights"] / 8 * T + pixels_bytes
                sop = point["sops"]
                row.update(
                    status="ok", reason="", cycles=_num(cycles), images_per_s=_num(per_s),
                    sop_per_image=_num(sop),
                    latency_ms=_num(cycles / (clock * 1e3)),
                    images_per_s_with_load=_num(clock * 1e6 / (cycles + load)),
                    sop_per_cycle=_num(sop / cycles),
                    lane_utilisation=_num(sop / cycles / point["lanes"]),
                    g1_cycle_share=_num(point["g1_cycles"] / cycles),
                    onchip_bits=int(sum(memory.values())),
                    ext_bytes_per_image=_num(ext),
                    ext_bytes_per_image_unpadded=_num(
                        point["weights_needed_bits"] / 8 * T + pixels_bytes),
                    ext_gbyte_per_s=_num(ext * per_s / 1e9))
                for name, bits in memory.items():
                    row[f"{name}_bits"] = int(bits)
                for name, overhead in point["padding"].items():
                    row[f"{name}_overhead"] = _num(overhead)
                axi = point.get("axi")
                if axi is not None:
                    row.update(axi_cycles=_num(axi["cycles"]), axi_ratio=_num(axi["ratio"]),
                               axi_ring_bits=int(axi["ring_bits"]),
                               axi_read_bytes=int(axi["read_bytes"]),
                               axi_floor_ratio=_num(axi["read_bytes"] / axi["floor_bytes"]))
                out.append(row)
    return out


def goals(projections, fps: float = GOAL_FPS, clock: float = GOAL_CLOCK) -> list[dict]:
    """Per case: the fewest lanes projected at ``>= fps`` images/s at ``clock`` MHz (or None),
    and the best images/s computed."""
    out = []
    for projection in projections:
        done = [p for p in projection["points"] if "cycles" in p]
        rates = [(p["lanes"], clock * 1e6 / p["cycles"]) for p in done]
        reached = [(lanes, rate) for lanes, rate in rates if rate >= fps]
        best = max(rates, key=lambda item: item[1]) if rates else (None, None)
        out.append({"case": projection["case"]["label"], "fps": _num(fps),
                    "clock_mhz": _num(clock),
                    "lanes": reached[0][0] if reached else None,
                    "images_per_s": _num(reached[0][1]) if reached else None,
                    "best_lanes": best[0], "best_images_per_s": _num(best[1])})
    return out


def document(projections, clocks, options: dict) -> dict:
    """Everything the files hold (no times, no paths of the run)."""
    return {
        "tool": "python -m sim.project",
        "options": options,
        "assumptions": {
            "cycles": "sim.perf.CycleModel (exact against Verilator at 8 to 128 lanes; the "
                      "same equations, unmeasured, at other lane counts) on one integer-model "
                      "trace per case, shared by every lane count; cycles from start to done",
            "load": "load_cycles: the pixels through load_*, one 8-bit code a cycle, outside "
                    "the cycles; images_per_s_with_load adds them (no overlap with the run)",
            "firing": "each case's 'firing' entry",
            "energy": "golden.energy.measure, fused graph, float model on the trace's images: "
                      "paper method (4.6 pJ/MAC, 0.9 pJ/SOP) and memory-aware (int8 ops + "
                      "1.25 pJ/byte); independent of the lanes",
            "external_memory": "ext_bytes_per_image = packed weight memory (memory_report "
                               "weights / 8) read once per time step, plus the pixels once; "
                               "_unpadded: the weights' own bits instead. " + NOT_BUILT,
            "parallelism": PARALLELISM,
            "paper_energies": PAPER_ENERGIES,
        },
        "anchors": [dict(a, sop_per_cycle=_num(a["sop_per_cycle"]),
                         clock_mhz=_num(a["clock_mhz"])) for a in ANCHORS],
        "goal": goals(projections, options.get("goal_fps", GOAL_FPS),
                      options.get("goal_clock_mhz", GOAL_CLOCK)),
        "cases": [_clean(p) for p in projections],
        "rows": rows(projections, clocks),
    }


def _clean(value):
    """``value`` with every float in the fixed format, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _num(value)
    return value


# --- output ---------------------------------------------------------------------------------------

def _si(value, unit="") -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def format_table(doc: dict) -> str:
    """The terminal report: per case, a row per lane count, images/s at every clock."""
    clocks = doc["options"]["clock_mhz"]
    out = io.StringIO()
    by_case = {}
    for row in doc["rows"]:
        by_case.setdefault(row["case"], {}).setdefault(row["lanes"], {})[row["clock_mhz"]] = row
    for case in doc["cases"]:
        info = case["case"]
        energy = info["energy"]
        rates = info["firing_rates"]
        out.write(f"\n=== {info['label']} (sdsa {info['sdsa']}, embed_dim {info['embed_dim']})\n")
        out.write(f"firing: {info['firing']}; trace LIF rates mean {rates['mean']:.3f}, median "
                  f"{rates['median']:.3f} ({rates['min']:.3f}..{rates['max']:.3f}) over "
                  f"{rates['lifs']} LIFs\n")
        out.write(f"inputs: {info['inputs']}\n")
        out.write(f"energy per image: paper method {energy['paper_mj']:.4g} mJ, memory-aware "
                  f"{energy['memory_mj']:.4g} mJ ({_si(energy['sop'], 'SOP')}, "
                  f"{_si(energy['macs'], 'MAC')}); pixel load {info['load_cycles']:,} cycles\n")
        paper = info.get("paper_energy")
        if paper is not None:
            ratio = ("" if paper["sop_ratio"] is None else
                     f", {paper['sop_ratio']:.2f}x this case's: its images/s would be about "
                     f"{1 / paper['sop_ratio']:.2f}x these at the paper's firing "
                     "(cycles roughly follow the synaptic operations; --rates sweeps firing)")
            out.write(f"paper's energy ({paper['source']}, not checked here): "
                      f"{paper['mj']:.3g} mJ per image, about {_si(paper['implied_sop'], 'SOP')}"
                      f"{ratio}\n")
        if doc["options"].get("fold", 1) != 1:
            out.write(f"column folding up to {doc['options']['fold']} columns a bank word "
                      "(min(fold, lanes); hw/progengine.py)\n")
        if doc["options"].get("input_buffer", 0):
            out.write(f"engine input buffer of {doc['options']['input_buffer']} words, empty rows "
                      "dropped (hw/progengine.py)\n")
        head = f"{'lanes':>6} {'cycles/img':>13}"
        for clock in clocks:
            head += f" {f'img/s@{clock:g}':>11}"
        axi = doc["options"].get("axi")
        if axi is not None:
            ring = "default" if axi["ring_words"] is None else f"{axi['ring_words']:,}"
            out.write(f"weights over AXI4: {axi['bus']}-bit bus, read latency {axi['latency']} "
                      f"cycles, weight ring of {ring} words (hw/weightfetch.py; the cycle "
                      "model, sim/perf.py)\n")
        head += (f" {'SOP/cyc':>8} {'util':>6} {'G=1':>5} {'on-chip':>9} {'wt pad':>6} "
                 f"{'map pad':>7} {'ext/img':>9}")
        if axi is not None:
            head += f" {'AXI x':>7} {'ring':>7} {'read/floor':>10}"
        out.write(head + "\n")
        for lanes, per_clock in by_case.get(info["label"], {}).items():
            row = next(iter(per_clock.values()))
            if row["status"] != "ok":
                out.write(f"{lanes:>6} {row['reason']}\n")
                continue
            line = f"{lanes:>6} {row['cycles']:>13,.0f}"
            for clock in clocks:
                line += f" {per_clock[_num(clock)]['images_per_s']:>11.3g}"
            line += (f" {row['sop_per_cycle']:>8.4g} {100 * row['lane_utilisation']:>5.1f}%"
                     f" {100 * row['g1_cycle_share']:>4.0f}% {_si(row['onchip_bits'] / 8, 'B'):>9}"
                     f" {row['weights_overhead']:>5.2f}x {row['spike_maps_overhead']:>6.2f}x"
                     f" {_si(row['ext_bytes_per_image'], 'B'):>9}")
            if axi is not None:
                line += (f" {row['axi_ratio']:>6.4f}x {_si(row['axi_ring_bits'], 'b'):>7}"
                         f" {row['axi_floor_ratio']:>9.3f}x")
            out.write(line + "\n")
    out.write("\ncolumns: SOP/cyc = the trace's synaptic operations per image (valid taps x "
              "output channels, SDSA additions; no stem MACs) / cycles; util = SOP/cyc / "
              "lanes; G=1 = share of the cycles in steps with one output group (no gain from "
              "more lanes); on-chip = memory_report total; wt/map pad = padding_report "
              "overhead; ext/img = packed weights x T + pixels" + (
                  "; AXI x = cycles with the weights over AXI4 / on-chip cycles; ring = the "
                  "on-chip weight ring; read/floor = weight bytes read per image / the weights "
                  "at their bits once per time step" if doc["options"].get("axi") else "")
              + "\n")
    for goal in doc["goal"]:
        if goal["lanes"] is not None:
            what = (f"reached at {goal['lanes']} lanes ({goal['images_per_s']:.3g} images/s)")
        elif goal["best_lanes"] is not None:
            what = (f"not reached at any lane count computed (best {goal['best_images_per_s']:.3g}"
                    f" images/s at {goal['best_lanes']} lanes)")
        else:
            what = "no lane count computed"
        out.write(f"goal >= {goal['fps']:g} images/s at {goal['clock_mhz']:g} MHz, "
                  f"{goal['case']}: {what}\n")
    assumptions = doc["assumptions"]
    out.write(f"note: {assumptions['parallelism']}\n")
    out.write(f"note: {NOT_BUILT}\n")
    out.write(f"note: {PAPER_ENERGIES}\n")
    out.write("anchors (issue's figures, not checked here): " + "; ".join(
        f"{a['name']}: {a['note']}" for a in ANCHORS) + "\n")
    return out.getvalue()


def plot(doc: dict, path: Path) -> None:
    """Images/s and SOP per cycle against lanes (log axes), the anchors as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    clocks = sorted(doc["options"]["clock_mhz"], reverse=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 7))
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lanes_seen = set()
    for index, case in enumerate(doc["cases"]):
        info = case["case"]
        colour = colours[index % len(colours)]
        done = [p for p in case["points"] if "cycles" in p]
        if not done:
            continue
        lanes = [p["lanes"] for p in done]
        lanes_seen.update(lanes)
        energy = info["energy"]
        label = (f"{info['label']}: {energy['paper_mj']:.3g} mJ/image by the paper's method, "
                 f"{energy['memory_mj']:.3g} mJ memory-aware")
        if info.get("paper_energy") is not None:
            label += (f"; the paper: {info['paper_energy']['mj']:.3g} mJ (issue's figure, "
                      f"{info['paper_energy']['sop_ratio']:.2f}x these SOPs)")
        for number, clock in enumerate(clocks):
            left.plot(lanes, [clock * 1e6 / p["cycles"] for p in done], styles[number % 4],
                      color=colour, marker="o", markersize=3,
                      label=label if number == 0 else None)
        right.plot(lanes, [p["sops"] / p["cycles"] for p in done], "-", color=colour,
                   marker="o", markersize=3, label=info["label"])
    goal_fps = doc["options"].get("goal_fps", GOAL_FPS)
    left.axhline(goal_fps, color="grey", linewidth=0.8)
    handles, labels = left.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", linestyle=styles[n % 4]) for n in range(len(clocks))]
    labels += [f"{clock:g} MHz" for clock in clocks]
    handles.append(Line2D([], [], color="grey", linewidth=0.8))
    labels.append(f"goal: {goal_fps:g} images/s")
    left.set_yscale("log")
    left.set_ylabel("images/s (cycle model)")
    left.set_title("Projected throughput", fontsize=10)
    left.legend(handles, labels, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1),
                ncol=1, frameon=False)
    if lanes_seen:
        xs = sorted(lanes_seen)
        right.plot(xs, xs, ":", color="black", linewidth=0.8,
                   label="peak: lanes SOP/cycle (a spike's tap on lanes real channels a cycle)")
    for anchor, colour in zip(ANCHORS, ("tab:red", "tab:purple")):
        right.axhline(anchor["sop_per_cycle"], color=colour, linewidth=1, linestyle="--",
                      label=f"{anchor['name']}: {anchor['note']}")
    right.set_yscale("log")
    right.set_ylabel("synaptic operations per cycle (the trace's SOPs / cycles)")
    right.set_title("Work per cycle, against the anchors", fontsize=10)
    right.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("lanes (output channels per cycle)")
        if lanes_seen:
            axis.xaxis.set_major_locator(FixedLocator(sorted(lanes_seen)))
            axis.xaxis.set_minor_locator(NullLocator())
            axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.grid(True, which="both", linewidth=0.3)
    fig.suptitle("sim.project: shared network, cycle model on one trace per case; "
                 "firing as each case states", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_outputs(doc: dict, out: Path) -> list[Path]:
    """Write ``projection.{csv,json,png}`` under ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, png_path = (out / f"projection.{ext}" for ext in ("csv", "json", "png"))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in doc["rows"]:
        writer.writerow([_fmt(row[field]) for field in CSV_FIELDS])
    csv_path.write_text(buffer.getvalue())
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    plot(doc, png_path)
    return [csv_path, json_path, png_path]


# --- CLI ------------------------------------------------------------------------------------------

def _check(args) -> str | None:
    """The first problem with the arguments, or None."""
    from golden.config import variant

    if min(args.lanes) < 1:
        return f"--lanes {min(args.lanes)} is out of range: at least 1"
    if args.fold < 1 or args.fold & (args.fold - 1):
        return f"--fold {args.fold} is not a power of two (1, 2, 4, ...)"
    if args.fold > 1 and any(n & (n - 1) for n in args.lanes):
        return (f"--fold {args.fold} needs every --lanes a power of two, not "
                f"{' '.join(map(str, args.lanes))}")
    if args.axi_bus is None and (args.axi_latency is not None or args.ring_words is not None):
        return "--axi-latency and --ring-words model the weights over AXI4: give --axi-bus"
    if args.axi_bus is not None:
        if args.axi_bus not in (32, 64, 128, 256, 512, 1024):
            return (f"--axi-bus {args.axi_bus} is not a bus width: 32, 64, 128, 256, 512 or "
                    "1024 bits")
        if args.fold != 1:
            return "--axi-bus with --fold: column folding is not built for the weight ring"
        if args.axi_latency is not None and not 1 <= args.axi_latency <= 4096:
            return f"--axi-latency {args.axi_latency} is out of range: 1..4096 cycles"
        if args.ring_words is not None and (args.ring_words < 2
                                            or args.ring_words & (args.ring_words - 1)):
            return f"--ring-words {args.ring_words} is not a power of two (at least 2)"
    if args.input_buffer != 0 and not 2 <= args.input_buffer <= 64:
        return f"--input-buffer {args.input_buffer} is out of range: 0 (none) or 2..64"
    if len(set(args.lanes)) != len(args.lanes):
        return f"--lanes {' '.join(map(str, args.lanes))} repeats a lane count"
    if min(args.T) < 1 or max(args.T) > 16:
        return f"--T {' '.join(map(str, args.T))} is out of range: 1..16"
    if len(set(args.T)) != len(args.T):
        return f"--T {' '.join(map(str, args.T))} repeats a time step"
    for clock in args.clock_mhz:
        if not (math.isfinite(clock) and clock > 0):
            return f"--clock-mhz {clock:g} must be finite and > 0"
    if len(set(args.clock_mhz)) != len(args.clock_mhz):
        return "--clock-mhz repeats a clock"
    if args.img_size is not None and args.img_size < 8:
        return f"--img-size {args.img_size} is out of range: at least 8"
    if args.images < 1:
        return f"--images {args.images} is out of range: at least 1"
    if args.lane_timeout < 0 or args.plan_memory_gb < 0:
        return "--lane-timeout and --plan-memory-gb must be >= 0 (0: no limit)"
    if not (args.goal_fps > 0 and args.goal_clock_mhz > 0):
        return "--goal-fps and --goal-clock-mhz must be > 0"
    if args.checkpoint is not None:
        if args.rates is not None:
            return "--rates recalibrates a random model; a checkpoint fires as it does"
        if not Path(args.checkpoint).is_file():
            return f"checkpoint {args.checkpoint} does not exist"
    else:
        if args.inputs is not None:
            return "--inputs is for --checkpoint: a random model's trace is of its seeded image"
        for rate in args.rates or ():
            if not 0 < rate <= 0.38:
                return f"--rates {rate:g} is out of range: 0 < rate <= 0.38 (Q/K/V at 2.5x)"
        for name in args.variant:
            try:
                cfg = variant(name, **({} if args.img_size is None
                                       else {"img_size": args.img_size}))
            except (ValueError, TypeError) as error:
                return f"--variant {name}: {_one_line(error)}"
            if cfg.events:
                return f"--variant {name}: event models are not projected (no pixel stem)"
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return f"--out {args.out} exists and is not a directory"
    return None


def main(argv=None) -> int:
    p = Parser(prog="python -m sim.project", description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--variant", nargs="+", default=list(DEFAULT_VARIANTS),
                        help="golden.config variants with calibrated random weights "
                             "(default 15M 31M 55M)")
    source.add_argument("--checkpoint", default=None,
                        help="a checkpoint: its own configuration and firing")
    p.add_argument("--img-size", type=int, default=None,
                   help="input side (default: the model's own, 224 for the paper's)")
    p.add_argument("--T", type=int, nargs="+", default=[1, 4], help="time steps (default 1 4)")
    p.add_argument("--lanes", type=int, nargs="+", default=list(DEFAULT_LANES),
                   help="lane counts (default 16 32 64 128 256 512 1024)")
    p.add_argument("--clock-mhz", type=float, nargs="+", default=list(DEFAULT_CLOCKS),
                   help="clocks in MHz (default 100 500: FPGA- and ASIC-class)")
    p.add_argument("--rates", type=float, nargs="+", default=None,
                   help="random models: calibrate every LIF to these rates (Q/K/V 2.5x) "
                        "instead of 0.10 alone; one case per rate")
    p.add_argument("--seed", type=int, default=0, help="weights and image seed (default 0)")
    p.add_argument("--images", type=int, default=1, help="images per trace (default 1)")
    p.add_argument("--inputs", default=None,
                   help="--checkpoint only: digits, random or a .npy/.pt file of images")
    p.add_argument("--lane-timeout", type=float, default=900.0,
                   help="seconds allowed for one lane count's plan and prediction (default 900)")
    p.add_argument("--plan-memory-gb", type=float, default=8.0,
                   help="address space allowed to one lane count's plan, GB (default 8)")
    p.add_argument("--full-plan", action="store_true",
                   help="pack the weight words too (the plan exactly as the RTL's; slower)")
    p.add_argument("--fold", type=int, default=1,
                   help="column folding (hw/progengine.py): a layer of at most lanes / F output "
                        "channels accumulates F neighbouring columns a cycle, F up to "
                        "min(this, lanes); a power of two, lanes then powers of two too "
                        "(default 1: none)")
    p.add_argument("--input-buffer", type=int, default=0, metavar="WORDS",
                   help="words the engine's input slice holds, dropping empty rows as they "
                        "arrive (hw/progengine.py; default 0: none; 2..64)")
    p.add_argument("--axi-bus", type=int, default=None, metavar="BITS",
                   help="also model the weights streaming in over AXI4 on a bus this wide "
                        "(hw/weightfetch.py; 32..1024 bits; not with --fold): cycles, their "
                        "ratio to on-chip, the ring's bits and the bytes read per image")
    p.add_argument("--axi-latency", type=int, default=None, metavar="CYCLES",
                   help="with --axi-bus: the memory's read latency (default 30)")
    p.add_argument("--ring-words", type=int, default=None, metavar="WORDS",
                   help="with --axi-bus: the weight ring's words, a power of two at least the "
                        "largest weight block (default: the ring's own, four blocks)")
    p.add_argument("--goal-fps", type=float, default=GOAL_FPS,
                   help="images/s to report the fewest lanes for (default 30)")
    p.add_argument("--goal-clock-mhz", type=float, default=GOAL_CLOCK,
                   help="clock of that goal (default 500)")
    p.add_argument("--out", default="build/project", help="output directory (default "
                   "build/project)")
    args = p.parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    begin = time.perf_counter()
    axi = None
    if args.axi_bus is not None:
        axi = {"bus": args.axi_bus, "latency": 30 if args.axi_latency is None
               else args.axi_latency, "ring_words": args.ring_words}
    projections = []
    rates = args.rates or [BASE_RATE]
    sources = ([dict(checkpoint=args.checkpoint)] if args.checkpoint else
               [dict(variant_name=name, rate=rate) for name in args.variant for rate in rates])
    try:
        for source in sources:
            for T in args.T:
                start = time.perf_counter()
                case = make_case(img_size=args.img_size, T=T, seed=args.seed,
                                 images=args.images, inputs=args.inputs, **source)
                log(f"{case.label}: model, trace and energy in "
                    f"{time.perf_counter() - start:.1f} s")
                projections.append(project(case, args.lanes, timeout_s=args.lane_timeout,
                                           memory_gb=args.plan_memory_gb,
                                           full_plan=args.full_plan, log=log,
                                           fold=args.fold, input_buffer=args.input_buffer,
                                           axi=axi))
    except (ValueError, OSError, KeyError, NotImplementedError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    options = {"variant": None if args.checkpoint else list(args.variant),
               "checkpoint": args.checkpoint, "img_size": args.img_size, "T": list(args.T),
               "lanes": sorted(args.lanes), "clock_mhz": [_num(c) for c in args.clock_mhz],
               "rates": [_num(r) for r in rates] if not args.checkpoint else None,
               "seed": args.seed, "images": args.images, "inputs": args.inputs,
               "full_plan": args.full_plan, "goal_fps": _num(args.goal_fps),
               "goal_clock_mhz": _num(args.goal_clock_mhz),
               "lane_timeout_s": _num(args.lane_timeout),
               "plan_memory_gb": _num(args.plan_memory_gb)}
    if args.fold != 1:
        options["fold"] = args.fold
    if args.input_buffer:
        options["input_buffer"] = args.input_buffer
    if axi is not None:
        options["axi"] = axi
    doc = document(projections, [_num(c) for c in args.clock_mhz], options)
    print(format_table(doc), end="")
    for path in write_outputs(doc, Path(args.out)):
        print(f"wrote {path}")
    log(f"wall time {time.perf_counter() - begin:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
