"""A chain of conv + LIF layers over external memory on one band datapath, walked in hardware.

:class:`BandChain` runs layers ``0 .. L-1`` one after the other, each reading the spike maps
the layer before wrote, on one :class:`hw.bandlayer.BandLayer` datapath built for all of them
(one engine, LIF array, assembler, AXI4 reader and writer; every layer's biases and thresholds
in its tables, the weights as below). A sequencer walks the schedule of ``docs/weightfetch.md`` ("The
band layer") with no processor involved: layer by layer, band by band, and within a band time
step by time step, so a band's membranes stay on chip across its time steps.

Memory layout (:func:`chain_layout`, every map as :func:`hw.rowreader.map_image` lays it, time
step ``t`` of a map at ``t * map_bytes`` from the map's start):

- map 0 (layer 0's input) at ``input_base``; map ``L`` (the last layer's output) at
  ``output_base``;
- maps ``1 .. L-1`` in two slots of the scratch region, map ``l`` in slot ``(l - 1) % 2``: slot 0
  at ``scratch_base``, slot 1 at ``scratch_base + slot_bytes`` (``slot_bytes`` the largest
  such map's ``max_steps`` steps). A layer reads one slot and writes the other, so the scratch
  region holds two maps whatever the depth of the chain.

Every base is a multiple of the bus width in bytes.

Weights (``weights``): ``"rom"``, every layer's in an on-chip ROM; ``"axi"``, loaded before
each layer's first band from ``weight_base`` (:func:`hw.bandlayer.weight_image` of the chain's
passes, each at :attr:`weight_places`) into a RAM: read once a run. The RAM holds the largest
layer, or ``weight_words`` words if given: a layer whose weights need more runs in passes over
its output channels (:func:`chain_passes`: groups of ``lanes`` channels, a power of two of
them a pass), each pass loading its channels' weights, walking all the layer's bands and
steps, and writing its channels' rows of the output map. Each pass reads the layer's input
again (:attr:`passes` times its map traffic); the weights are still read once.

On-chip memory: :attr:`BandLayer.memory_bits` of the datapath (one band's bank, membranes and
assembler rows; the weights; every layer's biases and thresholds): none of it grows with the
maps' height, and with ``weights="axi"`` only the biases and thresholds (a word a group of
lanes) grow with the chain's depth and width; the weight RAM is bounded by ``weight_words``,
and with ``band_bits`` the bank and membranes together by that budget (each layer's bands
the most rows that fit, :func:`band_rows_for`).

Ports: ``input_base``, ``output_base``, ``scratch_base`` and, with ``weights="axi"``,
``weight_base`` (In, byte addresses), ``steps`` (In, time steps ``1 .. max_steps``), all
sampled at ``start`` (In, a pulse while ``busy`` is low);
``busy`` (Out): from the cycle after ``start`` to the cycle of ``done``; ``done`` (Out): one
cycle when the last band's last write has been answered; ``ready`` (Out): the engine has
cleared its accumulator bank after reset (one cycle a bank word; a ``start`` before that is
taken, and the first band waits for it); ``error`` (Out): a read or write
response other than OKAY during the run (sticky until the next ``start``; the run goes on).
The AXI4 master is the datapath's flat ``m_axi_*`` ports.

Cycles: the datapath's per band and step (``BandLayer``), plus 1 between two steps of a band
(the cycle that sees its ``busy`` low) and 2 before a band's first step (that cycle and its
addresses); with ``weights="axi"``, each pass's load (its words' beats after the read latency)
and 2 more. ``sim.perf.band_chain_cycles`` models a run from the spike maps, exact against
the RTL for a memory that never pauses (``tests/test_bandchain.py``), except for a chain whose
stride-2 first layer halves rows of two or more bus beats before another layer (a known gap,
``docs/weightfetch.md``, "Not done").

Reference: :func:`band_chain_reference`. Tests: ``tests/test_bandchain.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi_io import axi4_write_ports
from hw.bandlayer import (BandLayer, ConvLIF, _pass_through, band_layer_reference,
                          weight_image)
from hw.params import ceil_div, check_int
from hw.progengine_config import LayerConfig, layer_config
from hw.rowreader import map_image
from hw.weightfetch import axi4_read_ports

__all__ = ["BandChain", "Pass", "band_chain_reference", "band_rows_for", "chain_layout",
           "chain_passes", "check_chain", "padded_weight_words"]


def check_chain(layers: Sequence[ConvLIF]) -> None:
    """Raise ``ValueError`` naming the first layer whose input is not the layer before's output
    (channels, height, width)."""
    for index in range(1, len(layers)):
        a, b = layers[index - 1].layer, layers[index].layer
        have = (a.out_channels, a.out_height, a.out_width)
        want = (b.in_channels, b.height, b.width)
        if have != want:
            raise ValueError(f"layer {index} reads a [C, H, W] = {list(want)} map but layer "
                             f"{index - 1} writes {list(have)}")


def padded_weight_words(layer: LayerConfig) -> int:
    """Words of a layer's weights in the engine's layout (``pack_layer_weights``: ``Cin <<
    (2 * kernel_log + groups_log)``, holes included): the weight RAM depth it needs."""
    return layer.in_channels << (2 * layer.kernel_log + layer.groups_log)


class Pass(NamedTuple):
    """One run of a chain layer over its bands for some of its output channels: ``layer`` (the
    chain's index), ``first`` (its first output channel) and ``spec`` (a
    :class:`hw.bandlayer.ConvLIF` of those channels, the layer's input geometry)."""

    layer: int
    first: int
    spec: ConvLIF


def chain_passes(layers: Sequence[ConvLIF], *, weight_words: int | None = None) -> list[Pass]:
    """Split each layer whose weights do not fit a weight RAM of ``weight_words`` words
    (:func:`padded_weight_words`) into passes over its output channels.

    A pass holds the most groups of ``lanes`` output channels, a power of two, whose weights
    fit; the last pass the rest. ``weight_words=None``: every layer in one pass. Raises
    ``ValueError`` naming the layer where one group does not fit.
    """
    passes = []
    for index, spec in enumerate(layers):
        layer = spec.layer
        if weight_words is None or padded_weight_words(layer) <= weight_words:
            passes.append(Pass(index, 0, spec))
            continue
        per_group = layer.in_channels << (2 * layer.kernel_log)
        if per_group > weight_words:
            raise ValueError(
                f"layer {index}: one group of {layer.lanes} output channels needs "
                f"{per_group} weight words ({layer.in_channels} input channels x "
                f"{1 << 2 * layer.kernel_log} taps), more than weight_words = {weight_words}")
        groups = 1 << ((weight_words // per_group).bit_length() - 1)
        step = groups * layer.lanes
        thresholds = [int(t) for t in spec.thresholds]
        for first in range(0, layer.out_channels, step):
            count = min(step, layer.out_channels - first)
            sub = layer_config(in_channels=layer.in_channels, out_channels=count,
                               kernel=layer.kernel, stride=layer.stride, padding=layer.padding,
                               height=layer.height, width=layer.width, lanes=layer.lanes)
            passes.append(Pass(index, first, ConvLIF(
                sub, np.asarray(spec.weight)[first:first + count],
                np.asarray(spec.bias)[first:first + count], thresholds[first:first + count])))
    return passes


def band_rows_for(layers: Sequence[ConvLIF], band_bits: int, *, weight_width: int = 8,
                  weight_words: int | None = None) -> list[int]:
    """The most output rows a band of each layer can have for the datapath's band memories, the
    accumulator bank and the LIF membranes (:attr:`hw.bandlayer.BandLayer.memory_bits`), to
    hold at most ``band_bits`` bits together: the on-chip budget they get at generation.

    A band of ``r`` rows needs ``r << (out_width_log + groups_log)`` bank words of ``lanes``
    sums and ``r * out_width * groups`` membrane words of ``lanes`` membranes (the widths the
    datapath of the whole chain gets; with ``weight_words``, the groups of each layer's largest
    pass, :func:`chain_passes`). Raises ``ValueError`` naming the first layer whose one-row
    band does not fit, with the bits it needs.
    """
    from hw.progengine_config import band_layer

    check_int("band_bits", band_bits, 1)
    passes = chain_passes(layers, weight_words=weight_words)
    probe = BandLayer([p.spec for p in passes], band_rows=1, weight_width=weight_width)
    lanes = probe.layers[0].layer.lanes
    sum_bits = lanes * probe.accumulator_width
    membrane_bits = lanes * probe.lif.membrane_width

    def bits(layer, rows):
        band = band_layer(layer, 0, rows - 1)[0]
        return band.bank_words_needed * sum_bits + band.beats * membrane_bits

    rows_of = []
    for index in range(len(layers)):
        mine = [p.spec.layer for p in passes if p.layer == index]
        need = max(bits(layer, 1) for layer in mine)
        if need > band_bits:
            raise ValueError(f"layer {index}: a band of one output row needs {need} bits of "
                             f"accumulator bank and membranes, more than band_bits = "
                             f"{band_bits}")
        rows = 1
        while rows < mine[0].out_height and \
                max(bits(layer, rows + 1) for layer in mine) <= band_bits:
            rows += 1
        rows_of.append(rows)
    return rows_of


def _map_bytes(channels: int, height: int, width: int, data_width: int) -> int:
    return channels * height * -(-width // data_width) * data_width // 8


def chain_layout(layers: Sequence[ConvLIF], *, max_steps: int, data_width: int = 64) -> dict:
    """Where each map of the chain lies (module docstring).

    Returns ``{"maps": [(region, offset, step_bytes), ...], "slot_bytes": int,
    "scratch_bytes": int}``: map ``l`` (``0 .. L``) at ``region``'s base (``"input"``,
    ``"scratch"`` or ``"output"``) plus ``offset``, its time step ``t`` ``t * step_bytes``
    further."""
    check_int("max_steps", max_steps, 1)
    sizes = [_map_bytes(layers[0].layer.in_channels, layers[0].layer.height,
                        layers[0].layer.width, data_width)]
    sizes += [_map_bytes(s.layer.out_channels, s.layer.out_height, s.layer.out_width,
                         data_width) for s in layers]
    count = len(layers)
    slot = max([0] + [max_steps * sizes[m] for m in range(1, count)])
    maps = []
    for m, size in enumerate(sizes):
        if m == 0:
            maps.append(("input", 0, size))
        elif m == count:
            maps.append(("output", 0, size))
        else:
            maps.append(("scratch", ((m - 1) % 2) * slot, size))
    return {"maps": maps, "slot_bytes": slot,
            "scratch_bytes": slot * min(2, count - 1)}


def band_chain_reference(inputs, layers: Sequence[ConvLIF]) -> list[np.ndarray]:
    """The spike maps ``[T, C, H, W]`` of every layer's output, layer by layer, over input maps
    ``[T, Cin, H, W]`` (``quant.intops``' ``conv2d_spikes`` and ``lif_step``, membranes from 0
    at the first step)."""
    maps, spikes = [], np.asarray(inputs)
    for spec in layers:
        spikes = band_layer_reference(spikes, spec.weight, spec.bias, spec.thresholds,
                                      stride=spec.layer.stride, padding=spec.layer.padding)
        maps.append(spikes)
    return maps


class BandChain(wiring.Component):
    """Conv + LIF layers one after the other over external memory (module docstring).

    Parameters
    ----------
    layers : sequence of :class:`hw.bandlayer.ConvLIF`
        The layers in order; each reads the map the one before writes.
    band_rows : int or sequence of int, optional
        Output rows a band, for every layer or one number a layer (``BandLayer``).
    band_bits : int, optional
        Instead of ``band_rows``: the bits the accumulator bank and the membranes may take
        together; each layer's bands get the most rows that fit (:func:`band_rows_for`).
    max_steps : int
        Most time steps a run (>= 1); the scratch slots hold this many steps of a map.
    weight_width, data_width, address_width, weights
        As :class:`hw.bandlayer.BandLayer`.
    weight_words : int, optional
        With ``weights="axi"``: the weight RAM's depth (words of ``lanes * weight_width``
        bits), the on-chip budget for weights. A layer that needs more
        (:func:`padded_weight_words`) runs in passes over its output channels
        (:func:`chain_passes`), each loading its channels' weights and reading the layer's input
        again. Default: the largest layer's (one pass a layer).
    """

    def __init__(self, layers: Sequence[ConvLIF], *, band_rows=None, max_steps: int,
                 weight_width: int = 8, data_width: int = 64, address_width: int = 32,
                 weights: str = "rom", weight_words: int | None = None,
                 band_bits: int | None = None):
        layers = [ConvLIF(*spec) for spec in layers]
        if not layers:
            raise ValueError("layers must hold at least one ConvLIF")
        check_chain(layers)
        self._max_steps = check_int("max_steps", max_steps, 1)
        if weight_words is not None:
            if weights != "axi":
                raise ValueError(f"weight_words ({weight_words}) bounds the weight RAM of "
                                 f"weights='axi'; with weights={weights!r} every weight is in "
                                 "the ROM")
            check_int("weight_words", weight_words, 1)
        if (band_rows is None) == (band_bits is None):
            raise ValueError("give band_rows or band_bits (the band memories' budget), "
                             "one of them")
        if band_bits is not None:
            band_rows = band_rows_for(layers, band_bits, weight_width=weight_width,
                                      weight_words=weight_words)
        if isinstance(band_rows, int):
            band_rows = [band_rows] * len(layers)
        band_rows = list(band_rows)
        if len(band_rows) != len(layers):
            raise ValueError(f"{len(band_rows)} band_rows for {len(layers)} layers")
        self._layers = layers
        self.band_rows = band_rows
        self.passes = chain_passes(layers, weight_words=weight_words)
        specs = [p.spec for p in self.passes]
        self.datapath = BandLayer(specs, band_rows=[band_rows[p.layer] for p in self.passes],
                                  weight_width=weight_width, data_width=data_width,
                                  address_width=address_width, weights=weights)
        self._data_width = data_width
        self._axi_weights = weights == "axi"
        if self._axi_weights:
            self.weight_image, self.weight_places = weight_image(
                specs, weight_width=weight_width, data_width=data_width)
        self.layout = chain_layout(layers, max_steps=max_steps, data_width=data_width)
        self._read_names = list(axi4_read_ports(address_width, data_width))
        self._write_names = list(axi4_write_ports(address_width, data_width))
        super().__init__({
            "input_base": In(address_width), "output_base": In(address_width),
            "scratch_base": In(address_width), "steps": In(range(1, max_steps + 1)),
            **({"weight_base": In(address_width)} if weights == "axi" else {}),
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1), "ready": Out(1),
            **axi4_read_ports(address_width, data_width),
            **axi4_write_ports(address_width, data_width),
        })

    @property
    def max_steps(self) -> int:
        return self._max_steps

    @property
    def layers(self) -> list[ConvLIF]:
        """The chain's layers, as given (:attr:`passes`: how the datapath runs them)."""
        return list(self._layers)

    @property
    def memory_bits(self) -> dict[str, int]:
        """Bits of each on-chip memory (the datapath's)."""
        return self.datapath.memory_bits

    def traffic(self, steps: int) -> list[dict]:
        """Bytes a run of ``steps`` time steps moves over AXI4, layer by layer, and their floors:
        ``[{"weights", "weight_floor", "read", "read_floor", "written", "write_floor"}, ...]``.

        ``weights``: the layer's passes' weight loads (:attr:`BandLayer.load_beats` beats,
        once a run; 0 with weights on chip), against its weights at ``weight_width`` bits each
        (``weight_floor``, the image's padding and alignment are the excess); ``read``: each
        band's input rows (its halo included) at every step, once a pass, against the input map
        read once (``read_floor``); ``written``: each band's output rows, against the output map
        once (``write_floor``, equal: every row is written once). The hardware's READ_BYTES is
        the sum of ``weights`` and ``read``, its WRITE_BYTES the sum of ``written``
        (``tests/test_bandcore.py``)."""
        check_int("steps", steps, 1, self._max_steps)
        dp = self.datapath
        beat = self._data_width // 8

        def row_bytes(width):
            return ceil_div(width, self._data_width) * beat

        rows = []
        for index, spec in enumerate(self._layers):
            layer = spec.layer
            passes = [k for k, p in enumerate(self.passes) if p.layer == index]
            weights = sum(dp.load_beats[k] for k in passes) * beat if self._axi_weights else 0
            read = written = 0
            for (first, last, _, first_in, last_in), k in zip(dp._bands, dp.band_layers):
                if k in passes:
                    sub = self.passes[k].spec.layer
                    read += (last_in - first_in + 1) * sub.in_channels * row_bytes(sub.width)
                    written += (last - first + 1) * sub.out_channels * row_bytes(sub.out_width)
            rows.append({
                "weights": weights,
                "weight_floor": ceil_div(np.asarray(spec.weight).size * dp.engine.weight_width, 8)
                if self._axi_weights else 0,
                "read": steps * read,
                "read_floor": steps * _map_bytes(layer.in_channels, layer.height, layer.width,
                                                 self._data_width),
                "written": steps * written,
                "write_floor": steps * _map_bytes(layer.out_channels, layer.out_height,
                                                  layer.out_width, self._data_width),
            })
        return rows

    def elaborate(self, platform):
        m = Module()
        m.submodules.datapath = dp = self.datapath
        _pass_through(m, self, dp, self._read_names)
        _pass_through(m, self, dp, self._write_names)
        maps = self.layout["maps"]
        entries = len(dp.bands)

        # per band: its layer's input and output maps' region, offset and step
        regions = {"input": self.input_base, "scratch": self.scratch_base,
                   "output": self.output_base}
        if self._axi_weights:
            regions["weight"] = self.weight_base
        bases = {name: Signal.like(port, name=f"{name}_base_r")
                 for name, port in regions.items()}
        codes = {"input": 0, "scratch": 1, "output": 2}

        def table(values):
            return Array(values)

        band_layer = dp.band_layers            # each band's pass
        chain_layer = [self.passes[p].layer for p in band_layer]

        def channel_offset(p):   # a pass's first output channel in its layer's output map
            first, layer = self.passes[p].first, self.passes[p].spec.layer
            return first * layer.out_height * ceil_div(layer.out_width, self._data_width) \
                * self._data_width // 8

        in_code = table([codes[maps[l][0]] for l in chain_layer])
        out_code = table([codes[maps[l + 1][0]] for l in chain_layer])
        in_off = table([maps[l][1] for l in chain_layer])
        out_off = table([maps[l + 1][1] + channel_offset(p)
                         for l, p in zip(chain_layer, band_layer)])
        in_step = table([maps[l][2] for l in chain_layer])
        out_step = table([maps[l + 1][2] for l in chain_layer])
        base_of = Array([bases["input"], bases["scratch"], bases["output"]])

        loading = Signal()    # this start loads a layer's weights (never without weights="axi")
        entry = Signal(range(max(2, entries)))
        t = Signal(range(self._max_steps + 1))
        steps = Signal.like(self.steps)
        in_addr = Signal.like(self.input_base)
        out_addr = Signal.like(self.output_base)
        error = Signal()
        m.d.comb += [dp.band.eq(entry), dp.first.eq(t == 0), dp.input_base.eq(in_addr),
                     dp.output_base.eq(out_addr), self.error.eq(error), self.ready.eq(dp.ready)]

        if self._axi_weights:
            # a layer's first band loads the layer's weights first
            starts = [k == 0 or band_layer[k] != band_layer[k - 1] for k in range(entries)]
            layer_start = table([int(v) for v in starts])
            weight_off = table([self.weight_places[l][0] for l in band_layer])
            m.d.comb += dp.load.eq(loading)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [bases[name].eq(port) for name, port in regions.items()]
                    m.d.sync += [steps.eq(self.steps), entry.eq(0), error.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):   # a band's first step: its maps' addresses
                m.d.comb += self.busy.eq(1)
                m.d.sync += [t.eq(0),
                             in_addr.eq(base_of[in_code[entry]] + in_off[entry]),
                             out_addr.eq(base_of[out_code[entry]] + out_off[entry])]
                if self._axi_weights:
                    with m.If(layer_start[entry] & ~loading):
                        m.d.sync += [loading.eq(1),
                                     in_addr.eq(bases["weight"] + weight_off[entry])]
                    with m.Else():
                        m.d.sync += loading.eq(0)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [self.busy.eq(1), dp.start.eq(dp.ready)]
                with m.If(dp.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(~dp.busy):
                    m.d.sync += error.eq(error | dp.error)
                    with m.If(loading):   # the layer's weights are in: now its first band
                        m.next = "LOAD"
                    with m.Elif(t + 1 < steps):
                        m.d.sync += [t.eq(t + 1), in_addr.eq(in_addr + in_step[entry]),
                                     out_addr.eq(out_addr + out_step[entry])]
                        m.next = "ISSUE"
                    with m.Elif(entry + 1 < entries):
                        m.d.sync += entry.eq(entry + 1)
                        m.next = "LOAD"
                    with m.Else():
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
