"""SepConv unfused in the shared network (``sepconv: "unfused"``): the depthwise engine, the
plane writer and the engine's 1x1 conv on the planes, as one layer step.

* Fast: the program records each ``dwconv -> pwconv2`` as one ``LAYER`` step through the
  depthwise engine; the plan places the depthwise layers one after another and sizes the planes
  from the proven range of the sums; the plan's 1x1 layer on the planes of the integer model's
  depthwise sums gives the integer model's ``pwconv2`` sums (a multiply-free path checked
  against quant's own); the descriptor routes exactly those steps (``is_dw``, ``dw_base``, the
  source map's channels for the reader); the design point field is checked.
* Slow (Verilator, ``make test-all``): the trained demo through ``python -m sim.e2e``, every
  block unfused (``--sepconv unfused``, one build for T=2 run for 1 and 2 time steps) and per
  block the faster form (``--sepconv auto``, one build for T=4 run for 1 and 4): logits and
  every spike map ``==`` the integer model's, the cycle model equal to the RTL's cycles.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from amaranth.hdl import Const, Shape
from amaranth.lib import data

from hw.descriptor import descriptor_fields, descriptor_rom
from hw.plan import SharedPlan
from hw.planes import plane_frame
from hw.program import StepKind
from quant.intmodel import IntegerModel
from quant.intops import conv2d_spikes
from sim.e2e import demo_model, quantized, select_inputs

torch.set_num_threads(1)
_CACHE = {}


def unfused(T: int = 1):
    """The trained demo quantized with SepConv unfused, its plan and a held-out digit's trace."""
    if T not in _CACHE:
        model, _ = demo_model(T)
        net = quantized(model, 8, "unfused")
        integer = IntegerModel(net)
        images = select_inputs(net, 1).images
        trace = integer.forward(integer.quantize_input(images), trace=True)[1]
        _CACHE[T] = net, SharedPlan(net, 16), trace
    return _CACHE[T]


def test_each_sepconv_is_one_step_through_the_depthwise_engine():
    net, plan, _ = unfused()
    steps = [s for s in plan.steps if s.depthwise is not None]
    assert [s.layer for s in steps] == [n for n in net.layers if n.endswith(".Conv.pwconv2")]
    for step in steps:
        block = step.layer.removesuffix(".pwconv2")
        assert step.kind is StepKind.LAYER
        assert step.depthwise == f"{block}.dwconv" and step.source == f"{block}.lif2"
    # no step runs a depthwise layer by itself, and the fused demo has no such step
    assert not any(s.layer and s.layer.endswith(".dwconv") for s in plan.steps)
    fused = SharedPlan(quantized(demo_model(1)[0]), 16, pack_weights=False)
    assert not fused.depthwise and not any(s.depthwise for s in fused.steps)
    assert fused.planes == 0 and fused.dw_weight is None and fused.dw_lanes == 0
    assert "max_planes" not in fused.engine_limits       # no shifter built
    assert unfused()[1].engine_limits["max_planes"] == unfused()[1].planes


def test_the_depthwise_layers_sit_one_after_another_and_the_planes_hold_every_sum():
    net, plan, trace = unfused()
    base = 0
    for name, place in plan.depthwise.items():
        layer = net.layers[name]
        weight = np.asarray(layer.weight)[:, 0]
        assert place.base == base and place.channels == weight.shape[0]
        assert np.array_equal(plan.dw_weight[base:base + place.channels], weight)
        assert np.array_equal(plan.dw_bias[base:base + place.channels],
                              np.asarray(layer.bias).reshape(-1))
        base += place.channels
        # the planes hold the proven range, and the sums of a real digit are inside it
        bound = max(abs(int(np.min(layer.acc_low))), abs(int(np.max(layer.acc_high))))
        assert bound < 1 << plan.planes
        sums = np.abs(np.asarray(trace.accumulators[name]))
        assert sums.max() < 1 << plan.planes
    assert base == len(plan.dw_bias)
    # the depthwise engine's lanes: 8 banks a 7x7 kernel row, up to 8 rows (more would idle)
    assert plan.dw_lanes == 16
    assert [SharedPlan(net, lanes, pack_weights=False).dw_lanes for lanes in (8, 24, 128)] == \
        [8, 16, 64]
    assert max(max(abs(int(np.min(net.layers[n].acc_low))), int(np.max(net.layers[n].acc_high)))
               for n in plan.depthwise).bit_length() == plan.planes


