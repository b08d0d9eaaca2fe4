"""Run the demo network end to end in RTL on Verilator and compare it with the golden models.

``python -m sim.e2e [--images N] [--T 1 2] [--checkpoint PATH] [--out build/e2e] [--sim icarus]``

For every T: quantize the checkpoint (``quant``), generate the network RTL (``hw.shared``), build
it on Verilator (or on Icarus Verilog: ``--sim icarus`` or ``SIM=icarus``), run N test images of
the digits set with cocotb (which only loads pixels, starts the network and waits for ``done``),
check that the logits and every LIF's spikes equal the integer golden model's (the first layer and
index that differ are named), and print RTL, integer and float predictions side by side. Writes
``report_T{T}.json`` / ``.csv`` (per step: cycles, ideal cycles, utilisation, synaptic
operations, energy) and a PNG plot.

``--checkpoint random`` runs a seeded, randomly initialised demo model instead (the bit-exact check
still means something; the predictions do not, and the printout says so). A missing or broken
checkpoint is an error.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hw.params import ceil_div

__all__ = ["demo_model", "write_case", "network_verilog", "run_network", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "golden" / "checkpoints" / "demo.pth"

# Energy constants (pJ). Paper method: Horowitz 45 nm, 32-bit float MAC / AC.
E_MAC_PAPER, E_AC_PAPER = 4.6, 0.9
# Memory-aware method (45 nm, int8): an add, a multiply, one byte read from SRAM.
E_ADD_INT8, E_MUL_INT8, E_SRAM_BYTE = 0.03, 0.2, 1.25


def demo_model(T: int, checkpoint=None, seed: int = 0, variant_name: str | None = None):
    """Return ``(model, trained)``: a checkpoint at T, or a seeded random demo model.

    A checkpoint's configuration is its own: its saved ``config`` entry, else the one its shapes
    give (``golden.checkpoint.load_checkpoint``), else ``variant_name`` when given; only ``T`` is
    replaced. It is never swapped for the demo's: a model the hardware cannot run is refused
    later (:func:`check_supported`), not simulated as another one.

    Raises ``FileNotFoundError`` for a missing checkpoint and ``golden.checkpoint.CheckpointError``
    (a ``ValueError``) for one that does not load or holds values no trained model has.
    """
    import torch
    from torch import nn

    if checkpoint != "random":
        from golden.checkpoint import load_checkpoint

        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist (train it with "
                                    "`make demo-model`, or pass --checkpoint random)")
        # A broken checkpoint raises (CheckpointError names the file and the key), never a
        # silent switch to other weights or to another configuration.
        return load_checkpoint(path, variant_name, T=T).double().eval(), True
    from golden.config import variant
    from golden.model import MetaSpikeFormer

    torch.manual_seed(seed)
    model = MetaSpikeFormer(variant("demo", T=T))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
                m.weight.data.copy_(torch.randn(n, generator=generator))
                m.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(3.0)  # default init fires almost nothing in a small random net
    return model.double().eval(), False


#: The co-simulation's inputs: the held-out digits, 1x32x32.
DIGITS_SHAPE = (1, 32, 32)


def describe(cfg) -> str:
    """One line naming the configuration a run simulates."""
    return (f"{cfg.name}: embed_dim={list(cfg.embed_dim)} depths={list(cfg.depths)} "
            f"heads={cfg.num_heads} input {cfg.in_channels}x{cfg.img_size}x{cfg.img_size} "
            f"classes={cfg.num_classes} T={cfg.T} sdsa={cfg.sdsa} shortcut={cfg.shortcut} "
            f"qkv={cfg.qkv} proj={cfg.proj} channel_mixer={cfg.channel_mixer} "
            f"stage1={cfg.stage1} blocks={cfg.block_types}")


def check_supported(model, arch: str, lanes: int) -> None:
    """Raise ``NotImplementedError`` naming what the network RTL cannot run in ``model``.

    Checks the inputs the co-simulation has (the digits), then builds the integer net and the
    shared network's plan (which builds the hardware program): each refuses what it does not
    support, before anything is generated or built.
    """
    from hw.plan import SharedPlan

    cfg = model.cfg
    if (cfg.in_channels, cfg.img_size, cfg.img_size) != DIGITS_SHAPE:
        raise NotImplementedError(
            f"the co-simulation feeds the shipped digits ({'x'.join(map(str, DIGITS_SHAPE))}); "
            f"this model takes {cfg.in_channels}x{cfg.img_size}x{cfg.img_size} inputs")
    if arch != "shared":
        raise NotImplementedError(f"architecture {arch!r}: only 'shared' exists")
    SharedPlan(quantized(model), lanes)


def quantized(model):
    """Return the 8-bit :class:`quant.quantize.IntNet` of a demo model."""
    from quant.quantize import quantize_model

    return quantize_model(model, 8, 8)  # the digits' pixel range: codes are the raw pixels


def test_images(count: int):
    """Return ``(images [N, 1, 32, 32] float, labels [N])`` of the held-out digits."""
    from golden.data import digits_dataset

    data = digits_dataset(32, "test", 0)
    images = data.tensors[0][:count]
    return images, data.tensors[1][:count]


def golden_run(model, net, images):
    """Return integer codes, integer logits, the Trace and float logits for ``images``."""
    import torch

    from quant.intmodel import IntegerModel

    integer = IntegerModel(net)
    codes = integer.quantize_input(images)
    logits, trace = integer.forward(codes, trace=True)
    with torch.no_grad():
        out = model(images.to(torch.float64))
    float_logits = out[0] if isinstance(out, tuple) else out
    return codes, logits, trace, float_logits


def network_meta(dut) -> dict:
    """Return what the testbench needs to read the design: maps, order, widths."""
    maps = {name: {"channels": info.channels, "height": info.side, "width": info.side,
                   "layout": "shared", "banks": dut.lanes,
                   "cg": ceil_div(info.channels, dut.lanes), "memory": "spikes",
                   "bank_bits": dut.map_width,
                   "base": info.base, "cg_log": info.cg_log, "h_log": info.h_log}
            for name, info in dut.maps.items()}
    order = [s.sink.spike_map for s in dut.steps if s.sink.spike_map is not None]
    return {"maps": maps, "lif_order": order, "T": dut.T,
            "classes": dut.logits.shape().length, "logit_bits": dut.logit_bits,
            "steps": [{"kind": s.kind.label, "name": s.name, "first_step_only": s.first_step_only}
                      for s in dut.steps]}


def write_case(path, dut, codes, logits, trace) -> dict:
    """Write the testbench's case (codes, logits, expected spikes ``[B, T, C, N]``) and meta."""
    meta = network_meta(dut)
    arrays = {"codes": codes.numpy().astype(np.int64), "logits": logits.numpy()}
    for lif, spec in meta["maps"].items():
        spikes = trace.spikes[lif].numpy()
        B = spikes.shape[1]
        arrays[f"spikes:{lif}"] = np.ascontiguousarray(
            spikes.reshape(spikes.shape[0], B, spec["channels"], -1).transpose(1, 0, 2, 3))
    np.savez(path, **arrays)
    with open(str(path) + ".json", "w") as handle:
        json.dump(meta, handle)
    return meta


