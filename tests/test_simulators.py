"""The Verilog means the same on both simulators: the time-0 fix, simulator choice, waves."""

import subprocess

import pytest
from amaranth.back import verilog

from hw.lif import LIF
from hw.sdsa import SDSA
from hw.sdsa_common import Variant
from hw.verilog import time_zero_safe
from sim import toolchain

NEEDS_ICARUS = pytest.mark.skipif(not toolchain.icarus_available(),
                                  reason=toolchain.ICARUS_MISSING)

# The shape of Yosys' output: a combinational block that reads only a constant, woken at time 0
# by the module's trigger register.
YOSYS_SHAPE = """module top(o);
  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  output o;
  reg o;
  reg a = 1'h1;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    o = a;
  end
endmodule
module tb;
  wire o;
  top dut(.o(o));
  initial #1 $display("o=%b", o);
endmodule
"""


# Yosys writes a block of one statement (here a part of a register assigned apart from the rest)
# without ``begin`` and without reading the trigger; the second module has no trigger at all.
BARE_SHAPE = """module top(o, p);
  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  output [1:0] o;
  reg [1:0] o;
  output p;
  reg p;
  reg a = 1'h1;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    o[0] = a;
  end
  always @*
    o[1] = a;
  sub s(.p(p));
endmodule
module sub(p);
  output p;
  reg p;
  reg b = 1'h1;
  always @*
    p = b;
endmodule
module tb;
  wire [1:0] o;
  wire p;
  top dut(.o(o), .p(p));
  initial #1 $display("o=%b p=%b", o, p);
endmodule
"""


def test_time_zero_safe_wakes_one_statement_blocks():
    fixed = time_zero_safe(BARE_SHAPE)
    assert "always @*\n" not in fixed          # every block now has begin ... end
    assert fixed.count("initial \\$auto$time_zero_safe$trigger  = 1'h0;") == 1   # sub's own
    assert time_zero_safe(fixed) == fixed


@pytest.mark.icarus
@NEEDS_ICARUS
def test_one_statement_blocks_run_at_time_zero_on_icarus(tmp_path):
    """The shared network's hang on Icarus: a one-statement block stayed x until its input
    changed; rewritten, it runs at time 0."""
    outputs = {}
    for label, text in (("raw", BARE_SHAPE), ("fixed", time_zero_safe(BARE_SHAPE))):
        source = tmp_path / f"{label}.v"
        source.write_text(text)
        binary = tmp_path / f"{label}.vvp"
        subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(binary), str(source)],
                       check=True)
        run = subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True,
                             text=True)
        outputs[label] = run.stdout.strip().splitlines()[0]
    assert outputs["fixed"] == "o=11 p=1"
    assert outputs["raw"] != outputs["fixed"]    # (raw: o=xx p=x, the -g2012 hazard)


def test_time_zero_safe_rewrites_every_module_trigger():
    dut = SDSA(variant=Variant.SDSA3, tokens=4, head_width=16, heads=2, lanes=4)
    raw = verilog.convert(dut, name="sdsa", emit_src=False)
    fixed = time_zero_safe(raw)
    modules = raw.count("\nmodule ") + raw.startswith("module ")
    assert modules >= 2  # the unit and its addressing submodule
    assert fixed.count("initial \\$auto$verilog_backend") == modules
    assert "dump_module$1  = 0;" not in fixed
    assert time_zero_safe(fixed) == fixed
    # Nothing but the trigger's declaration changed.
    assert len(fixed.splitlines()) == len(raw.splitlines()) + modules


def test_rtl_gen_emits_time_zero_safe_verilog(tmp_path):
    from rtl_gen.config import load  # noqa: PLC0415
    from rtl_gen.emit import emit  # noqa: PLC0415

    manifest = emit(load(None, units=("lif", "sdsa"), lanes=4, tokens=3, head_width=5),
                    tmp_path / "rtl")
    for unit in manifest["units"]:
        text = (tmp_path / "rtl" / unit["file"]).read_text()
        assert "initial \\$auto$verilog_backend" in text
        assert time_zero_safe(text) == text


def test_time_zero_safe_refuses_an_unknown_trigger_form():
    text = YOSYS_SHAPE.replace(" = 0;", " = 1'b0;", 1)
    with pytest.raises(ValueError, match="unknown form"):
        time_zero_safe(text)


@pytest.mark.icarus
@NEEDS_ICARUS
@pytest.mark.parametrize("generation", ["-g2005", "-g2012"])
def test_trigger_wakes_always_blocks_on_icarus(tmp_path, generation):
    """Root cause: under -g2012 Yosys' trigger does not fire; the fixed text works in both."""
    outputs = {}
    for label, text in (("raw", YOSYS_SHAPE), ("fixed", time_zero_safe(YOSYS_SHAPE))):
        source = tmp_path / f"{label}.v"
        source.write_text(text)
        binary = tmp_path / f"{label}.vvp"
        subprocess.run(["iverilog", generation, "-s", "tb", "-o", str(binary), str(source)],
                       check=True)
        run = subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True,
                             text=True)
        outputs[label] = run.stdout.strip().splitlines()[0]
    assert outputs["fixed"] == "o=1"
    assert outputs["raw"] == ("o=1" if generation == "-g2005" else "o=x")


