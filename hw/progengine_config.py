"""What one layer needs to run on :class:`hw.progengine.ProgEngine`: its configuration, the
engine's port layouts, and the layer's weight and bias memory images.

* :func:`engine_config_layout` and :func:`engine_output_layout`: the ``config`` port and the
  output stream's payload.
* :class:`LayerConfig` and :func:`layer_config`: every ``config`` field of a convolution layer,
  derived from its geometry (kernel, stride and group counts rounded up to powers of two, as the
  engine's shift-only addressing needs), and the memory words the layer occupies.
  (:meth:`hw.progengine.ProgEngine.check_layer` says whether a layer fits an engine.)
* :func:`pack_layer_weights` and :func:`pack_layer_biases`: the words of the outside weight memory
  and the inside bias memory, in the layouts ``hw.progengine``'s module docstring gives.

Nothing here builds hardware except the layouts; everything is re-exported by ``hw.progengine``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hw.packing import pack_lanes
from hw.params import bits_for, ceil_div, check_int, log2_ceil

__all__ = ["LayerConfig", "layer_config", "band_layer", "fold_log_for", "max_x_log", "engine_config_layout",
           "engine_output_layout", "pack_layer_weights", "pack_layer_biases"]


def _range(maximum: int) -> unsigned:
    """Unsigned shape holding ``0 .. maximum`` (also used by ``hw.progengine``'s elaborate)."""
    return unsigned(bits_for(maximum + 1))


def engine_config_layout(*, max_side: int, max_padding: int, max_kernel_log: int,
                         max_stride_log: int, max_groups_log: int, weight_depth: int,
                         bias_depth: int, max_fold_log: int = 0,
                         max_planes: int = 1, bands: bool = False) -> data.StructLayout:
    """Return the layout of :class:`hw.progengine.ProgEngine`'s ``config`` port.

    Fields, first in the least significant bits:

    ``height``, ``width``
        Input map size (``1 .. max_side``).
    ``kernel``, ``kernel_log``
        Kernel size ``k`` and ``kl`` with ``2**kl >= k`` (``kl <= max_kernel_log``).
    ``stride_log``
        The stride is ``2**stride_log`` (``<= max_stride_log``).
    ``padding``
        Zero padding on every side (``<= max_padding``).
    ``out_height``, ``out_width``, ``out_width_log``
        Output map size and ``owl`` with ``2**owl >= out_width``.
    ``groups``, ``groups_log``
        ``G = ceil(Cout / lanes)`` and ``gl`` with ``2**gl >= G`` (``gl <= max_groups_log``).
    ``weight_base``, ``bias_base``
        First word of the layer in the weight memory (``weight_depth`` words) and in the bias
        memory (``bias_depth`` words).
    ``fold_log``, ``kernel_x_log`` (only with ``max_fold_log > 0``)
        Column folding (``hw.progengine``'s module docstring, "Column folding"): ``F =
        2**fold_log`` output columns share a bank word, ``lanes / F`` lanes each; ``xl`` with
        ``2**xl >= k + (F - 1) * stride``, the weight block's row length (``kernel_log`` when
        ``F = 1``).
    ``planes_m1`` (only when ``max_planes > 1``)
        Bit planes minus one (:attr:`LayerConfig.planes`): input channel ``c' = c * planes +
        p`` adds weight channel ``c``'s weights shifted left by ``p``.
    ``padding_y`` (only with ``bands``)
        Zero rows above the input rows (``<= padding``; :func:`band_layer`): a band of output
        rows reads only the input rows its taps reach, so its top padding is the layer's for
        the first band and less (0 past the first few rows) for the others. ``padding`` is then
        the columns' padding only; the bottom edge needs no field (``out_height`` clamps it).
    """
    max_side = check_int("max_side", max_side, 1)
    check_int("max_padding", max_padding, 0)
    check_int("max_kernel_log", max_kernel_log, 0)
    check_int("max_stride_log", max_stride_log, 0)
    check_int("max_groups_log", max_groups_log, 0)
    check_int("weight_depth", weight_depth, 1)
    check_int("bias_depth", bias_depth, 1)
    max_fold_log = check_int("max_fold_log", max_fold_log, 0)
    fold = {}
    if max_fold_log:
        fold = {"fold_log": _range(max_fold_log),
                "kernel_x_log": _range(max_x_log(max_kernel_log, max_stride_log, max_fold_log))}
    max_planes = check_int("max_planes", max_planes, 1, 64)
    if max_planes > 1:
        fold["planes_m1"] = _range(max_planes - 1)
    if bands:
        fold["padding_y"] = _range(check_int("max_padding", max_padding, 0))
    return data.StructLayout({
        "height": _range(max_side),
        "width": _range(max_side),
        "kernel": _range(1 << max_kernel_log),
        "kernel_log": _range(max_kernel_log),
        "stride_log": _range(max_stride_log),
        "padding": _range(max_padding),
        "out_height": _range(max_side),
        "out_width": _range(max_side),
        "out_width_log": _range(log2_ceil(max_side)),
        "groups": _range(1 << max_groups_log),
        "groups_log": _range(max_groups_log),
        "weight_base": unsigned(bits_for(weight_depth)),
        "bias_base": unsigned(bits_for(bias_depth)),
        **fold,
    })


def max_x_log(max_kernel_log: int, max_stride_log: int, max_fold_log: int) -> int:
    """Largest ``kernel_x_log`` of an engine: ``log2(2**kl + (F - 1) * 2**sl)`` rounded up."""
    return log2_ceil((1 << max_kernel_log) + ((1 << max_fold_log) - 1) * (1 << max_stride_log))


def engine_output_layout(*, lanes: int, accumulator_width: int, max_side: int,
                         max_groups_log: int, bank_depth: int) -> data.StructLayout:
    """Return the payload layout of :class:`hw.progengine.ProgEngine`'s output stream.

    Fields, first in the least significant bits: ``values`` (``lanes`` signed sums plus bias of
    output channels ``group * lanes + l``), ``oy``, ``ox``, ``group``, ``index`` (beat number
    within the frame) and ``last`` (1 on the frame's final beat).
    """
    return data.StructLayout({
        "values": data.ArrayLayout(signed(accumulator_width), lanes),
        "oy": unsigned(bits_for(max_side)),
        "ox": unsigned(bits_for(max_side)),
        "group": unsigned(max(1, max_groups_log)),
        "index": unsigned(bits_for(bank_depth)),
        "last": 1,
    })


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """One layer's geometry and memory placement for :class:`hw.progengine.ProgEngine` (see
    :func:`layer_config`). The fields named in :attr:`CONFIG_FIELDS` are the ``config`` port's."""

    in_channels: int
    out_channels: int
    lanes: int
    height: int
    width: int
    kernel: int
    kernel_log: int
    stride: int
    stride_log: int
    padding: int
    out_height: int
    out_width: int
    out_width_log: int
    groups: int
    groups_log: int
    weight_base: int
    bias_base: int
    fold_log: int = 0
    kernel_x_log: int | None = None   # None: kernel_log (no folding)
    #: Bit planes (SepConv unfused, ``hw.planes``): input channel ``c' = c * planes + p`` is
    #: plane ``p`` of weight channel ``c``, whose weight the engine shifts left by ``p`` as it
    #: adds; 1: none (every input channel its own weights).
    planes: int = 1
    #: Zero rows above the input rows; ``None``: ``padding``. A band of output rows
    #: (:func:`band_layer`) has its own; an engine built with ``bands`` takes it.
    padding_y: int | None = None

    CONFIG_FIELDS = ("height", "width", "kernel", "kernel_log", "stride_log", "padding",
                     "out_height", "out_width", "out_width_log", "groups", "groups_log",
                     "weight_base", "bias_base")
    #: The fields a folding engine's ``config`` port adds (``max_fold_log > 0``).
    FOLD_FIELDS = ("fold_log", "kernel_x_log")
    #: The field an engine with bit planes adds (``max_planes > 1``).
    PLANE_FIELDS = ("planes_m1",)
    #: The field an engine built with ``bands`` adds.
    BAND_FIELDS = ("padding_y",)

    def __post_init__(self):
        if self.kernel_x_log is None:
            object.__setattr__(self, "kernel_x_log", self.kernel_log)
        if self.padding_y is None:
            object.__setattr__(self, "padding_y", self.padding)
        if self.planes < 1 or self.in_channels % self.planes:
            raise ValueError(f"planes {self.planes} must be >= 1 and divide in_channels "
                             f"{self.in_channels}")

    @property
    def planes_m1(self) -> int:
        """``planes - 1`` (the ``config`` field of an engine with bit planes)."""
        return self.planes - 1

    @property
    def weight_channels(self) -> int:
        """Input channels with weights of their own: ``in_channels / planes``."""
        return self.in_channels // self.planes

    @property
    def fold(self) -> int:
        """Output columns a bank word holds: ``2**fold_log``."""
        return 1 << self.fold_log

    @property
    def fields(self) -> dict[str, int]:
        """The ``config`` port's field values (:attr:`FOLD_FIELDS` too when the layer folds;
        a folding engine's port has them for every layer: ``ProgEngine.config_value``)."""
        names = (self.CONFIG_FIELDS + (self.FOLD_FIELDS if self.fold_log else ())
                 + (self.PLANE_FIELDS if self.planes > 1 else ())
                 + (self.BAND_FIELDS if self.padding_y != self.padding else ()))
        return {name: getattr(self, name) for name in names}

    @property
    def weight_words_needed(self) -> int:
        """Weight memory words of the layer: ``Cin << (kernel_log + kernel_x_log + groups_log)``
        (``2 * kernel_log`` without folding; ``Cin`` the weight channels)."""
        return self.weight_channels << (self.kernel_log + self.kernel_x_log + self.groups_log)

    @property
    def bank_words_needed(self) -> int:
        """Bank words the layer addresses: ``out_height << (out_width_log + groups_log)``."""
        return self.out_height << (self.out_width_log + self.groups_log)

    @property
    def words_per_frame(self) -> int:
        """Input words per frame: ``Cin * height``."""
        return self.in_channels * self.height

    @property
    def beats(self) -> int:
        """Output beats per frame: ``out_height * out_width * groups``."""
        return self.out_height * self.out_width * self.groups


def layer_config(*, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, height: int, width: int, lanes: int, weight_base: int = 0,
                 bias_base: int = 0, fold_log: int = 0, planes: int = 1) -> LayerConfig:
    """Compute every ``config`` field of a convolution layer.

    Parameters
    ----------
    in_channels, out_channels : int
        ``Cin`` and ``Cout`` (>= 1).
    kernel : int
        Square kernel size ``k`` (>= 1).
    stride : int, optional
        1, 2, 4, ... (a power of two). Default 1.
    padding : int, optional
        Zero padding on every side (>= 0). Default 0.
    height, width : int
        Input map size (>= 1; the padded map must hold the kernel).
    lanes : int
        The engine's lanes (>= 1); ``groups = ceil(out_channels / lanes)``.
    weight_base, bias_base : int, optional
        First word of the layer in the weight and bias memories (>= 0). Default 0.
    fold_log : int, optional
        Column folding (``hw.progengine``, "Column folding"): ``2**fold_log`` output columns a
        bank word, ``lanes >> fold_log`` lanes each, which must hold ``out_channels`` (so ``G =
        1``). Default 0: none. :func:`fold_log_for` picks the largest that fits.
    planes : int, optional
        Bit planes (:attr:`LayerConfig.planes`): ``in_channels`` counts every plane, the
        weights ``in_channels / planes`` channels. Default 1: none.
    """
    cin = check_int("in_channels", in_channels, 1)
    cout = check_int("out_channels", out_channels, 1)
    kernel = check_int("kernel", kernel, 1)
    stride = check_int("stride", stride, 1)
    padding = check_int("padding", padding, 0)
    height = check_int("height", height, 1)
    width = check_int("width", width, 1)
    lanes = check_int("lanes", lanes, 1)
    weight_base = check_int("weight_base", weight_base, 0)
    bias_base = check_int("bias_base", bias_base, 0)
    fold_log = check_int("fold_log", fold_log, 0, 8)
    planes = check_int("planes", planes, 1, 64)
    if planes > 1 and (fold_log or kernel != 1 or stride != 1 or padding):
        raise ValueError(f"planes {planes} (bit planes) need a 1x1 conv of stride 1 without "
                         f"padding or folding")
    if fold_log and cout > lanes >> fold_log:
        raise ValueError(f"fold_log {fold_log} leaves lanes >> fold_log = {lanes >> fold_log} "
                         f"lanes a column, fewer than out_channels {cout}")
    if stride & (stride - 1):
        raise ValueError(f"stride must be a power of two (1, 2, 4, ...), not {stride}")
    for name, size in (("height", height), ("width", width)):
        if kernel > size + 2 * padding:
            raise ValueError(f"kernel {kernel} is larger than the padded image: {name} {size} + "
                             f"2 * padding {padding} = {size + 2 * padding}")
    out_height = (height + 2 * padding - kernel) // stride + 1
    out_width = (width + 2 * padding - kernel) // stride + 1
    groups = ceil_div(cout, lanes)
    return LayerConfig(
        in_channels=cin, out_channels=cout, lanes=lanes, height=height, width=width,
        kernel=kernel, kernel_log=log2_ceil(kernel), stride=stride,
        stride_log=stride.bit_length() - 1, padding=padding, out_height=out_height,
        out_width=out_width, out_width_log=log2_ceil(out_width), groups=groups,
        groups_log=log2_ceil(groups), weight_base=weight_base, bias_base=bias_base,
        fold_log=fold_log,
        kernel_x_log=log2_ceil(kernel + ((1 << fold_log) - 1) * stride), planes=planes)


def band_layer(layer: LayerConfig, first: int, last: int) -> tuple[LayerConfig, int, int]:
    """The band of output rows ``first .. last`` of ``layer`` as a layer of its own.

    Returns ``(band, first_in, last_in)``: the input rows ``first_in .. last_in`` are the ones
    the band's taps reach (its halo included, clipped to the map), and ``band`` computes output
    rows ``first .. last`` from them alone, on an engine built with ``bands``: ``height`` is
    the band's input rows, ``out_height`` its output rows (so it needs ``out_height <<
    (out_width_log + groups_log)`` bank words, not the whole map's), and ``padding_y = first_in
    + padding - first * stride`` its top padding (the layer's for the first band, less for
    the others, never negative). Output row ``oy`` of the band is row ``first + oy`` of the
    layer. Columns, channels, weights and biases are the layer's.
    """
    check_int("first", first, 0, layer.out_height - 1)
    check_int("last", last, first, layer.out_height - 1)
    first_in = max(0, first * layer.stride - layer.padding)
    last_in = min(layer.height - 1, last * layer.stride - layer.padding + layer.kernel - 1)
    if last_in < first_in:
        raise ValueError(f"output rows {first}..{last} reach no input row (every tap in the "
                         f"padding)")
    band = dataclasses.replace(layer, height=last_in - first_in + 1, out_height=last - first + 1,
                               padding_y=first_in + layer.padding - first * layer.stride)
    return band, first_in, last_in


def fold_log_for(*, out_channels: int, kernel: int, stride: int, lanes: int,
                 max_fold_log: int) -> int:
    """The column folding a layer gets on an engine of ``lanes`` lanes folding up to
    ``2**max_fold_log`` columns: the most columns whose ``lanes / F`` lanes still hold every
    output channel, and none for a layer whose input column reaches one output column at most
    (``kernel <= stride``: folding would only pad its weights)."""
    if kernel <= stride:
        return 0
    fold_log = 0
    while fold_log < max_fold_log and out_channels <= lanes >> (fold_log + 1):
        fold_log += 1
    return fold_log


def _int_array(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{name} must be an integer array, not dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {array.shape}")
    return array.astype(np.int64)


def _check_fits(name: str, array: np.ndarray, width: int, width_name: str) -> None:
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(f"{name} range [{array.min()}, {array.max()}] does not fit "
                         f"{width_name} {width} (signed: [{low}, {high}])")


def pack_layer_weights(weight, *, lanes: int, weight_width: int, kernel_log: int,
                       groups_log: int, fold_log: int = 0, kernel_x_log: int | None = None,
                       stride: int = 1) -> list[int]:
    """Return a layer's weight memory words in ``ProgEngine``'s layout (``hw.progengine``).

    Parameters
    ----------
    weight : integer array ``[Cout, Cin, k, k]``
        quant's canonical convolution weight.
    lanes, weight_width : int
        Lanes per word and signed bits per weight.
    kernel_log, groups_log : int
        The layer's ``kl`` (``2**kl >= k``) and ``gl`` (``2**gl >= ceil(Cout / lanes)``).
    fold_log, kernel_x_log, stride : int, optional
        Column folding (``hw.progengine``, "Column folding"; default none): ``F = 2**fold_log``
        columns a word, ``xl = kernel_x_log`` (``2**xl >= k + (F - 1) * stride``), the stride.
        Word ``((c << kl) | ky) << xl | u`` then holds, in lanes ``j * (lanes / F) + l``, the
        weight of output channel ``l`` at tap ``(ky, u - j * stride)`` (zero where that ``kx``
        is outside ``0 .. k - 1``).

    Returns
    -------
    list of int
        ``Cin << (2 * kernel_log + groups_log)`` words; word ``(((c << kl) | ky) << kl | kx) << gl
        | g`` packs (:func:`hw.packing.pack_lanes`) the weights of output channels
        ``g * lanes + l``, lane 0 in the least significant bits; holes are zero.
    """
    weight = _int_array("weight", weight, 4)
    lanes = check_int("lanes", lanes, 1)
    weight_width = check_int("weight_width", weight_width, 1)
    kernel_log = check_int("kernel_log", kernel_log, 0)
    groups_log = check_int("groups_log", groups_log, 0)
    cout, cin, kernel, kernel_w = weight.shape
    if kernel != kernel_w or min(weight.shape) < 1:
        raise ValueError(f"weight must be a non-empty square kernel [Cout, Cin, k, k], not shape "
                         f"{weight.shape}")
    if kernel > 1 << kernel_log:
        raise ValueError(f"kernel {kernel} does not fit 2**kernel_log = {1 << kernel_log}")
    groups = ceil_div(cout, lanes)
    if groups > 1 << groups_log:
        raise ValueError(f"{groups} groups of {lanes} lanes (Cout {cout}) do not fit "
                         f"2**groups_log = {1 << groups_log}")
    _check_fits("weight", weight, weight_width, "weight_width")
    fold_log = check_int("fold_log", fold_log, 0, 8)
    if fold_log:
        return _pack_folded(weight, lanes, weight_width, kernel_log, groups_log, fold_log,
                            kernel_x_log, stride)
    side, slots = 1 << kernel_log, 1 << groups_log
    padded = np.zeros((slots * lanes, cin, side, side), dtype=np.int64)
    padded[:cout, :, :kernel, :kernel] = weight
    # [G*lanes, Cin, K, K] -> [Cin, K, K, G, lanes]: words in (c, ky, kx, g) order.
    lanes_last = padded.reshape(slots, lanes, cin, side, side).transpose(2, 3, 4, 0, 1)
    return [pack_lanes(row, weight_width) for row in lanes_last.reshape(-1, lanes)]


def _pack_folded(weight, lanes, weight_width, kernel_log, groups_log, fold_log, kernel_x_log,
                 stride) -> list[int]:
    """:func:`pack_layer_weights`' folded layout (its docstring)."""
    cout, cin, kernel, _ = weight.shape
    stride = check_int("stride", stride, 1)
    fold = 1 << fold_log
    part = lanes >> fold_log
    if groups_log or cout > part:
        raise ValueError(f"fold_log {fold_log} needs Cout {cout} <= lanes >> fold_log = {part} "
                         f"(and groups_log 0, not {groups_log})")
    need = log2_ceil(kernel + (fold - 1) * stride)
    if kernel_x_log is None or kernel_x_log < need:
        raise ValueError(f"kernel_x_log {kernel_x_log} must be at least {need} for kernel "
                         f"{kernel}, fold {fold}, stride {stride}")
    side, row = 1 << kernel_log, 1 << kernel_x_log
    words = np.zeros((cin, side, row, lanes), dtype=np.int64)
    for u in range(row):
        for j in range(fold):
            kx = u - j * stride
            if 0 <= kx < kernel:
                # [Cout, Cin, k] at column kx -> lanes j * part + l of every (c, ky) word.
                words[:, :kernel, u, j * part:j * part + cout] = \
                    weight[:, :, :, kx].transpose(1, 2, 0)
    return [pack_lanes(word, weight_width) for word in words.reshape(-1, lanes)]


def pack_layer_biases(bias, *, lanes: int, accumulator_width: int, groups: int) -> list[int]:
    """Return a layer's bias memory words: word ``g`` packs the biases of output channels
    ``g * lanes + l`` (lane 0 in the least significant bits, channels past ``Cout`` zero).

    Parameters
    ----------
    bias : integer array ``[Cout]``
    lanes, accumulator_width : int
        Lanes per word and signed bits per bias.
    groups : int
        Words to return, at least ``ceil(Cout / lanes)``.
    """
    bias = _int_array("bias", bias, 1)
    lanes = check_int("lanes", lanes, 1)
    accumulator_width = check_int("accumulator_width", accumulator_width, 1)
    need = ceil_div(bias.shape[0], lanes)
    groups = check_int("groups", groups, max(1, need))
    _check_fits("bias", bias, accumulator_width, "accumulator_width")
    padded = np.zeros(groups * lanes, dtype=np.int64)
    padded[:bias.shape[0]] = bias
    return [pack_lanes(padded[g * lanes:(g + 1) * lanes], accumulator_width)
            for g in range(groups)]
