"""Mutation testing of the hardware generators: ``python -m tests.mutate`` (or ``make mutate``).

One mutant at a time, each hw/ source gets one operator or integer constant flipped, and the fast
tests that cover that file run against it. A mutant the tests fail on is *killed*; one that runs
past the per-mutant timeout (a simulation that no longer terminates) is *killed by timeout*; one
they pass on *survives*, and is printed with its file:line, the flip and the line's text. The
reviewed list ``EQUIVALENT`` below names the mutants that cannot change behaviour, each with a
one-line reason; they are counted separately and left out of the kill rate:

    kill rate = (killed + timeout) / (mutants - equivalent)

What is mutated (found with ``ast``, replaced by source position, so comments and strings are
never touched): binary operators ``+``/``-``, ``&``/``|``, ``<<``/``>>`` (also as ``+=`` etc.);
comparisons ``>=``/``>``, ``<``/``<=``, ``==``/``!=``; ``and``/``or``; decimal integer constants
n -> n+1 (``--both`` adds n -> n-1 down to 0; booleans are not integers here).

What is skipped: docstrings and every string (f-string expressions included); ``assert``
statements; ``raise`` statements; the condition of an ``if`` whose body only raises and calls of
``check*`` helpers (argument validation in constructors: it refuses bad parameters and does not
shape the circuit); type annotations; the ``+=`` of ``m.d.comb += ...`` / ``m.d.sync += ...``
(``-=`` there is no circuit, only an error, so it would inflate the kill rate).

The real files are never written: each worker copies the project (hw/ sim/ tests/ golden/ quant/
rtl_gen/ docs/ and pyproject.toml) to a temporary directory and runs pytest there, writing one mutant
at a time into its copy (restored in ``finally``), so Ctrl-C or a crash leaves the checkout as it
was, and ``--jobs N`` workers run side by side.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ["hw", "sim", "tests", "golden", "quant", "rtl_gen", "docs", "pyproject.toml"]

# hw file -> the fast tests that cover it, quickest first (pytest stops at the first failure).
# Amaranth-simulator tests only: a Verilator test rebuilds the design for every mutant.
TESTS: dict[str, list[str]] = {
    "hw/neuron.py": ["tests/test_lif.py", "tests/test_lif_array.py", "tests/test_lif_edges.py",
                     "tests/test_sdsa.py"],
    "hw/lif.py": ["tests/test_lif.py", "tests/test_lif_edges.py"],
    "hw/lif_array.py": ["tests/test_lif_array.py", "tests/test_lif_edges.py"],
    "hw/addressing.py": ["tests/test_addressing.py", "tests/test_addressing_edges.py"],
    "hw/progengine_config.py": ["tests/test_progengine_edges.py", "tests/test_progengine.py",
                                "tests/test_bands.py"],
    "hw/progengine.py": ["tests/test_progengine_edges.py", "tests/test_progengine.py",
                         "tests/test_bands.py",
                         # the input buffer's timing (its results are test_progengine's)
                         "tests/test_perf.py::test_engine_recurrence_with_an_input_buffer",
                         "tests/test_perf.py::test_an_input_buffer_hides_a_run_of_empty_channels",
                         "tests/test_perf.py::test_the_input_buffers_depth_sets_how_much_of_a_run_it_hides"],
    "hw/sdsa_common.py": ["tests/test_sdsa.py", "tests/test_sdsa_edges.py"],
    "hw/sdsa.py": ["tests/test_sdsa.py", "tests/test_sdsa_edges.py"],
    "hw/sdsa_matmul.py": ["tests/test_sdsa.py", "tests/test_sdsa_edges.py"],
    "hw/sdsa_column.py": ["tests/test_sdsa.py", "tests/test_sdsa_edges.py"],
    "hw/plan.py": ["tests/test_shared_plan.py", "tests/test_shared_network.py",
                   "tests/test_network.py", "tests/test_shared_sew.py",
                   "tests/test_shared_unfused.py"],
    "hw/program.py": ["tests/test_network.py", "tests/test_shared_plan.py",
                      "tests/test_shared_unfused.py"],
    "hw/shared.py": ["tests/test_shared_plan.py", "tests/test_shared_network.py"],
    "hw/descriptor.py": ["tests/test_shared_plan.py", "tests/test_shared_unfused.py"],
    "hw/sequencer.py": ["tests/test_sequencer.py"],
    "hw/mapreader.py": ["tests/test_mapreader.py"],
    "hw/mapwriter.py": ["tests/test_mapwriter.py"],
    "hw/residual.py": ["tests/test_residual.py"],
    "hw/stem.py": ["tests/test_stem.py"],
    "hw/control.py": ["tests/test_control.py"],
    "hw/weightfetch.py": ["tests/test_weightfetch.py"],
    "hw/axi_io.py": ["tests/test_axi_io.py"],
    "hw/rowreader.py": ["tests/test_rowreader.py", "tests/test_rowwriter.py",
                        "tests/test_bands.py"],
    "hw/rowwriter.py": ["tests/test_rowwriter.py"],
    "hw/bandlayer.py": ["tests/test_bandlayer.py", "tests/test_bandchain.py"],
    "hw/bandchain.py": ["tests/test_bandchain.py"],
    "hw/bandcore.py": ["tests/test_bandcore.py"],
    "hw/bandstream.py": ["tests/test_bandstream.py"],
    "hw/depthwise.py": ["tests/test_depthwise.py"],
    "hw/planes.py": ["tests/test_planes.py"],
    "hw/sepconv.py": ["tests/test_planes.py"],
}
# With --verilator, also these cocotb-on-Verilator tests (each mutant rebuilds its design: minutes
# per mutant; for the survivors of the fast tests, or hw/shared.py's elaborate(), which only the
# end-to-end network test runs).
VERILATOR_TESTS: dict[str, list[str]] = {
    "hw/neuron.py": ["tests/test_lif_verilator.py", "tests/test_lif_array_verilator.py"],
    "hw/lif.py": ["tests/test_lif_verilator.py"],
    "hw/lif_array.py": ["tests/test_lif_array_verilator.py"],
    "hw/addressing.py": ["tests/test_addressing_verilator.py"],
    "hw/progengine_config.py": ["tests/test_shared_network.py"],
    "hw/progengine.py": ["tests/test_shared_network.py"],
    "hw/sdsa_common.py": ["tests/test_sdsa_verilator.py"],
    "hw/sdsa.py": ["tests/test_sdsa_verilator.py"],
    "hw/sdsa_matmul.py": ["tests/test_sdsa_verilator.py"],
    "hw/sdsa_column.py": ["tests/test_sdsa_verilator.py"],
    "hw/plan.py": ["tests/test_shared_network.py"],
    "hw/program.py": ["tests/test_shared_network.py"],
    "hw/shared.py": ["tests/test_shared_network.py"],
    "hw/descriptor.py": ["tests/test_shared_network.py"],
    "hw/sequencer.py": ["tests/test_shared_network.py"],
    "hw/mapreader.py": ["tests/test_shared_network.py"],
    "hw/mapwriter.py": ["tests/test_shared_network.py"],
    "hw/residual.py": ["tests/test_shared_network.py"],
    "hw/stem.py": ["tests/test_shared_network.py"],
    "hw/control.py": ["tests/test_control.py"],
    "hw/weightfetch.py": ["tests/test_weightfetch.py"],
    "hw/axi_io.py": ["tests/test_control.py"],
}
# Functions whose mutants only the Verilator tests can judge (no fast test runs their circuit):
# left out of a run without --verilator, and counted as such.
VERILATOR_ONLY: dict[str, set[str]] = {
    "hw/shared.py": {"elaborate"},
}
DEFAULT_FILES = list(TESTS)
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow and not verilator",
               "-W", "ignore::pytest.PytestUnraisableExceptionWarning"]

# Reviewed equivalent mutants: (file, the line's stripped text, 1-based column in that text,
# "original -> mutant"[, enclosing function]) -> reason. Keys survive edits elsewhere in the file;
# an entry whose line changed is reported as stale. Without the function, a key covers every
# identical line of the file.
EQUIVALENT: dict[tuple, str] = {
    # hw/bandlayer.py
    ("hw/bandlayer.py", '"width": unsigned(bits_for(self._W + 1)),', 38, '1 -> 2'):
        'a field one bit wider holds the same widths',
    ("hw/bandlayer.py", '"groups": unsigned(bits_for(self._G + 1)),', 39, '1 -> 2'):
        'a field one bit wider holds the same group counts',
    ("hw/bandlayer.py", '"channels": unsigned(bits_for(self._G * self._lanes + 1))})),', 55, '1 -> 2'):
        'a field one bit wider holds the same channel counts',
    ("hw/bandlayer.py", 'weight_words = [0] * len(words)', 17, '0 -> 1'):
        "the weight RAM's initial words (weights='axi'): a load writes every word a band reads; the others are the engine's holes (taps kx, ky >= k, groups past the layer's), which no tap reaches",
    ("hw/bandlayer.py", 'self._thresholds += [int(t) for t in spec.thresholds] + [0] * padded', 58, '0 -> 1'):
        "the thresholds of a group's padding lanes (channels past the layer's): their spikes are never written (the assembler takes the layer's channels only)",
    ("hw/bandlayer.py", '"start": In(1),', 13, '1 -> 2'):
        "the assembler's start is driven from a one-bit pulse inside BandLayer: a wider port holds the same 0/1",
    ("hw/bandlayer.py", 'x = Signal(range(max(2, W)))', 22, '2 -> 3'):
        'a counter of 0 .. W - 1 in a wider register counts the same',
    ("hw/bandlayer.py", 'g = Signal(range(max(2, G)))', 22, '2 -> 3'):
        'a counter of 0 .. G - 1 in a wider register counts the same',
    ("hw/bandlayer.py", 'left = Signal(range(G * lanes + 1))   # channels still to give', 33, '1 -> 2'):
        'a countdown from channels in a wider register counts the same',
    ("hw/bandlayer.py", 'left = Signal(range(G * lanes + 1))   # channels still to give', 31, '+ -> -'):
        'the countdown to 1 is modular: channels truncated to the narrower register still reaches 1 after channels - 1 steps',
    ("hw/bandlayer.py", 'weight_width: int = 8, data_width: int = 64, address_width: int = 32,', 21, '8 -> 9'):
        "quant's 8-bit weights in 9-bit words: the same values",
    ("hw/bandlayer.py", 'input_width=max(2, self.accumulator_width),', 17, '2 -> 3'):
        "the accumulator width is at least the weights' 8 bits",
    ("hw/bandlayer.py", 'depth=max(2, len(self._weight_words)), init=self._weight_words)', 11, '2 -> 3'):
        'a deeper weight memory holds the same words at the same addresses',
    ("hw/bandlayer.py", 'def weight_image(layers, *, weight_width: int = 8, data_width: int = 64) -> tuple[bytes, list]:', 70, '64 -> 65'):
        "the default bus width, which only tests use (every BandLayer passes its own): a 65-bit bus has 8-byte beats too and pads a word of up to 7 beats to the same bytes",
    ("hw/bandlayer.py", 'elif len(words) > len(weight_words):   # the buffer holds the largest layer', 17, '> -> >='):
        'a layer as large as the largest so far replaces the zero words with as many zero words',
    ("hw/bandlayer.py", 'if len(self._specs) > 1:', 21, '> -> >='):
        "one layer then gets a group base register too, holding its only base, 0: the same group numbers",
    ("hw/bandlayer.py", 'group_base = Signal(range(max(2, max(group_bases) + 1)))', 31, '2 -> 3'):
        'a wider group base register holds the same bases',
    ("hw/bandlayer.py", 'group_base = Signal(range(max(2, max(group_bases) + 1)))', 53, '1 -> 2'):
        'a wider group base register holds the same bases',
    ("hw/bandlayer.py", 'c = Signal(range(max(l.in_channels for l in layers) + 1))', 55, '1 -> 2'):
        "the loader's channel counter in a wider register counts the same (a load ends with its last word, not at a wrap)",
    ("hw/bandlayer.py", 'ky = Signal(range(max(l.kernel for l in layers) + 1))', 51, '1 -> 2'):
        "the loader's tap row counter in a wider register counts the same",
    ("hw/bandlayer.py", 'g = Signal(range(max(l.groups for l in layers) + 1))', 50, '1 -> 2'):
        "the loader's group counter in a wider register counts the same",
    ("hw/bandchain.py", 'def band_rows_for(layers: Sequence[ConvLIF], band_bits: int, *, weight_width: int = 8,', 85, '8 -> 9'):
        "the default weight width, which BandChain always passes: a 9-bit default changes the accumulator's width only for a chain whose every sum fits 9 bits",
    # hw/rowreader.py (band_bursts, reviewed after its rework)
    ('hw/rowreader.py', '"burst": Signal(group_log + 1, name=f"{name}_{prefix}burst"),   # the burst\'s beats', 29, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'room = Signal(group_log + 1, name=f"{name}_room")', 27, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'total = Signal(group_log + 2, name=f"{name}_total")', 28, '2 -> 3'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'total.eq(beats[:group_log + 1] + beat),', 29, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'return Mux(fits, beats[:group_log + 1], room)', 37, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'in_run = Signal(group_log + 1, name=f"{name}_in_run")', 29, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'at_channel = Signal(group_log + 1, name=f"{name}_at_channel")', 33, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', '& (s["left"][:group_log + 2] < s["burst"] + ROW_BURST)),', 27, '2 -> 3'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', '& (s["left"][:group_log + 2] < s["burst"] + ROW_BURST)),', 30, '< -> <='):
        'left - burst == 16 exactly: in_run is (left - burst) mod 32 = 16, the same as ROW_BURST',
    ('hw/rowreader.py', 'in_run.eq(Mux(small, (s["left"][:group_log + 1] - s["burst"])[:group_log + 1],', 46, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'in_run.eq(Mux(small, (s["left"][:group_log + 1] - s["burst"])[:group_log + 1],', 76, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'burst = (in_run & ~end_run.replicate(group_log + 1)) | (', 50, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'at_channel & (end_run & ~last_channel).replicate(group_log + 1))', 62, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'at_row = Signal(group_log + 1, name=f"{name}_at_row")', 29, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'burst = burst | (at_row & (end_run & last_channel).replicate(group_log + 1))', 74, '1 -> 2'):
        'one more bit or slice bit: the values (at most 16 beats, a 4-bit place) fit either way and the result is cut to the same low bits',
    ('hw/rowreader.py', 'm.d.sync += [first.eq(cfg.band_beats != 0), second.eq(0)]', 55, '0 -> 1'):
        "start's next cycle is always `first` (it comes before `second` in the chain and sets it), and a band has at least one beat (band_config)",
    # hw/bandchain.py
    ("hw/bandchain.py", 'maps.append(("scratch", ((m - 1) % 2) * slot, size))', 29, '- -> +'):
        '(m + 1) % 2 == (m - 1) % 2 for every m: the same slot',
    ("hw/bandchain.py", '"scratch_base": In(address_width), "steps": In(range(1, max_steps + 1)),', 54, '1 -> 2'):
        "a port's width follows the range's largest value alone: range(2, n + 1) is as wide as range(1, n + 1)",
    ("hw/bandchain.py", 'entry = Signal(range(max(2, entries)))', 26, '2 -> 3'):
        'a band counter in a register of a wider range holds the same indices',
    ("hw/bandchain.py", 't = Signal(range(self._max_steps + 1))', 36, '1 -> 2'):
        'a step counter in a register of a wider range counts the same',
    ("hw/bandchain.py", 'if weight_words is None or padded_weight_words(layer) <= weight_words:', 55, '<= -> <'):
        'a layer that fits exactly then takes the split path, which gives one pass of all its groups (the largest power of two that fits is its padded groups): the same geometry, weights, biases and thresholds',

    # hw/bandcore.py
    ("hw/bandcore.py", 'layers=len(chain.layers), lanes=chain.layers[0].layer.lanes, T=max_steps,', 46, '0 -> 1'):
        "every layer of a band datapath has layer 0's lanes (BandLayer refuses others); a one-layer chain's core is built in test_register_map_is_aligned_disjoint_and_round_trips",
    ("hw/bandcore.py", 'storage = {name: Signal(32, name=name.lower()) for name in', 25, '32 -> 33'):
        "a 33rd storage bit is never written (four byte lanes) and is cut off by the 32-bit read data and address ports",
    ("hw/bandcore.py", 'm.d.comb += chain.steps.eq(Mux((asked == 0) | (asked > p.T), p.T, asked))', 54, '> -> >='):
        "TIME_STEPS == T gives T either way",
    ("hw/bandcore.py", 'cycles = Signal(32, name="cycles")', 17, '32 -> 33'):
        "a 33-bit counter read through the 32-bit data port is the 32-bit counter, wrap included",
    ("hw/bandcore.py", 'read_bytes = Signal(32, name="read_bytes")', 21, '32 -> 33'):
        "a 33-bit counter read through the 32-bit data port is the 32-bit counter, wrap included",
    ("hw/bandcore.py", 'write_bytes = Signal(32, name="write_bytes")', 22, '32 -> 33'):
        "a 33-bit counter read through the 32-bit data port is the 32-bit counter, wrap included",
    ("hw/bandcore.py", 'm.d.sync += reg[8 * i:8 * i + 8].eq(write.raw[8 * i:8 * i + 8])', 53, '8 -> 9'):
        "write.raw[8 i : 9 i + 8] starts at the byte and holds at least its 8 bits, cut to the same 8 by the assignment",
    ("hw/bandcore.py", 'm.d.sync += reg[8 * i:8 * i + 8].eq(write.raw[8 * i:8 * i + 8])', 61, '8 -> 9'):
        "a 9-bit slice of the written data into an 8-bit byte is cut to the same 8 bits",
    ("hw/bandcore.py", 'm.d.sync += flags.eq(flags & ~wdata[:2])', 38, '2 -> 3'):
        "flags is two bits: a third bit of the mask is cut off by the assignment",

    # hw/rowwriter.py
    ("hw/rowwriter.py", "beat_log = (dw // 8).bit_length() - 1", 19, "8 -> 7"):
        "dw // 7 has the bit length of dw // 8 for every bus width of 32 to 1024 bits (dw / 7 < 2 * dw / 8)",
    # hw/neuron.py
    ("hw/neuron.py", "value = Const(0, 1) if stored is None else Mux(first, 0, stored)", 18, "1 -> 2"):
        "the same zero: the sum's width is set by `total`",
    # hw/lif.py
    ("hw/lif.py", "spike=fire, previous=previous, compare_width=self._sum_width + 1,", 64, "1 -> 2"):
        "the difference needs sum_width + 1 bits; a wider one holds the same value, so the same sign",
    # hw/lif_array.py
    ("hw/lif_array.py", 'previous=previous, compare_width=sw + 1, name=f"lane_{lane}"))', 39, "1 -> 2"):
        "the difference needs sum_width + 1 bits; a wider one holds the same value, so the same sign",
    ("hw/lif_array.py", "padded = list(self._thresholds) + [0] * (self._groups * self._lanes - len(self._thresholds))",
     69, "- -> +"):
        "longer zero padding: the comprehension never indexes past groups * lanes",
    ("hw/lif_array.py", "shape=unsigned(lanes * mw), depth=max(2, self._words), init=[])", 39, "2 -> 3"):
        "a deeper memory only adds rows that no address (< words) reaches",
    ("hw/lif_array.py", "shape=unsigned(lanes * sw), depth=max(2, self._groups),",
     39, "2 -> 3"):
        "a deeper memory only adds rows that no address (< groups) reaches",
    ("hw/lif_array.py", "m, first=c_first, stored=c_membranes[lane * mw:(lane + 1) * mw].as_signed(),",
     56, "1 -> 2"):
        "`previous` is membrane_width bits: the wider slice is truncated back to this lane's bits",
    ("hw/lif_array.py", "m.d.comb += new_word[lane * mw:(lane + 1) * mw].eq(lif_update(", 40, "1 -> 2"):
        "the next lane's assignment, later in the list, overrides the overlapping bits; the last "
        "lane's slice is clipped at the word's end",
    # hw/addressing.py
    ("hw/addressing.py", "pending = Signal(range(width + 1))", 32, "1 -> 2"):
        "one more counter bit: pending never exceeds width, the values are the same",
    ("hw/addressing.py", "m.d.comb += final_beat.eq(1 if ports >= width else pending <= ports)", 38, ">= -> >"):
        "at ports == width, `pending <= ports` is always true (pending <= width): the same 1",
    # (both implementations: the combinational and the registered elaborate have this line)
    ("hw/addressing.py", "if width & (width - 1) == 0:", 10, "& -> |"):
        "only picks the adder form over the shift form of word * width + column: the same address",
    ("hw/addressing.py", "if width & (width - 1) == 0:", 21, "1 -> 2"):
        "still true exactly for powers of two >= 2 (width 1: the adder form, the same address)",
    ("hw/addressing.py", "if width & (width - 1) == 0:", 27, "0 -> 1"):
        "only picks the adder form over the shift form of word * width + column: the same address",
    ("hw/addressing.py", "m.d.sync += [held.eq(0), pending.eq(0)]", 37, "0 -> 1"):
        "pending is reloaded whenever held is set; while idle it only reaches `count`, not valid then",
    ("hw/addressing.py", "index = Const(width - 1, 2)", 26, "2 -> 3"):
        "the constant (width - 1 <= 3) has the same value in 3 bits",
    ("hw/addressing.py", "return bits[0], Const(0, 1)", 26, "1 -> 2"):
        "the same zero; only bit 0 of the two-or-more flag is used",
    ("hw/addressing.py", "return group_any.any(), Cat(low[:log2_ceil(size)], group[:2])", 59, "2 -> 3"):
        "at most four groups: the group index is 2 bits, a longer slice takes the same bits",
    # hw/sdsa.py, hw/sdsa_common.py, hw/sdsa_matmul.py, hw/sdsa_column.py (the SDSA unit)
    ('hw/sdsa_common.py', 'class Variant(enum.Enum, shape=3):', 32, '3 -> 4'):
        'no signal has the Variant shape (it is a parameter); its values are unchanged',
    ('hw/sdsa.py', 'return array.reshape(-1, tokens).tolist()', 23, '1 -> 2'):
        'numpy infers a negative dimension whatever its value: reshape(-2, N) == reshape(-1, N)',
    ('hw/sdsa_common.py', 'return Signal(range(max(count, 2)), name=name)', 32, '2 -> 3'):
        'a counter with room for one more value: the same count 0 .. count - 1, at most a spare bit',
    ('hw/sdsa_common.py', 'return [value[c * lanes:(c + 1) * lanes] for c in range(chunks)]', 30, '1 -> 2'):
        'each chunk goes into a lanes-bit signal (_select), which truncates the longer slice to the same bits',
    ('hw/sdsa_common.py', 'return max(words, 2)', 19, '2 -> 3'):
        'a deeper memory only adds rows that no address reaches',
    ('hw/sdsa_common.py', 'class _Phase(enum.Enum, shape=2):', 31, '2 -> 3'):
        'the phase register one bit wider: the same three values',
    ('hw/sdsa_common.py', 'QPASS = 2', 9, '2 -> 3'):
        'QPASS encoded as 3 instead of 2: still distinct from LOAD and LIF and fits the 2-bit phase',
    ('hw/sdsa.py', 'released = 1            # first cycle stage 1 is not holding a stalled accumulation', 12, '1 -> 2'):
        'the first K token starts at max(accept + 1 = 2, released): released 1 or 2 give the same 2',
    ('hw/sdsa.py', 'lif_start = 1 - chunks  # cycle the LIF took the first chunk of the previous token', 13, '1 -> 2'):
        "the first Q token's handoff is max(last + 1 >= 4, lif_start + chunks - 1): 0 or 1 never wins",
    ('hw/sdsa.py', 'done = 0', 8, '0 -> 1'):
        'done is assigned for every token (N >= 1) before it is read',
    ('hw/sdsa.py', 'def ideal_cycles(self, q_spikes: int, k_spikes: int, v_spikes: int = 0,', 70, '0 -> 1'):
        "v_spikes is in the signature only: no variant's formula reads it",
    ('hw/sdsa.py', 'return Const(1, 1), Const(1, 1)', 17, '1 -> 2'):
        'the same constant 1 in 2 bits',
    ('hw/sdsa.py', 'return Const(1, 1), Const(1, 1)', 30, '1 -> 2'):
        'the same constant 1 in 2 bits',
    ('hw/sdsa_matmul.py', 'row_fresh.eq(Mux(chunk_zero, ~row_written.bit_select(row, 1), fresh)),', 59, '1 -> 2'):
        'row_fresh is 1 bit: only bit 0 of the wider selection is kept, the same bit',
    ('hw/sdsa_matmul.py', 's1_last.eq(0),', 12, '0 -> 1'):
        "s1_last is read only for accumulations (~s1_load); a KV update's value is never used",
    ('hw/sdsa_matmul.py', 's1_v.eq(0),', 9, '0 -> 1'):
        's1_v only feeds KV writes, which are enabled only for KV updates (s1_load)',
    ('hw/sdsa_matmul.py', 's1_zero.eq(~has_address | ~row_written.bit_select(row, 1)),', 56, '1 -> 2'):
        's1_zero is 1 bit: only bit 0 of the wider selection is kept, the same bit',
    # hw/sdsa.py, hw/sdsa_common.py, hw/sdsa_matmul.py, hw/sdsa_column.py (the SDSA unit)
    ('hw/sdsa.py', 'lif_start = max(handoff + 1, lif_start + chunks)', 40, '+ -> -'):
        'handoff >= lif_start + chunks - 1, so handoff + 1 alone is the max either way',
    ('hw/sdsa_matmul.py', 'q_next = Signal(range(n + 1), name="q_next")  # the row the next read fetches', 27, '1 -> 2'):
        'a counter with room for one more value: q_next never exceeds n',
    ('hw/sdsa_matmul.py', 'm.d.comb += full_row[c * lanes:(c + 1) * lanes].eq(spikes)', 37, '1 -> 2'):
        "chunks arrive in order: the zeros written past chunk c are overwritten by chunk c + 1, the last chunk's slice is clipped",
    ('hw/sdsa_column.py', 'with m.If(in_token == 0):', 20, '== -> !=', '_elaborate_column_sum'):
        "SDSA-1/2: latched at any token of the head it is the step's latched first, read only after the head's last token; N = 1 forces threshold 1 (no membrane)",
    ('hw/sdsa_column.py', 'with m.If(in_token == 0):', 23, '0 -> 1', '_elaborate_column_sum'):
        "SDSA-1/2: latched at any token of the head it is the step's latched first, read only after the head's last token; N = 1 forces threshold 1 (no membrane)",
    ('hw/sdsa_column.py', 'm.d.sync += mask[c * lanes:(c + 1) * lanes].eq(spikes)', 33, '1 -> 2'):
        'chunks arrive in order: the zeros written past chunk c are overwritten by chunk c + 1 before the mask is read',
    # hw/plan.py (reviewed after the plan moved out of hw/shared.py)
    ('hw/plan.py', 'md_w = bits_for(mem.map_depth + 1)', 33, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', 'sd_w = bits_for(mem.stream_depth + 1)', 36, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', 'map_depth=max(2, sum(T * i.step_words for i in maps.values())),', 15, '2 -> 3'):
        'a larger minimum (memory depth, width floor or group count) only adds room no address or value reaches',
    ('hw/plan.py', 'stream_depth=max(2, sum(s.words for s in streams.values())),', 18, '2 -> 3'):
        'a larger minimum (memory depth, width floor or group count) only adds room no address or value reaches',
    ('hw/plan.py', 'self.logit_bits = max(net.logit_bits, 2)', 39, '2 -> 3'):
        'a floor of 3 logit bits instead of 2: wider logits, sign-extended, the same values',
    ('hw/plan.py', 'self.pixel_words = cfg.in_channels * cfg.img_size ** 2', 54, '2 -> 3'):
        'a larger pixel-memory bound only widens the load address; the same pixels land at the same addresses',
    ('hw/plan.py', 'self.pool_groups = 1', 20, '1 -> 2'):
        'a larger minimum (memory depth, width floor or group count) only adds room no address or value reaches',
    ('hw/plan.py', 'membrane_words = max(2, mbase) if self.T > 1 else 2', 22, '2 -> 3'):
        'a larger minimum (memory depth, width floor or group count) only adds room no address or value reaches',
    ('hw/plan.py', 'low, high, need_w = 0, 0, 1', 21, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'low, high, need_w = 0, 0, 1', 24, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'low, high, need_w = 0, 0, 1', 27, '1 -> 2'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'bias = np.asarray(layer.bias, dtype=np.int64).reshape(-1)', 56, '1 -> 2'):
        'numpy infers a negative dimension whatever its value: reshape(-2) == reshape(-1)',
    ('hw/plan.py', 'need_w = max(need_w, signed_width(min(int(weight.min()), 0),', 58, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max(int(weight.max()), 0)))', 24, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'weight_words.extend([0] * config.weight_words_needed)', 22, '0 -> 1'):
        'placeholder words, every one overwritten by the packed layer words (same count)',
    ('hw/plan.py', 'bias_words.extend([0] * config.groups)', 20, '0 -> 1'):
        'placeholder words, every one overwritten by the packed layer words (same count)',
    ('hw/plan.py', 'max_words=max([1] + [c.words_per_frame for c in configs]),', 16, '1 -> 2'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_channels=max([1] + [c.in_channels for c in configs]),', 19, '1 -> 2'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_padding=max([0] + [c.padding for c in configs]),', 18, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_kernel_log=max([0] + [c.kernel_log for c in configs]),', 21, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_stride_log=max([0] + [c.stride_log for c in configs]),', 21, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_groups_log=max([0] + [c.groups_log for c in configs]),', 21, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'bank_depth=max([2] + [c.bank_words_needed for c in configs]))', 17, '2 -> 3'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'max_shift, shift_base, padded_shifts, words = 0, {}, {}, []', 47, '0 -> 1'):
        'raises the start of a running maximum of a resource limit: the limit can only grow, the unit computes the same',
    ('hw/plan.py', 'shifts = np.asarray(net.layers[step.layer].shift, dtype=np.int64).reshape(-1)', 76, '1 -> 2'):
        'numpy infers a negative dimension whatever its value: reshape(-2) == reshape(-1)',
    ('hw/plan.py', 'self.shift_bits = max(1, max_shift.bit_length())', 23, '1 -> 2'):
        'a floor of 2 shift bits instead of 1: wider shift lanes, packed and read with the same width',
    ('hw/plan.py', 'return max(2, len(self.weight_words))', 12, '2 -> 3'):
        'a larger minimum (memory depth, width floor or group count) only adds room no address or value reaches',
    ('hw/plan.py', 'groups_shape = range(self.max_groups + 1)', 40, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', 'channels = range(max(p.config.in_channels for p in mem.layers.values()) + 1)', 75, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"kind": unsigned(3),', 18, '3 -> 4'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sink": unsigned(2),', 18, '2 -> 3'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"src_height": range(W + 1),', 25, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"src_height_m1": range(W + 1),', 28, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"dst_side": range(W + 1),', 23, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"dst_side_m1": range(W + 1),', 26, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"dst_side_m2": range(W + 1),', 26, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"mbase": unsigned(bits_for(mem.membrane_words + 1)),', 49, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"tbase": unsigned(bits_for(len(self.thresholds) // lanes + 1)),', 60, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"shift_base": unsigned(bits_for(len(self.shift_words) + 2)),', 57, '2 -> 3'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sdsa": range(max(2, len(self.attention))),', 19, '2 -> 3'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"next_k": range(len(steps) + 1),   # the step after this one (begin_stem skipped)', 30, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"last_step": 1,                      # this is the time step\'s last step', 14, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_stem": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,', 12, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_stem": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,', 27, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_stem": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,', 47, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_stem": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,', 61, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_stem": 1, "is_layer": 1, "is_stream_lif": 1, "is_sdsa": 1, "is_pool": 1,', 75, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"is_reader": 1,          # stream LIF or pool: the stream reader runs', 14, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sink_lif": 1, "sink_stream": 1, "sink_add": 1, "sink_logits": 1,', 13, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sink_lif": 1, "sink_stream": 1, "sink_add": 1, "sink_logits": 1,', 31, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sink_lif": 1, "sink_stream": 1, "sink_add": 1, "sink_logits": 1,', 46, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', '"sink_lif": 1, "sink_stream": 1, "sink_add": 1, "sink_logits": 1,', 64, '1 -> 2'):
        'a field, register or port one bit (or more) wider than needed: it holds the same values',
    ('hw/plan.py', 'stream_words_m1=max(0, state["stream_words"] - 1),', 21, '0 -> 1'):
        'stream_words is >= 1 wherever stream_words_m1 is read (a stream step), so max(1, n - 1) == max(0, n - 1) there',
    ('hw/plan.py', 'k_bits = Shape.cast(range(len(steps) + 1)).width  # the width of ``program_step``', 40, '1 -> 2'):
        'a wider step-index field in the ROM address: the table is keyed consistently with it and read through the same k_bits (both sides change together)',
    ('hw/program.py', 'class StepKind(enum.Enum, shape=3):', 33, '3 -> 4'):
        'a wider enum shape: the descriptor fields stay unsigned(3)/unsigned(2) and hold the same codes',
    ('hw/program.py', 'POOL_LIF = 5', 12, '5 -> 6'):
        'POOL_LIF gets code 6: still distinct and inside the 3-bit kind field; hardware and table use the same enum',
    ('hw/program.py', 'class SinkKind(enum.Enum, shape=3):', 33, '3 -> 4'):
        'a wider enum shape: the descriptor fields stay unsigned(3)/unsigned(2) and hold the same codes',
    ('hw/program.py', "STEM_OUT = 5  # the stem's output (the shared network writes it into the first stream through", 12, '5 -> 6'):
        'STEM_OUT gets code 6: still distinct; a Python-only sink kind that no descriptor holds',
    ('hw/program.py', 'side = 1 if step.layer == "head" else sizes[step.layer.split(".")[0]]', 8, '1 -> 2'):
        'dead branch: the head layer never writes a spike map (its sink is LOGITS), so the side of 1 is never taken',
    ('hw/program.py', 'channels = net.layers[f"{step.source}.q_conv"].weight.shape[0]', 61, '0 -> 1'):
        "every attention block's q_conv maps C to C channels, so shape[1] == shape[0]",
    # hw/progengine.py: column folding
    ('hw/progengine.py', 'stride_x = Signal(_range(1 << (self._max_stride_log + self._max_fold_log)))', 26, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'part = Signal(lanes_log + 1)               # lanes >> fold_log', 27, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'stride_x.eq(Const(1, 1) << (cfg.stride_log + cfg.fold_log)),', 22, '1 -> 2'):
        "the constant's width (Const(1, 2)): the same value 1",
    ('hw/progengine.py', 'fold_penult.eq((Const(1, 1) << cfg.fold_log) - 2),', 26, '1 -> 2'):
        "the constant's width (Const(1, 2)): the same value 1",
    ('hw/progengine.py', 'part.eq(Const(lanes, lanes_log + 1) >> cfg.fold_log),', 34, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'for fold_log in range(self._max_fold_log + 1):', 44, '1 -> 2'):
        'a case for fold_log = max_fold_log + 1, which check_layer never lets into config',
    ('hw/progengine.py', '**({"offset": unsigned(lanes_log), "wipe": 1} if fold else {}),', 44, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine_config.py', 'return [pack_lanes(word, weight_width) for word in words.reshape(-1, lanes)]', 67, '1 -> 2'):
        'numpy takes any negative size as the one it infers: reshape(-2, lanes) == reshape(-1, lanes)',
    # hw/progengine.py
    ('hw/progengine_config.py', 'return [pack_lanes(row, weight_width) for row in lanes_last.reshape(-1, lanes)]', 70, '1 -> 2'):
        'numpy infers a negative dimension whatever its value: reshape(-2, lanes) == reshape(-1, lanes)',
    ('hw/progengine.py', 'tap_bits = max(1, self._max_kernel_log)', 16, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'group_bits = max(1, self._max_groups_log)', 18, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'offset_low = Signal(signed(bits_for(self._max_padding + (1 << self._max_stride_log) + 1)', 58, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'offset_low = Signal(signed(bits_for(self._max_padding + (1 << self._max_stride_log) + 1)', 85, '+ -> -'):
        'offset_low still has bits_for(P + 2**S - 1) + K + 2 >= the bits of its range [1 - 2**K, P + 2**S - 1]',
    ('hw/progengine.py', 'offset_low = Signal(signed(bits_for(self._max_padding + (1 << self._max_stride_log) + 1)', 87, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', '+ bits_for((1 << self._max_kernel_log) + 1) + 1))', 13, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', '+ bits_for((1 << self._max_kernel_log) + 1) + 1))', 40, '+ -> -'):
        'offset_low still has bits(P + 2**S) + K + 1 >= the bits of its range [1 - 2**K, P + 2**S - 1]',
    ('hw/progengine.py', '+ bits_for((1 << self._max_kernel_log) + 1) + 1))', 42, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', '+ bits_for((1 << self._max_kernel_log) + 1) + 1))', 47, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'stride = Signal(_range(1 << self._max_stride_log))', 24, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'row_step.eq(Const(1, 1) << (cfg.out_width_log + cfg.groups_log)),', 22, '1 -> 2'):
        'Const(1, 2) is the same 1',
    ('hw/progengine.py', 'stride.eq(Const(1, 1) << cfg.stride_log),', 20, '1 -> 2'):
        'Const(1, 2) is the same 1',
    ('hw/progengine.py', 'row_y_next = Signal(side_bits + 1)', 33, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'slots = [Signal(spike_layout, name=f"spike_slot_{n}") for n in range(2)]', 70, '2 -> 3'):
        'a third queue slot that no code indexes (slots[0], slots[1] only)',
    ('hw/progengine.py', '+ (1 << self._max_stride_log) + (1 << self._max_kernel_log) + 2) + 2', 4, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', '+ (1 << self._max_stride_log) + (1 << self._max_kernel_log) + 2) + 2', 63, '2 -> 3'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    # hw/progengine.py
    ('hw/progengine.py', 'shape=unsigned(word_bits), depth=max(2, len(self._bias_words)),', 38, '2 -> 3'):
        'a minimum memory depth of 3 instead of 2 only adds a row no address reaches',
    # hw/sdsa.py, hw/sdsa_common.py, hw/sdsa_matmul.py, hw/sdsa_column.py (the SDSA unit)
    ('hw/sdsa_matmul.py', 'membrane_write.en.eq(l1_valid & ~l1_stall),', 31, '& -> |'):
        'with no chunk in the LIF stage the read port (enabled only by take) holds the word read for the last one, so the extra write stores the value just written',
    # hw/progengine.py
    ('hw/progengine.py', 'column_step.eq(Const(1, 1) << cfg.groups_log),', 25, '1 -> 2'):
        'Const(1, 2) is the same 1',
    ('hw/progengine.py', 'offset_low.eq(cfg.padding + (Const(1, 1) << cfg.stride_log) - cfg.kernel),', 39, '1 -> 2'):
        'Const(1, 2) is the same 1',
    ('hw/progengine.py', 'offset_low_y.eq(cfg.padding_y + (Const(1, 1) << cfg.stride_log) - cfg.kernel),', 43, '1 -> 2'):
        'Const(1, 2) is the same 1',
    ('hw/progengine.py', '"x": unsigned(bits_for(self._word_bits)), "any": 1, "last": 1,', 50, '1 -> 2'):
        'a queue flag one bit wider: it carries the same 0/1',
    ('hw/progengine.py', '"x": unsigned(bits_for(self._word_bits)), "any": 1, "last": 1,', 61, '1 -> 2'):
        'a queue flag one bit wider: it carries the same 0/1',
    ('hw/progengine.py', '+ (1 << self._max_stride_log) + (1 << self._max_kernel_log) + 2) + 2', 34, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', '+ (1 << self._max_stride_log) + (1 << self._max_kernel_log) + 2) + 2', 68, '2 -> 3'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    ('hw/progengine.py', 'first.eq(Mux(pre_low < 0, 0, pre_low)),', 22, '< -> <='):
        'pre_low == 0 clamps to 0 either way',
    ('hw/progengine.py', 'first.eq(Mux(pre_low < 0, 0, pre_low)),', 24, '0 -> 1'):
        'pre_low == 0 clamps to 0 either way (the compare is on an integer)',
    ('hw/progengine.py', 'g_next = Signal(group_bits + 1)', 30, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    # hw/progengine.py
    ('hw/progengine.py', 'm.submodules.bank = bank = Memory(shape=unsigned(word_bits), depth=max(2, bank_depth),', 72, '2 -> 3'):
        'a minimum memory depth of 3 instead of 2 only adds a row no address reaches',
    ('hw/progengine.py', 'c_select = Signal(2, reset_less=True)   # 0: c_data, 1: D, 2: E, 3: F', 19, '2 -> 3'):
        'a selector one bit wider: it holds the same 0..3',
    ('hw/progengine.py', '"index": unsigned(bank_bits), "last": 1,', 39, '1 -> 2'):
        'a pipeline coordinate flag one bit wider: it carries the same 0/1 to the 1-bit output field',
    # hw/progengine.py
    ('hw/progengine.py', 'tap_index = Signal(self._max_kernel_log + x_log_max + self._max_groups_log + 1)', 78, '1 -> 2'):
        'a register/field one bit (or more) wider than needed: it holds the same values',
    # hw/sequencer.py (reviewed survivors: the split decode at T > 1)
    ('hw/sequencer.py', 'hit_k = Signal(max(1, len(step_keys)), name="desc_rom_hit_k")', 20,
     '1 -> 2'):
        'a hit register one bit wider (only when the table has no step): the extra bit is never set',
    ('hw/sequencer.py', 'hit_tk = Signal(max(1, len(pair_keys)), name="desc_rom_hit_tk")', 21,
     '1 -> 2'):
        'a hit register one bit wider (only when no bit changes with t): the extra bit is never set',
    # hw/sequencer.py (reviewed survivors: steps that run downwards and time-major groups)
    ('hw/sequencer.py', 'word = layout.from_bits(rom.get(k, 0))', 36, '0 -> 1'):
        "the reference's default for an address the table lacks: every visited address is in it",
    ('hw/sequencer.py', 'while layout.from_bits(rom.get(group[-1], 0)).tail:', 43, '0 -> 1'):
        "the reference's default for an address the table lacks: every visited address is in it",
    ('hw/sequencer.py', 'group.append(int(layout.from_bits(rom.get(group[-1], 0)).next_k))', 54,
     '0 -> 1'):
        "the reference's default for an address the table lacks: every visited address is in it",
    ('hw/sequencer.py', 'word = layout.from_bits(rom.get(group[-1], 0))', 44, '0 -> 1'):
        "the reference's default for an address the table lacks: every visited address is in it",
    # hw/sequencer.py (reviewed survivors of its first mutation run)
    ('hw/sequencer.py', 'word = layout.from_bits(rom.get((t << k_bits) | k, 0))', 52, '0 -> 1'):
        "the reference's default for an address the table lacks: every visited address is in it",
    ('hw/sequencer.py', 'return Shape.cast(range(steps + 1)).width', 33, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/sequencer.py', '"run": In(1),', 11, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/sequencer.py', '"finish": In(1),', 14, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/sequencer.py', '"step_start": Out(1),', 19, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/sequencer.py', '"t": Out(range(max(2, T))),', 20, '2 -> 3'):
        'the time-step counter one bit wider: it still counts 0 .. T-1 and is compared, never wrapped',
    ('hw/sequencer.py', '"first": Out(1),', 14, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    # hw/residual.py SpikeFetch (reviewed survivors of its first mutation run)
    ('hw/residual.py', '"en": Out(1),', 11, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/residual.py', 'offset = Signal(range(W + 1), name="sf_offset")         # (g % P) * S', 27, '1 -> 2'):
        'a register one value wider: it holds the same offsets (below W)',
    ('hw/residual.py', 'bit_d = Signal(range(2 * W + 1), name="sf_bit_d")      # the bit, a cycle later', 22, '2 -> 3'):
        'the bit index register sized for 0..2W (or 3W): it holds the same bit indices, below W',
    ('hw/residual.py', 'bit_d = Signal(range(2 * W + 1), name="sf_bit_d")      # the bit, a cycle later', 28, '+ -> -'):
        'range(2W - 1) still holds every bit index below W',
    ('hw/residual.py', 'bit_d = Signal(range(2 * W + 1), name="sf_bit_d")      # the bit, a cycle later', 30, '1 -> 2'):
        'the bit index register sized for 0..2W+1: it holds the same bit indices, below W',
    ('hw/residual.py', 'bank = self.data[lane * W:(lane + 1) * W]', 35, '1 -> 2'):
        "a wider slice of the word: the bit picked (index below W) is the same bank's",
    ('hw/residual.py', 'm.d.sync += self.bits[lane].eq(bank.bit_select(bit_d, 1))', 55, '1 -> 2'):
        'two bits selected into a one-bit register: it keeps the low one, the same bit',
    # hw/residual.py Pool (reviewed survivors after its sums moved into a memory)
    ('hw/residual.py', 'm.submodules.pool_sums = sums = Memory(shape=sums_layout, depth=max(2, groups), init=[])', 69, '2 -> 3'):
        'a sums memory one word deeper than a one-group pool needs: the extra word is never addressed',
    ('hw/residual.py', 'kept = Signal(max(2, groups), name="pool_kept")', 19, '2 -> 3'):
        'a kept register one bit wider than a one-group pool needs: the extra bit is never addressed',
    # hw/weightfetch.py the AR walker's room and first-beat offset (reviewed survivors)
    ('hw/weightfetch.py', 'room = Signal(range(page_beats + 1))', 34, '1 -> 2'):
        'range(page_beats + 2) has the width of range(page_beats + 1): page_beats is a power of two',
    # hw/weightfetch.py the AR walker's new-block flag (reviewed survivor)
    ('hw/weightfetch.py', 'a_new_block = Signal(init=1)', 27, '1 -> 2'):
        'the flag is read only while a_active, and the layer load that follows every start '
        'writes it (1) before the first burst; its reset value keeps a_new_block == (a_left == 0)',
    # hw/weightfetch.py the AR walker's end of the run (reviewed survivor)
    ('hw/weightfetch.py', 'm.d.sync += [a_active.eq(0), a_load.eq(0)]', 40, '0 -> 1'):
        'a layer load after the last block only rewrites registers that are read while a_active '
        '(now 0) or that the next start and its layer load write again; no burst is issued',
    # hw/weightfetch.py the layer schedule's hold at start (reviewed survivor)
    ('hw/weightfetch.py', 'hold.eq(0)]', 9, '0 -> 1'):
        "hold is read only through releasing = engaged & ~hold, and engaged is 0 until the first "
        "layer_start, which writes hold at the same edge",
    # hw/weightfetch.py AxLEN picked beside the compare (reviewed survivor)
    ('hw/weightfetch.py', 'len_m1 = Mux(reach, room - 1, Mux(left_now > MAX_BURST, MAX_BURST - 1, left_now - 1))', 44, '> -> >='):
        'at left_now == MAX_BURST both arms are MAX_BURST - 1',
    # hw/weightfetch.py avail's value at start and the burst cap (reviewed survivors)
    ('hw/weightfetch.py', 'avail.eq(Mux(self.start, 0,', 26, '0 -> 1'):
        "avail's start value reaches only ready in the cycles before the first layer_start and the "
        "one after it, when the engine has no decoded item; layer_start rewrites avail from g_new",
    ('hw/weightfetch.py', 'm.d.comb += capped.eq(Mux(left_now > MAX_BURST, MAX_BURST, left_now))', 36, '> -> >='):
        'at left_now == MAX_BURST both arms are MAX_BURST',
    # hw/axi_io.py (reviewed survivors): counters and addresses one value wider hold the same
    # values (each counts below its range; an address's extra high bits never reach the port)
    ('hw/axi_io.py', 'return Mux(left < to_group, left, to_group)', 17, '< -> <='):
        'at left == to_group both arms are the same',
    ('hw/axi_io.py', "ar_beat = Signal(AW - beat_log)            # next burst's beat address", 21, '- -> +'):
        'a wider beat address: the bits above the port are cut when araddr is assigned',
    ('hw/axi_io.py', "aw_beat = Signal(AW - beat_log)            # this burst's beat address", 21, '- -> +'):
        'a wider beat address: the bits above the port are cut when awaddr is assigned',
    ('hw/axi_io.py', 'ar_left = Signal(range(in_beats + 1))      # beats not yet requested', 35, '1 -> 2'):
        'holds 0..in_beats: one more value only may add an unused bit',
    ('hw/axi_io.py', 'r_left = Signal(range(in_beats + 1))       # beats not yet received', 34, '1 -> 2'):
        'holds 0..in_beats: one more value only may add an unused bit',
    ('hw/axi_io.py', 'ar_len = Signal(range(IO_BURST + 1))', 34, '1 -> 2'):
        'holds 0..IO_BURST: one more value only may add an unused bit',
    ('hw/axi_io.py', 'held = Signal(range(B + 1))                # how many', 25, '1 -> 2'):
        'holds 0..B (a power of two): range(B + 2) has the same width',
    ('hw/axi_io.py', 'pixel = Signal(range(self.input_words + 1))', 41, '1 -> 2'):
        'holds 0..input_words: one more value only may add an unused bit',
    ('hw/axi_io.py', 'min((index + 1) * per_beat, self.classes))])', 14, '1 -> 2'):
        "a beat's row with the next beat's words after it: wdata keeps only the beat's own bits",
    ('hw/axi_io.py', 'w_beat = Signal(range(out_beats + 1))      # next beat of the output (its logits)', 35, '1 -> 2'):
        'holds 0..out_beats: one more value only may add an unused bit',
    ('hw/axi_io.py', 'w_left = Signal(range(out_beats + 1))      # beats of the output not yet in a burst', 35, '1 -> 2'):
        'holds 0..out_beats: one more value only may add an unused bit',
    ('hw/axi_io.py', 'burst = Signal(range(IO_BURST + 1))        # this burst\'s beats; 0: none in flight', 33, '1 -> 2'):
        'holds 0..IO_BURST (a power of two): range(IO_BURST + 2) has the same width',
    ('hw/axi_io.py', 'burst_left = Signal(range(IO_BURST + 1))   # its W beats still to send', 38, '1 -> 2'):
        'holds 0..IO_BURST (a power of two): range(IO_BURST + 2) has the same width',
    ('hw/axi_io.py', 'burst_left = Signal(range(IO_BURST + 1))   # its W beats still to send', 36, '+ -> -'):
        'four bits count a 16-beat burst modulo 16: 16 reads as 0, and 15 decrements later it is 1 '
        'on the last beat all the same',
    ('hw/axi_io.py', 'next_len = Signal(range(IO_BURST + 1))', 36, '1 -> 2'):
        'holds 0..IO_BURST: one more value only may add an unused bit',
    ('hw/axi_io.py', 'ar_after = Signal(range(in_beats + 1))', 36, '1 -> 2'):
        'holds 0..in_beats - 1: one more value only may add an unused bit',
    ('hw/axi_io.py', 'w_after = Signal(range(out_beats + 1))', 36, '1 -> 2'):
        'holds 0..out_beats - 1: one more value only may add an unused bit',
    ('hw/axi_io.py', 'ar_len.eq(Mux(ar_after < IO_BURST, ar_after, IO_BURST))]', 24, '< -> <='):
        'at ar_after == IO_BURST both arms are IO_BURST',
    ('hw/axi_io.py', 'next_len.eq(Mux(w_after < IO_BURST, w_after, IO_BURST))]', 25, '< -> <='):
        'at w_after == IO_BURST both arms are IO_BURST',
    # hw/axi_io.py EventPlayer (reviewed survivors): one-bit controls driven 0/1 read the same
    # two bits wide (an enable is cut to its low bit, rewind is tested for nonzero, active is
    # ANDed into the one-bit valid); the address counts 0..beats
    ('hw/axi_io.py', '"load_address": In(bits_for(beats)), "load_data": In(bits), "load_enable": In(1),', 79, '1 -> 2'):
        'load_enable driven 0/1 reaches the one-bit write enable as its low bit',
    ('hw/axi_io.py', '"rewind": In(1), "active": In(1),', 14, '1 -> 2'):
        'rewind driven 0/1 is only tested for nonzero',
    ('hw/axi_io.py', '"rewind": In(1), "active": In(1),', 31, '1 -> 2'):
        'active driven 0/1 is ANDed into the one-bit valid, which keeps the low bit',
    ('hw/axi_io.py', 'address = Signal(range(self.beats + 1), name="player_address")  # next beat to read', 37, '1 -> 2'):
        'holds 0..beats: one more value only may add an unused bit',
    ('hw/axi_io.py', 'counts = [(f or self.frames) * self.frame_words for f in range(self.frames + 1)]', 78, '1 -> 2'):
        'a table entry past read_frames\'s range is never indexed',
    ('hw/axi_io.py', 'for f in range(self.frames + 1))[self.read_frames])', 30, '1 -> 2'):
        'a table entry past read_frames\'s range is never indexed',
    ('hw/axi_io.py', 'last_beat_bytes = Signal(range(B + 1), name="last_beat_bytes")', 36, '1 -> 2'):
        'holds 1..B (a power of two): range(B + 2) has the same width',
    ('hw/axi_io.py', 'read_beats = Signal(range(in_beats + 1), name="read_beats")', 38, '1 -> 2'):
        'holds 1..in_beats: one more value only may add an unused bit',
    # hw/weightfetch.py the R walker's stride + offset table (reviewed survivor)
    ('hw/weightfetch.py', 't_stride_offset = table([(stride + layer.offset) % (1 << P)', 53, '1 -> 2'):
        'the table holds P-bit constants: a value reduced modulo 2 ** (P + 1) is cut to the same P bits',
    # hw/weightfetch.py the AR walker's counters one value wider (reviewed survivors): each
    # holds only values below its range, so a wider register holds the same ones
    ('hw/weightfetch.py', 'a_t = Signal(range(T + 1))', 24, '1 -> 2'):
        'a_t counts time steps 0..T: range(T + 2) only may add an unused bit',
    ('hw/weightfetch.py', 'a_t_last = Signal(range(max(2, T)))   # the run\'s last time step (set at start)', 29, '2 -> 3'):
        'a_t_last holds 0..T-1: a range of max(3, T) only may add an unused bit',
    ('hw/weightfetch.py', 'a_layer = Signal(range(max(2, L)))', 28, '2 -> 3'):
        'a_layer holds 0..L-1: a range of max(3, L) only may add an unused bit',
    ('hw/weightfetch.py', 'a_left = Signal(bits_for(max_block_beats + 1))   # beats of the block not requested', 44, '1 -> 2'):
        'a_left holds 0..max_block_beats: bits_for of one more only may add an unused bit',
    ('hw/weightfetch.py', 'capped = Signal(range(MAX_BURST + 1))', 35, '1 -> 2'):
        'capped holds 0..MAX_BURST: range(MAX_BURST + 2) has the same width (MAX_BURST is a power of two)',
    # hw/weightfetch.py the free pointer's values at start (reviewed survivors): the AR walker
    # prepares its first burst at cycle 2 and its second at cycle 3 or later; by cycle 2
    # free_limit = free_d + depth + 1 from the engine side alone, and the run's first block
    # (ending at most depth words in) fits whatever the start values were
    ('hw/weightfetch.py', 'm.d.sync += [free_d.eq(0), free.eq(0), free_limit.eq(ring.depth + 1)]', 24, '0 -> 1'):
        'free_d one higher in cycle 1 only: free_limit one higher in cycle 2, when only the first block (it fits anyway) is prepared',
    ('hw/weightfetch.py', 'm.d.sync += [free_d.eq(0), free.eq(0), free_limit.eq(ring.depth + 1)]', 36, '0 -> 1'):
        'free is read by nothing but the register that follows it: free_limit comes from free_d',
    ('hw/weightfetch.py', 'm.d.sync += [free_d.eq(0), free.eq(0), free_limit.eq(ring.depth + 1)]', 65, '+ -> -'):
        "free_limit's start value is seen in cycle 1 only, when no burst is prepared",
    ('hw/weightfetch.py', 'm.d.sync += [free_d.eq(0), free.eq(0), free_limit.eq(ring.depth + 1)]', 67, '1 -> 2'):
        "free_limit's start value is seen in cycle 1 only, when no burst is prepared",
    # hw/mapreader.py, hw/plan.py, hw/descriptor.py dense q/k/v maps (reviewed survivors)
    ('hw/mapreader.py', 'nx_sum = Signal(range(2 * lanes), name="sd_nx_sum")', 23, '2 -> 3'):
        'a wider sum register: the sum of an offset and a step, both below lanes, is below 2 lanes',
    ('hw/mapreader.py', 'for g in range(G + 1):', 20, '1 -> 2'):
        'a case for group G + 1, which the feed never reads (a head reads at most G + 1 words)',
    ('hw/mapreader.py', 'if g < G:', 6, '< -> <='):
        "group G's slice of the G-group row is empty: the added assignment writes nothing",
    ('hw/mapreader.py', 'part = slice(g * lanes, (g + 1) * lanes)', 30, '1 -> 2'):
        'also zeroes group g + 1, which the next word overwrites, or which the head does not use',
    ('hw/plan.py', 'if attn.head_width < lanes', 20, '< -> <='):
        'a head exactly a word wide gives lanes // d = 1 head a word either way',
    ('hw/descriptor.py', 'fields.update({"head_bits": range(lanes), "rd_stride": range(plan.max_groups * W + 1),', 82, '+ -> -'):
        'rd_stride is at most a head\'s groups times the side: max_groups * W - 1 holds it',
    ('hw/descriptor.py', 'fields.update({"head_bits": range(lanes), "rd_stride": range(plan.max_groups * W + 1),', 84, '1 -> 2'):
        'a field one value wider: it holds the same strides',
    ('hw/descriptor.py', '"wide_at": range(lanes + 1), "head_mask": unsigned(lanes * widest)})', 26, '1 -> 2'):
        'a field one value wider: it holds the same offsets',
    ('hw/mapreader.py', 'nx_usum = Signal(range(2 * (2 ** len(desc.src_pack_m1)) + 1), name="sd_nx_usum")', 24, '2 -> 3'):
        'a wider register: the sub-position sum is below twice the pack, at most 2 ** len(src_pack_m1)',
    ('hw/mapreader.py', 'nx_usum = Signal(range(2 * (2 ** len(desc.src_pack_m1)) + 1), name="sd_nx_usum")', 29, '2 -> 3'):
        'a wider register: the sub-position sum is below twice the pack, at most 2 ** len(src_pack_m1)',
    ('hw/mapreader.py', 'nx_usum = Signal(range(2 * (2 ** len(desc.src_pack_m1)) + 1), name="sd_nx_usum")', 57, '+ -> -'):
        'range(2 * 2 ** k - 1) has the same width as range(2 * 2 ** k + 1) when k >= 1, and holds the sum',
    ('hw/mapreader.py', 'nx_usum = Signal(range(2 * (2 ** len(desc.src_pack_m1)) + 1), name="sd_nx_usum")', 59, '1 -> 2'):
        'a register one value wider: it holds the same sums',
    ('hw/mapreader.py', 'nx_bsum = Signal(range(2 * W + 1), name="sd_nx_bsum")', 30, '+ -> -'):
        'the bit sum is at most (2 P - 1) S <= 2 W - S: range(2 W - 1) holds it',
    ('hw/mapreader.py', 'nx_bsum = Signal(range(2 * W + 1), name="sd_nx_bsum")', 24, '2 -> 3'):
        'a wider register: the bit sum is below 2 W',
    ('hw/mapreader.py', 'nx_bsum = Signal(range(2 * W + 1), name="sd_nx_bsum")', 32, '1 -> 2'):
        'a register one value wider: it holds the same sums',
    ('hw/descriptor.py', 'if step.source in plan.dense_blocks and out_map.side == q_map.side:', 37, 'and -> or'):
        "a head-aligned block's output and q maps have the same side, groups and packing: the recomputed head stride is the same",
    # hw/sequencer.py (reviewed survivors after T became a run-time input)
    ('hw/sequencer.py', 'return time_steps if 1 <= time_steps <= T else T', 38, '<= -> <'):
        'time_steps == T then takes the else branch, which returns the same T',
    ('hw/sequencer.py', 'if (1 << len(asked)) - 1 > T:', 5, '1 -> 2'):
        'the guard only skips a compare that is false for every value the port holds',
    ('hw/sequencer.py', 'if (1 << len(asked)) - 1 > T:', 22, '- -> +'):
        'the guard only skips a compare that is false for every value the port holds',
    ('hw/sequencer.py', 'if (1 << len(asked)) - 1 > T:', 26, '> -> >='):
        'the guard only skips a compare that is false for every value the port holds',
    ('hw/sequencer.py', 'whole = whole | (asked > T)', 24, '> -> >='):
        'asked == T then selects T - 1, which asked - 1 also is',
    ('hw/sequencer.py', '"time_steps": In(range(T + 1)),', 28, '1 -> 2'):
        'the time-step port one value wider: every value it is driven with still fits',
    ('hw/sequencer.py', '"t_last": Out(range(max(2, T))),', 25, '2 -> 3'):
        'the last-time-step register one bit wider: it holds 0 .. T-1 and is compared, never wrapped',
    ('hw/sequencer.py', '"step": Out(range(steps + 1)),', 27, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/sequencer.py', '"running": Out(1),', 16, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/sequencer.py', '"done": Out(1),', 13, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/sequencer.py', '"cycles": Out(32),', 15, '32 -> 33'):
        'a 33-bit cycle counter read as 32 bits: the same low 32 bits',
    ('hw/sequencer.py', 'phase = Signal(2, name="seq_phase")  # 0: decode, 3: load descriptor, 1: start, 2: wait', 16, '2 -> 3'):
        'a 3-bit phase register holding the values 0-3',
    # hw/mapreader.py (reviewed survivors of its first mutation run)
    ('hw/mapreader.py', 'address_width: int, side: int = 1, heads: int = 1, head_groups: int = 1,', 33, '1 -> 2'):
        'a default the shared network and the tests never use (they pass the value)',
    ('hw/mapreader.py', 'address_width: int, side: int = 1, heads: int = 1, head_groups: int = 1,', 49, '1 -> 2'):
        'a default the shared network and the tests never use (they pass the value)',
    ('hw/mapreader.py', 'address_width: int, side: int = 1, heads: int = 1, head_groups: int = 1,', 71, '1 -> 2'):
        'a default the shared network and the tests never use (they pass the value)',
    ('hw/mapreader.py', 'sd_g = Signal(range(G + 2 if dense else G + 1), name="sd_g")', 45, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'm.d.sync += row[g * lanes:(g + 1) * lanes].eq(', 32, '1 -> 2'):
        "a slice two groups wide: the extracted bits land in group g, the zero-extension in group g + 1, which its own read (later in the token) overwrites; the last group's slice ends at the row",
    ('hw/mapreader.py', '"start": In(1),', 13, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/mapreader.py', 'fd_bank = Signal(range(lanes + 1), name="fd_bank")', 32, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'fd_y = Signal(range(W + 1), name="fd_y")', 25, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'word_banks = [spike_word[b * W:(b + 1) * W] for b in range(lanes)]', 37, '1 -> 2'):
        "a slice past the bank: the extra bits are truncated on assignment (fd_word, extracted) or overwritten by the next bank's assignment (the flush word)",
    ('hw/mapreader.py', 'sd_n_x = Signal(range(sd_side + 1), name="sd_x")', 33, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'sd_n_y = Signal(range(sd_side + 1), name="sd_y")', 33, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'sd_h = Signal(range(heads + 1), name="sd_h")', 29, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapreader.py', 'sd_phase = Signal(2, name="sd_phase")   # read q, k, v (values=False: q, k)', 19, '2 -> 3'):
        'a 3-bit register holding the values 0-3',
    ('hw/mapreader.py', 'sd_got = Signal(2, name="sd_got")       # which row the read data returns (delayed phase)', 17, '2 -> 3'):
        'a 3-bit register holding the values 0-3',
    ('hw/mapreader.py', 'sd_addr_phase = Signal(2, name="sd_addr_phase")', 24, '2 -> 3'):
        'a 3-bit register holding the values 0-3',
    ('hw/mapreader.py', 'm.d.sync += [sd_raddr.eq(base + sd_gaddr), sd_ren.eq(sd_active & sdsa_mode),', 64, '& -> |'):
        "extra SDSA reads outside a token's reads: in engine mode the port's address and enable come from the engine feed, and in SDSA mode an extra read repeats phase 0's group 0 word of the same token before its beat is taken (that part of rows[0] rewritten with the same data; it never completes a beat)",
    ('hw/mapreader.py', 'sd_read_phase = Signal(2, name="sd_read_phase")', 24, '2 -> 3'):
        'a 3-bit register holding the values 0-3',
    ('hw/mapreader.py', 'm.d.comb += extracted[b].eq(sd_word[b * W:(b + 1) * W].bit_select(sd_x_d, 1))', 75, '1 -> 2'):
        'two bits selected into a one-bit target: the same low bit',
    ('hw/mapreader.py', 'm.d.comb += extracted[b].eq(sd_word[b * W:(b + 1) * W].bit_select(sd_x_d, 1))', 48, '1 -> 2'):
        'a bank slice two banks wide: the bit selected (x < W) is the same bit of bank b',
    ('hw/mapwriter.py', 'channels, side = len(spikes), len(spikes[0])', 42, '0 -> 1'):
        "the reference's side from channel 1 instead of 0: every channel has the same side",
    ('hw/mapwriter.py', 'address_width: int, max_groups: int, maps, heads: int = 1):', 57, '1 -> 2'):
        'a default the shared network and the tests never use (they pass the value)',
    ('hw/mapwriter.py', 'self._row_bits = max(2, max(info.groups * info.side for info in maps))', 23, '2 -> 3'):
        "a row buffer one bit longer: slots beyond the map's groups are never written, and a word picked there is masked",
    ('hw/mapwriter.py', '"start": In(1),', 13, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/mapwriter.py', '"done": Out(1),', 13, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/mapwriter.py', 'wr_y = Signal(range(W + 1), name="wr_y")', 25, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapwriter.py', 'wr_x = Signal(range(W + 1), name="wr_x")', 25, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapwriter.py', 'wr_g = Signal(range(self._max_groups + 1), name="wr_g")', 40, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapwriter.py', 'wr_y = Signal(range(W + 1), name="wr_y")', 23, '+ -> -'):
        'the counter is compared only with its limit minus two (y_next_last); the value after '
        'that (limit - 1) is never read: the last row is known by the registered flag',
    ('hw/mapwriter.py', 'wr_x = Signal(range(W + 1), name="wr_x")', 23, '+ -> -'):
        'the counter is compared only with its limit minus two (x_next_last); the value after '
        'that is never read: the last column by the registered flag, its slot from wr_x + 1 at '
        'full width a beat before',
    ('hw/mapwriter.py', 'wr_g = Signal(range(self._max_groups + 1), name="wr_g")', 38, '+ -> -'):
        'the counter is compared only with its limit minus two (g_next_last); the value after '
        'that is never read: the last group by the registered flag, the slot counts on its own',
    ('hw/mapwriter.py', 'wr_h = Signal(range(heads + 1), name="wr_h")', 29, '1 -> 2'):
        'a wider counter or field: every value it takes still fits, and nothing relies on it wrapping',
    ('hw/mapwriter.py', 'wr_h = Signal(range(heads + 1), name="wr_h")', 27, '+ -> -'):
        'the head counter is only compared with heads - 2 (h_next_last), which range(heads - 1) '
        'still holds; its last increment may wrap, after the final beat',
    ('hw/mapwriter.py', 'for i in range(2)]', 16, '2 -> 3'):
        'a third row buffer that nothing selects (fill and fl_buf are one bit)',
    ('hw/mapwriter.py', 'm.d.comb += flush_word[b * W:(b + 1) * W].eq(picked & desc.dst_mask)', 35, '1 -> 2'):
        "a slice past the bank: the extra bits are truncated on assignment (fd_word, extracted) or overwritten by the next bank's assignment (the flush word)",
    ('hw/mapwriter.py', 'm.d.sync += [wr_y.eq(0), wr_x.eq(0), wr_g.eq(0), slot.eq(0), fill.eq(0),', 70, '0 -> 1'):
        'the first row fills buffer 1 instead of 0: the two buffers are symmetric',
    # hw/residual.py (reviewed survivors of its first mutation run)
    ('hw/residual.py', '"add": 1,       # 1: add into the stream; 0: begin it', 8, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/residual.py', '"last": 1,      # the step\'s final beat', 9, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/residual.py', 'self._shift_words = list(shift_words) or [0, 0]', 43, '0 -> 1'):
        'the filler of an empty shift ROM: with no shift words no step reads it',
    ('hw/residual.py', 'self._shift_words = list(shift_words) or [0, 0]', 46, '0 -> 1'):
        'the filler of an empty shift ROM: with no shift words no step reads it',
    ('hw/residual.py', '"written_last": Out(1),', 21, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/residual.py', 'shape=unsigned(lanes * shift_bits), depth=max(2, len(self._shift_words)),', 47, '2 -> 3'):
        'a deeper shift ROM: the extra words are never addressed',
    ('hw/residual.py', '"start": In(1),', 13, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
    ('hw/residual.py', '"index": address_width, "group": fields["groups_m1"], "last": 1,', 63, '1 -> 2'):
        'a one-bit flag port widened: only bit 0 is driven and read',
}

BINOPS = {ast.Add: (ast.Sub, "+", "-"), ast.Sub: (ast.Add, "-", "+"),
          ast.BitAnd: (ast.BitOr, "&", "|"), ast.BitOr: (ast.BitAnd, "|", "&"),
          ast.LShift: (ast.RShift, "<<", ">>"), ast.RShift: (ast.LShift, ">>", "<<")}
CMPOPS = {ast.GtE: ">=", ast.Gt: ">", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}
CMPFLIP = {ast.GtE: ast.Gt, ast.Gt: ast.GtE, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
           ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


@dataclass
class Mutant:
    file: str
    line: int
    col: int          # character offset of the replaced text within the line (0-based)
    end_col: int
    original: str
    mutant: str
    text: str         # the line, stripped
    indent: int = 0   # characters stripped from the line's start
    scope: str = ""   # the innermost enclosing function
    scopes: tuple = ()  # every enclosing function, outermost first

    @property
    def column(self) -> int:
        """1-based column of the replaced text within the stripped line."""
        return self.col - self.indent + 1

    @property
    def flip(self) -> str:
        return f"{self.original} -> {self.mutant}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def key(self):
        return (self.file, self.text, self.column, self.flip)

    def equivalence(self):
        """The reason this mutant is listed as equivalent, or None. A key with a fifth element
        (the enclosing function) applies only there: for identical lines in two functions."""
        return EQUIVALENT.get(self.key() + (self.scope,), EQUIVALENT.get(self.key()))

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        line = lines[self.line - 1]
        assert line[self.col:self.end_col] == self.original, (self.where, self.original)
        lines[self.line - 1] = line[:self.col] + self.mutant + line[self.end_col:]
        return "".join(lines)


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside a part of the tree that is not mutated."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assert, ast.Raise, ast.JoinedStr)):
            roots.append(node)
        elif isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body):
            roots.append(node.test)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.extend(a.annotation for a in
                         node.args.args + node.args.kwonlyargs + node.args.posonlyargs
                         if a.annotation is not None)
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", "")
            if func.lstrip("_").startswith("check"):
                roots.append(node)
        elif isinstance(node, ast.AugAssign) and _is_domain(node.target):
            roots.append(node.target)   # the operator: ``m.d.sync -= ...`` is not a circuit
    skipped = set()
    for root in roots:
        skipped.update(id(n) for n in ast.walk(root))
    return skipped


def _is_domain(target: ast.AST) -> bool:
    """``m.d.comb``, ``m.d.sync``, ``m.d[...]``: Amaranth's statement lists."""
    if isinstance(target, ast.Subscript):
        target = target.value
    else:
        if not isinstance(target, ast.Attribute):
            return False
        target = target.value
    return isinstance(target, ast.Attribute) and target.attr == "d"


