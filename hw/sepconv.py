"""SepConv unfused on spikes: the depthwise conv, its sums' bit planes, and the pointwise conv.

One layer's ``dwconv -> pwconv2`` of the official SepConv, from the spikes of ``Conv.lif2`` to
``pwconv2``'s integer sums, with additions only and no multiplier:

``i`` -> :class:`hw.depthwise.DepthwiseEngine` (the ``K x K`` depthwise conv, the lanes on one
spike's taps) -> :class:`hw.planes.PlaneWriter` (each sum's sign and magnitude bits as spike rows,
``2 * P`` planes a channel) -> :class:`hw.progengine.ProgEngine` (a 1x1 conv over the planes, with
the weights shifted and signed ahead of time by :func:`hw.planes.plane_weights`, read from a ROM)
-> ``o``.

Function: ``o`` gives ``pwconv2(depthwise(spikes) + dw_bias) + pw_bias``, exactly, whenever every
depthwise sum's magnitude is below ``2**P`` (``error`` is raised otherwise); the reference is
the unfused integer model (``quant`` with ``fuse_sepconv=False``) or
:func:`sepconv_reference`.

Ports
    ``start`` (In): pulse to run the layer (the engine must be ``ready``: after reset it clears
    its bank first). ``ready`` (Out): the pointwise engine takes a frame. ``busy`` (Out): the
    depthwise engine or the plane writer is still at work. ``error`` (Out): the plane writer's
    overflow flag.
    ``i`` (In): the input spike rows, channel by channel, row by row (as
    :class:`hw.depthwise.DepthwiseEngine`'s ``i``).
    ``o`` (Out): the pointwise engine's output beats, one per (pixel, group of ``lanes`` output
    channels) (:class:`hw.progengine.ProgEngine`'s ``o``).

Cycles: the three stages overlap. The depthwise engine has the cycles
:func:`hw.depthwise.depthwise_cycles` gives. The plane writer gives one word a cycle,
``2 * P * H`` a channel. The pointwise engine takes one cycle per set bit of the planes and
group of output channels, and skips empty words (``input_buffer``). ``python -m sim.sepconv
--rtl`` measures the whole on the demo's layers.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.depthwise import DepthwiseEngine, depthwise_reference
from hw.packing import accumulator_bound, signed_width
from hw.planes import PlaneWriter, plane_frame, plane_weights
from hw.progengine import ProgEngine
from hw.progengine_config import layer_config, pack_layer_biases, pack_layer_weights
from quant.intops import conv2d_spikes

__all__ = ["UnfusedSepConv", "sepconv_reference"]


def sepconv_reference(spikes, dw_weight, dw_bias, pw_weight, pw_bias, planes: int):
    """What :class:`UnfusedSepConv` computes for a ``[C, H, W]`` spike map, through the planes
    (``[Cout, H, W]``)."""
    sums = depthwise_reference(spikes, dw_weight, dw_bias)
    return conv2d_spikes(plane_frame(sums, planes), plane_weights(pw_weight, planes), pw_bias)


class UnfusedSepConv(wiring.Component):
    """One SepConv's ``dwconv -> pwconv2`` on spikes (module docstring).

    Parameters
    ----------
    dw_weight, dw_bias : integer arrays ``[C, K, K]`` (or ``[C, 1, K, K]``), ``[C]``
        The depthwise conv.
    pw_weight, pw_bias : integer arrays ``[Cout, C]`` (or ``[Cout, C, 1, 1]``), ``[Cout]``
        The pointwise conv.
    planes : int
        ``P``, magnitude bits of a depthwise sum (from its proven range).
    height, width : int
        The map.
    lanes : int
        Lanes of both engines (default 16).
    input_buffer : int
        The pointwise engine's input buffer: words without spikes cost nothing (default 16).
    """

    def __init__(self, dw_weight, dw_bias, pw_weight, pw_bias, *, planes: int, height: int,
                 width: int, lanes: int = 16, input_buffer: int = 16):
        self.depthwise = DepthwiseEngine(dw_weight, dw_bias, lanes=lanes, max_height=height,
                                         max_width=width)
        channels = np.asarray(dw_bias).shape[0]
        rows, cols = self.depthwise.geometry
        self.writer = PlaneWriter(sum_bits=self.depthwise.acc_bits, planes=planes, rows=rows,
                                  cols=cols, max_channels=channels, max_height=height,
                                  max_width=width)
        weight = plane_weights(pw_weight, planes)
        if weight.shape[1] != channels * 2 * planes:
            raise ValueError(f"pw_weight has {weight.shape[1] // (2 * planes)} input channels, "
                             f"the depthwise conv {channels}")
        bias = np.asarray(pw_bias, dtype=np.int64)
        weight_bits = signed_width(int(weight.min()), int(weight.max()))
        acc = signed_width(*accumulator_bound(weight, bias))
        self.layer = layer_config(in_channels=weight.shape[1], out_channels=weight.shape[0],
                                  kernel=1, height=height, width=width, lanes=lanes)
        self._words = pack_layer_weights(weight, lanes=lanes, weight_width=weight_bits,
                                         kernel_log=self.layer.kernel_log,
                                         groups_log=self.layer.groups_log)
        self.pointwise = ProgEngine(
            lanes=lanes, word_bits=width, max_words=self.layer.words_per_frame,
            max_channels=self.layer.in_channels, max_side=max(height, width), max_padding=0,
            max_kernel_log=self.layer.kernel_log, max_stride_log=0,
            max_groups_log=self.layer.groups_log, weight_width=weight_bits,
            accumulator_width=acc, weight_depth=len(self._words),
            bank_depth=self.layer.bank_words_needed,
            bias_words=pack_layer_biases(bias, lanes=lanes, accumulator_width=acc,
                                         groups=self.layer.groups),
            input_buffer=input_buffer)
        self._size = {"channels": channels, "height": height, "width": width}
        super().__init__({
            "start": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "error": Out(1),
            "i": self.depthwise.signature.members["i"],
            "o": self.pointwise.signature.members["o"],
        })

    @property
    def beats(self) -> int:
        """Output beats of a run."""
        return self.layer.beats

    def elaborate(self, platform):
        m = Module()
        m.submodules.depthwise = dw = self.depthwise
        m.submodules.writer = writer = self.writer
        m.submodules.pointwise = pw = self.pointwise
        rom = Memory(shape=unsigned(pw.lanes * pw.weight_width), depth=max(2, len(self._words)),
                     init=self._words)
        m.submodules.weights = rom
        port = rom.read_port()
        m.d.comb += [
            port.addr.eq(pw.weight.addr), port.en.eq(pw.weight.en),
            pw.weight.data.eq(port.data),
            pw.config.eq(pw.config_value(self.layer)),
            dw.config.eq(dw.config.shape().const(self._size)),
            writer.config.eq(writer.config.shape().const(self._size)),
            dw.start.eq(self.start), writer.start.eq(self.start),
            self.ready.eq(pw.ready), self.busy.eq(dw.busy | writer.busy),
            self.error.eq(writer.error),
        ]
        wiring.connect(m, wiring.flipped(self.i), dw.i)
        wiring.connect(m, dw.o, writer.i)
        wiring.connect(m, writer.o, pw.i)
        wiring.connect(m, pw.o, wiring.flipped(self.o))
        return m
