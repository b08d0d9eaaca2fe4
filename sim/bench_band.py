"""Benchmark the band layer (``hw.bandlayer``) on Verilator: cycles over AXI4 against on chip.

Run ``python -m sim.bench_band`` (``--layers NAME ...``, ``--latency 30``, ``--json PATH``);
``--core`` runs the chains as the band core (``hw.bandcore``), driven through its registers;
``--model`` gives the chains' cycle model instead, no simulation, at every ``--latency L ...``,
weight RAM depth ``--weight-words N ...`` and budget of the band memories ``--band-bits B
...`` (seconds, not minutes). For
each layer it builds a :class:`hw.bandlayer.BandLayer`, runs every band at every time step on
Verilator with its maps in cocotbext-axi's RAM (64-bit bus, a fixed read latency, no pauses;
``sim/tb/bandlayer.py`` checks every output map ``==`` the integer model's) and prints:

* ``cycles``: from the first ``start`` to the last band's last write response;
* ``on chip``: what the shared network's engine step takes for the whole layer with its maps on
  chip, by the cycle model (``sim.perf.engine_frame_cycles`` with a LIF sink; exact against
  Verilator on the network), summed over the time steps;
* their ratio; the bytes read and written against the floor (each input map read once, each
  output map written once: the halo rows are the excess), and the on-chip memory of the band
  design against what a whole-map design needs (its bank, membranes and both spike maps).

It also prints, for each chain of :data:`CHAINS` (``hw.bandchain.BandChain``: one start runs
every layer), the cycles with its weights on chip and with them loaded over AXI4, against the
on-chip engine steps of every layer; its map bytes read against the floor, its weight bytes
read (once a run) against its weights at 8 bits, its weight memory both ways, and the cycles
the chain's model gives for this memory (``sim.perf.band_chain_cycles``); and, for the
residual stream unit (``hw.bandstream.BandStream``, :data:`STREAMS`), the cycles of a pass that
begins the stream and of one that adds into it, against the on-chip engine step with a
``begin`` or ``add`` sink.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from golden.cliargs import Parser

__all__ = ["CHAINS", "LAYERS", "STREAMS", "bench_chain", "bench_core", "bench_layer",
           "bench_stream", "main", "run_core"]

#: name -> ``(spec (cin, cout, k, s, p, h, w), lanes, band_rows, stream_bits)``: the residual
#: stream unit (``hw.bandstream.BandStream``), one pass that begins the stream, one that adds
STREAMS = {
    "stream_conv3x3_32x32_32x32_L16_rows4_16b": ((32, 32, 3, 1, 1, 32, 32), 16, 4, 16),
}

#: name -> a chain (``sim.cases_bandlayer.CHAIN_CASES``' form: ``lanes, (h, w, cin), layers
#: (cout, k, s, p), band_rows, T, max_steps`` and optionally the weight RAM's words), run with
#: its weights on chip and over AXI4 (the weight RAM's words bound the latter)
CHAINS = {
    "chain_3x3-3x3s2-1x1_16x32x32_L16_T2": (
        16, (32, 32, 16), ((32, 3, 1, 1), (64, 3, 2, 1), (64, 1, 1, 0)), (4, 2, 4), 2, 2),
    # the same chain with a weight RAM of 512 words (a quarter of the stride-2 layer's 2,048):
    # that layer runs in four passes of 16 output channels, each reading its input again
    "chain_3x3-3x3s2-1x1_16x32x32_L16_T2_w512": (
        16, (32, 32, 16), ((32, 3, 1, 1), (64, 3, 2, 1), (64, 1, 1, 0)), (4, 2, 4), 2, 2, 512),
}

#: name -> ``(spec (cin, cout, k, s, p, h, w), lanes, band_rows, T)``
LAYERS = {
    "conv3x3_32x32_32x32_L16_rows4_T2": ((32, 32, 3, 1, 1, 32, 32), 16, 4, 2),
    "conv3x3_s2_32x64_32x32_L16_rows2_T1": ((32, 64, 3, 2, 1, 32, 32), 16, 2, 1),
    "conv1x1_64x64_16x16_L16_rows4_T1": ((64, 64, 1, 1, 0, 16, 16), 16, 4, 1),
}


def bench_layer(name: str, *, latency: int = 30) -> dict:
    """Run one layer of :data:`LAYERS`; return its numbers."""
    from amaranth.back import verilog

    from hw.bandlayer import BandLayer
    from hw.program import SinkKind
    from hw.rowreader import map_image
    from sim import toolchain
    from sim.cases_bandlayer import band_case
    from sim.perf import engine_frame_cycles

    spec = LAYERS[name]
    case = band_case(json.dumps(spec))
    layer = case.layer
    dut = BandLayer(case.layer, case.weight, case.bias, case.thresholds,
                    band_rows=case.band_rows)
    design = toolchain.build(verilog.convert(dut, name="band_layer", emit_src=False),
                             "band_layer", simulator="verilator")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        toolchain.run(design, "sim.tb.bandlayer", name=f"bench-{name}", extra_env={
            "BAND_CASE": json.dumps(spec), "BAND_LATENCY": str(latency), "BAND_PAUSE": "0",
            "BAND_SEED": "1", "BAND_RESULT": str(result)})
        measured = json.loads(result.read_text())
    on_chip = sum(engine_frame_cycles(layer, spikes, SinkKind.LIF) for spikes in case.inputs)
    row_bytes_in = -(-layer.width // 64) * 8
    read = case.steps * sum((last_in - first_in + 1) * layer.in_channels * row_bytes_in
                            for _, _, _, first_in, last_in in dut._bands)
    written = case.steps * len(map_image(case.want[0]))
    floor_read = case.steps * len(map_image(case.inputs[0]))
    band_bits = sum(dut.memory_bits[k] for k in ("accumulator bank", "membranes",
                                                 "row assembler"))
    whole_bits = (layer.bank_words_needed * layer.lanes * dut.accumulator_width
                  + layer.beats * layer.lanes * dut.lif.membrane_width
                  + layer.in_channels * layer.height * layer.width
                  + layer.out_channels * layer.out_height * layer.out_width)
    return {"layer": name, "bands": len(dut.bands), "T": case.steps,
            "cycles": measured["cycles"], "on_chip": on_chip,
            "ratio": measured["cycles"] / on_chip, "read": read, "read_floor": floor_read,
            "written": written, "band_kbit": band_bits / 1000, "whole_kbit": whole_bits / 1000,
            "memory_bits": dut.memory_bits}


def bench_chain(name: str, *, latency: int = 30) -> dict:
    """Run one chain of :data:`CHAINS` with its weights on chip and over AXI4; return its
    numbers."""
    from amaranth.back import verilog

    from hw.bandchain import BandChain
    from hw.program import SinkKind
    from hw.rowreader import map_image
    from sim import toolchain
    from sim.cases_bandlayer import chain_case
    from sim.perf import (AXI_MEMORY_OFFSET, AXI_WRITE_OFFSET, band_chain_cycles,
                          engine_frame_cycles)

    spec = json.dumps(CHAINS[name])
    case = chain_case(spec)
    row = {"layer": name, "T": case.steps, "layers": len(case.layers)}
    for weights in ("rom", "axi"):
        dut = BandChain(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                        weights=weights,
                        weight_words=case.weight_words if weights == "axi" else None)
        design = toolchain.build(verilog.convert(dut, name="band_chain", emit_src=False),
                                 "band_chain", simulator="verilator")
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            toolchain.run(design, "sim.tb.bandchain", name=f"bench-{name}-{weights}",
                          extra_env={"BAND_CASE": spec, "BAND_WEIGHTS": weights,
                                     "BAND_LATENCY": str(latency), "BAND_PAUSE": "0",
                                     "BAND_SEED": "1", "BAND_RESULT": str(result)})
            row[weights] = json.loads(result.read_text())["cycles"]
        row[f"memory_bits_{weights}"] = dut.memory_bits
        # the cycle model, for this memory: reads after the latency + AXI_MEMORY_OFFSET,
        # write responses AXI_WRITE_OFFSET after the last W beat
        row[f"model_{weights}"] = band_chain_cycles(
            dut, case.inputs, steps=case.steps, read_delay=latency + AXI_MEMORY_OFFSET,
            write_delay=AXI_WRITE_OFFSET)["cycles"]
        if weights == "axi":
            row["weight_bytes"] = len(dut.weight_image)
            row["passes"] = len(dut.passes)
    inputs = [case.inputs] + case.want[:-1]
    row["on_chip"] = sum(engine_frame_cycles(spec_.layer, spikes, SinkKind.LIF)
                         for spec_, maps in zip(case.layers, inputs) for spikes in maps)
    dp = dut.datapath
    read = written = floor_read = 0
    for index, spec_ in enumerate(case.layers):
        layer = spec_.layer
        row_bytes = -(-layer.width // 64) * 8
        read += case.steps * sum((last_in - first_in + 1) * layer.in_channels * row_bytes
                                 for (_, _, _, first_in, last_in), at
                                 in zip(dp._bands, dp.band_layers)
                                 if dut.passes[at].layer == index)
        floor_read += case.steps * len(map_image(inputs[index][0]))
        written += case.steps * len(map_image(case.want[index][0]))
    row.update(read=read, read_floor=floor_read, written=written,
               weight_floor=sum(s.weight.size for s in case.layers))
    return row


def run_core(spec: str, weights: str = "axi", simulator: str | None = None, *,
             latency: str = "1-64", pause: float = 0.2, seed: int = 13,
             weight_words: int | None = None, dut=None) -> dict:
    """Build the band core (:class:`hw.bandcore.BandCore`) of a chain case (a name of
    ``sim.cases_bandlayer.CHAIN_CASES`` or its JSON tuple) and run ``sim/tb/bandcore.py`` on
    it: a driver's whole run over cocotbext-axi's AxiLiteMaster, every map and weight in
    cocotbext-axi's RAM (read ``latency``, ``pause`` on all ten channels). Returns what the
    driver read: ``{"cycles", "read_bytes", "write_bytes"}`` (CYCLES, READ_BYTES,
    WRITE_BYTES). ``dut``: the core, if already built (the case's band rows)."""
    from hw import verilog
    from hw.bandcore import BandCore
    from sim import toolchain
    from sim.cases_bandlayer import chain_case

    case = chain_case(spec)
    if weights == "axi" and weight_words is None:
        weight_words = case.weight_words
    if dut is None:
        dut = BandCore(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                       weights=weights, weight_words=weight_words)
    design = toolchain.build(verilog.convert(dut, name="band_core", emit_src=False),
                             "band_core", simulator=simulator)
    with tempfile.TemporaryDirectory() as tmp:
        regmap, result = Path(tmp) / "band_core_regs.json", Path(tmp) / "result.json"
        regmap.write_text(json.dumps(dut.regmap.as_dict(), sort_keys=True))
        toolchain.run(design, "sim.tb.bandcore",
                      name=f"core-{weights}-{latency}-{pause}-{seed}",
                      extra_env={"BAND_CASE": spec, "BAND_REGMAP": str(regmap),
                                 "BAND_LATENCY": str(latency), "BAND_PAUSE": str(pause),
                                 "BAND_SEED": str(seed), "BAND_RESULT": str(result)})
        return json.loads(result.read_text())


def bench_core(name: str, *, latency: int = 30) -> dict:
    """Run one chain of :data:`CHAINS` as the band core (weights over AXI4), driven through its
    registers, on a memory of a fixed read latency that never pauses; return CYCLES and the
    byte counters, the chain's cycle model + 1 (what CYCLES should read), and the floors: the
    weight image once, each map read once and written once."""
    from hw.bandcore import BandCore
    from hw.rowreader import map_image
    from sim.cases_bandlayer import chain_case
    from sim.perf import AXI_MEMORY_OFFSET, AXI_WRITE_OFFSET, band_chain_cycles

    spec = json.dumps(CHAINS[name])
    case = chain_case(spec)
    dut = BandCore(case.layers, band_rows=case.band_rows, max_steps=case.max_steps,
                   weights="axi", weight_words=case.weight_words)
    measured = run_core(spec, "axi", "verilator", latency=str(latency), pause=0, seed=1,
                        dut=dut)
    model = band_chain_cycles(dut.chain, case.inputs, steps=case.steps,
                              read_delay=latency + AXI_MEMORY_OFFSET,
                              write_delay=AXI_WRITE_OFFSET)["cycles"] + 1
    inputs = [case.inputs] + case.want[:-1]
    map_floor = sum(case.steps * len(map_image(maps[0])) for maps in inputs)
    return {"chain": name, **measured, "model": model, "weight_bytes": len(dut.weight_image),
            "layers": dut.chain.traffic(case.steps), "map_read_floor": map_floor,
            "write_floor": sum(case.steps * len(map_image(w[0])) for w in case.want),
            "memory_bits": dut.memory_bits}


def model_chain(name: str, latencies, weight_words=(), band_bits=()) -> list[dict]:
    """The cycle model of one chain of :data:`CHAINS` (no simulation) at each read latency, with
    its weights on chip, over AXI4 with its own weight RAM, and over AXI4 with each RAM depth of
    ``weight_words``; each with the chain's band rows and with the rows each budget of
    ``band_bits`` gives (``BandChain(band_bits=...)``): ``[{"chain", "latency", "weights",
    "passes", "band_rows", "band_kbit", "cycles", "on_chip"}, ...]`` for the benchmark's memory
    (``sim.perf.AXI_MEMORY_OFFSET``, ``AXI_WRITE_OFFSET``)."""
    from hw.bandchain import BandChain
    from hw.program import SinkKind
    from sim.cases_bandlayer import chain_case
    from sim.perf import (AXI_MEMORY_OFFSET, AXI_WRITE_OFFSET, band_chain_cycles,
                          engine_frame_cycles)

    case = chain_case(json.dumps(CHAINS[name]))
    inputs = [case.inputs] + case.want[:-1]
    on_chip = sum(engine_frame_cycles(spec_.layer, spikes, SinkKind.LIF)
                  for spec_, maps in zip(case.layers, inputs) for spikes in maps)
    points = [("rom", None), ("axi", case.weight_words)] + [("axi", w) for w in weight_words]
    rows = []
    bands = [{"band_rows": case.band_rows}] + [{"band_bits": bits} for bits in band_bits]
    for (weights, words), band in ((p, b) for p in points for b in bands):
        dut = BandChain(case.layers, max_steps=case.max_steps, weights=weights,
                        weight_words=words, **band)
        band_kbit = (dut.memory_bits["accumulator bank"] + dut.memory_bits["membranes"]) / 1000
        for latency in latencies:
            cycles = band_chain_cycles(dut, case.inputs, steps=case.steps,
                                       read_delay=latency + AXI_MEMORY_OFFSET,
                                       write_delay=AXI_WRITE_OFFSET)["cycles"]
            rows.append({"chain": name, "latency": latency, "passes": len(dut.passes),
                         "band_rows": list(dut.band_rows), "band_kbit": band_kbit,
                         "weights": weights if weights == "rom" else
                         f"axi, {dut.memory_bits['weights'] // 1000} Kbit RAM",
                         "cycles": cycles, "on_chip": on_chip})
    return rows


def bench_stream(name: str, *, latency: int = 30) -> dict:
    """Run one stream layer of :data:`STREAMS` (begin, then add); return its numbers."""
    from amaranth.back import verilog

    from hw.bandstream import BandStream
    from hw.program import SinkKind
    from sim import toolchain
    from sim.cases_bandlayer import stream_case
    from sim.perf import engine_frame_cycles

    spec = json.dumps(STREAMS[name])
    case = stream_case(spec)
    dut = BandStream(case.layer, case.weight, case.bias, case.shifts, stream_bits=case.bits,
                     band_rows=case.band_rows)
    design = toolchain.build(verilog.convert(dut, name="band_stream", emit_src=False),
                             "band_stream", simulator="verilator")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        toolchain.run(design, "sim.tb.bandstream", name=f"bench-{name}", extra_env={
            "BAND_CASE": spec, "BAND_LATENCY": str(latency), "BAND_PAUSE": "0",
            "BAND_SEED": "1", "BAND_RESULT": str(result)})
        measured = json.loads(result.read_text())
    on_chip = [engine_frame_cycles(case.layer, case.maps[0], SinkKind.BEGIN),
               engine_frame_cycles(case.layer, case.maps[1], SinkKind.ADD)]
    return {"layer": name, "bands": len(dut.bands), "begin": measured["begin_cycles"],
            "add": measured["add_cycles"], "on_chip_begin": on_chip[0],
            "on_chip_add": on_chip[1], "stream_bytes": case.size,
            "memory_bits": dut.memory_bits}


def main(argv=None) -> int:
    parser = Parser(prog="python -m sim.bench_band", description=__doc__.splitlines()[0])
    names = sorted(LAYERS) + sorted(STREAMS) + sorted(CHAINS)
    parser.add_argument("--layers", nargs="+", choices=names, default=names)
    parser.add_argument("--latency", type=int, nargs="+", default=[30],
                        help="read latency, cycles (1-4096); several only with --model")
    parser.add_argument("--model", action="store_true",
                        help="the chains' cycle model only, no simulation: every --latency, "
                             "and every --weight-words RAM depth")
    parser.add_argument("--weight-words", type=int, nargs="+", default=[],
                        help="with --model: weight RAM depths to model besides each chain's")
    parser.add_argument("--band-bits", type=int, nargs="+", default=[],
                        help="with --model: budgets (bits) of the bank and membranes to model "
                             "besides each chain's band rows")
    parser.add_argument("--core", action="store_true",
                        help="the chains as the band core (hw.bandcore, weights over AXI4), "
                             "driven through its AXI4-Lite registers: CYCLES, READ_BYTES, "
                             "WRITE_BYTES against the model and the floors")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    for latency in args.latency:
        if not 1 <= latency <= 4096:
            parser.error(f"--latency {latency} is outside 1-4096")
    if len(args.latency) > 1 and not args.model:
        parser.error(f"{len(args.latency)} latencies given: several need --model")
    if (args.weight_words or args.band_bits) and not args.model:
        parser.error("--weight-words and --band-bits need --model")
    if args.model and args.core:
        parser.error("--model and --core: give one of them")
    if args.model:
        return _model_main(args)
    args.latency = args.latency[0]
    if args.core:
        return _core_main(args)
    rows = []
    layers = [n for n in args.layers if n in LAYERS]
    if layers:
        print(f"{'layer':40} {'bands':>5} {'T':>2} {'cycles':>9} {'on chip':>9} {'ratio':>7} "
              f"{'read/floor':>10} {'written':>8} {'on-chip Kbit band/whole':>24}")
    for name in layers:
        r = bench_layer(name, latency=args.latency)
        rows.append(r)
        print(f"{name:40} {r['bands']:5} {r['T']:2} {r['cycles']:9,} {r['on_chip']:9,} "
              f"{r['ratio']:6.3f}x {r['read'] / r['read_floor']:9.3f}x {r['written']:8,} "
              f"{r['band_kbit']:11.1f} / {r['whole_kbit']:.1f}")
    streams = [n for n in args.layers if n in STREAMS]
    if streams:
        print(f"{'stream layer':40} {'bands':>5} {'begin':>9} {'on chip':>9} {'ratio':>7} "
              f"{'add':>9} {'on chip':>9} {'ratio':>7} {'stream bytes':>12}")
    for name in streams:
        r = bench_stream(name, latency=args.latency)
        rows.append(r)
        print(f"{name:40} {r['bands']:5} {r['begin']:9,} {r['on_chip_begin']:9,} "
              f"{r['begin'] / r['on_chip_begin']:6.3f}x {r['add']:9,} {r['on_chip_add']:9,} "
              f"{r['add'] / r['on_chip_add']:6.3f}x {r['stream_bytes']:12,}")
    chains = [n for n in args.layers if n in CHAINS]
    if chains:
        print(f"{'chain':45} {'T':>2} {'on chip':>9} {'rom':>9} {'ratio':>7} {'axi':>9} "
              f"{'ratio':>7} {'passes':>6} {'map read/floor':>14} {'weights read/floor':>18} "
              f"{'weight Kbit rom/axi':>20} {'model rom/axi':>19}")
    for name in chains:
        r = bench_chain(name, latency=args.latency)
        rows.append(r)
        rom_kbit = r["memory_bits_rom"]["weights"] / 1000
        axi_kbit = r["memory_bits_axi"]["weights"] / 1000
        print(f"{name:45} {r['T']:2} {r['on_chip']:9,} {r['rom']:9,} "
              f"{r['rom'] / r['on_chip']:6.3f}x {r['axi']:9,} {r['axi'] / r['on_chip']:6.3f}x "
              f"{r['passes']:6} {r['read'] / r['read_floor']:13.3f}x "
              f"{r['weight_bytes'] / r['weight_floor']:17.3f}x "
              f"{rom_kbit:9.1f} / {axi_kbit:.1f} {r['model_rom']:9,}/{r['model_axi']:,}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


def _core_main(args) -> int:
    chains = [n for n in args.layers if n in CHAINS]
    if not chains:
        print("error: --core runs the chains; name one of " + ", ".join(sorted(CHAINS)),
              file=sys.stderr)
        return 2
    rows = []
    print(f"{'chain (band core, weights over AXI4)':45} {'CYCLES':>9} {'model+1':>9} "
          f"{'READ_BYTES':>10} {'floor':>8} {'ratio':>7} {'WRITE_BYTES':>11} {'floor':>8} "
          f"{'on-chip Kbit':>12}")
    for name in chains:
        r = bench_core(name, latency=args.latency)
        rows.append(r)
        floor = r["weight_bytes"] + r["map_read_floor"]
        print(f"{name:45} {r['cycles']:9,} {r['model']:9,} {r['read_bytes']:10,} {floor:8,} "
              f"{r['read_bytes'] / floor:6.3f}x {r['write_bytes']:11,} {r['write_floor']:8,} "
              f"{sum(r['memory_bits'].values()) / 1000:12.1f}")
        layers = r["layers"]
        modelled = (sum(x["weights"] + x["read"] for x in layers),
                    sum(x["written"] for x in layers))
        for index, x in enumerate(layers):
            print(f"  layer {index}: weights {x['weights']:,} B ({x['weights'] / x['weight_floor']:.3f}x "
                  f"their {x['weight_floor']:,} B), maps read {x['read']:,} B "
                  f"({x['read'] / x['read_floor']:.3f}x the input map), written "
                  f"{x['written']:,} B ({x['written'] / x['write_floor']:.3f}x the output map)")
        print(f"  the layers' sum: read {modelled[0]:,}, written {modelled[1]:,} "
              f"({'==' if modelled == (r['read_bytes'], r['write_bytes']) else '!='} "
              "READ_BYTES, WRITE_BYTES)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


def _model_main(args) -> int:
    chains = [n for n in args.layers if n in CHAINS]
    if not chains:
        print("error: --model covers the chains; name one of " + ", ".join(sorted(CHAINS)),
              file=sys.stderr)
        return 2
    rows = []
    try:
        for name in chains:
            rows += model_chain(name, args.latency, args.weight_words, args.band_bits)
    except ValueError as error:    # a budget below one group or one row of a layer
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'chain':45} {'weights':24} {'passes':>6} {'band rows':>12} {'band Kbit':>9} "
          f"{'latency':>7} {'cycles':>9} {'on chip':>9} {'ratio':>7}")
    for r in rows:
        band_rows = ",".join(map(str, r["band_rows"]))
        print(f"{r['chain']:45} {r['weights']:24} {r['passes']:6} {band_rows:>12} "
              f"{r['band_kbit']:9.1f} {r['latency']:7} {r['cycles']:9,} {r['on_chip']:9,} "
              f"{r['cycles'] / r['on_chip']:6.3f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
