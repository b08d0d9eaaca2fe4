"""Whole quantized Meta-SpikeFormer on ONE shared engine: a time-multiplexed network.

:class:`SharedNetwork` runs the network program (:class:`hw.program.Program`, from the same
``quant.graph.walk`` the integer model uses) on shared hardware:

* one programmable synapse engine (:class:`hw.progengine.ProgEngine`) for every convolution,
  linear layer and the classifier, configured per step from a generated descriptor table;
* weights in one weight memory (``weights="internal"``: inside the design, initialised from the
  packed image; ``"external"``: a synchronous read port to a memory outside the design, since the
  demo's folded weights, 5.2 Mbit at 8 bits, exceed every ECP5's block RAM; ``"axi"``: an AXI4
  read master, :class:`hw.weightfetch.WeightFetcher`, streams them from external memory into an
  on-chip ring of ``weight_ring`` words, whatever the model's size);
* one LIF array (:class:`hw.lif.LIFArray`) whose membrane memory holds every LIF site at its own
  base address (membranes are kept per site, so time steps run exactly as the integer model; at
  T = 1 no membrane is ever read back, so none is kept);
* one spike memory (``lanes`` banks) and one residual-stream memory, every map and stream at
  its own base address;
* the stem (:class:`hw.stem.StemConv`, products by shift and add), written straight into the
  first residual stream (``stream = acc << shift``); with T > 1 it runs once per image, at
  ``t = 0``, into a stream place of its own (``stem_out``) that the first add into the first
  stream reads at every time step (the image is static: the stem's output repeats), and one
  SDSA unit per attention block (each keeps its attention
  LIF's membranes across time steps), of the model's operator (``cfg.sdsa``, 1 to 4: SDSA-3/4
  write the attention LIF's spikes, SDSA-1/2 the Q rows masked by the channel LIF; SDSA-4's
  unit holds its block's learned threshold in its threshold memory; SDSA-2 has no V, so its
  feed reads q and k only);
* for an event model (``cfg.events``) no stem: each time step's event frame comes in on the
  ``events`` port, the map writer stores it as the ``input`` spike map, and the first layer
  runs on the engine like every other layer (the network then holds no multiplier at all).

Where everything lives (spike maps, streams, LIF sites, layers, shift words) is planned in plain
Python by :class:`hw.plan.SharedPlan`, which also builds the descriptor table; this module builds
the hardware from that plan (``self.plan``) out of units, each with its own contract and tests:

* :class:`hw.sequencer.Sequencer`: walks the descriptor table over T time steps (decode, load
  the descriptor, ``step_start``, wait for ``finish``);
* :class:`hw.mapreader.SpikeMapReader`: the spike memory's read port, feeding row words to the
  engine and q/k/v rows (SDSA-2: q/k) to the SDSA units;
* :class:`hw.mapwriter.SpikeMapWriter`: the spike memory's write port, LIF or SDSA spike beats
  assembled into map rows and written whole;
* :class:`hw.residual.StreamWriteStage` (``stream = (add ? stream : 0) + (value << shift)``, with
  the shift ROM), :class:`hw.residual.StreamReader` (a stream's words in order, for the stream LIF
  and the pool) and :class:`hw.residual.Pool` (per-group sums, then one group a beat to the LIF).

What stays here is the shell (ports, stem, logits) and the per-kind routing between the units.
Every unit reads only its fields of the descriptor registers (its ``FIELDS``); the descriptor
holds exactly the fields some unit reads (:meth:`SharedNetwork.descriptor_layout`), so the step
table costs one registered decode and an OR per bit, not a path through every step.

Timing (ECP5): the spike memory's output word is registered before any multiplexer; its read and
write addresses live in registers stepped by additions; the writer's and readers' counters carry
registered end flags. See docs/shared-network.md.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.depthwise import DepthwiseEngine
from hw.descriptor import descriptor_fields, descriptor_rom
from hw.weightfetch import AXI_PREFIX, WeightFetcher, WeightRing, axi4_read_ports
from hw.lif import LIFArray
from hw.mapreader import SpikeMapReader
from hw.mapwriter import SpikeMapWriter
from hw.params import NO_RW_CHECK, bits_for, ceil_div, rom_attrs, threshold_attrs
from hw.plan import SharedPlan
from hw.planes import PlaneWriter
from hw.program import SinkKind, StepKind
from hw.progengine import ProgEngine
from hw.residual import Pool, SpikeFetch, StreamReader, StreamWriteStage
from hw.sdsa import SDSA, Variant
from hw.sequencer import Sequencer
from hw.stem import StemConv

__all__ = ["SharedNetwork", "collision_condition", "network_signature"]


def collision_condition(read, write):
    """A read port and a write port of one memory at the same word in this cycle: what the
    ``{memory}_collision_probe`` signals carry (the co-simulation fails where it settles to 1)."""
    return read.en & write.en & (read.addr == write.addr)


def network_signature(net, steps, pixel_words: int, logit_bits: int) -> dict:
    """Return the whole network's ports (the shell a testbench or SoC drives)."""
    classes = net.layers["head"].weight.shape[0]
    if net.pixel is None:   # event input: one pixel's channel bits a beat
        inputs = {"events": In(stream.Signature(unsigned(net.cfg.in_channels)))}
    else:
        inputs = {"load_address": In(bits_for(pixel_words)), "load_data": In(net.pixel.bits),
                  "load_enable": In(1)}
    return {
        **inputs,
        "start": In(1),
        # time steps of the next run, sampled at ``start`` (0: all ``T``; one build serves
        # every T up to its own)
        "time_steps": In(range(net.cfg.T + 1)),
        "ready": Out(1),
        "done": Out(1),
        "logits": Out(data.ArrayLayout(signed(logit_bits), classes)),
        "step": Out(range(len(steps) + 1)),
        "time_step": Out(range(max(2, net.cfg.T))),
        "cycles": Out(32),
    }


