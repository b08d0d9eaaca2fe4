"""Quantize a folded Meta-SpikeFormer into the integer network of ``docs/arithmetic.md``.

Scales are float64 everywhere; the integers they produce (weights, biases, shifts, thresholds)
are what the integer golden model and the hardware use. Each width is computed from a worst-case
bound over all inputs the layer can see (binary spikes, pixel codes, the producer ranges of a
stream, the spike counts of a SEW stream) and reported per layer.

All three shortcuts of ``golden.model`` are quantized (``docs/arithmetic.md`` section 8): the
membrane shortcut's streams of shifted sums, the SEW shortcut's streams of spike counts (layers
of kind ``'counts'`` read them), and the vanilla shortcut's block output LIFs, whose input is the
branch's sums plus ``identity`` units per incoming spike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import MAX_BITS, MIN_BITS, intops  # the bit range: 2..16, re-exported
from .fold import FoldedNet, fold_model
from .graph import plan

__all__ = ["PixelQuant", "IntLayer", "IntLIF", "IntStream", "IntAttention", "IntNet", "quantize",
           "quantize_model", "default_pixel_range", "DIGITS_PIXEL_RANGE", "IMAGENET_PIXEL_RANGE",
           "MIN_BITS", "MAX_BITS", "QuantizationError"]

# Products and sums are evaluated by float BLAS as an exact integer evaluator; float64 holds every
# integer below 2**53 exactly, so a layer whose worst-case magnitude passes this is refused.
EXACT_FLOAT64 = 2 ** 53


class QuantizationError(ValueError):
    """A folded value the integer network cannot represent (NaN, Inf, or beyond 2**53 units)."""


def _check_bits(name: str, bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name}={bits} is out of range: {MIN_BITS} to {MAX_BITS} bits")
    return int(bits)


@dataclass
class PixelQuant:
    """Map real stem inputs to unsigned integer codes: ``x = (code - zero_point) * scale``.

    Members
    -------
    bits : int
        Code width; codes are ``0 .. 2**bits - 1``.
    scale : numpy.ndarray
        float64 ``[C]``, real value of one code step per input channel.
    zero_point : numpy.ndarray
        int64 ``[C]``, the code of a real 0; the stem pads with it, so padding is exactly 0.
    """

    bits: int
    scale: np.ndarray
    zero_point: np.ndarray

    @classmethod
    def from_range(cls, bits: int, low, high, channels: int) -> "PixelQuant":
        """Build the codes covering ``[low, high]`` per channel (widened to include 0)."""
        bits = _check_bits("pixel_bits", bits)
        low = np.minimum(np.broadcast_to(np.asarray(low, np.float64), (channels,)), 0.0)
        high = np.maximum(np.broadcast_to(np.asarray(high, np.float64), (channels,)), 0.0)
        if np.any(high - low <= 0):
            raise ValueError(f"pixel range [{low}, {high}] is empty")
        top = (1 << bits) - 1
        scale = (high - low) / top
        zero_point = np.clip(np.rint(-low / scale), 0, top).astype(np.int64)
        return cls(bits, scale, zero_point)

    @property
    def max_code(self) -> int:
        """Return the largest code."""
        return (1 << self.bits) - 1

    def codes(self, images) -> np.ndarray:
        """Quantize float images ``[B, C, H, W]`` to int64 codes (round half to even, clip)."""
        x = np.asarray(images, dtype=np.float64)
        view = (1, -1, 1, 1)
        q = np.rint(x / self.scale.reshape(view)) + self.zero_point.reshape(view)
        return np.clip(q, 0, self.max_code).astype(np.int64)


@dataclass
class IntLayer:
    """Hold one integer layer: ``acc = bias + sum(weight * input)`` over its window.

    Members
    -------
    name, kind, stride, padding, groups
        As :class:`quant.fold.FoldedLayer`.
    weight : numpy.ndarray
        int64, the folded weights in ``weight_bits``-bit two's complement.
    bias : numpy.ndarray
        int64 ``[Cout]`` in accumulator units (the stem's includes the zero-point correction).
    scale : numpy.ndarray
        float64 ``[Cout]``: real value of one accumulator unit.
    shift : numpy.ndarray or None
        int64 ``[Cout]`` left shifts into the residual stream (stream producers only; vanilla
        shortcut: into the block's output LIF).
    stream : str or None
        The residual stream this layer writes.
    acc_low, acc_high : numpy.ndarray
        int64 ``[Cout]`` worst-case accumulator range over every possible input.
    input_max : int or None
        Kind ``'counts'`` (SEW shortcut: a conv on a stream of spike counts): the largest count
        its input can hold. None for every other kind.
    identity : numpy.ndarray or None
        Vanilla shortcut, a branch's last layer: int64 ``[Cout]``, the value of one incoming
        spike in this layer's output units (``m[c] = 1 / scale[c]`` when the shift is 0); its
        LIF reads ``(acc << shift) + (identity if spike else 0)``. None otherwise.
    shortcut_from : str or None
        With ``identity``: the LIF whose spikes (the block's input) are added.
    """

    name: str
    kind: str
    weight: np.ndarray
    bias: np.ndarray
    scale: np.ndarray
    stride: int = 1
    padding: int = 0
    groups: int = 1
    shift: np.ndarray | None = None
    stream: str | None = None
    acc_low: np.ndarray | None = None
    acc_high: np.ndarray | None = None
    weight_bits: int = 8
    input_max: int | None = None
    identity: np.ndarray | None = None
    shortcut_from: str | None = None

    @property
    def acc_bits(self) -> int:
        """Return the accumulator width proven by the bound."""
        return intops.signed_bits(min(0, int(self.acc_low.min())), max(0, int(self.acc_high.max())))

    @property
    def bias_bits(self) -> int:
        """Return the width of the bias words."""
        return intops.signed_bits(min(0, int(self.bias.min())), max(0, int(self.bias.max())))

    @property
    def magnitude_bound(self) -> int:
        """Return a bound on every partial sum's magnitude (decides the exact float evaluator)."""
        bound = int(max(abs(int(self.acc_low.min())), abs(int(self.acc_high.max()))))
        if self.input_max is not None:
            # A sum of counts times weights without the bias: at most input_max * sum |w|.
            taps = np.abs(self.weight.reshape(self.weight.shape[0], -1)).sum(1)
            bound = max(bound, int(taps.max(initial=0)) * self.input_max)
        return bound


@dataclass
class IntLIF:
    """Hold one integer LIF layer: per-channel thresholds in doubled units (``docs/arithmetic.md``).

    Members
    -------
    name : str
        Golden module path.
    threshold : numpy.ndarray
        int64 ``[C]`` (or ``[1]``), clamped to ``input_bits + 1`` signed bits where a larger value
        could never be reached (same decisions).
    input_bits : int
        Width of the input and of the membrane (the membrane never needs more, see the contract).
    scale : numpy.ndarray
        float64, real value of one input unit per channel.
    theta : float
        The float threshold.
    source : str
        What feeds it: a layer name, ``stream:<name>``, ``pooled:<name>``, ``attention:<path>``
        or ``residual:<layer>`` (vanilla shortcut: the layer's sums plus the incoming spikes).
    """

    name: str
    threshold: np.ndarray
    input_bits: int
    scale: np.ndarray
    theta: float
    source: str
    layout: str = "map"

    @property
    def threshold_bits(self) -> int:
        """Return the width of the threshold words."""
        return intops.signed_bits(0, int(self.threshold.max()))


@dataclass
class IntStream:
    """Hold one residual stream: its finest per-channel scale and its proven range.

    Members
    -------
    name : str
        The downsampler that starts it.
    scale : numpy.ndarray
        float64 ``[C]``; producer ``p`` is quantized at ``scale * 2**shift_p`` and shifted left.
        A stream of counts: ones (one count is one spike, real value 1).
    producers : list of str
        Layer names, the downsampler first; a stream of counts: the LIFs whose spikes it adds.
    low, high : numpy.ndarray
        int64 ``[C]`` bounds containing every partial sum of the stream.
    counts : bool
        SEW shortcut: the stream holds spike counts ``0 .. len(producers)``.
    """

    name: str
    scale: np.ndarray
    producers: list
    low: np.ndarray
    high: np.ndarray
    counts: bool = False

    @property
    def bits(self) -> int:
        """Return the stream width proven by the bound (counts: unsigned bits)."""
        if self.counts:
            return max(1, int(self.high.max()).bit_length())
        return intops.signed_bits(int(self.low.min()), int(self.high.max()))


@dataclass(frozen=True)
class IntAttention:
    """One attention block's integer SDSA: operator, shape, widths and the attention threshold.

    Members
    -------
    sdsa : int
        The operator (1, 2, 3 or 4; ``docs/sdsa-variants.md``).
    tokens, head_width, heads : int
        ``N``, ``d`` and the number of heads.
    count_bits : int
        Unsigned bits of the largest count the attention LIF sees.
    kv_bits : int
        Unsigned bits of one ``K^T V`` entry (0 for SDSA-1/2, which build no KV).
    threshold : int
        The attention LIF's integer threshold.
    """

    sdsa: int
    tokens: int
    head_width: int
    heads: int
    count_bits: int
    kv_bits: int
    threshold: int


@dataclass
class IntNet:
    """Hold a whole quantized network: what the integer model runs and the memory images hold.

    Members
    -------
    cfg : golden.config.ModelConfig
    weight_bits : int
    pixel : PixelQuant or None
        The stem's input codes; None for event input (``cfg.events``: the input is spikes).
    layers, lifs, streams : dict
        Name -> :class:`IntLayer`, :class:`IntLIF`, :class:`IntStream`, in execution order.
    attention : dict
        Attention path -> :class:`IntAttention`.
    fuse_sepconv : bool or tuple of str
        SepConv fused in every block, in none, or in the blocks named
        (``quant.graph.sepconv_fused``).
    logit_scale : float
        Real value of one unit of the summed-over-T logits, times T (dequantize: ``* scale / T``).
    """

    cfg: object
    weight_bits: int
    pixel: PixelQuant | None
    layers: dict = field(default_factory=dict)
    lifs: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)
    fuse_sepconv: bool | tuple = True
    logit_bits: int = 0

    @property
    def logit_scale(self) -> float:
        """Return the real value of one logit unit of one time step."""
        return float(self.layers["head"].scale[0])

    def report(self) -> list[dict]:
        """Return one row per layer and LIF: widths, ranges and thresholds, for tables and JSON."""
        rows = []
        for layer in self.layers.values():
            row = {
                "name": layer.name, "kind": layer.kind, "shape": list(layer.weight.shape),
                "weight_bits": layer.weight_bits, "bias_bits": layer.bias_bits,
                "acc_bits": layer.acc_bits, "stream": layer.stream,
                "shift_max": None if layer.shift is None else int(layer.shift.max()),
                "float_evaluator": "float32" if layer.magnitude_bound < 2 ** 24 else "float64",
            }
            if layer.input_max is not None:
                row["input_max"] = layer.input_max
            if layer.identity is not None:
                row["identity_max"] = int(layer.identity.max())
                row["shortcut_from"] = layer.shortcut_from
            rows.append(row)
        for lif in self.lifs.values():
            rows.append({"name": lif.name, "kind": "lif", "source": lif.source,
                         "input_bits": lif.input_bits, "membrane_bits": lif.input_bits,
                         "threshold_bits": lif.threshold_bits,
                         "threshold_min": int(lif.threshold.min()),
                         "threshold_max": int(lif.threshold.max())})
        for stream in self.streams.values():
            row = {"name": f"stream:{stream.name}", "kind": "stream", "bits": stream.bits,
                   "producers": len(stream.producers)}
            if stream.counts:
                row["counts"] = True
            rows.append(row)
        for path, info in self.attention.items():
            rows.append({"name": f"{path}.sdsa", "kind": f"sdsa{info.sdsa}", **asdict(info)})
        return rows


def _natural_scale(weight: np.ndarray, qmax: int) -> np.ndarray:
    """Return per-output-channel scales mapping each channel's largest |weight| to ``qmax``."""
    peak = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
    positive = peak[peak > 0]
    # A channel of zeros only ever outputs its bias; any scale works, so borrow a neighbour's.
    fallback = positive.min() if positive.size else 1.0
    return np.where(peak > 0, peak, fallback) / qmax


def _pow2_at_least(ratio: np.ndarray) -> np.ndarray:
    """Return the smallest ``k >= 0`` with ``2**k >= ratio``, per element, exactly."""
    k = np.maximum(np.ceil(np.log2(ratio)).astype(np.int64), 0)
    # log2 in floating point can land one off near powers of two; fix up exactly with ldexp.
    k = np.where(np.ldexp(1.0, k) < ratio, k + 1, k)
    k = np.where((k > 0) & (np.ldexp(1.0, k - 1) >= ratio), k - 1, k)
    return k


def _rint(x: np.ndarray, name: str = "", what: str = "value") -> np.ndarray:
    """Round to the nearest integer, half to even (NumPy's ``rint``), as int64.

    Raises :class:`QuantizationError` for a NaN, an Inf or a magnitude of 2**53 or more (float64
    is exact below it; a cast to int64 would silently wrap), naming the layer.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x) | (np.abs(np.nan_to_num(x, nan=0.0)) >= EXACT_FLOAT64)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), x.shape) if x.ndim else ()
        raise QuantizationError(
            f"{name}: quantized {what} {x[first]:g} at index {tuple(int(i) for i in first)} is "
            f"not an integer below 2**53 (NaN, Inf or an extreme ratio of values in the "
            f"checkpoint's layers); cannot quantize")
    return np.rint(x).astype(np.int64)


def quantize(net: FoldedNet, weight_bits: int = 8, pixel_bits: int = 8,
             pixel_range=(-2.2, 2.7)) -> IntNet:
    """Quantize a :class:`~quant.fold.FoldedNet` into an :class:`IntNet`.

    Parameters
    ----------
    net : FoldedNet
    weight_bits : int
        2 to 16; weights are symmetric ``[-(2**(b-1) - 1), 2**(b-1) - 1]``.
    pixel_bits : int
        2 to 16; unsigned stem input codes.
    pixel_range : (low, high)
        Real input range, scalars or per channel (calibrate it on data; the default covers
        ImageNet-normalized images).

    Returns
    -------
    IntNet
    """
    weight_bits = _check_bits("weight_bits", weight_bits)
    cfg = net.cfg
    qmax = (1 << (weight_bits - 1)) - 1
    # Event input is spikes: nothing to quantize on the way in (no pixel codes).
    pixel = (None if cfg.events else
             PixelQuant.from_range(pixel_bits, pixel_range[0], pixel_range[1], cfg.in_channels))
    planner = plan(cfg, net.fuse_sepconv)
    folded = {n: (layer, layer.weight.numpy(), layer.bias.numpy())
              for n, layer in net.layers.items()}

    # Natural scale per layer: the output scale at which its largest weight uses the full range.
    input_unit = {}
    natural = {}
    for name, (layer, weight, _) in folded.items():
        if layer.kind == "stem":
            unit = pixel.scale.reshape(1, -1, 1, 1)
        elif layer.kind == "pointwise_int":
            dw = name.replace("pwconv2", "dwconv")
            unit = natural[dw].reshape(1, -1, 1, 1)
        else:
            unit = np.float64(1.0)
        input_unit[name] = unit
        if layer.kind == "linear" or layer.kind == "depthwise":
            # One scale for all classes keeps the argmax; one for all depthwise channels keeps
            # the pointwise conv's integer inputs in one unit.
            peak = np.abs(weight).max()
            natural[name] = np.full(layer.out_channels, (peak if peak > 0 else 1.0) / qmax)
        else:
            natural[name] = _natural_scale(weight * unit, qmax)

    # Residual streams: finest producer scale per channel, producers at power-of-two multiples.
    final_scale = dict(natural)
    shifts = {}
    stream_of = {}
    stream_scale = {}
    for stream, producers in planner.streams.items():
        finest = np.min([natural[p] for p in producers], axis=0)
        stream_scale[stream] = finest
        for producer in producers:
            k = _pow2_at_least(natural[producer] / finest)
            shifts[producer] = k
            final_scale[producer] = np.ldexp(finest, k)
            stream_of[producer] = stream

    # Vanilla shortcut: a branch's last layer and the block's incoming spikes (real value 1) meet
    # in one LIF. Its input unit is 1/m[c], m[c] = floor(1 / natural scale) >= 1, so a spike is
    # exactly m[c] units and the weights still fit (1/m >= natural). A natural scale above 1
    # takes m = 1 and quantizes the layer at the power of two 2**k >= it, shifted left by k.
    identity = {}
    for producer in planner.residuals:
        inverse = 1.0 / natural[producer]
        if not np.all(inverse < EXACT_FLOAT64):
            raise QuantizationError(f"{producer}: the shortcut spike's value 1/scale "
                                    f"{inverse.max():g} is not an integer below 2**53 (weights "
                                    f"near zero in the folded layer); cannot quantize")
        m = np.where(inverse >= 1.0, np.floor(inverse), 1.0)
        k = _pow2_at_least(natural[producer] * m)
        identity[producer] = m.astype(np.int64)
        shifts[producer] = k
        final_scale[producer] = np.ldexp(1.0 / m, k)

    # SEW shortcut: a layer reading a stream of counts sees at most as many spikes as the stream
    # has had producers when it reads it.
    count_bound = {}
    for name, sym in planner.layer_inputs.items():
        if sym.kind == "stream" and sym.source in planner.count_streams:
            count_bound[name] = planner.count_streams[sym.source].index(sym.after) + 1

    out = IntNet(cfg=cfg, weight_bits=weight_bits, pixel=pixel, fuse_sepconv=net.fuse_sepconv)
    ranges = {}
    for name, (layer, weight, bias) in folded.items():
        scale = final_scale[name]
        view = (-1,) + (1,) * (weight.ndim - 1)
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise QuantizationError(f"{name}: scale {scale.min():g}..{scale.max():g} is not "
                                    f"finite and positive (NaN or Inf in the folded layer)")
        q_weight = _rint(weight * input_unit[name] / scale.reshape(view), name, "weight")
        q_bias = _rint(bias / scale, name, "bias")
        if np.abs(q_weight).max(initial=0) > qmax:
            raise AssertionError(f"{name}: weight beyond {weight_bits} bits (scale bug)")
        per_out = q_weight.reshape(q_weight.shape[0], -1)
        if layer.kind == "stem":
            # Codes are x / s + zp: subtracting zp from every tap (padding included, which holds
            # zp) is a per-channel constant that moves into the bias exactly.
            taps = q_weight.sum(axis=(2, 3))                                  # [Cout, Cin]
            q_bias = q_bias - taps @ pixel.zero_point
            low = q_bias + np.minimum(per_out, 0).sum(1) * pixel.max_code
            high = q_bias + np.maximum(per_out, 0).sum(1) * pixel.max_code
        elif layer.kind == "pointwise_int":
            dw = name.replace("pwconv2", "dwconv")
            in_low, in_high = ranges[dw]
            w = q_weight[:, :, 0, 0]
            low = q_bias + np.minimum(w * in_low, w * in_high).sum(1)
            high = q_bias + np.maximum(w * in_low, w * in_high).sum(1)
        elif name in count_bound:
            # A conv on spike counts 0..K: the stem's bound with K for the largest pixel code.
            top = count_bound[name]
            low = q_bias + np.minimum(per_out, 0).sum(1) * top
            high = q_bias + np.maximum(per_out, 0).sum(1) * top
        else:
            low = q_bias + np.minimum(per_out, 0).sum(1)
            high = q_bias + np.maximum(per_out, 0).sum(1)
        ranges[name] = (low, high)
        kind = "counts" if name in count_bound else layer.kind
        int_layer = IntLayer(name, kind, q_weight, q_bias, scale, layer.stride,
                             layer.padding, layer.groups, shifts.get(name), stream_of.get(name),
                             low, high, weight_bits, count_bound.get(name), identity.get(name),
                             planner.residuals.get(name))
        bound = int_layer.magnitude_bound
        if layer.kind == "stem":
            bound = max(bound, int(np.abs(per_out).sum(1).max()) * pixel.max_code)
        if bound >= EXACT_FLOAT64:
            raise QuantizationError(f"{name}: worst-case accumulator {bound} needs more than 53 "
                                    f"bits; cannot quantize")
        out.layers[name] = int_layer

    for stream, producers in planner.streams.items():
        low = np.zeros_like(ranges[producers[0]][0])
        high = np.zeros_like(low)
        for producer in producers:
            p_low, p_high = ranges[producer]
            k = shifts[producer]
            # Sums of min(., 0) and max(., 0) contain every partial sum, whatever the order.
            low = low + np.minimum(p_low << k, 0)
            high = high + np.maximum(p_high << k, 0)
        out.streams[stream] = IntStream(stream, stream_scale[stream], list(producers), low, high)
    for stream, producers in planner.count_streams.items():
        # The first producer is the downsampler's out_lif: as many channels as its conv.
        channels = out.layers[planner.lif_inputs[producers[0]].source].weight.shape[0]
        out.streams[stream] = IntStream(
            stream, np.ones(channels), list(producers), np.zeros(channels, np.int64),
            np.full(channels, len(producers), np.int64), counts=True)

    sizes = cfg.map_sides()
    for lif_name, sym in planner.lif_inputs.items():
        layout = planner.lif_layouts[lif_name]
        theta = 1.0
        if sym.kind == "layer":
            scale = final_scale[sym.source]
            low, high = ranges[sym.source]
            source = sym.source
            thresholds = [intops.lif_threshold(theta, s) for s in scale]
        elif sym.kind == "residual":
            # (acc << k) + m * spike in units of 1/m: the threshold ceil(2 * theta * m), exact.
            layer = out.layers[sym.source]
            m, k = layer.identity, layer.shift
            scale, source = 1.0 / m, f"residual:{sym.source}"
            low, high = ranges[sym.source]
            low, high = low << k, (high << k) + m
            thresholds = [intops.lif_threshold(theta * float(c), 1.0) for c in m]
        elif sym.kind == "stream":
            s = out.streams[sym.source]
            scale, low, high, source = s.scale, s.low, s.high, f"stream:{sym.source}"
            thresholds = [intops.lif_threshold(theta, c) for c in scale]
        elif sym.kind == "pooled" and sym.source not in out.streams:
            # Vanilla: the last block's spikes, summed over positions (real 1 per spike).
            channels = out.lifs[sym.source].threshold.shape[0]
            positions = sizes[sym.source.split(".")[0]] ** 2
            scale, source = np.full(channels, 1.0 / positions), f"pooled:{sym.source}"
            low, high = np.zeros(channels, np.int64), np.full(channels, positions, np.int64)
            thresholds = [intops.lif_threshold(float(positions), 1.0)] * channels
        elif sym.kind == "pooled":
            s = out.streams[sym.source]
            positions = sizes[sym.source] ** 2
            scale, source = s.scale / positions, f"pooled:{sym.source}"
            low, high = s.low * positions, s.high * positions
            # The mean's 1/(H*W) goes into the threshold: ceil(2 * H*W / s), float64.
            thresholds = [intops.lif_threshold(float(positions), c) for c in s.scale]
        else:
            prefix = sym.source
            theta = net.attn_thresholds[prefix]
            tokens = sizes[prefix.split(".")[0]] ** 2
            d = (cfg.stage_widths[_stage_index(prefix)]) // cfg.num_heads
            if cfg.sdsa in (3, 4):
                unit, top = cfg.attn_scale, tokens * d
                kv_bits = intops.signed_bits(0, tokens) - 1
            else:
                unit, top, kv_bits = 1.0, tokens, 0
            scale = np.array([unit])
            low, high, source = np.array([0]), np.array([top]), f"attention:{prefix}"
            if theta <= 0:
                raise ValueError(f"{prefix}: attention threshold {theta} must be > 0")
            thresholds = [intops.lif_threshold(theta, unit)]
            out.attention[prefix] = IntAttention(
                sdsa=cfg.sdsa, tokens=tokens, head_width=d, heads=cfg.num_heads,
                count_bits=intops.signed_bits(0, top) - 1, kv_bits=kv_bits,
                threshold=int(thresholds[0]))
        input_bits = intops.signed_bits(min(0, int(np.min(low))), max(0, int(np.max(high))))
        ceiling = (1 << input_bits) - 1      # u = v + x <= 2**w - 2: this is never reached
        threshold = np.minimum(np.asarray(thresholds, dtype=np.int64), ceiling)
        out.lifs[lif_name] = IntLIF(lif_name, threshold, input_bits, np.asarray(scale),
                                    float(theta), source, layout)
    head = out.layers["head"]
    out.logit_bits = intops.signed_bits(min(0, int(head.acc_low.min()) * cfg.T),
                                        max(0, int(head.acc_high.max()) * cfg.T))
    return out


def _stage_index(path: str) -> int:
    from golden.config import STAGE_NAMES
    return STAGE_NAMES.index(path.split(".")[0])


#: Real input range of the demo data: pixels k/16 for k in 0..16, so 8-bit codes of step 1/16 hold
#: them exactly (the codes are the raw digit pixels).
DIGITS_PIXEL_RANGE = (0.0, 255 / 16)
#: Real input range of ImageNet-normalised images.
IMAGENET_PIXEL_RANGE = (-2.2, 2.7)


def default_pixel_range(cfg) -> tuple[float, float]:
    """Return the stem's input range for a configuration: digits for 1-channel models."""
    if cfg.name == "demo" or cfg.in_channels == 1:
        return DIGITS_PIXEL_RANGE
    return IMAGENET_PIXEL_RANGE


def quantize_model(model, weight_bits: int = 8, pixel_bits: int = 8, pixel_range=None,
                   fuse_sepconv: bool | tuple = True) -> IntNet:
    """Fold and quantize a float ``golden.model.MetaSpikeFormer`` in one call.

    ``pixel_range=None`` takes :func:`default_pixel_range` of the model's configuration.
    """
    _check_bits("weight_bits", weight_bits)
    _check_bits("pixel_bits", pixel_bits)
    if pixel_range is None:
        pixel_range = default_pixel_range(model.cfg)
    return quantize(fold_model(model, fuse_sepconv), weight_bits, pixel_bits, pixel_range)

