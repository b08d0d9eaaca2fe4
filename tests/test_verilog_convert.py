"""``hw.verilog.fast_memory_init``: Amaranth's RTLIL (and Verilog) of memories of every kind is
byte-identical with and without it, and the library is left as it was."""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Value, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw.verilog import fast_memory_init

_RNG = random.Random(5)
PIXEL = data.StructLayout({"a": signed(3), "b": 4})

# (shape, depth, init): unsigned and signed rows (negative ones), one bit, one row, rows wider
# than a machine word, all zero, a layout's rows, fewer init rows than words
MEMORIES = [
    (8, 37, [_RNG.randrange(256) for _ in range(37)]),
    (signed(5), 16, [_RNG.randrange(-16, 16) for _ in range(16)]),
    (1, 1, [1]),
    (70, 3, [(1 << 69) | 12345, 0, (1 << 70) - 1]),
    (12, 64, []),
    (PIXEL, 4, [{"a": -3, "b": 9}, {"a": 2, "b": 0}, {"a": -1, "b": 15}, {"a": 0, "b": 1}]),
    (16, 10, [0xBEEF, 0x1234]),
]


class Memories(wiring.Component):
    """One read port per memory of :data:`MEMORIES`, all at one address."""

    addr: In(6)
    out: Out(8 + 5 + 1 + 70 + 12 + 7 + 16)

    def elaborate(self, platform):
        m = Module()
        outs = []
        for index, (shape, depth, init) in enumerate(MEMORIES):
            mem = memory.Memory(shape=shape, depth=depth, init=init)
            m.submodules[f"mem{index}"] = mem
            port = mem.read_port(domain="comb")
            m.d.comb += port.addr.eq(self.addr)
            outs.append(Value.cast(port.data))
        m.d.comb += self.out.eq(Cat(*outs))
        return m


def test_rtlil_is_byte_identical():
    plain = rtlil.convert(Memories(), name="memories", emit_src=False)
    with fast_memory_init():
        fast = rtlil.convert(Memories(), name="memories", emit_src=False)
    assert "$meminit_v2" in plain and plain.count("$meminit_v2") == len(MEMORIES)
    assert fast == plain


def test_the_library_is_restored_even_after_an_error():
    original = rtlil.ModuleEmitter.emit_memory
    with pytest.raises(ZeroDivisionError):
        with fast_memory_init():
            assert rtlil.ModuleEmitter.emit_memory is not original
            raise ZeroDivisionError
    assert rtlil.ModuleEmitter.emit_memory is original
