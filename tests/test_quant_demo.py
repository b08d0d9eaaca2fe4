"""Slow checks on the shipped demo checkpoint: 8-bit accuracy within one point of float."""

from __future__ import annotations

import os

import pytest
import torch

from quant.bench import accuracy_table

torch.set_num_threads(1)
DEMO = os.path.join(os.path.dirname(__file__), "..", "golden", "checkpoints", "demo.pth")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(DEMO), reason="golden/checkpoints/demo.pth not built yet")
def test_demo_8bit_accuracy_within_one_point():
    row = accuracy_table(DEMO, bits_list=(8,))[0]
    print(row["float_acc"], row["int_acc"], row["top1_agreement"], row["spike_agreement_min"])
    assert row["int_acc"] >= row["float_acc"] - 0.01  # the target
    # Not a target, a regression floor: the shipped checkpoint measured 0.939 (338/360 images
    # with the same top-1); spikes flip where an integer threshold rounds, and a few near-tie
    # logits follow. Falling below 0.92 would mean the quantizer got worse.
    assert row["top1_agreement"] >= 0.92
