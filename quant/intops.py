"""Integer layer functions of the arithmetic contract (``docs/arithmetic.md``).

These are the straightforward references that the integer golden model and the hardware units are
both checked against. They work on NumPy integer arrays (int64) or Python ints and never on floats.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "lif_step", "lif_sequence", "lif_threshold",
    "conv_output_size", "conv2d_spikes", "depthwise_conv2d_spikes", "linear_spikes", "stem_conv",
    "conv2d_counts", "residual_input", "bit_planes", "magnitude_planes", "pointwise_by_planes",
    "sum_pool", "shift_left", "signed_bits", "check_fits", "saturate",
    "sdsa1_counts", "sdsa1", "sdsa2_counts", "sdsa2", "sdsa3_kv", "sdsa3_counts", "sdsa3", "sdsa4",
]


def lif_threshold(theta: float, input_scale: float) -> int:
    """Return the integer threshold of a LIF whose input has ``input_scale`` per integer step.

    The float neuron fires on ``H = (V + X) / 2 >= theta``. With ``V = v * s`` and ``X = x * s``
    that is ``v + x >= 2 * theta / s``, and because ``v + x`` is an integer the exact integer
    threshold is ``ceil(2 * theta / s)``. It is derived in float64, never float32.
    """
    theta = np.float64(theta)
    input_scale = np.float64(input_scale)
    if not (theta > 0 and input_scale > 0):
        raise ValueError(f"LIF threshold {theta} and input scale {input_scale} must be > 0")
    return int(np.ceil(2.0 * theta / input_scale))


def lif_step(membrane, x, threshold):
    """Advance integer LIF neurons by one time step.

    Parameters
    ----------
    membrane
        Membrane potentials ``v[t-1]`` (0 at the first step of a sample).
    x
        Integer inputs ``x[t]``.
    threshold
        Integer thresholds in doubled units (see :func:`lif_threshold`), broadcastable.

    Returns
    -------
    (spikes, membrane)
        ``spikes = (v + x >= threshold)``; the new membrane is 0 where a spike fired (hard reset)
        and ``floor((v + x) / 2)`` (arithmetic shift right by one) elsewhere.
    """
    total = np.asarray(membrane, dtype=np.int64) + np.asarray(x, dtype=np.int64)
    spikes = total >= np.asarray(threshold, dtype=np.int64)
    new_membrane = np.where(spikes, 0, total >> 1)
    return spikes.astype(np.uint8), new_membrane.astype(np.int64)


def lif_sequence(xs, threshold):
    """Run integer LIF neurons over a sequence ``xs[t]`` from a zero membrane; return spikes[t]."""
    xs = np.asarray(xs, dtype=np.int64)
    membrane = np.zeros(xs.shape[1:], dtype=np.int64)
    spikes = np.zeros(xs.shape, dtype=np.uint8)
    for step in range(xs.shape[0]):
        spikes[step], membrane = lif_step(membrane, xs[step], threshold)
    return spikes


# ---------------------------------------------------------------------------------------------
# Layer references. Everything below takes one sample at one time step (no batch, no T axis):
# the hardware units process exactly that, and a missing batch axis keeps index errors visible.
# ---------------------------------------------------------------------------------------------


def _as_spikes(spikes, name: str = "spikes") -> np.ndarray:
    """Return ``spikes`` as int64 after checking every value is 0 or 1."""
    array = np.asarray(spikes)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{name} must be an integer or bool array, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name} must be binary (0/1), got values in "
                         f"[{array.min()}, {array.max()}]")
    return array


def _as_int(values, name: str) -> np.ndarray:
    """Return ``values`` as int64, refusing floats so no rounding hides in a reference."""
    array = np.asarray(values)
    if array.dtype.kind not in "biu":
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    return array.astype(np.int64)


def _bias_or_zeros(bias, channels: int) -> np.ndarray:
    """Return an int64 bias of ``channels`` entries (zeros when ``bias`` is None)."""
    if bias is None:
        return np.zeros(channels, dtype=np.int64)
    bias = _as_int(bias, "bias").reshape(-1)
    if bias.shape[0] != channels:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected {channels}")
    return bias


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Return the output length of a convolution along one axis (PyTorch's formula)."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"convolution of size {size} with kernel {kernel}, stride {stride}, "
                         f"padding {padding} has no output")
    return out


def _windows(padded: np.ndarray, kernel_h: int, kernel_w: int, stride: int) -> np.ndarray:
    """Return the strided ``[C, Ho, Wo, kh, kw]`` windows of a padded ``[C, H, W]`` map."""
    view = np.lib.stride_tricks.sliding_window_view(padded, (kernel_h, kernel_w), axis=(1, 2))
    return view[:, ::stride, ::stride]


def _check_geometry(stride: int, padding: int) -> None:
    """Refuse a stride below 1 or a negative padding."""
    if int(stride) < 1 or int(padding) < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0, got {stride}, {padding}")


def conv2d_spikes(spikes, weight, bias=None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Convolve one binary spike map with integer weights, exactly.

    Parameters
    ----------
    spikes : array of 0/1, shape ``[Cin, H, W]``
        Input spikes of one sample at one time step.
    weight : integer array, shape ``[Cout, Cin, kh, kw]``
        Integer weights (the folded, quantized layer).
    bias : integer array ``[Cout]`` or None
        Added once to every output position (the accumulator's initial value).
    stride, padding : int
        As ``torch.nn.functional.conv2d``; padding inserts zero spikes, which add nothing.

    Returns
    -------
    numpy.ndarray of int64, shape ``[Cout, Ho, Wo]``
        ``bias[o] + sum over (i, dy, dx) with a spike of weight[o, i, dy, dx]``: only additions
        of weights, no products, which is what the accumulator hardware computes.
    """
    _check_geometry(stride, padding)
    spikes = _as_spikes(spikes)
    weight = _as_int(weight, "weight")
    if spikes.ndim != 3 or weight.ndim != 4 or weight.shape[1] != spikes.shape[0]:
        raise ValueError(f"expected spikes [Cin,H,W] and weight [Cout,Cin,kh,kw], got "
                         f"{spikes.shape} and {weight.shape}")
    cout, _, kernel_h, kernel_w = weight.shape
    conv_output_size(spikes.shape[1], kernel_h, stride, padding)
    conv_output_size(spikes.shape[2], kernel_w, stride, padding)
    padded = np.pad(spikes, ((0, 0), (padding, padding), (padding, padding)))
    windows = _windows(padded, kernel_h, kernel_w, stride)
    out = np.einsum("ihwyx,oiyx->ohw", windows, weight, optimize=True)
    return out + _bias_or_zeros(bias, cout)[:, None, None]


