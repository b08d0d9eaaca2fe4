"""Integer leaky integrate-and-fire neurons kept in registers (tau = 2, hard reset).

The arithmetic contract (``docs/arithmetic.md``); each stream beat is one time step of ``lanes`` neurons::

    u      = v + x                 (input_width + 1 bits; never overflows)
    spike  = u >= threshold        (>=, not >)
    v_next = 0 if spike else u >>> 1   (arithmetic shift: floor)

The threshold is in doubled units (``ceil(2 * theta / scale)``, see ``quant.intops``). A beat whose
``first`` flag is set starts a new sample: the stored membrane is treated as 0.

:class:`LIF` keeps one membrane per lane in registers. The memory-backed array that serves a whole
layer across time steps, :class:`hw.lif_array.LIFArray`, lives in ``hw/lif_array.py`` (re-exported
here with its layouts). Both build the update with :func:`hw.neuron.lif_update`, the one place it is
written (also used by the SDSA unit's channel neurons).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lif_array import LIFArray, lif_array_input_layout, lif_array_output_layout
from hw.neuron import lif_update
from hw.params import check_int

__all__ = ["LIF", "lif_input_layout", "lif_output_layout",
           # re-exported: hw.lif_array and hw.neuron are their homes
           "LIFArray", "lif_array_input_layout", "lif_array_output_layout", "lif_update"]


def lif_input_layout(lanes: int, input_width: int, *, streamed_threshold: bool = False):
    """Return the payload layout of a LIF's input stream.

    Fields, first in the least significant bits: ``x`` (``lanes`` signed inputs), ``first``
    (1: first time step of a sample) and, with ``streamed_threshold``, ``threshold`` (``lanes``
    signed thresholds of ``input_width + 1`` bits).
    """
    fields = {"x": data.ArrayLayout(signed(input_width), lanes), "first": 1}
    if streamed_threshold:
        fields["threshold"] = data.ArrayLayout(signed(input_width + 1), lanes)
    return data.StructLayout(fields)


def lif_output_layout(lanes: int, membrane_width: int):
    """Return the payload layout of a LIF's output stream: ``spikes`` (bit i: lane i) and the
    ``membrane`` potentials after the step (0 where a spike fired)."""
    return data.StructLayout({
        "spikes": lanes,
        "membrane": data.ArrayLayout(signed(membrane_width), lanes),
    })


class LIF(wiring.Component):
    """Compute ``lanes`` integer LIF neurons, one time step per beat, membranes kept in registers.

    Parameters
    ----------
    lanes : int
        Neurons updated per beat (>= 1).
    input_width : int
        Signed width of each input ``x`` (>= 2).
    membrane_width : int, optional
        Signed width of each stored membrane; defaults to ``input_width``. It may not be narrower:
        ``|v| < 2**(input_width-1)`` is what proves ``v_next`` fits (``docs/arithmetic.md``).
    threshold : int or sequence of int, optional
        Integer threshold of every lane (one int) or of each lane (``lanes`` ints), each in the
        signed ``input_width + 1``-bit range of ``u``. ``None``: thresholds arrive with each beat
        in the payload's ``threshold`` field.

    Members
    -------
    i : In(stream.Signature(lif_input_layout(...)))
        Inputs of one time step.
    o : Out(stream.Signature(lif_output_layout(...)))
        Spikes and membranes of that step, :attr:`latency` cycles later when not stalled.
    """

    def __init__(self, *, lanes: int, input_width: int, membrane_width: int | None = None,
                 threshold: int | Sequence[int] | None = None):
        self._lanes = check_int("lanes", lanes)
        self._input_width = check_int("input_width", input_width, 2)
        if membrane_width is None:
            membrane_width = input_width
        self._membrane_width = check_int("membrane_width", membrane_width, 2)
        if self._membrane_width < self._input_width:
            raise ValueError(
                f"membrane_width {membrane_width} is narrower than input_width {input_width}: "
                "the membrane bound |v| < 2**(input_width-1) needs at least input_width bits"
            )
        sum_width = max(self._input_width, self._membrane_width) + 1
        self._sum_width = sum_width
        if threshold is None:
            self._thresholds = None
        else:
            if isinstance(threshold, Sequence):
                thresholds = tuple(operator.index(t) for t in threshold)
                if len(thresholds) != self._lanes:
                    raise ValueError(
                        f"threshold has {len(thresholds)} values but lanes is {self._lanes}"
                    )
            else:
                thresholds = (operator.index(threshold),) * self._lanes
            low, high = -(1 << (sum_width - 1)), (1 << (sum_width - 1)) - 1
            for lane, value in enumerate(thresholds):
                if not low <= value <= high:
                    raise ValueError(
                        f"threshold {value} of lane {lane} is outside [{low}, {high}], the range "
                        f"of v + x with {sum_width - 1}-bit operands"
                    )
            self._thresholds = thresholds
        super().__init__({
            "i": In(stream.Signature(lif_input_layout(
                self._lanes, self._input_width, streamed_threshold=threshold is None))),
            "o": Out(stream.Signature(lif_output_layout(self._lanes, self._membrane_width))),
        })

    @property
    def lanes(self) -> int:
        """Neurons per beat."""
        return self._lanes

    @property
    def input_width(self) -> int:
        """Signed width of each input."""
        return self._input_width

    @property
    def membrane_width(self) -> int:
        """Signed width of each stored membrane potential."""
        return self._membrane_width

    @property
    def thresholds(self) -> tuple[int, ...] | None:
        """Per-lane constant thresholds, or ``None`` when they arrive with each beat."""
        return self._thresholds

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without backpressure."""
        return 1

    def elaborate(self, platform):
        m = Module()
        membrane = [Signal(signed(self._membrane_width), name=f"membrane_{lane}")
                    for lane in range(self._lanes)]

        # One register stage: the output holds until taken; a new beat enters when it is.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.o.valid.eq(1)
            for lane in range(self._lanes):
                previous = Signal(signed(self._membrane_width), name=f"previous_{lane}")
                total = Signal(signed(self._sum_width), name=f"total_{lane}")
                fire = Signal(name=f"fire_{lane}")
                if self._thresholds is None:
                    threshold = self.i.payload.threshold[lane]
                else:
                    threshold = Const(self._thresholds[lane], signed(self._sum_width))
                lif_update(m, first=self.i.payload.first, stored=membrane[lane],
                           x=self.i.payload.x[lane], threshold=threshold, total=total,
                           spike=fire, previous=previous, compare_width=self._sum_width + 1,
                           name=f"lane_{lane}",
                           registers=(membrane[lane], self.o.payload.membrane[lane]))
                m.d.sync += self.o.payload.spikes[lane].eq(fire)
        return m
