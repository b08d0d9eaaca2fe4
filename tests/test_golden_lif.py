"""Tests of the LIF neuron against hand-computed sequences and the analytic surrogate gradient."""

import itertools

import pytest
import torch

from golden.lif import MultiStepLIF, lif_reference, spike_fn


def run(inputs, threshold=1.0):
    x = torch.tensor(inputs, dtype=torch.float32).view(-1, 1)
    return MultiStepLIF(threshold=threshold)(x).view(-1).tolist()


@pytest.mark.parametrize("value, fires", [(2.0, 1), (1.9999, 0), (2.5, 1), (0.0, 0), (-3.0, 0)])
def test_one_step_fires_iff_input_at_least_two(value, fires):
    assert run([value]) == [fires]


def test_held_input_fires_every_other_step():
    # H = 0.75 (no spike, V = 0.75), H = 0.75 + (1.5 - 0.75)/2 = 1.125 (spike, V = 0),
    # H = 0.75 (no spike).
    assert run([1.5, 1.5, 1.5]) == [0, 1, 0]


def test_hard_reset_to_zero():
    # 4.0 fires at once; the membrane restarts from 0, so 1.0 next gives H = 0.5: silent.
    assert run([4.0, 1.0, 1.0, 1.0]) == [1, 0, 0, 0]


def test_attention_threshold_half():
    # attn_lif: threshold 0.5 fires at T=1 iff its input >= 1.
    assert run([1.0], threshold=0.5) == [1]
    assert run([0.999], threshold=0.5) == [0]


def test_matches_reference_on_grid():
    values = [-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    for seq in itertools.product(values, repeat=3):
        assert run(list(seq)) == lif_reference(list(seq)), seq


def test_shape_dtype_and_no_state():
    lif = MultiStepLIF()
    x = torch.randn(3, 2, 4, 5, 5) * 3
    s = lif(x)
    assert s.shape == x.shape and s.dtype == x.dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert lif.state_dict() == {}
    assert torch.equal(lif(x), s)  # every call starts from V = 0


def test_rejects_missing_time_axis():
    with pytest.raises(ValueError, match="T, ..."):
        MultiStepLIF()(torch.ones(4))


def test_surrogate_gradient_is_sigmoid_derivative():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    spike_fn(x).sum().backward()
    sig = torch.sigmoid(4 * x.detach())
    assert torch.allclose(x.grad, 4 * sig * (1 - sig), rtol=1e-6, atol=0)


def test_lif_gradient_one_step():
    # T=1: S = step(x/2 - 1), dS/dx = 0.5 * surrogate'(x/2 - 1).
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], requires_grad=True)
    MultiStepLIF()(x).sum().backward()
    u = x.detach() / 2 - 1
    sig = torch.sigmoid(4 * u)
    assert torch.allclose(x.grad, 0.5 * 4 * sig * (1 - sig))


def test_lif_gradient_through_membrane_with_detached_reset():
    # Two steps, no spike at t=0: V0 = H0 = x0/2, H1 = V0 + (x1 - V0)/2 = x0/4 + x1/2.
    # dS1/dx0 = surrogate'(H1 - 1) / 4 plus dS0/dx0 = surrogate'(H0 - 1) / 2.
    x = torch.tensor([[1.0], [1.5]], requires_grad=True)
    MultiStepLIF()(x).sum().backward()
    h0, h1 = 0.5, 0.25 + 0.75
    d = lambda h: 4 * torch.sigmoid(torch.tensor(4 * (h - 1))) * (1 - torch.sigmoid(
        torch.tensor(4 * (h - 1))))
    assert torch.allclose(x.grad[0, 0], d(h0) / 2 + d(h1) / 4)
    assert torch.allclose(x.grad[1, 0], d(h1) / 2)
    # After a spike the reset is detached and V = 0: the next step's gradient does not reach
    # back past the spike.
    x = torch.tensor([[4.0], [1.0]], requires_grad=True)
    MultiStepLIF()(x).sum().backward()
    assert torch.allclose(x.grad[0, 0], d(2.0) / 2)