def depthwise_conv2d_spikes(spikes, weight, bias=None, stride: int = 1,
                            padding: int = 0) -> np.ndarray:
    """Convolve each channel of a binary spike map with its own integer kernel, exactly.

    Parameters
    ----------
    spikes : array of 0/1, shape ``[C, H, W]``
        Input spikes of one sample at one time step.
    weight : integer array, shape ``[C, kh, kw]`` or ``[C, 1, kh, kw]`` (PyTorch's layout)
        One kernel per channel.
    bias : integer array ``[C]`` or None
        Added once to every output position.
    stride, padding : int
        As ``torch.nn.functional.conv2d`` with ``groups=C``; padding inserts zero spikes.

    Returns
    -------
    numpy.ndarray of int64, shape ``[C, Ho, Wo]``
    """
    _check_geometry(stride, padding)
    spikes = _as_spikes(spikes)
    weight = _as_int(weight, "weight")
    if weight.ndim == 4 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if spikes.ndim != 3 or weight.ndim != 3 or weight.shape[0] != spikes.shape[0]:
        raise ValueError(f"expected spikes [C,H,W] and weight [C,kh,kw], got {spikes.shape} "
                         f"and {weight.shape}")
    channels, kernel_h, kernel_w = weight.shape
    conv_output_size(spikes.shape[1], kernel_h, stride, padding)
    conv_output_size(spikes.shape[2], kernel_w, stride, padding)
    padded = np.pad(spikes, ((0, 0), (padding, padding), (padding, padding)))
    windows = _windows(padded, kernel_h, kernel_w, stride)
    out = np.einsum("chwyx,cyx->chw", windows, weight, optimize=True)
    return out + _bias_or_zeros(bias, channels)[:, None, None]