def _operator_position(lines: list[str], left: ast.AST, right: ast.AST, symbol: str):
    """(line, col) of ``symbol`` in the gap between two operands (only brackets, blanks and
    comments can share that gap with the operator)."""
    row, col = left.end_lineno, left.end_col_offset
    while row <= right.lineno:
        line = lines[row - 1]
        stop = right.col_offset if row == right.lineno else len(line)
        gap = line[col:stop].split("#", 1)[0]
        at = gap.find(symbol)
        if at >= 0:
            return row, col + at
        row, col = row + 1, 0
    raise ValueError(f"operator {symbol!r} not found after line {left.end_lineno}")


def mutants_of(path: str, both: bool = False) -> list[Mutant]:
    source = (ROOT / path).read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    found: list[Mutant] = []

    functions = sorted((f.lineno, f.end_lineno, f.name) for f in ast.walk(tree)
                       if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)))

    def add(row, col, original, replacement):
        line = lines[row - 1]
        scopes = tuple(name for start, end, name in functions if start <= row <= end)
        found.append(Mutant(path, row, col, col + len(original), original, replacement,
                            line.strip(), len(line) - len(line.lstrip()),
                            scopes[-1] if scopes else "", scopes))

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            _, symbol, other = BINOPS[type(node.op)]
            row, col = _operator_position(lines, node.left, node.right, symbol)
            add(row, col, symbol, other)
        elif (isinstance(node, ast.AugAssign) and type(node.op) in BINOPS
              and id(node.target) not in skipped):
            _, symbol, other = BINOPS[type(node.op)]
            row, col = _operator_position(lines, node.target, node.value, symbol + "=")
            add(row, col, symbol + "=", other + "=")
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                if type(op) in CMPOPS:
                    symbol = CMPOPS[type(op)]
                    row, col = _operator_position(lines, left, right, symbol)
                    add(row, col, symbol, CMPOPS[CMPFLIP[type(op)]])
                left = right
        elif isinstance(node, ast.BoolOp):
            symbol, other = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for left, right in zip(node.values, node.values[1:]):
                row, col = _operator_position(lines, left, right, symbol)
                add(row, col, symbol, other)
        elif (isinstance(node, ast.Constant) and type(node.value) is int
              and node.lineno == node.end_lineno):
            text = lines[node.lineno - 1][node.col_offset:node.end_col_offset]
            if not text.isdigit():       # hex, underscores: leave alone
                continue
            for value in (node.value + 1, node.value - 1)[:2 if both else 1]:
                if value >= 0:
                    add(node.lineno, node.col_offset, text, str(value))
    found.sort(key=lambda m: (m.line, m.col, m.mutant))
    return found


