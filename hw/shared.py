"""Whole quantized Meta-SpikeFormer on ONE shared engine: a time-multiplexed network.

:class:`SharedNetwork` runs the network program (:class:`hw.program.Program`, from the same
``quant.graph.walk`` the integer model uses) on shared hardware:

* one programmable synapse engine (:class:`hw.progengine.ProgEngine`) for every convolution,
  linear layer and the classifier, configured per step from a generated descriptor table;
* weights in one weight memory (``weights="internal"``: inside the design, initialised from the
  packed image; ``"external"``: a synchronous read port to a memory outside the design, since the
  demo's folded weights, 5.2 Mbit at 8 bits, exceed every ECP5's block RAM);
* one LIF array (:class:`hw.lif.LIFArray`) whose membrane memory holds every LIF site at its own
  base address (membranes are kept per site, so time steps run exactly as the integer model; at
  T = 1 no membrane is ever read back, so none is kept);
* one spike memory (``lanes`` banks), one residual-stream memory and one shift memory, every
  map, stream and layer at its own base address;
* the stem (:class:`hw.stem.StemConv`, the only multipliers), recomputed at every time step and
  written straight into the first residual stream (``stream = acc << shift``: no memory keeps its
  output), and one SDSA unit per attention block (each keeps its attention LIF's membranes
  across time steps).

Where everything lives (spike maps, streams, LIF sites, layers, shift words) is planned in plain
Python by :class:`hw.plan.SharedPlan`, which also builds the descriptor table; this module builds
the hardware from that plan (``self.plan``).

The sequencer walks the step list; for each step it decodes the step index (one cycle), loads the
step's descriptor into registers (one cycle), pulses ``start`` and waits for the step's last
write. The descriptors of all (time step, step) pairs are one constant table, built here by
replaying the program, with decoded flags, strides and "minus one" limits beside the raw fields.
Every datapath reads only the descriptor registers, so the step table costs one registered
decode and an OR per bit, not a path through every step.

Timing (ECP5): the spike memory's output word is registered before any multiplexer; its read and
write addresses live in registers stepped by additions; the writer's and readers' counters carry
registered end flags. See docs/shared-network.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.lif import LIFArray
from hw.params import bits_for
from hw.plan import SharedPlan
from hw.program import SinkKind, StepKind
from hw.progengine import ProgEngine
from hw.sdsa import SDSA
from hw.stem import StemConv

__all__ = ["SharedNetwork", "network_signature"]


def network_signature(net, steps, pixel_words: int, logit_bits: int) -> dict:
    """Return the whole network's ports (the shell a testbench or SoC drives)."""
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


