"""Progress bars for long work (training, co-simulation, synthesis), quiet under CI.

One place decides whether bars are drawn: they go to stderr through ``tqdm``, and are switched off
when ``CI`` is set to a true value (``CI=true`` on CI machines) or ``SDT_PROGRESS=0``. Bars never
carry results: everything a user must read is printed on stdout as before.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

__all__ = ["enabled", "bar", "stage"]


def enabled() -> bool:
    """Return True unless progress is switched off (``CI`` true, or ``SDT_PROGRESS=0``)."""
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    return os.environ.get("SDT_PROGRESS", "1").strip() != "0"


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
        leave: bool = False) -> tqdm:
    """Return a ``tqdm`` bar on stderr (disabled when :func:`enabled` is False)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                disable=not enabled(), dynamic_ncols=True)


def stage(message: str) -> None:
    """Print one stage line (``[stage] message``) on stderr unless progress is off."""
    if enabled():
        print(f"[stage] {message}", file=sys.stderr, flush=True)
