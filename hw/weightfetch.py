"""Weights from external memory: an AXI4 read master that streams each layer's weights into an
on-chip ring the engine reads.

With ``SharedNetwork(weights="axi")`` no memory of the design holds the model's weights. They lie
in external memory in the compact layout below (:meth:`WeightRing.image`, written by
``make rtl`` as ``<unit>.weights.bin``); :class:`WeightFetcher` reads them through an AXI4 read
master port into a ring of ``depth`` words (the on-chip budget, a generation parameter) and the
engine reads the ring through its usual synchronous port. Under the time schedule every weight
is read once per time step: the bytes read per time step are the image's layers
(:attr:`WeightRing.bytes_per_step`, the floor plus the padding of words to lanes and beats),
whatever the spikes.

Blocks
    The engine takes a layer's input channels in order, channel ``c``'s spikes all before channel
    ``c + 1``'s, and uses channel ``c``'s weights, ``K * K * G`` words (taps ``(ky, kx)``, output
    groups ``g``), only while it takes channel ``c``'s spikes. Those words are one *block*. In
    the ring a block takes ``2 ** B`` words (``B = 2 * kernel_log + groups_log``: the engine's
    padded tap layout, so its address arithmetic is unchanged) at a multiple of ``2 ** B``.
Sequence
    The blocks of one time step, layer after layer in program order, take consecutive positions of
    one unbounded *sequence* of ring words; a layer starts at the next multiple of its block size
    (:attr:`RingLayer.offset`) and a time step at the next multiple of ``depth``
    (:attr:`WeightRing.span`), so sequence position ``p`` is ring word ``p mod depth`` and a
    layer's ring base (``offset mod depth``, its engine ``weight_base``) is the same at every time
    step.
Flow control
    Two sequence pointers: ``loaded`` (every block below it is in the ring) and ``free`` (every
    block below it has been read for the last time). A block is requested only when it ends at
    most ``depth`` past ``free``, so it never overwrites a block still to be read, and the engine
    takes a channel's spikes only when the channel's block ends at or below ``loaded``. A channel
    without spikes costs the engine nothing: its block is fetched and never waited for.
Schedules (:meth:`WeightRing.visits`)
    The time schedule visits every layer in program order at each time step, a time step
    ``span`` positions after the previous one. The layer schedule (``plan.schedule ==
    "layer"``) visits each layer at every time step before the next layer. A layer whose blocks
    fit the ring (``ring_words <= depth``) is fetched at its first visit and kept: its visits
    but the last *hold* ``free`` at the layer's first block, so nothing overwrites it, and the
    run reads it once. A larger layer is fetched again at every visit, ``stride`` positions
    (its extent rounded up to ``depth``) after the previous one, so its ring base never
    changes. The layers follow one another as in one time step (:attr:`RingLayer.offset`).
External image (:meth:`WeightRing.image`)
    Layer after layer in program order, each at a multiple of 64 bytes (:attr:`RingLayer.address`
    from the region's base); in a layer, block after block (``c``), in a block the words in
    ``(ky, kx, g)`` order (``g`` fastest), no holes: ``K * K * G`` words a block. A word is
    ``lanes`` signed ``weight_width``-bit weights (lane 0 in the least significant bits) in
    ``beats`` bus beats (:attr:`WeightRing.beats`), little-endian: byte ``i`` of a word is at
    byte address ``word_address + i``, as an AXI bus of any width lays memory out.

Reference: :meth:`WeightRing.image` (the bytes), :func:`ring_words` (the ring's contents block by
block, from the image), :meth:`WeightRing.request_order` (the bursts). Tests:
``tests/test_weightfetch.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from hw.params import bits_for, ceil_div, check_int, log2_ceil
from hw.sequencer import last_time_step

__all__ = ["AXI_PREFIX", "LAYER_ALIGN", "MAX_BURST", "BOUNDARY", "RingLayer", "RingVisit",
           "WeightRing",
           "axi4_read_ports", "ring_words", "WeightFetcher"]

#: Prefix of the AXI4 master's Verilog ports (``m_axi_araddr`` ...), what cocotbext-axi's
#: ``AxiReadBus.from_prefix(dut, "m_axi")`` and vendor interface inference look for.
AXI_PREFIX = "m_axi"
#: Alignment of each layer's weights in the external image, bytes.
LAYER_ALIGN = 64
#: Most beats of one AXI4 INCR burst.
MAX_BURST = 256
#: No AXI4 burst crosses a 4 KB boundary.
BOUNDARY = 4096


@dataclasses.dataclass(frozen=True)
class RingLayer:
    """One engine layer's weights: where they are in the image and in the ring sequence."""

    name: str
    #: Byte offset of the layer's first word in the external image.
    address: int
    #: Input channels: blocks.
    channels: int
    kernel: int
    kernel_log: int
    groups: int
    groups_log: int
    #: Sequence position of the layer's first block within a time step (a multiple of its
    #: block size); ``offset % depth`` is its engine ``weight_base``.
    offset: int

    @property
    def block_log(self) -> int:
        """``B``: a block takes ``2 ** B`` ring words."""
        return 2 * self.kernel_log + self.groups_log

    @property
    def block_words(self) -> int:
        """Words of a block in the image: ``K * K * G``."""
        return self.kernel * self.kernel * self.groups

    @property
    def ring_words(self) -> int:
        """Sequence positions the layer takes: ``channels << B``."""
        return self.channels << self.block_log


