"""SepConv fused against unfused, per layer: synaptic operations, multiplies, cycles and energy.

``python -m sim.sepconv [--checkpoint PATH] [--images N] [--T T] [--lanes L] [--rtl] [--json OUT]``

The official SepConv is ``LIF -> pwconv1 (1x1, C -> 2C) -> BN -> LIF -> dwconv (7x7 depthwise) ->
BN -> pwconv2 (1x1, 2C -> C) -> BN``. Nothing non-linear sits between ``dwconv`` and
``pwconv2``, so ``pwconv2``'s input is **not spikes**: it is the depthwise conv's integer output.

* **Fused** (what the network RTL runs, ``quant`` default): ``dwconv`` and ``pwconv2`` fold into
  one dense 7x7 conv, ``2C -> C``, on the spikes of ``Conv.lif2``. Every input spike costs
  ``taps x C`` additions (its valid taps, times the output channels). No multiply. The cycles
  are :class:`sim.perf.CycleModel`'s for the step, which equal the RTL's (``docs/perf.md``).
* **Unfused** (``quant --no-fuse-sepconv``; not built in hardware): a depthwise 7x7 on the same
  spikes, ``taps x 1`` additions per spike, then ``pwconv2`` as a 1x1 conv on ``2C`` integers:
  ``H x W x 2C x C`` multiply-accumulates whatever the firing (its input is dense). The cycles
  here are ideal-rate estimates, not RTL: the depthwise conv at ``lanes`` additions a cycle
  (full lane rate) and the pointwise conv at ``lanes`` multiply-accumulates a cycle (``lanes``
  hardware multipliers, which the spike-driven network does not have).

* **Unfused, bit-serial** (spike-driven; not built in hardware): the same depthwise conv on
  spikes, then ``pwconv2`` without a multiply. Each bit plane of the depthwise sums is a binary
  map, and ``pwconv2`` runs as one spike conv a plane, its sums shifted by the plane's bit into
  the output (:func:`quant.intops.pointwise_by_planes`). Two encodings are counted: two's
  complement (``planes``: the depthwise layer's proven ``acc_bits``; the sign plane's pass
  subtracts) and sign-magnitude (``sm_planes``: the bits of the proven largest magnitude; a set
  bit of a negative sum is a signed spike, whose weights the engine would subtract). The
  bit-serial costs are sign-magnitude's, which sets fewer bits: its additions are the set bits
  times ``C``. The report checks, on every image and time step and for both encodings, that
  this equals the unfused integer model's ``pwconv2`` (``bitserial_exact``). Its numbers come
  from the unfused integer model (``quant`` with ``fuse_sepconv=False``) on the same images.
  Cycles: the depthwise conv's are :class:`hw.depthwise.DepthwiseEngine`'s, exact
  (:func:`hw.depthwise.depthwise_cycles`, equal to the RTL's in ``tests/test_depthwise.py``; its
  read-out of the sums included, ``dw_engine_cycles``); the pointwise passes' are ideal-rate, one
  cycle per (plane bit, group of ``lanes`` output channels), the dense engine's cost for a 1x1
  conv (not built: no unit writes the planes as spike maps).

Energy by the paper's method: 0.9 pJ per addition on spikes, 4.6 pJ per multiply-accumulate.
Which is cheaper is printed per layer, by cycles and by energy. Counts are per image (summed
over time steps, mean over images) on the first ``--images`` held-out digits (or seeded random
images for a model that does not take 1x32x32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from golden.cliargs import Parser
from hw.params import ceil_div
from hw.program import StepKind

__all__ = ["compare", "choose", "main", "simulate_unfused", "E_AC_PJ", "E_MAC_PJ"]

#: The paper's energies (Horowitz 45 nm): an addition on a spike, a multiply-accumulate.
E_AC_PJ, E_MAC_PJ = 0.9, 4.6


def simulate_unfused(unit, spikes):
    """Run a :class:`hw.sepconv.UnfusedSepConv` on one ``[C, H, W]`` spike map in Amaranth's
    simulator, the input always valid and the output always ready. Returns its sums ``[Cout, H,
    W]``, the cycles from ``start`` to the last output beat, its error flag, and the cycles
    (counted from ``start``) where its plane writer's last word was taken and where it last said
    ``busy``."""
    from amaranth.sim import Simulator

    channels, height, width = spikes.shape
    cout = unit.layer.out_channels
    got = np.zeros((cout, height, width), np.int64)
    out = {}

    async def bench(ctx):
        while not ctx.get(unit.ready):
            await ctx.tick()
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        inputs = [sum(int(b) << x for x, b in enumerate(row)) for ch in spikes for row in ch]
        ctx.set(unit.o.ready, 1)
        beats, cycle, limit = 0, 0, 1000 * (len(inputs) + 1)
        writer = unit.writer.o
        busy_until = writer_end = 0
        while True:
            cycle += 1
            if ctx.get(unit.busy):
                busy_until = cycle
            if ctx.get(writer.valid) and ctx.get(writer.ready) and ctx.get(writer.payload.last):
                writer_end = cycle
            if cycle > limit:
                raise RuntimeError("the unfused SepConv stalls")
            ctx.set(unit.i.valid, bool(inputs))
            if inputs:
                ctx.set(unit.i.payload.bits, inputs[0])
            if inputs and ctx.get(unit.i.ready):
                inputs.pop(0)
            if ctx.get(unit.o.valid):
                beat = ctx.get(unit.o.payload)
                lanes = len(beat.values)
                first = beat.group * lanes
                got[first:first + lanes, beat.oy, beat.ox] = \
                    [int(v) for v in beat.values][:min(lanes, cout - first)]
                beats += 1
                if beat.last:
                    break
            await ctx.tick()
        out.update(cycles=cycle, beats=beats, error=bool(ctx.get(unit.error)),
                   ends=(writer_end, busy_until))

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if out["beats"] != unit.beats:
        raise RuntimeError(f"the unfused SepConv gave {out['beats']} beats, not {unit.beats}")
    return got, out["cycles"], out["error"], out["ends"]


def choose(model, lanes: int = 16, images: int = 4, *, weight_bits: int = 8,
           input_buffer: int = 0, fold: int = 1, seed: int = 0) -> dict:
    """Per SepConv block of ``model``: fused or unfused in the shared network, whichever takes
    fewer cycles (``sepconv: "auto"``; a tie stays fused, whose weight words are narrower).

    The cycles are :class:`sim.perf.CycleModel`'s (exact against the RTL for both forms,
    ``docs/perf.md``) for the block's ``pwconv2`` step, summed over the model's time steps and
    ``images`` calibration inputs (:func:`sim.e2e.select_inputs`: the held-out digits for a
    model that takes them, else seeded random images), with the whole network quantized fused
    and then unfused. Returns ``{"fused": (block paths fused), "blocks": [{"block",
    "fused_cycles", "unfused_cycles"}, ...]}``; ``"fused"`` is ``quant``'s ``fuse_sepconv``.
    """
    import torch

    from hw.plan import SharedPlan
    from quant.intmodel import IntegerModel
    from quant.quantize import quantize_model
    from sim.e2e import select_inputs
    from sim.perf import CycleModel

    cycles = {}
    inputs = None
    for form, fuse in (("fused", True), ("unfused", False)):
        net = quantize_model(model, weight_bits, 8, fuse_sepconv=fuse)
        if inputs is None:
            inputs = select_inputs(net, images, None, seed)
        integer = IntegerModel(net)
        codes = (inputs.images.transpose(0, 1).to(torch.int64) if net.cfg.events
                 else integer.quantize_input(inputs.images))
        _, trace = integer.forward(codes, trace=True)
        plan = SharedPlan(net, lanes, pack_weights=False, fold=fold, input_buffer=input_buffer)
        cycle_model = CycleModel(plan)
        for step in plan.steps:
            if step.kind is StepKind.LAYER and step.layer.endswith(".Conv.pwconv2"):
                block = step.layer.removesuffix(".Conv.pwconv2")
                cycles[block, form] = sum(cycle_model.step_cycles(step, trace, t, i)
                                          for t in range(net.cfg.T) for i in range(len(inputs)))
    blocks = sorted({block for block, _ in cycles})
    rows = [{"block": b, "fused_cycles": cycles[b, "fused"],
             "unfused_cycles": cycles[b, "unfused"]} for b in blocks]
    return {"fused": tuple(r["block"] for r in rows
                           if r["fused_cycles"] <= r["unfused_cycles"]),
            "blocks": rows}


def compare(checkpoint=None, images: int = 2, T: int = 1, lanes: int = 16,
            rtl: bool = False) -> dict:
    """Per SepConv of the model: fused and unfused counts (module docstring). Returns
    ``{"layers": [row, ...], "total": row, ...}``; each row has ``layer``, ``spikes``,
    ``fused_sops``, ``fused_cycles``, ``fused_ideal``, ``dw_sops``, ``pw_macs``,
    ``unfused_cycles``, ``fused_pj``, ``unfused_pj``, ``cheaper_cycles``, ``cheaper_energy``,
    and the bit-serial form's ``planes``, ``plane_bits_set`` (two's complement),
    ``sm_planes``, ``sm_bits_set`` (sign-magnitude), ``bs_dw_sops``, ``dw_engine_cycles``,
    ``bs_sops``, ``bs_cycles``, ``bs_pj``, ``bitserial_exact``, ``bs_vs_fused_cycles``,
    ``bs_vs_fused_energy``; with ``rtl``, also ``rtl_cycles`` and ``rtl_exact``: the unfused
    SepConv in hardware (:class:`hw.sepconv.UnfusedSepConv`, Amaranth's simulator) on every
    image and time step."""
    import torch

    from hw.depthwise import depthwise_cycles, depthwise_geometry
    from hw.packing import layer_sops
    from hw.plan import SharedPlan
    from quant.intmodel import IntegerModel
    from quant.intops import bit_planes, magnitude_planes, pointwise_by_planes
    from quant.quantize import quantize_model
    from sim.e2e import demo_model, quantized, select_inputs
    from sim.perf import CycleModel, map_spikes

    depthwise_geometry(7, lanes)        # refuses lanes the depthwise engine cannot have
    torch.set_num_threads(1)
    model, _ = demo_model(T, checkpoint)
    net = quantized(model)
    plan = SharedPlan(net, lanes, pack_weights=False)
    inputs = select_inputs(net, images, None, 0)
    integer = IntegerModel(net)
    _, trace = integer.forward(integer.quantize_input(inputs.images), trace=True)
    # The unfused integer model on the same images: the bit-serial form's own numbers.
    unfused = quantize_model(model, 8, 8, fuse_sepconv=False)
    u_integer = IntegerModel(unfused)
    _, u_trace = u_integer.forward(u_integer.quantize_input(inputs.images), trace=True)
    cycle_model = CycleModel(plan)
    predicted = [{(r["t"], r["step"]): r["cycles"] for r in cycle_model.predict(trace, i)["steps"]}
                 for i in range(len(inputs))]
    n = len(inputs)
    rows = []
    for k, step in enumerate(plan.steps):
        if step.kind is not StepKind.LAYER or not step.layer.endswith(".Conv.pwconv2"):
            continue
        layer = net.layers[step.layer]
        cout, cmid, kernel, _ = np.asarray(layer.weight).shape
        side = plan.sizes[step.layer.split(".")[0]]
        spikes = map_spikes(net, trace, step.source)     # [T, B, C, H, W] of Conv.lif2
        u_spikes = map_spikes(unfused, u_trace, step.source)
        dw_name = step.layer.replace(".pwconv2", ".dwconv")
        dw_layer, pw_layer = unfused.layers[dw_name], unfused.layers[step.layer]
        bits = dw_layer.acc_bits
        sm_bits = max(abs(int(dw_layer.acc_low.min())), int(dw_layer.acc_high.max()),
                      1).bit_length()
        dw_sums = np.asarray(u_trace.accumulators[dw_name])      # [T, B, 2C, H, W]
        pw_sums = np.asarray(u_trace.accumulators[step.layer])   # [T, B, C, H, W]
        row = dict(layer=step.layer, channels=f"{cmid} -> {cout}", kernel=kernel, side=side,
                   spikes=0.0, fused_sops=0.0, dw_sops=0.0, fused_cycles=0.0, planes=bits,
                   plane_bits_set=0.0, sm_planes=sm_bits, sm_bits_set=0.0, bs_dw_sops=0.0,
                   dw_engine_cycles=0.0, bitserial_exact=True)
        for image in range(n):
            for t in range(plan.T):
                sums = dw_sums[t, image]
                row["plane_bits_set"] += float(bit_planes(sums, bits).sum()) / n
                row["sm_bits_set"] += float(magnitude_planes(sums, sm_bits)[0].sum()) / n
                for encoding, width in (("twos", bits), ("sign-magnitude", sm_bits)):
                    row["bitserial_exact"] &= bool(np.array_equal(
                        pointwise_by_planes(sums, pw_layer.weight, pw_layer.bias, width,
                                            encoding), pw_sums[t, image]))
                u = np.asarray(u_spikes[t, image]).reshape(cmid, side, side)
                row["bs_dw_sops"] += layer_sops("depthwise", (cmid, 1, kernel, kernel), u,
                                                stride=layer.stride, padding=layer.padding) / n
                row["dw_engine_cycles"] += depthwise_cycles(u, kernel, lanes) / n
                s = np.asarray(spikes[t, image]).reshape(cmid, side, side)
                row["spikes"] += float(s.sum()) / n
                row["fused_sops"] += layer_sops("conv", layer.weight.shape, s,
                                                stride=layer.stride, padding=layer.padding) / n
                row["dw_sops"] += layer_sops("depthwise", (cmid, 1, kernel, kernel), s,
                                             stride=layer.stride, padding=layer.padding) / n
                row["fused_cycles"] += predicted[image][(t, k)] / n
        groups = ceil_div(cout, lanes)
        row["fused_ideal"] = row["fused_sops"] / cout * groups
        row["pw_macs"] = float(plan.T * side * side * cmid * cout)
        row["unfused_cycles"] = row["dw_sops"] / lanes + row["pw_macs"] / lanes
        row["fused_pj"] = E_AC_PJ * row["fused_sops"]
        row["unfused_pj"] = E_AC_PJ * row["dw_sops"] + E_MAC_PJ * row["pw_macs"]
        row["cheaper_cycles"] = "fused" if row["fused_cycles"] <= row["unfused_cycles"] \
            else "unfused"
        row["cheaper_energy"] = "fused" if row["fused_pj"] <= row["unfused_pj"] else "unfused"
        row["bs_sops"] = row["bs_dw_sops"] + row["sm_bits_set"] * cout
        row["bs_cycles"] = row["dw_engine_cycles"] + row["sm_bits_set"] * groups
        row["bs_pj"] = E_AC_PJ * row["bs_sops"]
        row["bs_vs_fused_cycles"] = "fused" if row["fused_cycles"] <= row["bs_cycles"] \
            else "bit-serial"
        row["bs_vs_fused_energy"] = "fused" if row["fused_pj"] <= row["bs_pj"] else "bit-serial"
        if rtl:
            from hw.sepconv import UnfusedSepConv

            row["rtl_cycles"], row["rtl_exact"] = 0.0, True
            for image in range(n):
                for t in range(plan.T):
                    unit = UnfusedSepConv(dw_layer.weight, dw_layer.bias, pw_layer.weight,
                                          pw_layer.bias, planes=sm_bits, height=side,
                                          width=side, lanes=lanes)
                    u = np.asarray(u_spikes[t, image]).reshape(cmid, side, side)
                    got, cycles, error, _ = simulate_unfused(unit, u)
                    row["rtl_cycles"] += cycles / n
                    row["rtl_exact"] &= bool(np.array_equal(got, pw_sums[t, image])) and not error
        rows.append(row)
    keys = ("spikes", "fused_sops", "dw_sops", "fused_cycles", "fused_ideal", "pw_macs",
            "unfused_cycles", "fused_pj", "unfused_pj", "plane_bits_set", "sm_bits_set",
            "bs_dw_sops", "dw_engine_cycles", "bs_sops", "bs_cycles", "bs_pj")
    total = {key: sum(row[key] for row in rows) for key in keys}
    total["bitserial_exact"] = all(row["bitserial_exact"] for row in rows)
    if rtl:
        total["rtl_cycles"] = sum(row["rtl_cycles"] for row in rows)
        total["rtl_exact"] = all(row["rtl_exact"] for row in rows)
    total["layer"] = "total"
    all_cycles = float(sum(sum(p.values()) for p in predicted) / n)
    return {"checkpoint": str(checkpoint or "demo"), "T": plan.T, "lanes": lanes,
            "images": n, "inputs": inputs.description, "layers": rows, "total": total,
            "network_cycles": all_cycles}


def _print(result: dict) -> None:
    print(f"SepConv fused vs unfused: {result['checkpoint']}, T={result['T']}, "
          f"{result['lanes']} lanes, per image (mean of {result['images']}: {result['inputs']})")
    print("fused: the RTL's dense 7x7 on spikes (cycles: the cycle model, equal to the RTL); "
          "unfused: depthwise on spikes + pointwise on integers at ideal rates (not built)")
    head = (f"{'layer':28s} {'spikes':>8s} {'fused SOPs':>11s} {'fused cyc':>10s} "
            f"{'dw SOPs':>9s} {'pw MACs':>9s} {'unfused cyc':>11s} {'fused nJ':>9s} "
            f"{'unfused nJ':>10s}  cheaper (cycles / energy)")
    print(head)
    for row in result["layers"] + [result["total"]]:
        cheaper = (f"{row['cheaper_cycles']} / {row['cheaper_energy']}"
                   if "cheaper_cycles" in row else "")
        print(f"{row['layer']:28s} {row['spikes']:8.0f} {row['fused_sops']:11.0f} "
              f"{row['fused_cycles']:10.0f} {row['dw_sops']:9.0f} {row['pw_macs']:9.0f} "
              f"{row['unfused_cycles']:11.0f} {row['fused_pj'] / 1e3:9.2f} "
              f"{row['unfused_pj'] / 1e3:10.2f}  {cheaper}")
    print("unfused bit-serial (spike-driven, no multiply): the depthwise engine (hw.depthwise,"
          " exact cycles, read-out included), then pointwise passes on the depthwise sums' bit "
          "planes at ideal rates (not built); bits set in two's complement (tc) and "
          "sign-magnitude (sm), costs for sm")
    print(f"{'layer':28s} {'planes':>6s} {'tc set':>9s} {'sm set':>9s} {'dw SOPs':>9s} "
          f"{'dw cyc':>7s} {'SOPs':>9s} "
          f"{'cycles':>8s} {'nJ':>7s} {'exact':>5s}  against fused (cycles / energy)")
    for row in result["layers"] + [result["total"]]:
        cheaper = (f"{row['bs_vs_fused_cycles']} / {row['bs_vs_fused_energy']}"
                   if "bs_vs_fused_cycles" in row else "")
        planes = f"{row['planes']}/{row['sm_planes']}" if "planes" in row else ""
        print(f"{row['layer']:28s} {planes:>6} {row['plane_bits_set']:9.0f} "
              f"{row['sm_bits_set']:9.0f} {row['bs_dw_sops']:9.0f} "
              f"{row['dw_engine_cycles']:7.0f} {row['bs_sops']:9.0f} "
              f"{row['bs_cycles']:8.0f} "
              f"{row['bs_pj'] / 1e3:7.2f} {'yes' if row['bitserial_exact'] else 'NO':>5s}  "
              f"{cheaper}")
    if "rtl_cycles" in result["total"]:
        print("unfused bit-serial in hardware (hw.sepconv.UnfusedSepConv: depthwise engine -> "
              "plane writer -> 1x1 conv over the planes; Amaranth's simulator)")
        print(f"{'layer':28s} {'cycles':>8s} {'fused cyc':>10s} {'exact':>5s}")
        for row in result["layers"] + [result["total"]]:
            print(f"{row['layer']:28s} {row['rtl_cycles']:8.0f} {row['fused_cycles']:10.0f} "
                  f"{'yes' if row['rtl_exact'] else 'NO':>5s}")
    total = result["total"]
    print(f"the fused SepConvs take {total['fused_cycles']:,.0f} of the network's "
          f"{result['network_cycles']:,.0f} cycles; unfused they would need "
          f"{total['pw_macs']:,.0f} multiplies an image")


def main(argv=None) -> int:
    p = Parser(prog="python -m sim.sepconv", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="default: the demo checkpoint")
    p.add_argument("--images", type=int, default=2, help="images to average over (default 2)")
    p.add_argument("--T", type=int, default=1, help="time steps (default 1)")
    p.add_argument("--lanes", type=int, default=16, help="lanes (default 16)")
    p.add_argument("--rtl", action="store_true",
                   help="also run the unfused SepConv in hardware (Amaranth's simulator; "
                        "about a minute a layer and image)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    problem = None
    if args.images < 1:
        problem = f"--images {args.images} is out of range: at least 1"
    elif not 1 <= args.T <= 16:
        problem = f"--T {args.T} is out of range: 1..16"
    elif not 1 <= args.lanes <= 256:
        problem = f"--lanes {args.lanes} is out of range: 1..256"
    elif args.checkpoint and not Path(args.checkpoint).exists():
        problem = f"checkpoint {args.checkpoint} does not exist"
    if problem is None:
        try:
            result = compare(args.checkpoint, args.images, args.T, args.lanes, args.rtl)
        except (ValueError, NotImplementedError, OSError) as error:
            problem = " ".join(str(error).split())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
