"""cocotb test of the depthwise engine (``hw.depthwise.DepthwiseEngine``) against
``depthwise_reference``, on Verilator or Icarus.

The case comes from an ``.npz`` file named by ``DW_CASE`` (:func:`write_case`): the kernels, the
biases, the lanes, the build's largest map, and maps of any size up to it, run one after another
on the one build. ``DW_PATTERNS=1`` also idles the input and refuses the output in a fixed
pattern.
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from sim.tb.common import TB, StreamSink, StreamSource, start


def write_case(path, *, weight, bias, lanes, max_height, max_width, maps):
    """Write a case for :func:`test_maps`."""
    np.savez(path, weight=weight, bias=bias, lanes=lanes, max_height=max_height,
             max_width=max_width, count=len(maps),
             **{f"map{n}": spikes for n, spikes in enumerate(maps)})


def load_case(path):
    """The case's engine (for its layouts; not elaborated) and maps."""
    from hw.depthwise import DepthwiseEngine

    case = np.load(path)
    engine = DepthwiseEngine(case["weight"], case["bias"], lanes=int(case["lanes"]),
                             max_height=int(case["max_height"]),
                             max_width=int(case["max_width"]))
    return case, engine, [case[f"map{n}"] for n in range(int(case["count"]))]


@cocotb.test()
async def test_maps(dut):
    """Every map of the case, one after another on one build: each output beat ``==`` the
    reference, tiles in order, ``last`` on the final one."""
    from hw.depthwise import depthwise_reference

    case, engine, maps = load_case(os.environ["DW_CASE"])
    patterns = os.environ.get("DW_PATTERNS") == "1"
    rows, cols = engine.geometry
    tb = TB(dut)
    dut.start.value = 0
    source = StreamSource(dut, "i", dut.clk, (1, 1, 0, 1, 0) if patterns else (1,))
    sink = StreamSink(dut, "o", dut.clk, (1, 0, 0, 1) if patterns else (1,))
    await tb.reset()
    in_layout = engine.i.payload.shape()
    out_layout = engine.o.payload.shape()
    for number, spikes in enumerate(maps):
        channels, height, width = spikes.shape
        dut.config.value = engine.config_layout.const(
            engine.config_value(channels, height, width)).as_bits()
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        words = [in_layout.const({"bits": sum(int(b) << x for x, b in enumerate(row)),
                                  "last": 0}).as_bits() for channel in spikes for row in channel]
        tiles_y, tiles_x = -(-height // rows), -(-width // cols)
        sending = start(source.send(words))
        beats = await sink.receive(channels * tiles_y * tiles_x)
        await sending
        want = depthwise_reference(spikes, case["weight"][:channels], case["bias"][:channels])
        for index, bits in enumerate(beats):
            view = out_layout.from_bits(bits)
            c, rest = divmod(index, tiles_y * tiles_x)
            a, b = divmod(rest, tiles_x)
            place = (int(view.channel), int(view.row), int(view.col), int(view.last))
            assert place == (c, a, b, int(index == len(beats) - 1)), \
                f"map {number}, beat {index}: (channel, row, col, last) {place}"
            for lane in range(rows * cols):
                y, x = a * rows + lane // cols, b * cols + lane % cols
                expect = int(want[c, y, x]) if y < height and x < width else 0
                got = int(view.sums[lane])
                assert got == expect, (f"map {number}, channel {c}, pixel ({y}, {x}): expected "
                                       f"{expect}, got {got}")
        dut._log.info("map %d (%d x %d x %d): %d beats exact", number, channels, height, width,
                      len(beats))
