"""Amaranth's Verilog, made to mean the same in Verilog-2005 and SystemVerilog simulators.

Amaranth converts a design through Yosys' ``write_verilog``, which emits every combinational
process as an ``always @*`` block. Such a block runs only when one of the signals it reads
changes, so one whose inputs never change would never run and its outputs would stay ``x``.
Yosys works around this with one trigger register per module, declared with an initialiser and
read (for nothing) at the top of every ``always @*`` block::

    reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
    always @* begin
      if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
      ...

Under Verilog-2005 (IEEE 1364) a declaration initialiser is an ``initial`` assignment: the
register goes from ``x`` to 0 at time 0 and wakes every block. Under SystemVerilog (IEEE 1800,
6.8) the initial value is set *before* any process starts, without an event, so no block wakes at
time 0. Icarus Verilog follows the standard (``iverilog -g2005`` runs the blocks, ``-g2012`` does
not), and cocotb's Icarus runner compiles with ``-g2012``: every combinational signal whose inputs
did not change after time 0 stayed ``x`` until one did. In the SDSA-3 unit the Q memory's read
address came from such a block and stayed ``x`` until the Q pass, so Q row 0 was read as ``x``,
the addressing unit's handshake became ``x`` and the unit stopped for good (``docs/simulators.md``
traces it). Verilator is two-state and evaluates every block at start-up, so it never saw this.

:func:`time_zero_safe` makes the trigger an explicit ``initial`` assignment, which is an event at
time 0 in both language modes. The trigger is read nowhere else, so nothing the design computes
changes (Verilator results are bit-identical); only the time-0 wake-up is now guaranteed. Yosys
writes a block of a single statement (for instance a part of a register that is assigned apart
from the rest) without ``begin`` and without reading the trigger; such a block is rewritten to read
it too (the shared network's stream-write stage had one: the shift address's group bits stayed
``x`` on Icarus until the first layer, and the run stopped).
``docs/simulators.md`` has the details.

:func:`fast_memory_init` speeds the conversion itself up. Amaranth 0.5 writes a memory's
initial contents into RTLIL one bit at a time, as a list of constant nets that it then joins
into one string: for the shared network's weight memory (6 Mbit on the ``odd`` test model) that
took 10-25 s of a 30 s conversion. Inside the context the same string is built from the rows
directly. The RTLIL, and so the Verilog, is byte-identical (``tests/test_verilog_convert.py``
compares the two on memories of every kind).
"""

from __future__ import annotations

import contextlib
import re

__all__ = ["time_zero_safe", "convert", "fast_memory_init"]

# The trigger's declaration: an escaped identifier (ends with a space) initialised to 0.
_TRIGGER = re.compile(
    r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +"
    r"= 0;$", re.MULTILINE)
_TRIGGER_USE = re.compile(r"if \(\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ \)")


# A combinational block of one statement, which Yosys writes without ``begin`` and without
# reading the trigger (e.g. a part of a register assigned apart from the rest of it).
_BARE_ALWAYS = re.compile(
    r"^(?P<indent>[ \t]*)always @\*\n(?P<inner>[ \t]+)(?P<statement>(?!begin\b)[^\n]*;)\n",
    re.MULTILINE)
_MODULE = re.compile(r"^module .*?^endmodule\b", re.MULTILINE | re.DOTALL)
_INITIAL_TRIGGER = re.compile(
    r"initial (?P<name>\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) ")
_HEADER_END = re.compile(r"^module [^;]*;\n", re.MULTILINE)


def _wake_bare_blocks(module: str) -> str:
    """Make every one-statement ``always @*`` block of ``module`` read the time-0 trigger (the
    module's own, or one declared for it), so that it runs at time 0 like the others."""
    if not _BARE_ALWAYS.search(module):
        return module
    found = _INITIAL_TRIGGER.search(module)
    if found:
        name = found["name"]
    else:
        name = "\\$auto$time_zero_safe$trigger"
        header = _HEADER_END.search(module)
        module = (module[:header.end()] + f"  reg {name} ;\n  initial {name}  = 1'h0;\n"
                  + module[header.end():])
    return _BARE_ALWAYS.sub(
        lambda m: (f"{m['indent']}always @* begin\n{m['inner']}if ({name} ) begin end\n"
                   f"{m['inner']}{m['statement']}\n{m['indent']}end\n"), module)


def time_zero_safe(text: str) -> str:
    """Return Verilog ``text`` with Yosys' time-0 trigger set by ``initial`` and read by every
    ``always @*`` block, one-statement blocks included (idempotent).

    Raises
    ------
    ValueError
        If ``text`` reads a trigger but declares none in the known form (a Yosys that emits it
        differently: the fix would silently not apply).
    """
    fixed, count = _TRIGGER.subn(
        lambda m: f"{m['indent']}reg {m['name']} ;\n{m['indent']}initial {m['name']}  = 1'h0;",
        text)
    if count == 0 and _TRIGGER_USE.search(text) and "initial \\$auto$verilog_backend" not in text:
        raise ValueError("the Verilog reads Yosys' always @* trigger but declares it in an "
                         "unknown form; hw.verilog.time_zero_safe needs updating")
    return _MODULE.sub(lambda m: _wake_bare_blocks(m.group(0)), fixed)


def _emit_memory_rows(self, cell_idx, cell):
    """``amaranth.back.rtlil.ModuleEmitter.emit_memory`` (Amaranth 0.5), the ``DATA`` constant
    written from the rows: ``WIDTH * WORDS`` bits, the last row's top bit first."""
    from amaranth.hdl import _nir  # noqa: PLC0415

    width, depth = cell.width, cell.depth
    mask = (1 << width) - 1
    bits = "".join(format(row & mask, f"0{width}b") for row in reversed(cell.init))
    self.builder.cell("$meminit_v2", ports={
        "ADDR": self.sigspec(),
        "DATA": f"{width * depth}'{bits}",
        "EN": self.sigspec(_nir.Value.ones(width)),
    }, parameters={
        "MEMID": self.memories[cell_idx].memid,
        "ABITS": 0,
        "WIDTH": width,
        "WORDS": depth,
        "PRIORITY": 0,
    }, src_loc=cell.src_loc)


@contextlib.contextmanager
def fast_memory_init():
    """Within the context, Amaranth's RTLIL back end (and so ``verilog.convert``) writes memory
    contents from whole rows instead of bit by bit; the output is byte-identical. Outside an
    Amaranth 0.5 that has the emitter this module knows, nothing changes."""
    from amaranth.back import rtlil  # noqa: PLC0415

    emitter = getattr(rtlil, "ModuleEmitter", None)
    original = getattr(emitter, "emit_memory", None)
    if original is None:
        yield
        return

    def emit_memory(self, cell_idx, cell):
        if not cell.width * cell.depth:
            return original(self, cell_idx, cell)
        return _emit_memory_rows(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original


def convert(component, name: str, **kwargs) -> str:
    """Return ``amaranth.back.verilog.convert(component, name=name, **kwargs)``, time-0 safe
    (converted inside :func:`fast_memory_init`)."""
    from amaranth.back import verilog  # noqa: PLC0415

    with fast_memory_init():
        return time_zero_safe(verilog.convert(component, name=name, **kwargs))