def linear_spikes(spikes, weight, bias=None) -> np.ndarray:
    """Apply an integer fully connected layer (or 1x1 conv on tokens) to binary spikes, exactly.

    Parameters
    ----------
    spikes : array of 0/1, shape ``[N, Cin]``
        ``N`` tokens (pixels of a map in row-major order, or 1 for the head) of ``Cin`` spikes.
    weight : integer array, shape ``[Cout, Cin]`` (a ``[Cout, Cin, 1]`` or ``[Cout, Cin, 1, 1]``
        PyTorch weight is accepted too)
    bias : integer array ``[Cout]`` or None

    Returns
    -------
    numpy.ndarray of int64, shape ``[N, Cout]``
        ``bias[o] + sum over i with spikes[n, i] of weight[o, i]``.
    """
    spikes = _as_spikes(spikes)
    weight = _as_int(weight, "weight")
    weight = weight.reshape(weight.shape[0], -1) if weight.ndim > 2 else weight
    if spikes.ndim != 2 or weight.ndim != 2 or weight.shape[1] != spikes.shape[1]:
        raise ValueError(f"expected spikes [N,Cin] and weight [Cout,Cin], got {spikes.shape} "
                         f"and {weight.shape}")
    return spikes @ weight.T + _bias_or_zeros(bias, weight.shape[0])[None, :]


def stem_conv(pixels, weight, bias=None, stride: int = 1, padding: int = 0,
              pad_value=0) -> np.ndarray:
    """Convolve integer pixels with integer weights: the network's only multiplying layer.

    Parameters
    ----------
    pixels : integer array, shape ``[Cin, H, W]``
        Quantized input pixels (unsigned codes, e.g. 0..255, or signed after a zero-point shift).
    weight : integer array, shape ``[Cout, Cin, kh, kw]``
    bias : integer array ``[Cout]`` or None
        In units of ``pixel scale * weight scale``, like the products.
    stride, padding : int
        As ``torch.nn.functional.conv2d``.
    pad_value : int or integer array ``[Cin]``
        Code written into the padding border, per input channel. When the input normalization is
        folded into the stem, a zero of the normalized input is the channel mean in pixel space,
        so the padding must carry the quantized mean rather than 0 (same reason as BNAndPad).

    Returns
    -------
    numpy.ndarray of int64, shape ``[Cout, Ho, Wo]``
        ``bias[o] + sum of weight * pixel`` over the window, exact in int64.
    """
    _check_geometry(stride, padding)
    pixels = _as_int(pixels, "pixels")
    weight = _as_int(weight, "weight")
    if pixels.ndim != 3 or weight.ndim != 4 or weight.shape[1] != pixels.shape[0]:
        raise ValueError(f"expected pixels [Cin,H,W] and weight [Cout,Cin,kh,kw], got "
                         f"{pixels.shape} and {weight.shape}")
    cin = pixels.shape[0]
    pad = np.broadcast_to(_as_int(pad_value, "pad_value").reshape(-1), (cin,))
    cout, _, kernel_h, kernel_w = weight.shape
    conv_output_size(pixels.shape[1], kernel_h, stride, padding)
    conv_output_size(pixels.shape[2], kernel_w, stride, padding)
    height, width = pixels.shape[1:]
    padded = np.empty((cin, height + 2 * padding, width + 2 * padding), dtype=np.int64)
    padded[:] = pad[:, None, None]
    padded[:, padding:padding + height, padding:padding + width] = pixels
    windows = _windows(padded, kernel_h, kernel_w, stride)
    out = np.einsum("ihwyx,oiyx->ohw", windows, weight, optimize=True)
    return out + _bias_or_zeros(bias, cout)[:, None, None]


def conv2d_counts(counts, weight, bias=None, stride: int = 1, padding: int = 0,
                  max_count: int | None = None) -> np.ndarray:
    """Convolve a map of spike counts (the SEW shortcut's stream) with integer weights, exactly.

    A count is a small non-negative integer (at most the number of spike maps added into the
    stream so far), so the conv is still additions: bit plane ``j`` of the counts is a binary map,
    its conv is a sum of weights at set bits (:func:`conv2d_spikes`), and the planes are added
    shifted left by ``j``. No product of a weight and a count is formed.

    Parameters
    ----------
    counts : integer array ``[Cin, H, W]``, values ``0 .. max_count``
    weight : integer array ``[Cout, Cin, kh, kw]``
    bias : integer array ``[Cout]`` or None
    stride, padding : int
        As :func:`conv2d_spikes`; padding inserts zero counts.
    max_count : int or None
        The proven bound; a count above it (or a negative one) raises ``ValueError``. None: the
        largest count present decides the number of planes.

    Returns
    -------
    numpy.ndarray of int64, shape ``[Cout, Ho, Wo]``
        ``bias[o] + sum over planes j of (sum of weights where bit j is set) << j``.
    """
    counts = _as_int(counts, "counts")
    top = int(counts.max(initial=0)) if max_count is None else int(max_count)
    if counts.size and (counts.min() < 0 or counts.max() > top):
        raise ValueError(f"counts must lie in [0, {top}], got values in "
                         f"[{counts.min()}, {counts.max()}]")
    weight = _as_int(weight, "weight")
    out = conv2d_spikes(counts & 1, weight, bias, stride, padding)
    for plane in range(1, max(1, top.bit_length())):
        out = out + (conv2d_spikes((counts >> plane) & 1, weight, None, stride, padding) << plane)
    return out