@dataclasses.dataclass(frozen=True)
class RingVisit:
    """One visit of the engine to a layer in a run (:meth:`WeightRing.visits`)."""

    #: Time step of the visit.
    t: int
    #: Index of the layer in :attr:`WeightRing.layers`.
    layer: int
    #: Sequence position of the layer's first block at this visit.
    position: int
    #: The fetcher reads the layer's blocks for this visit (False: the blocks of the layer's
    #: previous visit are still in the ring and are read again).
    fetch: bool
    #: The engine's reads at this visit free nothing: the layer's blocks stay in the ring for
    #: its next visit.
    hold: bool


class WeightRing:
    """The external weight image of a plan and its ring sequence (module docstring).

    Parameters
    ----------
    plan : hw.plan.SharedPlan
        Packed or not (``pack_weights=False``): the image is made from the layers' weights.
    depth : int, optional
        Ring words (a power of two at least the largest block, ``2 ** B``); default
        :meth:`default_depth`.
    data_width : int
        Bits of the AXI data bus: 32, 64, 128, 256, 512 or 1024 (default 64).
    address_width : int
        Bits of the AXI address (default 32); the image must fit.
    """

    def __init__(self, plan, depth: int | None = None, *, data_width: int = 64,
                 address_width: int = 32):
        self.plan = plan
        self.lanes = plan.lanes
        self.weight_width = plan.weight_width
        if data_width not in (32, 64, 128, 256, 512, 1024):
            raise ValueError(f"data_width must be one of 32, 64, 128, 256, 512, 1024 (bits), "
                             f"not {data_width}")
        self.data_width = data_width
        self.address_width = check_int("address_width", address_width, 12, 64)
        #: Bus beats of one weight word (a word is padded to whole beats).
        self.beats = ceil_div(self.lanes * self.weight_width, data_width)
        #: Bytes of one weight word in the image.
        self.word_bytes = self.beats * data_width // 8
        layers, address, offset = [], 0, 0
        for name, place in plan.memory.layers.items():
            c = place.config
            block_log = 2 * c.kernel_log + c.groups_log
            offset = -(-offset // (1 << block_log)) << block_log
            layer = RingLayer(name=name, address=address, channels=c.in_channels,
                              kernel=c.kernel, kernel_log=c.kernel_log, groups=c.groups,
                              groups_log=c.groups_log, offset=offset)
            layers.append(layer)
            address += -(-layer.channels * layer.block_words * self.word_bytes
                         // LAYER_ALIGN) * LAYER_ALIGN
            offset += layer.ring_words
        if not layers:
            raise ValueError("the network has no engine layer: nothing to fetch")
        self.layers: list[RingLayer] = layers
        #: Bytes of the image.
        self.size = address
        if self.size > 1 << self.address_width:
            raise ValueError(f"the weight image ({self.size} bytes) does not fit an "
                             f"address_width of {self.address_width} bits")
        self.max_block = max(1 << layer.block_log for layer in layers)
        if depth is None:
            depth = self.default_depth()
        depth = check_int("depth (weight ring words)", depth, 2)
        if depth & (depth - 1) or depth < self.max_block:
            raise ValueError(f"weight ring depth must be a power of two >= the largest block "
                             f"({self.max_block} words), not {depth}")
        self.depth = depth
        #: Sequence positions of one time step: the blocks' extent rounded up to ``depth``.
        self.span = -(-offset // depth) * depth
        #: The plan's schedule is the layer schedule: a layer's visits follow one another.
        self.layer_major = plan.schedule == "layer"
        #: Layer schedule: sequence positions between two visits of a layer, per layer: 0 (the
        #: layer fits the ring, is fetched at its first visit and kept for the others) or its
        #: extent rounded up to ``depth`` (fetched again at every visit).
        self.strides = [0 if layer.ring_words <= depth else -(-layer.ring_words // depth) * depth
                        for layer in layers]
        self._by_base = {plan.memory.layers[layer.name].config.weight_base: layer
                         for layer in layers}

    def default_depth(self) -> int:
        """Four of the largest blocks, at least 1,024 words: enough to hide a few hundred cycles
        of latency behind the engine on every layer of the demo and the paper models."""
        return max(1024, 4 * self.max_block)

    # -- what the hardware is built from ---------------------------------------------------
    def engine_config(self, config):
        """``config`` (a plan layer's :class:`hw.progengine.LayerConfig`) with its ring base."""
        layer = self._by_base[config.weight_base]
        return dataclasses.replace(config, weight_base=layer.offset % self.depth)

    @property
    def pointer_bits(self) -> int:
        """Bits of a sequence pointer: differences between the pointers in use stay below
        ``2 ** (pointer_bits - 1)`` in magnitude (a layer plus twice the ring)."""
        widest = max(layer.ring_words for layer in self.layers)
        return bits_for(widest + 2 * self.depth + 1) + 2

    def visits(self, time_steps: int) -> list[RingVisit]:
        """The engine's layer visits of a run of ``time_steps`` in order, with the sequence
        positions of the layers' blocks (module docstring, "Schedules")."""
        out = []
        if not self.layer_major:
            for t in range(time_steps):
                for index, layer in enumerate(self.layers):
                    out.append(RingVisit(t, index, t * self.span + layer.offset, True, False))
            return out
        base = 0
        for index, (layer, stride) in enumerate(zip(self.layers, self.strides)):
            for t in range(time_steps):
                if t:
                    base += stride
                out.append(RingVisit(t, index, base + layer.offset, t == 0 or stride > 0,
                                     stride == 0 and t < time_steps - 1))
        return out

    def bytes_per_run(self, time_steps: int) -> int:
        """Bytes read by a run of ``time_steps``: the layers' blocks at every fetching visit
        (``time_steps * bytes_per_step`` under the time schedule; under the layer schedule a
        layer that fits the ring is read once per run)."""
        return sum(self.layer_size(self.layers[visit.layer])
                   for visit in self.visits(time_steps) if visit.fetch)

    def layer_size(self, layer: RingLayer) -> int:
        """Bytes of a layer's blocks in the image (without its alignment padding)."""
        return layer.channels * layer.block_words * self.word_bytes

    @property
    def bytes_per_step(self) -> int:
        """Bytes read per time step: every layer's blocks (the image without the alignment
        padding after each layer)."""
        return sum(layer.channels * layer.block_words * self.word_bytes for layer in self.layers)

    def floor_bytes(self) -> int:
        """Bytes of the weights themselves: ``weight_width`` bits per weight of every layer."""
        bits = 0
        for layer in self.layers:
            weight = self.plan.memory.layers[layer.name].weight
            bits += int(np.prod(weight.shape)) * self.weight_width
        return ceil_div(bits, 8)

    def memory_bits(self) -> int:
        """On-chip bits of the ring."""
        return self.depth * self.lanes * self.weight_width

    # -- reference ------------------------------------------------------------------------
    def layer_words(self, layer: RingLayer) -> np.ndarray:
        """The layer's image words as lane values ``[channels, K, K, G, lanes]``."""
        weight = np.asarray(self.plan.memory.layers[layer.name].weight, dtype=np.int64)
        if weight.ndim == 2:
            weight = weight[:, :, None, None]
        cout = weight.shape[0]
        lanes, groups = self.lanes, layer.groups
        padded = np.zeros((groups * lanes,) + weight.shape[1:], dtype=np.int64)
        padded[:cout] = weight
        return padded.reshape(groups, lanes, layer.channels, layer.kernel,
                              layer.kernel).transpose(2, 3, 4, 0, 1)

    def layer_bytes(self, layer: RingLayer) -> bytes:
        """The layer's bytes in the image (without its alignment padding)."""
        values = self.layer_words(layer).reshape(-1, self.lanes)
        width = self.weight_width
        codes = (values & ((1 << width) - 1)).astype(np.uint64)
        bits = ((codes[:, :, None] >> np.arange(width, dtype=np.uint64)) & 1).astype(np.uint8)
        bits = bits.reshape(values.shape[0], self.lanes * width)
        pad = self.word_bytes * 8 - bits.shape[1]
        if pad:
            bits = np.concatenate([bits, np.zeros((bits.shape[0], pad), np.uint8)], axis=1)
        return np.packbits(bits, axis=1, bitorder="little").tobytes()

    def image(self) -> bytes:
        """The external image: every layer's bytes at its :attr:`RingLayer.address`."""
        out = bytearray(self.size)
        for layer in self.layers:
            data = self.layer_bytes(layer)
            out[layer.address:layer.address + len(data)] = data
        return bytes(out)

    def run_requests(self, time_steps: int, base: int = 0) -> list[tuple[int, int]]:
        """The bursts of a run of ``time_steps``, ``(byte address, beats)`` in issue order: the
        layer's bursts (:meth:`request_order`) at every fetching visit."""
        bursts = []
        for visit in self.visits(time_steps):
            if visit.fetch:
                bursts += self.request_order(base, [self.layers[visit.layer]])
        return bursts

    def request_order(self, base: int = 0, layers=None) -> list[tuple[int, int]]:
        """The bursts of one time step (or of ``layers``), ``(byte address, beats)`` in issue
        order: block by block, each split at 256 beats and at 4 KB boundaries (reference for
        the AR channel)."""
        beat_bytes = self.data_width // 8
        bursts = []
        for layer in self.layers if layers is None else layers:
            block_beats = layer.block_words * self.beats
            for c in range(layer.channels):
                address = base + layer.address + c * block_beats * beat_bytes
                left = block_beats
                while left:
                    room = (BOUNDARY - address % BOUNDARY) // beat_bytes
                    beats = min(left, MAX_BURST, room)
                    bursts.append((address, beats))
                    address += beats * beat_bytes
                    left -= beats
        return bursts

    def manifest(self) -> dict:
        """The image's layout for ``make rtl``'s manifest: per layer its byte offset and size
        (and, under the layer schedule, its stride between visits: 0 when kept in the ring)."""
        out = {
            "data_width": self.data_width, "address_width": self.address_width,
            "word_bytes": self.word_bytes, "beats_per_word": self.beats,
            "ring_depth": self.depth, "ring_bits": self.memory_bits(),
            "span": self.span, "bytes": self.size, "bytes_per_step": self.bytes_per_step,
            "floor_bytes": self.floor_bytes(),
            "layers": [{"name": layer.name, "offset": layer.address,
                        "bytes": layer.channels * layer.block_words * self.word_bytes,
                        "channels": layer.channels, "kernel": layer.kernel,
                        "groups": layer.groups, "ring_base": layer.offset % self.depth}
                       for layer in self.layers],
        }
        if self.layer_major:
            out["schedule"] = "layer"
            for entry, stride in zip(out["layers"], self.strides):
                entry["stride"] = stride
        return out


def ring_words(ring: WeightRing, image: bytes, layer: RingLayer, channel: int) -> dict[int, int]:
    """Reference: the ring words ``{ring address: word}`` the fetcher writes for one block,
    decoded from ``image`` (the engine's padded tap layout inside the block's slot)."""
    word_bytes, width = ring.word_bytes, ring.lanes * ring.weight_width
    base = layer.address + channel * layer.block_words * word_bytes
    slot = (layer.offset + (channel << layer.block_log)) % ring.depth
    out, index = {}, 0
    for ky in range(layer.kernel):
        for kx in range(layer.kernel):
            for g in range(layer.groups):
                raw = image[base + index * word_bytes:base + (index + 1) * word_bytes]
                word = int.from_bytes(raw, "little") & ((1 << width) - 1)
                tap = (((ky << layer.kernel_log) | kx) << layer.groups_log) | g
                out[slot + tap] = word
                index += 1
    return out


def axi4_read_ports(address_width: int, data_width: int, id_width: int = 1) -> dict:
    """The AXI4 read master's flat ports (``m_axi_ar*``, ``m_axi_r*``), as component members."""
    p = AXI_PREFIX
    return {
        f"{p}_arid": Out(id_width), f"{p}_araddr": Out(address_width), f"{p}_arlen": Out(8),
        f"{p}_arsize": Out(3), f"{p}_arburst": Out(2), f"{p}_arlock": Out(1),
        f"{p}_arcache": Out(4), f"{p}_arprot": Out(3), f"{p}_arvalid": Out(1),
        f"{p}_arready": In(1),
        f"{p}_rid": In(id_width), f"{p}_rdata": In(data_width), f"{p}_rresp": In(2),
        f"{p}_rlast": In(1), f"{p}_rvalid": In(1), f"{p}_rready": Out(1),
    }


class WeightFetcher(wiring.Component):
    """Stream a run's weights over AXI4 into the ring; gate the engine on what has arrived.

    Built from a :class:`WeightRing` and the most time steps of a run, ``T``. Per run
    (``start``) it reads the layers at every visit that fetches them
    (:meth:`WeightRing.visits` for the run's ``time_steps``, sampled at ``start``; 0 or more
    than ``T``: ``T``), block by block (:meth:`WeightRing.run_requests`), and writes each block
    into its ring slot (:func:`ring_words`). ``layer_start`` pulses follow the same visits.

    Ports
    -----
    start : In(1)
        Pulse: a run begins (pointers and walkers restart; the previous run must be over).
    base : In(address_width)
        Byte address of the image in external memory (held for the run; a multiple of 64).
    time_steps : In(range(T + 1))
        Time steps of the run, sampled at ``start`` (as :class:`hw.sequencer.Sequencer`'s).
    m_axi_ar* / m_axi_r* : the AXI4 read master (:func:`axi4_read_ports`): INCR bursts of at most
        256 beats, never across 4 KB, ``arsize`` the bus width, ID 0, ``arcache`` 0b0011
        (normal, bufferable), ``arprot`` 0; every burst is in order, so any number may be
        outstanding; ``rready`` is low only one cycle per layer change.
    write : In(WritePort.Signature) : the ring's write port (``depth`` words).
    layer_start : In(1)
        Pulse: the engine begins its next layer visit (:meth:`WeightRing.visits`' order; the
        fetcher counts them). Pulses come at least two cycles apart (an engine cannot finish
        a layer sooner: ``block_ready`` is 0 in the cycle after a pulse).
    block_done : In(pointer_bits)
        The engine's progress in its layer, relative to the layer's first block: every block
        below it has been read for the last time (``ProgEngine.block_done``; held until the
        engine's reads of a block are over).
    block_need : In(pointer_bits)
        End, relative to the layer, of the block of the engine's next item.
    block_need_load, block_need_take : In(pointer_bits), In(1)
        ``block_need``'s next value: ``block_need_load`` where ``block_need_take`` is high,
        else ``block_need`` itself (``ProgEngine``'s ports of the same names).
    block_ready : Out(1)
        ``block_need`` has been loaded (``loaded - layer base >= block_need``), from a
        register: four compares of registers (no block lands or a block lands; ``block_need``
        or ``block_need_load``) side by side, picked by selects, so no subtraction or compare lies between the
        engine's registers and its handshake. 1 from the cycle after the block's last ring
        write, or one cycle later where that write came in the cycle after the R walker's
        layer load. 0 in the cycle after ``start`` and after
        ``layer_start`` (the engine has no decoded item then).
    error : Out(1)
        Sticky until ``start``: a read answered other than OKAY.
    bytes_read : Out(32)
        Bytes received since ``start`` (for the report).

    Cycles: an AR request a cycle at best (the next burst's fields are registered in the cycle
    the previous one is taken), one R beat a cycle; a layer change takes two cycles on the AR
    side (the layer's constants, then the beats to the first 4 KB boundary) and one on the R
    side; reads run ahead of the engine by up to the ring's ``depth`` words.
    """

    def __init__(self, ring: WeightRing, T: int):
        self.ring = ring
        self.T = check_int("T", T, 1)
        self.P = ring.pointer_bits
        ports = {
            "start": In(1), "base": In(ring.address_width), "time_steps": In(range(T + 1)),
            "write": In(WritePort.Signature(addr_width=log2_ceil(ring.depth),
                                             shape=unsigned(ring.lanes * ring.weight_width))),
            "layer_start": In(1), "block_done": In(self.P), "block_need": In(self.P),
            "block_need_load": In(self.P), "block_need_take": In(1), "block_ready": Out(1), "error": Out(1), "bytes_read": Out(32),
        }
        ports.update(axi4_read_ports(ring.address_width, ring.data_width))
        super().__init__(ports)

    def _port(self, name):
        return getattr(self, f"{AXI_PREFIX}_{name}")

    def elaborate(self, platform):
        m = Module()
        ring, P, T = self.ring, self.P, self.T
        L = len(ring.layers)
        AW, D = ring.address_width, ring.data_width
        beat_bytes = D // 8
        beat_log = log2_ceil(beat_bytes)
        ring_bits = log2_ceil(ring.depth)
        word_bits = ring.lanes * ring.weight_width
        chan_bits = bits_for(max(layer.channels for layer in ring.layers) + 1)
        max_block_beats = max(layer.block_words * ring.beats for layer in ring.layers)
        kmax = max(layer.kernel for layer in ring.layers)
        gmax = max(layer.groups for layer in ring.layers)
        block_log_max = max(layer.block_log for layer in ring.layers)

        # Per-layer constants: one entry a layer, read by three walkers through their own
        # multiplexers (a few dozen entries: logic, not a block RAM).
        def table(values, width):
            return Array(Const(v, width) for v in values)

        t_address = table([layer.address for layer in ring.layers], AW)
        t_channels_m1 = table([layer.channels - 1 for layer in ring.layers], chan_bits)
        t_offset = table([layer.offset for layer in ring.layers], P)
        t_block = table([1 << layer.block_log for layer in ring.layers], P)
        # the next layer's offset (the time schedule's and the layer schedule's next layer)
        t_offset_next = table([ring.layers[(i + 1) % L].offset for i in range(L)], P)
        t_first_end = table([(layer.offset + (1 << layer.block_log)) % (1 << P)
                             for layer in ring.layers], P)
        t_second_end = table([(layer.offset + (2 << layer.block_log)) % (1 << P)
                              for layer in ring.layers], P)
        t_end = table([(layer.offset + (1 << layer.block_log)) % (1 << P)
                       for layer in ring.layers], P)
        t_block_beats = table([layer.block_words * ring.beats for layer in ring.layers],
                              bits_for(max_block_beats + 1))
        t_kernel_m1 = table([layer.kernel - 1 for layer in ring.layers], bits_for(kmax + 1))
        t_groups_m1 = table([layer.groups - 1 for layer in ring.layers], bits_for(gmax + 1))
        t_kx_step = table([1 << layer.groups_log for layer in ring.layers], block_log_max + 1)
        t_ky_step = table([1 << (layer.kernel_log + layer.groups_log) for layer in ring.layers],
                          block_log_max + 1)
        last_layer = L - 1

        # --- consumer side: the engine's layer base, and the free pointer ---------------------
        e_index = Signal(range(max(2, L)))
        e_time = Signal(P)        # sequence position of the engine's time step
        g_cur = Signal(P)         # sequence position of the engine's layer
        engaged = Signal()        # the engine has begun its first layer of the run
        releasing = engaged
        if ring.layer_major:
            # Layer schedule: a layer's visits follow one another; a layer kept in the ring
            # (stride 0) frees nothing before its last visit (``hold``).
            t_stride = table(ring.strides, P)
            # a layer's next visit's base less the visit's time: its stride and offset
            t_stride_offset = table([(stride + layer.offset) % (1 << P)
                                     for stride, layer in zip(ring.strides, ring.layers)], P)
            t_keep = Array(Const(stride == 0) for stride in ring.strides)
            e_t = Signal(range(max(2, T)))
            e_t_last = Signal(range(max(2, T)))
            hold = Signal()
            releasing = engaged & ~hold
            with m.If(self.start):
                m.d.sync += [e_t.eq(0), e_t_last.eq(last_time_step(self.time_steps, T)),
                             hold.eq(0)]
            with m.Elif(self.layer_start):
                m.d.sync += hold.eq(t_keep[e_index] & (e_t != e_t_last))
                with m.If(e_t == e_t_last):
                    m.d.sync += e_t.eq(0)
                with m.Else():
                    m.d.sync += [e_t.eq(e_t + 1), e_time.eq(e_time + t_stride[e_index])]
        g_next = Signal(P)        # g_cur's value in the next cycle
        # The next layer's base, a register: e_time + t_offset[e_index] a cycle after either
        # changes (layer_start pulses come at least two cycles apart), its first value at start.
        g_new = Signal(P)
        m.d.comb += g_next.eq(g_cur)
        m.d.sync += [g_cur.eq(g_next), g_new.eq(e_time + t_offset[e_index])]
        with m.If(self.start):
            m.d.comb += g_next.eq(0)
            m.d.sync += [e_index.eq(0), e_time.eq(0), engaged.eq(0),
                         g_new.eq(ring.layers[0].offset)]
        with m.Elif(self.layer_start):
            m.d.comb += g_next.eq(g_new)
            m.d.sync += engaged.eq(1)
            if ring.layer_major:
                with m.If(e_t == e_t_last):
                    m.d.sync += e_index.eq(e_index + 1)
            else:
                with m.If(e_index == last_layer):
                    m.d.sync += [e_index.eq(0), e_time.eq(e_time + ring.span)]
                with m.Else():
                    m.d.sync += e_index.eq(e_index + 1)
        # Every block below ``free`` has been read for the last time. Two registers after the
        # engine's: a block's last read is at most a cycle after ``block_done`` passes it.
        # ``free_limit`` = free + depth + 1, registered beside ``free``: a block fits when it
        # ends below it (one subtraction on the request's path, not two).
        free_now = Signal(P)
        free_d = Signal(P)
        free = Signal(P)
        free_limit = Signal(P)
        m.d.comb += free_now.eq(g_cur + Mux(releasing, self.block_done, 0))
        m.d.sync += [free_d.eq(free_now), free.eq(free_d),
                     free_limit.eq(free_d + (ring.depth + 1))]
        with m.If(self.start):
            m.d.sync += [free_d.eq(0), free.eq(0), free_limit.eq(ring.depth + 1)]

        # ``block_ready`` is a register equal to ``loaded - g_cur >= block_need`` (``avail``) in
        # every cycle the engine can use it, but one: it may come a cycle late for a block that
        # lands in the cycle after a layer load of the R walker. Its next value is one of four
        # compares of registers with registers, picked last by selects: a block lands this
        # cycle or not (``loaded`` becomes ``w_end``, the landing block's end), and the engine's
        # decode register takes an item or not (``block_need`` becomes ``block_need_load``).
        # ``w_end - g_cur`` is itself a register (``land``), written with ``w_end2 - g_cur``
        # instead where a landing steps ``w_end`` to ``w_end2`` (the two differences side by
        # side, picked by the step): no subtraction lies before the compares. It is a cycle
        # old, which changes no answer but one:
        # - after ``start`` no block lands (the first burst is not even asked for yet);
        # - after ``layer_start`` ``g_cur`` has moved up (``land`` too large by the move): but
        #   blocks land in the engine's order, so a block landing then ends at or past the
        #   block the engine needs in its new layer, and the true answer is 1 too;
        # - after a layer load of the R walker ``land`` holds the previous layer's last end,
        #   below the landing block's: no block of the engine ends between it and ``loaded``'s
        #   jump target (the alignment gap), so the answer is ``avail``'s of that cycle, which
        #   does not count the landing yet: a cycle late at worst, for a visit's first block.
        # In the cycle after ``start`` or ``layer_start`` it is 0: the engine has no decoded
        # item then (its feed needs more cycles than that). ``loaded``'s jump at a layer load
        # changes no compare the engine can make: the blocks of the engine's layer end at or
        # below ``loaded`` before it, or past the jump's target. Positions wrap: differences
        # are taken modulo ``2 ** P`` (``pointer_bits`` leaves room for ``land``'s cycle).
        loaded = Signal(P)        # every block below it is in the ring
        loaded_next = Signal(P)
        loaded_held = Signal(P)   # loaded_next unless a block lands (start, layer load, hold)
        avail = Signal(signed(P))           # loaded - g_cur, registered from next values
        w_end = Signal(P)                   # w_pos + w_block: the R walker's block's end
        w_end2 = Signal(P)                  # w_end + w_block: the next block's end
        land = Signal(signed(P))            # w_end - g_cur with g_cur of the previous cycle
        landing = Signal()                  # the R walker's block is whole this cycle
        step_end = Signal()                 # ... and w_end steps to w_end2
        w_load = Signal()                   # the R walker loads its layer's constants
        ready = Signal()                    # the engine decodes nothing before a run
        need, need_load = self.block_need.as_signed(), self.block_need_load.as_signed()
        take = self.block_need_take
        m.d.comb += [loaded_held.eq(loaded), loaded_next.eq(Mux(landing, w_end, loaded_held)),
                     self.block_ready.eq(ready)]
        avail_ready = Mux(take, avail >= need_load, avail >= need)
        land_ready = Mux(take, land >= need_load, land >= need)
        # avail's four candidates side by side (the R walker's block end or the held loaded,
        # less the engine's layer base or the next one), picked last: neither the landing
        # decision (the beat handshake, the word and block counters) nor ``layer_start`` meets
        # a carry chain after it.
        m.d.sync += [loaded.eq(loaded_next),
                     avail.eq(Mux(self.start, 0,
                                  Mux(self.layer_start,
                                      Mux(landing, w_end - g_new, loaded_held - g_new),
                                      Mux(landing, w_end - g_cur, loaded_held - g_cur)))),
                     land.eq(Mux(step_end, w_end2 - g_cur, w_end - g_cur)),
                     ready.eq(Mux(self.start | self.layer_start, 0,
                                  Mux(landing, land_ready, avail_ready)))]

        # --- AR walker: one burst at a time into registers, block by block -------------------
        a_active = Signal()
        a_issue = Signal()        # registered request waiting for arready
        a_t = Signal(range(T + 1))
        a_t_last = Signal(range(max(2, T)))   # the run's last time step (set at start)
        a_layer = Signal(range(max(2, L)))
        a_c = Signal(chan_bits)
        a_c_last = Signal(chan_bits)
        a_addr = Signal(AW)       # next beat's byte address in external memory (base + ...)
        # Beats from a_addr to the next 4 KB boundary (1 .. a page), kept beside a_addr: a burst
        # that reaches the boundary sets it to a page, any other takes its beats off it.
        page_beats = BOUNDARY >> beat_log
        room = Signal(range(page_beats + 1))
        a_left = Signal(bits_for(max_block_beats + 1))   # beats of the block not requested
        a_block_beats = Signal.like(a_left)
        a_end = Signal(P)         # sequence position just past the block being requested
        a_block = Signal(P)       # its size in ring words
        a_time = Signal(P)
        a_load = Signal()         # load the layer's constants next cycle
        # a_left == 0: the next block starts. A register written with a_left (1 at the layer
        # load, else the burst's ``block_last``, which is true exactly when it takes every beat
        # left): no compare of a_left's bits before ``capped``, ``reach`` and the enables.
        a_new_block = Signal(init=1)

        ar_addr = self._port("araddr")
        ar_len = self._port("arlen")
        m.d.comb += [self._port("arid").eq(0), self._port("arsize").eq(beat_log),
                     self._port("arburst").eq(0b01), self._port("arlock").eq(0),
                     self._port("arcache").eq(0b0011), self._port("arprot").eq(0),
                     self._port("arvalid").eq(a_issue)]

        fits = Signal()           # the block's slot is free: it ends <= free + depth
        beyond = Signal(signed(P))   # a_end - (free + depth + 1), modulo 2 ** P: the pointers
        # wrap, and their differences stay far inside the signed range (``pointer_bits``)
        m.d.comb += [beyond.eq(a_end - free_limit),
                     fits.eq(beyond < 0)]
        left_now = Mux(a_new_block, a_block_beats, a_left)
        capped = Signal(range(MAX_BURST + 1))
        m.d.comb += capped.eq(Mux(left_now > MAX_BURST, MAX_BURST, left_now))
        # ``reach``: the burst ends at the boundary (its beats: ``room``, else ``capped``). Each
        # result (``a_addr``, ``room``, ``a_left``, AxLEN = beats - 1, the block's last burst)
        # is chosen between two values computed side by side, not computed from the burst's
        # beats: no carry chain follows another on the way from ``room`` and ``a_left`` back to
        # the registers.
        reach = Signal()
        m.d.comb += reach.eq(capped >= room)
        len_m1 = Mux(reach, room - 1, Mux(left_now > MAX_BURST, MAX_BURST - 1, left_now - 1))
        next_page = Cat(Const(0, 12), a_addr[12:] + 1)
        block_last = Mux(reach, left_now == room, left_now <= MAX_BURST)   # all beats left go
        # The layer's first beat's low address bits give the room, in the cycle after the
        # layer load (``a_page``) from the address register: no table and addition before it.
        a_page = Signal()
        # The visit being fetched is the run's last (its last block ends the walk), a register
        # written at the layer load: no compare of the visit counters after ``block_last``.
        a_final = Signal()
        if ring.layer_major:
            final_visit = ((a_t == a_t_last) | t_keep[a_layer]) & (a_layer == last_layer)
        else:
            final_visit = (a_layer == last_layer) & (a_t == a_t_last)

        with m.If(a_issue & self._port("arready")):
            m.d.sync += a_issue.eq(0)
        with m.If(self.start):
            m.d.sync += [a_active.eq(1), a_issue.eq(0), a_t.eq(0), a_layer.eq(0),
                         a_time.eq(0), a_load.eq(1), a_page.eq(0)]
            m.d.sync += a_t_last.eq(last_time_step(self.time_steps, T))
        with m.Elif(a_load):
            # Layer constants into registers; the first block starts.
            m.d.sync += [a_load.eq(0), a_page.eq(1), a_c.eq(0), a_final.eq(final_visit),
                         a_c_last.eq(t_channels_m1[a_layer]),
                         a_addr.eq(self.base + t_address[a_layer]), a_left.eq(0),
                         a_new_block.eq(1),
                         a_block_beats.eq(t_block_beats[a_layer]),
                         a_end.eq(a_time + t_end[a_layer]), a_block.eq(t_block[a_layer])]
        with m.Elif(a_page):
            m.d.sync += [a_page.eq(0), room.eq(page_beats - a_addr[beat_log:12])]
        with m.Elif(a_active & (~a_issue | self._port("arready"))):
            # The next burst into the AR registers (in the cycle the previous one is taken: a
            # burst a cycle); a block's first burst waits for its slot.
            with m.If(~a_new_block | fits):
                m.d.sync += [a_issue.eq(1), ar_addr.eq(a_addr), ar_len.eq(len_m1),
                             a_addr.eq(Mux(reach, next_page, a_addr + (capped << beat_log))),
                             room.eq(Mux(reach, page_beats, room - capped)),
                             a_left.eq(Mux(reach, left_now - room, left_now - capped)),
                             a_new_block.eq(block_last)]
                with m.If(block_last):
                    # The block's last burst: step to the next block, layer or time step.
                    with m.If(a_c != a_c_last):
                        m.d.sync += [a_c.eq(a_c + 1), a_end.eq(a_end + a_block)]
                    with m.Else():
                        m.d.sync += a_load.eq(1)
                        if ring.layer_major:
                            # The layer's next fetching visit, else the next layer.
                            with m.If((a_t == a_t_last) | t_keep[a_layer]):
                                m.d.sync += [a_layer.eq(a_layer + 1), a_t.eq(0)]
                            with m.Else():
                                m.d.sync += [a_t.eq(a_t + 1),
                                             a_time.eq(a_time + t_stride[a_layer])]
                        else:
                            with m.If(a_layer != last_layer):
                                m.d.sync += a_layer.eq(a_layer + 1)
                            with m.Else():
                                m.d.sync += [a_layer.eq(0), a_time.eq(a_time + ring.span),
                                             a_t.eq(a_t + 1)]
                        with m.If(a_final):
                            m.d.sync += [a_active.eq(0), a_load.eq(0)]

        # --- R walker: beats into words, words into the block's slot --------------------------
        w_layer = Signal(range(max(2, L)))
        w_time = Signal(P)
        # The layer's base (w_time + t_offset[w_layer]), a register written with w_layer and
        # w_time: the layer load's ``loaded`` feeds ``avail``'s subtraction with no table and
        # addition before it.
        w_base = Signal(P)
        w_c = Signal(chan_bits)
        w_c_last = Signal(chan_bits)
        w_pos = Signal(P)         # sequence position of the block being written
        w_block = Signal(P)
        w_g = Signal(bits_for(gmax + 1))
        w_g_last = Signal.like(w_g)
        w_kx = Signal(bits_for(kmax + 1))
        w_ky = Signal.like(w_kx)
        w_k_last = Signal.like(w_kx)
        w_kx_step = Signal(block_log_max + 1)
        w_ky_step = Signal(block_log_max + 1)
        w_row = Signal(block_log_max + 1)    # (ky << kl) << gl
        w_tap = Signal(block_log_max + 1)    # w_row + (kx << gl)
        w_beat = Signal(range(max(2, ring.beats)))
        shift = Signal(ring.beats * D)
        beat_ok = Signal()
        m.d.comb += [self._port("rready").eq(~w_load),
                     beat_ok.eq(self._port("rvalid") & ~w_load)]
        rdata = self._port("rdata")
        word = Signal(word_bits)
        if ring.beats == 1:
            m.d.comb += word.eq(rdata[:word_bits])
        else:
            # The earlier beats of the word sit in the top of ``shift`` (a beat enters at the
            # top, the oldest moves towards bit 0): the word is ``shift``'s top and this beat.
            m.d.comb += word.eq(Cat(shift[D:], rdata)[:word_bits])
        word_end = Signal()
        m.d.comb += word_end.eq(beat_ok & (w_beat == ring.beats - 1))
        m.d.comb += [self.write.addr.eq((w_pos[:ring_bits] | w_tap) + w_g),
                     self.write.data.eq(word), self.write.en.eq(word_end)]
        if ring.layer_major:
            w_t = Signal(range(max(2, T)))
            with m.If(self.start):
                m.d.sync += w_t.eq(0)
        with m.If(self.start):
            m.d.sync += [w_layer.eq(0), w_time.eq(0), w_load.eq(1), w_beat.eq(0),
                         w_base.eq(0),                  # the first layer's offset
                         self.error.eq(0), self.bytes_read.eq(0)]
            m.d.comb += loaded_held.eq(0)
        with m.Elif(w_load):
            m.d.sync += [w_load.eq(0), w_c.eq(0), w_c_last.eq(t_channels_m1[w_layer]),
                         w_pos.eq(w_base), w_block.eq(t_block[w_layer]),
                         w_end.eq(w_time + t_first_end[w_layer]),
                         w_end2.eq(w_time + t_second_end[w_layer]),
                         w_g.eq(0), w_g_last.eq(t_groups_m1[w_layer]), w_kx.eq(0), w_ky.eq(0),
                         w_k_last.eq(t_kernel_m1[w_layer]), w_kx_step.eq(t_kx_step[w_layer]),
                         w_ky_step.eq(t_ky_step[w_layer]), w_row.eq(0), w_tap.eq(0)]
            # ``loaded`` runs up to the layer's first block: the alignment gap holds no block.
            m.d.comb += loaded_held.eq(w_base)
        with m.Elif(beat_ok):
            m.d.sync += self.bytes_read.eq(self.bytes_read + beat_bytes)
            with m.If(self._port("rresp") != 0):
                m.d.sync += self.error.eq(1)
            if ring.beats > 1:
                m.d.sync += shift.eq(Cat(shift[D:], rdata))
                with m.If(w_beat == ring.beats - 1):
                    m.d.sync += w_beat.eq(0)
                with m.Else():
                    m.d.sync += w_beat.eq(w_beat + 1)
            with m.If(word_end):
                with m.If(w_g != w_g_last):
                    m.d.sync += w_g.eq(w_g + 1)
                with m.Elif(w_kx != w_k_last):
                    m.d.sync += [w_g.eq(0), w_kx.eq(w_kx + 1), w_tap.eq(w_tap + w_kx_step)]
                with m.Elif(w_ky != w_k_last):
                    m.d.sync += [w_g.eq(0), w_kx.eq(0), w_ky.eq(w_ky + 1),
                                 w_row.eq(w_row + w_ky_step), w_tap.eq(w_row + w_ky_step)]
                with m.Else():
                    # The block is in the ring.
                    m.d.sync += [w_g.eq(0), w_kx.eq(0), w_ky.eq(0), w_row.eq(0), w_tap.eq(0)]
                    m.d.comb += landing.eq(1)
                    with m.If(w_c != w_c_last):
                        m.d.sync += [w_c.eq(w_c + 1), w_pos.eq(w_pos + w_block),
                                     w_end.eq(w_end2), w_end2.eq(w_end2 + w_block)]
                        m.d.comb += step_end.eq(1)
                    with m.Else():
                        m.d.sync += w_load.eq(1)
                        if ring.layer_major:
                            # The AR walker's order of visits. After the run's last block
                            # nothing loads: ``loaded`` stays past every block of the run.
                            with m.If((w_t == a_t_last) | t_keep[w_layer]):
                                m.d.sync += [w_layer.eq(w_layer + 1), w_t.eq(0),
                                             w_base.eq(w_time + t_offset_next[w_layer])]
                                with m.If(w_layer == last_layer):
                                    m.d.sync += w_load.eq(0)
                            with m.Else():
                                m.d.sync += [w_t.eq(w_t + 1),
                                             w_time.eq(w_time + t_stride[w_layer]),
                                             w_base.eq(w_time + t_stride_offset[w_layer])]
                        else:
                            with m.If(w_layer != last_layer):
                                m.d.sync += [w_layer.eq(w_layer + 1),
                                             w_base.eq(w_time + t_offset_next[w_layer])]
                            with m.Else():
                                # the first layer's offset is 0: the next base is the
                                # next time step's
                                m.d.sync += [w_layer.eq(0), w_time.eq(w_time + ring.span),
                                             w_base.eq(w_time + ring.span)]
        return m

