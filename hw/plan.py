"""The shared network's plan: where every map, stream, LIF site and layer lives, in plain Python.

:class:`SharedPlan` turns a quantized net and a lane count into everything
:class:`hw.shared.SharedNetwork` generates hardware from, before any hardware exists: the
program (:class:`hw.program.Program`), the memory map (:class:`MemoryMap`: one typed record per
spike map, residual stream, LIF site and engine layer, with its base address), the contents of the
weight, bias, shift and threshold memories and the engine's limits; :mod:`hw.descriptor` builds
the descriptor of every (time step, step) pair from it. The testbench, the reports and the docs read the same objects.

Each engine layer's geometry comes from :func:`hw.progengine.layer_config`, the engine's own
configuration function, and :class:`hw.shared.SharedNetwork` packs it with
:meth:`hw.progengine.ProgEngine.config_value`, which runs the engine's fit check on every layer.

Layouts (addresses are stepped by additions in the hardware, so no size is rounded up):

* spike map ``m`` (``C`` channels, side ``S``, ``G = ceil(C / lanes)`` channel groups, ``P``
  groups packed a word): channel ``c`` in bank ``c % lanes``; group ``q = c // lanes`` in word
  group ``j = q // P`` at bits ``(q % P) * S ..`` of the bank; row ``y`` at word ``base_m + t *
  ceil(G / P) * S + j * S + y``, bit ``(q % P) * S + x``. ``P`` (:meth:`SharedPlan._pack`) fills
  the ``W``-bit bank (``W`` the widest side) with the rows of several groups of a narrow map;
  an attention map packs a divisor of its head's groups, so that every head starts a word.
* residual stream ``s`` (``positions * G`` words of ``lanes`` values): word ``base_s + position * G
  + g``, the engine's read-out order, so ``index`` of an output beat addresses it directly.
* LIF site: membrane word ``mbase + position * G + g``, threshold word ``tbase + g`` with
  ``tbase`` a multiple of ``2**ceil(log2(G))``, so that ``tbase + g == tbase | g``.
* weights: :func:`hw.progengine.pack_layer_weights` per layer at its ``weight_base``.

* attention maps (an attention block's q, k, v and output maps): head-aligned: head ``h``'s
  channel ``j`` is physical channel ``h * G * lanes + j`` with ``G = ceil(head_width / lanes)``
  (:attr:`SharedMap.order`; padded channels have zero weights, zero bias and threshold 1, so they
  never fire), so that the SDSA feed reads a head as ``G`` whole words for any head width and
  lane count. The layers writing or reading such a map have their weights scattered to match.

Contract: building a plan raises ``ValueError``/``NotImplementedError`` naming the first thing
the shared network cannot run (attention blocks of different operators, a non-square token
grid, grouped convolutions, a stride that is not a power of two, a negative stream shift).
Tested by ``tests/test_shared_network.py`` and ``tests/test_shared_envelope.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.accumulator import accumulator_bound, pack_lanes, signed_width
from hw.params import ceil_div, log2_ceil
from hw.planes import plane_weights
from hw.program import Program, SinkKind, Step, StepKind, lif_map_shapes
from hw.progengine import (LayerConfig, fold_log_for, layer_config, pack_layer_biases,
                           pack_layer_weights)

__all__ = ["DepthwisePlace", "SharedMap", "StreamPlace", "SitePlace", "LayerPlace", "MemoryMap", "SharedPlan",
           "STEM_OUT", "SCHEDULES"]

#: The sequencer's orders of (time step, step) pairs (:attr:`SharedPlan.schedule`).
SCHEDULES = ("time", "layer")

#: The stream place that keeps the stem's output across time steps (:attr:`SharedPlan.stem_once`).
STEM_OUT = "stem_out"


@dataclass(frozen=True)
class DepthwisePlace:
    """A depthwise layer (SepConv unfused) in the depthwise engine: its first channel in the
    engine's ROM (``base``), its channels (the source map's) and its map's side."""

    name: str
    base: int
    channels: int
    side: int


