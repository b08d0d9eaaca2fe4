"""Parameter checks shared by every hardware unit: errors name the parameter, value and range."""

from __future__ import annotations

import operator

__all__ = ["check_int", "bits_for"]


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
