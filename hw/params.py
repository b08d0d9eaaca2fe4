"""Parameter checks shared by every hardware unit: errors name the parameter, value and range."""

from __future__ import annotations

import operator

__all__ = ["check_int", "bits_for", "ceil_div", "log2_ceil", "times", "NO_RW_CHECK",
           "ROM_STYLES", "rom_attrs", "THRESHOLD_STYLES", "threshold_attrs"]

#: Synthesis attributes of a memory whose read ports never use a word read in the cycle it is
#: written (each user says why in a comment beside it). Yosys then maps a read port that is on
#: the other port of a block RAM from its write port without soft logic: it need not emulate
#: read-old (or read-new) on a collision, which on an ECP5 costs a flip-flop per data bit and an
#: address compare in front of them. Simulation is unchanged (the Verilog port reads old data);
#: ``sim.tb.network`` checks on every co-simulation cycle that the network never collides where
#: the claim is that it never does.
NO_RW_CHECK = {"no_rw_check": 1}

#: Where a unit may put a read-only memory (its ``init`` fixed at generation): ``"logic"`` leaves
#: the choice to the synthesis tool (Yosys builds a small or wide ROM from LUTs and muxes, whose
#: address-to-data path then runs through several levels of logic and routing), ``"block"`` asks
#: for block RAM (``ram_style``: one clocked read, nothing in front of its output register).
ROM_STYLES = ("logic", "block")


def rom_attrs(name: str, style: str) -> dict:
    """Synthesis attributes of a read-only memory placed as ``style`` (one of :data:`ROM_STYLES`).

    Raises
    ------
    ValueError
        If ``style`` is not in :data:`ROM_STYLES`; the message names the parameter ``name``.
    """
    if style not in ROM_STYLES:
        raise ValueError(f"{name} must be one of {list(ROM_STYLES)}, not {style!r}")
    return {"ram_style": "block"} if style == "block" else {}


#: Where the LIF array's threshold memory goes: ``"auto"`` leaves the choice to the synthesis
#: tool (Yosys puts every shipped design point's in block RAM: a wide, shallow memory, 20
#: DP16KD side by side at 32 lanes, whose slow clock-to-output must then cross the die to the
#: LIF lanes' registers), ``"logic"`` asks for LUTs and multiplexers (``ram_style = "logic"``:
#: no block RAM, the read register beside the lanes).
THRESHOLD_STYLES = ("auto", "logic")


def threshold_attrs(name: str, style: str) -> dict:
    """Synthesis attributes of the threshold memory placed as ``style`` (one of
    :data:`THRESHOLD_STYLES`).

    Raises
    ------
    ValueError
        If ``style`` is not in :data:`THRESHOLD_STYLES`; the message names the parameter.
    """
    if style not in THRESHOLD_STYLES:
        raise ValueError(f"{name} must be one of {list(THRESHOLD_STYLES)}, not {style!r}")
    return {"ram_style": "logic"} if style == "logic" else {}


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking it is an integer in ``[minimum, maximum]``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` is refused too).
    ValueError
        If it is out of range; the message names the parameter, the value and the range.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {value!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {allowed}, not {value}")
    return value


def bits_for(count: int) -> int:
    """Return the unsigned width that holds ``0 .. count - 1`` (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def ceil_div(numerator: int, denominator: int) -> int:
    """Return ``ceil(numerator / denominator)`` for integers (``denominator > 0``)."""
    return -(-numerator // denominator)


def log2_ceil(value: int) -> int:
    """Return the smallest ``n >= 0`` with ``2**n >= value`` (0 for ``value <= 1``)."""
    return max(0, int(value) - 1).bit_length()


def times(value, constant: int):
    """Return ``value * constant`` (a non-negative constant) built from shifts and additions.

    Address arithmetic such as ``row * width + column`` multiplies by a layer constant. Written
    with ``*`` it becomes a multiplier cell that synthesis may map to a DSP block; as a sum of
    shifted copies (one per set bit of the constant) it is wiring and adders, so the units keep
    the promise that nothing outside the stem multiplies.
    """
    from amaranth.hdl import Const  # noqa: PLC0415 - keep this module importable without HDL

    constant = check_int("constant", constant, 0)
    terms = [value << bit for bit in range(constant.bit_length()) if (constant >> bit) & 1]
    if not terms:
        return Const(0, 1)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