def _net_key(net, lanes: int, arch: str = "shared") -> str:
    """Return a hash of everything the generated Verilog depends on."""
    h = hashlib.sha256()
    for name, layer in net.layers.items():
        for part in (layer.weight, layer.bias, layer.shift if layer.shift is not None else []):
            h.update(np.ascontiguousarray(np.asarray(part, dtype=np.int64)).tobytes())
        h.update(f"{name}{layer.stride}{layer.padding}".encode())
    for name, lif in net.lifs.items():
        h.update(name.encode() + np.asarray(lif.threshold, np.int64).tobytes()
                 + str(lif.input_bits).encode())
    h.update(np.asarray(net.pixel.zero_point, np.int64).tobytes())
    h.update(json.dumps({name: asdict(attn) for name, attn in net.attention.items()},
                        sort_keys=True).encode())
    h.update(json.dumps(net.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"T{net.cfg.T}lanes{lanes}arch{arch}".encode())
    # Every hardware source: a change anywhere in hw/ (a unit, the program, the plan) is a new
    # design point.
    for source in sorted((ROOT / "hw").glob("*.py")):
        h.update(source.name.encode() + source.read_bytes())
    return h.hexdigest()[:16]


def network_verilog(dut, net, lanes: int, arch: str = "shared") -> str:
    """Return the network's Verilog, converted once per design point (cached under build/)."""
    from amaranth.back import verilog

    cache = ROOT / "build" / "network_rtl"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"network-{_net_key(net, lanes, arch)}.v"
    if path.exists():
        return path.read_text()
    text = verilog.convert(dut, name="network", emit_src=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def run_network(T: int, images: int, out: Path, checkpoint=None, lanes: int = 16,
                seed: int = 0, arch: str = "shared", simulator: str | None = None,
                variant_name: str | None = None) -> dict:
    """Run ``images`` test images at ``T`` in RTL; return the summary (raises on a mismatch)."""
    import torch

    from hw.shared import SharedNetwork
    from sim import toolchain

    torch.set_num_threads(1)
    simulator = toolchain.selected_simulator(simulator)
    out = Path(out).resolve()  # the simulator runs in its build directory
    model, trained = demo_model(T, checkpoint, seed, variant_name)
    net = quantized(model)
    out.mkdir(parents=True, exist_ok=True)  # only once the checkpoint has loaded and quantized
    x, labels = test_images(images)
    codes, logits, trace, float_logits = golden_run(model, net, x)
    if arch != "shared":
        raise ValueError(f"architecture {arch!r}: only 'shared' exists")
    dut = SharedNetwork(net, lanes=lanes)
    case = out / f"case_T{T}.npz"
    meta = write_case(case, dut, codes, logits, trace)
    begin = time.perf_counter()
    text = network_verilog(dut, net, lanes, arch)
    convert_s = time.perf_counter() - begin
    begin = time.perf_counter()
    design = toolchain.build(text, "network", simulator=simulator)
    build_s = time.perf_counter() - begin
    results = out / f"results_T{T}.json"
    begin = time.perf_counter()
    error = None
    try:
        toolchain.run(design, "sim.tb.network", name=f"network_T{T}", extra_env={
            "NET_CASE": str(case), "NET_META": str(case) + ".json", "NET_RESULTS": str(results)})
    except AssertionError as failure:
        error = str(failure)
    run_s = time.perf_counter() - begin
    rtl = json.loads(results.read_text())["images"] if results.exists() else []
    summary = {"T": T, "trained": trained, "images": images, "lanes": lanes, "arch": arch,
               "simulator": simulator, "convert_s": convert_s, "build_s": build_s,
               "run_s": run_s, "error": error,
               "labels": labels.tolist(), "int_pred": logits.argmax(1).tolist(),
               "float_pred": float_logits.argmax(1).tolist(),
               "rtl_pred": [int(np.argmax(r["logits"])) for r in rtl],
               "rtl": rtl}
    summary["report"] = step_report(dut, net, trace, rtl, meta) if rtl else []
    return summary


def _sops(dut, net, trace, step, t, image):
    """Return (synaptic operations, ideal cycles, dense MACs) of one step at one time step."""
    from hw.accumulator import layer_sops
    from hw.program import StepKind

    lanes = dut.lanes
    if step.kind is StepKind.STEM:
        layer = net.layers[step.layer]
        macs = dut._stem_macs if hasattr(dut, "_stem_macs") else None
        cout, cin, k, _ = layer.weight.shape
        out = trace.accumulators[step.layer].shape[-1]
        macs = cout * cin * k * k * out * out
        return 0, macs / lanes, macs
    if step.kind is StepKind.LAYER:
        layer = net.layers[step.layer]
        spikes = trace.spikes[step.source][t, image].numpy()
        info = dut.maps[step.source]
        if step.layer == "head":
            sops = layer_sops("linear", layer.weight.shape[:2], spikes.reshape(1, -1))
        else:
            sops = layer_sops("conv", layer.weight.shape,
                              spikes.reshape(info.channels, info.height, info.width),
                              stride=layer.stride, padding=layer.padding)
        cout = layer.weight.shape[0]
        groups = ceil_div(cout, lanes)
        return sops, sops / cout * groups, 0
    if step.kind is StepKind.SDSA:
        attn = net.attention[step.source]
        q = trace.spikes[step.attention.q][t, image].numpy().sum()
        k = trace.spikes[step.attention.k][t, image].numpy().sum()
        d = attn.head_width
        sops = int(q + k) * d
        return sops, sops / d, 0
    # LIF / copy steps: neuron updates, `lanes` per cycle, no synaptic operations.
    stream = net.streams.get(step.source) if step.source else None
    channels = net.lifs[step.name].threshold.shape[0] if step.name in net.lifs else (
        stream.scale.shape[0] if stream else 0)
    side = dut.sizes.get(step.source, 1) if step.kind is not StepKind.BEGIN_STEM else \
        dut.sizes["downsample1_1"]
    if step.kind is StepKind.BEGIN_STEM:
        channels = net.streams["downsample1_1"].scale.shape[0]
    return 0, side * side * ceil_div(channels, lanes), 0


def step_report(dut, net, trace, rtl, meta) -> list[dict]:
    """Return one row per program step: cycles (mean over images), ideal, SOPs, energy."""
    steps = dut.steps
    T = meta["T"]
    rows = []
    per_step = {}
    for image, result in enumerate(rtl):
        marks = [tuple(e) for e in result["steps"]]
        # A run that starts at step 0 (the first after reset) records no change into step 0.
        if not marks or marks[0][1] != 0:
            marks = [(0, 0, 0)] + marks
        for (t0, k0, c0), (t1, k1, c1) in zip(marks, marks[1:]):
            if k0 < len(steps):
                per_step.setdefault((k0, t0), []).append(c1 - c0)
        last_t, last_k, last_c = marks[-1]
        if last_k < len(steps):
            per_step.setdefault((last_k, last_t), []).append(result["cycles"] - last_c)
    weight_bits = net.weight_bits
    for k, step in enumerate(steps):
        cycles = ideal = sops = macs = 0.0
        for t in range(T):
            if step.first_step_only and t and (k, t) not in per_step:
                continue  # a stem that ran only once (the shared network recomputes it)
            samples = per_step.get((k, t), [0])
            cycles += float(np.mean(samples))
            s, i, mac = 0.0, 0.0, 0.0
            for image in range(len(rtl)):
                a, b, c = _sops(dut, net, trace, step, t, image)
                s, i, mac = s + a, i + b, mac + c
            n = max(1, len(rtl))
            sops, ideal, macs = sops + s / n, ideal + i / n, macs + mac / n
        paper = E_MAC_PAPER * macs + E_AC_PAPER * sops
        memory = (macs * (E_MUL_INT8 + E_ADD_INT8 + E_SRAM_BYTE * weight_bits / 8)
                  + sops * (E_ADD_INT8 + E_SRAM_BYTE * weight_bits / 8))
        rows.append({"step": k, "kind": step.kind.label, "name": step.name, "cycles": cycles,
                     "ideal_cycles": ideal, "utilisation": ideal / cycles if cycles else 0.0,
                     "sops": sops, "macs": macs, "energy_paper_pJ": paper,
                     "energy_memory_pJ": memory})
    return rows


def write_report(summary: dict, out: Path, clock_mhz: float) -> None:
    """Write the per-step report as JSON, CSV and a PNG plot of cycles against the ideal."""
    T = summary["T"]
    rows = summary["report"]
    total = {key: sum(r[key] for r in rows) for key in
             ("cycles", "ideal_cycles", "sops", "macs", "energy_paper_pJ", "energy_memory_pJ")}
    total["utilisation"] = total["ideal_cycles"] / total["cycles"] if total["cycles"] else 0
    total["latency_us"] = total["cycles"] / clock_mhz
    total["clock_mhz"] = clock_mhz
    summary["total"] = total
    (out / f"report_T{T}.json").write_text(json.dumps(
        {k: v for k, v in summary.items() if k != "rtl"} | {"rtl_cycles": [
            r["cycles"] for r in summary["rtl"]], "rtl_wall_s": [r["wall_s"]
                                                                 for r in summary["rtl"]]},
        indent=1))
    with open(out / f"report_T{T}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    index = np.arange(len(rows))
    ax.bar(index - 0.2, [r["cycles"] for r in rows], 0.4, label="RTL cycles")
    ax.bar(index + 0.2, [r["ideal_cycles"] for r in rows], 0.4, label="ideal (work / lanes)")
    ax.set_xticks(index, [r["name"] for r in rows], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"demo network, T={T}: cycles per step")
    fig.tight_layout()
    # No software/date metadata: the same run gives the same bytes.
    fig.savefig(out / f"report_T{T}.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def print_summary(summary: dict) -> None:
    """Print predictions side by side and the per-step table."""
    T = summary["T"]
    note = "" if summary["trained"] else " (random demo weights: no checkpoint, accuracy moot)"
    print(f"\n=== T={T}: {summary['images']} images{note}")
    print(f"{'image':>5} {'label':>5} {'float':>5} {'int':>5} {'rtl':>5}  {'cycles':>8} "
          f"{'wall s':>7}  bit-exact")
    for i, r in enumerate(summary["rtl"]):
        print(f"{i:>5} {summary['labels'][i]:>5} {summary['float_pred'][i]:>5} "
              f"{summary['int_pred'][i]:>5} {summary['rtl_pred'][i]:>5}  {r['cycles']:>8} "
              f"{r['wall_s']:>7.2f}  {'yes' if r['match'] else 'NO'}")
    if summary["report"]:
        print(f"\n{'step':<34} {'cycles':>9} {'ideal':>9} {'util':>6} {'SOPs':>9} "
              f"{'E paper nJ':>10} {'E mem nJ':>9}")
        for r in summary["report"]:
            print(f"{r['name'][:34]:<34} {r['cycles']:>9.0f} {r['ideal_cycles']:>9.0f} "
                  f"{r['utilisation']:>6.2f} {r['sops']:>9.0f} {r['energy_paper_pJ'] / 1e3:>10.2f}"
                  f" {r['energy_memory_pJ'] / 1e3:>9.2f}")
        tot = summary.get("total")
        if tot:
            print(f"{'total':<34} {tot['cycles']:>9.0f} {tot['ideal_cycles']:>9.0f} "
                  f"{tot['utilisation']:>6.2f} {tot['sops']:>9.0f} "
                  f"{tot['energy_paper_pJ'] / 1e3:>10.2f} {tot['energy_memory_pJ'] / 1e3:>9.2f}")
            print(f"latency at {tot['clock_mhz']:.0f} MHz: {tot['latency_us']:.1f} us per image")
    simulator = {"icarus": "Icarus"}.get(summary.get("simulator"), "Verilator")
    print(f"convert {summary['convert_s']:.1f} s, {simulator} build {summary['build_s']:.1f} s, "
          f"simulation of {summary['images']} images {summary['run_s']:.1f} s")
    if summary["error"]:
        print(f"MISMATCH:\n{summary['error']}")


def main(argv=None) -> int:
    """Run the end-to-end demo; return 0 when the RTL equals the integer model everywhere."""
    p = argparse.ArgumentParser(prog="python -m sim.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=4, help="test images per T (default 4)")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2], help="time steps (default 1 2)")
    p.add_argument("--checkpoint", default=None,
                   help=f"default {DEFAULT_CHECKPOINT}; 'random': seeded random weights. Its "
                        "configuration is the checkpoint's own (saved, else from its shapes)")
    p.add_argument("--variant", default=None,
                   help="use this golden.config variant's configuration instead of the "
                        "checkpoint's (for a checkpoint that saves none); its shapes must match")
    p.add_argument("--lanes", type=int, default=None,
                   help="lanes of the engine, the LIF array and every memory word (default 16)")
    p.add_argument("--arch", choices=("shared",), default="shared",
                   help="the time-multiplexed network (hw.shared), the only one since the "
                        "one-engine-per-layer vehicle was retired")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for the latency figure (default 100 MHz; see docs/network.md)")
    p.add_argument("--out", default=str(ROOT / "build" / "e2e"), help="report directory")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="simulator (default: $SIM, else verilator); Icarus is far slower on the "
                        "whole network (docs/simulators.md)")
    args = p.parse_args(argv)
    problem = None
    if args.images < 1:
        problem = f"--images {args.images} is out of range: at least 1"
    elif min(args.T) < 1:
        problem = f"--T {min(args.T)} is out of range: at least 1"
    elif args.lanes is not None and not 1 <= args.lanes <= 256:
        problem = f"--lanes {args.lanes} is out of range: 1..256"
    elif not 0 < args.clock_mhz < float("inf"):
        problem = f"--clock-mhz {args.clock_mhz} must be finite and > 0"
    if problem is None and args.checkpoint not in (None, "random") \
            and not Path(args.checkpoint).exists():
        problem = f"checkpoint {args.checkpoint} does not exist"
    if problem is None:
        # Load, check and quantize the checkpoint at every T before anything is written, built
        # or simulated: a bad checkpoint is one line naming the file and the key.
        from quant.quantize import QuantizationError

        lanes = args.lanes or 16
        name = args.checkpoint or DEFAULT_CHECKPOINT
        configs = {}
        try:
            for T in args.T:
                model = demo_model(T, args.checkpoint, variant_name=args.variant)[0]
                configs[T] = model.cfg
                check_supported(model, args.arch, lanes)
        except NotImplementedError as error:  # a model the network RTL cannot run: refused
            what = f" ({describe(configs[T])})" if T in configs else ""
            problem = (f"checkpoint {name}{what} cannot be simulated: "
                       + " ".join(str(error).split()))
        except (ValueError, OSError, KeyError) as error:  # CheckpointError, QuantizationError
            problem = " ".join(str(error).split())
            if isinstance(error, (QuantizationError, KeyError)):
                problem = f"checkpoint {name}: {problem}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    status = 0
    for T in args.T:
        lanes = args.lanes or 16
        print(f"simulating {describe(configs[T])}", flush=True)
        summary = run_network(T, args.images, Path(args.out), args.checkpoint, lanes,
                              arch=args.arch, simulator=args.sim, variant_name=args.variant)
        if summary["rtl"]:
            write_report(summary, Path(args.out), args.clock_mhz)
        print_summary(summary)
        if summary["error"] or not summary["rtl"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