@dataclass(frozen=True)
class SharedMap:
    """A spike map's place in the shared spike memory (module docstring)."""

    name: str
    channels: int
    side: int
    base: int
    #: Channel groups (``ceil(channels / lanes)``) and groups packed side by side in one word.
    groups: int
    pack: int = 1
    #: Physical channel of each logical channel (None: the identity). An attention block's
    #: q, k, v and output maps place head ``h``'s channel ``j`` at ``h * heads_groups * lanes +
    #: j``: every head starts a word group, so the SDSA feed reads whole words.
    order: tuple | None = None

    @property
    def logical_channels(self) -> int:
        """Channels of the model's map (``channels`` counts the padded, physical ones)."""
        return self.channels if self.order is None else len(self.order)

    def physical(self, spikes):
        """``spikes[C_logical, ...]`` -> ``[channels, ...]`` with zeros in padded channels."""
        spikes = np.asarray(spikes)
        if self.order is None:
            return spikes
        out = np.zeros((self.channels,) + spikes.shape[1:], dtype=spikes.dtype)
        out[list(self.order)] = spikes
        return out

    @property
    def height(self) -> int:
        return self.side

    @property
    def width(self) -> int:
        return self.side

    @property
    def words(self) -> int:
        """Word groups: ``ceil(groups / pack)`` (each ``side`` words, one a row)."""
        return -(-self.groups // self.pack)

    @property
    def stride(self) -> int:
        """Words from one word group's row to the next group's (``side``); also the bit pitch
        of the packed groups in a bank."""
        return self.side

    @property
    def step_words(self) -> int:
        """Words of one time step's map."""
        return self.words * self.side

    def base_at(self, t: int) -> int:
        """First word of time step ``t``'s map."""
        return self.base + t * self.step_words

    def place(self, group: int, y: int) -> tuple[int, int]:
        """``(word offset from base_at(t), bit offset in each bank)`` of channel group
        ``group``'s row ``y``."""
        return (group // self.pack) * self.side + y, (group % self.pack) * self.side


@dataclass(frozen=True)
class StreamPlace:
    """A residual stream's place in the stream memory: ``words`` words from ``base``."""

    name: str
    base: int
    groups: int
    words: int
    bits: int


@dataclass(frozen=True)
class SitePlace:
    """A LIF site's membranes (from ``mbase``) and thresholds (from ``tbase``) in the LIF array."""

    name: str
    mbase: int
    tbase: int
    groups: int
    words: int


@dataclass(frozen=True)
class LayerPlace:
    """An engine layer: its integer weights and biases and its engine configuration."""

    name: str
    weight: np.ndarray = field(repr=False)   # [Cout, Cin, k, k]
    bias: np.ndarray = field(repr=False)     # [Cout]
    config: LayerConfig


@dataclass(frozen=True)
class MemoryMap:
    """Every memory of the shared network and what lives where (public, typed).

    ``maps``: spike maps by LIF name; ``streams``: residual streams; ``sites``: LIF sites (the SDSA
    keeps its own attention LIF); ``layers``: engine layers; ``shift_base``: first shift-memory
    word of every stream-writing step, by step name. The depths and widths size the memories.
    """

    maps: dict[str, SharedMap]
    streams: dict[str, StreamPlace]
    sites: dict[str, SitePlace]
    layers: dict[str, LayerPlace]
    shift_base: dict[str, int]
    map_depth: int
    map_width: int
    stream_depth: int
    stream_bits: int
    membrane_words: int
    lif_bits: int

    def report(self, lanes: int, weight_depth: int, weight_width: int, acc_width: int,
               bank_depth: int) -> dict:
        """Bits of every shared memory (for the manifest and the docs)."""
        return {
            "weights": weight_depth * lanes * weight_width,
            "spike_maps": self.map_depth * self.map_width * lanes,
            "streams": self.stream_depth * lanes * self.stream_bits,
            "membranes": self.membrane_words * lanes * self.lif_bits,
            "bank": bank_depth * lanes * acc_width,
        }


class SharedPlan:
    """Plan a quantized net on the shared network at ``lanes`` lanes (module docstring).

    Members
    -------
    net, lanes, T, program, steps, sizes
        The inputs, the program and the map side of every module list.
    memory : MemoryMap
    weight_words, bias_words, shift_words, thresholds : list of int
        Contents of the weight, bias, shift and threshold memories.
    weight_width, acc_width, shift_bits, logit_bits : int
    engine_limits : dict
        The engine's size parameters (``ProgEngine`` keyword arguments).
    stem_layer, stem_groups, pixel_words
        The stem's quantized layer, its output groups and the pixel memory's words (None, 0, 0
        for an event model).
    events, input_map
        Whether the program begins with the event input (``cfg.events``), and its ``input``
        spike map (:class:`SharedMap`, else None).
    pool_groups, max_groups, attention
        Widest pooled stream, widest group count, attention block paths in program order.
    sdsa : int or None
        The attention operator of every attention block (1 to 4, ``cfg.sdsa``); None without
        attention blocks.
    sdsa_reads_v : bool
        Whether the SDSA feed reads a V row per token (every operator but SDSA-2, which has no
        V map).
    """

    def __init__(self, net, lanes: int, *, pack_weights: bool = True, schedule: str = "time",
                 fold: int = 1, input_buffer: int = 0):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, "
                             f"not {schedule!r}")
        #: The order the sequencer visits (time step, step) pairs (:meth:`visits`): ``"time"``,
        #: every step of a time step before the next time step (every LIF site keeps its
        #: membranes across time steps); ``"layer"``, every time step of a step before the next
        #: step (one site's membranes at a time; every stream kept for all time steps).
        self.schedule = schedule
        self.net = net
        #: Whether :attr:`weight_words` holds the packed weights; ``pack_weights=False`` reserves
        #: the same words as zeros (sizes, addresses, limits and the program are the same): for
        #: sizing and cycle predictions, where packing a paper model's weights is most of the time.
        self.weights_packed = bool(pack_weights)
        self.lanes = lanes = int(lanes)
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, not {lanes}")
        #: Most output columns a bank word of the engine holds (column folding, a power of two;
        #: 1: none): a layer of at most ``lanes / F`` output channels accumulates ``F``
        #: neighbouring columns' taps in one cycle (``hw.progengine``, "Column folding").
        self.fold = fold = int(fold)
        if fold < 1 or fold & (fold - 1) or (fold > 1 and (lanes & (lanes - 1) or fold > lanes)):
            raise ValueError(f"fold must be a power of two from 1 to lanes (a power of two when "
                             f"fold > 1), not {fold} at lanes {lanes}")
        #: Words the engine's input slice holds, dropping words without spikes as they arrive
        #: (``hw.progengine.ProgEngine``'s ``input_buffer``; 0: the plain register slice).
        self.input_buffer = input_buffer = int(input_buffer)
        if input_buffer != 0 and not 2 <= input_buffer <= 64:
            raise ValueError(f"input_buffer must be 0 (none) or 2..64, not {input_buffer}")
        self.T = T = net.cfg.T
        self.program = Program(net)
        self.steps: list[Step] = self.program.steps
        self.sizes = net.cfg.map_sides()
        #: Whether the stem runs once per run: with T > 1 a static image gives the stem the same
        #: output at every time step, so it runs at ``t = 0`` only, into a stream place of its
        #: own (``"stem_out"``) that nothing else writes; the first stream reads it where it
        #: would have read its own words before the first add (:attr:`stream_access`).
        self.stem_once = T > 1 and self.steps[0].kind is StepKind.STEM
        #: Layer schedule with a kept stem: ``stem_out`` has no words of its own, it is the
        #: first stream's copy for ``t = 0``. The first add into that stream (the last step to
        #: read ``stem_out``) runs its time steps downwards (:meth:`down`), so that it writes the
        #: copies for ``t = T-1 .. 1`` first and the copy for ``t = 0`` last, in place: every
        #: visit still reads the stem's output.
        self.stem_in_place = self.stem_once and schedule == "layer"
        #: Steps whose time steps run downwards (:meth:`down`).
        self.down_steps: frozenset = frozenset()
        self._check_attention()
        maps = self._plan_maps()
        streams = self._plan_streams()
        if self.schedule == "layer":
            streams = self._share_streams(streams)
        #: ``{step name: (StreamPlace read, StreamPlace written or None)}`` of every step that
        #: reads or writes a residual stream (a stream LIF or pool reads; a layer's add reads
        #: and writes; a begin, or the stem through its ``begin_stem``, writes and reads its
        #: own place).
        self.stream_access = self._plan_stream_access(streams)
        if self.stem_in_place:
            # the first add into the stem's stream: it reads ``stem_out``, writes elsewhere
            adds = [k for k, step in enumerate(self.steps)
                    if step.name in self.stream_access
                    and self.stream_access[step.name][0].name == STEM_OUT
                    and self.stream_access[step.name][1] is not None
                    and self.stream_access[step.name][1].name != STEM_OUT]
            for k in adds:   # one layer adding into the stream: nothing kept across time steps
                if len(adds) > 1 or (self.steps[k].kind is not StepKind.LAYER
                        or self.steps[k].sink.kind is not SinkKind.ADD):
                    raise NotImplementedError(
                        f"step {self.steps[k].name} writes the stem's stream in place of its "
                        f"output but is not a layer adding into it")
            self.down_steps = frozenset(adds)
        sites, thresholds, membrane_words, lif_bits = self._plan_sites(maps)
        self._plan_depthwise(maps)
        layers, weight_words, bias_words = self._plan_layers(maps)
        shift_base = self._plan_shifts()
        self._plan_identities(maps)
        self.memory = MemoryMap(
            maps=maps, streams=streams, sites=sites, layers=layers, shift_base=shift_base,
            map_depth=max(2, sum(T * i.step_words for i in maps.values())),
            map_width=max(info.side for info in maps.values()),
            stream_depth=max(2, max(self.stream_base(s, self.T - 1) + s.words
                                    for s in streams.values())),
            stream_bits=max(s.bits for s in streams.values()),
            membrane_words=membrane_words, lif_bits=lif_bits)
        self.thresholds = thresholds
        self.weight_words = weight_words
        self.bias_words = bias_words
        self.logit_bits = max(net.logit_bits, 2)

        # Stem (pixel input), or the event input (the first layer then runs on the engine).
        first_step = self.steps[0]
        cfg = net.cfg
        self.events = first_step.kind is StepKind.EVENT_IN
        if self.events:
            self.stem_layer, self.pixel_words, self.stem_groups = None, 0, 0
            self.input_map = maps[first_step.sink.spike_map]
            if self.input_map.channels > lanes:
                raise NotImplementedError(
                    f"event input of {self.input_map.channels} channels: the event port fills "
                    f"one word group, so at most lanes = {lanes} channels")
        else:
            if first_step.kind is not StepKind.STEM:
                raise NotImplementedError("the program must begin with the stem")
            self.input_map = None
            self.stem_layer = net.layers[first_step.layer]
            self.pixel_words = cfg.in_channels * cfg.img_size ** 2
            self.stem_groups = ceil_div(self.stem_layer.weight.shape[0], lanes)

        # Pool width (head): sum of a stream over positions.
        self.pool_groups = 1
        for step in self.steps:
            if step.kind is StepKind.POOL_LIF:
                groups = (maps[step.residual].groups if step.residual is not None
                          else streams[step.source].groups)
                self.pool_groups = max(self.pool_groups, groups)
        #: SEW: the head's pool runs in passes, one per producer map (``SinkKind.POOL``).
        self.pool_passes = any(step.sink.kind is SinkKind.POOL for step in self.steps)
        #: Layer schedule, T > 1, SEW: the head pool's passes and its LIF run time-major, as a
        #: group inside the layer-major order (:meth:`visits`): the pool keeps one time step's
        #: sums in registers across its passes. The group's one LIF site keeps its membranes
        #: from one time step to the next, as under the layer schedule (no other site runs in
        #: between). Empty otherwise.
        self.time_major: tuple = ()
        if self.schedule == "layer" and T > 1 and self.pool_passes:
            group = [k for k, step in enumerate(self.steps) if step.kind is StepKind.POOL_LIF]
            lifs = [k for k in group if self.steps[k].sink.spike_map is not None]
            if (group != list(range(group[0], group[-1] + 1)) or len(lifs) != 1
                    or lifs[0] != group[-1]):
                raise NotImplementedError(
                    f"schedule='layer' at T={T}: the head pool's passes are not one run of "
                    "steps ending in the pool's LIF")
            self.time_major = tuple(group)
        self.attention = list(net.attention)
        self.sdsa = net.attention[self.attention[0]].sdsa if self.attention else None
        self.sdsa_reads_v = self.sdsa != 2
        self.max_groups = max([self.pool_groups]
                              + [s.groups for s in streams.values()]
                              + [s.groups for s in sites.values()]
                              + [layer.config.groups for layer in layers.values()]
                              + [ceil_div(info.channels, lanes) for info in maps.values()]
                              + [attn.heads for attn in net.attention.values()])

    # -- checks and allocation ----------------------------------------------------------------
    def _check_attention(self):
        """Refuse what the SDSA path cannot run and record each attention map's head layout.

        Any head width, head count and token count per block is allowed: a head occupies
        ``ceil(head_width / lanes)`` word groups (:attr:`head_groups`), its channels padded with
        never-firing zeros up to a whole group when ``lanes`` does not divide the width.
        """
        net, lanes = self.net, self.lanes
        # One operator in the whole network (the feed reads q, k and v, or q and k, for all).
        variants = {attn.sdsa for attn in net.attention.values()}
        if len(variants) > 1:
            raise NotImplementedError("the shared network needs one SDSA operator in every "
                                      f"block, not {sorted(variants)}")
        self.head_groups = {}     # attention prefix -> word groups per head
        self.head_maps = {}       # q / k / v / output map -> (heads, head width, groups a head)
        #: attention prefix -> heads a word of its q, k and v maps holds whole: ``lanes // d``
        #: when the head width ``d`` divides ``lanes`` (narrower than a word), else 1.
        self.heads_per_word = {}
        #: attention prefixes whose q, k and v maps are written densely (:meth:`dense_layout`):
        #: head ``h``'s channels at ``h * d ..`` of a map of ``ceil(C / lanes)`` groups, pack 1,
        #: no order; the SDSA feed takes a head's ``d`` bits out of the one, two or more words
        #: they occupy (:meth:`head_reads`). The output map stays head-aligned.
        self.dense_blocks = set()
        self.dense_heads = {}     # q / k / v map written densely -> its attention prefix
        for step in self.steps:
            if step.kind is not StepKind.SDSA:
                continue
            attn = net.attention[step.source]
            side = int(round(attn.tokens ** 0.5))
            if side * side != attn.tokens:
                raise NotImplementedError(
                    f"attention over {attn.tokens} tokens in {step.source}: the shared "
                    "network's SDSA feeder walks a square token grid")
            groups = ceil_div(attn.head_width, lanes)
            self.head_groups[step.source] = groups
            self.heads_per_word[step.source] = (lanes // attn.head_width
                                                if attn.head_width < lanes
                                                and lanes % attn.head_width == 0 else 1)
            dense = self.dense_layout(attn.heads, attn.head_width, lanes)
            if dense:
                self.dense_blocks.add(step.source)
            paths = step.attention
            for lif in (paths.q, paths.k, paths.v, step.sink.spike_map):
                if lif is None:
                    continue
                self.head_maps[lif] = (attn.heads, attn.head_width, groups)
                if dense and lif != step.sink.spike_map:
                    self.dense_heads[lif] = step.source

    @staticmethod
    def dense_layout(heads: int, head_width: int, lanes: int) -> bool:
        """Whether a block's q, k and v maps are written densely rather than head-aligned: when
        that saves word groups of their convolutions (``ceil(heads * d / lanes)`` against
        ``heads * ceil(d / lanes)``).

        Dense costs the SDSA feed a read more a row for a head that straddles one word more
        than its ``ceil(d / lanes)`` (:meth:`head_reads`), 3 cycles a token; the SDSA unit's own
        work a token hides most of that (the 15M's heads of 45 at 16 lanes, 23 groups instead of
        24: each SDSA step 2 cycles longer, each q/k/v convolution about 3,600 shorter; cycle
        model, ``sim.perf``), while the convolutions gain in proportion to the groups saved."""
        return ceil_div(heads * head_width, lanes) < heads * ceil_div(head_width, lanes)

    def head_reads(self, prefix: str) -> list[tuple[int, int, int]]:
        """``[(first word group, bank offset, word groups read)]`` of each head of ``prefix``'s
        q, k and v maps, as the SDSA feed reads them: a dense block's head ``h`` starts at
        channel ``h * d``, so at group ``h * d // lanes``, bank ``h * d % lanes``, and spans
        ``ceil((bank + d) / lanes)`` groups; a head-aligned one at group ``h * G``, bank 0,
        ``G`` groups."""
        attn, lanes = self.net.attention[prefix], self.lanes
        d, groups = attn.head_width, self.head_groups[prefix]
        if prefix not in self.dense_blocks:
            return [(h * groups, 0, groups) for h in range(attn.heads)]
        return [(h * d // lanes, h * d % lanes, ceil_div(h * d % lanes + d, lanes))
                for h in range(attn.heads)]

    def _plan_maps(self) -> dict[str, SharedMap]:
        """Every LIF's spike map, allocated in program order (attention maps head-aligned,
        narrow maps packed, :meth:`_pack`)."""
        maps, base, lanes = {}, 0, self.lanes
        shapes = lif_map_shapes(self.net, self.steps, self.sizes)
        width = max(side for _, _, side in shapes.values())
        for lif, (_, channels, side) in shapes.items():
            order = None
            head_groups = None
            if lif in self.head_maps:
                heads, head_width, head_groups = self.head_maps[lif]
                if channels != heads * head_width:
                    raise ValueError(f"{lif}: {channels} channels are not {heads} heads of "
                                     f"{head_width}")
                if lif in self.dense_heads:
                    # dense: no order, packed as any map (a head may start inside a word)
                    head_groups = None
                elif head_groups * lanes != head_width:
                    order = tuple(h * head_groups * lanes + j for h in range(heads)
                                  for j in range(head_width))
                    channels = heads * head_groups * lanes
            groups = ceil_div(channels, lanes)
            info = SharedMap(lif, channels, side, base, groups,
                             self._pack(groups, side, width, head_groups), order)
            base += self.T * info.step_words
            maps[lif] = info
        return maps

    @staticmethod
    def _pack(groups: int, side: int, width: int, head_groups: int | None = None) -> int:
        """Channel groups a word holds side by side: as many ``side``-bit rows as fit the
        ``width``-bit bank, spread evenly over the words the map needs; for an attention map
        (``head_groups`` a head) the largest divisor of ``head_groups`` that fits, so that every
        head starts a word (the SDSA's output is written a head at a time)."""
        fit = max(1, width // side)
        if head_groups is not None:
            return max(d for d in range(1, min(fit, head_groups) + 1) if head_groups % d == 0)
        words = ceil_div(groups, fit)
        return ceil_div(groups, words)

    @property
    def stream_copies(self) -> int:
        """Copies of every stream place (but ``stem_out``): ``T`` for the layer schedule, whose
        steps run every time step before the next step reads them, else 1."""
        return self.T if self.schedule == "layer" else 1

    def stream_base(self, place: StreamPlace, t: int) -> int:
        """First word of ``place``'s copy for time step ``t`` (``stem_out`` has one copy)."""
        if place.name == STEM_OUT:
            return place.base
        return place.base + (t if self.schedule == "layer" else 0) * place.words

    def _plan_streams(self) -> dict[str, StreamPlace]:
        streams, base = {}, 0
        copies = self.stream_copies
        for name, stream in self.net.streams.items():
            if stream.counts:   # SEW: a stream of counts is its producers' spike maps
                continue
            groups = ceil_div(stream.scale.shape[0], self.lanes)
            words = self.sizes[name] ** 2 * groups
            streams[name] = StreamPlace(name, base, groups, words, stream.bits)
            base += words * copies
        # Vanilla and SEW: the streams the program begins that the net does not hold: the
        # stem's sums, read by ``downsample1_1.out_lif``, and the sums ``<layer>.sum`` of a
        # branch's last layer (vanilla) or of a layer on counts (SEW, its passes), read once by
        # the ``RESIDUAL_LIF`` or ``STREAM_LIF`` right after. All sums share one place (each
        # sized by its own layer), so the memory holds the largest.
        self._stream_channels = {name: int(s.scale.shape[0]) for name, s in self.net.streams.items()
                                 if not s.counts}
        sums, seen = [], set()
        for step in self.steps:
            target = step.sink.stream
            if target is None or target in streams or target in seen or (
                    target in self.net.streams and not self.net.streams[target].counts):
                continue
            reader = next(s for s in self.steps if s.source == target
                          and s.kind in (StepKind.STREAM_LIF, StepKind.RESIDUAL_LIF))
            seen.add(target)
            lif = self.net.lifs[reader.name]
            channels = int(lif.threshold.shape[0])
            self._stream_channels[target] = channels
            groups = ceil_div(channels, self.lanes)
            side = self.sizes[target.split(".")[0]]
            place = StreamPlace(target, base, groups, side * side * groups, lif.input_bits)
            if target.endswith(".sum"):
                sums.append(place)
            else:
                streams[target] = place
                base += place.words * copies
        if sums:
            for place in sums:
                streams[place.name] = StreamPlace(place.name, base, place.groups, place.words,
                                                  max(p.bits for p in sums))
            base += max(place.words for place in sums) * copies
        if self.stem_once:
            kept = streams[self._stream_of(STEM_OUT)]
            # layer schedule: the first stream's copy for t = 0 (``stem_in_place``)
            at = kept.base if self.stem_in_place else base
            streams[STEM_OUT] = StreamPlace(STEM_OUT, at, kept.groups, kept.words, kept.bits)
        return streams

    def _share_streams(self, streams) -> dict[str, StreamPlace]:
        """Layer schedule: move the stream places so that places whose lives do not overlap
        share words (first fit, in order of their first use).

        A place lives from the first step that reads or writes it to the last (in program
        order); the layer schedule runs every time step of a step before the next step, so
        once its last step is done no time step reads it again. (The time schedule keeps every
        place apart: its layout, and so its Verilog, stay as they were.)
        """
        access = self._plan_stream_access(streams)
        life, size = {}, {}
        for k, step in enumerate(self.steps):
            for place in access.get(step.name, ()):
                if place is None:
                    continue
                first, last = life.get(place.base, (k, k))
                life[place.base] = (min(first, k), max(last, k))
                copies = 1 if place.name == STEM_OUT else self.stream_copies
                size[place.base] = max(size.get(place.base, 0), place.words * copies)
        placed, moved = [], {}
        for old in sorted(life, key=lambda base: (life[base][0], base)):
            first, last = life[old]
            base = 0
            while True:   # past every block that lives at the same time and overlaps
                clash = [o + n for o, n, (start, end) in placed
                         if not (end < first or last < start) and base < o + n
                         and o < base + size[old]]
                if not clash:
                    break
                base = max(clash)
            placed.append((base, size[old], (first, last)))
            moved[old] = base
        return {name: StreamPlace(name, moved.get(place.base, place.base), place.groups,
                                  place.words, place.bits)
                for name, place in streams.items()}

    def _plan_stream_access(self, streams) -> dict:
        """Which stream place each stream step reads and writes (:attr:`stream_access`).

        Without :attr:`stem_once` every stream is read and written at its own place. With
        it, the stem's begin writes ``stem_out``; the first stream's readers read ``stem_out``
        until the first add into that stream, which reads ``stem_out`` and writes the stream's
        own place, so ``stem_out`` still holds the stem's output at the next time step.
        """
        current = {name: place for name, place in streams.items()}
        access = {}
        for step in self.steps:
            if step.kind is StepKind.BEGIN_STEM:
                place = streams[STEM_OUT] if self.stem_once else streams[step.sink.stream]
                current[step.sink.stream] = place
                access[step.name] = (place, place)
            elif step.kind in (StepKind.STREAM_LIF, StepKind.POOL_LIF, StepKind.RESIDUAL_LIF):
                if step.source is not None:   # a pool of spikes (vanilla) reads no stream
                    access[step.name] = (current[step.source], None)
            elif step.sink.stream is not None:
                target = step.sink.stream
                place = streams[target]
                read = current[target] if step.sink.kind is SinkKind.ADD else place
                current[target] = place
                access[step.name] = (read, place)
        return access

    def _stream_bits_needed(self) -> int:
        """Bits the stream places' contents need: every place's values, the branch sums that
        share one place (vanilla) counted once, at their largest."""
        mem = self.memory

        def needed(name):
            stream = self._stream_of(name)
            return (self.sizes[stream.split(".")[0]] ** 2 * self._stream_channels[stream]
                    * mem.stream_bits)
        sums = [needed(name) for name in mem.streams if name.endswith(".sum")]
        kept = sum(needed(name) for name in mem.streams
                   if name == STEM_OUT and not self.stem_in_place)
        # the layer schedule keeps every stream (but the stem's output) for each time step
        return (sum(needed(name) for name in mem.streams
                    if not name.endswith(".sum") and name != STEM_OUT)
                + max(sums, default=0)) * self.stream_copies + kept

    def _stream_of(self, place: str) -> str:
        """The net's stream whose values a stream place holds (``stem_out``: the first's)."""
        if place != STEM_OUT:
            return place
        return next(s for s in self.steps if s.kind is StepKind.BEGIN_STEM).sink.stream

    def runs(self, t: int) -> list[int]:
        """The step indices the sequencer visits at time step ``t``, in order: every step but
        ``begin_stem`` (the stem's descriptor does its work), and, with :attr:`stem_once`, the
        stem only at ``t = 0``."""
        return [k for k, step in enumerate(self.steps)
                if step.kind is not StepKind.BEGIN_STEM
                and not (t > 0 and self.stem_once and step.kind is StepKind.STEM)]

    def once(self, k: int) -> bool:
        """Whether step ``k`` runs at ``t = 0`` only (a kept stem, :attr:`stem_once`)."""
        return self.stem_once and self.steps[k].kind is StepKind.STEM

    def down(self, k: int) -> bool:
        """Whether step ``k`` runs its time steps downwards, ``t = T-1`` first (layer schedule,
        :attr:`stem_in_place`: the first add into the stem's stream). Such a step keeps no
        state from one time step to the next, so the order does not change what it computes."""
        return k in self.down_steps

    def visits(self, time_steps: int | None = None) -> list[tuple[int, int]]:
        """``[(t, k)]`` the sequencer visits in a run of ``time_steps`` (default ``T``), in order:
        the time schedule runs :meth:`runs` of each time step in turn; the layer schedule runs
        each step of :meth:`runs(0) <runs>` at every time step (:meth:`once` at ``t = 0``,
        :meth:`down` from the last time step to 0) before the next step, but the steps of
        :attr:`time_major`, which run one time step after the other as a group."""
        n = self.T if time_steps is None else int(time_steps)
        if self.schedule == "time":
            return [(t, k) for t in range(n) for k in self.runs(t)]
        out = []
        for k in self.runs(0):
            if k in self.time_major:   # a time-major group: its steps at each time step
                if k == self.time_major[0]:
                    out += [(t, j) for t in range(n) for j in self.time_major]
                continue
            ts = range(1 if self.once(k) else n)
            out += [(t, k) for t in (reversed(ts) if self.down(k) else ts)]
        return out

    def _plan_sites(self, maps):
        """LIF sites (the SDSA keeps its own attention LIF) and the threshold memory."""
        net, lanes = self.net, self.lanes
        sites, mbase, tbase, thresholds = {}, 0, 0, []
        for step in self.steps:
            lif = step.sink.spike_map
            if step.kind in (StepKind.SDSA, StepKind.EVENT_IN) or lif is None:
                continue
            info = maps[lif]
            groups = ceil_div(info.channels, lanes)
            # Each site's threshold words start at a multiple of the power of two covering its
            # groups, so ``tbase + g`` is ``tbase | g``: the threshold address is an OR of
            # registers, no adder in front of the memory (the gap words hold zeros).
            align = 1 << log2_ceil(groups)
            gap = -tbase % align
            thresholds += [0] * (gap * lanes)
            tbase += gap
            # The layer schedule keeps one site's membranes at a time: every site at 0.
            sites[lif] = SitePlace(lif, mbase if self.schedule == "time" else 0, tbase, groups,
                                   info.side ** 2 * groups)
            # Padded channels (beyond the map's channels, or between heads) get threshold 1:
            # their input is always 0 (zero weights and bias), so they never fire.
            words = [1] * (groups * lanes)
            for channel, value in zip(info.order or range(info.channels),
                                      net.lifs[lif].threshold):
                words[channel] = int(value)
            thresholds += words
            mbase += info.side ** 2 * groups
            tbase += groups
        # At T = 1 every LIF starts from a zero membrane and none is read back: the array keeps
        # no membranes (its memory shrinks to two words that are never read with first = 0).
        if self.schedule == "layer":
            mbase = max([0] + [site.words for site in sites.values()])
        membrane_words = max(2, mbase) if self.T > 1 else 2
        lif_bits = max(net.lifs[name].input_bits for name in sites)
        return sites, thresholds, membrane_words, lif_bits

    def _plan_depthwise(self, maps):
        """SepConv unfused: the depthwise layers of the program's steps, their channels one after
        another in the depthwise engine's weight ROM (:attr:`depthwise`, :attr:`dw_weight`,
        :attr:`dw_bias`), and the planes every one's sums are split into (:attr:`planes`)."""
        net = self.net
        #: ``{depthwise layer: DepthwisePlace}`` (empty: SepConv fused, no depthwise engine).
        self.depthwise: dict[str, DepthwisePlace] = {}
        weights, biases, planes, kernels = [], [], 1, set()
        for step in self.steps:
            if step.kind is not StepKind.LAYER or step.depthwise is None:
                continue
            layer, source = net.layers[step.depthwise], maps[step.source]
            weight = np.asarray(layer.weight, dtype=np.int64)
            if weight.ndim != 4 or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
                raise NotImplementedError(f"{step.depthwise}: weight of shape {weight.shape} is "
                                          f"not a square depthwise kernel")
            if int(layer.stride) != 1 or int(layer.padding) != weight.shape[2] // 2:
                raise NotImplementedError(f"{step.depthwise}: the depthwise engine runs stride 1, "
                                          f"same size (stride {layer.stride}, padding "
                                          f"{layer.padding})")
            if step.depthwise in self.depthwise:
                raise NotImplementedError(f"{step.depthwise}: runs twice")
            channels = source.channels
            kernel = np.zeros((channels,) + weight.shape[2:], np.int64)
            kernel[:weight.shape[0]] = weight[:, 0]
            bias = np.zeros(channels, np.int64)
            bias[:weight.shape[0]] = np.asarray(layer.bias, dtype=np.int64).reshape(-1)
            self.depthwise[step.depthwise] = DepthwisePlace(
                step.depthwise, sum(len(w) for w in weights), channels, source.side)
            weights.append(kernel)
            biases.append(bias)
            kernels.add(weight.shape[2])
            # the largest magnitude a sum can take (its proven range): its bits are the planes
            planes = max(planes, max(abs(int(np.min(layer.acc_low))),
                                     abs(int(np.max(layer.acc_high))), 1).bit_length())
        if len(kernels) > 1:
            raise NotImplementedError(f"depthwise kernels of sizes {sorted(kernels)}: one "
                                      f"depthwise engine runs one size")
        #: The depthwise layers' kernels ``[channels, K, K]`` and biases, one after another.
        self.dw_weight = np.concatenate(weights) if weights else None
        self.dw_bias = np.concatenate(biases) if biases else None
        #: Sign-magnitude planes of every depthwise sum (``hw.planes``; 0 without one).
        self.planes = planes if weights else 0
        #: The depthwise engine's lanes: ``R`` kernel rows of ``2**ceil(log2(K))`` banks, up to
        #: as many rows as banks a row (more rows than the kernel's would idle).
        cols = 1 << log2_ceil(max(kernels)) if kernels else 1
        self.dw_lanes = (max(cols, min(1 << (self.lanes.bit_length() - 1), cols * cols))
                         if weights else 0)

    def _plan_layers(self, maps):
        """Engine layers: configurations from the engine's ``layer_config``, packed weights."""
        net, lanes = self.net, self.lanes
        weight_words, bias_words, layers = [], [], {}
        low, high, need_w = 0, 0, 1
        zero_groups = 0
        for step in self.steps:
            if step.kind is not StepKind.LAYER:
                continue
            if step.layer in layers:
                # SEW: a later pass of a layer on counts reads another producer map of the
                # same shape with the same weights; it adds its sums without the bias, so its
                # engine configuration points at zero bias words (``zero_bias_base``).
                first = next(s for s in self.steps if s.layer == step.layer)
                if (maps[step.source].channels, maps[step.source].side,
                        maps[step.source].pack, maps[step.source].order) != (
                        maps[first.source].channels, maps[first.source].side,
                        maps[first.source].pack, maps[first.source].order):
                    raise NotImplementedError(f"{step.name}: a pass on a map of another shape")
                if step.bias:
                    raise NotImplementedError(f"{step.name}: the layer runs twice with its bias")
                zero_groups = max(zero_groups, layers[step.layer].config.groups)
                continue
            layer = net.layers[step.layer]
            if layer.groups != 1:
                raise NotImplementedError(f"{step.layer}: grouped convs are not supported")
            weight = np.asarray(layer.weight, dtype=np.int64)
            if weight.ndim == 2:
                weight = weight[:, :, None, None]
            bias = np.asarray(layer.bias, dtype=np.int64).reshape(-1)
            # Head-aligned maps: scatter the input channels of a layer reading one and the
            # output channels (and biases) of a layer writing one; padding is zeros.
            source = maps[step.source]
            planes, bound_weight = 1, None
            if step.depthwise is not None:
                # SepConv unfused: the layer is a 1x1 conv over the depthwise sums' planes
                # (``hw.planes``), 2 * P a channel of the source map (its padded channels
                # included: zero kernels and bias, so zero sums and empty planes). The weight
                # memory holds ``w * (-1)**s`` per (channel, sign); the engine shifts it by the
                # plane's bit as it adds (``LayerConfig.planes``).
                if source.order is not None or weight.shape[2:] != (1, 1):
                    raise NotImplementedError(f"{step.layer}: a pointwise conv after a depthwise "
                                              f"one must be 1x1 on a plain map")
                wide = np.zeros((weight.shape[0], source.channels, 1, 1), np.int64)
                wide[:, :weight.shape[1]] = weight
                planes = self.planes
                bound_weight = plane_weights(wide, planes)     # what the sums add up
                weight = bound_weight[:, ::planes]             # p = 0: w * (-1)**s
            if source.order is not None:
                wide = np.zeros((weight.shape[0], source.channels) + weight.shape[2:], np.int64)
                wide[:, list(source.order)] = weight
                weight = wide
            sink = maps.get(step.sink.spike_map) if step.sink.spike_map else None
            if sink is not None and sink.order is not None:
                wide = np.zeros((sink.channels,) + weight.shape[1:], np.int64)
                wide[list(sink.order)] = weight
                weight = wide
                bias = sink.physical(bias)
            cout, cin, k, _ = weight.shape
            side_in = source.side
            stride = int(layer.stride)
            if stride & (stride - 1):
                raise NotImplementedError(f"{step.layer}: stride {stride} is not a power of two")
            fold_log = fold_log_for(out_channels=cout, kernel=k, stride=stride, lanes=lanes,
                                    max_fold_log=self.fold.bit_length() - 1)
            config = layer_config(in_channels=cin * planes, out_channels=cout, kernel=k,
                                  stride=stride,
                                  padding=int(layer.padding), height=side_in, width=side_in,
                                  lanes=lanes, weight_base=len(weight_words),
                                  bias_base=len(bias_words), fold_log=fold_log,
                                  planes=planes)
            if bound_weight is None:
                bound_weight = weight
            lo, hi = accumulator_bound(bound_weight, bias)
            lo0, hi0 = accumulator_bound(bound_weight, np.zeros_like(bias))
            low, high = min(low, lo, lo0), max(high, hi, hi0)
            need_w = max(need_w, signed_width(min(int(weight.min()), 0),
                                              max(int(weight.max()), 0)))
            layers[step.layer] = LayerPlace(step.layer, weight, bias, config)
            # Reserve the words now so bases are fixed.
            weight_words.extend([0] * config.weight_words_needed)
            bias_words.extend([0] * config.groups)
        #: First of the bias memory's zero words (SEW: the passes without the bias), or None.
        self.zero_bias_base = len(bias_words) if zero_groups else None
        bias_words.extend([0] * zero_groups)
        self.weight_width = need_w
        self.acc_width = signed_width(low, high)
        for place in layers.values():
            c = place.config
            biases = pack_layer_biases(place.bias, lanes=lanes, accumulator_width=self.acc_width,
                                       groups=c.groups)
            bias_words[c.bias_base:c.bias_base + len(biases)] = biases
            if not self.weights_packed:
                continue
            words = pack_layer_weights(place.weight, lanes=lanes, weight_width=need_w,
                                       kernel_log=c.kernel_log, groups_log=c.groups_log,
                                       fold_log=c.fold_log, kernel_x_log=c.kernel_x_log,
                                       stride=c.stride)
            weight_words[c.weight_base:c.weight_base + len(words)] = words
        configs = [place.config for place in layers.values()]
        max_side = max([max(info.side for info in maps.values())]
                       + [c.height for c in configs] + [c.out_height for c in configs])
        self.engine_limits = dict(
            word_bits=max(info.side for info in maps.values()),
            max_words=max([1] + [c.words_per_frame for c in configs]),
            max_channels=max([1] + [c.in_channels for c in configs]),
            max_side=max_side,
            max_padding=max([0] + [c.padding for c in configs]),
            max_kernel_log=max([0] + [c.kernel_log for c in configs]),
            max_stride_log=max([0] + [c.stride_log for c in configs]),
            max_groups_log=max([0] + [c.groups_log for c in configs]),
            bank_depth=max([2] + [c.bank_words_needed for c in configs]))
        if any(c.fold_log for c in configs):
            # Built only where a layer folds: an engine without it is the same as before.
            self.engine_limits["max_fold_log"] = max(c.fold_log for c in configs)
        if self.input_buffer:   # likewise built only when asked for
            self.engine_limits["input_buffer"] = self.input_buffer
        if self.depthwise:      # and the bit planes' shifts only with SepConv unfused
            self.engine_limits["max_planes"] = self.planes
        return layers, weight_words, bias_words

    def _plan_shifts(self) -> dict[str, int]:
        """Shifts of every stream-writing step (per output channel, per group of lanes)."""
        net, lanes = self.net, self.lanes
        max_shift, shift_base, padded_shifts, words = 0, {}, {}, []
        for step in self.steps:
            if step.kind is StepKind.BEGIN_STEM or (step.kind is StepKind.LAYER
                                                    and step.sink.stream is not None):
                layer = net.layers[step.layer]
                shifts = (np.zeros(np.asarray(layer.weight).shape[0], dtype=np.int64)
                          if layer.shift is None   # the vanilla stem's stream: its sums as they are
                          else np.asarray(layer.shift, dtype=np.int64).reshape(-1))
                groups = ceil_div(shifts.shape[0], lanes)
                padded = np.zeros(groups * lanes, dtype=np.int64)
                padded[:shifts.shape[0]] = shifts
                if padded.min() < 0:
                    raise NotImplementedError(f"{step.layer}: negative stream shift")
                shift_base[step.name] = len(words)
                padded_shifts[step.name] = padded
                max_shift = max(max_shift, int(padded.max()))
                words.extend([None] * groups)
        self.shift_bits = max(1, max_shift.bit_length())
        for name, start in shift_base.items():
            padded = padded_shifts[name]
            for g in range(len(padded) // lanes):
                words[start + g] = pack_lanes(padded[g * lanes:(g + 1) * lanes],
                                              self.shift_bits + 1)
        self.shift_words = words
        return shift_base

    def _plan_identities(self, maps):
        """Vanilla: the identity memory, ``lanes`` unsigned values a word, one word per channel
        group of every step that adds a spike map (:attr:`identity_base`, aligned like
        ``tbase`` so that ``ibase + g == ibase | g``): a ``RESIDUAL_LIF`` step's ``identity``
        (its branch's last layer's, per output channel), a pool of spikes' 1."""
        net, lanes = self.net, self.lanes
        self.residual = any(step.residual is not None for step in self.steps)
        self.identity_base, words, values = {}, [], []
        for step in self.steps:
            if step.residual is None:
                continue
            info = maps[step.sink.spike_map] if step.kind is StepKind.RESIDUAL_LIF \
                else maps[step.residual]
            if step.kind is StepKind.RESIDUAL_LIF:
                identity = np.asarray(net.layers[step.layer].identity, dtype=np.int64)
            else:
                identity = np.ones(info.logical_channels, dtype=np.int64)
            if info.order is not None or maps[step.residual].order is not None:
                raise NotImplementedError(f"{step.name}: a head-aligned map in a residual")
            groups = ceil_div(info.channels, lanes)
            align = 1 << log2_ceil(groups)
            words += [None] * (-len(words) % align)
            self.identity_base[step.name] = len(words)
            padded = np.zeros(groups * lanes, dtype=np.int64)
            padded[:identity.shape[0]] = identity
            if padded.min() < 0:
                raise NotImplementedError(f"{step.name}: negative identity")
            values.append(padded)
            words += [padded[g * lanes:(g + 1) * lanes] for g in range(groups)]
        self.identity_bits = max([1] + [int(v.max()).bit_length() for v in values])
        self.identity_words = [0 if w is None else pack_lanes(w, self.identity_bits)
                               for w in words]

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def weight_depth(self) -> int:
        return max(2, len(self.weight_words))

    def memory_report(self) -> dict:
        """Bits of every shared memory (for the manifest and the docs)."""
        return self.memory.report(self.lanes, self.weight_depth, self.weight_width,
                                  self.acc_width, self.engine_limits["bank_depth"])

    def padding_report(self) -> dict:
        """``{memory: {"bits", "needed", "overhead"}}``: each memory's bits against the bits its
        contents need (``overhead`` = bits / needed). The padding: channel groups not filling
        the lanes, the bank bits that a narrow map's packed rows leave free (``W`` not a
        multiple of the side, or fewer groups than fit), head-aligned attention maps, kernels
        and output-channel groups of the weight layout rounded up to powers of two."""
        net, mem, T = self.net, self.memory, self.T
        bits = self.memory_report()
        needed = {
            "weights": sum(int(np.asarray(net.layers[name].weight).size) * self.weight_width
                           for name in mem.layers),
            "spike_maps": sum(T * info.logical_channels * info.side ** 2
                              for info in mem.maps.values()),
            "streams": self._stream_bits_needed(),
            "membranes": ((max if self.schedule == "layer" else sum)(
                mem.maps[name].side ** 2 * mem.maps[name].logical_channels
                for name in mem.sites) * mem.lif_bits if T > 1 else 0),
        }
        return {name: {"bits": bits[name], "needed": needed[name],
                       "overhead": bits[name] / needed[name] if needed[name] else None}
                for name in needed}
