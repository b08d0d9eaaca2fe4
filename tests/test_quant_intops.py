"""Tests of the integer layer references in quant/intops.py against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quant import intops

SEED = 20240501


@pytest.fixture
def rng(request):
    """Return a seeded generator; the seed is printed so a failure can be replayed."""
    seed = SEED + sum(map(ord, request.node.name))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def torch_conv(x, w, b, stride, padding, groups=1):
    """Reference convolution in float64, exact for the small integers used here."""
    out = F.conv2d(torch.from_numpy(x.astype(np.float64))[None],
                   torch.from_numpy(w.astype(np.float64)),
                   None if b is None else torch.from_numpy(b.astype(np.float64)),
                   stride=stride, padding=padding, groups=groups)[0]
    return out.numpy().astype(np.int64)


@pytest.mark.parametrize("cin,cout,size,k,stride,padding", [
    (1, 1, 1, 1, 1, 0), (3, 5, 7, 3, 1, 1), (4, 2, 9, 3, 2, 1), (2, 3, 8, 7, 1, 3),
    (5, 1, 6, 1, 2, 0), (1, 4, 5, 3, 1, 0)])
def test_conv2d_spikes_matches_float64_conv(rng, cin, cout, size, k, stride, padding):
    spikes = rng.integers(0, 2, (cin, size, size), dtype=np.uint8)
    weight = rng.integers(-128, 128, (cout, cin, k, k))
    bias = rng.integers(-1000, 1000, cout)
    got = intops.conv2d_spikes(spikes, weight, bias, stride, padding)
    assert got.dtype == np.int64
    assert np.array_equal(got, torch_conv(spikes, weight, bias, stride, padding))


def test_conv2d_spikes_is_a_sum_of_weights(rng):
    """Check one output position by the addressing definition: add the taps of set spikes."""
    spikes = rng.integers(0, 2, (3, 5, 5), dtype=np.uint8)
    weight = rng.integers(-8, 8, (2, 3, 3, 3))
    bias = np.array([7, -3])
    got = intops.conv2d_spikes(spikes, weight, bias, stride=1, padding=1)
    for o in range(2):
        for y in range(5):
            for x in range(5):
                total = int(bias[o])
                for i in range(3):
                    for dy in range(3):
                        for dx in range(3):
                            sy, sx = y + dy - 1, x + dx - 1
                            if 0 <= sy < 5 and 0 <= sx < 5 and spikes[i, sy, sx]:
                                total += int(weight[o, i, dy, dx])
                assert got[o, y, x] == total, (o, y, x)


def test_no_spikes_gives_bias_and_all_spikes_gives_full_sums(rng):
    weight = rng.integers(-50, 50, (4, 3, 3, 3))
    bias = rng.integers(-9, 9, 4)
    empty = intops.conv2d_spikes(np.zeros((3, 4, 4), np.uint8), weight, bias, 1, 1)
    assert np.array_equal(empty, np.broadcast_to(bias[:, None, None], (4, 4, 4)))
    full = intops.conv2d_spikes(np.ones((3, 4, 4), np.uint8), weight, bias, 1, 0)
    assert np.array_equal(full[:, 0, 0], weight.sum(axis=(1, 2, 3)) + bias)


def test_conv2d_spikes_refuses_non_binary_and_float():
    with pytest.raises(ValueError, match="binary"):
        intops.conv2d_spikes(np.full((1, 3, 3), 2), np.ones((1, 1, 1, 1), np.int64))
    with pytest.raises(TypeError, match="integer"):
        intops.conv2d_spikes(np.ones((1, 3, 3), np.uint8), np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="weight"):
        intops.conv2d_spikes(np.ones((2, 3, 3), np.uint8), np.ones((1, 1, 1, 1), np.int64))


@pytest.mark.parametrize("c,size,k,stride,padding", [(1, 3, 3, 1, 1), (6, 9, 7, 1, 3),
                                                     (3, 8, 3, 2, 0)])
def test_depthwise_matches_grouped_conv(rng, c, size, k, stride, padding):
    spikes = rng.integers(0, 2, (c, size, size), dtype=np.uint8)
    weight = rng.integers(-100, 100, (c, 1, k, k))
    bias = rng.integers(-50, 50, c)
    got = intops.depthwise_conv2d_spikes(spikes, weight, bias, stride, padding)
    assert np.array_equal(got, torch_conv(spikes, weight, bias, stride, padding, groups=c))
    got3 = intops.depthwise_conv2d_spikes(spikes, weight[:, 0], None, stride, padding)
    assert np.array_equal(got3, got - bias[:, None, None])


@pytest.mark.parametrize("n,cin,cout", [(1, 1, 1), (7, 13, 5), (196, 64, 3)])
def test_linear_spikes(rng, n, cin, cout):
    spikes = rng.integers(0, 2, (n, cin), dtype=np.uint8)
    weight = rng.integers(-2**15, 2**15, (cout, cin))
    bias = rng.integers(-2**20, 2**20, cout)
    expected = np.array([[int(bias[o]) + sum(int(weight[o, i]) for i in range(cin) if spikes[t, i])
                          for o in range(cout)] for t in range(n)], dtype=np.int64)
    assert np.array_equal(intops.linear_spikes(spikes, weight, bias), expected)
    assert np.array_equal(intops.linear_spikes(spikes, weight[:, :, None], bias), expected)


@pytest.mark.parametrize("pad_value", [0, 117, [12, 200, 3]])
def test_stem_conv_pads_with_pad_value(rng, pad_value):
    pixels = rng.integers(0, 256, (3, 10, 10))
    weight = rng.integers(-128, 128, (4, 3, 7, 7))
    bias = rng.integers(-5000, 5000, 4)
    got = intops.stem_conv(pixels, weight, bias, stride=2, padding=3, pad_value=pad_value)
    pad = np.broadcast_to(np.asarray(pad_value).reshape(-1), (3,))
    padded = np.empty((3, 16, 16), np.int64)
    padded[:] = pad[:, None, None]
    padded[:, 3:13, 3:13] = pixels
    assert np.array_equal(got, torch_conv(padded, weight, bias, 2, 0))


def test_sum_pool_and_shift_left(rng):
    values = rng.integers(-1000, 1000, (5, 3, 4))
    assert np.array_equal(intops.sum_pool(values),
                          np.array([sum(int(v) for v in values[c].ravel()) for c in range(5)]))
    shifts = np.array([0, 1, 2, 3, 4])
    shifted = intops.shift_left(values, shifts[:, None, None])
    assert np.array_equal(shifted, values * (2 ** shifts)[:, None, None])
    with pytest.raises(ValueError):
        intops.shift_left(values, -1)


def test_signed_bits_and_check_fits():
    for low, high in [(0, 0), (-1, 0), (0, 1), (-128, 127), (-129, 0), (0, 128), (-5, 300)]:
        bits = intops.signed_bits(low, high)
        assert -(2 ** (bits - 1)) <= low and high <= 2 ** (bits - 1) - 1
        assert not (-(2 ** (bits - 2)) <= low and high <= 2 ** (bits - 2) - 1) or bits == 1
    intops.check_fits(np.array([-128, 127]), 8)
    with pytest.raises(OverflowError, match="8-bit"):
        intops.check_fits(np.array([128]), 8)
    assert np.array_equal(intops.saturate(np.array([-300, 5, 300]), 9), [-256, 5, 255])


def lif_float(inputs, theta):
    """Float LIF in float64, the form of golden/lif.py."""
    v, out = 0.0, []
    for x in inputs:
        h = v + (x - v) / 2.0
        s = h >= theta
        v = 0.0 if s else h
        out.append(int(s))
    return out


def test_lif_integer_matches_float_at_t1_exhaustively():
    for scale in [0.125, 0.1, 1 / 3, 0.01, 2.0]:
        for theta in [0.5, 1.0, 0.37]:
            thr = intops.lif_threshold(theta, scale)
            for x in range(-300, 301):
                assert intops.lif_sequence([[x]], thr)[0, 0] == lif_float([x * scale], theta)[0]


def brute_sdsa3(q, k, v):
    """Q (K^T V) with explicit loops."""
    n, d = q.shape
    kv = [[sum(int(k[t, i]) * int(v[t, j]) for t in range(n)) for j in range(d)] for i in range(d)]
    return np.array([[sum(kv[i][j] for i in range(d) if q[t, i]) for j in range(d)]
                     for t in range(n)], dtype=np.int64)


@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (16, 8), (49, 1)])
def test_sdsa3_counts_and_threshold(rng, n, d):
    q, k, v = (rng.integers(0, 2, (n, d), dtype=np.uint8) for _ in range(3))
    expected = brute_sdsa3(q, k, v)
    assert np.array_equal(intops.sdsa3_counts(q, k, v), expected)
    assert np.array_equal(intops.sdsa3_kv(k, v), k.astype(np.int64).T @ v.astype(np.int64))
    threshold = intops.lif_threshold(0.5, 0.125)
    assert threshold == 8
    spikes, membrane, counts = intops.sdsa3(q, k, v, threshold)
    assert np.array_equal(counts, expected)
    assert np.array_equal(spikes, (expected * 0.125 / 2 >= 0.5).astype(np.uint8))
    assert np.array_equal(membrane, np.where(spikes == 1, 0, expected >> 1))
    # A second step continues from the membrane, like attn_lif at T > 1.
    spikes2, _, _ = intops.sdsa3(q, k, v, threshold, membrane)
    assert np.array_equal(spikes2, (membrane + expected >= 8).astype(np.uint8))
    assert np.array_equal(intops.sdsa4(q, k, v, 5)[0], (expected >= 5).astype(np.uint8))


def test_sdsa3_all_ones_and_empty():
    n, d = 7, 4
    ones = np.ones((n, d), np.uint8)
    assert np.array_equal(intops.sdsa3_counts(ones, ones, ones), np.full((n, d), n * d))
    zeros = np.zeros((n, d), np.uint8)
    assert not intops.sdsa3(zeros, ones, ones, 8)[0].any()


@pytest.mark.parametrize("n,d", [(1, 1), (9, 4), (196, 8)])
def test_sdsa1_and_sdsa2(rng, n, d):
    q, k, v = (rng.integers(0, 2, (n, d), dtype=np.uint8) for _ in range(3))
    kv_sum = np.array([sum(int(k[t, c] and v[t, c]) for t in range(n)) for c in range(d)])
    threshold = intops.lif_threshold(0.5, 1.0)
    out, membrane, counts = intops.sdsa1(q, k, v, threshold)
    assert np.array_equal(counts, kv_sum)
    assert np.array_equal(out, q * (kv_sum >= threshold)[None, :])
    assert np.array_equal(membrane, np.where(kv_sum >= threshold, 0, kv_sum >> 1))
    k_sum = np.array([sum(int(k[t, c]) for t in range(n)) for c in range(d)])
    out2, _, counts2 = intops.sdsa2(q, k, 3)
    assert np.array_equal(counts2, k_sum)
    assert np.array_equal(out2, q * (k_sum >= 3)[None, :])
    assert np.array_equal(intops.sdsa1_counts(k, v), kv_sum)
    assert np.array_equal(intops.sdsa2_counts(k), k_sum)


# --- bit planes: a 1x1 conv on integers by additions only (SepConv's pwconv2 unfused) ---

@pytest.mark.parametrize("bits", [1, 2, 5, 12])
def test_bit_planes_rebuild_the_values(rng, bits):
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.concatenate([[low, high, 0, -1], rng.integers(low, high + 1, 60)])
    planes = intops.bit_planes(values, bits)
    assert planes.shape == (bits, values.size) and planes.dtype == np.uint8
    weights = np.array([1 << p for p in range(bits)], dtype=np.int64)
    weights[-1] = -weights[-1]
    assert np.array_equal((planes.astype(np.int64) * weights[:, None]).sum(0), values)


def test_magnitude_planes_rebuild_the_values(rng):
    values = np.concatenate([[-2047, 2047, 0, -1, 1], rng.integers(-2047, 2048, 60)])
    planes, negative = intops.magnitude_planes(values, 11)
    magnitude = (planes.astype(np.int64) << np.arange(11)[:, None]).sum(0)
    assert np.array_equal(np.where(negative, -magnitude, magnitude), values)


def test_planes_refuse_values_beyond_their_bits():
    with pytest.raises(OverflowError):
        intops.bit_planes(np.array([8]), 4)          # 4 signed bits hold -8..7
    with pytest.raises(OverflowError):
        intops.magnitude_planes(np.array([-16]), 4)  # 4 bits of magnitude hold 0..15
    with pytest.raises(ValueError, match="bits must be an integer >= 1"):
        intops.bit_planes(np.array([0]), 0)


@pytest.mark.parametrize("encoding", ["twos", "sign-magnitude"])
@pytest.mark.parametrize("bits", [1, 3, 12])
def test_pointwise_by_planes_equals_the_integer_1x1_conv(rng, encoding, bits):
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if encoding == "sign-magnitude":
        low = -high
    values = rng.integers(low, high + 1, (6, 3, 4))
    values[0, 0, :2] = [low, high]
    weight = rng.integers(-128, 128, (5, 6, 1, 1))
    bias = rng.integers(-1000, 1000, 5)
    expect = np.einsum("chw,oc->ohw", values, weight[:, :, 0, 0]) + bias[:, None, None]
    got = intops.pointwise_by_planes(values, weight, bias, bits, encoding)
    assert got.dtype == np.int64 and np.array_equal(got, expect)


def test_pointwise_by_planes_refuses_bad_arguments(rng):
    values = rng.integers(-8, 8, (2, 2, 2))
    with pytest.raises(ValueError, match="1x1 kernel"):
        intops.pointwise_by_planes(values, np.ones((3, 2, 3, 3), np.int64), None, 4)
    with pytest.raises(ValueError, match="encoding must be"):
        intops.pointwise_by_planes(values, np.ones((3, 2, 1, 1), np.int64), None, 4, "gray")
    with pytest.raises(ValueError, match="C = 5"):
        intops.pointwise_by_planes(values, np.ones((3, 5, 1, 1), np.int64), None, 4)
