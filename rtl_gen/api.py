"""Python API: a checkpoint to a quantized network, its Verilog and a co-simulation report.

In the style of hls4ml's ``convert`` / ``compile`` / ``predict``::

    import rtl_gen

    design = rtl_gen.convert("golden/checkpoints/demo.pth", T=1)  # load, check, quantize
    print(design.describe())                                      # the configuration it runs
    design.write_rtl("build/my_rtl")             # Verilog, $readmemh weight image, manifest
    design.compile()                             # Verilator model of the network (cached)
    report = design.simulate(images=1)           # the first held-out digit through the RTL
    assert report.all_bit_exact                  # logits and every spike == the integer model
    print(report.cycles, report.logits, report.predictions)

The steps are the command lines' own functions, not a second implementation:
:func:`convert` is ``sim.e2e.prepare``; :meth:`Design.simulate` is ``sim.e2e.select_inputs``,
``sim.e2e.simulate`` and ``sim.e2e.totals`` (``python -m sim.e2e`` runs the same per T);
:meth:`Design.write_rtl` is ``rtl_gen.emit.emit`` (``python -m rtl_gen``'s emission) given the
very net the co-simulation runs, and ``rtl_gen.lint.lint``.

Errors are exceptions carrying the one-line messages the command lines print:
``FileNotFoundError`` and ``golden.checkpoint.CheckpointError`` (the checkpoint),
``quant.quantize.QuantizationError``, ``sim.e2e.Unsupported`` (a model the network RTL cannot run,
a ``NotImplementedError``), ``sim.e2e.InputError`` (inputs; a ``ValueError``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim import e2e

from .config import DesignPoint

__all__ = ["convert", "Design", "Report"]


def convert(checkpoint=None, *, T: int = 1, lanes: int = 16, weight_bits: int = 8,
            variant: str | None = None, seed: int = 0, schedule: str = "time",
            parameters: str = "internal") -> "Design":
    """Load ``checkpoint`` at ``T`` time steps, quantize it and check that the network RTL runs it.

    Parameters
    ----------
    checkpoint : path-like or None
        Anything ``golden.load_checkpoint`` reads (default: the shipped demo checkpoint);
        ``'random'``: a seeded, randomly initialised demo model.
    T : int
        Time steps per image.
    lanes : int
        Lanes of the engine, the LIF array and every memory word (output channels a cycle; any
        count, an attention head taking ``ceil(head_width / lanes)`` words).
    weight_bits : int
        Weight bits of the quantization (pixel codes are 8 bits).
    variant : str, optional
        A ``golden.config`` variant name for a checkpoint that saves no configuration.
    seed : int
        Seed of the random weights of ``checkpoint='random'``.
    schedule : str
        The sequencer's order: ``"time"`` (every step of a time step, then the next) or
        ``"layer"`` (every time step of a step, then the next step; ``docs/shared-network.md``).
    parameters : str
        ``"external"``: the biases and LIF thresholds, like the weights, behind read ports of
        the design (the co-simulation answers them from ``$readmemh`` images).
    """
    network = e2e.prepare(T, checkpoint, variant_name=variant, lanes=lanes, seed=seed,
                          weight_bits=weight_bits, schedule=schedule, parameters=parameters)
    return Design(network, weight_bits)


@dataclass(frozen=True)
class Report:
    """One co-simulation at one ``T``: what the RTL computed, beside the golden models.

    ``logits`` are the RTL's (int64 ``[N, classes]``, summed over T), ``int_logits`` the integer
    golden model's, ``float_logits`` the float model's; ``predictions`` / ``int_predictions`` /
    ``float_predictions`` their argmax. ``bit_exact[i]`` is True when image ``i``'s logits and
    every LIF's spikes at every time step equal the integer model's; ``error`` names the first
    difference (None when there is none). ``cycles[i]`` is image ``i``'s cycle count; ``steps``
    the per-step table (cycles, ideal cycles, utilisation, SOPs, energy) and ``total`` its sums
    and the latency. ``labels`` are the digits' labels (None for files, arrays and random
    images); ``meaningful`` is False for random images (their predictions mean nothing).
    ``summary`` is ``sim.e2e.simulate``'s dictionary, as written to ``report_T{T}.json``.
    """

    T: int
    inputs: str
    source: str
    labels: list
    logits: np.ndarray
    int_logits: np.ndarray
    float_logits: np.ndarray
    predictions: list
    int_predictions: list
    float_predictions: list
    cycles: list
    bit_exact: list
    error: str | None
    steps: list = field(repr=False)
    total: dict = field(repr=False)
    summary: dict = field(repr=False)

    @property
    def all_bit_exact(self) -> bool:
        """True when every image ran and equals the integer golden model everywhere."""
        return (self.error is None and len(self.bit_exact) == len(self.int_predictions)
                and all(self.bit_exact)
                and np.array_equal(self.logits, self.int_logits))

    @property
    def meaningful(self) -> bool:
        """False for random inputs: their predictions mean nothing."""
        return self.source != "random"

    @classmethod
    def from_summary(cls, summary: dict) -> "Report":
        """Build a report from ``sim.e2e.simulate``'s summary (with ``totals`` applied)."""
        rtl = summary["rtl"]
        classes = len(summary["int_logits"][0]) if summary["int_logits"] else 0
        logits = np.array([r["logits"] for r in rtl], dtype=np.int64).reshape(-1, classes)
        return cls(T=summary["T"], inputs=summary["inputs"], source=summary["input_source"],
                   labels=list(summary["labels"]), logits=logits,
                   int_logits=np.asarray(summary["int_logits"], dtype=np.int64),
                   float_logits=np.asarray(summary["float_logits"], dtype=np.float64),
                   predictions=list(summary["rtl_pred"]),
                   int_predictions=list(summary["int_pred"]),
                   float_predictions=list(summary["float_pred"]),
                   cycles=[int(r["cycles"]) for r in rtl],
                   bit_exact=[bool(r["match"]) for r in rtl], error=summary["error"],
                   steps=list(summary["report"]), total=dict(summary.get("total") or {}),
                   summary=summary)


