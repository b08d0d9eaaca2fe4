"""SDSA unit on the demo model's attention layers, with their real Q, K, V spikes.

The integer model (``quant.intmodel``) runs digits through the quantized demo checkpoint
(``golden/checkpoints/demo.pth``; untrained demo weights stand in, with a warning, if it does not
load) and traces every layer. Each attention layer's ``q_lif``, ``k_lif`` and ``v_lif`` spikes are
fed to the unit, one image per time step (each its own sample), and its output must equal the
trace's ``attn_lif`` spikes bit for bit; the layer's threshold is the integer model's.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hw.sdsa import SDSA
from hw.sdsa_common import Variant
from sim.cases_sdsa import case_from_arrays, expected_spikes, first_difference
from tests.test_sdsa import simulate_sdsa
from tests.test_sdsa_verilator import ALWAYS, PAUSE, SPARSE, run_point

CHECKPOINT = Path(__file__).resolve().parent.parent / "golden" / "checkpoints" / "demo.pth"
IMAGES = 12


@pytest.fixture(scope="module")
def demo_attention_layers():
    """Return ``{layer: (SDSACase, trace output [steps, heads, N, d], threshold, variant)}``."""
    from golden.config import variant  # noqa: PLC0415
    from golden.data import digits_arrays, upscale  # noqa: PLC0415
    from golden.model import MetaSpikeFormer  # noqa: PLC0415
    from quant.intmodel import IntegerModel  # noqa: PLC0415
    from quant.quantize import quantize_model  # noqa: PLC0415

    model = None
    if CHECKPOINT.exists():
        from golden.checkpoint import load_checkpoint  # noqa: PLC0415
        try:
            model = load_checkpoint(CHECKPOINT)
        except Exception as error:  # noqa: BLE001 - golden's file; the shapes still hold
            warnings.warn(f"{CHECKPOINT} does not load ({type(error).__name__}); using "
                          "untrained demo weights", stacklevel=1)
    if model is None:
        torch.manual_seed(0)
        model = MetaSpikeFormer(variant("demo"))
    integer = IntegerModel(quantize_model(model.eval()))
    cfg = integer.cfg
    pixels, _ = digits_arrays("test")
    _, trace = integer.forward(upscale(pixels[:IMAGES], cfg.img_size), trace=True)

    layers = {}
    heads = cfg.num_heads
    for name in sorted(trace.spikes):
        if not name.endswith(".attn.attn_lif"):
            continue
        prefix = name[:-len(".attn_lif")]

        def per_head(spikes):
            # [T, B, C, H, W] or [T, B, C, N] -> [T*B, heads, N, d]; heads are channel groups.
            array = np.asarray(spikes).astype(np.uint8)
            steps, batch, channels = array.shape[:3]
            array = array.reshape(steps * batch, heads, channels // heads, -1)
            return array.transpose(0, 1, 3, 2).copy()

        q, k, v = (per_head(trace.spikes[f"{prefix}.{kind}_lif"]) for kind in "qkv")
        # Every image is its own sample: its first time step clears the membranes.
        case = case_from_arrays(q, k, v, first=np.ones(q.shape[0], dtype=np.uint8))
        threshold = int(integer.thresholds[name].reshape(-1)[0])
        layers[prefix] = (case, per_head(trace.spikes[name]), threshold, Variant(cfg.sdsa))
    assert layers, "the demo model has no attention layer in its trace"
    return layers


def demo_unit(case, threshold, variant, lanes):
    if variant == Variant.SDSA4:
        threshold = (threshold,)
    return SDSA(variant=variant, tokens=case.tokens, head_width=case.head_width,
                heads=case.heads, lanes=lanes, threshold=threshold)


def describe(layer, case, traced, threshold):
    rates = [float(getattr(case, kind).mean()) for kind in "qkv"]
    return (f"{layer}: N={case.tokens} d={case.head_width} heads={case.heads} threshold "
            f"{threshold}, Q/K/V firing {rates[0]:.3f}/{rates[1]:.3f}/{rates[2]:.3f}, "
            f"output firing {float(traced.mean()):.3f}")


# make test runs the same cases on the unit's Verilog (below); Amaranth's simulator in test-all
@pytest.mark.slow
def test_demo_layers_in_amaranth(demo_attention_layers):
    for layer, (case, traced, threshold, variant) in demo_attention_layers.items():
        print(describe(layer, case, traced, threshold))
        # The integer golden functions and the integer model's trace agree on these spikes...
        reference = expected_spikes(case, variant, (threshold,))
        message = first_difference(reference, traced, f"{layer} intops vs trace")
        assert message is None, message
        # ... and the unit reproduces the trace, with stalls on both sides.
        got, _ = simulate_sdsa(demo_unit(case, threshold, variant, case.head_width), case,
                               send_pattern=PAUSE, receive_pattern=SPARSE)
        message = first_difference(got, traced, f"{layer} RTL vs integer-model trace")
        assert message is None, message


@pytest.mark.verilator
def test_demo_layers_on_verilator(tmp_path, demo_attention_layers):
    for layer, (case, traced, threshold, variant) in demo_attention_layers.items():
        print(describe(layer, case, traced, threshold))
        dut = demo_unit(case, threshold, variant, 4)  # the design test_sdsa_verilator builds
        assert np.array_equal(expected_spikes(case, variant, (threshold,)), traced)
        # The cocotb bench checks against the integer golden SDSA, equal to the trace above.
        run_point(tmp_path, dut, {"real": (case, ALWAYS, ALWAYS),
                                  "real_stalls": (case, PAUSE, SPARSE)},
                  f"demo_{layer.replace('.', '_')}")
