"""sim.sepconv: SepConv fused against unfused, per layer (the report's arithmetic).

The fused 7x7 and the depthwise 7x7 read the same spikes with the same kernel, stride and
padding, so every spike has the same valid taps in both: the fused conv's additions are the
depthwise conv's times the output channels, exactly. The pointwise conv's multiplies do not
depend on the firing. The fused cycles are the cycle model's for the step (held to the RTL by
tests/test_perf.py).
"""

import subprocess
import sys

import numpy as np
import pytest

from sim.sepconv import E_AC_PJ, E_MAC_PJ, compare


@pytest.fixture(scope="module")
def result():
    return compare(None, images=2, T=1, lanes=16)


def test_every_sepconv_of_the_demo_is_reported(result):
    assert [row["layer"] for row in result["layers"]] == [
        "ConvBlock1_1.0.Conv.pwconv2", "ConvBlock1_2.0.Conv.pwconv2",
        "ConvBlock2_1.0.Conv.pwconv2"]


def test_fused_additions_are_the_depthwise_ones_times_the_output_channels(result):
    for row in result["layers"]:
        cmid, cout = (int(v) for v in row["channels"].split(" -> "))
        assert cmid == 2 * cout                      # SepConv: C -> 2C -> C
        assert row["fused_sops"] == pytest.approx(row["dw_sops"] * cout)
        assert row["pw_macs"] == row["side"] ** 2 * cmid * cout
        assert row["spikes"] > 0 and row["dw_sops"] <= row["spikes"] * 49
        assert row["fused_ideal"] <= row["fused_cycles"]
        assert row["unfused_cycles"] == pytest.approx((row["dw_sops"] + row["pw_macs"]) / 16)
        assert row["fused_pj"] == pytest.approx(E_AC_PJ * row["fused_sops"])
        assert row["unfused_pj"] == pytest.approx(E_AC_PJ * row["dw_sops"]
                                                  + E_MAC_PJ * row["pw_macs"])


def test_totals_and_the_cheaper_choice(result):
    rows = result["layers"]
    for key in ("fused_sops", "dw_sops", "pw_macs", "fused_cycles", "unfused_cycles"):
        assert result["total"][key] == pytest.approx(sum(row[key] for row in rows))
    for row in rows:
        assert row["cheaper_cycles"] == ("fused" if row["fused_cycles"] <= row["unfused_cycles"]
                                         else "unfused")
    assert 0 < result["total"]["fused_cycles"] < result["network_cycles"]


def test_bit_serial_unfused_form_is_exact_and_costed_from_its_planes(result):
    from sim.e2e import demo_model
    from quant.quantize import quantize_model

    unfused = quantize_model(demo_model(1)[0], 8, 8, fuse_sepconv=False)
    for row in result["layers"]:
        cmid, cout = (int(v) for v in row["channels"].split(" -> "))
        dw = unfused.layers[row["layer"].replace(".pwconv2", ".dwconv")]
        # every image and time step, both encodings: the planes' passes == the integer pwconv2
        assert row["bitserial_exact"] is True
        assert row["planes"] == dw.acc_bits
        assert 1 << (row["sm_planes"] - 1) <= max(-int(dw.acc_low.min()),
                                                  int(dw.acc_high.max())) < 1 << row["sm_planes"]
        # a set bit is one tap of a 1x1 conv: C additions, one cycle per group of 16 lanes
        assert 0 < row["sm_bits_set"] <= row["sm_planes"] * cmid * row["side"] ** 2
        assert row["bs_sops"] == pytest.approx(row["bs_dw_sops"] + row["sm_bits_set"] * cout)
        # the depthwise engine: at most 16 additions a cycle, at least a cycle a row, and the
        # read-out of a channel's tiles (2 x 8 pixels) after the last one's adds
        assert row["dw_engine_cycles"] >= max(row["bs_dw_sops"] / 16, cmid * row["side"]) \
            + row["side"] ** 2 / 16
        assert row["bs_cycles"] == pytest.approx(row["dw_engine_cycles"] + row["sm_bits_set"]
                                                 * -(-cout // 16))
        assert row["bs_pj"] == pytest.approx(E_AC_PJ * row["bs_sops"])
        assert row["bs_vs_fused_energy"] == ("fused" if row["fused_pj"] <= row["bs_pj"]
                                             else "bit-serial")
    assert result["total"]["bitserial_exact"] is True


def test_time_steps_multiply_the_dense_pointwise_work():
    one = compare(None, images=1, T=1)["total"]["pw_macs"]
    two = compare(None, images=1, T=2)["total"]["pw_macs"]
    assert two == 2 * one and np.isfinite(one)


@pytest.mark.parametrize("args, message", [
    (["--images", "0"], "--images 0 is out of range"),
    (["--lanes", "0"], "--lanes 0 is out of range"),
    (["--lanes", "12"], "lanes must be a power of two >= 8"),
    (["--checkpoint", "/nonexistent.pth"], "checkpoint /nonexistent.pth does not exist"),
])
def test_bad_arguments_are_one_line(args, message):
    run = subprocess.run([sys.executable, "-m", "sim.sepconv", *args], capture_output=True,
                         text=True)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