def test_the_planes_layer_gives_the_integer_models_pointwise_sums():
    """The engine layer of an unfused step (its weights: ``pwconv2``'s shifted and signed per
    plane) on the planes of the integer model's depthwise sums equals the integer model's
    ``pwconv2`` output, which quant computes with multiplies."""
    net, plan, trace = unfused()
    for step in (s for s in plan.steps if s.depthwise is not None):
        place = plan.memory.layers[step.layer]
        config = place.config
        sums = np.asarray(trace.accumulators[step.depthwise])[0, 0]
        assert config.in_channels == 2 * plan.planes * len(sums)
        assert config.planes == plan.planes and config.weight_channels == 2 * len(sums)
        assert config.kernel == 1 and config.height == sums.shape[-1]
        # the weight memory holds one weight per (channel, sign); the engine shifts it by the
        # plane's bit: input channel c * P + p adds weight[:, c] << p
        assert place.weight.shape[1] == 2 * len(sums)
        shifted = np.repeat(place.weight, plan.planes, axis=1) << np.tile(
            np.arange(plan.planes), 2 * len(sums))[None, :, None, None]
        got = conv2d_spikes(plane_frame(sums, plan.planes), shifted, place.bias)
        want = np.asarray(trace.accumulators[step.layer])[0, 0]
        assert np.array_equal(got, want), step.layer


def test_the_cycle_model_says_where_it_is_only_a_bound():
    """The unfused step's prediction assumes the depthwise engine keeps ahead of the plane
    writer. On the demo's digit it does (no step flagged); with every spike of a 16x16 map set
    it cannot (16 rows of 16 spikes at 4 cycles each against 352 words a channel), and the step
    is named in ``CycleModel.inexact``."""
    import copy

    from sim.perf import CycleModel

    net, plan, trace = unfused()
    model = CycleModel(plan)
    model.predict(trace, 0)
    assert model.inexact == set()
    dense = copy.copy(trace)
    dense.spikes = dict(trace.spikes)
    lif = "ConvBlock1_1.0.Conv.lif2"
    dense.spikes[lif] = torch.ones_like(trace.spikes[lif])
    model = CycleModel(plan)
    model.predict(dense, 0)
    assert model.inexact == {"ConvBlock1_1.0.Conv.pwconv2"}


def test_the_descriptor_routes_the_unfused_steps_alone():
    net, plan, _ = unfused()
    engine = data.StructLayout({"x": 1})
    layout = data.StructLayout({name: shape for name, shape in
                                descriptor_fields(plan, engine).items()
                                if name in ("is_dw", "dw_base", "src_channels", "kind")})
    rom = descriptor_rom(plan, layout, lambda layer: 0)
    k_bits = Shape.cast(range(len(plan.steps) + 1)).width
    routed = {}
    for address, word in rom.items():
        view = layout.from_bits(word)
        step = plan.steps[address & ((1 << k_bits) - 1)]
        fields = {name: Const.cast(view[name]).value for name, _ in layout}
        if fields["is_dw"]:
            routed[step.name] = fields
            assert fields["dw_base"] == plan.depthwise[step.depthwise].base
            assert fields["src_channels"] == plan.memory.maps[step.source].channels
        else:
            assert step.depthwise is None
    assert set(routed) == {s.name for s in plan.steps if s.depthwise is not None}