class SharedNetwork(wiring.Component):
    """Run a whole quantized network on one shared engine: load pixels, ``start``, ``done``.

    Parameters
    ----------
    net : quant.quantize.IntNet
    lanes : int
        Output channels per cycle of the engine, the LIF array and every memory word. Must equal
        every attention block's head width (the SDSA reads a head's channels from the banks).
    weights : ``"internal"`` or ``"external"``
        Where the weight memory lives (module docstring).

    Members
    -------
    load_address, load_data, load_enable : In
        Pixel memory write port (word ``(c * H + y) * W + x``, unsigned codes).
    start : In(1)
        Pulse (while ``ready``): run all time steps.
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
    """

    def __init__(self, net, *, lanes: int = 16, weights: str = "internal"):
        if weights not in ("internal", "external"):
            raise ValueError(f"weights must be 'internal' or 'external', not {weights!r}")
        self._weights_mode = weights
        self.plan = plan = SharedPlan(net, lanes)
        ports = network_signature(net, plan.steps, plan.pixel_words, plan.logit_bits)
        if weights == "external":
            ports["weight_addr"] = Out(bits_for(plan.weight_depth))
            ports["weight_en"] = Out(1)
            ports["weight_data"] = In(plan.lanes * plan.weight_width)
        super().__init__(ports)

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
        """Bits of every shared memory (for the manifest and the docs)."""
        return self.plan.memory_report()

    # -- hardware ----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        mem = plan.memory
        net, lanes, T = plan.net, plan.lanes, plan.T
        steps = self.steps

        t = Signal(range(max(2, T)), name="t")
        first = Signal(name="first_t")
        m.d.comb += [first.eq(t == 0), self.time_step.eq(t)]

        # --- shared units ---------------------------------------------------------------
        m.submodules.engine = engine = ProgEngine(
            lanes=lanes, weight_width=plan.weight_width, accumulator_width=plan.acc_width,
            weight_depth=self.weight_depth, bias_words=plan.bias_words,
            **plan.engine_limits)
        if self._weights_mode == "internal":
            m.submodules.weights = weights = Memory(
                shape=unsigned(lanes * plan.weight_width), depth=self.weight_depth,
                init=plan.weight_words)
            weight_read = weights.read_port()
            m.d.comb += [weight_read.addr.eq(engine.weight_addr),
                         weight_read.en.eq(engine.weight_en),
                         engine.weight_data.eq(weight_read.data)]
        else:
            m.d.comb += [self.weight_addr.eq(engine.weight_addr),
                         self.weight_en.eq(engine.weight_en),
                         engine.weight_data.eq(self.weight_data)]

        m.submodules.lif = lif = LIFArray(lanes=lanes, words=mem.membrane_words,
                                          input_width=mem.lif_bits,
                                          thresholds=plan.thresholds, pipelined=True)
        stem_layer = plan.stem_layer
        cfg = net.cfg
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
            attn = net.attention[prefix]
            if attn.sdsa != 3:
                raise NotImplementedError(f"{prefix}: the shared network supports SDSA-3")
            unit = SDSA(variant=3, tokens=attn.tokens, head_width=attn.head_width,
                        heads=attn.heads, threshold=attn.threshold)
            m.submodules[f"sdsa_{len(sdsas)}"] = unit
            sdsas.append(unit)

        # Spike memory: one word holds the same row of ``lanes`` banks (bank b: bits
        # b * W .. b * W + W - 1), written whole (no bit enables: they cost block RAMs).
        W = mem.map_width
        m.submodules.spikes = spikes = Memory(shape=unsigned(lanes * W), depth=mem.map_depth,
                                              init=[])
        spike_write = spikes.write_port()
        spike_read = spikes.read_port()
        # Streams and shifts.
        SB = mem.stream_bits
        m.submodules.streams = streams_mem = Memory(
            shape=unsigned(lanes * SB), depth=mem.stream_depth, init=[])
        stream_write = streams_mem.write_port()
        stream_read = streams_mem.read_port()
        shift_bits = plan.shift_bits + 1
        m.submodules.shifts = shifts_mem = Memory(
            shape=unsigned(lanes * shift_bits), depth=max(2, len(plan.shift_words)),
            init=plan.shift_words or [0, 0])
        shift_read = shifts_mem.read_port(domain="comb")   # a small ROM in LUTs

        # --- descriptor registers ---------------------------------------------------------
        # Every step's descriptor, for every time step, is a constant word of a ROM indexed by
        # (t, step) (:meth:`hw.plan.SharedPlan.descriptor_rom`); the sequencer loads the whole
        # word into ``desc_word`` with one enable. The engine packs each layer's configuration
        # (``config_value`` checks that the layer fits it).
        fields = plan.descriptor_fields(engine.config.shape())
        desc_layout = data.StructLayout(fields)
        desc_word = Signal(desc_layout, name="desc")
        desc = {name: desc_word[name] for name in fields}
        m.d.comb += engine.config.eq(desc["engine"])
        rom = plan.descriptor_rom(desc_layout,
                                  lambda layer: engine.config_value(layer).as_value().value)
        md_w = bits_for(mem.map_depth + 1)      # spike-memory addresses
        sd_w = bits_for(mem.stream_depth + 1)   # stream-memory addresses
        desc_rom = Signal(desc_layout.size, name="desc_rom")

        start = Signal(name="step_start")   # one-cycle pulse: the descriptor is loaded
        finish = Signal(name="step_finish")  # comb: the step's final write happens now
        kind, sink = desc["kind"], desc["sink"]
        sdsa_mode = desc["is_sdsa"]
        if sdsas:
            attn0 = net.attention[plan.attention[0]]
            tokens, heads = attn0.tokens, attn0.heads
        else:
            tokens, heads = 1, 1

        # --- spike-map writer (LIF output beats and SDSA output beats) -----------------------
        # LIF beats: position-major, group-minor. SDSA beats: head-major, token-minor. The
        # counters carry registered "at the end" flags (x_last: wr_x == side - 1, ...), updated
        # from compares with the descriptor's "minus two" limits one beat ahead.
        wr_y = Signal(range(W + 1), name="wr_y")
        wr_x = Signal(range(W + 1), name="wr_x")
        wr_g = Signal(range(plan.max_groups + 1), name="wr_g")
        x_last = Signal(name="wr_x_last")
        y_last = Signal(name="wr_y_last")
        g_last = Signal(name="wr_g_last")
        wr_valid = Signal(name="wr_valid")
        wr_bits = Signal(lanes, name="wr_bits")
        final_beat = Signal(name="wr_final")
        one_side = Signal(name="wr_one_side")
        one_group = Signal(name="wr_one_group")
        x_next_last = Signal(name="wr_x_next_last")
        y_next_last = Signal(name="wr_y_next_last")
        g_next_last = Signal(name="wr_g_next_last")
        m.d.comb += [
            one_side.eq(desc["dst_side_m1"] == 0),
            one_group.eq(Mux(sdsa_mode, heads == 1, desc["groups_m1"] == 0)),
            x_next_last.eq(wr_x == desc["dst_side_m2"]),
            y_next_last.eq(wr_y == desc["dst_side_m2"]),
            g_next_last.eq(Mux(sdsa_mode, wr_g == max(0, heads - 2),
                               wr_g == desc["groups_m2"])),
        ]

        # Row assembly: a beat sets bit x of its row in a row buffer (slot g << h_log | x; the
        # SDSA's rows are one head's, slot x). When a row is complete, the other buffer takes
        # the next row while this one is written out, one map word (all banks) per cycle:
        # G words for a LIF row, one for an SDSA row. A row of side S takes S * G beats, so a
        # flush (G cycles) always ends before the next row completes. Word j of a row is the
        # buffer's bits from slot j << h_log on; a multiplexer over only the slots that some map
        # can start a word at picks it (a few inputs per bit, not a barrel shifter), and a beat
        # writes its bit through the flip-flop's enable (no logic per bit).
        RB = max(1 << (info.cg_log + info.h_log) for info in mem.maps.values())
        row_buf = [[Signal(RB, name=f"row_{i}_{b}") for b in range(lanes)] for i in range(2)]
        fill = Signal(name="row_fill")
        slot = Signal(range(RB), name="row_slot")      # register: (wr_g << h_log) | wr_x
        # Row address in the map (without the flush's group offset): dst_base + y for a LIF
        # row, dst_base + (head << h_log | y) for an SDSA row.
        row_addr = Signal(md_w, name="wr_row_addr")
        head_addr = Signal(md_w, name="wr_head_addr")
        fl_busy = Signal(name="fl_busy")
        fl_buf = Signal(name="fl_buf")
        fl_j = Signal.like(wr_g, name="fl_j")
        fl_more = Signal(name="fl_more")    # more words of this row follow the current one
        fl_final = Signal(name="fl_final")
        fl_addr = Signal(md_w, name="fl_addr")
        map_done = Signal(name="map_done")  # the step's final map word is written now
        fl_slot = Signal(range(RB), name="fl_slot")   # register: fl_j << h_log
        word_starts = sorted({j << info.h_log for info in mem.maps.values()
                              for j in range(-(-info.channels // lanes))})

        with m.If(wr_valid):
            for i in range(2):
                with m.If(fill == i):
                    for b in range(lanes):
                        m.d.sync += row_buf[i][b].bit_select(slot, 1).eq(wr_bits[b])
        flush_word = Signal(lanes * W, name="fl_word")
        for b in range(lanes):
            chosen = Signal(RB, name=f"fl_row_{b}")
            picked = Signal(W, name=f"fl_pick_{b}")
            m.d.comb += chosen.eq(Mux(fl_buf, row_buf[1][b], row_buf[0][b]))
            with m.Switch(fl_slot):
                for start_bit in word_starts:
                    with m.Case(start_bit):
                        m.d.comb += picked.eq(chosen[start_bit:])
            m.d.comb += flush_word[b * W:(b + 1) * W].eq(picked & desc["dst_mask"])
        m.d.comb += [spike_write.addr.eq(fl_addr), spike_write.data.eq(flush_word),
                     spike_write.en.eq(fl_busy)]
        with m.If(fl_busy):
            with m.If(~fl_more):
                m.d.sync += fl_busy.eq(0)
                m.d.comb += map_done.eq(fl_final)
            with m.Else():
                m.d.sync += [fl_j.eq(fl_j + 1), fl_addr.eq(fl_addr + desc["dst_stride"]),
                             fl_slot.eq(fl_slot + desc["dst_stride"]),
                             fl_more.eq(fl_j != desc["groups_m2"])]
        row_done = wr_valid & x_last & (sdsa_mode | g_last)
        m.d.comb += final_beat.eq(wr_valid & y_last & x_last & g_last)
        with m.If(row_done):
            m.d.sync += [fill.eq(~fill), fl_busy.eq(1), fl_buf.eq(fill), fl_addr.eq(row_addr),
                         fl_j.eq(0), fl_slot.eq(0),
                         fl_more.eq(~sdsa_mode & (desc["groups_m1"] != 0)),
                         fl_final.eq(final_beat)]

        with m.If(wr_valid):
            with m.If(sdsa_mode):
                m.d.sync += slot.eq(Mux(x_last, 0, wr_x + 1))
                with m.If(x_last & y_last):
                    m.d.sync += [wr_x.eq(0), wr_y.eq(0), wr_g.eq(wr_g + 1),
                                 x_last.eq(one_side), y_last.eq(one_side),
                                 g_last.eq(g_next_last),
                                 head_addr.eq(head_addr + desc["dst_stride"]),
                                 row_addr.eq(head_addr + desc["dst_stride"])]
                with m.Elif(x_last):
                    m.d.sync += [wr_x.eq(0), wr_y.eq(wr_y + 1), x_last.eq(one_side),
                                 y_last.eq(y_next_last), row_addr.eq(row_addr + 1)]
                with m.Else():
                    m.d.sync += [wr_x.eq(wr_x + 1), x_last.eq(x_next_last)]
            with m.Else():
                with m.If(g_last):
                    m.d.sync += [wr_g.eq(0), g_last.eq(one_group),
                                 slot.eq(Mux(x_last, 0, wr_x + 1))]
                    with m.If(x_last):
                        m.d.sync += [wr_x.eq(0), wr_y.eq(wr_y + 1), x_last.eq(one_side),
                                     y_last.eq(y_next_last), row_addr.eq(row_addr + 1)]
                    with m.Else():
                        m.d.sync += [wr_x.eq(wr_x + 1), x_last.eq(x_next_last)]
                with m.Else():
                    m.d.sync += [wr_g.eq(wr_g + 1), g_last.eq(g_next_last),
                                 slot.eq(slot + desc["dst_stride"])]
        with m.If(start):
            m.d.sync += [wr_y.eq(0), wr_x.eq(0), wr_g.eq(0), slot.eq(0), fill.eq(0),
                         fl_busy.eq(0), x_last.eq(one_side), y_last.eq(one_side),
                         g_last.eq(one_group), row_addr.eq(desc["dst_base"]),
                         head_addr.eq(desc["dst_base"])]

        # --- LIF array input (engine read-out, stream reader or pool) ----------------------
        lif_x = Signal(data.ArrayLayout(signed(mem.lif_bits), lanes), name="lif_x")
        lif_valid = Signal(name="lif_valid")
        lif_index = Signal(bits_for(mem.membrane_words + 1), name="lif_index")
        lif_group = Signal.like(desc["groups"], name="lif_group")
        m.d.comb += [lif.i.valid.eq(lif_valid), lif.i.payload.x.eq(lif_x),
                     lif.i.payload.address.eq(desc["mbase"] + lif_index if T > 1 else 0),
                     lif.i.payload.group.eq(desc["tbase"] + lif_group),
                     lif.i.payload.first.eq(first), lif.o.ready.eq(1)]

        # --- SDSA output ---------------------------------------------------------------------
        sdsa_out_valid = Signal(name="sdsa_out_valid")
        sdsa_out_bits = Signal(lanes, name="sdsa_out_bits")
        with m.Switch(desc["sdsa"]):
            for index, unit in enumerate(sdsas):
                with m.Case(index):
                    m.d.comb += [sdsa_out_valid.eq(unit.o.valid & sdsa_mode),
                                 sdsa_out_bits.eq(unit.o.payload.spikes)]
        for unit in sdsas:
            m.d.comb += unit.o.ready.eq(1)
        m.d.comb += [
            wr_valid.eq(Mux(sdsa_mode, sdsa_out_valid, lif.o.valid)),
            wr_bits.eq(Mux(sdsa_mode, sdsa_out_bits, lif.o.payload.spikes)),
        ]

        # --- map reader -> engine (the source map, channel-major, row-minor) --------------------
        fd_c = Signal.like(desc["src_channels"], name="fd_c")
        fd_bank = Signal(range(lanes + 1), name="fd_bank")
        fd_addr = Signal(md_w, name="fd_addr")   # src_base + (c // lanes << h_log | y)
        fd_row = Signal(md_w, name="fd_row")     # src_base + (c // lanes << h_log)
        fd_y = Signal(range(W + 1), name="fd_y")
        feeding = Signal(name="feeding")
        fd_valid = Signal(name="fd_valid")      # the read ports hold a word for the engine
        fd_sel = Signal.like(fd_bank, name="fd_sel")
        fd_last = Signal(name="fd_last")
        fd_advance = Signal(name="fd_advance")
        # The memory's whole output word is registered first (``spike_word``, stage fw_*): a
        # block RAM's output is slow (5.8 ns clk-to-q on ECP5 grade 6), so nothing but a register
        # follows it. The chosen bank's word is registered again (fo_*) before the engine sees
        # it. Each stage holds its beat until the next one takes it.
        spike_word = Signal(lanes * W, name="spike_word")
        word_banks = [spike_word[b * W:(b + 1) * W] for b in range(lanes)]
        fw_valid = Signal(name="fw_valid")
        fw_sel = Signal.like(fd_bank, name="fw_sel")
        fw_last = Signal(name="fw_last")
        fw_take = Signal(name="fw_take")
        fd_word = Signal(W, name="fd_word")
        with m.Switch(fw_sel):
            for b in range(lanes):
                with m.Case(b):
                    m.d.comb += fd_word.eq(word_banks[b])
        fo_valid = Signal(name="fo_valid")
        fo_bits = Signal(W, name="fo_bits")
        fo_last = Signal(name="fo_last")
        fo_take = Signal(name="fo_take")
        m.d.comb += [fo_take.eq(~fo_valid | engine.i.ready),
                     fw_take.eq(~fw_valid | fo_take),
                     fd_advance.eq(~fd_valid | fw_take),
                     engine.i.valid.eq(fo_valid), engine.i.payload.bits.eq(fo_bits),
                     engine.i.payload.last.eq(fo_last)]
        with m.If(sdsa_mode | fw_take):
            m.d.sync += spike_word.eq(spike_read.data)
        with m.If(fw_take):
            m.d.sync += [fw_valid.eq(fd_valid & ~sdsa_mode), fw_sel.eq(fd_sel),
                         fw_last.eq(fd_last)]
        with m.If(fo_take):
            m.d.sync += [fo_valid.eq(fw_valid & ~sdsa_mode), fo_bits.eq(fd_word),
                         fo_last.eq(fw_last)]
        fd_y_last = (fd_y == desc["src_height_m1"])
        fd_is_last = (fd_c == desc["src_channels_m1"]) & fd_y_last

        # SDSA feeder state (shares the bank read ports with the map reader).
        sd_side = max(1, int(round(tokens ** 0.5)))
        sd_n_x = Signal(range(sd_side + 1), name="sd_x")
        sd_n_y = Signal(range(sd_side + 1), name="sd_y")
        sd_h = Signal(range(heads + 1), name="sd_h")
        sd_phase = Signal(2, name="sd_phase")   # read q, k, v
        sd_active = Signal(name="sd_active")    # issuing reads for the current token
        sd_got = Signal(2, name="sd_got")       # which row the read data returns (delayed phase)
        sd_got_valid = Signal(name="sd_got_valid")
        sd_x_d = Signal.like(sd_n_x, name="sd_x_d")
        rows = [Signal(lanes, name=f"sd_row_{n}") for n in ("q", "k", "v")]
        sd_beat = Signal(name="sd_beat")        # rows complete, offered to the SDSA
        sd_off = Signal(md_w, name="sd_off")    # (sd_h << h_log) | sd_y
        sd_head = Signal(md_w, name="sd_head")  # sd_h << h_log

        read_addr = Signal(md_w, name="spike_read_addr")
        read_en = Signal(name="spike_read_en")
        m.d.comb += [spike_read.addr.eq(read_addr), spike_read.en.eq(read_en)]

        # Both read addresses live in registers updated as their counters move (no shift or
        # product on the way to the memory); the SDSA adds only the q / k / v base.
        # The SDSA's reads go through an address register (sd_raddr, one cycle).
        sd_raddr = Signal(md_w, name="sd_raddr")
        sd_ren = Signal(name="sd_ren")
        sd_addr_phase = Signal(2, name="sd_addr_phase")
        sd_addr_x = Signal.like(sd_n_x, name="sd_addr_x")
        base = Mux(sd_phase == 0, desc["q_base"], Mux(sd_phase == 1, desc["k_base"],
                                                      desc["v_base"]))
        m.d.sync += [sd_raddr.eq(base + sd_off), sd_ren.eq(sd_active & sdsa_mode),
                     sd_addr_phase.eq(sd_phase), sd_addr_x.eq(sd_n_x)]
        with m.If(sdsa_mode):
            m.d.comb += [read_addr.eq(sd_raddr), read_en.eq(sd_ren)]
        with m.Else():
            m.d.comb += [read_addr.eq(fd_addr), read_en.eq(fd_advance)]

        # map reader counters
        with m.If(start & desc["is_layer"]):
            m.d.sync += [feeding.eq(1), fd_c.eq(0), fd_bank.eq(0), fd_y.eq(0), fd_valid.eq(0),
                         fd_addr.eq(desc["src_base"]), fd_row.eq(desc["src_base"])]
        with m.Elif(fd_advance & ~sdsa_mode):
            m.d.sync += [fd_valid.eq(feeding), fd_sel.eq(fd_bank), fd_last.eq(fd_is_last)]
            with m.If(feeding):
                with m.If(fd_is_last):
                    m.d.sync += feeding.eq(0)
                with m.Elif(fd_y_last):
                    m.d.sync += [fd_y.eq(0), fd_c.eq(fd_c + 1)]
                    with m.If(fd_bank == lanes - 1):
                        m.d.sync += [fd_bank.eq(0), fd_row.eq(fd_row + desc["src_stride"]),
                                     fd_addr.eq(fd_row + desc["src_stride"])]
                    with m.Else():
                        m.d.sync += [fd_bank.eq(fd_bank + 1), fd_addr.eq(fd_row)]
                with m.Else():
                    m.d.sync += [fd_y.eq(fd_y + 1), fd_addr.eq(fd_addr + 1)]

        # SDSA feeder: for each head, token: read q, k, v rows (one cycle each), offer the beat.
        # Reads return three cycles after the request (address register, memory, then
        # ``spike_word``).
        sd_read_valid = Signal(name="sd_read_valid")
        sd_read_phase = Signal(2, name="sd_read_phase")
        sd_read_x = Signal.like(sd_n_x, name="sd_read_x")
        m.d.sync += [sd_read_valid.eq(sd_ren), sd_read_phase.eq(sd_addr_phase),
                     sd_read_x.eq(sd_addr_x),
                     sd_got_valid.eq(sd_read_valid), sd_got.eq(sd_read_phase),
                     sd_x_d.eq(sd_read_x)]
        extracted = Signal(lanes, name="sd_extracted")
        for b in range(lanes):
            m.d.comb += extracted[b].eq(word_banks[b].bit_select(sd_x_d, 1))
        with m.If(sd_got_valid):
            with m.Switch(sd_got):
                for phase, row in enumerate(rows):
                    with m.Case(phase):
                        m.d.sync += row.eq(extracted)
            with m.If(sd_got == 2):
                m.d.sync += sd_beat.eq(1)
        with m.If(start & sdsa_mode):
            m.d.sync += [sd_active.eq(1), sd_phase.eq(0), sd_h.eq(0), sd_n_x.eq(0),
                         sd_n_y.eq(0), sd_beat.eq(0), sd_off.eq(0), sd_head.eq(0)]
        with m.Elif(sd_active):
            with m.If(sd_phase == 2):
                m.d.sync += [sd_active.eq(0), sd_phase.eq(0)]
            with m.Else():
                m.d.sync += sd_phase.eq(sd_phase + 1)
        sd_taken = Signal(name="sd_taken")
        with m.Switch(desc["sdsa"]):
            for index, unit in enumerate(sdsas):
                with m.Case(index):
                    m.d.comb += [unit.i.valid.eq(sd_beat & sdsa_mode),
                                 unit.i.payload.q.eq(rows[0]), unit.i.payload.k.eq(rows[1]),
                                 unit.i.payload.v.eq(rows[2]), unit.i.payload.first.eq(first),
                                 sd_taken.eq(unit.i.ready & sd_beat & sdsa_mode)]
        with m.If(sd_taken):
            m.d.sync += sd_beat.eq(0)
            last_token = (sd_n_x == sd_side - 1) & (sd_n_y == sd_side - 1)
            with m.If(~(last_token & (sd_h == heads - 1))):  # else: every beat is fed
                m.d.sync += sd_active.eq(1)
                with m.If(last_token):
                    m.d.sync += [sd_n_x.eq(0), sd_n_y.eq(0), sd_h.eq(sd_h + 1),
                                 sd_head.eq(sd_head + desc["src_stride"]),
                                 sd_off.eq(sd_head + desc["src_stride"])]
                with m.Elif(sd_n_x == sd_side - 1):
                    m.d.sync += [sd_n_x.eq(0), sd_n_y.eq(sd_n_y + 1), sd_off.eq(sd_off + 1)]
                with m.Else():
                    m.d.sync += sd_n_x.eq(sd_n_x + 1)

        # --- stream write stage (begin_stem copy, layer add/begin) -----------------------------
        VB = max(plan.acc_width, stem.accumulator_width)
        sw_valid = Signal(name="sw_valid")
        sw_addr = Signal(sd_w, name="sw_addr")
        sw_values = Signal(data.ArrayLayout(signed(VB), lanes), name="sw_values")
        sw_add = Signal(name="sw_add")
        sw_last = Signal(name="sw_last")
        old = data.View(data.ArrayLayout(signed(SB), lanes), stream_read.data)
        # Stage B (sw_*) holds a beat whose stream and shift words are being read; stage C
        # (sc_*) registers what the memories returned, then adds and writes. No path runs from a
        # memory's output through the shifter and adder into a memory's input in one cycle.
        # Consecutive beats write distinct words, so no forwarding is needed.
        sc_valid = Signal(name="sc_valid")
        sc_addr = Signal(sd_w, name="sc_addr")
        sc_add = Signal(name="sc_add")
        sc_last = Signal(name="sc_last")
        sc_old = Signal(data.ArrayLayout(signed(SB), lanes), name="sc_old")
        sc_amounts = Signal(lanes * shift_bits, name="sc_amounts")
        sc_values = Signal(data.ArrayLayout(signed(VB), lanes), name="sc_values")
        m.d.sync += [sc_valid.eq(sw_valid), sc_addr.eq(sw_addr), sc_add.eq(sw_add),
                     sc_last.eq(sw_last), sc_old.eq(old), sc_amounts.eq(shift_read.data)]
        m.d.sync += [sc_values[lane].eq(sw_values[lane]) for lane in range(lanes)]
        new_word = Signal(data.ArrayLayout(signed(SB), lanes), name="sw_word")
        for lane in range(lanes):
            amount = sc_amounts[lane * shift_bits:(lane + 1) * shift_bits]
            m.d.comb += new_word[lane].eq(Mux(sc_add, sc_old[lane], 0)
                                          + (sc_values[lane] << amount))
        m.d.comb += [stream_write.addr.eq(sc_addr), stream_write.data.eq(new_word.as_value()),
                     stream_write.en.eq(sc_valid)]

        # stream read port: layer add (engine beat's index), stream LIF / pool (counter)
        sr_addr = Signal(sd_w, name="stream_read_addr")
        sr_en = Signal(name="stream_read_en")
        m.d.comb += [stream_read.addr.eq(sr_addr), stream_read.en.eq(sr_en)]
        sh_addr = Signal.like(desc["shift_base"], name="shift_read_addr")  # register
        # Shift words: the stem's beat group or the engine's (only stem and stream-writing
        # layer steps use them).
        # The address is registered with the beat (stage sw_*); the ROM is read in that stage.
        m.d.comb += shift_read.addr.eq(sh_addr)
        m.d.sync += sh_addr.eq(desc["shift_base"] + Mux(desc["is_stem"], stem.o.payload.group,
                                                        engine.o.payload.group))

        m.d.sync += [sw_valid.eq(0), sw_last.eq(0)]

        # --- stem and begin_stem ---------------------------------------------------------------
        # The stem runs at every time step (recomputing it costs fewer resources than keeping
        # its output) and streams into the first residual stream: ``stream = acc << shift``.
        stem_count = Signal(range(stem_words + 1), name="stem_count")
        m.d.comb += [stem.start.eq(start & desc["is_stem"]), stem.o.ready.eq(1)]
        with m.If(start):
            m.d.sync += stem_count.eq(0)
        with m.If(stem.o.valid):
            m.d.sync += stem_count.eq(stem_count + 1)

        # --- stream reader (stream LIF, pool) ---------------------------------------------------
        rd_busy = Signal(name="rd_busy")
        rd_i = Signal(sd_w, name="rd_i")
        rd_g = Signal.like(desc["groups"], name="rd_g")
        rd_valid = Signal(name="rd_valid")
        rd_i_d = Signal.like(rd_i, name="rd_i_d")
        rd_g_d = Signal.like(rd_g, name="rd_g_d")
        rd_last_d = Signal(name="rd_last_d")
        m.d.sync += [rd_valid.eq(rd_busy), rd_i_d.eq(rd_i), rd_g_d.eq(rd_g),
                     rd_last_d.eq(rd_busy & (rd_i == desc["stream_words_m1"]))]
        with m.If(rd_busy):
            m.d.sync += [rd_i.eq(rd_i + 1), rd_g.eq(Mux(rd_g == desc["groups_m1"], 0, rd_g + 1))]
            with m.If(rd_i == desc["stream_words_m1"]):
                m.d.sync += rd_busy.eq(0)
        with m.If(start & desc["is_reader"]):
            m.d.sync += [rd_busy.eq(1), rd_i.eq(0), rd_g.eq(0)]
        stream_values = data.View(data.ArrayLayout(signed(SB), lanes), stream_read.data)

        # pool registers
        PB = mem.lif_bits
        pooled = Signal(data.ArrayLayout(signed(PB), plan.pool_groups * lanes), name="pooled")
        pv_valid = Signal(name="pv_valid")
        pv_g = Signal.like(desc["groups"], name="pv_g")
        pv_last = Signal(name="pv_last")
        pv_i = Signal.like(rd_i, name="pv_i")
        pv_values = Signal(data.ArrayLayout(signed(SB), lanes), name="pv_values")
        firing = Signal(name="pool_firing")
        fire_g = Signal.like(desc["groups"], name="pool_fire_g")
        fire_valid = Signal(name="pool_fire_valid")
        fire_index = Signal.like(desc["groups"], name="pool_fire_index")
        fire_x = Signal(data.ArrayLayout(signed(PB), lanes), name="pool_fire_x")

        # --- per-kind routing -------------------------------------------------------------------
        out = engine.o.payload
        # The engine's output is taken whenever a layer runs (the LIF array's input is always
        # ready in this design); a registered flag, not a decode of the kind.
        m.d.comb += engine.o.ready.eq(desc["is_layer"] & (~desc["sink_lif"] | lif.i.ready))
        with m.Switch(kind):
            with m.Case(StepKind.STEM):
                with m.If(stem.o.valid):
                    m.d.sync += [sw_valid.eq(1), sw_addr.eq(desc["stream_base"] + stem_count),
                                 sw_add.eq(0), sw_last.eq(stem.o.payload.last)]
                    m.d.sync += [sw_values[lane].eq(stem.o.payload.values[lane])
                                 for lane in range(lanes)]
                m.d.comb += finish.eq(sc_valid & sc_last)
            with m.Case(StepKind.LAYER):
                with m.Switch(sink):
                    with m.Case(SinkKind.LIF):
                        m.d.comb += [lif_valid.eq(engine.o.valid),
                                     lif_index.eq(out.index), lif_group.eq(out.group)]
                        m.d.comb += [lif_x[lane].eq(out.values[lane]) for lane in range(lanes)]
                        m.d.comb += finish.eq(map_done)
                    with m.Case(SinkKind.ADD, SinkKind.BEGIN):
                        m.d.comb += [sr_addr.eq(desc["stream_base"] + out.index),
                                     sr_en.eq(1)]
                        with m.If(engine.o.valid):
                            m.d.sync += [sw_valid.eq(1), sw_addr.eq(desc["stream_base"]
                                                                    + out.index),
                                         sw_add.eq(desc["sink_add"]),
                                         sw_last.eq(out.last)]
                            m.d.sync += [sw_values[lane].eq(out.values[lane])
                                         for lane in range(lanes)]
                        m.d.comb += finish.eq(sc_valid & sc_last)
                    with m.Case(SinkKind.LOGITS):
                        with m.If(engine.o.valid):
                            with m.Switch(out.group):
                                for g in range(-(-self.logits.shape().length // lanes)):
                                    with m.Case(g):
                                        for lane in range(lanes):
                                            c = g * lanes + lane
                                            if c < self.logits.shape().length:
                                                m.d.sync += self.logits[c].eq(
                                                    self.logits[c] + out.values[lane])
                        m.d.comb += finish.eq(engine.o.valid & out.last)
            with m.Case(StepKind.STREAM_LIF):
                # The stream word is registered (pv_*) before it goes to the LIF array.
                m.d.comb += [sr_addr.eq(desc["stream_base"] + rd_i), sr_en.eq(1),
                             lif_valid.eq(pv_valid), lif_index.eq(pv_i),
                             lif_group.eq(pv_g)]
                m.d.sync += [pv_valid.eq(rd_valid), pv_g.eq(rd_g_d), pv_i.eq(rd_i_d),
                             pv_values.eq(stream_values)]
                m.d.comb += [lif_x[lane].eq(pv_values[lane]) for lane in range(lanes)]
                m.d.comb += finish.eq(map_done)
            with m.Case(StepKind.POOL_LIF):
                m.d.comb += [sr_addr.eq(desc["stream_base"] + rd_i), sr_en.eq(1)]
                # The stream word is registered (pv_*) before it is added into the pool.
                m.d.sync += [pv_valid.eq(rd_valid), pv_g.eq(rd_g_d), pv_last.eq(rd_last_d),
                             pv_values.eq(stream_values)]
                with m.If(pv_valid):
                    with m.Switch(pv_g):
                        for group in range(plan.pool_groups):
                            with m.Case(group):
                                for lane in range(lanes):
                                    c = group * lanes + lane
                                    m.d.sync += pooled[c].eq(pooled[c] + pv_values[lane])
                    with m.If(pv_last):
                        m.d.sync += [firing.eq(1), fire_g.eq(0)]
                # The pooled group is chosen into a register (fire_*) before the LIF array:
                # the pool's registers are spread wide, so the choice gets a cycle of its own.
                m.d.comb += [lif_valid.eq(fire_valid), lif_index.eq(fire_index),
                             lif_group.eq(fire_index)]
                m.d.comb += [lif_x[lane].eq(fire_x[lane]) for lane in range(lanes)]
                with m.If(~fire_valid | lif.i.ready):
                    m.d.sync += fire_valid.eq(firing)
                    with m.If(firing):
                        m.d.sync += [fire_index.eq(fire_g), fire_g.eq(fire_g + 1)]
                        with m.Switch(fire_g):
                            for group in range(plan.pool_groups):
                                with m.Case(group):
                                    m.d.sync += [fire_x[lane].eq(pooled[group * lanes + lane])
                                                 for lane in range(lanes)]
                        with m.If(fire_g == desc["groups_m1"]):
                            m.d.sync += firing.eq(0)
                m.d.comb += finish.eq(map_done)
            with m.Case(StepKind.SDSA):
                m.d.comb += finish.eq(map_done)
        with m.If(start & desc["is_pool"]):
            m.d.sync += [pooled[c].eq(0) for c in range(plan.pool_groups * lanes)]

        # --- sequencer --------------------------------------------------------------------------
        k = Signal(range(len(steps) + 1), name="program_step")
        running = Signal(name="running")
        phase = Signal(2, name="seq_phase")  # 0: decode, 3: load descriptor, 1: start, 2: wait
        m.d.comb += [self.step.eq(k), self.ready.eq(engine.ready)]
        finished = Signal(name="step_finished")  # ``finish``, registered
        m.d.sync += finished.eq(finish & (phase == 2))
        # The ROM as sum-of-products logic, not a switch: Yosys would turn a switch of constants
        # into a memory and put it in a block RAM, whose slow output would then drive every
        # datapath through the descriptor registers.
        # ``hit`` is registered: the step index is decoded in the cycle before the load.
        addresses = sorted(rom)
        hit = Signal(len(addresses), name="desc_rom_hit")
        m.d.sync += hit.eq(Cat(Cat(k, t) == address for address in addresses))
        for bit in range(desc_layout.size):
            mask = sum(1 << n for n, address in enumerate(addresses) if rom[address] >> bit & 1)
            if mask:
                m.d.comb += desc_rom[bit].eq((hit & mask).any())
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.start & self.ready & ~running):
            m.d.sync += [running.eq(1), self.done.eq(0), k.eq(0), t.eq(0), phase.eq(0),
                         self.cycles.eq(0)]
            m.d.sync += [self.logits[c].eq(0) for c in range(self.logits.shape().length)]
        with m.If(running):
            with m.Switch(phase):
                with m.Case(0):
                    # ``hit`` decodes (t, k) at the end of this cycle.
                    m.d.sync += phase.eq(3)
                with m.Case(3):
                    m.d.sync += [desc_word.eq(desc_rom), phase.eq(1)]
                with m.Case(1):
                    m.d.comb += start.eq(1)
                    m.d.sync += phase.eq(2)
                with m.Case(2):
                    # begin_stem steps are skipped (the stem step writes the stream itself):
                    # the descriptor names the next step to run.
                    with m.If(finished):
                        m.d.sync += phase.eq(0)
                        with m.If(desc["last_step"]):
                            with m.If(t == T - 1):
                                m.d.sync += [running.eq(0), self.done.eq(1)]
                            with m.Else():
                                m.d.sync += [t.eq(t + 1), k.eq(0)]
                        with m.Else():
                            m.d.sync += k.eq(desc["next_k"])
        return m
