"""The parts of the SDSA unit (``hw.sdsa``) that its datapaths share.

The unit's interface: :class:`Variant`, :data:`DEFAULT_THRESHOLDS` and the payload layouts
(:func:`sdsa_input_layout`, :func:`sdsa_output_layout`), all re-exported by ``hw.sdsa``. And small
circuit helpers internal to the unit (``_counter``, ``_select``, ``_chunks_of``, ``_depth``, the
``_Phase`` of a head pass), used by ``hw/sdsa.py``, ``hw/sdsa_matmul.py`` (SDSA-3/4) and
``hw/sdsa_column.py`` (SDSA-1/2).
"""

from __future__ import annotations

import operator

from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum

from hw.params import log2_ceil

__all__ = ["Variant", "DEFAULT_THRESHOLDS", "sdsa_input_layout", "sdsa_output_layout"]


class Variant(enum.Enum, shape=3):
    """Name the spike-driven self-attention operator a unit computes."""

    #: ``Q AND SN(sum over tokens of K AND V)`` (Spike-Driven Transformer V1).
    SDSA1 = 1
    #: ``Q AND SN(sum over tokens of K)``: OUR INTERPRETATION of the unpublished SDSA-2.
    SDSA2 = 2
    #: ``SN(Q (K^T V))`` with a fixed threshold (the official Meta-SpikeFormer operator).
    SDSA3 = 3
    #: SDSA-3 whose threshold is read from a per-layer threshold memory (learned, quantized).
    SDSA4 = 4


#: Thresholds on the raw counts when none is given: V1's channel neuron (theta 0.5 on counts of
#: scale 1) gives 1; SDSA-3's ``* 0.125`` then theta 0.5 gives 8; SDSA-4 starts at SDSA-3's value.
DEFAULT_THRESHOLDS = {Variant.SDSA1: 1, Variant.SDSA2: 1, Variant.SDSA3: 8, Variant.SDSA4: (8,)}


def _variant(value) -> Variant:
    if isinstance(value, Variant):
        return value
    try:
        return Variant(operator.index(value))
    except (TypeError, ValueError):
        raise ValueError(f"variant must be a Variant or one of 1, 2, 3, 4, not {value!r}") from None


def _counter(count: int, name: str) -> Signal:
    """Return a register counting ``0 .. count - 1``, at least 1 bit wide.

    Amaranth emits a 0-bit signal as a ``[-1:0]`` Verilog vector, which is two bits wide there and
    trips Verilator's lint; one spare bit costs nothing and keeps the Verilog plain.
    """
    return Signal(range(max(count, 2)), name=name)


def _select(m: Module, index, options, shape, name: str) -> Signal:
    """Return ``options[index]`` through a multiplexer.

    A variable slice (``word_select``, an array view indexed by a signal) scales the index by the
    element width, which Amaranth emits as a multiplication; a ``Switch`` keeps the unit free of
    multiplier cells (``tests/test_sdsa_synth.py``).
    """
    selected = Signal(shape, name=name)
    if len(options) == 1:  # no index to decode (a one-chunk row)
        m.d.comb += selected.eq(options[0])
        return selected
    with m.Switch(index):
        for position, option in enumerate(options):
            with m.Case(position):
                m.d.comb += selected.eq(option)
    return selected


def _chunks_of(value, lanes: int, chunks: int) -> list:
    """Split a padded ``chunks * lanes``-bit value into its chunks (constant slices)."""
    return [value[c * lanes:(c + 1) * lanes] for c in range(chunks)]


def _depth(words: int) -> int:
    """Return a memory depth of at least 2, so that the address port is never 0 bits wide."""
    return max(words, 2)


def sdsa_input_layout(head_width: int, *, variant=Variant.SDSA3, layers: int = 1):
    """Return the payload layout of an SDSA unit's input stream: one token of one head.

    Fields, first in the least significant bits: ``q``, ``k`` and (except SDSA-2) ``v``, each a
    ``head_width``-bit spike row (bit j: channel j of the head); ``first`` (1 on a sample's first
    time step; read on the first beat of each time step); for SDSA-4, ``layer`` (which entry of the
    threshold memory this time step uses, ``ceil(log2(layers))`` bits; read with ``first``).
    """
    variant = _variant(variant)
    fields = {"q": head_width, "k": head_width}
    if variant != Variant.SDSA2:
        fields["v"] = head_width
    fields["first"] = 1
    if variant == Variant.SDSA4:
        fields["layer"] = log2_ceil(layers)
    return data.StructLayout(fields)


def sdsa_output_layout(head_width: int):
    """Return the payload layout of an SDSA unit's output stream: ``spikes`` of one token."""
    return data.StructLayout({"spikes": head_width})


class _Phase(enum.Enum, shape=2):
    """Name the part of a head pass: loading tokens (KV / column sums), LIF, Q pass."""

    LOAD = 0
    LIF = 1
    QPASS = 2
