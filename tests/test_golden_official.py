"""Compare the golden model with outputs of the official code (``tests/data/golden``).

``official_tiny.pt`` was made by ``tests/data/golden/make_official_reference.py`` running the
official ``classification/models.py`` (commit 35f245f) with spikingjelly 0.0.0.0.12 on a small
official-format model with seeded random weights and BN statistics; see that script's docstring.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from golden.checkpoint import check_state_dict
from golden.config import ModelConfig
from golden.model import MetaSpikeFormer

DATA = Path(__file__).parent / "data" / "golden" / "official_tiny.pt"


@pytest.fixture(scope="module")
def ref():
    return torch.load(DATA, map_location="cpu", weights_only=True)


def model_for(ref, **changes):
    model = MetaSpikeFormer(ModelConfig(**ref["config"]).replace(**changes))
    check_state_dict(model, ref["state_dict"], str(DATA))
    model.load_state_dict(ref["state_dict"])
    return model


def unpack(entry):
    shape, bits = entry
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy())[:n].reshape(shape).astype(bool))


@pytest.mark.parametrize("T", [1, 3])
def test_eval_logits_and_every_spike_bit_exact(ref, T):
    model = model_for(ref, T=T).eval()
    with torch.no_grad():
        logits, spikes = model(ref["input"], trace=True)
    assert torch.equal(logits, ref[f"logits_T{T}"])
    expected = ref[f"spikes_T{T}"]
    assert list(spikes) == list(expected)
    for name, entry in expected.items():
        want, got = unpack(entry), spikes[name].bool()
        if not torch.equal(want, got):
            idx = tuple(int(i) for i in (want != got).nonzero()[0])
            pytest.fail(f"{name}: first difference at {idx}: official {int(want[idx])}, "
                        f"golden {int(got[idx])}")


def test_training_outputs_and_surrogate_gradients(ref):
    model = model_for(ref, T=ref["train_T"]).train()
    x = ref["input"].clone().requires_grad_(True)
    out, out_kd = model(x)
    assert torch.equal(out, ref["train_out"]) and torch.equal(out_kd, ref["train_out_kd"])
    ((out * ref["train_w"]).sum() + (out_kd * ref["train_w_kd"]).sum()).backward()
    # Gradients agree to float32 summation order (autograd accumulates the shared stream's
    # gradient in a different order than the official graph): relative 1e-5 on whole tensors.
    rel = lambda a, b: float((a - b).norm() / b.norm())
    assert rel(x.grad, ref["grad_input"]) < 1e-5
    params = dict(model.named_parameters())
    for name, g in ref["grads"].items():
        assert rel(params[name].grad, g) < 1e-5, name
    # Norms of all gradients. A conv bias right before a training-mode BN has a zero gradient in
    # exact arithmetic, so its float noise is judged against the largest gradient of the model.
    scale = max(float(n) for n in ref["grad_norms"].values())
    for name, n in ref["grad_norms"].items():
        ours = float(params[name].grad.double().norm())
        assert abs(ours - float(n)) <= 1e-5 * float(n) + 1e-6 * scale, name