def test_blocks_mix_fused_and_unfused():
    """``fuse_sepconv`` naming blocks: those fused, the others through the depthwise engine;
    a name that is not a SepConv block is refused by name."""
    model, _ = demo_model(1)
    net = quantized(model, 8, ("ConvBlock1_2.0", "ConvBlock2_1.0"))
    plan = SharedPlan(net, 16, pack_weights=False)
    assert [s.depthwise for s in plan.steps if s.depthwise] == ["ConvBlock1_1.0.Conv.dwconv"]
    assert list(plan.depthwise) == ["ConvBlock1_1.0.Conv.dwconv"]
    with pytest.raises(ValueError, match=r"fuse_sepconv names \['block3.0'\], not blocks "
                                         r"with a SepConv"):
        quantized(model, 8, ("block3.0",))


def test_auto_takes_the_faster_form_per_block():
    """``sepconv: "auto"`` (:func:`sim.sepconv.choose`): per block, the form with fewer
    cycles by the cycle model, whose numbers for both forms it reports; on the trained demo
    at T=4 the first block (16x16 maps, where the fused 7x7 costs most) goes unfused."""
    from sim.sepconv import choose

    model, _ = demo_model(4)
    choice = choose(model, 16, images=2)
    assert [row["block"] for row in choice["blocks"]] == ["ConvBlock1_1.0", "ConvBlock1_2.0",
                                                          "ConvBlock2_1.0"]
    assert choice["fused"] == tuple(row["block"] for row in choice["blocks"]
                                    if row["fused_cycles"] <= row["unfused_cycles"])
    first = choice["blocks"][0]
    assert first["unfused_cycles"] < first["fused_cycles"]
    assert "ConvBlock1_1.0" not in choice["fused"] and choice["fused"]


def test_the_design_point_field():
    from rtl_gen.config import ConfigError, DesignPoint

    point = DesignPoint(sepconv="unfused").validated()
    assert point.as_dict()["sepconv"] == "unfused"
    assert "sepconv" not in DesignPoint().validated().as_dict()
    with pytest.raises(ConfigError, match="field 'sepconv' is 'both'; allowed: 'fused', "
                                          "'unfused', 'auto'"):
        DesignPoint(sepconv="both").validated()
    with pytest.raises(ConfigError, match="field 'sepconv' is 'auto' but 'weights' is 'axi'"):
        DesignPoint(sepconv="auto", weights="axi").validated()
    with pytest.raises(ConfigError, match="field 'sepconv' is 'unfused' but 'fold' is 4"):
        DesignPoint(sepconv="unfused", fold=4).validated()
    from pathlib import Path

    from rtl_gen.config import load

    shipped = load(Path(__file__).parent.parent / "rtl_gen" / "configs" / "sepconv-auto.json")
    assert shipped.sepconv == "auto" and shipped.units == ("shared_network",)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("sepconv, T", [("unfused", 2), ("auto", 4)])
def test_the_demo_is_bit_exact_on_verilator(sepconv, T, tmp_path):
    run = subprocess.run([sys.executable, "-m", "sim.e2e", "--sepconv", sepconv, "--images",
                          "2", "--max-T", str(T), "--T", "1", str(T), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "MISMATCH" not in run.stdout
    for steps in (1, T):
        result = json.loads((tmp_path / f"results_T{steps}.json").read_text())
        assert len(result["images"]) == 2
        assert all(image["match"] for image in result["images"]), steps
        report = json.loads((tmp_path / f"report_T{steps}.json").read_text())
        assert report["sepconv"] == sepconv
        # the first block unfused either way (auto: the faster there at T=4), the others
        # unfused or as the choice found
        fused = report["sepconv_fused"]
        assert fused is False if sepconv == "unfused" else "ConvBlock1_1.0" not in fused
        for row in report["report"]:      # the cycle model, exact on every step
            assert row["cycles"] == row["predicted_cycles"], (steps, row["name"])