class SharedNetwork(wiring.Component):
    """Run a whole quantized network on one shared engine: load pixels, ``start``, ``done``.

    Parameters
    ----------
    net : quant.quantize.IntNet
    lanes : int
        Output channels per cycle of the engine, the LIF array and every memory word (any
        count: an attention head is ``ceil(head_width / lanes)`` words, :mod:`hw.plan`).
    weights : ``"internal"``, ``"external"`` or ``"axi"``
        Where the weight memory lives (module docstring).
    plan : SharedPlan, optional
        The plan, when the caller has made it already (``SharedPlan(net, lanes)``).
    weight_ring : int, optional
        ``weights="axi"``: words of the on-chip ring (a power of two; default
        :meth:`hw.weightfetch.WeightRing.default_depth`).
    axi_data_width, axi_address_width : int
        ``weights="axi"``: the AXI4 bus (default 64 data bits, 32 address bits).
    input_buffer : int
        Words the engine's input slice holds, dropping words without spikes as they arrive
        (:attr:`hw.plan.SharedPlan.input_buffer`): 0 (default, the plain slice) or 2..64. The
        same results; a layer whose source map has runs of empty rows takes fewer cycles.
    fold : int
        Column folding (:attr:`hw.plan.SharedPlan.fold`): 1 (default, none), 2, 4, ... up to
        ``lanes`` (a power of two); not with ``weights="axi"``.
    bias_memory : str
        ``"logic"`` (default) or ``"block"``: where the engine's bias memory goes
        (:class:`hw.progengine.ProgEngine`); only with ``parameters="internal"``.
    threshold_memory : str
        ``"auto"`` (default) or ``"logic"``: where the LIF array's threshold memory goes
        (:class:`hw.lif_array.LIFArray`); only with ``parameters="internal"``.

    Members
    -------
    load_address, load_data, load_enable : In
        Pixel memory write port (word ``(c * H + y) * W + x``, unsigned codes); not for an event
        model.
    events : In(stream.Signature(in_channels))
        Event models only (``cfg.events``): each time step's event frame, one pixel a beat in
        row-major order (bit ``c``: channel ``c`` fired there), ``H * W`` beats a time step,
        taken during the time step's ``EVENT_IN`` step (``ready`` high then, one beat a cycle).
    start : In(1)
        Pulse (while ``ready``): run ``time_steps`` time steps.
    time_steps : In(range(T + 1))
        Time steps of the run, sampled at ``start``: 1 to ``T`` (0, or more than ``T``: ``T``).
        One build serves every T up to its own: the descriptor table holds ``T`` time steps,
        and a run of fewer is the same as a build for fewer (the logits are the sum over the
        run's time steps; the first starts every membrane at zero).
    ready : Out(1)
        The engine has cleared its bank after reset.
    done : Out(1)
        High from the end of a run until the next ``start``.
    logits : Out(ArrayLayout(signed(logit_bits), classes))
        Head outputs summed over T.
    step, time_step : Out
        The program step and time step running (for observers).
    cycles : Out(32)
        Cycles since ``start`` (frozen at ``done``).
    weight_addr, weight_en : Out; weight_data : In
        Only with ``weights="external"``: synchronous read port (data the cycle after ``en``).
    bias_addr, bias_en : Out; bias_data : In; threshold_addr, threshold_en : Out;
    threshold_data : In
        Only with ``parameters="external"``: the engine's bias memory and the LIF array's
        threshold memory behind read ports of the same timing (words :attr:`bias_words`,
        :attr:`threshold_words`), so that the design holds no parameter at all.
    weight_address : In(axi_address_width); m_axi_ar*, m_axi_r*; weight_error : Out(1);
    weight_bytes : Out(32)
        Only with ``weights="axi"``: the image's byte address in external memory (held during a
        run), the AXI4 read master (:func:`hw.weightfetch.axi4_read_ports`), a read answered
        other than OKAY (sticky until ``start``), bytes read since ``start``.
    """

    def __init__(self, net, *, lanes: int = 16, weights: str = "internal",
                 plan: SharedPlan | None = None, weight_ring: int | None = None,
                 axi_data_width: int = 64, axi_address_width: int = 32,
                 schedule: str = "time", parameters: str = "internal", fold: int = 1,
                 bias_memory: str = "logic", threshold_memory: str = "auto",
                 input_buffer: int = 0):
        if weights not in ("internal", "external", "axi"):
            raise ValueError(f"weights must be 'internal', 'external' or 'axi', not {weights!r}")
        if parameters not in ("internal", "external"):
            raise ValueError(f"parameters must be 'internal' or 'external', not {parameters!r}")
        if parameters == "external" and weights != "external":
            raise ValueError("parameters='external' (biases and thresholds behind read ports) "
                             "needs weights='external'")
        self._weights_mode = weights
        self._parameters = parameters
        rom_attrs("bias_memory", bias_memory)   # checked here, used by the engine
        self._bias_memory = bias_memory
        threshold_attrs("threshold_memory", threshold_memory)   # checked here
        if threshold_memory != "auto" and parameters == "external":
            raise ValueError(f"threshold_memory={threshold_memory!r} needs the thresholds "
                             "inside (parameters='internal')")
        self._threshold_memory = threshold_memory
        if fold > 1 and weights == "axi":
            raise ValueError("fold > 1 (column folding) is not built with weights='axi' (the "
                             "weight ring's blocks assume unfolded rows)")
        if plan is None:
            plan = SharedPlan(net, lanes, pack_weights=weights != "axi", schedule=schedule,
                              fold=fold, input_buffer=input_buffer)
        elif plan.net is not net or plan.lanes != lanes or plan.schedule != schedule or (
                weights != "axi" and not plan.weights_packed) or plan.fold != fold or (
                plan.input_buffer != input_buffer):
            raise ValueError("plan must be SharedPlan(net, lanes, schedule=schedule, fold=fold, "
                             "input_buffer=input_buffer) of this net, lane count, schedule, fold "
                             "and input buffer, with its weights packed")
        self.plan = plan
        #: ``weights="axi"``: the external image and the ring (:class:`WeightRing`), else None.
        self.ring = None
        ports = network_signature(net, plan.steps, plan.pixel_words, plan.logit_bits)
        if weights == "external":
            ports["weight_addr"] = Out(bits_for(plan.weight_depth))
            ports["weight_en"] = Out(1)
            ports["weight_data"] = In(plan.lanes * plan.weight_width)
            if parameters == "external":
                lif = self._lif_array(plan, probe=True)
                ports["bias_addr"] = Out((max(2, len(plan.bias_words)) - 1).bit_length())
                ports["bias_en"] = Out(1)
                ports["bias_data"] = In(plan.lanes * plan.acc_width)
                ports["threshold_addr"] = Out(lif.threshold_address_width)
                ports["threshold_en"] = Out(1)
                ports["threshold_data"] = In(plan.lanes * (lif.membrane_width + 1))
        elif weights == "axi":
            self.ring = WeightRing(plan, weight_ring, data_width=axi_data_width,
                                   address_width=axi_address_width)
            ports["weight_address"] = In(axi_address_width)
            ports.update(axi4_read_ports(axi_address_width, axi_data_width))
            ports["weight_error"] = Out(1)
            ports["weight_bytes"] = Out(32)
        elif weight_ring is not None:
            raise ValueError("weight_ring is a parameter of weights='axi' only")
        super().__init__(ports)

    @staticmethod
    def _lif_array(plan, threshold_port: bool = False, probe: bool = False,
                   threshold_memory: str = "auto") -> LIFArray:
        """The LIF array of every LIF site (thresholds :attr:`SharedPlan.thresholds`);
        ``probe``: made only to read its sizes and words, never elaborated."""
        lif = LIFArray(lanes=plan.lanes, words=plan.memory.membrane_words,
                       input_width=plan.memory.lif_bits, thresholds=plan.thresholds,
                       pipelined=True, threshold_port=threshold_port,
                       threshold_memory=threshold_memory)
        if probe:
            lif._MustUse__silence = True   # Amaranth's "created but never used" warning
        return lif

    @property
    def parameters(self) -> str:
        """``"internal"`` (bias and threshold memories inside) or ``"external"`` (behind the
        ``bias_*`` and ``threshold_*`` ports)."""
        return self._parameters

    @property
    def bias_words(self) -> list[int]:
        """Contents of the bias memory (the ``bias_*`` port's words)."""
        return list(self.plan.bias_words)

    @property
    def threshold_words(self) -> list[int]:
        """Contents of the threshold memory (the ``threshold_*`` port's words)."""
        return self._lif_array(self.plan, probe=True).threshold_words

    @property
    def weights_mode(self) -> str:
        """``"internal"``, ``"external"`` or ``"axi"``."""
        return self._weights_mode

    # -- public ------------------------------------------------------------------------------
    @property
    def steps(self):
        """The program, in execution order within one time step."""
        return self.plan.steps

    @property
    def maps(self):
        """Spike maps by LIF name (:class:`hw.plan.SharedMap`)."""
        return self.plan.memory.maps

    @property
    def sizes(self) -> dict:
        """Map side of every module list (``ModelConfig.map_sides``)."""
        return self.plan.sizes

    @property
    def T(self) -> int:
        """Time steps of one run (fixed at generation)."""
        return self.plan.T

    @property
    def map_width(self) -> int:
        """Bits of one bank of a spike-memory word (the widest map side)."""
        return self.plan.memory.map_width

    @property
    def lanes(self) -> int:
        return self.plan.lanes

    @property
    def logit_bits(self) -> int:
        return self.plan.logit_bits

    @property
    def weight_words(self) -> list[int]:
        """Contents of the weight memory (every layer at its ``weight_base``)."""
        return list(self.plan.weight_words)

    @property
    def weight_depth(self) -> int:
        return self.plan.weight_depth

    @property
    def weight_width(self) -> int:
        """Signed bits per weight; a weight word holds ``lanes`` of them."""
        return self.plan.weight_width

    @property
    def accumulator_width(self) -> int:
        return self.plan.acc_width

    def memory_report(self) -> dict:
        """Bits of every shared memory (for the manifest and the docs). With
        ``weights="axi"``, ``weights`` is the on-chip ring's bits (the model's weights lie in
        external memory: ``weights_external_bytes``)."""
        report = self.plan.memory_report()
        if self.ring is not None:
            report["weights"] = self.ring.memory_bits()
            report["weights_external_bytes"] = self.ring.size
        return report

    def padding_report(self) -> dict:
        """Each memory's bits against what its contents need (:meth:`SharedPlan.padding_report`).
        With ``weights="axi"`` no memory of the design holds the weights: no ``weights`` row (the
        external image against its floor: :meth:`WeightRing.manifest`)."""
        report = self.plan.padding_report()
        if self.ring is not None:
            report.pop("weights", None)
        return report

    # -- hardware ----------------------------------------------------------------------------
    #: Descriptor fields the network's own routing reads (each unit lists its own ``FIELDS``).
    FIELDS = ("kind", "sink", "mbase", "tbase", "stream_base", "sdsa", "engine", "is_stem",
              "is_stream_lif",
              "is_layer", "is_pool", "sink_lif", "sink_add", "groups_m1")

    def descriptor_layout(self, engine_config_shape) -> data.StructLayout:
        """The descriptor register's layout: the plan's fields that some unit reads."""
        fields = descriptor_fields(self.plan, engine_config_shape)
        read = set(self.FIELDS).union(Sequencer.FIELDS, SpikeMapWriter.FIELDS,
                                      SpikeMapReader.FIELDS, StreamWriteStage.FIELDS,
                                      StreamReader.FIELDS, Pool.FIELDS)
        if self.plan.events:
            read.add("is_event")
        if self.plan.stem_once:
            read.add("stream_read_base")   # the first add reads the kept stem output
        if self.plan.residual:             # vanilla: the spike fetch and the residual LIF
            read.update(SpikeFetch.FIELDS, ("use_stream", "is_res_lif"))
        if self.plan.schedule == "layer":  # the sequencer's layer-major order
            read.add("once")
        if self.plan.down_steps:           # ... with steps that run their time steps downwards
            read.update(("down", "next_down"))
        if self.plan.time_major:           # ... and a time-major group (SEW's head pool)
            read.update(("tail", "loop", "loop_k"))
        if self.plan.pool_passes:          # SEW: the head's pool of counts in passes
            read.update(("pool_more", "pool_acc"))
        if not self.plan.sdsa_reads_v:
            read.discard("v_base")   # SDSA-2: no V map, the reader reads q and k only
        if self.plan.dense_blocks:   # some block's q, k and v maps are dense
            read.update(SpikeMapReader.DENSE_FIELDS)
        if self.plan.depthwise:      # SepConv unfused: the depthwise engine and plane writer
            read.update(("is_dw", "dw_base", "src_channels", "src_height"))
        return data.StructLayout({name: shape for name, shape in fields.items() if name in read})

    # -- hardware ----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        mem = plan.memory
        net, lanes, T = plan.net, plan.lanes, plan.T

        # --- shared units ---------------------------------------------------------------
        ring = self.ring
        m.submodules.engine = engine = ProgEngine(
            lanes=lanes, weight_width=plan.weight_width, accumulator_width=plan.acc_width,
            weight_depth=ring.depth if ring else self.weight_depth, bias_words=plan.bias_words,
            ring_pointer_bits=ring.pointer_bits if ring else 0,
            bias_port=self._parameters == "external", bias_memory=self._bias_memory,
            **plan.engine_limits)
        if self._weights_mode == "internal":
            m.submodules.weights = weights = Memory(
                shape=unsigned(lanes * plan.weight_width), depth=self.weight_depth,
                init=plan.weight_words)
            wiring.connect(m, engine.weight, weights.read_port())
        elif self._weights_mode == "external":
            m.d.comb += [self.weight_addr.eq(engine.weight.addr),
                         self.weight_en.eq(engine.weight.en),
                         engine.weight.data.eq(self.weight_data)]
        else:
            # The ring: the fetcher writes blocks, the engine reads taps (hw/weightfetch.py).
            m.submodules.fetcher = fetcher = WeightFetcher(ring, T)
            m.submodules.weight_ring = ring_memory = Memory(
                shape=unsigned(lanes * plan.weight_width), depth=ring.depth, init=[])
            wiring.connect(m, fetcher.write, ring_memory.write_port())
            ring_read = ring_memory.read_port()
            m.d.comb += [ring_read.addr.eq(engine.weight.addr), ring_read.en.eq(engine.weight.en),
                         engine.weight.data.eq(ring_read.data),
                         fetcher.base.eq(self.weight_address),
                         fetcher.block_done.eq(engine.block_done),
                         fetcher.block_need.eq(engine.block_need),
                         fetcher.block_need_load.eq(engine.block_need_load),
                         fetcher.block_need_take.eq(engine.block_need_take),
                         engine.block_ready.eq(fetcher.block_ready),
                         self.weight_error.eq(fetcher.error),
                         self.weight_bytes.eq(fetcher.bytes_read)]
            for name, member in axi4_read_ports(1, 1).items():
                name = name[len(AXI_PREFIX) + 1:]
                outer, inner = getattr(self, f"{AXI_PREFIX}_{name}"), fetcher._port(name)
                m.d.comb += (outer.eq(inner) if member.flow is wiring.Flow.Out
                             else inner.eq(outer))

        external = self._parameters == "external"
        m.submodules.lif = lif = self._lif_array(plan, threshold_port=external,
                                                 threshold_memory=self._threshold_memory)
        if external:
            m.d.comb += [self.threshold_addr.eq(lif.threshold.addr),
                         self.threshold_en.eq(lif.threshold.en),
                         lif.threshold.data.eq(self.threshold_data),
                         self.bias_addr.eq(engine.bias.addr), self.bias_en.eq(engine.bias.en),
                         engine.bias.data.eq(self.bias_data)]
        stem_layer = plan.stem_layer
        cfg = net.cfg
        if not plan.events:
            m.submodules.stem = stem = StemConv(
                weight=stem_layer.weight, bias=stem_layer.bias, height=cfg.img_size,
                width=cfg.img_size, stride=stem_layer.stride, padding=stem_layer.padding,
                pad_value=net.pixel.zero_point, pixel_bits=net.pixel.bits, lanes=lanes)
            m.d.comb += [stem.load_address.eq(self.load_address),
                         stem.load_data.eq(self.load_data),
                         stem.load_enable.eq(self.load_enable)]
            stem_words = stem.positions * stem.groups

        sdsas = []
        for prefix in plan.attention:
            # The block's operator and integer threshold (SDSA-4: its learned threshold, the
            # unit's one-layer threshold memory).
            attn = net.attention[prefix]
            threshold = attn.threshold
            if attn.sdsa == 4:
                # One threshold a block, but a one-word threshold memory makes the unit's
                # ``layer`` field 0 bits wide, which Amaranth emits as a ``[-1:0]`` vector that
                # Verilator's lint rejects. The memory is two words deep either way
                # (``hw.sdsa_common._depth``): both hold the block's threshold; ``layer`` is 0.
                threshold = (attn.threshold, attn.threshold)
            # A head of ``G`` word groups is ``G * lanes`` channels wide in the maps (padded
            # with never-firing channels when ``lanes`` does not divide the head width): the
            # unit adds ``lanes`` counters a cycle, ``G`` cycles a row.
            head_groups = plan.head_groups[prefix]
            unit = SDSA(variant=attn.sdsa, tokens=attn.tokens, head_width=head_groups * lanes,
                        heads=attn.heads, lanes=lanes, threshold=threshold)
            m.submodules[f"sdsa_{len(sdsas)}"] = unit
            sdsas.append(unit)
        blocks = [net.attention[prefix] for prefix in plan.attention]
        sd_side = max([1] + [int(round(a.tokens ** 0.5)) for a in blocks])
        heads = max([1] + [a.heads for a in blocks])
        head_groups = max([1] + list(plan.head_groups.values()))

        # --- memories: spike maps (``lanes`` banks of ``W`` bits a word, written whole: bit
        # enables cost block RAMs) and residual streams --------------------------------------
        W = mem.map_width
        # Neither memory is read at a word in the cycle it is written (``NO_RW_CHECK``): a step's
        # spike maps in are not its map out, and a step starts after the last write of the one
        # before; an add reads stream word ``i`` two beats before it writes it and its beats
        # address distinct words, and readers and writers are otherwise different steps.
        # ``sim.tb.network`` checks both on every co-simulated cycle.
        m.submodules.spikes = spikes = Memory(shape=unsigned(lanes * W), depth=mem.map_depth,
                                              init=[], attrs=NO_RW_CHECK)
        SB = mem.stream_bits
        m.submodules.streams = streams_mem = Memory(
            shape=unsigned(lanes * SB), depth=mem.stream_depth, init=[], attrs=NO_RW_CHECK)
        stream_write = streams_mem.write_port()
        stream_read = streams_mem.read_port()
        md_w = bits_for(mem.map_depth + 1)      # spike-memory addresses
        sd_w = bits_for(mem.stream_depth + 1)   # stream-memory addresses

        # --- descriptor table and sequencer ---------------------------------------------------
        # Every step's descriptor, for every time step, is a constant word of a ROM indexed by
        # (t, step) (:func:`hw.descriptor.descriptor_rom`); the engine packs each layer's
        # configuration (``config_value`` checks that the layer fits it).
        desc_layout = self.descriptor_layout(engine.config.shape())
        fields = {name: member.shape for name, member in desc_layout}
        place = ring.engine_config if ring else (lambda layer: layer)
        rom = descriptor_rom(plan, desc_layout,
                             lambda layer: engine.config_value(place(layer)).as_value().value)
        layer_major = plan.schedule == "layer"
        m.submodules.sequencer = seq = Sequencer(
            desc_layout, rom, steps=len(plan.steps), T=T,
            restart=plan.runs(1)[0] if T > 1 and not layer_major else 0, layer_major=layer_major,
            down=bool(plan.down_steps), loops=bool(plan.time_major))
        desc = seq.desc
        start = seq.step_start            # one-cycle pulse: the descriptor is loaded
        finish = Signal(name="step_finish")  # comb: the step's final write happens now
        first = seq.first
        m.d.comb += [seq.run.eq(self.start & self.ready), seq.finish.eq(finish),
                     seq.time_steps.eq(self.time_steps),
                     self.step.eq(seq.step), self.time_step.eq(seq.t),
                     self.done.eq(seq.done), self.cycles.eq(seq.cycles),
                     self.ready.eq(engine.ready), engine.config.eq(desc.engine)]
        if ring:
            m.d.comb += [fetcher.start.eq(seq.run), fetcher.time_steps.eq(self.time_steps),
                         engine.frame_start.eq(start),
                         fetcher.layer_start.eq(start & desc.is_layer)]
        kind, sink = desc.kind, desc.sink
        sdsa_mode = desc.is_sdsa

        def configure(unit):
            m.d.comb += [unit.config[name].eq(desc[name]) for name in unit.FIELDS]

        # --- spike-map writer (LIF output beats and SDSA output beats) -----------------------
        m.submodules.map_writer = writer = SpikeMapWriter(
            fields, lanes=lanes, map_width=W, depth=mem.map_depth, address_width=md_w,
            max_groups=plan.max_groups,
            maps=mem.maps.values(), heads=heads)
        configure(writer)
        spike_write = spikes.write_port()
        wiring.connect(m, writer.write, spike_write)
        m.d.comb += writer.start.eq(start)
        map_done = writer.done

        # --- spike-map reader: engine feed and SDSA feed ----------------------------------------
        m.submodules.map_reader = reader = SpikeMapReader(
            fields, lanes=lanes, map_width=W, depth=mem.map_depth, address_width=md_w,
            side=sd_side, heads=heads, head_groups=head_groups, values=plan.sdsa_reads_v,
            shifts={p * mem.maps[s.source].side for s in plan.steps
                    if s.kind is StepKind.LAYER for p in range(mem.maps[s.source].pack)},
            dense=bool(plan.dense_blocks),
            head_shifts={bank for prefix in plan.dense_blocks
                         for _, bank, _ in plan.head_reads(prefix)})
        configure(reader)
        if plan.residual:
            # Vanilla: the spike fetch reads the block's incoming spikes while a residual LIF or
            # a pool of spikes runs (the engine and SDSA feeds are idle then).
            spike_read = spikes.read_port()
            m.submodules.spike_fetch = fetch = SpikeFetch(
                fields, lanes=lanes, map_width=W, address_width=md_w,
                ident_width=max(1, (len(plan.identity_words) - 1).bit_length()))
            configure(fetch)
            m.d.comb += [fetch.start.eq(start), fetch.data.eq(spike_read.data),
                         reader.read.data.eq(spike_read.data),
                         spike_read.addr.eq(Mux(desc.is_residual, fetch.addr, reader.read.addr)),
                         spike_read.en.eq(Mux(desc.is_residual, fetch.en, reader.read.en))]
            m.submodules.identities = identities = Memory(
                shape=unsigned(lanes * plan.identity_bits),
                depth=max(2, len(plan.identity_words)), init=plan.identity_words)
            ident_read = identities.read_port()
            m.d.comb += ident_read.addr.eq(fetch.ident_addr)
        else:
            spike_read = spikes.read_port()
            wiring.connect(m, reader.read, spike_read)
        # The two memories' ports under fixed names, for the co-simulation's check that no word
        # is read in the cycle it is written (``NO_RW_CHECK`` above; they drive nothing, and
        # synthesis removes them). ``{memory}_collision_probe`` is that condition itself, so a
        # testbench waits for it to rise instead of sampling the ports every cycle.
        for memory, read, write in (("spike", spike_read, spike_write),
                                    ("stream", stream_read, stream_write)):
            for port, side in ((read, "read"), (write, "write")):
                probe_addr = Signal.like(port.addr, name=f"{memory}_{side}_probe_addr")
                probe_en = Signal(name=f"{memory}_{side}_probe_en")
                m.d.comb += [probe_addr.eq(port.addr), probe_en.eq(port.en)]
            collision = Signal(name=f"{memory}_collision_probe")
            m.d.comb += collision.eq(collision_condition(read, write))
        m.d.comb += reader.start.eq(start)
        if plan.depthwise:
            # SepConv unfused (``desc.is_dw``): the map reader's rows go to the depthwise
            # engine, its sums' planes (``hw.planes``) to the engine, which runs the pointwise
            # conv on them as a 1x1 conv (``hw.sepconv``); other layers: the reader feeds it.
            dw_side = max(place.side for place in plan.depthwise.values())
            m.submodules.depthwise = dw = DepthwiseEngine(
                plan.dw_weight, plan.dw_bias, lanes=plan.dw_lanes, max_height=dw_side,
                max_width=dw_side, channel_base=True)
            rows, cols = dw.geometry
            m.submodules.planes = planes = PlaneWriter(
                sum_bits=dw.acc_bits, planes=plan.planes, rows=rows, cols=cols,
                max_channels=len(plan.dw_bias), max_height=dw_side, max_width=dw_side)
            is_dw = desc.is_dw
            m.d.comb += [
                dw.config.channels.eq(desc.src_channels), dw.config.height.eq(desc.src_height),
                dw.config.width.eq(desc.src_height), dw.config.base.eq(desc.dw_base),
                planes.config.channels.eq(desc.src_channels),
                planes.config.height.eq(desc.src_height), planes.config.width.eq(desc.src_height),
                dw.start.eq(start & is_dw), planes.start.eq(start & is_dw),
                # the reader's rows: to the depthwise engine or to the engine
                dw.i.valid.eq(reader.o.valid & is_dw),
                dw.i.payload.bits.eq(reader.o.payload.bits[:dw_side]),
                dw.i.payload.last.eq(reader.o.payload.last),
                reader.o.ready.eq(Mux(is_dw, dw.i.ready, engine.i.ready)),
                # the engine's input: the planes' rows or the reader's
                engine.i.valid.eq(Mux(is_dw, planes.o.valid, reader.o.valid)),
                engine.i.payload.bits.eq(Mux(is_dw, planes.o.payload.bits,
                                             reader.o.payload.bits)),
                engine.i.payload.last.eq(Mux(is_dw, planes.o.payload.last,
                                             reader.o.payload.last)),
                planes.o.ready.eq(is_dw & engine.i.ready),
            ]
            wiring.connect(m, dw.o, planes.i)
        else:
            wiring.connect(m, reader.o, engine.i)
        with m.Switch(desc.sdsa):
            for index, unit in enumerate(sdsas):
                with m.Case(index):
                    m.d.comb += [unit.i.valid.eq(reader.sdsa.valid),
                                 unit.i.payload.q.eq(reader.sdsa.payload.q),
                                 unit.i.payload.k.eq(reader.sdsa.payload.k)]
                    if plan.sdsa_reads_v:
                        m.d.comb += unit.i.payload.v.eq(reader.sdsa.payload.v)
                    if unit.variant is Variant.SDSA4:   # both threshold words hold the same
                        m.d.comb += unit.i.payload.layer.eq(0)
                    m.d.comb += [unit.i.payload.first.eq(first),
                                 reader.sdsa.ready.eq(unit.i.ready)]

        # --- LIF array input (engine read-out, stream reader or pool) ----------------------
        lif_x = Signal(data.ArrayLayout(signed(mem.lif_bits), lanes), name="lif_x")
        lif_valid = Signal(name="lif_valid")
        lif_index = Signal(bits_for(mem.membrane_words + 1), name="lif_index")
        lif_group = Signal.like(desc.groups_m1, name="lif_group")
        m.d.comb += [lif.i.valid.eq(lif_valid), lif.i.payload.x.eq(lif_x),
                     lif.i.payload.address.eq(desc.mbase + lif_index if T > 1 else 0),
                     # ``tbase`` is aligned (hw.plan): OR, not add, in front of the memory.
                     lif.i.payload.group.eq(desc.tbase | lif_group),
                     lif.i.payload.first.eq(first), lif.o.ready.eq(1)]

        # --- map writer input: SDSA output or LIF output ----------------------------------------
        sdsa_out_valid = Signal(name="sdsa_out_valid")
        sdsa_out_bits = Signal(lanes * head_groups, name="sdsa_out_bits")
        with m.Switch(desc.sdsa):
            for index, unit in enumerate(sdsas):
                with m.Case(index):
                    m.d.comb += [sdsa_out_valid.eq(unit.o.valid & sdsa_mode),
                                 sdsa_out_bits.eq(unit.o.payload.spikes)]
        if head_groups > 1:
            # A token's row of ``G`` word groups leaves as ``G`` beats of ``lanes`` spikes, group
            # by group (the writer's order); the next row is taken with the last beat.
            ser_valid = Signal(name="sdsa_ser_valid")
            ser_bits = Signal.like(sdsa_out_bits, name="sdsa_ser_bits")
            ser_g = Signal(range(head_groups + 1), name="sdsa_ser_g")
            ser_last = Signal(name="sdsa_ser_last")   # ser_g is the step's last group
            ser_take = Signal(name="sdsa_ser_take")
            m.d.comb += ser_take.eq(~ser_valid | ser_last)
            with m.If(ser_take):
                m.d.sync += [ser_valid.eq(sdsa_out_valid), ser_bits.eq(sdsa_out_bits),
                             ser_g.eq(0), ser_last.eq(desc.groups_m1 == 0)]
            with m.Else():
                m.d.sync += [ser_g.eq(ser_g + 1), ser_last.eq(ser_g + 1 == desc.groups_m1)]
            ser_word = Signal(lanes, name="sdsa_ser_word")
            with m.Switch(ser_g):
                for g in range(head_groups):
                    with m.Case(g):
                        m.d.comb += ser_word.eq(ser_bits[g * lanes:(g + 1) * lanes])
            for unit in sdsas:
                m.d.comb += unit.o.ready.eq(ser_take)
            sdsa_out_valid, sdsa_out_bits = ser_valid & sdsa_mode, ser_word
        else:
            for unit in sdsas:
                m.d.comb += unit.o.ready.eq(1)
        writer_valid = Mux(sdsa_mode, sdsa_out_valid, lif.o.valid)
        writer_bits = Mux(sdsa_mode, sdsa_out_bits, lif.o.payload.spikes)
        if plan.events:
            # Event input: the port's beats go straight to the writer (``input`` map), exactly
            # ``H * W`` of them a time step: ``taking`` is set by the step's start and cleared
            # by its last beat, so a beat of the next frame waits for the next EVENT_IN step.
            pixels = cfg.img_size ** 2
            taking = Signal(name="events_taking")
            taken = Signal(range(pixels), name="events_taken")
            taken_last = Signal(name="events_taken_last")
            m.d.comb += self.events.ready.eq(taking)
            with m.If(start & desc.is_event):
                m.d.sync += [taking.eq(1), taken.eq(0), taken_last.eq(pixels == 1)]
            with m.Elif(self.events.valid & taking):
                m.d.sync += [taken.eq(taken + 1), taken_last.eq(taken == pixels - 2)]
                with m.If(taken_last):
                    m.d.sync += taking.eq(0)
            writer_valid = Mux(desc.is_event, self.events.valid & taking, writer_valid)
            writer_bits = Mux(desc.is_event, self.events.payload, writer_bits)
        m.d.comb += [writer.i.valid.eq(writer_valid), writer.i.payload.eq(writer_bits)]

        # --- residual streams: write stage (stem begin, layer add/begin), reader, pool ----------
        group_bits = len(Value.cast(engine.o.payload.group))
        value_bits = plan.acc_width
        if not plan.events:
            group_bits = max(group_bits, len(Value.cast(stem.o.payload.group)))
            value_bits = max(value_bits, stem.accumulator_width)
        m.submodules.stream_write = sw = StreamWriteStage(
            fields, lanes=lanes, value_bits=value_bits,
            stream_bits=SB, depth=mem.stream_depth, address_width=sd_w,
            group_shape=unsigned(group_bits),
            shift_bits=plan.shift_bits + 1, shift_words=plan.shift_words)
        configure(sw)
        wiring.connect(m, sw.write, stream_write)
        m.d.comb += sw.old.eq(stream_read.data)
        # The shift word of the stem's beat group or the engine's (only stem and stream-writing
        # layer steps use them).
        if plan.events:
            m.d.comb += sw.i.payload.group.eq(engine.o.payload.group)
        else:
            m.d.comb += sw.i.payload.group.eq(Mux(desc.is_stem, stem.o.payload.group,
                                                  engine.o.payload.group))
        m.submodules.stream_reader = rd = StreamReader(fields, lanes=lanes, stream_bits=SB,
                                                       address_width=sd_w)
        configure(rd)
        m.d.comb += [rd.start.eq(start), rd.data.eq(stream_read.data)]
        m.submodules.pool = pool = Pool(fields, lanes=lanes, groups=plan.pool_groups,
                                        sum_bits=mem.lif_bits, input_layout=rd.o.payload.shape(),
                                        passes=plan.pool_passes)
        configure(pool)
        m.d.comb += [pool.start.eq(start), pool.i.valid.eq(rd.o.valid),
                     pool.i.payload.eq(rd.o.payload), pool.o.ready.eq(lif.i.ready)]
        if plan.residual:
            # Vanilla: the stream word plus the identity where the incoming spike fired
            # (``u = (acc << k) + (identity if spike else 0)``); a pool of spikes has no stream
            # word (``use_stream`` 0) and an identity of 1: its values are the spikes.
            IB = plan.identity_bits
            res_x = Signal(data.ArrayLayout(signed(max(SB, IB + 1) + 1), lanes), name="res_x")
            for lane in range(lanes):
                ident = ident_read.data[lane * IB:(lane + 1) * IB]
                m.d.comb += res_x[lane].eq(
                    Mux(desc.use_stream, rd.o.payload.values[lane], 0)
                    + Mux(fetch.bits[lane], ident, 0))
                m.d.comb += pool.i.payload.values[lane].eq(
                    Mux(desc.is_residual, res_x[lane], rd.o.payload.values[lane]))
        # stream read port: layer add (engine beat's index), stream LIF / pool (reader); below
        sr_addr = Signal(sd_w, name="stream_read_addr")
        sr_en = Signal(name="stream_read_en")
        m.d.comb += [stream_read.addr.eq(sr_addr), stream_read.en.eq(sr_en)]

        # --- stem ------------------------------------------------------------------------------
        # The stem streams into the first residual stream: ``stream = acc << shift``. With
        # T > 1 (``plan.stem_once``) it runs at t = 0 only, into a place of its own that the
        # first add reads (``plan.stream_access``): the image is the same at every time step.
        if not plan.events:
            stem_count = Signal(range(stem_words + 1), name="stem_count")
            m.d.comb += [stem.start.eq(start & desc.is_stem), stem.o.ready.eq(1)]
            with m.If(start):
                m.d.sync += stem_count.eq(0)
            with m.If(stem.o.valid):
                m.d.sync += stem_count.eq(stem_count + 1)

        # --- per-kind routing -------------------------------------------------------------------
        out = engine.o.payload
        # The engine's output is taken whenever a layer runs (the LIF array's input is always
        # ready in this design); a registered flag, not a decode of the kind.
        m.d.comb += engine.o.ready.eq(desc.is_layer & (~desc.sink_lif | lif.i.ready))
        classes = self.logits.shape().length
        with m.Switch(kind):
            if plan.events:
                with m.Case(StepKind.EVENT_IN):
                    m.d.comb += finish.eq(map_done)
            else:
                with m.Case(StepKind.STEM):
                    m.d.comb += [sw.i.valid.eq(stem.o.valid),
                                 sw.i.payload.addr.eq(desc.stream_base + stem_count),
                                 sw.i.payload.add.eq(0),
                                 sw.i.payload.last.eq(stem.o.payload.last)]
                    m.d.comb += [sw.i.payload.values[lane].eq(stem.o.payload.values[lane])
                                 for lane in range(lanes)]
                    m.d.comb += finish.eq(sw.written_last)
            with m.Case(StepKind.LAYER):
                with m.Switch(sink):
                    with m.Case(SinkKind.LIF):
                        m.d.comb += [lif_valid.eq(engine.o.valid), lif_index.eq(out.index)]
                        m.d.comb += [lif_x[lane].eq(out.values[lane]) for lane in range(lanes)]
                        m.d.comb += finish.eq(map_done)
                    with m.Case(SinkKind.ADD, SinkKind.BEGIN):
                        # the words added to: the stream's own, or the kept stem output
                        # (``plan.stem_once``; otherwise the field is not in the descriptor)
                        m.d.comb += [sw.i.valid.eq(engine.o.valid),
                                     sw.i.payload.addr.eq(desc.stream_base + out.index),
                                     sw.i.payload.add.eq(desc.sink_add),
                                     sw.i.payload.last.eq(out.last)]
                        m.d.comb += [sw.i.payload.values[lane].eq(out.values[lane])
                                     for lane in range(lanes)]
                        m.d.comb += finish.eq(sw.written_last)
                    with m.Case(SinkKind.LOGITS):
                        with m.If(engine.o.valid):
                            with m.Switch(out.group):
                                for g in range(ceil_div(classes, lanes)):
                                    with m.Case(g):
                                        for lane in range(lanes):
                                            c = g * lanes + lane
                                            if c < classes:
                                                m.d.sync += self.logits[c].eq(
                                                    self.logits[c] + out.values[lane])
                        m.d.comb += finish.eq(engine.o.valid & out.last)
            with m.Case(StepKind.STREAM_LIF):
                m.d.comb += [lif_valid.eq(rd.o.valid), lif_index.eq(rd.o.payload.index)]
                m.d.comb += [lif_x[lane].eq(rd.o.payload.values[lane]) for lane in range(lanes)]
                m.d.comb += finish.eq(map_done)
            if plan.residual:
                with m.Case(StepKind.RESIDUAL_LIF):
                    m.d.comb += [lif_valid.eq(rd.o.valid), lif_index.eq(rd.o.payload.index)]
                    m.d.comb += [lif_x[lane].eq(res_x[lane]) for lane in range(lanes)]
                    m.d.comb += finish.eq(map_done)
            with m.Case(StepKind.POOL_LIF):
                m.d.comb += [lif_valid.eq(pool.o.valid), lif_index.eq(pool.o.payload.index)]
                m.d.comb += [lif_x[lane].eq(pool.o.payload.x[lane]) for lane in range(lanes)]
                if plan.pool_passes:   # SEW: a pass that keeps its sums ends with its last word
                    m.d.comb += finish.eq(Mux(desc.pool_more, rd.o.valid & rd.o.payload.last,
                                              map_done))
                else:
                    m.d.comb += finish.eq(map_done)
            with m.Case(StepKind.SDSA):
                m.d.comb += finish.eq(map_done)
        # The stream read port: a layer's add reads the word its beat adds to (the stream's
        # own, or the kept stem output: ``plan.stem_once``), only for a beat (a stale index
        # would meet the word the write stage is adding to: no collision semantics, above); a
        # stream LIF, residual LIF or pool reads through the stream reader. An AND-OR by flags
        # and a base registered from the descriptor every cycle (the port's first read of a
        # step comes a cycle after ``start`` or later), so no kind decode and no descriptor
        # register across the die sits on the way to the memory's address.
        read_base = desc.stream_read_base if plan.stem_once else desc.stream_base
        reads_stream = desc.is_stream_lif | desc.is_res_lif if plan.residual else desc.is_stream_lif
        reads_stream_kinds = reads_stream | desc.is_pool
        sr_base = Signal.like(read_base, name="stream_read_base")
        sr_engine = Signal(name="stream_read_engine")
        sr_reader = Signal(name="stream_read_reader")
        m.d.sync += [sr_base.eq(read_base),
                     sr_engine.eq(desc.is_layer & ((sink == SinkKind.ADD)
                                                   | (sink == SinkKind.BEGIN))),
                     sr_reader.eq(reads_stream_kinds)]
        m.d.comb += [
            sr_addr.eq(((sr_base + out.index)[:sd_w] & sr_engine.replicate(sd_w))
                       | (rd.addr & sr_reader.replicate(sd_w))),
            sr_en.eq((engine.o.valid & sr_engine) | sr_reader)]
        # The LIF's threshold group: an AND-OR of the three sources by registered kind flags (a
        # kind or sink decode here sat on the path into the threshold memory's address).
        reads_stream = desc.is_stream_lif | desc.is_res_lif if plan.residual else desc.is_stream_lif
        m.d.comb += lif_group.eq(
            (out.group & desc.is_layer.replicate(len(lif_group)))
            | (rd.o.payload.group & reads_stream.replicate(len(lif_group)))
            | (pool.o.payload.index & desc.is_pool.replicate(len(lif_group))))
        # Cleared the cycle after the run begins (``seq.begun``, a register near its loads, not
        # the caller's ``start``): the head adds its first logit long after.
        with m.If(seq.begun):
            m.d.sync += [self.logits[c].eq(0) for c in range(classes)]
        return m