def bit_planes(values, bits: int) -> np.ndarray:
    """Split integers into their two's complement bit planes: binary maps, one per bit.

    Parameters
    ----------
    values : integer array, any shape
        Each must fit ``bits`` signed bits (``OverflowError`` otherwise).
    bits : int
        Planes to return (>= 1).

    Returns
    -------
    numpy.ndarray of uint8, shape ``[bits, *values.shape]``
        Plane ``p`` holds bit ``p``. ``values == sum_p plane[p] << p`` for ``p < bits - 1``,
        minus ``plane[bits - 1] << (bits - 1)`` (the sign plane weighs ``-2**(bits - 1)``).
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be an integer >= 1, not {bits!r}")
    values = _as_int(values, "values")
    check_fits(values, int(bits), "values")
    unsigned = values & ((1 << int(bits)) - 1)
    return np.stack([(unsigned >> p) & 1 for p in range(int(bits))]).astype(np.uint8)


def magnitude_planes(values, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Split integers into sign and magnitude: the bit planes of ``|values|`` and the signs.

    Returns ``(planes, negative)``: ``planes`` uint8 ``[bits, *values.shape]``, plane ``p``
    holding bit ``p`` of ``|values|`` (each ``|value|`` must fit ``bits`` unsigned bits,
    ``OverflowError`` otherwise), and ``negative`` bool ``values.shape``. A set bit of plane
    ``p`` is a signed spike: ``+2**p``, or ``-2**p`` where ``negative``.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be an integer >= 1, not {bits!r}")
    values = _as_int(values, "values")
    magnitude = np.abs(values)
    if magnitude.size and int(magnitude.max()) >= 1 << int(bits):
        raise OverflowError(f"values reach magnitude {int(magnitude.max())}, beyond {bits} "
                            f"unsigned bits")
    planes = np.stack([(magnitude >> p) & 1 for p in range(int(bits))]).astype(np.uint8)
    return planes, values < 0


def pointwise_by_planes(values, weight, bias, bits: int,
                        encoding: str = "twos") -> np.ndarray:
    """A 1x1 convolution on integers as additions only: one spike conv per bit plane.

    ``bias + sum_c weight[o, c] * values[c]`` computed from spike convolutions
    (:func:`conv2d_spikes`: additions of weights where a bit is set), one pass per plane, its
    sums shifted by the plane's bit into the output. This is how a spike engine computes
    SepConv's ``pwconv2`` unfused without multiplying (``docs/ablations.md``, "SepConv fused
    against unfused").

    * ``encoding="twos"``: the planes of :func:`bit_planes`; the sign plane ``p = bits - 1``
      is subtracted (a pass with negated weights).
    * ``encoding="sign-magnitude"``: the planes of :func:`magnitude_planes`; a set bit of a
      negative value subtracts its weights (signed spikes). Fewer bits are set wherever the
      values are small and negative.

    Parameters
    ----------
    values : integer array ``[C, H, W]``, fitting ``bits`` signed bits (two's complement) or
        ``bits`` unsigned bits of magnitude (sign-magnitude)
    weight : integer array ``[Cout, C, 1, 1]``
    bias : integer array ``[Cout]`` or None
    bits : int
        Planes (for ``pwconv2``: from the depthwise conv's proven range).
    encoding : ``"twos"`` or ``"sign-magnitude"``

    Returns
    -------
    numpy.ndarray of int64 ``[Cout, H, W]``, equal to the direct integer 1x1 convolution.
    """
    weight = _as_int(weight, "weight")
    if weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"weight must be a 1x1 kernel [Cout, C, 1, 1], not shape {weight.shape}")
    if encoding == "twos":
        planes = bit_planes(values, bits)
        signs = [1] * (int(bits) - 1) + [-1]
        parts = [(planes[p], signs[p]) for p in range(int(bits))]
    elif encoding == "sign-magnitude":
        planes, negative = magnitude_planes(values, bits)
        parts = []
        for p in range(int(bits)):
            parts += [(planes[p] & ~negative, 1), (planes[p] & negative, -1)]
    else:
        raise ValueError(f"encoding must be 'twos' or 'sign-magnitude', not {encoding!r}")
    if planes.ndim != 4 or planes.shape[1] != weight.shape[1]:
        raise ValueError(f"expected values [C,H,W] with C = {weight.shape[1]}, got shape "
                         f"{planes.shape[1:]}")
    out = np.zeros((weight.shape[0], *planes.shape[2:]), dtype=np.int64) \
        + _bias_or_zeros(bias, weight.shape[0])[:, None, None]
    for index, (plane, sign) in enumerate(parts):
        p = index if encoding == "twos" else index // 2
        out = out + sign * (conv2d_spikes(plane, weight) << p)
    return out


def residual_input(acc, spikes, identity, shift=0) -> np.ndarray:
    """Return the vanilla shortcut's LIF input ``(acc << shift) + (identity if spike else 0)``.

    ``acc`` is a branch's last layer ``[C, ...]`` (int), ``spikes`` the block's incoming spikes
    of the same shape (0/1), ``identity`` and ``shift`` per channel ``[C]``: the spike selects the
    constant ``identity[c]`` (the value of a real 1 in the LIF's units), nothing is multiplied.
    """
    acc = _as_int(acc, "acc")
    spikes = _as_spikes(spikes)
    view = (-1,) + (1,) * (acc.ndim - 1)
    identity = _as_int(identity, "identity").reshape(view)
    shifted = shift_left(acc, _as_int(shift, "shift").reshape(view) if np.ndim(shift) else shift)
    return shifted + np.where(spikes == 1, identity, 0)


def sum_pool(values) -> np.ndarray:
    """Sum a ``[C, H, W]`` map over its positions (global average pooling without the divide).

    The ``1 / (H * W)`` of the float model's average folds into the next LIF's threshold, so the
    hardware only adds. Returns int64 ``[C]``.
    """
    values = _as_int(values, "values")
    if values.ndim != 3:
        raise ValueError(f"expected a [C,H,W] map, got shape {values.shape}")
    return values.sum(axis=(1, 2))


def shift_left(values, shift) -> np.ndarray:
    """Multiply integers by ``2**shift`` (``shift >= 0``, per channel if an array).

    This is how a residual-stream producer quantized at ``2**k`` times the stream's finest scale
    is brought to the stream's units before the add: wiring, not a multiplier.
    """
    values = _as_int(values, "values")
    shift = _as_int(shift, "shift")
    if shift.size and shift.min() < 0:
        raise ValueError(f"shift must be >= 0, got {shift.min()}")
    return values << shift


def signed_bits(low: int, high: int) -> int:
    """Return the fewest two's complement bits that hold every integer in ``[low, high]``."""
    low, high = int(low), int(high)
    if low > high:
        raise ValueError(f"empty range [{low}, {high}]")
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high < (1 << (bits - 1))):
        bits += 1
    return bits


def check_fits(values, bits: int, name: str = "values") -> None:
    """Raise ``OverflowError`` if any integer falls outside the signed ``bits``-bit range.

    The contract never wraps silently: widths are proven by bounds, and this check turns a broken
    bound into a loud failure instead of a wrong answer.
    """
    values = _as_int(values, name)
    if values.size == 0:
        return
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.min() < low or values.max() > high:
        raise OverflowError(f"{name} range [{values.min()}, {values.max()}] exceeds {bits}-bit "
                            f"signed [{low}, {high}]")


def saturate(values, bits: int) -> np.ndarray:
    """Clamp integers to the signed ``bits``-bit range (where the contract says to saturate)."""
    values = _as_int(values, "values")
    return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# ---------------------------------------------------------------------------------------------
# Spike-driven self-attention, one head. Q, K, V are binary [N, d]; the results below are exact
# integer counts, so the only design freedom is the threshold (see docs/arithmetic.md).
# ---------------------------------------------------------------------------------------------


def _qkv(q, k, v=None):
    """Check and convert binary ``[N, d]`` Q, K (and V) of one head."""
    q = _as_spikes(q, "q")
    k = _as_spikes(k, "k")
    arrays = [q, k] if v is None else [q, k, _as_spikes(v, "v")]
    if q.ndim != 2 or any(a.shape != q.shape for a in arrays):
        raise ValueError(f"Q, K, V must be binary [N, d] of one shape, got "
                         f"{[a.shape for a in arrays]}")
    return arrays


def _lif_on(counts, threshold, membrane):
    """Run one LIF step on ``counts`` from ``membrane`` (zeros when None)."""
    if membrane is None:
        membrane = np.zeros(np.shape(counts), dtype=np.int64)
    return lif_step(_as_int(membrane, "membrane"), counts, threshold)


def sdsa1_counts(k, v) -> np.ndarray:
    """Return SDSA-1's column sums ``sum over tokens of K AND V``: int64 ``[d]``, in ``[0, N]``."""
    _, k, v = _qkv(k, k, v)
    return (k & v).sum(axis=0)


def sdsa1(q, k, v, threshold: int, membrane=None):
    """Apply SDSA-1, ``Q AND SN(sum_N(K AND V))``, to one head at one time step.

    Parameters
    ----------
    q, k, v : arrays of 0/1, shape ``[N, d]``
    threshold : int
        Integer threshold of the channel neuron ``SN`` on the raw count (doubled units, see
        :func:`lif_threshold`; V1's neuron has theta 0.5 on a count of scale 1, so 1).
    membrane : int64 ``[d]`` or None
        The channel neuron's membrane from the previous time step (None: zeros, the first step).

    Returns
    -------
    (out, membrane, counts)
        ``out`` uint8 ``[N, d]`` = ``q`` masked by the channel spikes; the new membrane ``[d]``;
        the pre-threshold counts ``[d]``.
    """
    q, k, v = _qkv(q, k, v)
    counts = (k & v).sum(axis=0)
    channel_spikes, membrane = _lif_on(counts, threshold, membrane)
    return (q & channel_spikes[None, :]).astype(np.uint8), membrane, counts


def sdsa2_counts(k) -> np.ndarray:
    """Return SDSA-2's column sums ``sum over tokens of K``: int64 ``[d]``, in ``[0, N]``."""
    return _qkv(k, k)[1].sum(axis=0)


def sdsa2(q, k, threshold: int, membrane=None):
    """Apply SDSA-2 (our interpretation, see docs/sdsa-variants.md), ``Q AND SN(sum_N(K))``.

    Parameters
    ----------
    q, k : arrays of 0/1, shape ``[N, d]``
    threshold : int
        Integer threshold of the channel neuron on the raw count (doubled units).
    membrane : int64 ``[d]`` or None
        The channel neuron's membrane from the previous time step.

    Returns
    -------
    (out, membrane, counts)
        As :func:`sdsa1`.
    """
    q, k = _qkv(q, k)
    counts = k.sum(axis=0)
    channel_spikes, membrane = _lif_on(counts, threshold, membrane)
    return (q & channel_spikes[None, :]).astype(np.uint8), membrane, counts


def sdsa3_kv(k, v) -> np.ndarray:
    """Return ``K^T V``: int64 ``[d, d]`` counts in ``[0, N]`` (row i: sum of V rows where K=1)."""
    _, k, v = _qkv(k, k, v)
    return k.T @ v


def sdsa3_counts(q, k, v) -> np.ndarray:
    """Return ``Q (K^T V)``: int64 ``[N, d]`` counts in ``[0, N * d]``."""
    q, k, v = _qkv(q, k, v)
    return q @ (k.T @ v)


def sdsa3(q, k, v, threshold: int, membrane=None):
    """Apply SDSA-3, ``SN(Q (K^T V))``, to one head at one time step.

    Parameters
    ----------
    q, k, v : arrays of 0/1, shape ``[N, d]``
    threshold : int
        Integer threshold on the raw count in doubled units: the official ``* 0.125`` then theta
        0.5 gives ``lif_threshold(0.5, 0.125) == 8``.
    membrane : int64 ``[N, d]`` or None
        ``attn_lif``'s membrane from the previous time step (None: zeros).

    Returns
    -------
    (spikes, membrane, counts)
        uint8 ``[N, d]`` spikes, the new membrane, and the pre-threshold counts ``Q (K^T V)``.
    """
    counts = sdsa3_counts(q, k, v)
    spikes, membrane = _lif_on(counts, threshold, membrane)
    return spikes, membrane, counts


def sdsa4(q, k, v, threshold: int, membrane=None):
    """Apply SDSA-4: SDSA-3 whose threshold was learned (one per attention layer).

    The arithmetic is SDSA-3's; only where ``threshold`` comes from differs
    (``lif_threshold(learned_theta, 0.125)``). Returns ``(spikes, membrane, counts)``.
    """
    return sdsa3(q, k, v, threshold, membrane)
