"""Whole quantized Meta-SpikeFormer as one autonomous circuit: units, memories and a sequencer.

:class:`Network` is generated from a quantized net (``quant.quantize.IntNet``). Its structure comes
from the same dataflow walk as the integer golden model (``quant.graph.walk``): a recording
backend (:class:`Program`) turns the walk into a list of *steps*, each a hardware controller with a
``start`` pulse and a ``finish`` pulse. The sequencer runs the steps in order for every time step
(the stem only at ``t = 0``: the input is the same at every step), then raises ``done``.
Because each LIF keeps its own membranes, running all layers of ``t = 0`` before ``t = 1``
gives the integer model's results exactly (it runs layer by layer over all T).

Units (one per layer, weights baked into their memories, an arrangement that fits the demo's size):

* stem: :class:`hw.stem.StemConv` (the only multipliers), output kept in ``stem_out`` and copied
  into the first residual stream at every time step (``begin``, shifted left by its shift);
* every other layer: :class:`hw.accumulator.SynapseEngine`, fed from a spike map, its output
  going to a LIF (:class:`hw.lif.LIFArray`) that writes the next spike map, or added into a
  residual stream (``stream += acc << shift``), or starting a stream, or summed into the logits;
* residual streams: one memory per stream, word ``position * G + g`` (the engines' bank order) of
  ``lanes`` values, read by stream LIFs and the head's pooling;
* SDSA: :class:`hw.sdsa.SDSA`, fed token by token and head by head from the Q, K, V spike maps;
* head: sum pool over positions into registers, LIF, linear engine, logits summed over T.

Spike maps (one per LIF, all ``T`` steps kept so a test can read every layer's spikes afterwards):

* ``conv`` layout, for synapse engines: ``banks`` memories of ``W``-bit words; channel ``c`` lives
  in bank ``c % banks`` at word ``(t * Cg + c // banks) * H + y`` (bit ``x``), ``Cg = ceil(C /
  banks)``. A LIF beat writes ``banks = lanes`` channels of one pixel in one cycle (bit enables);
  the SDSA's output writes the ``d`` channels of a head (``banks = d``).
* ``token`` layout, for the SDSA and the head's linear layer: word ``t * N + n`` holds token ``n``'s
  channels (bit ``c``), written ``lanes`` channels at a time.

``docs/network.md`` gives the program of the demo model and the cycle model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accumulator import SynapseEngine
from hw.params import bits_for, ceil_div, times
from hw.lif import LIFArray
from hw.sdsa import SDSA
from hw.program import Program, SinkKind, Step, StepKind, lif_map_shapes, mem_name
from hw.stem import StemConv

__all__ = ["Network", "SpikeMapInfo", "network_signature"]


@dataclass
class SpikeMapInfo:
    """Shape and layout of one LIF's spike map (module docstring)."""

    name: str
    channels: int
    height: int
    width: int
    layout: str = "conv"
    banks: int = 1


def network_signature(net, steps, pixel_words: int, logit_bits: int) -> dict:
    """Return the ports every whole-network component shares (``Network``, ``SharedNetwork``)."""
    classes = net.layers["head"].weight.shape[0]
    return {
        "load_address": In(bits_for(pixel_words)),
        "load_data": In(net.pixel.bits),
        "load_enable": In(1),
        "start": In(1),
        "ready": Out(1),
        "done": Out(1),
        "logits": Out(data.ArrayLayout(signed(logit_bits), classes)),
        "step": Out(range(len(steps) + 1)),
        "time_step": Out(range(max(2, net.cfg.T))),
        "cycles": Out(32),
    }


