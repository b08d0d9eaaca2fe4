"""The network program: one typed list of steps, recorded from ``quant.graph.walk``.

The same dataflow walk that drives the float and integer models drives the hardware: the
:class:`Program` backend records it as a list of :class:`Step`, in execution order within one time
step. The shared network (:mod:`hw.plan`, :mod:`hw.shared`) and the co-simulation's reports read
this list; nothing parses strings.

* :class:`StepKind` says which datapath a step runs. It is an Amaranth enum whose values are the
  codes the shared network's descriptor holds (``kind`` field), so the hardware and this list use
  one encoding.
* :class:`Sink` says where a step's output goes: a LIF's spike map (``LIF`` for a layer feeding a
  LIF, ``MAP`` for a unit that writes spikes itself), a residual stream (``ADD`` into it, ``BEGIN``
  it), the ``LOGITS`` or the stem's output buffer (``STEM_OUT``). :class:`SinkKind`'s first four
  values are the descriptor's ``sink`` codes of a layer step.

Contract: :class:`Program` ``(net).steps`` begins with the stem (``first_step_only``) or, for an
event model (``cfg.events``), with the event input (``EVENT_IN`` into the ``input`` map, every
time step), lists every other step once, and ends with the classifier (``Sink(LOGITS)``). Tested by
``tests/test_network.py`` and, through both generators, by every network test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.lib import enum

__all__ = ["StepKind", "SinkKind", "Sink", "Step", "Program", "lif_map_shapes", "mem_name"]


class StepKind(enum.Enum, shape=3):
    """Which datapath a step runs (values: the shared network's descriptor codes)."""

    #: The stem convolution on pixels (the only multiplying layer).
    STEM = 0
    #: Copy the stem's output into the first residual stream (``<< shift``).
    BEGIN_STEM = 1
    #: A convolution or linear layer on spikes, on a synapse engine.
    LAYER = 2
    #: A LIF reading a residual stream.
    STREAM_LIF = 3
    #: Spike-driven self-attention of one block (Q, K, V maps, or Q and K for SDSA-2, to the
    #: attention LIF's map: SDSA-3/4's spikes, SDSA-1/2's masked Q).
    SDSA = 4
    #: The head's sum pool over positions of the last stream, then its LIF.
    POOL_LIF = 5
    #: Event input: one time step's event frame (0/1 per channel and pixel) taken from the
    #: network's ``events`` port into the ``input`` spike map (event models only).
    EVENT_IN = 6
    #: Vanilla shortcut: a branch's output LIF on its sums (a stream place the branch's last
    #: layer began) plus ``identity[c]`` where the block's incoming spike map (``residual``)
    #: fired: ``u = (acc << k) + (identity if spike else 0)``.
    RESIDUAL_LIF = 7

    @property
    def label(self) -> str:
        """Lower-case name for reports (``"layer"``, ``"head_pool_lif"``, ...)."""
        return "head_pool_lif" if self is StepKind.POOL_LIF else self.name.lower()


class SinkKind(enum.Enum, shape=3):
    """Where a step's output goes (the first four: the descriptor's ``sink`` codes)."""

    LIF = 0       # a layer's sums into a LIF, which writes the LIF's spike map
    ADD = 1       # a layer's sums shifted and added into a residual stream
    BEGIN = 2     # a layer's (or the stem's) sums shifted into a residual stream, starting it
    LOGITS = 3    # the classifier's sums, added into the logits
    MAP = 4       # spikes written by the step's own LIF (stream LIF, pool LIF, SDSA)
    STEM_OUT = 5  # the stem's output (the shared network writes it into the first stream through
                  # the stem's BEGIN_STEM step)
    POOL = 6      # SEW: a pool pass whose sums stay in the pool for the next pass (the head's pool
                  # of counts is one pass per producer map; the last one fires the LIF)


@dataclass(frozen=True)
class Sink:
    """A step's destination: a kind and, for maps and streams, the target's name."""

    kind: SinkKind
    target: str | None = None

    @property
    def spike_map(self) -> str | None:
        """The LIF whose spike map this sink writes, or None."""
        return self.target if self.kind in (SinkKind.LIF, SinkKind.MAP) else None

    @property
    def stream(self) -> str | None:
        """The residual stream this sink writes, or None."""
        return self.target if self.kind in (SinkKind.ADD, SinkKind.BEGIN) else None

    def __str__(self) -> str:
        """``lif:<name>``, ``add:<stream>``, ``logits``, ... (reports and error messages)."""
        label = self.kind.name.lower()
        return label if self.target is None else f"{label}:{self.target}"


@dataclass(frozen=True)
class Attention:
    """The spike maps an SDSA step reads (``v`` is None for SDSA-2, which has no V)."""

    q: str
    k: str
    v: str | None = None


@dataclass
class Step:
    """One entry of the network program.

    Members
    -------
    kind : StepKind
    name : str
        Layer, LIF or attention path the step computes (unique; the report's row name).
    layer : str or None
        Layer name for ``STEM``, ``BEGIN_STEM`` and ``LAYER`` steps.
    source : str or None
        Spike map (LIF name) a layer reads, the stream a LIF or pool reads, or the attention
        block's path for ``SDSA``.
    sink : Sink
    first_step_only : bool
        Run only at ``t = 0`` (the stem: the input repeats at every time step).
    attention : Attention or None
        The Q, K and V spike maps of an ``SDSA`` step (no V for SDSA-2).
    residual : str or None
        Vanilla shortcut: the spike map whose spikes a ``RESIDUAL_LIF`` step adds (its
        ``identity``), or that a ``POOL_LIF`` step sums (the last block's spikes; ``source`` is
        then None). SEW: the producer map a pass of the head's pool sums.
    bias : bool
        False for a ``LAYER`` step that adds its sums without the layer's bias: a later pass of
        a convolution on spike counts (SEW), which the first pass began with the bias.
    depthwise : str or None
        SepConv unfused: the depthwise layer (``<block>.Conv.dwconv``) between ``source`` and
        this ``LAYER`` step's pointwise layer (``pwconv2``). The step runs both: the depthwise
        conv on the source map's spikes, its sums' bit planes, and ``layer`` as a 1x1 conv on
        them (:mod:`hw.sepconv`).
    """

    kind: StepKind
    name: str
    layer: str | None = None
    source: str | None = None
    sink: Sink = field(default_factory=lambda: Sink(SinkKind.STEM_OUT))
    first_step_only: bool = False
    attention: Attention | None = None
    residual: str | None = None
    bias: bool = True
    depthwise: str | None = None


def mem_name(name: str) -> str:
    """Return a Verilog-friendly identifier for a layer, LIF or stream name."""
    return name.replace(".", "_")


class _Ref:
    """What a walk primitive returned: a pending layer output, a stream, spikes or a pool
    (``maps``: SEW, the producer spike maps a stream of counts sums, in order)."""

    def __init__(self, kind, name, stream=None, maps=()):
        self.kind, self.name, self.stream, self.maps = kind, name, stream, tuple(maps)


class Program:
    """Record :func:`quant.graph.walk` as a list of :class:`Step` (a walk backend).

    Parameters
    ----------
    net : quant.quantize.IntNet
        With SepConv unfused (``net.fuse_sepconv`` False), each ``dwconv -> pwconv2`` is one
        ``LAYER`` step of ``pwconv2`` on ``Conv.lif2``'s map with ``depthwise`` naming the
        ``dwconv`` (its sums never leave the step). Every SDSA operator (1 to 4) is recorded: an
        ``SDSA`` step names its Q, K and V maps (SDSA-2: Q and K). The membrane and vanilla
        shortcuts are recorded (SEW is refused by ``walk``): with vanilla, the stem begins a
        stream that a ``STREAM_LIF`` (``downsample1_1.out_lif``) reads, a branch's last layer
        begins a stream ``<layer>.sum`` that a ``RESIDUAL_LIF`` reads with the block's incoming
        spikes, and the head's ``POOL_LIF`` sums the last block's spike map. With SEW, a stream
        of counts is the list of spike maps its producers wrote (the downsampler's ``out_lif``,
        then every branch's output LIF); a convolution is linear, so a layer on counts runs once
        per producer map (``<layer>@<map>``), the first beginning the stream ``<layer>.sum``
        with the bias, the others adding into it without it (``bias=False``), and a
        ``STREAM_LIF`` fires its LIF on the sums; the head pools the counts one producer map a
        pass (``POOL_LIF``, sink ``POOL`` but the last, which fires).
    """

    shortcuts = ("membrane", "sew", "vanilla")

    def __init__(self, net):
        from quant.graph import walk

        self.net = net
        self.cfg = net.cfg
        self.fused_sepconv = net.fuse_sepconv
        self.steps: list[Step] = []
        walk(self.cfg, self, None)

    # walk primitives -------------------------------------------------------------------------
    def stem(self, name, image):
        self.steps.append(Step(StepKind.STEM, name, layer=name, sink=Sink(SinkKind.STEM_OUT),
                               first_step_only=True))
        return _Ref("stem", name)

    def spike_input(self, name, frames):
        self.steps.append(Step(StepKind.EVENT_IN, name, sink=Sink(SinkKind.MAP, name)))
        return _Ref("spikes", name)

    def conv(self, name, x):
        return _Ref("layer", name, x)

    def _layer(self, ref, sink: Sink):
        if ref.stream.kind == "counts":
            raise NotImplementedError(f"{ref.name} on spike counts into {sink}")
        if ref.stream.kind == "layer":      # SepConv unfused: pwconv2 on dwconv's sums
            inner = ref.stream
            if inner.stream.kind != "spikes":
                raise NotImplementedError(f"{inner.name} on {inner.stream.kind}, not spikes")
            self.steps.append(Step(StepKind.LAYER, ref.name, layer=ref.name,
                                   source=inner.stream.name, sink=sink, depthwise=inner.name))
            return
        self.steps.append(Step(StepKind.LAYER, ref.name, layer=ref.name, source=ref.stream.name,
                               sink=sink))

    def lif(self, name, x, theta, layout):
        if x.kind == "layer" and x.stream.kind == "counts":   # SEW: one pass per producer map
            target = f"{x.name}.sum"
            for index, spikes in enumerate(x.stream.maps):
                self.steps.append(Step(
                    StepKind.LAYER, f"{x.name}@{spikes}", layer=x.name, source=spikes,
                    sink=Sink(SinkKind.ADD if index else SinkKind.BEGIN, target),
                    bias=index == 0))
            self.steps.append(Step(StepKind.STREAM_LIF, name, source=target,
                                   sink=Sink(SinkKind.MAP, name)))
        elif x.kind == "layer":
            self._layer(x, Sink(SinkKind.LIF, name))
        elif x.kind == "stream":
            self.steps.append(Step(StepKind.STREAM_LIF, name, source=x.name,
                                   sink=Sink(SinkKind.MAP, name)))
        elif x.kind == "pooled":
            self.steps.append(Step(StepKind.POOL_LIF, name, source=x.name,
                                   sink=Sink(SinkKind.MAP, name)))
        elif x.kind == "pooled_counts":     # SEW: the counts summed one producer map a pass
            last = len(x.maps) - 1
            for index, spikes in enumerate(x.maps):
                self.steps.append(Step(
                    StepKind.POOL_LIF, name if index == last else f"{name}@{spikes}",
                    sink=Sink(SinkKind.MAP if index == last else SinkKind.POOL, name),
                    residual=spikes))
        elif x.kind == "pooled_spikes":     # vanilla: the last block's spikes summed
            self.steps.append(Step(StepKind.POOL_LIF, name, sink=Sink(SinkKind.MAP, name),
                                   residual=x.name))
        elif x.kind == "residual":          # vanilla: a branch's sums plus the incoming spikes
            self.steps.append(Step(StepKind.RESIDUAL_LIF, name, layer=x.name.removesuffix(".sum"),
                                   source=x.name, sink=Sink(SinkKind.MAP, name),
                                   residual=x.stream.name))
        elif x.kind == "stem":              # vanilla: the stem's sums begin a stream, then a LIF
            stream = name.split(".")[0]
            self.begin_stream(x, stream, x.name)
            self.steps.append(Step(StepKind.STREAM_LIF, name, source=stream,
                                   sink=Sink(SinkKind.MAP, name)))
        else:
            raise NotImplementedError(f"LIF {name} on {x.kind}")
        return _Ref("spikes", name)

    def begin_stream(self, x, stream, producer):
        if x.kind == "stem":
            self.steps.append(Step(StepKind.BEGIN_STEM, f"{producer}.begin", layer=producer,
                                   source="stem_out", sink=Sink(SinkKind.BEGIN, stream)))
        else:
            self._layer(x, Sink(SinkKind.BEGIN, stream))
        return _Ref("stream", stream)

    def add(self, stream, branch, producer):
        self._layer(branch, Sink(SinkKind.ADD, stream.name))
        return _Ref("stream", stream.name)

    def sdsa(self, prefix, q, k, v):
        name = f"{prefix}.attn_lif"
        self.steps.append(Step(StepKind.SDSA, name, source=prefix, sink=Sink(SinkKind.MAP, name),
                               attention=Attention(q.name, k.name,
                                                   None if v is None else v.name)))
        return _Ref("spikes", name)

    def count_stream(self, spikes, stream, producer):
        """SEW: a stream of counts begins as the downsampler's ``out_lif`` map."""
        return _Ref("counts", stream, maps=(spikes.name,))

    def add_spikes(self, stream, spikes, producer):
        """SEW: a branch's output LIF map joins the stream's producer maps."""
        return _Ref("counts", stream.name, maps=stream.maps + (spikes.name,))

    def residual(self, branch, spikes, producer):
        """Vanilla: the branch's last layer begins the stream ``<producer>.sum``; the output
        LIF (:meth:`lif`) reads it with ``spikes``."""
        name = f"{producer}.sum"
        self._layer(branch, Sink(SinkKind.BEGIN, name))
        return _Ref("residual", name, spikes)

    def pool(self, stream):
        if stream.kind == "counts":
            return _Ref("pooled_counts", stream.name, maps=stream.maps)
        if stream.kind == "spikes":
            return _Ref("pooled_spikes", stream.name)
        return _Ref("pooled", stream.name)

    def finish(self, logits):
        self._layer(logits, Sink(SinkKind.LOGITS))
        return self


def lif_map_shapes(net, steps, sizes) -> dict:
    """Return ``{lif: (step, channels, side)}`` for every step that writes a spike map, in program
    order (a layer's output side, the SDSA's token map, the head's 1x1, a stream's side; the
    event input's map is named ``input``: the input channels at the image's side)."""
    shapes = {}
    for step in steps:
        lif = step.sink.spike_map
        if lif is None:
            continue
        if step.kind is StepKind.EVENT_IN:
            shapes[lif] = (step, net.cfg.in_channels, net.cfg.img_size)
            continue
        channels = net.lifs[lif].threshold.shape[0]
        if step.kind is StepKind.LAYER:
            side = 1 if step.layer == "head" else sizes[step.layer.split(".")[0]]
        elif step.kind is StepKind.SDSA:
            side = sizes[lif.split(".")[0]]
            channels = net.layers[f"{step.source}.q_conv"].weight.shape[0]
        elif step.kind is StepKind.POOL_LIF:
            side = 1
        elif step.kind is StepKind.RESIDUAL_LIF:
            side = sizes[step.layer.split(".")[0]]
        else:   # a stream LIF: a stream's side (SEW: a layer's sums, ``<layer>.sum``)
            side = sizes[step.source.split(".")[0]]
        shapes[lif] = (step, channels, side)
    return shapes
