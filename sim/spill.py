"""Activations over AXI4: a first-order model of a band-streamed dataflow (not built).

``python -m sim.spill [--variant 15M | --checkpoint PATH] [--img-size 224] [--T 1] [--lanes 16]
[--bus 64] [--latency 30] [--bank-kbit 1024] [--json OUT]``

The shared network keeps every spike map, residual stream and membrane on chip. At 224x224 the
paper's models need tens of Mbit for them (``sim.project``'s on-chip column), far beyond an
FPGA's block RAM. This module estimates what a design that streams them over the AXI4 bus
would cost, before it is built: its bytes per image and its cycles against the on-chip design.

The dataflow modelled, per step of the program (``hw.plan``), time step by time step:

* **Engine layers** run in bands of output rows. A band of ``R`` rows is as many as the
  accumulator bank holds, ``R = bank words // (2**out_width_log * 2**groups_log)`` (the
  engine's bank addressing); a budget that does not hold one row is refused. Each band
  reads its input rows from external memory, every channel, in the engine's ``(c, y)``
  order: rows ``[o0 * s - p, o1 * s - p + k - 1]`` clipped to the map, so neighbouring bands
  read their halo rows again. A row is ``ceil(W / 8)`` bytes. The band's outputs go where
  the step's sink says: spikes to a map (``C * R * Wo`` bits), or a residual stream read and
  written back (an add) or written (a begin) at the stream's bits a value.
* **Stream LIFs** read their stream and write their spikes; the vanilla shortcut's LIF also
  reads the block's incoming spikes; the head's pool reads its stream once.
* **SDSA** reads its Q, K and V maps and writes its output map.
* **The stem** reads the image's pixel codes once (a byte each) and writes its stream.
* **Membranes** (T > 1, the time-step schedule): every LIF site's are read back at every time
  step but the first and written at every one but the last, ``lif_bits`` each.
* **Weights** stream in as ``hw.weightfetch.WeightRing`` reads them (the engine's padded
  words), once per visit of their layer.

A step takes ``max(its on-chip cycles, its bus beats) + latency`` cycles: the on-chip cycles are
:class:`sim.perf.CycleModel`'s (exact against Verilator on chip), the beats are the step's
bytes over the bus width, and the read and write traffic share the bus's time (an AXI4 bus has
separate read and write channels, so this counts them as if they did not: conservative). The
model assumes the transfers overlap the step's accumulation perfectly, apart from one
``latency`` per step: optimistic. Halo rows are the only data read twice. What stays on chip
is the bank (``--bank-kbit``), the weight ring and the row and burst buffers of such a design,
which this model does not size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from golden.cliargs import Parser
from hw.params import ceil_div

__all__ = ["band_rows", "input_rows_read", "spill", "main"]


def band_rows(bank_words: int, out_height: int, out_width_log: int, groups_log: int) -> int:
    """Output rows a band holds: as many as the bank's words take (its addressing pads each
    row to ``2**out_width_log * 2**groups_log`` words), at most the map's; 0 when not even one
    row fits (the model has no column bands)."""
    per_row = 1 << (out_width_log + groups_log)
    return min(out_height, bank_words // per_row)


def input_rows_read(height: int, out_height: int, kernel: int, stride: int, padding: int,
                    rows: int) -> int:
    """Input rows a layer reads over all its bands of ``rows`` output rows: each band the rows
    its taps reach, ``[o0 * stride - padding, o1 * stride - padding + kernel - 1]`` clipped to
    ``[0, height - 1]`` (the halo rows read again by the next band)."""
    total = 0
    for first in range(0, out_height, rows):
        last = min(out_height, first + rows) - 1
        low = max(0, first * stride - padding)
        high = min(height - 1, last * stride - padding + kernel - 1)
        total += max(0, high - low + 1)
    return total


def _out_height(plan, index: int) -> int:
    return plan.memory.layers[plan.steps[index].layer].config.out_height


def _bits_to_bytes(bits: int) -> int:
    return ceil_div(int(bits), 8)


def spill(plan, trace, *, bus: int = 64, latency: int = 30, bank_kbit: float = 1024.0,
          image: int = 0) -> dict:
    """Model one image of ``trace`` on ``plan`` with its activations and weights over AXI4
    (module docstring). Returns ``{"steps": [...], "total": {...}, "bank_words": ...}``; a step
    row has ``t``, ``step``, ``name``, ``kind``, ``cycles`` (on chip), ``read_bytes``,
    ``write_bytes``, ``weight_bytes``, ``beats``, ``spill_cycles`` and, for engine layers,
    ``band_rows`` and ``halo`` (input rows read over the map's rows)."""
    from hw.program import SinkKind, StepKind
    from hw.weightfetch import WeightRing
    from sim.perf import CycleModel

    mem = plan.memory
    lanes, acc_width = plan.lanes, plan.acc_width
    bank_words = int(bank_kbit * 1024) // (lanes * acc_width)
    if bank_words < 1:
        raise ValueError(f"--bank-kbit {bank_kbit:g} holds no bank word of {lanes} x "
                         f"{acc_width} bits")
    ring = WeightRing(plan, data_width=bus)
    weight_bytes = {layer.name: ring.layer_size(layer) for layer in ring.layers}
    net, T = plan.net, plan.T
    lif_bits = mem.lif_bits

    def stream_bytes(name: str, channels: int, side: int) -> int:
        place = mem.streams.get(name)
        bits = place.bits if place is not None else mem.stream_bits
        return _bits_to_bytes(channels * side * side * bits)

    def map_bytes(lif: str) -> int:
        info = mem.maps[lif]
        return _bits_to_bytes(info.logical_channels * info.side * info.side)

    def membranes(lif: str | None, t: int) -> tuple[int, int]:
        if T == 1 or lif is None or lif not in mem.sites:
            return 0, 0
        size = _bits_to_bytes(map_bytes(lif) * 8 * lif_bits)
        return (size if t > 0 else 0), (size if t < T - 1 else 0)

    rows = []
    for row in CycleModel(plan).predict(trace, image)["steps"]:
        step, t = plan.steps[row["step"]], row["t"]
        read = write = weights = 0
        extra = {}
        lif = None
        if step.kind is StepKind.LAYER:
            config = mem.layers[step.layer].config
            band = band_rows(bank_words, config.out_height, config.out_width_log,
                             config.groups_log)
            if band == 0:
                need = (1 << (config.out_width_log + config.groups_log)) * lanes * acc_width
                raise ValueError(f"layer {step.layer}: one output row takes {need:,} bits of "
                                 f"bank, more than --bank-kbit {bank_kbit:g} "
                                 f"({bank_words * lanes * acc_width:,} bits)")
            rows_in = input_rows_read(config.height, config.out_height, config.kernel,
                                      config.stride, config.padding, band)
            read += config.in_channels * rows_in * ceil_div(config.width, 8)
            out_values = config.out_channels * config.out_height * config.out_width
            sink = step.sink
            if sink.kind is SinkKind.LIF:
                write += _bits_to_bytes(out_values)
                lif = sink.target
            elif sink.kind in (SinkKind.ADD, SinkKind.BEGIN):
                size = stream_bytes(sink.target, config.out_channels, config.out_height)
                write += size
                if sink.kind is SinkKind.ADD:
                    read += size
            weights = weight_bytes[step.layer]
            extra = {"band_rows": band, "halo": rows_in / config.height}
        elif step.kind is StepKind.STEM:
            stem, size = plan.stem_layer, net.cfg.img_size
            cout, cin, kernel, _ = np.asarray(stem.weight).shape
            side = (size + 2 * int(stem.padding) - kernel) // int(stem.stride) + 1
            read += cin * size * size
            write += stream_bytes(step.sink.target or "", cout, side)
        elif step.kind in (StepKind.STREAM_LIF, StepKind.RESIDUAL_LIF, StepKind.POOL_LIF):
            lif = step.sink.target
            info = mem.maps.get(lif)
            if step.kind is StepKind.POOL_LIF:
                if step.source is not None:     # the last stream, summed over positions
                    channels = int(net.lifs[lif].threshold.shape[0])
                    read += stream_bytes(step.source, channels,
                                         plan.sizes[step.source.split(".")[0]])
                elif step.residual is not None:   # vanilla: the last block's spike map
                    read += map_bytes(step.residual)
            else:
                read += stream_bytes(step.source, info.logical_channels, info.side)
                write += map_bytes(lif)
                if step.kind is StepKind.RESIDUAL_LIF and step.residual:
                    read += map_bytes(step.residual)
        elif step.kind is StepKind.SDSA:
            attention = step.attention
            for name in (attention.q, attention.k, attention.v):
                if name is not None:
                    read += map_bytes(name)
            if step.sink.spike_map in mem.maps:
                write += map_bytes(step.sink.spike_map)
        m_read, m_write = membranes(lif, t)
        read, write = read + m_read, write + m_write
        beats = ceil_div(read + write + weights, bus // 8)
        rows.append({"t": t, "step": row["step"], "name": step.name, "kind": step.kind.label,
                     "cycles": row["cycles"], "read_bytes": read, "write_bytes": write,
                     "weight_bytes": weights, "beats": beats,
                     "spill_cycles": max(row["cycles"], beats) + latency, **extra})
    on_chip = sum(r["cycles"] for r in rows)
    spilled = sum(r["spill_cycles"] for r in rows)
    layers = [r for r in rows if "band_rows" in r]
    total = {
        "cycles": on_chip, "spill_cycles": spilled, "ratio": spilled / on_chip,
        "read_bytes": sum(r["read_bytes"] for r in rows),
        "write_bytes": sum(r["write_bytes"] for r in rows),
        "weight_bytes": sum(r["weight_bytes"] for r in rows),
        "bus_bound_steps": sum(r["beats"] > r["cycles"] for r in rows),
        "steps": len(rows),
        "banded_layers": len({r["step"] for r in layers if r["halo"] > 0
                              and r["band_rows"] < _out_height(plan, r["step"])}),
        "layers": len({r["step"] for r in layers}),
        "halo_max": max((r["halo"] for r in layers), default=None),
    }
    return {"bus": bus, "latency": latency, "bank_kbit": bank_kbit, "bank_words": bank_words,
            "bank_bits": bank_words * lanes * acc_width, "ring_bits": ring.memory_bits(),
            "lanes": lanes, "T": T, "steps": rows, "total": total}


def _print(result: dict, label: str) -> None:
    total = result["total"]
    print(f"activations and weights over AXI4 (model, not built): {label}, {result['lanes']} "
          f"lanes, T={result['T']}, {result['bus']}-bit bus, latency {result['latency']}, bank "
          f"{result['bank_bits'] / 1024:,.0f} Kbit ({result['bank_words']:,} words), weight "
          f"ring {result['ring_bits'] / 1024:,.0f} Kbit")
    kinds = {}
    for row in result["steps"]:
        entry = kinds.setdefault(row["kind"], [0, 0, 0, 0, 0])
        for index, key in enumerate(("cycles", "spill_cycles", "read_bytes", "write_bytes",
                                     "weight_bytes")):
            entry[index] += row[key]
    print(f"{'steps':16s} {'on-chip cyc':>14s} {'spilled cyc':>14s} {'read B':>13s} "
          f"{'written B':>13s} {'weights B':>13s}")
    for kind, (cycles, spilled, read, write, weights) in kinds.items():
        print(f"{kind:16s} {cycles:>14,} {spilled:>14,} {read:>13,} {write:>13,} {weights:>13,}")
    print(f"{'total':16s} {total['cycles']:>14,} {total['spill_cycles']:>14,} "
          f"{total['read_bytes']:>13,} {total['write_bytes']:>13,} {total['weight_bytes']:>13,}")
    print(f"ratio {total['ratio']:.4f}x the on-chip cycles; {total['bus_bound_steps']} of "
          f"{total['steps']} step visits bus-bound; {total['banded_layers']} of "
          f"{total['layers']} engine layers in bands of output rows, input rows read up to "
          f"{total['halo_max']:.2f}x (halos)")


def main(argv=None) -> int:
    p = Parser(prog="python -m sim.spill", description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--variant", default="15M", help="golden.config variant with "
                        "calibrated random weights (sim.project's; default 15M)")
    source.add_argument("--checkpoint", default=None, help="a checkpoint: its own firing")
    p.add_argument("--img-size", type=int, default=None, help="input side (default the model's)")
    p.add_argument("--T", type=int, default=1, help="time steps (default 1)")
    p.add_argument("--lanes", type=int, default=16, help="lanes (default 16)")
    p.add_argument("--bus", type=int, default=64, help="AXI4 data bits (default 64)")
    p.add_argument("--latency", type=int, default=30, help="read latency, cycles (default 30)")
    p.add_argument("--bank-kbit", type=float, default=1024.0,
                   help="the accumulator bank's on-chip budget, Kbit (default 1024)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    problem = None
    if args.bus not in (32, 64, 128, 256, 512, 1024):
        problem = f"--bus {args.bus} is not a bus width: 32, 64, 128, 256, 512 or 1024 bits"
    elif not 1 <= args.latency <= 4096:
        problem = f"--latency {args.latency} is out of range: 1..4096 cycles"
    elif not 1 <= args.T <= 16:
        problem = f"--T {args.T} is out of range: 1..16"
    elif not 1 <= args.lanes <= 1024:
        problem = f"--lanes {args.lanes} is out of range: 1..1024"
    elif not args.bank_kbit > 0:
        problem = f"--bank-kbit {args.bank_kbit:g} must be > 0"
    elif args.img_size is not None and args.img_size < 8:
        problem = f"--img-size {args.img_size} is out of range: at least 8"
    elif args.checkpoint and not Path(args.checkpoint).is_file():
        problem = f"checkpoint {args.checkpoint} does not exist"
    result = None
    if problem is None:
        try:
            import torch

            from sim.project import make_case, sizing_plan

            torch.set_num_threads(1)
            from golden.config import variant

            if not args.checkpoint and variant(args.variant).events:
                raise ValueError(f"--variant {args.variant}: event models are not modelled "
                                 "(no pixel stem)")
            source = ({"checkpoint": args.checkpoint} if args.checkpoint
                      else {"variant_name": args.variant})
            case = make_case(img_size=args.img_size, T=args.T, **source)
            if case.cfg.events:
                raise ValueError(f"{args.checkpoint}: event models are not modelled (no "
                                 "pixel stem)")
            plan = sizing_plan(case.net, args.lanes)
            result = spill(plan, case.trace, bus=args.bus, latency=args.latency,
                           bank_kbit=args.bank_kbit)
            label = case.label
        except (ValueError, KeyError, NotImplementedError, OSError) as error:
            problem = " ".join(str(error).split())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _print(result, label)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