class Network(wiring.Component):
    """Run a whole quantized network autonomously: load pixels, pulse ``start``, wait ``done``.

    Parameters
    ----------
    net : quant.quantize.IntNet
        The quantized network (demo-sized: every layer gets its own engine).
    lanes : int
        Output channels per cycle of every engine, LIF and stream word.

    Members
    -------
    load_address, load_data, load_enable : In
        Pixel memory write port (word ``(c * H + y) * W + x``, unsigned codes).
    start : In(1)
        Pulse (while ``ready``): run all time steps.
    ready : Out(1)
        The engines have initialised their banks after reset.
    done : Out(1)
        High from the end of a run until the next ``start``.
    logits : Out(ArrayLayout(signed(logit_bits), classes))
        Head outputs summed over T.
    step, time_step : Out
        The program step and time step running (for observers).
    cycles : Out(32)
        Cycles since ``start`` (frozen at ``done``).
    """

    def __init__(self, net, *, lanes: int = 8):
        self._net = net
        self._lanes = int(lanes)
        if self._lanes < 1:
            raise ValueError(f"lanes must be >= 1, not {lanes}")
        cfg = net.cfg
        self._T = cfg.T
        self._program = Program(net)
        self._build_plan()
        self._logit_bits = max(net.logit_bits, 2)
        stem = self._units_meta["stem"]
        super().__init__(network_signature(net, self.steps, stem["pixel_words"],
                                           self._logit_bits))

    # -- plan --------------------------------------------------------------------------------
    def _build_plan(self):
        net, lanes = self._net, self._lanes
        cfg = net.cfg
        sizes = net.cfg.map_sides()
        self.sizes = sizes
        steps = self._program.steps
        maps = {}
        consumers = {}
        for step in steps:
            if step.kind is StepKind.LAYER:
                consumers.setdefault(step.source, []).append("engine_linear" if step.layer ==
                                                             "head" else "engine_conv")
            if step.kind is StepKind.SDSA:
                for lif in (step.attention.q, step.attention.k, step.attention.v):
                    consumers.setdefault(lif, []).append("sdsa")
        for lif, (step, channels, side) in lif_map_shapes(net, steps, sizes).items():
            kinds = set(consumers.get(lif, []))
            if kinds - {"engine_conv"} and "engine_conv" in kinds:
                raise NotImplementedError(f"spike map {lif} has consumers of mixed layouts")
            layout = "conv" if kinds <= {"engine_conv"} else "token"
            banks = lanes
            if step.kind is StepKind.SDSA:
                banks = net.attention[step.source].head_width
                if layout != "conv":
                    raise NotImplementedError("SDSA output must feed a convolution")
            maps[lif] = SpikeMapInfo(lif, channels, side, side, layout, banks)
        self.maps = maps
        stem_layer = net.layers[steps[0].layer]
        self._units_meta = {"stem": {"pixel_words": cfg.in_channels * cfg.img_size ** 2}}
        self._stem_layer = stem_layer

    @property
    def steps(self) -> list[Step]:
        """The program, in execution order within one time step."""
        return self._program.steps

    @property
    def T(self) -> int:
        """Time steps of one run (fixed at generation)."""
        return self._T

    @property
    def lanes(self) -> int:
        """Lanes of every engine."""
        return self._lanes

    @property
    def logit_bits(self) -> int:
        """Signed width of each logit."""
        return self._logit_bits

    # -- hardware ----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        net, lanes, T = self._net, self._lanes, self._T
        cfg = net.cfg
        t = Signal(range(max(2, T)), name="t")
        first = Signal()
        m.d.comb += [first.eq(t == 0), self.time_step.eq(t)]

        # Spike maps -----------------------------------------------------------------------
        self._map_hw = {}
        for info in self.maps.values():
            self._map_hw[info.name] = self._spike_map(m, info, T)

        # Residual streams -------------------------------------------------------------------
        streams = {}
        for name, stream in net.streams.items():
            side = self.sizes[name]
            channels = stream.scale.shape[0]
            groups = ceil_div(channels, lanes)
            words = side * side * groups
            mem = Memory(shape=unsigned(lanes * stream.bits), depth=max(2, words), init=[])
            m.submodules[f"stream_{mem_name(name)}"] = mem
            streams[name] = {"mem": mem, "write": mem.write_port(), "bits": stream.bits,
                             "groups": groups, "words": words, "positions": side * side,
                             "channels": channels}
        self._streams = streams

        # Stem -------------------------------------------------------------------------------
        stem_layer = self._stem_layer
        stem = StemConv(weight=stem_layer.weight, bias=stem_layer.bias, height=cfg.img_size,
                        width=cfg.img_size, stride=stem_layer.stride,
                        padding=stem_layer.padding, pad_value=net.pixel.zero_point,
                        pixel_bits=net.pixel.bits, lanes=lanes)
        m.submodules.stem = stem
        m.d.comb += [stem.load_address.eq(self.load_address), stem.load_data.eq(self.load_data),
                     stem.load_enable.eq(self.load_enable)]
        stem_words = stem.positions * stem.groups
        stem_out = Memory(shape=unsigned(lanes * stem.accumulator_width),
                          depth=max(2, stem_words), init=[])
        m.submodules.stem_out = stem_out
        self._stem = stem
        self._stem_out = stem_out

        logits_acc = Signal(data.ArrayLayout(signed(self._logit_bits),
                                             ceil_div(self.logits.shape().length, lanes) * lanes))
        self._logits_acc = logits_acc
        m.d.comb += [self.logits[c].eq(logits_acc[c])
                     for c in range(self.logits.shape().length)]

        # Steps --------------------------------------------------------------------------------
        controls = []
        self._engines = {}
        init_cycles = 4
        for index, step in enumerate(self.steps):
            start = Signal(name=f"start_{index}")
            finish = Signal(name=f"finish_{index}")
            builder = getattr(self, f"_step_{step.kind.label}")
            extra_init = builder(m, step, start, finish, t, first)
            init_cycles = max(init_cycles, extra_init or 0)
            controls.append((start, finish, step.first_step_only))

        # Sequencer --------------------------------------------------------------------------
        init = Signal(range(init_cycles + 2), init=init_cycles + 1)
        with m.If(init != 0):
            m.d.sync += init.eq(init - 1)
        m.d.comb += self.ready.eq(init == 0)
        k = Signal(range(len(controls) + 1), name="program_step")
        launched = Signal()
        running = Signal()
        m.d.comb += self.step.eq(k)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.start & self.ready & ~running):
            m.d.sync += [running.eq(1), self.done.eq(0), k.eq(0), t.eq(0), launched.eq(0),
                         self.cycles.eq(0)]
            m.d.sync += [logits_acc[c].eq(0) for c in range(len(logits_acc))]
        with m.If(running):
            with m.Switch(k):
                for index, (start, finish, first_only) in enumerate(controls):
                    with m.Case(index):
                        skip = Const(0, 1) if not first_only else (t != 0)
                        with m.If(skip):
                            m.d.sync += k.eq(index + 1)
                        with m.Elif(~launched):
                            m.d.comb += start.eq(1)
                            m.d.sync += launched.eq(1)
                        with m.Elif(finish):
                            m.d.sync += [launched.eq(0), k.eq(index + 1)]
                with m.Case(len(controls)):
                    with m.If(t == T - 1):
                        m.d.sync += [running.eq(0), self.done.eq(1)]
                    with m.Else():
                        m.d.sync += [t.eq(t + 1), k.eq(0)]
        return m

    # -- spike maps -------------------------------------------------------------------------
    def _spike_map(self, m, info: SpikeMapInfo, T: int) -> dict:
        hw = {"info": info}
        if info.layout == "conv":
            cg = ceil_div(info.channels, info.banks)
            hw["cg"] = cg
            hw["banks"] = []
            for bank in range(info.banks):
                mem = Memory(shape=unsigned(info.width), depth=max(2, T * cg * info.height),
                             init=[])
                m.submodules[f"map_{mem_name(info.name)}_{bank}"] = mem
                hw["banks"].append({"mem": mem, "write": mem.write_port(granularity=1)})
        else:
            cg = ceil_div(info.channels, info.banks)
            hw["cg"] = cg
            mem = Memory(shape=unsigned(cg * info.banks), depth=max(2, T * info.height *
                                                                    info.width), init=[])
            m.submodules[f"map_{mem_name(info.name)}"] = mem
            hw["mem"] = mem
            hw["write"] = mem.write_port(granularity=info.banks)
        return hw

    def _map_write(self, m, lif, enable, t, y, x, cg, bits):
        """Write ``banks`` spikes (channels ``cg * banks + b``) of pixel ``(y, x)`` at step t."""
        hw = self._map_hw[lif]
        info = hw["info"]
        if info.layout == "conv":
            address = times(times(t, hw["cg"]) + cg, info.height) + y
            for bank, port in enumerate(hw["banks"]):
                write = port["write"]
                m.d.comb += [write.addr.eq(address),
                             write.data.eq(bits[bank].replicate(info.width)),
                             write.en.eq(Mux(enable, Const(1, info.width) << x, 0))]
        else:
            write = hw["write"]
            m.d.comb += [write.addr.eq(times(t, info.height * info.width)
                                       + times(y, info.width) + x),
                         write.data.eq(bits.replicate(hw["cg"])),
                         write.en.eq(Mux(enable, Const(1, hw["cg"]) << cg, 0))]

    def _conv_feeder(self, m, lif, engine, start, t, prefix):
        """Stream a conv-layout map's words (channel-major, row-minor) into ``engine.i``."""
        hw = self._map_hw[lif]
        info = hw["info"]
        reads = []
        for port in hw["banks"]:
            read = port["mem"].read_port(domain="comb")
            reads.append(read)
        c_hi = Signal(range(hw["cg"] + 1), name=f"{prefix}_feed_cg")
        bank = Signal(range(info.banks + 1), name=f"{prefix}_feed_bank")
        y = Signal(range(info.height + 1), name=f"{prefix}_feed_y")
        c = Signal(range(info.channels + 1), name=f"{prefix}_feed_c")
        feeding = Signal(name=f"{prefix}_feeding")
        word = Signal(info.width, name=f"{prefix}_feed_word")
        for read in reads:
            m.d.comb += read.addr.eq(times(times(t, hw["cg"]) + c_hi, info.height) + y)
        with m.Switch(bank):
            for index, read in enumerate(reads):
                with m.Case(index):
                    m.d.comb += word.eq(read.data)
        last = (c == info.channels - 1) & (y == info.height - 1)
        m.d.comb += [engine.i.valid.eq(feeding), engine.i.payload.bits.eq(word),
                     engine.i.payload.last.eq(last)]
        with m.If(start):
            m.d.sync += [feeding.eq(1), c_hi.eq(0), bank.eq(0), y.eq(0), c.eq(0)]
        with m.If(feeding & engine.i.ready):
            with m.If(last):
                m.d.sync += feeding.eq(0)
            with m.Elif(y == info.height - 1):
                m.d.sync += [y.eq(0), c.eq(c + 1)]
                with m.If(bank == info.banks - 1):
                    m.d.sync += [bank.eq(0), c_hi.eq(c_hi + 1)]
                with m.Else():
                    m.d.sync += bank.eq(bank + 1)
            with m.Else():
                m.d.sync += y.eq(y + 1)

    def _token_feeder(self, m, lif, engine, start, t, prefix):
        """Stream a token-layout map's words (one per token) into a linear ``engine.i``."""
        hw = self._map_hw[lif]
        info = hw["info"]
        tokens = info.height * info.width
        read = hw["mem"].read_port(domain="comb")
        n = Signal(range(tokens + 1), name=f"{prefix}_feed_n")
        feeding = Signal(name=f"{prefix}_feeding")
        m.d.comb += [read.addr.eq(times(t, tokens) + n), engine.i.valid.eq(feeding),
                     engine.i.payload.bits.eq(read.data[:info.channels]),
                     engine.i.payload.last.eq(n == tokens - 1)]
        with m.If(start):
            m.d.sync += [feeding.eq(1), n.eq(0)]
        with m.If(feeding & engine.i.ready):
            with m.If(n == tokens - 1):
                m.d.sync += feeding.eq(0)
            with m.Else():
                m.d.sync += n.eq(n + 1)

    # -- LIF into a map -------------------------------------------------------------------------
    def _lif_unit(self, m, lif_name, words, groups, prefix):
        lif = self._net.lifs[lif_name]
        unit = LIFArray(lanes=self._lanes, words=words, input_width=lif.input_bits,
                        thresholds=[int(v) for v in lif.threshold])
        m.submodules[f"lif_{mem_name(lif_name)}"] = unit
        return unit

    def _lif_writer(self, m, unit, lif_name, t, side, groups, start, prefix):
        """Write a LIF's output beats (position-major, group-minor) into its spike map.

        Returns the comb signal that pulses with the final beat's write.
        """
        y = Signal(range(side + 1), name=f"{prefix}_wr_y")
        x = Signal(range(side + 1), name=f"{prefix}_wr_x")
        g = Signal(range(groups + 1), name=f"{prefix}_wr_g")
        with m.If(start):
            m.d.sync += [y.eq(0), x.eq(0), g.eq(0)]
        m.d.comb += unit.o.ready.eq(1)
        beat = unit.o.valid
        self._map_write(m, lif_name, beat, t, y, x, g, unit.o.payload.spikes)
        final = Signal(name=f"{prefix}_wr_final")
        m.d.comb += final.eq(beat & (y == side - 1) & (x == side - 1) & (g == groups - 1))
        with m.If(beat):
            with m.If(g == groups - 1):
                m.d.sync += g.eq(0)
                with m.If(x == side - 1):
                    m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
            with m.Else():
                m.d.sync += g.eq(g + 1)
        return final

    # -- stream adds ----------------------------------------------------------------------------
    def _shifted(self, m, values, group, shifts, bits, prefix, base=None):
        """Return the stream word ``base + (values << shift[channel])`` for output group ``group``.

        The shifts are per-channel constants: a switch on the group selects wiring, not a shifter.
        """
        lanes = self._lanes
        out = Signal(data.ArrayLayout(signed(bits), lanes), name=f"{prefix}_sum")
        padded = np.zeros(ceil_div(len(shifts), lanes) * lanes, dtype=np.int64)
        padded[:len(shifts)] = shifts
        with m.Switch(group):
            for g in range(len(padded) // lanes):
                with m.Case(g):
                    for lane in range(lanes):
                        k = int(padded[g * lanes + lane])
                        term = values[lane] << k if k else values[lane]
                        if base is not None:
                            term = base[lane] + term
                        m.d.comb += out[lane].eq(term)
        return out

    def _stream_word(self, value_bits, stream):
        return data.ArrayLayout(signed(self._streams[stream]["bits"]), self._lanes)

    # -- step builders -------------------------------------------------------------------------
    def _step_stem(self, m, step, start, finish, t, first):
        stem, stem_out = self._stem, self._stem_out
        write = stem_out.write_port()
        m.d.comb += [stem.start.eq(start), stem.o.ready.eq(1),
                     write.addr.eq(times(stem.o.payload.position, stem.groups)
                                   + stem.o.payload.group),
                     write.data.eq(stem.o.payload.values.as_value()),
                     write.en.eq(stem.o.valid),
                     finish.eq(stem.o.valid & stem.o.payload.last)]
        return 0

    def _step_begin_stem(self, m, step, start, finish, t, first):
        stream = step.sink.stream
        info = self._streams[stream]
        stem = self._stem
        read = self._stem_out.read_port(domain="comb")
        prefix = f"s{self.steps.index(step)}"
        address = Signal(range(info["words"] + 1), name=f"{prefix}_address")
        g = Signal(range(info["groups"] + 1), name=f"{prefix}_g")
        busy = Signal(name=f"{prefix}_busy")
        values = data.View(data.ArrayLayout(signed(stem.accumulator_width), self._lanes),
                           read.data)
        word = self._shifted(m, values, g, self._net.layers[step.layer].shift, info["bits"],
                             prefix)
        m.d.comb += read.addr.eq(address)
        with m.If(busy):
            write = info["write"]
            m.d.comb += [write.addr.eq(address), write.data.eq(word.as_value()), write.en.eq(1)]
            m.d.sync += address.eq(address + 1)
            m.d.sync += g.eq(Mux(g == info["groups"] - 1, 0, g + 1))
            with m.If(address == info["words"] - 1):
                m.d.sync += busy.eq(0)
                m.d.comb += finish.eq(1)
        with m.If(start):
            m.d.sync += [busy.eq(1), address.eq(0), g.eq(0)]
        return 0

    def _engine(self, m, step):
        layer = self._net.layers[step.layer]
        side_in = self.maps[step.source].height
        if step.layer == "head":
            engine = SynapseEngine(kind="linear", weight=layer.weight[:, :, 0, 0],
                                   bias=layer.bias, lanes=self._lanes, height=1)
        else:
            if layer.groups != 1:
                raise NotImplementedError(f"{step.layer}: grouped convs are not supported")
            engine = SynapseEngine(kind="conv", weight=layer.weight, bias=layer.bias,
                                   lanes=self._lanes, height=side_in, width=side_in,
                                   stride=layer.stride, padding=layer.padding)
        m.submodules[f"engine_{mem_name(step.layer)}"] = engine
        self._engines[step.layer] = engine
        return engine

    def _step_layer(self, m, step, start, finish, t, first):
        prefix = f"s{self.steps.index(step)}"
        engine = self._engine(m, step)
        if self.maps[step.source].layout == "conv":
            self._conv_feeder(m, step.source, engine, start, t, prefix)
        else:
            self._token_feeder(m, step.source, engine, start, t, prefix)
        out = engine.o.payload
        kind, target = step.sink.kind, step.sink.target
        if kind is SinkKind.LIF:
            words = engine.positions * engine.groups
            unit = self._lif_unit(m, target, words, engine.groups, prefix)
            m.d.comb += [unit.i.valid.eq(engine.o.valid), engine.o.ready.eq(unit.i.ready),
                         unit.i.payload.address.eq(times(out.position, engine.groups)
                                                             + out.group),
                         unit.i.payload.group.eq(out.group), unit.i.payload.first.eq(first)]
            m.d.comb += [unit.i.payload.x[lane].eq(out.values[lane])
                         for lane in range(self._lanes)]
            final = self._lif_writer(m, unit, target, t, engine.out_height, engine.groups,
                                     start, prefix)
            m.d.comb += finish.eq(final)
        elif kind in (SinkKind.ADD, SinkKind.BEGIN):
            info = self._streams[target]
            read = info["mem"].read_port(domain="comb")
            address = Signal(range(info["words"] + 1), name=f"{prefix}_address")
            m.d.comb += [address.eq(times(out.position, engine.groups) + out.group),
                         read.addr.eq(address), engine.o.ready.eq(1)]
            base = None
            if kind is SinkKind.ADD:
                base = data.View(self._stream_word(None, target), read.data)
            word = self._shifted(m, out.values, out.group, self._net.layers[step.layer].shift,
                                 info["bits"], prefix, base)
            with m.If(engine.o.valid):
                write = info["write"]
                m.d.comb += [write.addr.eq(address), write.data.eq(word.as_value()),
                             write.en.eq(1)]
            m.d.comb += finish.eq(engine.o.valid & out.last)
        elif kind is SinkKind.LOGITS:
            m.d.comb += engine.o.ready.eq(1)
            with m.If(engine.o.valid):
                with m.Switch(out.group):
                    for g in range(engine.groups):
                        with m.Case(g):
                            for lane in range(self._lanes):
                                channel = g * self._lanes + lane
                                m.d.sync += self._logits_acc[channel].eq(
                                    self._logits_acc[channel] + out.values[lane])
            m.d.comb += finish.eq(engine.o.valid & out.last)
        else:
            raise NotImplementedError(str(step.sink))
        return engine.init_cycles + 4

    def _stream_reader(self, m, stream, prefix):
        info = self._streams[stream]
        read = info["mem"].read_port(domain="comb")
        address = Signal(range(info["words"] + 1), name=f"{prefix}_address")
        g = Signal(range(info["groups"] + 1), name=f"{prefix}_g")
        m.d.comb += read.addr.eq(address)
        return info, data.View(self._stream_word(None, stream), read.data), address, g

    def _step_stream_lif(self, m, step, start, finish, t, first):
        prefix = f"s{self.steps.index(step)}"
        info, values, address, g = self._stream_reader(m, step.source, prefix)
        unit = self._lif_unit(m, step.name, info["words"], info["groups"], prefix)
        feeding = Signal(name=f"{prefix}_feeding")
        m.d.comb += [unit.i.valid.eq(feeding), unit.i.payload.address.eq(address),
                     unit.i.payload.group.eq(g), unit.i.payload.first.eq(first)]
        m.d.comb += [unit.i.payload.x[lane].eq(values[lane]) for lane in range(self._lanes)]
        with m.If(start):
            m.d.sync += [feeding.eq(1), address.eq(0), g.eq(0)]
        with m.If(feeding & unit.i.ready):
            m.d.sync += [address.eq(address + 1), g.eq(Mux(g == info["groups"] - 1, 0, g + 1))]
            with m.If(address == info["words"] - 1):
                m.d.sync += feeding.eq(0)
        side = self.sizes[step.source]
        final = self._lif_writer(m, unit, step.name, t, side, info["groups"], start, prefix)
        m.d.comb += finish.eq(final)
        return 0

    def _step_head_pool_lif(self, m, step, start, finish, t, first):
        prefix = f"s{self.steps.index(step)}"
        lanes = self._lanes
        info, values, address, g = self._stream_reader(m, step.source, prefix)
        lif = self._net.lifs[step.name]
        groups = info["groups"]
        pooled = Signal(data.ArrayLayout(signed(lif.input_bits), groups * lanes),
                        name=f"{prefix}_pooled")
        unit = self._lif_unit(m, step.name, groups, groups, prefix)
        pooling = Signal(name=f"{prefix}_pooling")
        firing = Signal(name=f"{prefix}_firing")
        fire_g = Signal(range(groups + 1), name=f"{prefix}_fire_g")
        with m.If(start):
            m.d.sync += [pooling.eq(1), address.eq(0), g.eq(0)]
            m.d.sync += [pooled[c].eq(0) for c in range(groups * lanes)]
        with m.If(pooling):
            with m.Switch(g):
                for group in range(groups):
                    with m.Case(group):
                        for lane in range(lanes):
                            c = group * lanes + lane
                            m.d.sync += pooled[c].eq(pooled[c] + values[lane])
            m.d.sync += [address.eq(address + 1), g.eq(Mux(g == groups - 1, 0, g + 1))]
            with m.If(address == info["words"] - 1):
                m.d.sync += [pooling.eq(0), firing.eq(1), fire_g.eq(0)]
        m.d.comb += [unit.i.valid.eq(firing), unit.i.payload.address.eq(fire_g),
                     unit.i.payload.group.eq(fire_g), unit.i.payload.first.eq(first)]
        with m.Switch(fire_g):
            for group in range(groups):
                with m.Case(group):
                    m.d.comb += [unit.i.payload.x[lane].eq(pooled[group * lanes + lane])
                                 for lane in range(lanes)]
        with m.If(firing & unit.i.ready):
            m.d.sync += fire_g.eq(fire_g + 1)
            with m.If(fire_g == groups - 1):
                m.d.sync += firing.eq(0)
        final = self._lif_writer(m, unit, step.name, t, 1, groups, start, prefix)
        m.d.comb += finish.eq(final)
        return 0

    def _step_sdsa(self, m, step, start, finish, t, first):
        prefix = f"s{self.steps.index(step)}"
        attn = self._net.attention[step.source]
        tokens, d, heads = attn.tokens, attn.head_width, attn.heads
        unit = SDSA(variant=attn.sdsa, tokens=tokens, head_width=d, heads=heads,
                    threshold=attn.threshold)
        m.submodules[f"sdsa_{mem_name(step.source)}"] = unit
        reads = {}
        for key in ("q", "k", "v"):
            lif = getattr(step.attention, key)
            hw = self._map_hw[lif]
            if hw["info"].layout != "token":
                raise NotImplementedError(f"{lif} must be token layout for SDSA")
            reads[key] = hw["mem"].read_port(domain="comb")
        n = Signal(range(tokens + 1), name=f"{prefix}_n")
        h = Signal(range(heads + 1), name=f"{prefix}_h")
        feeding = Signal(name=f"{prefix}_feeding")
        for key, read in reads.items():
            m.d.comb += read.addr.eq(times(t, tokens) + n)
            with m.Switch(h):
                for head in range(heads):
                    with m.Case(head):
                        m.d.comb += getattr(unit.i.payload, key).eq(
                            read.data[head * d:(head + 1) * d])
        m.d.comb += [unit.i.valid.eq(feeding), unit.i.payload.first.eq(first)]
        with m.If(start):
            m.d.sync += [feeding.eq(1), n.eq(0), h.eq(0)]
        with m.If(feeding & unit.i.ready):
            with m.If(n == tokens - 1):
                m.d.sync += [n.eq(0), h.eq(h + 1)]
                with m.If(h == heads - 1):
                    m.d.sync += feeding.eq(0)
            with m.Else():
                m.d.sync += n.eq(n + 1)
        # Output beats: head-major, token-minor; head h's d channels go to bank j, group h.
        side = self.maps[step.name].width
        out_n = Signal(range(tokens + 1), name=f"{prefix}_out_n")
        out_h = Signal(range(heads + 1), name=f"{prefix}_out_h")
        y = Signal(range(side + 1), name=f"{prefix}_out_y")
        x = Signal(range(side + 1), name=f"{prefix}_out_x")
        m.d.comb += unit.o.ready.eq(1)
        self._map_write(m, step.name, unit.o.valid, t, y, x, out_h, unit.o.payload.spikes)
        with m.If(start):
            m.d.sync += [out_n.eq(0), out_h.eq(0), y.eq(0), x.eq(0)]
        with m.If(unit.o.valid):
            with m.If(out_n == tokens - 1):
                m.d.sync += [out_n.eq(0), out_h.eq(out_h + 1), y.eq(0), x.eq(0)]
                with m.If(out_h == heads - 1):
                    m.d.comb += finish.eq(1)
            with m.Else():
                m.d.sync += out_n.eq(out_n + 1)
                with m.If(x == side - 1):
                    m.d.sync += [x.eq(0), y.eq(y + 1)]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
        return 0