def _outcome(returncode: int) -> str:
    # pytest: 0 all passed, 5 nothing collected (both: the mutant survives); else a failure.
    return "survived" if returncode in (0, 5) else "killed"


FORK_SERVER = r"""
import json, os, signal, sys, time
import numpy, pytest, amaranth, amaranth.sim, amaranth.lib.wiring, amaranth.lib.stream  # noqa
import amaranth.lib.data, amaranth.lib.memory, amaranth.back.rtlil  # noqa
sys.path.insert(0, os.getcwd())
for request in sys.stdin:
    request = json.loads(request)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            rc = pytest.main(request["args"])
        except BaseException:
            rc = 3
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(rc))
    deadline = time.monotonic() + request["timeout"]
    timeout, rc = False, None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            timeout = True
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    print(json.dumps(dict(rc=rc, timeout=timeout)), flush=True)
"""


class Worker:
    """A private copy of the project in which one mutant at a time is written and tested."""

    def __init__(self, base: Path, index: int, fork: bool = True):
        self.fork, self.server = fork, None
        self.dir = base / f"w{index}"
        self.dir.mkdir()
        for name in COPIED:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, self.dir / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc", "build", "sim_build", ".pytest_cache"))
            else:
                shutil.copy2(src, self.dir / name)
        where = subprocess.run([sys.executable, "-c", "import hw; print(hw.__file__)"],
                               cwd=self.dir, capture_output=True, text=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(self.dir.resolve()):
            raise RuntimeError(f"the copy in {self.dir} imports hw from {where}, not from itself")

    def _env(self):
        return dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

    def run(self, tests: list[str], timeout: float) -> tuple[str, float, str]:
        """Run pytest on ``tests`` in this copy: (survived|killed|timeout, seconds, output)."""
        if self.fork:
            return self._run_forked(tests, timeout)
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests],
                                cwd=self.dir, env=self._env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", time.monotonic() - start, ""
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        return _outcome(proc.returncode), time.monotonic() - start, out

    def _run_forked(self, tests, timeout):
        """The same run, forked from a server that has imported pytest, Amaranth and numpy once
        (never the project's modules, so each fork imports the mutant afresh)."""
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], cwd=self.dir,
                                           env=self._env(), stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True,
                                           start_new_session=True)
        log = self.dir / "pytest.log"
        start = time.monotonic()
        self.server.stdin.write(json.dumps(dict(args=[*PYTEST_ARGS, *tests], log=str(log),
                                                timeout=timeout)) + "\n")
        self.server.stdin.flush()
        reply = self.server.stdout.readline()
        took = time.monotonic() - start
        if not reply:
            raise RuntimeError(f"the fork server in {self.dir} died")
        reply = json.loads(reply)
        out = log.read_text(errors="replace") if log.exists() else ""
        if reply["timeout"]:
            return "timeout", took, out
        return _outcome(reply["rc"]), took, out

    def close(self):
        if self.server is not None and self.server.poll() is None:
            self.server.stdin.close()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)

    def test(self, mutant: Mutant, timeout: float) -> tuple[str, float, str]:
        target = self.dir / mutant.file
        original = target.read_text()
        try:
            target.write_text(mutant.apply(original))
            for stale in (target.parent / "__pycache__").glob(target.stem + ".*"):
                stale.unlink()
            return self.run(TESTS[mutant.file], timeout)
        finally:
            target.write_text(original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutate", description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="+", default=DEFAULT_FILES, help="hw files to mutate")
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers")
    parser.add_argument("--limit", type=int, help="test a random sample of this many mutants per file")
    parser.add_argument("--seed", type=int, default=0, help="seed of --limit's sample")
    parser.add_argument("--lines", help="only mutants on these lines, e.g. 120-180")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 3x the file's clean run, at least 15)")
    parser.add_argument("--both", action="store_true",
                        help="integer constants also n -> n-1 (default only n -> n+1)")
    parser.add_argument("--results", help="write every mutant's outcome to this JSON file")
    parser.add_argument("--retest", metavar="JSON",
                        help="a --results file of an earlier run: mutants it records as killed "
                             "keep that outcome, the rest run again (after adding tests)")
    parser.add_argument("--verilator", action="store_true",
                        help="also run the file's Verilator tests (minutes per mutant)")
    parser.add_argument("--no-fork", action="store_true",
                        help="a fresh interpreter per mutant instead of forking a warm one")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    if args.verilator:
        PYTEST_ARGS[PYTEST_ARGS.index("-m") + 1] = "not slow"
        for file, extra in VERILATOR_TESTS.items():
            TESTS[file] = TESTS[file] + [t for t in extra if t not in TESTS[file]]

    for file in args.files:
        if file not in TESTS:
            parser.error(f"{file}: no tests mapped (known: {', '.join(TESTS)})")

    plan: list[Mutant] = []
    counts = {}
    for file in args.files:
        mutants = mutants_of(file, args.both)
        if args.lines:
            lo, _, hi = args.lines.partition("-")
            mutants = [m for m in mutants if int(lo) <= m.line <= int(hi or lo)]
        if not args.verilator:
            slow = VERILATOR_ONLY.get(file, set())
            left = [m for m in mutants if slow & set(m.scopes)]
            if left:
                print(f"{file}: {len(left)} mutants in {', '.join(sorted(slow))}() left out "
                      "(only the Verilator tests run that circuit; --verilator includes them)")
                mutants = [m for m in mutants if not slow & set(m.scopes)]
        counts[file] = len(mutants)
        if args.limit is not None and args.limit < len(mutants):
            mutants = sorted(random.Random(args.seed).sample(mutants, args.limit),
                             key=lambda m: (m.line, m.col))
        plan.extend(mutants)
    if args.list:
        for m in plan:
            tag = " [equivalent]" if m.equivalence() else ""
            print(f"{m.where}: {m.flip}{tag}    {m.text}")
        print(f"{len(plan)} mutants")
        return 0

    every = [m for f in args.files for m in mutants_of(f, args.both)]
    known = {m.key() for m in every} | {m.key() + (m.scope,) for m in every}
    for key in EQUIVALENT:
        if key[0] in args.files and key not in known:
            print(f"warning: equivalent-list entry matches no mutant (line edited?): {key}")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # kill: clean up as for Ctrl-C
    base = Path(tempfile.mkdtemp(prefix="mutate-"))
    results: dict[int, tuple[str, float]] = {}
    lock = threading.Lock()

    def save():
        """Write the outcomes so far (after every mutant: an interrupted run resumes with
        --retest)."""
        if not args.results:
            return
        with lock:
            rows = [dict(file=m.file, line=m.line, column=m.column, text=m.text, flip=m.flip,
                         status=results[i][0], seconds=round(results[i][1], 2))
                    for i, m in enumerate(plan) if i in results]
            path = Path(args.results)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(rows, indent=1) + "\n")
            path.with_suffix(".tmp").replace(path)
    try:
        workers = [Worker(base, i, fork=not args.no_fork) for i in range(max(1, args.jobs))]
        timeouts = {}
        for file in args.files:
            status, took, out = workers[0].run(TESTS[file], timeout=1800)
            if status != "survived":
                print(out[-3000:])
                print(f"{file}: its tests fail without any mutant; fix that first")
                return 2
            timeouts[file] = args.timeout or max(15.0, 3 * took)
            print(f"{file}: clean run {took:.1f} s, {counts[file]} mutants"
                  f"{f', sampling {args.limit}' if args.limit else ''}, timeout {timeouts[file]:.0f} s",
                  flush=True)

        earlier = {}
        if args.retest:
            for r in json.loads(Path(args.retest).read_text()):
                if r["status"] in ("killed", "timeout"):
                    earlier[(r["file"], r["text"], r["column"], r["flip"])] = r["status"]
        todo = []
        for i, m in enumerate(plan):
            if m.equivalence():
                results[i] = ("equivalent", 0.0)
            elif m.key() in earlier:
                results[i] = (earlier[m.key()], 0.0)
            else:
                todo.append((i, m))
        if args.retest:
            print(f"{len(plan) - len(todo)} mutants keep their outcome from {args.retest}; "
                  f"{len(todo)} run again", flush=True)
        free = list(workers)

        def one(item):
            i, m = item
            worker = free.pop()
            try:
                status, took, _ = worker.test(m, timeouts[m.file])
            finally:
                free.append(worker)
            results[i] = (status, took)
            save()
            if status == "survived":
                print(f"  SURVIVED {m.where}: {m.flip}    {m.text}", flush=True)
            done = len(results)
            if done % 25 == 0:
                print(f"  ... {done}/{len(plan)}", flush=True)

        start = time.monotonic()
        pool = ThreadPoolExecutor(len(workers))
        try:
            for future in [pool.submit(one, item) for item in todo]:
                future.result()
        finally:
            # Ctrl-C: drop the queued mutants; the ones running finish (seconds).
            pool.shutdown(wait=True, cancel_futures=True)
        elapsed = time.monotonic() - start
    except KeyboardInterrupt:
        print("interrupted: partial results below")
        elapsed = 0.0
    finally:
        for worker in locals().get("workers", []):
            worker.close()
        shutil.rmtree(base, ignore_errors=True)

    print()
    header = f"{'file':<20}{'mutants':>8}{'killed':>8}{'timeout':>8}{'equiv':>7}{'survived':>9}{'kill rate':>10}"
    print(header)
    print("-" * len(header))
    total = dict(mutants=0, killed=0, timeout=0, equivalent=0, survived=0)
    for file in args.files:
        row = dict(mutants=0, killed=0, timeout=0, equivalent=0, survived=0)
        for i, m in enumerate(plan):
            if m.file == file and i in results:
                row["mutants"] += 1
                row[results[i][0]] += 1
        for k in total:
            total[k] += row[k]
        rows = [(file, row)]
        for name, r in rows:
            scored = r["mutants"] - r["equivalent"]
            rate = f"{100 * (r['killed'] + r['timeout']) / scored:.1f} %" if scored else "-"
            print(f"{name:<20}{r['mutants']:>8}{r['killed']:>8}{r['timeout']:>8}"
                  f"{r['equivalent']:>7}{r['survived']:>9}{rate:>10}")
    scored = total["mutants"] - total["equivalent"]
    rate = f"{100 * (total['killed'] + total['timeout']) / scored:.1f} %" if scored else "-"
    print(f"{'total':<20}{total['mutants']:>8}{total['killed']:>8}{total['timeout']:>8}"
          f"{total['equivalent']:>7}{total['survived']:>9}{rate:>10}")
    if args.limit:
        print(f"(a sample of at most {args.limit} mutants per file, seed {args.seed})")
    print(f"wall {elapsed:.0f} s with {args.jobs} worker(s)")
    survivors = [(i, m) for i, m in enumerate(plan) if results.get(i, ("",))[0] == "survived"]
    timeouts_hit = [(i, m) for i, m in enumerate(plan) if results.get(i, ("",))[0] == "timeout"]
    if timeouts_hit:
        print("\nkilled by timeout:")
        for _, m in timeouts_hit:
            print(f"  {m.where}: {m.flip}    {m.text}")
    if survivors:
        print("\nsurviving mutants:")
        for _, m in survivors:
            print(f"  {m.where}: {m.flip}    {m.text}")
    save()
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
