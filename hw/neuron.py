"""The integer LIF neuron's time step (tau = 2, hard reset), written once for every unit.

The arithmetic contract (``docs/arithmetic.md``, ``quant.intops.lif_step``)::

    u      = v + x                 (never overflows: the sum is one bit wider than its operands)
    spike  = u >= threshold        (>=, not >; the threshold is in doubled units)
    v_next = 0 if spike else u >>> 1   (arithmetic shift: floor)

and ``v`` reads as 0 on a sample's first time step. :func:`lif_update` builds it into a module for
one neuron; :class:`hw.lif.LIF`, :class:`hw.lif_array.LIFArray` and the SDSA unit's channel
neurons (``hw.sdsa``) all call it, so the update exists in one place.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed

__all__ = ["lif_update"]


def _fires(m: Module, previous, x, threshold, width: int, name: str) -> Signal:
    """Return a signal that is 1 where ``previous + x >= threshold``, with one carry chain.

    ``previous + x - threshold = previous + x + ~threshold + 1``: a carry-save step (one LUT level,
    no carries) turns the three operands into two, so a single carry chain decides the sign. A
    plain ``previous + x >= threshold`` puts two chains in series on the neuron's critical path.
    ``width`` must hold every value of ``previous + x - threshold`` (the sum's width plus one).
    """
    a, b, c = (Signal(signed(width), name=f"{name}_{part}") for part in ("v", "x", "t"))
    difference = Signal(signed(width), name=f"{name}_difference")
    m.d.comb += [
        a.eq(previous), b.eq(x), c.eq(~threshold),
        difference.eq((a ^ b ^ c) + (((a & b) | (a & c) | (b & c)) << 1) + 1),
    ]
    fire = Signal(name=f"{name}_fire")
    m.d.comb += fire.eq(~difference[-1])
    return fire


def lif_update(m: Module, *, first, stored, x, threshold, total, spike, previous=None,
               compare_width: int | None = None, name: str = "lif", registers=()):
    """Build one integer LIF neuron's time step into ``m``; return its next membrane.

    The one place the update of ``docs/arithmetic.md`` (``quant.intops.lif_step``) is written,
    for :class:`hw.lif.LIF`, :class:`hw.lif_array.LIFArray` and the SDSA unit's channel
    neurons::

        previous = 0 if first else stored        (a new sample starts from 0)
        u        = previous + x                  -> ``total``
        spike    = u >= threshold                -> ``spike``
        v_next   = 0 if spike else u >>> 1       (returned: hard reset, else halve with floor)

    Parameters
    ----------
    first, stored
        ``first`` selects 0 instead of the stored membrane ``stored``; ``stored=None``: no
        membrane is kept (the threshold leaves nothing to carry), ``previous`` is 0.
    x, threshold
        The input and the threshold (doubled units) of this neuron.
    total, spike
        Signals (or slices) the sum ``u`` and the spike are assigned to. ``total``'s shape sets
        the arithmetic: signed for the LIF units, unsigned for SDSA's counts; ``v_next`` is
        ``total >> 1``, so a signed total shifts arithmetically (floor).
    previous : Signal, optional
        A signal to hold ``0 if first else stored`` (the LIF units name it); without one the
        expression feeds the sum directly.
    compare_width : int, optional
        ``None``: ``spike`` is ``total >= threshold``. An int: the spike is decided by
        :func:`_fires` (one carry chain for ``previous + x - threshold``), which needs this width
        (the sum's width plus one).
    name : str
        Prefix of the signals :func:`_fires` creates.
    registers : sequence of Signal, optional
        Registers that take ``v_next`` at the clock edge (``LIF``'s membranes and output),
        written as ``If(spike)``/``Else`` in ``m.d.sync`` inside whatever ``m.If`` is open.

    Returns
    -------
    The expression ``Mux(spike, 0, total >> 1)`` (what the memory-backed units write back); with
    ``registers`` it has already been assigned to them and the return value may be ignored.

    The statements go into ``m`` in one fixed order (the compare's, then ``previous``, ``total``
    and ``spike``, then the registers), so each unit's netlist, and its Verilog, is the one it
    had when it wrote the update itself.
    """
    value = Const(0, 1) if stored is None else Mux(first, 0, stored)
    operand = value if previous is None else previous
    if compare_width is None:
        decision = total >= threshold
    else:
        decision = _fires(m, operand, x, threshold, compare_width, name)
    statements = [] if previous is None else [previous.eq(value)]
    m.d.comb += statements + [total.eq(operand + x), spike.eq(decision)]
    halved = total >> 1  # on a signed total an arithmetic shift: floor
    if registers:
        with m.If(spike):
            for register in registers:
                m.d.sync += register.eq(0)
        with m.Else():
            for register in registers:
                m.d.sync += register.eq(halved)
    return Mux(spike, 0, halved)
