"""Tests of firing rates, SOP counting, energy and the params/energy commands."""

import csv
import json
from pathlib import Path

import pytest
import torch

from golden.__main__ import main as golden_main
from golden.checkpoint import load_checkpoint
from golden.config import variant
from golden.data import digits_dataset
from golden.energy import EnergyConstants, measure, totals
from golden.model import MetaSpikeFormer


@pytest.fixture(scope="module")
def model_and_images():
    # The trained demo model: a random one barely fires in eval mode.
    model = load_checkpoint(Path(__file__).parents[1] / "golden" / "checkpoints" / "demo.pth")
    return model, digits_dataset(32, "test", 0).tensors[0][:8]


def test_rates_cover_every_lif(model_and_images):
    model, x = model_and_images
    layers, rates = measure(model, x)
    assert len(rates) == 31 and all(0.0 <= r <= 1.0 for r in rates.values())
    assert 0.01 < sum(rates.values()) / len(rates) < 0.5


def test_random_model_reports_too():
    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("tiny", T=2))
    layers, rates = measure(model, torch.randn(2, 3, 32, 32))
    assert len(rates) == 35 and layers[0].macs == 2 * layers[0].flops  # stem at every step


def test_paper_method_by_hand(model_and_images):
    model, x = model_and_images
    layers, rates = measure(model, x, "fused")
    by_name = {layer.name: layer for layer in layers}
    stem = by_name["downsample1_1.encode_conv"]
    # 7x7 conv, 1 -> 8 channels, 16x16 output: MACs, 4.6 pJ each.
    assert stem.flops == 49 * 16 * 16 * 1 * 8 and stem.macs == stem.flops
    assert stem.energy_paper_pj == pytest.approx(4.6 * stem.flops)
    conv1 = by_name["ConvBlock1_1.0.conv1"]
    assert conv1.fr_in == pytest.approx(rates["ConvBlock1_1.0.lif1"])
    assert conv1.sop == pytest.approx(conv1.fr_in * 9 * 16 * 16 * 8 * 32)
    assert conv1.energy_paper_pj == pytest.approx(0.9 * conv1.sop)
    q = by_name["block3.0.attn.q_conv.0 (fused 3x3)"]
    assert q.flops == 9 * 2 * 2 * 64 * 64 and q.binary_input
    assert q.fr_in == pytest.approx(rates["block3.0.attn.head_lif"])
    total = totals(layers)
    assert total["energy_paper_mj"] == pytest.approx(
        (4.6 * total["macs"] + 0.9 * total["sop"]) * 1e-9)


def test_unfused_graph_counts_nonbinary_inputs_as_macs(model_and_images):
    model, x = model_and_images
    layers, _ = measure(model, x, "unfused")
    names = {layer.name: layer for layer in layers}
    dw = names["block3.0.attn.q_conv.0.body.2.0"]  # after BNAndPad: real-valued input
    assert not dw.binary_input and dw.macs == dw.flops
    assert names["ConvBlock1_1.0.Conv.pwconv2"].input_from == "non-binary"


def test_memory_estimate_scales_with_sram_cost(model_and_images):
    model, x = model_and_images
    cheap, _ = measure(model, x, constants=EnergyConstants(sram_pj_per_byte=0.0))
    dear, _ = measure(model, x, constants=EnergyConstants(sram_pj_per_byte=2.0))
    moved = totals(dear)["bytes_moved"]
    assert totals(dear)["energy_memory_mj"] == pytest.approx(
        totals(cheap)["energy_memory_mj"] + 2.0 * moved * 1e-9)


def test_energy_command_writes_csv_and_json(tmp_path, capsys):
    csv_path, json_path = tmp_path / "e.csv", tmp_path / "e.json"
    assert golden_main(["energy", "--images", "8", "--csv", str(csv_path),
                        "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "Firing rates (31 spike layers)" in out and "Total: SOP" in out
    rows = list(csv.DictReader(open(csv_path)))
    assert rows[0]["name"] == "downsample1_1.encode_conv"
    data = json.load(open(json_path))
    assert data["graph"] == "fused" and len(data["firing_rates"]) == 31


def test_params_command(capsys):
    assert golden_main(["params"]) == 0
    out = capsys.readouterr().out
    assert "31,333,864" in out and "28,593,832" in out  # baseline and SDSA-2 (paper: 28.6M)
    assert golden_main(["params", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 14 and rows[0]["ablation"] == "baseline"


def test_unknown_command():
    assert golden_main(["frobnicate"]) == 2
