"""rtl_gen: design-point validation, deterministic emission, Verilator -Wall lint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rtl_gen.config import ConfigError, load
from rtl_gen.emit import emit
from rtl_gen.lint import lint

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, values):
    path = tmp_path / "point.json"
    path.write_text(json.dumps(values))
    return path


@pytest.mark.parametrize("values, message", [
    ({"lanes": 0}, "field 'lanes' is 0; allowed: 1..256"),
    ({"lanes": "16"}, "field 'lanes' must be an integer"),
    ({"addressing_ports": 9, "lanes": 8}, "field 'addressing_ports' is 9; allowed: 1..8"),
    ({"sdsa_variant": 5}, "field 'sdsa_variant' is 5; allowed: 1, 2, 3, 4"),
    ({"units": ["lif", "alu"]}, "unknown unit(s) ['alu']"),
    ({"lanez": 4}, "unknown field(s) ['lanez']"),
    ({"weight_bits": 1}, "field 'weight_bits' is 1; allowed: 2..16"),
    ({"name": "a b"}, "field 'name' must be"),
    ({"schedule": "row"}, "field 'schedule' is 'row'; allowed: 'time', 'layer'"),
    ({"parameters": "rom"}, "field 'parameters' is 'rom'; allowed: 'internal', 'external'"),
    ({"fold": 3}, "field 'fold' is 3 at lanes 16; allowed: a power of two up to lanes"),
    ({"fold": 32}, "field 'fold' is 32; allowed: 1..16"),
    ({"fold": 2, "lanes": 24}, "field 'fold' is 2 at lanes 24"),
    ({"fold": 2, "weights": "axi"}, "field 'fold' is 2 but 'weights' is 'axi'"),
    ({"parameters": "external", "weights": "axi"},
     "field 'parameters' is 'external' but 'weights' is 'axi'"),
    ({"parameters": "external", "units": ["shared_network", "network_core"]},
     "the unit 'network_core' does not support"),
    ({"input_buffer": 1}, "field 'input_buffer' is 1; allowed: 0 (none) or 2..64"),
    ({"input_buffer": 65}, "field 'input_buffer' is 65; allowed: 0..64"),
    ({"bias_memory": "lut"}, "field 'bias_memory' is 'lut'; allowed: 'logic', 'block'"),
    ({"bias_memory": "block", "parameters": "external"},
     "field 'bias_memory' is 'block' but 'parameters' is 'external'"),
    ({"threshold_memory": "block"},
     "field 'threshold_memory' is 'block'; allowed: 'auto', 'logic'"),
    ({"threshold_memory": "logic", "parameters": "external"},
     "field 'threshold_memory' is 'logic' but 'parameters' is 'external'"),
])
def test_bad_fields_are_named(tmp_path, values, message):
    path = write(tmp_path, values)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{lanes: 3")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load(tmp_path / "bad.json")


def test_shipped_default_is_valid():
    point = load(ROOT / "rtl_gen" / "configs" / "default.json")
    assert point.lanes == 16


@pytest.mark.parametrize("path", sorted((ROOT / "rtl_gen" / "configs").glob("*.json")),
                         ids=lambda p: p.stem)
def test_every_shipped_design_point_loads(path):
    """Each design point under rtl_gen/configs/ is valid (``dse*.json`` are sweeps, read by
    ``rtl_gen.dse``), and its checkpoint exists."""
    if path.stem.startswith("dse"):
        from rtl_gen.dse import load_sweep
        sweep = load_sweep(path)
        if path.stem == "dse-fold":   # column folding swept: the points differ in fold alone
            assert [p["fold"] for p in sweep.points] == [1, 4]
        if path.stem == "dse-85k":    # lanes swept on the 85k, the biases in block RAM
            assert [p["lanes"] for p in sweep.points] == [16, 24, 32]
            assert {(p["device"], p["bias_memory"]) for p in sweep.points} == {
                ("ecp5-85k-6", "block")}
        if path.stem == "dse-buffer":   # the engine's input buffer at 16 and 32 lanes
            assert sorted((p["lanes"], p["input_buffer"]) for p in sweep.points) == [
                (16, 0), (16, 8), (32, 0), (32, 8)]
        if path.stem == "dse-16-fold-buffer":   # folding and the buffer together, 16 lanes
            assert [(p["lanes"], p["fold"], p["input_buffer"], p["device"])
                    for p in sweep.points] == [(16, 4, 8, "ecp5-85k-6")]
        return
    point = load(path)
    assert point.checkpoint is None or Path(point.checkpoint).is_file(), point.checkpoint


def test_shipped_85k_point_is_32_lanes_with_weights_outside():
    """The ECP5-85k design point placed for issue 17's throughput goal (docs/shared-network.md,
    "On the ECP5-85k"): 32 lanes, the weights behind the bare port."""
    point = load(ROOT / "rtl_gen" / "configs" / "ecp5-85k-32.json")
    assert (point.lanes, point.weights, point.units) == (32, "external", ("shared_network",))
    assert point.bias_memory == "block"   # the bias read off the critical path (docs/perf.md)


def test_shipped_t4_point_is_the_layer_schedule_with_every_parameter_outside():
    """The demo at T=4 on the ECP5-25k (docs/shared-network.md, "On the ECP5-25k"): the layer
    schedule, weights, biases and thresholds behind ports."""
    point = load(ROOT / "rtl_gen" / "configs" / "ecp5-25k-t4.json")
    assert (point.time_steps, point.schedule, point.weights, point.parameters) == (
        4, "layer", "external", "external")
    assert point.as_dict()["parameters"] == "external"
    assert "parameters" not in load(ROOT / "rtl_gen" / "configs" / "default.json").as_dict()


def test_cli_reports_bad_config_without_traceback(tmp_path):
    path = write(tmp_path, {"lanes": -1})
    result = subprocess.run([sys.executable, "-m", "rtl_gen", "--config", str(path),
                             "--out", str(tmp_path / "rtl")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "field 'lanes' is -1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rtl").exists()


UNIT_POINT = dict(units=("lif", "addressing", "sdsa"), lanes=4, lif_input_width=9,
                  spike_word_bits=12, addressing_ports=2, tokens=3, head_width=5)


def test_emission_is_byte_identical(tmp_path):
    point = load(None, **UNIT_POINT)
    first = emit(point, tmp_path / "a")
    second = emit(point, tmp_path / "b")
    assert first == second
    for unit in first["units"]:
        a = (tmp_path / "a" / unit["file"]).read_bytes()
        assert a == (tmp_path / "b" / unit["file"]).read_bytes()
        assert b"/work/" not in a and b"src =" not in a  # no absolute paths, no source locations
    assert (tmp_path / "a" / "manifest.json").read_bytes() == \
        (tmp_path / "b" / "manifest.json").read_bytes()


def test_manifest_lists_ports_and_parameters(tmp_path):
    manifest = emit(load(None, **UNIT_POINT), tmp_path / "rtl")
    lif = next(u for u in manifest["units"] if u["name"] == "lif")
    assert lif["parameters"] == {"lanes": 4, "input_width": 9}
    ports = {p["name"]: p for p in lif["ports"]}
    assert ports["i__valid"] == {"name": "i__valid", "direction": "input", "width": 1}
    assert ports["o__payload"]["direction"] == "output"
    assert lif["latency"] == 1


@pytest.mark.parametrize("unit", ["lif", "addressing", "sdsa"])
def test_lint_wall_clean(tmp_path, unit):
    manifest = emit(load(None, **dict(UNIT_POINT, units=(unit,))), tmp_path / "rtl")
    result = lint([tmp_path / "rtl" / manifest["units"][0]["file"]], unit)
    assert result.ok, result.messages


def test_lint_catches_an_undriven_signal(tmp_path):
    source = tmp_path / "bad.v"
    source.write_text("module bad(input clk, output y);\n"
                      "  wire forgotten;\n  assign y = clk & forgotten;\nendmodule\n")
    result = lint([source], "bad")
    assert not result.ok
    assert "UNDRIVEN" in result.messages and "forgotten" in result.messages


def test_network_unit_needs_a_checkpoint(tmp_path):
    path = write(tmp_path, {"units": ["shared_network"], "checkpoint": None})
    with pytest.raises(ConfigError, match="unit 'shared_network' needs field 'checkpoint'"):
        load(path)


def test_the_retired_per_layer_unit_is_refused_with_its_reason(tmp_path):
    path = write(tmp_path, {"units": ["network"]})
    with pytest.raises(ConfigError, match="retired; use 'shared_network'"):
        load(path)


def test_cli_names_a_missing_checkpoint(tmp_path):
    path = write(tmp_path, {"units": ["shared_network"], "checkpoint": "nowhere/demo.pth"})
    result = subprocess.run([sys.executable, "-m", "rtl_gen", "--config", str(path),
                             "--out", str(tmp_path / "rtl")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "field 'checkpoint' names nowhere/demo.pth, which does not exist" in result.stderr


def test_cli_refuses_a_corrupt_checkpoint_without_output(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    path = write(tmp_path, {"units": ["shared_network"], "checkpoint": str(bad)})
    result = subprocess.run([sys.executable, "-m", "rtl_gen", "--config", str(path),
                             "--out", str(tmp_path / "rtl")], capture_output=True, text=True)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "rtl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rtl-")]  # no staging left


@pytest.mark.first
def test_shared_network_emits_lint_clean_with_its_weight_image(tmp_path):
    """The FPGA design point: shared network with its $readmemh weight image, byte-identical."""
    import hashlib

    point = load(ROOT / "rtl_gen" / "configs" / "default.json", units=("shared_network",))
    first = emit(point, tmp_path / "a")
    second = emit(point, tmp_path / "b")
    for name in ("shared_network.v", "shared_network_weights.hex", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    unit = first["units"][0]
    memory = unit["weight_memory"]
    image = (tmp_path / "a" / memory["file"]).read_bytes()
    assert hashlib.sha256(image).hexdigest() == memory["sha256"]
    lines = image.decode().splitlines()
    assert len(lines) == memory["words"]
    assert {p["name"] for p in unit["ports"]} >= {"weight_addr", "weight_en", "weight_data"}
    # The image is the packed memory the design reads (checked word by word in
    # tests/test_shared_network.py against the quantized weights).
    from hw.shared import SharedNetwork
    from rtl_gen.emit import quantized_network
    net = quantized_network(point.checkpoint, point.weight_bits, point.time_steps)
    words = SharedNetwork(net, lanes=point.lanes, weights="external").weight_words
    assert [int(line, 16) for line in lines] == words
    assert max(len(line) for line in lines) * 4 <= memory["width"] + 3
    result = lint([tmp_path / "a" / "shared_network.v"], "shared_network")
    assert result.ok, result.messages
    assert unit["memory_images"] == "shared_network_images/manifest.json"
    from quant.images import load_images
    arrays, _ = load_images(str(tmp_path / "a" / "shared_network_images"))
    assert arrays  # the loader verified every checksum


# make test's budget: make test-all (tests/test_shared_network.py checks in make test that
# the design has no parameter memory inside; the slow co-simulations read these images)
@pytest.mark.slow
def test_external_parameters_are_emitted_as_images(tmp_path):
    """``"parameters": "external"``: the biases and thresholds leave the Verilog for
    ``$readmemh`` images beside it, listed in the manifest with their checksums, ports and
    widths; the images hold the memories' words (the co-simulation reads the same images:
    tests/test_shared_envelope.py)."""
    import hashlib

    from hw.shared import SharedNetwork
    from rtl_gen.emit import quantized_network

    point = load(ROOT / "rtl_gen" / "configs" / "default.json", units=("shared_network",),
                 parameters="external")
    unit = emit(point, tmp_path / "a")["units"][0]
    ports = {p["name"]: p for p in unit["ports"]}
    net = quantized_network(point.checkpoint, point.weight_bits, point.time_steps)
    dut = SharedNetwork(net, lanes=point.lanes, weights="external", parameters="external")
    for memory, port, words in (("biases", "bias", dut.bias_words),
                                ("thresholds", "threshold", dut.threshold_words)):
        entry = unit["parameter_memories"][memory]
        image = (tmp_path / "a" / entry["file"]).read_bytes()
        assert hashlib.sha256(image).hexdigest() == entry["sha256"]
        assert [int(line, 16) for line in image.decode().splitlines()] == words
        assert entry["words"] == len(words) and entry["width"] == ports[f"{port}_data"]["width"]
        assert {f"{port}_addr", f"{port}_en"} <= set(ports)
    assert unit["parameters"]["parameters"] == "external"
