"""Compare the golden model with outputs of the official code (``tests/data/golden``).

``official_tiny.pt`` was made by ``tests/data/golden/make_official_reference.py`` running the
official ``classification/models.py`` (commit 35f245f) with spikingjelly 0.0.0.0.12 on a small
official-format model with seeded random weights and BN statistics; see that script's docstring.

What is exact and what is not. Every spike is compared with ``==``: spikes are the contract, and
a float difference that flipped one would be a real divergence. The logits are float32 sums of
head weights over the pooled spikes (``head(spikes).mean(0)``, and the KD head's mean); their
summation order depends on the CPU, the thread count and the BLAS/oneDNN kernel, so on another x86
machine (an AMD EPYC with AVX-512 and MKL) they differed by 1.8e-7 with max |logit| 2.0, every
spike identical. Logits are therefore compared within ``LOGIT_ULPS`` units in the last place of
the largest reference logit (8 ulp of 2.0 = 1.9e-6). The bound is not loose: a 1e-4 change of one
head weight moves a logit by at least 1e-4 / (2 T) = 1.7e-5 at T=3 (the kd mean halves it), nine
times the bound, and :func:`test_bound_catches_a_one_weight_perturbation` shows that it fails.
The tests run under 1 and 2 torch threads and with oneDNN (mkldnn) on and off.
"""

import contextlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from golden.checkpoint import check_state_dict
from golden.config import ModelConfig
from golden.model import MetaSpikeFormer

DATA = Path(__file__).parent / "data" / "golden" / "official_tiny.pt"

# Float32 logits agree with the official ones within this many ulp of the largest logit.
LOGIT_ULPS = 8

# Each (threads, oneDNN) setting the float tests run under; summation order differs between them.
SETTINGS = [pytest.param(threads, mkldnn, id=f"threads{threads}-mkldnn{'on' if mkldnn else 'off'}")
            for threads in (1, 2) for mkldnn in (True, False)]


@pytest.fixture(scope="module")
def ref():
    return torch.load(DATA, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def torch_setting(threads: int, mkldnn: bool):
    """Run with ``threads`` intra-op threads and oneDNN enabled or not; restore both after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # Only oneDNN on/off. Setting the flags also sets oneDNN's TF32 option, an Intel-GPU
        # feature that this CPU build answers with a warning; TF32 stays off.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=mkldnn, allow_tf32=False):
                yield
    finally:
        torch.set_num_threads(before)


def model_for(ref, state_dict=None, **changes):
    model = MetaSpikeFormer(ModelConfig(**ref["config"]).replace(**changes))
    state_dict = ref["state_dict"] if state_dict is None else state_dict
    check_state_dict(model, state_dict, str(DATA))
    model.load_state_dict(state_dict)
    return model


def unpack(entry):
    shape, bits = entry
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy())[:n].reshape(shape).astype(bool))


def logit_tolerance(want: torch.Tensor) -> float:
    """``LOGIT_ULPS`` float32 ulp of the largest |logit| of ``want``."""
    peak = want.abs().max().float()
    ulp = float(torch.nextafter(peak, torch.tensor(float("inf"))) - peak)
    return LOGIT_ULPS * ulp


def logit_problem(name: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    """Return a message if ``got`` is not within the logit bound of ``want``, else None."""
    assert got.shape == want.shape and got.dtype == want.dtype == torch.float32, name
    error = float((got.detach() - want).abs().max())
    tolerance = logit_tolerance(want)
    if not error <= tolerance:  # also catches NaN
        return (f"{name}: max |difference| {error:.3g} exceeds {LOGIT_ULPS} ulp of the largest "
                f"logit ({tolerance:.3g})")
    return None


def eval_problems(model, ref, T: int) -> list[str]:
    """Run ``model`` in eval mode at ``T``; return every disagreement with the official run."""
    with torch.no_grad():
        logits, spikes = model.eval()(ref["input"], trace=True)
    problems = []
    expected = ref[f"spikes_T{T}"]
    if list(spikes) != list(expected):
        problems.append(f"spike sites differ: {sorted(set(spikes) ^ set(expected))}")
    for name, entry in expected.items():
        want, got = unpack(entry), spikes[name].bool()
        if not torch.equal(want, got):  # spikes are exact: `==` on every bit
            idx = tuple(int(i) for i in (want != got).nonzero()[0])
            problems.append(f"{name}: first spike difference at {idx}: official "
                            f"{int(want[idx])}, golden {int(got[idx])}")
    problem = logit_problem(f"logits T={T}", logits, ref[f"logits_T{T}"])
    return problems + ([problem] if problem else [])


@pytest.mark.parametrize("threads, mkldnn", SETTINGS)
@pytest.mark.parametrize("T", [1, 3])
def test_eval_spikes_exact_and_logits_within_bound(ref, T, threads, mkldnn):
    with torch_setting(threads, mkldnn):
        problems = eval_problems(model_for(ref, T=T), ref, T)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("threads, mkldnn", SETTINGS)
def test_training_outputs_and_surrogate_gradients(ref, threads, mkldnn):
    with torch_setting(threads, mkldnn):
        model = model_for(ref, T=ref["train_T"]).train()
        x = ref["input"].clone().requires_grad_(True)
        out, out_kd = model(x)
        for problem in (logit_problem("train_out", out, ref["train_out"]),
                        logit_problem("train_out_kd", out_kd, ref["train_out_kd"])):
            assert problem is None, problem
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


@pytest.mark.parametrize("T", [1, 3])
def test_bound_catches_a_one_weight_perturbation(ref, T):
    """A 1e-4 change of one head weight leaves every spike as it was and fails the logit bound."""
    model = model_for(ref, T=T).eval()
    with torch.no_grad():
        _, spikes = model(ref["input"], trace=True)
    # The head's input: the pooled stream's LIF, [T, B, C]. Pick the feature that fires most
    # often for image 0, so the perturbed weight reaches the logits.
    pooled = spikes["lif"].float()
    feature = int(pooled[:, 0].reshape(T, -1).sum(0).argmax())
    assert pooled[:, 0].reshape(T, -1)[:, feature].sum() > 0, "no head input fires: vacuous"
    state = {k: v.clone() for k, v in ref["state_dict"].items()}
    state["head.weight"][0, feature] += 1e-4
    problems = eval_problems(model_for(ref, state, T=T), ref, T)
    assert problems and all(p.startswith("logits") for p in problems), problems