def test_simulator_selection(monkeypatch):
    monkeypatch.delenv("SIM", raising=False)
    assert toolchain.selected_simulator() == "verilator"
    monkeypatch.setenv("SIM", "icarus")
    assert toolchain.selected_simulator() == "icarus"
    assert toolchain.selected_simulator("verilator") == "verilator"
    monkeypatch.setenv("SIM", "questa")
    with pytest.raises(toolchain.ToolchainError, match="unknown simulator"):
        toolchain.selected_simulator()
    monkeypatch.setenv("WAVES", "1")
    assert toolchain.waves_requested()
    assert not toolchain.waves_requested(False)
    monkeypatch.setenv("WAVES", "0")
    assert not toolchain.waves_requested()


def _lif_with_waves(simulator, monkeypatch):
    monkeypatch.setenv("WAVES", "1")  # the environment switch, as `make sim WAVES=1` sets it
    dut = LIF(lanes=1, input_width=4, threshold=3)
    design = toolchain.build(verilog.convert(dut, name="lif", emit_src=False), "lif",
                             simulator=simulator)
    assert design.waves and design.simulator == simulator
    assert design.build_dir.parent.name == simulator
    assert design.build_dir.name.startswith("lif-waves-")
    trace = design.build_dir / "waves_check.fst"
    trace.unlink(missing_ok=True)
    toolchain.run(design, "sim.tb.lif", name="waves_check", extra_env={
        "LIF_LANES": "1", "LIF_INPUT_WIDTH": "4",
        "LIF_MEMBRANE_WIDTH": str(dut.membrane_width), "LIF_THRESHOLDS": "3"})
    assert trace.stat().st_size > 0
    assert trace.read_bytes()[:1] != b"$"  # FST is binary, a VCD starts with "$date"/"$version"


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.skipif(not __import__("os").path.exists("/usr/include/lz4.h"),
                    reason="Verilator's FST writer needs lz4.h: apt-get install liblz4-dev")
def test_waves_on_verilator(monkeypatch):
    _lif_with_waves("verilator", monkeypatch)


@pytest.mark.slow
@pytest.mark.icarus
@NEEDS_ICARUS
def test_waves_on_icarus(monkeypatch):
    _lif_with_waves("icarus", monkeypatch)


def _rom_verilog(words):
    """A Yosys-written module ``rom`` with ``words`` as a memory's initial contents, read
    asynchronously at ``addr``."""
    from amaranth import Module, unsigned
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class Rom(wiring.Component):
        addr: In(range(len(words)))
        data: Out(16)

        def elaborate(self, platform):
            m = Module()
            m.submodules.table = table = Memory(shape=unsigned(16), depth=len(words), init=words)
            read = table.read_port(domain="comb")
            m.d.comb += [read.addr.eq(self.addr), self.data.eq(read.data)]
            return m

    return verilog.convert(Rom(), name="rom", emit_src=False)


def test_memory_images_move_large_initialisations_only(tmp_path):
    """A memory of at least IMAGE_MIN_WORDS words becomes one ``$readmemh`` of an image holding
    its words in order; a small one, and a block that is not words 0, 1, 2, ... of one memory,
    stay as they are."""
    words = [(n * 7919) % 65536 for n in range(toolchain.IMAGE_MIN_WORDS + 36)]
    text = _rom_verilog(words)
    assert text.count("] = 16'h") == len(words)     # Yosys' shape: one assignment per word
    moved, images = toolchain.memory_images(text, tmp_path)
    assert list(images) == ["memory_0.hex"]
    assert [int(line, 16) for line in images["memory_0.hex"].split()] == words
    assert "] = 16'h" not in moved
    assert moved.count(f'$readmemh("{(tmp_path / "memory_0.hex").as_posix()}", ') == 1
    assert f", 0, {len(words) - 1});" in moved      # first and last address: no standard's doubt
    small = _rom_verilog(words[:toolchain.IMAGE_MIN_WORDS - 1])
    assert toolchain.memory_images(small, tmp_path) == (small, {})
    swapped = text.replace("[0] = 16'h", "[1] = 16'h", 1)   # words 1, 1, 2, ...: left alone
    assert toolchain.memory_images(swapped, tmp_path) == (swapped, {})


@pytest.mark.icarus
@NEEDS_ICARUS
def test_memory_images_read_the_same_words_on_icarus(tmp_path):
    """The moved memory reads the same words at time 1 as the Yosys-written one."""
    words = [(n * 40503) % 65536 for n in range(toolchain.IMAGE_MIN_WORDS + 5)]
    text = _rom_verilog(words)
    bench = ("module tb; reg [6:0] a = 0; wire [15:0] d; rom dut(.addr(a), .data(d));\n"
             "integer i; initial begin #1; for (i = 0; i < %d; i = i + 1) begin a = i; #1 "
             "$display(\"%%h\", d); end end endmodule\n" % len(words))
    outputs = {}
    for label, source_text in (("inline", text),
                               ("image", toolchain.memory_images(text, tmp_path)[0])):
        if label == "image":
            for file, image in toolchain.memory_images(text, tmp_path)[1].items():
                (tmp_path / file).write_text(image)
        source = tmp_path / f"{label}.v"
        source.write_text(time_zero_safe(source_text) + bench)
        binary = tmp_path / f"{label}.vvp"
        subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(binary), str(source)],
                       check=True)
        run = subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True,
                             text=True)
        assert "WARNING" not in run.stdout, run.stdout
        outputs[label] = [int(line, 16) for line in run.stdout.split()]
    assert outputs["inline"] == words
    assert outputs["image"] == words
