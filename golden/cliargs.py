"""The argument parser of every command-line entry point: a refusal is one line.

argparse refuses a bad argument by printing the usage and then the error, several lines. The
project's contract for bad input is one line naming the problem, on standard error, and exit
status 2 (README): :class:`Parser` keeps argparse's message and
drops the usage. ``--help`` still prints the full usage, to standard output, with status 0.
It lives in ``golden`` because every layer's commands use it and ``golden`` imports nothing of
the project's.
"""

from __future__ import annotations

import argparse

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose :meth:`error` is one ``error: ...`` line, status 2."""

    def error(self, message):
        self.exit(2, f"error: {' '.join(str(message).split())}\n")