class Design:
    """A checkpoint quantized for the network RTL (made by :func:`convert`).

    Attributes: ``network`` (``sim.e2e.QuantizedNetwork``), ``checkpoint``, ``model`` (the float
    model), ``net`` (the ``quant.quantize.IntNet`` the RTL is generated from), ``cfg``, ``T``,
    ``lanes``, ``weight_bits``, ``trained`` (False for random weights).
    """

    def __init__(self, network: e2e.QuantizedNetwork, weight_bits: int = 8):
        self.network = network
        self.weight_bits = weight_bits

    checkpoint = property(lambda self: self.network.checkpoint)
    model = property(lambda self: self.network.model)
    net = property(lambda self: self.network.net)
    cfg = property(lambda self: self.network.cfg)
    T = property(lambda self: self.network.T)
    lanes = property(lambda self: self.network.lanes)
    trained = property(lambda self: self.network.trained)

    def __repr__(self) -> str:
        return f"Design({self.checkpoint!r}, {e2e.describe(self.cfg)}, lanes={self.lanes})"

    def describe(self) -> str:
        """One line naming the configuration (what ``python -m sim.e2e`` prints)."""
        return e2e.describe(self.cfg)

    def design_point(self, name: str = "api") -> DesignPoint:
        """Return the ``rtl_gen`` design point of this network's ``shared_network`` unit."""
        return DesignPoint(name=name, lanes=self.lanes, units=("shared_network",),
                           checkpoint=self.checkpoint, weight_bits=self.weight_bits,
                           time_steps=self.T, schedule=self.network.schedule,
                           parameters=self.network.parameters,
                           source="rtl_gen.api").validated()

    def write_rtl(self, out, *, lint: bool = False) -> dict:
        """Emit the network's Verilog into ``out`` (replaced as a whole) and return the manifest.

        Writes what ``python -m rtl_gen`` writes for a ``shared_network`` design point:
        ``shared_network.v`` (weights read through a port), its ``$readmemh`` image
        ``shared_network_weights.hex``, quant's memory images, the lint waivers and
        ``manifest.json``. ``lint=True`` also runs Verilator's ``-Wall`` lint and raises
        ``RuntimeError`` with its messages when it is not clean.
        """
        from .emit import emit  # noqa: PLC0415
        from .lint import lint as run_lint  # noqa: PLC0415

        out = Path(out)
        manifest = emit(self.design_point(), out, net=self.net)
        if lint:
            for unit in manifest["units"]:
                result = run_lint([out / unit["file"]], unit["name"])
                if not result.ok:
                    raise RuntimeError(f"lint of {out / unit['file']} failed:\n{result.messages}")
        return manifest

    def compile(self, simulator: str | None = None) -> Path:
        """Build the network for the simulator (Verilator by default, or ``'icarus'``); return
        its build directory. Conversion and build are cached under ``build/`` per design point,
        so a later :meth:`simulate` (or ``python -m sim.e2e`` on the same checkpoint and T)
        reuses them."""
        design, _, _ = e2e.compile_network(self.network, simulator)
        return design.build_dir

    def inputs(self, inputs=None, *, images: int | None = None, seed: int = 0) -> e2e.Inputs:
        """Return the images :meth:`simulate` would feed (``sim.e2e.select_inputs``)."""
        return e2e.select_inputs(self.net, images, inputs, seed)

    def simulate(self, inputs=None, *, images: int | None = None, seed: int = 0, out=None,
                 simulator: str | None = None, clock_mhz: float = 100.0) -> Report:
        """Co-simulate images on the network RTL and the golden models; return the :class:`Report`.

        ``inputs``: ``None`` (the held-out digits for a model taking 1x32x32, else seeded random
        images), ``'digits'``, ``'random'``, a ``.npy`` / ``.pt`` path, or float images
        ``[N, C, H, W]`` (numpy array or tensor) in the model's pixel range
        (``sim.e2e.pixel_range``); ``images``: take the first ``images``. ``out``: write the
        testbench files and ``report_T{T}.json`` / ``.csv`` / ``.png`` there (default: a
        temporary directory, removed afterwards). A mismatch is the report's ``error``, not an
        exception; bad inputs raise ``sim.e2e.InputError`` before anything runs.
        """
        chosen = self.inputs(inputs, images=images, seed=seed)
        if out is None:
            with tempfile.TemporaryDirectory(prefix="rtl_gen_api_") as scratch:
                summary = e2e.simulate(self.network, chosen, scratch, simulator)
        else:
            summary = e2e.simulate(self.network, chosen, out, simulator)
        if summary["rtl"]:
            if out is None:
                e2e.totals(summary, clock_mhz)
            else:
                e2e.write_report(summary, Path(out), clock_mhz)
        return Report.from_summary(summary)

    def predict(self, inputs, **options) -> np.ndarray:
        """Return the RTL's int64 logits ``[N, classes]`` for ``inputs`` (as :meth:`simulate`).

        Raises ``AssertionError`` naming the first difference when the RTL does not equal the
        integer golden model.
        """
        report = self.simulate(inputs, **options)
        if not report.all_bit_exact:
            raise AssertionError(report.error or "the RTL run returned no result for some image")
        return report.logits
