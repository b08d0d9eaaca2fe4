"""Network program: every layer and LIF of the integer model appears once, map shapes agree."""

import pytest
import torch

from hw.program import Program, Sink, SinkKind, StepKind
from hw.shared import SharedNetwork
from quant.intmodel import IntegerModel
from sim.e2e import demo_model, quantized

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=[1, 2])
def demo(request):
    model, _ = demo_model(request.param, "random", seed=0)
    return quantized(model)


def test_program_covers_every_layer_and_lif_once(demo):
    steps = Program(demo).steps
    layers = [s.layer for s in steps if s.kind in (StepKind.STEM, StepKind.LAYER)]
    assert layers == list(demo.layers), "layers out of order or missing"
    lifs = [s.sink.spike_map for s in steps if s.sink.spike_map is not None]
    assert sorted(lifs) == sorted(demo.lifs), "LIFs missing or repeated"
    assert [s.kind for s in steps].count(StepKind.SDSA) == len(demo.attention)
    assert steps[0].first_step_only and not any(s.first_step_only for s in steps[1:])
    assert steps[-1].sink == Sink(SinkKind.LOGITS) and str(steps[-1].sink) == "logits"
    streams = {s.sink.stream for s in steps if s.sink.stream is not None}
    assert streams == set(demo.streams), "a stream is never written"


def test_spike_maps_match_the_trace_shapes(demo):
    dut = SharedNetwork(demo, lanes=16)
    model = IntegerModel(demo)
    codes = torch.randint(0, 256, (1, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    print("seed 3")
    _, trace = model.forward(codes, trace=True)
    for name, info in dut.maps.items():
        spikes = trace.spikes[name]
        per_step = spikes[0, 0].numel()
        assert per_step == info.channels * info.height * info.width, name
        assert spikes.shape[2] == info.channels, name
    # The SDSA writes its attention LIF's map: one token map of the attention block's width.
    for path, attn in demo.attention.items():
        info = dut.maps[f"{path}.attn_lif"]
        assert info.channels == attn.heads * attn.head_width
        assert info.side ** 2 == attn.tokens


def test_refuses_what_it_cannot_run():
    from golden.config import variant
    from golden.model import MetaSpikeFormer
    from quant.quantize import quantize_model

    torch.manual_seed(0)
    model = MetaSpikeFormer(variant("demo")).double().eval()
    net = quantize_model(model, 8, 8, (0.0, 255 / 16), fuse_sepconv=False)
    # SepConv unfused is recorded (tests/test_shared_unfused.py), but the depthwise engine runs
    # stride 1, same size only: a strided depthwise layer is refused by name
    import dataclasses

    from hw.plan import SharedPlan

    assert sum(step.depthwise is not None for step in Program(net).steps) == 3
    name = "ConvBlock1_1.0.Conv.dwconv"
    layers = dict(net.layers)
    layers[name] = dataclasses.replace(layers[name], stride=2)
    with pytest.raises(NotImplementedError, match=f"{name}: the depthwise engine runs stride 1"):
        SharedPlan(dataclasses.replace(net, layers=layers), 16, pack_weights=False)


def test_first_difference_names_earliest_time_step_then_layer():
    import numpy as np

    from sim.tb.network import first_difference

    order = ["a", "b"]
    want = {name: np.zeros((2, 3, 4), dtype=np.uint8) for name in order}
    got = {name: array.copy() for name, array in want.items()}
    assert first_difference(got, want, order) is None
    got["a"][1, 0, 0] = 1     # layer a, but at t=1
    got["b"][0, 2, 3] = 1     # a later layer at t=0 ran first
    got["b"][0, 1, 2] = 1
    assert first_difference(got, want, order) == (
        "first spike difference at t=0, layer b, channel 1, position 2: expected 0, got 1")


def test_step_and_sink_codes_are_distinct_and_fit_the_descriptor():
    """Every kind has its own code (an alias would turn BEGIN into ADD), and the codes a layer
    step puts in the descriptor's 2-bit ``sink`` field are the first four."""
    from amaranth.hdl import Shape

    for enum_type in (StepKind, SinkKind):
        values = [member.value for member in enum_type.__members__.values()]
        assert len(set(values)) == len(values), enum_type
    assert {k.value for k in (SinkKind.LIF, SinkKind.ADD, SinkKind.BEGIN, SinkKind.LOGITS)} \
        == set(range(4))
    assert max(k.value for k in StepKind) < 1 << Shape.cast(StepKind).width


def test_report_ideal_divides_a_folded_layer_by_its_fold(demo):
    """The e2e report's ideal cycles (``sim.e2e._sops``): a folded layer's are its unfolded
    ideal over its fold ``F`` (``F`` columns a cycle); unfolded layers and other steps keep
    theirs."""
    from sim.e2e import _sops

    model = IntegerModel(demo)
    codes = torch.randint(0, 256, (1, 1, 32, 32), generator=torch.Generator().manual_seed(5))
    _, trace = model.forward(codes, trace=True)
    plain, folded = SharedNetwork(demo, lanes=64), SharedNetwork(demo, lanes=64, fold=8)
    folds = []
    for a, b in zip(plain.steps, folded.steps):
        sops, ideal, _ = _sops(plain, demo, trace, a, 0, 0)
        sops_f, ideal_f, _ = _sops(folded, demo, trace, b, 0, 0)
        assert sops_f == sops
        place = folded.plan.memory.layers.get(a.layer) if a.kind is StepKind.LAYER else None
        fold = 1 << place.config.fold_log if place is not None else 1
        folds.append(fold)
        assert ideal_f == pytest.approx(ideal / fold), a.name
    assert max(folds) == 8 and min(folds) == 1   # the demo has folded and unfolded layers
