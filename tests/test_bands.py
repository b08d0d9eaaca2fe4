"""A layer computed band by band: ``ProgEngine(bands=True)`` with ``band_layer``, each band's
input rows (halo included) read from external memory by ``hw.rowreader.RowReader``.

The layer's output map, put together from its bands, is ``==`` quant.intops.conv2d_spikes of the
whole input map, for 1x1, 3x3, 5x5 and 7x7 kernels at stride 1 and 2 with their paddings, and
bands of 1, 2 and 3 output rows (the last band shorter where the rows do not divide). The
engine's accumulator bank holds one band, not the map. The references (``band_layer``'s rows and
padding) are checked against a direct count of the taps.
"""

import numpy as np
import pytest

from hw.progengine_config import band_layer, layer_config
from hw.rowreader import band_config, map_image
from quant.intops import conv2d_spikes
from sim.cases_addressing import spike_map
from test_progengine import Network
from test_rowreader import engine_from_memory

# (cin, cout, kernel, stride, padding, height, width)
LAYERS = [
    (3, 6, 3, 1, 1, 9, 7),    # 3x3, G = 2
    (2, 5, 7, 2, 3, 11, 8),   # 7x7 stride 2: a halo of 3 rows and padding 3
    (4, 4, 3, 2, 1, 8, 6),    # 3x3 stride 2
    (3, 5, 1, 1, 0, 6, 5),    # 1x1: no halo
    (2, 3, 5, 1, 2, 7, 6),    # 5x5 (kernel_log 3)
]


def bands_of(out_height: int, rows: int) -> list[tuple[int, int]]:
    return [(first, min(first + rows, out_height) - 1) for first in range(0, out_height, rows)]


@pytest.mark.parametrize("rows", [1, pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow)])
def test_a_layer_band_by_band_equals_the_whole_layer(rows):
    geometry = [layer_config(in_channels=cin, out_channels=cout, kernel=k, stride=s, padding=p,
                             height=h, width=w, lanes=4)
                for cin, cout, k, s, p, h, w in LAYERS]
    bank = max(band_layer(cfg, first, last)[0].bank_words_needed
               for cfg in geometry for first, last in bands_of(cfg.out_height, rows))
    assert bank < max(cfg.bank_words_needed for cfg in geometry), \
        "a band must need fewer bank words than its layer"
    net = Network(11 + rows, 4, LAYERS, bands=True, bank_depth=bank)
    jobs = []
    for n, (cfg, _, _) in enumerate(net.layers):
        for first, last in bands_of(cfg.out_height, rows):
            band, first_in, last_in = band_layer(cfg, first, last)
            jobs.append((n, first, band, first_in, last_in))
    maps = [spike_map(net.rng, (cfg.in_channels, cfg.height, cfg.width), 0.4)
            for cfg, _, _ in net.layers]
    base, memory, at = 0x1000, bytearray(0x1000), []
    for spikes in maps:
        at.append(len(memory))
        memory += map_image(spikes)
    runs = [(band, band_config(net.layers[n][0].in_channels, net.layers[n][0].height,
                               net.layers[n][0].width, first_in, last_in, base=at[n]))
            for n, _, band, first_in, last_in in jobs]
    received = engine_from_memory(net, runs, bytes(memory), seed=rows)
    lanes = net.engine.lanes
    got = [np.full((cfg.groups * lanes, cfg.out_height, cfg.out_width), -1 << 40)
           for cfg, _, _ in net.layers]
    for (n, first, band, _, _), beats in zip(jobs, received):
        assert len(beats) == band.beats, f"layer {n} band at row {first}: beat count"
        for index, beat in enumerate(beats):
            oy, ox, g = int(beat.oy), int(beat.ox), int(beat.group)
            assert (int(beat.index), int(beat.last)) == (index, int(index == band.beats - 1))
            assert 0 <= oy < band.out_height
            got[n][g * lanes:(g + 1) * lanes, first + oy, ox] = \
                [int(beat.values[lane]) for lane in range(lanes)]
    for n, ((cfg, weight, bias), spikes) in enumerate(zip(net.layers, maps)):
        want = conv2d_spikes(spikes, weight, bias, stride=cfg.stride, padding=cfg.padding)
        have = got[n][:cfg.out_channels]
        bad = np.argwhere(have != want)
        assert not bad.size, (f"layer {n} {LAYERS[n]}, bands of {rows} rows: first difference "
                              f"at (channel, oy, ox) {tuple(bad[0])}: {have[tuple(bad[0])]} != "
                              f"{want[tuple(bad[0])]}")


@pytest.mark.parametrize("spec", LAYERS)
def test_band_layer_reaches_exactly_the_rows_the_taps_reach(spec):
    """Input rows and top padding of every single-row and two-row band, against the taps
    counted one by one (row ``oy`` reads ``oy * s - p + ky`` for ``ky < k`` inside the map)."""
    cin, cout, kernel, stride, padding, height, width = spec
    cfg = layer_config(in_channels=cin, out_channels=cout, kernel=kernel, stride=stride,
                       padding=padding, height=height, width=width, lanes=4)
    for rows in (1, 2):
        for first, last in bands_of(cfg.out_height, rows):
            band, first_in, last_in = band_layer(cfg, first, last)
            reached = {oy * stride - padding + ky for oy in range(first, last + 1)
                       for ky in range(kernel)} & set(range(height))
            assert (first_in, last_in) == (min(reached), max(reached))
            assert band.height == last_in - first_in + 1
            assert band.out_height == last - first + 1
            # output row first reads input row first * s - p + ky: band row ky - padding_y
            assert first * stride - padding == first_in - band.padding_y
            assert 0 <= band.padding_y <= padding
            assert (band.width, band.out_width, band.padding) == (width, cfg.out_width, padding)
    whole, first_in, last_in = band_layer(cfg, 0, cfg.out_height - 1)
    assert whole == cfg and (first_in, last_in) == (0, height - 1)


def test_band_refusals():
    cfg = layer_config(in_channels=2, out_channels=3, kernel=3, stride=1, padding=1, height=5,
                       width=5, lanes=4)
    with pytest.raises(ValueError, match="last"):
        band_layer(cfg, 3, 2)
    with pytest.raises(ValueError, match="first"):
        band_layer(cfg, 5, 5)
    # An engine without bands refuses a band whose top padding is not the layer's.
    net = Network(1, 4, [(2, 3, 3, 1, 1, 5, 5)])
    band, _, _ = band_layer(net.layers[0][0], 2, 3)
    with pytest.raises(ValueError, match="padding_y"):
        net.engine.config_value(band)
    # One with bands takes it, and refuses a padding_y above the padding.
    banded = Network(1, 4, [(2, 3, 3, 1, 1, 5, 5)], bands=True)
    banded.engine.config_value(band)
    import dataclasses
    with pytest.raises(ValueError, match="padding_y"):
        banded.engine.config_value(dataclasses.replace(band, padding_y=2))
