"""Run a checkpoint end to end in RTL on Verilator and compare it with the golden models.

``python -m sim.e2e [--checkpoint PATH] [--inputs FILE|digits|random] [--images N] [--T 1 2]
[--out build/e2e] [--sim icarus]``

For every T: load the checkpoint in its own configuration and quantize it (``quant``), generate the
network RTL (``hw.shared``), build it on Verilator (or on Icarus Verilog: ``--sim icarus`` or
``SIM=icarus``), run N images with cocotb (which only loads pixels, starts the network and waits for
``done``), check that the logits and every LIF's spikes equal the integer golden model's (the first
layer and index that differ are named), and print RTL, integer and float predictions side by side.
Writes ``report_T{T}.json`` / ``.csv`` (per step: cycles, ideal cycles, utilisation, synaptic
operations, energy) and a PNG plot.

Inputs (:func:`select_inputs`): ``--inputs FILE``, a ``.npy`` or ``.pt`` file holding float images
``[N, C, H, W]`` in the model's pixel range (:func:`pixel_range`); else the held-out digits when
the model takes 1x32x32 digits; else seeded random images in the model's pixel range (the bit-exact
check still means something; the predictions do not, and the printout says so). ``--inputs
random`` asks for random images on any model, ``--inputs digits`` for the digits.

``--checkpoint random`` runs a seeded, randomly initialised demo model instead (``--sdsa N``: with
SDSA-N, its batch norms calibrated so that every LIF fires). A missing or broken
checkpoint, or a bad inputs file, is one ``error:`` line, exit status 2, before anything is
written or built.

The same steps are a Python API: :func:`prepare` (load, quantize, check), :func:`select_inputs`,
:func:`simulate`, :func:`write_report`; ``rtl_gen.api`` wraps them with Verilog emission.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from golden.cliargs import Parser
from hw.params import ceil_div
from hw.program import StepKind
from sim.perf import TARGET_STEP, TARGET_TOTAL, CycleModel, map_spikes

__all__ = ["demo_model", "random_model", "calibrate_firing", "calibration_targets", "prepare",
           "QuantizedNetwork", "Unsupported", "InputError", "Inputs",
           "pixel_range", "read_inputs", "check_images", "random_images", "select_inputs",
           "simulate", "totals", "write_case", "network_verilog", "run_network", "write_report",
           "print_summary", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "golden" / "checkpoints" / "demo.pth"

# Energy constants (pJ). Paper method: Horowitz 45 nm, 32-bit float MAC / AC.
E_MAC_PAPER, E_AC_PAPER = 4.6, 0.9
# Memory-aware method (45 nm, int8): an add, a multiply, one byte read from SRAM.
E_ADD_INT8, E_MUL_INT8, E_SRAM_BYTE = 0.03, 0.2, 1.25


def demo_model(T: int, checkpoint=None, seed: int = 0, variant_name: str | None = None, *,
               sdsa: int | None = None):
    """Return ``(model, trained)``: a checkpoint at T, or a seeded random demo model.

    A checkpoint's configuration is its own: its saved ``config`` entry, else the one its shapes
    give (``golden.checkpoint.load_checkpoint``), else ``variant_name`` when given; only ``T`` is
    replaced. It is never swapped for the demo's: a model the hardware cannot run is refused
    later (:func:`check_supported`), not simulated as another one.

    ``checkpoint="random"``: the demo's configuration with seeded random weights and batch-norm
    statistics. With ``sdsa`` (1 to 4) it is ``golden.config.variant("demo", sdsa=sdsa)``, and
    its batch-norm biases (and SDSA-4's learned thresholds) are then calibrated on the seeded
    random image ``select_inputs(net, 1, "random", seed)`` runs, so that every LIF fires
    (:func:`calibrate_firing`); the weights are the same at every T. Without ``sdsa``: the
    historic seeded demo model (SDSA-3, uncalibrated: some of its LIFs stay silent).

    Raises ``FileNotFoundError`` for a missing checkpoint and ``golden.checkpoint.CheckpointError``
    (a ``ValueError``) for one that does not load or holds values no trained model has.
    """
    import torch
    from torch import nn

    if sdsa is not None and checkpoint != "random":
        raise ValueError("sdsa= chooses the operator of a random model (checkpoint='random'); "
                         "a checkpoint's operator is its own")
    if checkpoint != "random":
        from golden.checkpoint import load_checkpoint

        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist (train it with "
                                    "`make demo-model`, or pass --checkpoint random)")
        # A broken checkpoint raises (CheckpointError names the file and the key), never a
        # silent switch to other weights or to another configuration.
        return load_checkpoint(path, variant_name, T=T).double().eval(), True
    from golden.config import variant

    overrides = {} if sdsa is None else {"sdsa": sdsa}
    if sdsa is None:
        return _random_weights(variant("demo", T=T), seed), False
    return random_model(variant("demo", T=T, **overrides), seed), False


def _random_weights(cfg, seed: int):
    """A model of ``cfg`` with seeded random weights and batch-norm statistics (float64, eval)."""
    import torch
    from torch import nn

    from golden.model import MetaSpikeFormer

    torch.manual_seed(seed)
    model = MetaSpikeFormer(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
                m.weight.data.copy_(torch.randn(n, generator=generator))
                m.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(3.0)  # default init fires almost nothing in a small random net
    return model.double().eval()


def random_model(cfg, seed: int = 0):
    """A seeded random model of any configuration ``cfg`` (``golden.config.ModelConfig``) whose
    LIFs all fire: batch-norm biases (and SDSA-4's learned thresholds) calibrated at T = 1 on the
    seeded random image ``select_inputs(net, 1, "random", seed)`` runs
    (:func:`calibrate_firing`, :func:`calibration_targets`), then loaded at ``cfg.T``; the
    weights are the same at every T (cached per configuration and seed)."""
    from golden.model import MetaSpikeFormer

    base = cfg.replace(T=1)
    key = (json.dumps(base.to_dict(), sort_keys=True), seed)
    if key not in _CALIBRATED:
        model = _random_weights(base, seed)
        images = random_images(quantized(model), 1, seed)
        calibrate_firing(model, images, calibration_targets(cfg.sdsa))
        _CALIBRATED[key] = {name: value.clone() for name, value in model.state_dict().items()}
    model = MetaSpikeFormer(cfg).double().eval()
    model.load_state_dict(_CALIBRATED[key])
    return model


#: LIFs that no weight can make fire, by shortcut: the vanilla head LIF reads the mean over
#: positions of the last block's spikes, at most 1, and its threshold (theta 1 at tau 2) needs 2
#: at the first time step, and its membrane never exceeds the mean after it: it never fires, in
#: the float, integer and hardware models alike, so the classifier reads no spikes.
NEVER_FIRING = {"vanilla": ("lif",)}

#: LIFs that calibration leaves alone, by shortcut: no batch norm moves their input alone. The
#: head LIF of a stream of spikes (vanilla) or counts (SEW) reads a mean over positions of
#: spikes or counts, and shifting the last branch's batch norm for it would move that block's
#: output LIF too. The SEW head LIF fires where a channel's mean count over positions reaches
#: 2 (theta 1 at tau 2), whatever its producers' rates make of that.
UNCALIBRATED = {"vanilla": ("lif",), "sew": ("lif",)}

#: Calibrated random models' weights by (configuration at T = 1, seed) (:func:`random_model`).
_CALIBRATED = {}


def calibration_targets(sdsa: int):
    """Return ``lif name -> target firing rate`` for :func:`calibrate_firing` of a random demo.

    Every LIF 10 %, except the attention's: Q, K and V 25 %, so that SDSA-3's threshold (8 on
    ``Q K^T V`` counts over the demo's 4 tokens) is reached, and SDSA-1's ``K AND V`` mask is
    neither empty nor full; SDSA-2's K 10 %, because its mask fires where any of the 4 tokens has
    K set (25 % K would set about 70 % of it); SDSA-4's attention LIF 10 %, through its learned
    threshold.
    """
    def target(name: str) -> float:
        if name.endswith(".k_lif"):
            return 0.1 if sdsa == 2 else 0.25
        if name.endswith((".q_lif", ".v_lif")):
            return 0.25
        return 0.1
    return target


def calibrate_firing(model, images, target) -> dict:
    """Shift ``model``'s batch-norm biases so that each LIF fires at about its target rate.

    ``images``: the calibration batch ``[B, C, H, W]``; ``target``: ``lif name -> rate``. LIFs are
    taken in the order the forward pass calls them; each one's input is recorded and shifted by
    the smallest ``delta`` (bisection) at which the LIF fires at least ``target`` of the time.
    The shift goes into the bias of the last batch norm before the LIF with as many channels as
    the LIF's input: the one that produces it (a layer's LIF) or the last branch added into the
    residual stream it reads (a stream LIF, the pooled head LIF), so that it moves that LIF's
    input by ``delta`` and no earlier LIF's. The SDSA-1/2/3 attention LIFs keep their fixed
    threshold (their rates follow from Q, K and V); SDSA-4's learned threshold is set to the
    first integer threshold ``n`` (``quant.intops.lif_threshold``) at which it fires at most its
    target, as ``theta = (n - 1/2) * attn_scale / 2``, which quantizes to exactly ``n``. Returns
    ``{lif name: delta or theta}``.
    """
    import torch
    from torch import nn

    from golden.lif import MultiStepLIF

    def record():
        events, hooks = [], []
        for name, module in model.named_modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                hooks.append(module.register_forward_hook(
                    lambda mod, args, out, name=name: events.append(("bn", name, mod, None))))
            elif isinstance(module, MultiStepLIF):
                hooks.append(module.register_forward_hook(
                    lambda mod, args, out, name=name: events.append(
                        ("lif", name, mod, args[0].detach().clone()))))
        try:
            with torch.no_grad():
                model(images)
        finally:
            for hook in hooks:
                hook.remove()
        return events

    def rate(lif, x, threshold=None):
        return float(lif(x, threshold).mean())

    order = [name for kind, name, _, _ in record() if kind == "lif"]
    # The head LIF of a vanilla or SEW model reads a mean of spikes or counts: no bias moves it
    # alone, and shifting the last branch's batch norm for it would move that block.
    order = [name for name in order if name not in UNCALIBRATED.get(model.cfg.shortcut, ())]
    chosen = {}
    for name in order:
        events = record()
        index = next(i for i, event in enumerate(events) if event[1] == name)
        _, _, lif, x = events[index]
        if name.endswith(".attn_lif"):
            attention = model.get_submodule(name.removesuffix(".attn_lif"))
            if not hasattr(attention, "attn_threshold"):
                continue   # SDSA-1/2/3: a fixed threshold
            scale = float(attention.scale)
            n = 1
            while rate(lif, x, torch.tensor((n - 0.5) * scale / 2, dtype=x.dtype)) > target(name):
                n += 1
            theta = (n - 0.5) * scale / 2
            with torch.no_grad():
                attention.attn_threshold.fill_(theta)
            chosen[name] = theta
            continue
        channels = x.shape[2]
        bn = next((event[2] for event in reversed(events[:index])
                   if event[0] == "bn" and event[2].num_features == channels), None)
        if bn is None:
            raise ValueError(f"calibrate_firing: no batch norm of {channels} channels feeds {name}")
        low, high = -64.0, 64.0
        for _ in range(40):
            middle = (low + high) / 2
            if rate(lif, x + middle) < target(name):
                low = middle
            else:
                high = middle
        with torch.no_grad():
            bn.bias.add_(high)
        chosen[name] = high
    return chosen


#: The held-out digits' shape: 1x32x32.
DIGITS_SHAPE = (1, 32, 32)
#: Images per T when neither ``--images`` nor an inputs file says how many.
DEFAULT_IMAGES = 4


class Unsupported(NotImplementedError):
    """A model the network RTL cannot run; the message names the checkpoint, its configuration
    and the reason."""


class InputError(ValueError):
    """Inputs the co-simulation cannot take; the message names the file (or array) and why."""


def describe(cfg) -> str:
    """One line naming the configuration a run simulates."""
    return (f"{cfg.name}: embed_dim={list(cfg.embed_dim)} depths={list(cfg.depths)} "
            f"heads={cfg.num_heads} input {'events ' if cfg.events else ''}"
            f"{cfg.in_channels}x{cfg.img_size}x{cfg.img_size} "
            f"classes={cfg.num_classes} T={cfg.T} sdsa={cfg.sdsa} shortcut={cfg.shortcut} "
            f"qkv={cfg.qkv} proj={cfg.proj} channel_mixer={cfg.channel_mixer} "
            f"stage1={cfg.stage1} blocks={cfg.block_types}")


def _one_line(error) -> str:
    return " ".join(str(error).split())


def check_supported(model, arch: str, lanes: int) -> None:
    """Raise ``NotImplementedError`` naming what the network RTL cannot run in ``model``.

    Builds the integer net and the shared network's plan (which builds the hardware program):
    each refuses what it does not support, before anything is generated or built. Any input
    size and channel count the stem takes is accepted; the inputs are chosen afterwards
    (:func:`select_inputs`).
    """
    from hw.plan import SharedPlan

    if arch != "shared":
        raise NotImplementedError(f"architecture {arch!r}: only 'shared' exists")
    SharedPlan(quantized(model), lanes)


#: How the network runs SepConv's ``dwconv -> pwconv2`` (:attr:`QuantizedNetwork.sepconv`):
#: every block fused, every block unfused, or per block whichever the cycle model finds faster
#: (:func:`sim.sepconv.choose`).
SEPCONV = ("fused", "unfused", "auto")


def quantized(model, weight_bits: int = 8, sepconv="fused"):
    """Return the :class:`quant.quantize.IntNet` of a model: ``weight_bits`` weights, 8-bit pixel
    codes over quant's default pixel range (for the digits the codes are the raw pixels);
    SepConv folded into one dense conv (``"fused"``), left as its depthwise and pointwise
    convs (``"unfused"``), or fused in the blocks a tuple names (``quant``'s
    ``fuse_sepconv``)."""
    from quant.quantize import quantize_model

    if isinstance(sepconv, str):
        if sepconv not in ("fused", "unfused"):
            raise ValueError(f"sepconv must be 'fused', 'unfused' or block paths, not "
                             f"{sepconv!r}")
        sepconv = sepconv == "fused"
    return quantize_model(model, weight_bits, 8, fuse_sepconv=sepconv)


@dataclass
class QuantizedNetwork:
    """A checkpoint loaded at ``T``, quantized and accepted by the network RTL (:func:`prepare`).

    Members: ``checkpoint`` (the name runs print), ``model`` (the float model, float64, eval),
    ``trained`` (False for ``checkpoint='random'``), ``net`` (the ``quant.quantize.IntNet``),
    ``lanes``, ``arch``.
    """

    checkpoint: str
    model: object
    trained: bool
    net: object
    lanes: int = 16
    arch: str = "shared"
    #: ``"internal"`` (a weight memory in the design) or ``"axi"`` (weights from external memory
    #: over AXI4, ``hw.weightfetch``; the testbench holds them in an AXI RAM model).
    weights: str = "internal"
    #: ``weights="axi"``: the AXI data bus in bits and the ring's words (None: the default).
    axi_width: int = 64
    weight_ring: int | None = None
    #: The sequencer's order (``hw.plan.SCHEDULES``): ``"time"`` (default) or ``"layer"``.
    schedule: str = "time"
    #: ``"external"``: the biases and thresholds (and the weights) behind read ports that the
    #: testbench's wrapper answers from ``$readmemh`` images (``hw.shared.SharedNetwork``).
    parameters: str = "internal"
    #: Column folding (``hw.plan.SharedPlan.fold``): 1 (none) or a power of two up to lanes.
    fold: int = 1
    #: Where the LIF thresholds go (``hw.params.THRESHOLD_STYLES``): ``"auto"`` or ``"logic"``.
    threshold_memory: str = "auto"
    #: The engine's input buffer (``hw.plan.SharedPlan.input_buffer``): 0 (none) or 2..64.
    input_buffer: int = 0
    #: SepConv: ``"fused"`` (one dense 7x7 conv, the default), ``"unfused"`` (the depthwise
    #: engine, the planes and a 1x1 conv: ``hw.sepconv``) or ``"auto"`` (per block, the faster:
    #: :func:`sim.sepconv.choose`); ``net`` is quantized accordingly (``net.fuse_sepconv``: the
    #: blocks fused).
    sepconv: str = "fused"

    @property
    def design_options(self) -> dict:
        """``SharedNetwork`` keyword arguments of the weights' placement and the schedule (the
        default time schedule is not named, so its cached designs keep their keys)."""
        options = {} if self.schedule == "time" else {"schedule": self.schedule}
        if self.parameters != "internal":
            options["parameters"] = self.parameters
        if self.fold != 1:
            options["fold"] = self.fold
        if self.input_buffer:
            options["input_buffer"] = self.input_buffer
        if self.threshold_memory != "auto":
            options["threshold_memory"] = self.threshold_memory
        if self.weights != "axi":
            return options
        return {"weights": "axi", "axi_data_width": self.axi_width,
                "weight_ring": self.weight_ring, **options}

    @property
    def cfg(self):
        """The model configuration (``golden.config.ModelConfig``)."""
        return self.model.cfg

    @property
    def T(self) -> int:
        """Time steps per image."""
        return self.cfg.T


def prepare(T: int, checkpoint=None, *, variant_name: str | None = None, lanes: int = 16,
            arch: str = "shared", seed: int = 0, weight_bits: int = 8,
            sdsa: int | None = None, weights: str = "internal", axi_width: int = 64,
            weight_ring: int | None = None, schedule: str = "time",
            parameters: str = "internal", fold: int = 1,
            threshold_memory: str = "auto", input_buffer: int = 0,
            sepconv: str = "fused") -> QuantizedNetwork:
    """Load ``checkpoint`` at ``T`` (:func:`demo_model`; ``sdsa``: the operator of a random
    model), quantize it and check that the network RTL runs it, before anything is written or
    built.

    Raises ``FileNotFoundError`` (a missing checkpoint), ``golden.checkpoint.CheckpointError``
    (one that does not load), ``quant.quantize.QuantizationError`` (one that does not quantize;
    the message starts with ``checkpoint NAME:``) and :class:`Unsupported` (a model the network
    RTL cannot run: the message names the checkpoint, its configuration and the reason).
    """
    from hw.plan import SharedPlan
    from quant.quantize import QuantizationError

    name = str(checkpoint) if checkpoint is not None else str(DEFAULT_CHECKPOINT)
    model, trained = demo_model(T, checkpoint, seed, variant_name, sdsa=sdsa)
    try:
        if arch != "shared":
            raise NotImplementedError(f"architecture {arch!r}: only 'shared' exists")
        if sepconv not in SEPCONV:
            raise ValueError(f"sepconv must be one of {', '.join(map(repr, SEPCONV))}, not "
                             f"{sepconv!r}")
        if sepconv != "fused" and (weights == "axi" or fold != 1):
            raise NotImplementedError(f"sepconv {sepconv!r} with "
                                      + ("weights 'axi'" if weights == "axi" else f"fold {fold}")
                                      + " (the engine's bit planes are not built with a weight "
                                      "ring or column folding)")
        setting = sepconv
        if sepconv == "auto":
            from sim.sepconv import choose
            setting = choose(model, lanes, weight_bits=weight_bits, input_buffer=input_buffer,
                             fold=fold, seed=seed)["fused"]
        net = quantized(model, weight_bits, setting)
        if weights not in ("internal", "axi"):
            raise ValueError(f"weights must be 'internal' or 'axi', not {weights!r}")
        if parameters not in ("internal", "external"):
            raise ValueError(f"parameters must be 'internal' or 'external', not {parameters!r}")
        if parameters == "external" and weights == "axi":
            raise NotImplementedError("parameters 'external' (biases and thresholds behind "
                                      "read ports) with weights 'axi'")
        if fold != 1 and weights == "axi":
            raise NotImplementedError(f"fold {fold} (column folding) with weights 'axi'")
        if threshold_memory not in ("auto", "logic"):
            raise ValueError(f"threshold_memory must be 'auto' or 'logic', not "
                             f"{threshold_memory!r}")
        if threshold_memory != "auto" and parameters == "external":
            raise NotImplementedError(f"threshold_memory {threshold_memory!r} with parameters "
                                      "'external' (no threshold memory inside)")
        plan = SharedPlan(net, lanes, pack_weights=weights != "axi", schedule=schedule,
                          fold=fold, input_buffer=input_buffer)
        if weights == "axi":
            from hw.weightfetch import WeightRing
            WeightRing(plan, weight_ring, data_width=axi_width)
    except NotImplementedError as error:
        raise Unsupported(f"checkpoint {name} ({describe(model.cfg)}) cannot be simulated: "
                          + _one_line(error)) from error
    except QuantizationError as error:
        raise QuantizationError(f"checkpoint {name}: {_one_line(error)}") from error
    return QuantizedNetwork(name, model, trained, net, lanes, arch, weights, axi_width,
                            weight_ring, schedule, parameters, fold, threshold_memory,
                            input_buffer, sepconv)


# ----------------------------------------------------------------------------- inputs

@dataclass
class Inputs:
    """The images a run feeds: float64 ``images [N, C, H, W]``, their ``labels`` (the digits'; None
    for a file, an array or random images), ``source`` (``'digits'``, ``'file'``, ``'array'`` or
    ``'random'``) and a one-line ``description`` for the printout."""

    images: object
    labels: list | None
    source: str
    description: str

    @property
    def meaningful(self) -> bool:
        """False for random images: their predictions mean nothing (bit-exactness still does)."""
        return self.source != "random"

    def __len__(self) -> int:
        return int(self.images.shape[0])


def pixel_range(net) -> tuple:
    """Return ``(low, high)`` float64 ``[C]``: the real inputs the net's pixel codes hold unclipped.

    quant codes a pixel ``x`` of channel ``c`` as ``rint(x / scale[c]) + zero_point[c]`` in
    ``0 .. 2**bits - 1`` (:class:`quant.quantize.PixelQuant`), over the range
    ``quant.quantize.default_pixel_range`` gives: ``[0, 255/16]`` for 1-channel and demo models
    (the digits are ``k/16``, ``0..1``), ImageNet-normalised ``[-2.2, 2.7]`` otherwise. A value outside
    ``[(0 - zero_point) * scale, (max_code - zero_point) * scale]`` would be clipped in the integer
    model but not in the float one, so inputs must lie inside it.
    """
    pixel = net.pixel
    scale = np.asarray(pixel.scale, np.float64)
    zero = np.asarray(pixel.zero_point, np.float64)
    return 0.0 - zero * scale, (pixel.max_code - zero) * scale  # 0.0 -: no "-0"


def _digit_codes(net) -> bool:
    """True when the net's pixel codes are the digits' (step 1/16 from 0: quant's digits range)."""
    return bool(np.all(net.pixel.zero_point == 0) and np.all(net.pixel.scale == 1 / 16))


def _shape(cfg) -> tuple:
    return (cfg.in_channels, cfg.img_size, cfg.img_size)


def _fmt(values) -> str:
    values = np.unique(np.asarray(values, np.float64))
    return f"{values[0]:g}" if values.size == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def check_images(array, net, what: str, count: int | None = None):
    """Return the first ``count`` (default all) images of ``array`` as float64 ``torch.Tensor``
    ``[N, C, H, W]`` after checking them against ``net``; raise :class:`InputError` naming
    ``what`` and the problem (dtype, shape, channels, size, too few images, NaN/Inf, range)."""
    import torch

    cfg = net.cfg
    want = "[N, {}, {}, {}]".format(*_shape(cfg))
    if isinstance(array, torch.Tensor):
        dtype = array.dtype
        if not (dtype.is_floating_point or dtype in (torch.uint8, torch.int8, torch.int16,
                                                     torch.int32, torch.int64)):
            raise InputError(f"{what} has dtype {str(dtype).replace('torch.', '')}; expected "
                             "real numbers (a float or integer dtype)")
        array = array.detach().cpu().to(torch.float64).numpy()
    elif isinstance(array, np.ndarray):
        if array.dtype.kind not in "fiu":
            raise InputError(f"{what} has dtype {array.dtype}; expected real numbers "
                             "(a float or integer dtype)")
        array = np.asarray(array, np.float64)
    else:
        raise InputError(f"{what} is a {type(array).__name__}, not an array of images")
    if array.ndim != 4:
        raise InputError(f"{what} has shape {tuple(array.shape)}; expected {want} images "
                         f"(in_channels={cfg.in_channels}, img_size={cfg.img_size})")
    if array.shape[1] != cfg.in_channels:
        raise InputError(f"{what} has {array.shape[1]} channels (shape {tuple(array.shape)}); "
                         f"the model takes in_channels={cfg.in_channels}: {want}")
    if array.shape[2:] != _shape(cfg)[1:]:
        raise InputError(f"{what} has images of {array.shape[2]}x{array.shape[3]} (shape "
                         f"{tuple(array.shape)}); the model takes img_size={cfg.img_size}: {want}")
    if array.shape[0] == 0:
        raise InputError(f"{what} holds no images (shape {tuple(array.shape)})")
    if count is not None and count > array.shape[0]:
        raise InputError(f"{what} holds {array.shape[0]} images; --images asks for {count}")
    bad = ~np.isfinite(array)
    if bad.any():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kinds = " and ".join(k for k in (f"{nan} NaN" if nan else "", f"{inf} Inf" if inf else "")
                             if k)
        raise InputError(f"{what} holds {kinds} (first at index {first}); images must be finite")
    low, high = pixel_range(net)
    view = (1, -1, 1, 1)
    outside = (array < low.reshape(view)) | (array > high.reshape(view))
    if outside.any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InputError(
            f"{what} holds {int(outside.sum())} value{'s' if outside.sum() > 1 else ''} "
            f"outside the model's pixel range "
            f"{_fmt(low)} to {_fmt(high)} (first {array[first]:g} at index {first}; the range "
            f"its {net.pixel.bits}-bit pixel codes hold"
            f"{', the digits are 0 to 1' if _digit_codes(net) else ''})")
    return torch.from_numpy(np.ascontiguousarray(array[:count]))


def read_inputs(path, net, count: int | None = None):
    """Read images from a ``.npy`` (``np.load(allow_pickle=False)``) or ``.pt`` file
    (``torch.load(weights_only=True)``, a tensor) and check them (:func:`check_images`).

    Raises :class:`InputError` naming the file: missing, unreadable, not an array or a tensor,
    or images the model cannot take.
    """
    import torch

    path = Path(path)
    what = f"inputs {path}"
    if not path.exists():
        raise InputError(f"{what} does not exist")
    if not path.is_file():
        raise InputError(f"{what} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:  # ValueError, OSError, EOFError, pickled data, ...
            raise InputError(f"{what} cannot be read as .npy (np.load, allow_pickle=False): "
                             f"{_one_line(error)[:200]}") from None
        if not isinstance(array, np.ndarray):
            close = getattr(array, "close", None)
            if close:
                close()
            raise InputError(f"{what} holds a {type(array).__name__}, not one array (.npz "
                             "archives are not taken)")
    elif suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": one line only
                warnings.simplefilter("ignore")
                array = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # the unpickler raises several types
            from golden.checkpoint import _load_failure  # the reason, without torch's advice

            raise InputError(f"{what} cannot be read with torch.load(weights_only=True): "
                             f"{_load_failure(error)}") from None
        if not isinstance(array, torch.Tensor):
            raise InputError(f"{what} holds a {type(array).__name__}, not a tensor")
    else:
        raise InputError(f"{what}: unknown format {suffix or '(no suffix)'}; give a .npy or "
                         ".pt file")
    return check_images(array, net, what, count)


def test_images(count: int):
    """Return ``(images [N, 1, 32, 32] float, labels [N])`` of the held-out digits."""
    from golden.data import digits_dataset

    data = digits_dataset(32, "test", 0)
    images = data.tensors[0][:count]
    return images, data.tensors[1][:count]


test_images.__test__ = False  # not a pytest test


def random_images(net, count: int, seed: int = 0):
    """Return ``count`` seeded random float64 images ``[N, C, H, W]`` in the net's pixel range.

    Every value is a pixel code's real value, so the float and the integer model see the same
    input. Digit-range nets (codes of step 1/16 from 0) draw the digits' values ``k/16``, ``k`` in
    ``0..16``; others draw codes uniformly over their whole range.
    """
    import torch

    cfg = net.cfg
    generator = np.random.default_rng(seed)
    scale = np.asarray(net.pixel.scale, np.float64).reshape(1, -1, 1, 1)
    zero = np.asarray(net.pixel.zero_point, np.int64).reshape(1, -1, 1, 1)
    top = 16 if _digit_codes(net) else net.pixel.max_code
    codes = generator.integers(0, top + 1, size=(count, *_shape(cfg)))
    return torch.from_numpy((codes - zero) * scale)


def select_inputs(net, count: int | None = None, inputs=None, seed: int = 0) -> Inputs:
    """Return the :class:`Inputs` of a run on ``net`` (a ``quant.quantize.IntNet``).

    ``inputs``: ``None`` (the held-out digits when the model takes 1x32x32, else random images),
    ``'digits'``, ``'random'``, a path to a ``.npy`` / ``.pt`` file (:func:`read_inputs`), or an
    array / tensor ``[N, C, H, W]`` (:func:`check_images`). ``count``: the first ``count`` images
    (default: all of a file or array, else :data:`DEFAULT_IMAGES`). Raises :class:`InputError`.
    """
    cfg = net.cfg
    shape = _shape(cfg)
    size = "x".join(map(str, shape))
    if count is not None and count < 1:
        raise InputError(f"--images {count} is out of range: at least 1")
    if cfg.events:
        return select_events(net, count, inputs, seed)
    if inputs is None:
        inputs = "digits" if shape == DIGITS_SHAPE else "random"
    if isinstance(inputs, str) and inputs == "digits":
        if shape != DIGITS_SHAPE:
            raise InputError(f"the digits are {'x'.join(map(str, DIGITS_SHAPE))}; this model takes "
                             f"{size} inputs (give --inputs FILE or --inputs random)")
        from golden.data import digits_arrays

        n = count or DEFAULT_IMAGES
        available = len(digits_arrays("test", 0)[1])
        if n > available:
            raise InputError(f"--images {n}: the held-out digits are {available} images")
        images, labels = test_images(n)
        return Inputs(images, labels.tolist(), "digits",
                      f"the first {n} held-out digits (golden.data, 1x32x32, pixels k/16 in 0..1)")
    if isinstance(inputs, str) and inputs == "random":
        n = count or DEFAULT_IMAGES
        return Inputs(random_images(net, n, seed), None, "random",
                      f"{n} seeded random {size} images (seed {seed}) in the model's pixel range: "
                      "their predictions mean nothing (the bit-exact check still holds)")
    if isinstance(inputs, (str, Path)):
        images = read_inputs(inputs, net, count)
        return Inputs(images, None, "file", f"{len(images)} {size} images from {inputs}")
    images = check_images(inputs, net, "inputs array", count)
    return Inputs(images, None, "array", f"{len(images)} {size} images from an array")


# ----------------------------------------------------------------------------- event inputs

def check_event_frames(array, net, what: str, count: int | None = None):
    """Return the first ``count`` (default all) event samples of ``array`` as float64
    ``torch.Tensor`` ``[N, T, C, H, W]`` of 0/1 after checking them against an event ``net``;
    raise :class:`InputError` naming ``what`` and the problem (dtype, shape, values)."""
    import torch

    cfg = net.cfg
    want = (f"[N, T={cfg.T}, C={cfg.in_channels}, {cfg.img_size}, {cfg.img_size}] event frames "
            "of 0/1")
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise InputError(f"{what} is not a numeric array; expected {want}")
    if array.ndim != 5 or array.shape[1:] != (cfg.T, cfg.in_channels, cfg.img_size,
                                              cfg.img_size):
        raise InputError(f"{what} has shape {tuple(array.shape)}; expected {want}")
    if array.shape[0] == 0:
        raise InputError(f"{what} holds no samples (shape {tuple(array.shape)})")
    if count is not None and count > array.shape[0]:
        raise InputError(f"{what} holds {array.shape[0]} samples; --images asks for {count}")
    values = np.array(array, dtype=np.float64)  # a copy: the file may be memory-mapped
    bad = ~((values == 0) | (values == 1))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what} holds {int(bad.sum())} values other than 0 and 1 (first "
                         f"{values[first]:g} at index {first}); event frames are spikes")
    return torch.from_numpy(np.ascontiguousarray(values[:count]))


def select_events(net, count: int | None = None, inputs=None, seed: int = 0) -> Inputs:
    """:func:`select_inputs` for an event model (``cfg.events``): ``None`` or ``'digits'`` (the
    held-out digits turned into events, ``golden.events``, when the model takes 2x32x32),
    ``'random'`` (seeded frames, 10 % of pixels firing), a ``.npy`` file of event frames
    ``[N, T, C, H, W]`` or an array of them (:func:`check_event_frames`)."""
    import torch

    cfg = net.cfg
    size = f"{cfg.T}x{cfg.in_channels}x{cfg.img_size}x{cfg.img_size}"
    n = count or DEFAULT_IMAGES
    if inputs is None:
        inputs = "digits" if (cfg.in_channels, cfg.img_size) == (2, 32) else "random"
    if isinstance(inputs, str) and inputs == "digits":
        if (cfg.in_channels, cfg.img_size) != (2, 32):
            raise InputError(f"the event digits are 2x32x32; this model takes {size} frames "
                             "(give --inputs FILE or --inputs random)")
        from golden.data import digits_arrays
        from golden.events import event_split

        available = len(digits_arrays("test", 0)[1])
        if n > available:
            raise InputError(f"--images {n}: the held-out digits are {available} images")
        frames, labels = event_split("test", cfg.T, cfg.img_size, limit=n)
        return Inputs(frames.to(torch.float64), labels.tolist(), "digits",
                      f"the first {n} held-out digits as events (golden.events: a simulated "
                      f"event camera, three saccades; {size} frames)")
    if isinstance(inputs, str) and inputs == "random":
        generator = np.random.default_rng(seed)
        frames = (generator.random((n, cfg.T, cfg.in_channels, cfg.img_size, cfg.img_size))
                  < 0.1).astype(np.float64)
        return Inputs(torch.from_numpy(frames), None, "random",
                      f"{n} seeded random {size} event frames (seed {seed}, 10 % firing): "
                      "their predictions mean nothing (the bit-exact check still holds)")
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        if not path.is_file():
            raise InputError(f"inputs {path} does not exist or is not a file")
        suffix = path.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise InputError(f"inputs {path}: unknown format {suffix or '(no suffix)'}; give a "
                             ".npy of event frames [N, T, C, H, W], or one sample's events "
                             "(t, x, y, p) as a .npy structured or (N, 4) array or an .npz")
        array = None
        if suffix == ".npy":
            try:
                array = np.load(path, allow_pickle=False, mmap_mode="r")
            except Exception as error:
                raise InputError(f"inputs {path} cannot be read as .npy (np.load, "
                                 f"allow_pickle=False): {_one_line(error)[:200]}") from None
        if array is not None and array.dtype.names is None and array.ndim == 5:
            frames = check_event_frames(np.asarray(array), net, f"inputs {path}", count)
            return Inputs(frames, None, "file",
                          f"{len(frames)} {size} event samples from {path}")
        # One sample's event records, binned into T frames (golden.events: tonic's framing).
        from golden.events import read_events, to_frames

        if cfg.in_channels != 2:
            raise InputError(f"inputs {path}: event records have two polarities; this model "
                             f"takes {cfg.in_channels} channels")
        if count not in (None, 1):
            raise InputError(f"inputs {path} holds one sample's events; --images asks for "
                             f"{count}")
        try:
            events = read_events(path, (cfg.img_size, cfg.img_size))
        except (ValueError, OSError) as error:
            raise InputError(f"inputs {_one_line(error)}") from None
        frames = to_frames(events, (cfg.img_size, cfg.img_size), cfg.T)[None]
        return Inputs(torch.from_numpy(frames.astype(np.float64)), None, "file",
                      f"1 sample of {len(events)} events from {path}, binned into {size} frames "
                      "(tonic)")
    frames = check_event_frames(inputs, net, "inputs array", count)
    return Inputs(frames, None, "array", f"{len(frames)} {size} event samples from an array")


def golden_run(model, net, images):
    """Return integer codes, integer logits, the Trace and float logits for ``images`` (for an
    event model: event frames ``[N, T, C, H, W]``; its "codes" are the frames themselves)."""
    import torch

    from quant.intmodel import IntegerModel

    integer = IntegerModel(net)
    if net.cfg.events:
        frames = images.to(torch.int64)
        logits, trace = integer.forward(frames.transpose(0, 1), trace=True)
        with torch.no_grad():
            out = model(images.transpose(0, 1).to(torch.float64))
        float_logits = out[0] if isinstance(out, tuple) else out
        return frames, logits, trace, float_logits
    codes = integer.quantize_input(images)
    logits, trace = integer.forward(codes, trace=True)
    with torch.no_grad():
        out = model(images.to(torch.float64))
    float_logits = out[0] if isinstance(out, tuple) else out
    return codes, logits, trace, float_logits


def network_meta(dut) -> dict:
    """Return what the testbench needs to read the design: maps, order, widths."""
    # ``channels``: the model's; ``order``: the physical channel of each (head-aligned
    # attention maps, ``hw.plan.SharedMap.order``), None for the identity.
    maps = {name: {"channels": info.logical_channels, "height": info.side, "width": info.side,
                   "layout": "shared", "banks": dut.lanes,
                   "cg": ceil_div(info.channels, dut.lanes), "memory": "spikes",
                   "bank_bits": dut.map_width,
                   "base": info.base, "pack": info.pack, "step_words": info.step_words,
                   "order": None if info.order is None else list(info.order)}
            for name, info in dut.maps.items()}
    order = [s.sink.spike_map for s in dut.steps if s.sink.spike_map is not None]
    return {"maps": maps, "lif_order": order, "T": dut.T, "events": dut.plan.events,
            "classes": dut.logits.shape().length, "logit_bits": dut.logit_bits,
            "steps": [{"kind": s.kind.label, "name": s.name, "first_step_only": s.first_step_only}
                      for s in dut.steps]}


def write_case(path, dut, codes, logits, trace, time_steps: int | None = None) -> dict:
    """Write the testbench's case (codes, logits, expected spikes ``[B, T, C, N]``) and meta
    (``T``: the run's time steps, ``time_steps`` or the design's)."""
    meta = network_meta(dut)
    if time_steps is not None:
        meta["T"] = int(time_steps)
    arrays = {"codes": codes.numpy().astype(np.int64), "logits": logits.numpy()}
    for lif, spec in meta["maps"].items():
        spikes = map_spikes(dut.plan.net, trace, lif).numpy()
        B = spikes.shape[1]
        arrays[f"spikes:{lif}"] = np.ascontiguousarray(
            spikes.reshape(spikes.shape[0], B, spec["channels"], -1).transpose(1, 0, 2, 3))
    np.savez(path, **arrays)
    with open(str(path) + ".json", "w") as handle:
        json.dump(meta, handle)
    return meta


def _net_key(net, lanes: int, arch: str = "shared", weights="internal") -> str:
    """Return a hash of everything the generated Verilog depends on."""
    h = hashlib.sha256()
    for name, layer in net.layers.items():
        for part in (layer.weight, layer.bias, layer.shift if layer.shift is not None else []):
            h.update(np.ascontiguousarray(np.asarray(part, dtype=np.int64)).tobytes())
        h.update(f"{name}{layer.stride}{layer.padding}".encode())
    for name, lif in net.lifs.items():
        h.update(name.encode() + np.asarray(lif.threshold, np.int64).tobytes()
                 + str(lif.input_bits).encode())
    if net.pixel is not None:
        h.update(np.asarray(net.pixel.zero_point, np.int64).tobytes())
    h.update(json.dumps({name: asdict(attn) for name, attn in net.attention.items()},
                        sort_keys=True).encode())
    h.update(json.dumps(net.cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"T{net.cfg.T}lanes{lanes}arch{arch}".encode())
    if weights != "internal":   # a mode, or a QuantizedNetwork.design_options dict
        h.update(f"weights{json.dumps(weights, sort_keys=True)}".encode())
    # Every hardware source: a change anywhere in hw/ (a unit, the program, the plan) is a new
    # design point.
    for source in sorted((ROOT / "hw").glob("*.py")):
        h.update(source.name.encode() + source.read_bytes())
    return h.hexdigest()[:16]


#: Weight memories deeper than this are not carried through the Verilog conversion as initial
#: values (a paper model's are millions of words): the network is generated with its weight
#: port outside and a wrapper ``network`` holds the memory, loaded with ``$readmemh``
#: (:func:`image_wrapper`).
INLINE_WEIGHT_WORDS = 1 << 17


def weights_outside(plan) -> bool:
    """Whether the co-simulation loads ``plan``'s weights with ``$readmemh`` (a wrapper)."""
    return plan.weight_depth > INLINE_WEIGHT_WORDS


def image_wrapper(dut, image: Path, core: str = "network_core") -> str:
    """Verilog of a top ``network`` with ``dut``'s ports but the weight port: it instantiates
    ``core`` (``dut`` converted with ``weights="external"``) as ``core`` and answers its weight
    reads from a memory ``$readmemh`` loads from ``image`` (data the cycle after ``en``, as
    the network's own memory)."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import Flow

    ports, connections = ["input clk", "input rst"], [".clk(clk)", ".rst(rst)"]
    for path, member in dut.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(part) for part in path)
        if name.startswith(("weight_", "bias_", "threshold_")):
            continue
        width = Shape.cast(member.shape).width
        vector = f" [{width - 1}:0]" if width > 1 else ""
        ports.append(f"{'input' if member.flow is Flow.In else 'output'}{vector} {name}")
        connections.append(f".{name}({name})")
    roms = [("weight", image, dut.weight_depth)]
    if getattr(dut, "parameters", "internal") == "external":
        roms += [("bias", parameter_image(image, "biases"), len(dut.bias_words)),
                 ("threshold", parameter_image(image, "thresholds"), len(dut.threshold_words))]
    lines = [f"module network({', '.join(ports)});"]
    for port, file, depth in roms:
        data_width = len(getattr(dut, f"{port}_data"))
        address_width = len(getattr(dut, f"{port}_addr"))
        lines += [
            f"  wire [{address_width - 1}:0] {port}_addr;",
            f"  wire {port}_en;",
            f"  reg [{data_width - 1}:0] {port}_data = {data_width}'d0;",
            f"  reg [{data_width - 1}:0] {port}_rom [0:{max(depth, 2) - 1}];",
            f'  initial $readmemh("{file}", {port}_rom);',
            f"  always @(posedge clk) if ({port}_en) {port}_data <= {port}_rom[{port}_addr];"]
        connections += [f".{port}_addr({port}_addr)", f".{port}_en({port}_en)",
                        f".{port}_data({port}_data)"]
    return "\n".join(lines + [f"  {core} core ({', '.join(connections)});", "endmodule", ""])


def parameter_image(weight_image: Path, memory: str) -> Path:
    """Where the ``$readmemh`` image of the biases or thresholds (``memory``) of a network
    with ``parameters="external"`` lies, beside its weight image."""
    return Path(weight_image).with_suffix(f".{memory}.hex")


def network_verilog(dut, net, lanes: int, arch: str = "shared", weights: str = "internal") -> str:
    """Return the network's Verilog, converted once per design point (cached under build/).

    ``dut``: the ``hw.shared.SharedNetwork`` of ``net``, or a function making it. A design with
    its weight port outside (:func:`weights_outside`) becomes ``network_core`` inside
    :func:`image_wrapper`'s ``network``, its weight image written beside the Verilog. With
    ``weights="axi"`` the external memory's image is written beside it (:func:`axi_image`)."""
    from hw.verilog import fast_memory_init

    path = _cached_verilog(net, lanes, arch, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ``weights``: "internal", "external", or a QuantizedNetwork.design_options dict (AXI4
    # weights, or only a schedule)
    axi = isinstance(weights, dict) and weights.get("weights") == "axi"
    if path.exists() and (not axi or axi_image(path).exists()):
        return path.read_text()
    if not hasattr(dut, "elaborate"):
        dut = dut()  # a factory: the design is made only when it is converted
    with fast_memory_init():   # the same Verilog, written faster
        text = _convert_network(dut, axi, path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def _convert_network(dut, axi: bool, path: Path) -> str:
    """:func:`network_verilog`'s conversion of ``dut``, its memory images written beside
    ``path``."""
    from amaranth.back import verilog

    if axi:
        image = axi_image(path)
        tmp = image.with_suffix(".tmp")
        tmp.write_bytes(dut.ring.image())
        tmp.replace(image)
        text = verilog.convert(dut, name="network", emit_src=False)
    elif hasattr(dut, "weight_addr"):
        image = path.with_suffix(".weights.hex")
        width = (len(dut.weight_data) + 3) // 4
        tmp = image.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.writelines(f"{word:0{width}x}\n" for word in dut.weight_words)
        tmp.replace(image)
        if getattr(dut, "parameters", "internal") == "external":
            for memory, words, port in (("biases", dut.bias_words, dut.bias_data),
                                        ("thresholds", dut.threshold_words, dut.threshold_data)):
                target = parameter_image(image, memory)
                tmp = target.with_suffix(".tmp")
                digits = (len(port) + 3) // 4
                tmp.write_text("".join(f"{word:0{digits}x}\n" for word in words))
                tmp.replace(target)
        text = (verilog.convert(dut, name="network_core", emit_src=False) + "\n"
                + image_wrapper(dut, image))
    else:
        text = verilog.convert(dut, name="network", emit_src=False)
    return text


def _cached_verilog(net, lanes: int, arch: str, weights: str) -> Path:
    return ROOT / "build" / "network_rtl" / f"network-{_net_key(net, lanes, arch, weights)}.v"


def verilog_path(network: QuantizedNetwork) -> Path:
    """Where :func:`network_verilog` caches the network's Verilog."""
    return _cached_verilog(network.net, network.lanes, network.arch,
                           network.design_options or "internal")


def axi_image(verilog_path: Path) -> Path:
    """Where the external weight image of a ``weights="axi"`` network's Verilog lies."""
    return Path(verilog_path).with_suffix(".weights.bin")


def network_design(network: QuantizedNetwork):
    """Return the network's Amaranth design (``hw.shared.SharedNetwork``: weights inside, or
    behind its port for a weight memory too deep to convert, :func:`weights_outside`)."""
    from hw.plan import SharedPlan
    from hw.shared import SharedNetwork

    schedule = network.schedule
    if network.weights == "axi":
        plan = SharedPlan(network.net, network.lanes, pack_weights=False, schedule=schedule,
                          input_buffer=network.input_buffer)
        return SharedNetwork(network.net, lanes=network.lanes, plan=plan,
                             **network.design_options)
    plan = SharedPlan(network.net, network.lanes, schedule=schedule, fold=network.fold,
                      input_buffer=network.input_buffer)
    if network.parameters == "external":
        return SharedNetwork(network.net, lanes=network.lanes, plan=plan, weights="external",
                             parameters="external", schedule=schedule, fold=network.fold,
                             input_buffer=network.input_buffer)
    return SharedNetwork(network.net, lanes=network.lanes, plan=plan,
                         weights="external" if weights_outside(plan) else "internal",
                         schedule=schedule, fold=network.fold,
                         threshold_memory=network.threshold_memory,
                         input_buffer=network.input_buffer)


def compile_network(network: QuantizedNetwork, simulator: str | None = None, dut=None):
    """Convert the network to Verilog and build it for the simulator, once per design point
    (both cached under ``build/``); return ``(sim.toolchain.Design, convert_s, build_s)``."""
    from sim import toolchain

    if dut is None:
        dut = lambda: network_design(network)  # noqa: E731 - made only on a cache miss
    begin = time.perf_counter()
    text = network_verilog(dut, network.net, network.lanes, network.arch,
                           network.design_options or "internal")
    convert_s = time.perf_counter() - begin
    begin = time.perf_counter()
    design = toolchain.build(text, "network", simulator=toolchain.selected_simulator(simulator))
    return design, convert_s, time.perf_counter() - begin


#: The external memory of the co-simulation with ``weights="axi"``: latency of every burst in
#: cycles (``"N"`` or ``"LOW-HIGH"``, drawn per burst), the chance that ``arready`` or ``rvalid``
#: drops in a cycle, the image's byte address and the seed.
AXI_DEFAULTS = {"latency": "1-64", "pause": 0.2, "base": 0x4000_0000, "seed": 1}


def run_at(network: QuantizedNetwork, time_steps: int):
    """``(model, net)`` of ``network`` run for ``time_steps`` time steps: the same weights,
    ``cfg.T = time_steps`` (the golden and integer models of a shorter run of the design)."""
    import copy
    import dataclasses

    if time_steps == network.T:
        return network.model, network.net
    cfg = dataclasses.replace(network.cfg, T=time_steps)
    model = copy.copy(network.model)
    model.cfg = cfg
    return model, dataclasses.replace(network.net, cfg=cfg)


def simulate(network: QuantizedNetwork, inputs: Inputs, out, simulator: str | None = None,
             axi: dict | None = None, time_steps: int | None = None,
             reset_after: int | None = None) -> dict:
    """Run ``inputs`` through the network RTL and the golden models; return the summary.

    Writes the testbench's case and results into ``out``. The summary holds, per image, the RTL
    result (``rtl``: logits, cycles, ``match`` = logits and every LIF's spikes ``==`` the integer
    model's), the integer and float logits and predictions, and the per-step ``report``; a
    mismatch is its ``error`` (the first layer and index that differ), not an exception.
    ``axi``: with ``network.weights == "axi"``, the external memory's settings over
    :data:`AXI_DEFAULTS`. ``time_steps``: run the design (built for ``network.T`` time steps)
    for this many, 1 to ``network.T``, through its ``time_steps`` port; the golden models run
    the same weights at that T (default: ``network.T``). ``reset_after``: first start the last
    image and reset the design this many cycles into it (pixel input only).
    """
    import torch

    from sim import toolchain

    torch.set_num_threads(1)
    simulator = toolchain.selected_simulator(simulator)
    out = Path(out).resolve()  # the simulator runs in its build directory
    design_T, lanes = network.T, network.lanes
    T = design_T if time_steps is None else int(time_steps)
    if not 1 <= T <= design_T:
        raise ValueError(f"time_steps {T} is out of range: 1..{design_T} (the design's T)")
    model, net = run_at(network, T)
    images = inputs.images
    if network.cfg.events and T != design_T:
        images = images[:, :T]          # event frames [N, T, C, H, W]: the run's first T
    out.mkdir(parents=True, exist_ok=True)
    codes, logits, trace, float_logits = golden_run(model, net, images)
    dut = network_design(network)
    case = out / f"case_T{T}.npz"
    meta = write_case(case, dut, codes, logits, trace, T)
    design, convert_s, build_s = compile_network(network, simulator, dut)
    results = out / f"results_T{T}.json"
    results.unlink(missing_ok=True)  # never read an earlier run's results
    begin = time.perf_counter()
    error = None
    try:
        # A run that never ends fails with the step it is stuck in instead of hanging: ten
        # times the cycle model's prediction of the slowest image, plus a million cycles.
        model = cycle_model(dut, network, axi, T)
        bound = 10 * max(model.predict(trace, i)["total"] for i in range(len(inputs)))
        env = {"NET_CASE": str(case), "NET_META": str(case) + ".json",
               "NET_MAX_CYCLES": str(int(bound) + 1_000_000),
               "NET_RESULTS": str(results),
               "NET_CORE": "core" if hasattr(dut, "weight_addr") else "",
               "NET_RESET_AFTER": str(reset_after or 0)}
        if network.weights == "axi":
            memory = {**AXI_DEFAULTS, **(axi or {})}
            env.update(NET_WEIGHTS=str(axi_image(verilog_path(network))),
                       NET_WEIGHT_BASE=str(memory["base"]), NET_AXI_LATENCY=str(memory["latency"]),
                       NET_AXI_PAUSE=str(memory["pause"]), NET_AXI_SEED=str(memory["seed"]),
                       NET_WEIGHT_RUN_BYTES=str(dut.ring.bytes_per_run(T)))
        toolchain.run(design, "sim.tb.network", name=f"network_T{T}", extra_env=env)
    except AssertionError as failure:
        error = str(failure)
    run_s = time.perf_counter() - begin
    rtl = json.loads(results.read_text())["images"] if results.exists() else []
    count = len(inputs)
    summary = {"T": T, "design_T": design_T, "trained": network.trained,
               "checkpoint": network.checkpoint,
               "images": count, "inputs": inputs.description, "input_source": inputs.source,
               "lanes": lanes, "arch": network.arch, "weights": network.weights,
               # what else the design point sets (schedule, fold, input buffer, ...; the
               # defaults unnamed)
               "design_options": network.design_options,
               "sepconv": network.sepconv,
               "sepconv_fused": (list(network.net.fuse_sepconv)
                                 if isinstance(network.net.fuse_sepconv, tuple)
                                 else network.net.fuse_sepconv),
               "simulator": simulator, "convert_s": convert_s, "build_s": build_s,
               "run_s": run_s, "error": error,
               "labels": inputs.labels if inputs.labels is not None else [None] * count,
               "int_logits": logits.tolist(), "int_pred": logits.argmax(1).tolist(),
               "float_logits": float_logits.tolist(),
               "float_pred": float_logits.argmax(1).tolist(),
               "rtl_pred": [int(np.argmax(r["logits"])) for r in rtl],
               "rtl": rtl}
    predictor = cycle_model(dut, network, axi, T)
    summary["report"] = step_report(dut, net, trace, rtl, meta, predictor) if rtl else []
    # unfused SepConv steps the cycle model can only bound (sim.perf.CycleModel.inexact)
    summary["model_lower_bound_steps"] = sorted(predictor.inexact)
    summary["memory_padding"] = dut.padding_report()
    if network.weights == "axi":
        summary["axi"] = {**AXI_DEFAULTS, **(axi or {}), **dut.ring.manifest(),
                          "bytes_per_run": dut.ring.bytes_per_run(T)}
        # Bytes each engine step reads over AXI4 per image (its layer's blocks at every visit
        # that fetches them: every time step, but once for a layer the layer schedule keeps in
        # the ring); the testbench measured the run's total (``rtl[i]["weight_bytes"]``).
        ring = dut.ring
        per_layer = {}
        for visit in ring.visits(T):
            layer = ring.layers[visit.layer]
            per_layer[layer.name] = per_layer.get(layer.name, 0) + (
                ring.layer_size(layer) if visit.fetch else 0)
        steps = dut.steps
        for row in summary["report"]:
            row["axi_read_bytes"] = per_layer.get(steps[row["step"]].layer, 0) \
                if steps[row["step"]].kind.label == "layer" else 0
    return summary


def run_network(T: int, images: int, out: Path, checkpoint=None, lanes: int = 16,
                seed: int = 0, arch: str = "shared", simulator: str | None = None,
                variant_name: str | None = None, inputs=None, sdsa: int | None = None,
                weights: str = "internal", axi: dict | None = None,
                time_steps: int | None = None, schedule: str = "time",
                parameters: str = "internal", reset_after: int | None = None,
                fold: int = 1, threshold_memory: str = "auto", input_buffer: int = 0,
                sepconv: str = "fused") -> dict:
    """Run ``images`` images on the design for ``T`` time steps in RTL (for ``time_steps`` of
    them, default all ``T``); return the summary (:func:`simulate`).

    :func:`prepare` (``sdsa``: a random model's operator), :func:`select_inputs` (``inputs``: as
    there; default the digits) and :func:`simulate` in one call.
    """
    network = prepare(T, checkpoint, variant_name=variant_name, lanes=lanes, arch=arch, seed=seed,
                      sdsa=sdsa, weights=weights, schedule=schedule, parameters=parameters,
                      fold=fold, threshold_memory=threshold_memory, input_buffer=input_buffer,
                      sepconv=sepconv)
    return simulate(network, select_inputs(network.net, images, inputs, seed), out, simulator,
                    axi=axi, time_steps=time_steps, reset_after=reset_after)


def _sops(dut, net, trace, step, t, image):
    """Return (synaptic operations, ideal cycles, dense MACs) of one step at one time step.

    A layer's ideal is one cycle per (spike, valid tap, group of ``lanes`` output channels),
    divided by its column fold (``F`` columns a cycle); SDSA's its additions over the lanes; a
    LIF or copy step's one word of ``lanes`` neurons a cycle."""
    from hw.accumulator import layer_sops
    from hw.program import StepKind

    lanes = dut.lanes
    if step.kind is StepKind.STEM:
        layer = net.layers[step.layer]
        macs = dut._stem_macs if hasattr(dut, "_stem_macs") else None
        cout, cin, k, _ = layer.weight.shape
        out = trace.accumulators[step.layer].shape[-1]
        macs = cout * cin * k * k * out * out
        return 0, macs / lanes, macs
    if step.kind is StepKind.LAYER and step.depthwise is not None:
        # SepConv unfused: the depthwise conv's additions (each spike's taps inside the map,
        # ``dw_lanes`` a cycle) and the pointwise conv's on the planes of its sums (a set bit
        # adds a weight per output channel, ``lanes`` a cycle)
        from hw.depthwise import spike_additions
        from quant.intops import magnitude_planes

        plan, info = dut.plan, dut.maps[step.source]
        spikes = map_spikes(net, trace, step.source)[t, image].numpy()
        spikes = spikes.reshape(info.logical_channels, info.height, info.width)
        dw = int(spike_additions(spikes, plan.dw_weight.shape[-1]).sum())
        sums = np.asarray(trace.accumulators[step.depthwise][t, image], dtype=np.int64)
        bits = int(magnitude_planes(sums, plan.planes)[0].sum())
        cout = net.layers[step.layer].weight.shape[0]
        return dw + bits * cout, dw / plan.dw_lanes + bits * ceil_div(cout, lanes), 0
    if step.kind is StepKind.LAYER:
        layer = net.layers[step.layer]
        spikes = map_spikes(net, trace, step.source)[t, image].numpy()
        info = dut.maps[step.source]
        if step.layer == "head":
            sops = layer_sops("linear", layer.weight.shape[:2], spikes.reshape(1, -1))
        else:
            sops = layer_sops("conv", layer.weight.shape,
                              spikes.reshape(info.logical_channels, info.height, info.width),
                              stride=layer.stride, padding=layer.padding)
        cout = layer.weight.shape[0]
        groups = ceil_div(cout, lanes)
        # Column folding: a folded layer adds a spike's taps into ``F`` columns a cycle.
        place = dut.plan.memory.layers.get(step.layer)
        fold = 1 << place.config.fold_log if place is not None else 1
        return sops, sops / cout * groups / fold, 0
    if step.kind is StepKind.SDSA:
        # Additions on spikes (hw.sdsa.SDSA.ideal_cycles): SDSA-3/4 add a d-wide row per Q and
        # K spike; SDSA-1 one count per set bit of K AND V, SDSA-2 per K spike.
        attn = net.attention[step.source]
        q = trace.spikes[step.attention.q][t, image].numpy()
        k = trace.spikes[step.attention.k][t, image].numpy()
        d = attn.head_width
        if attn.sdsa == 1:
            sops = int((k & trace.spikes[step.attention.v][t, image].numpy()).sum())
        elif attn.sdsa == 2:
            sops = int(k.sum())
        else:
            sops = int(q.sum() + k.sum()) * d
        return sops, sops / lanes, 0
    if step.kind is StepKind.EVENT_IN:   # one pixel's channels a cycle, no synaptic operations
        return 0, dut.plan.input_map.side ** 2, 0
    # LIF / copy steps: neuron updates, `lanes` per cycle, no synaptic operations.
    stream = net.streams.get(step.source) if step.source else None
    lif = step.sink.target   # a SEW pool pass: its LIF's channels
    channels = net.lifs[lif].threshold.shape[0] if lif in net.lifs else (
        stream.scale.shape[0] if stream else 0)
    side = dut.sizes.get(step.source, 1) if step.kind is not StepKind.BEGIN_STEM else \
        dut.sizes["downsample1_1"]
    if step.kind is StepKind.RESIDUAL_LIF:   # vanilla: its sums are the layer's map side
        side = dut.sizes[step.layer.split(".")[0]]
    if step.kind is StepKind.BEGIN_STEM:   # the stem's output channels
        channels = np.asarray(net.layers[step.layer].weight).shape[0]
    return 0, side * side * ceil_div(channels, lanes), 0


def cycle_model(dut, network: QuantizedNetwork, axi: dict | None = None,
                time_steps: int | None = None):
    """The cycle model of the design: :class:`sim.perf.CycleModel`, with the weight fetcher's
    timing when the weights come over AXI4 (:class:`sim.perf.AxiFetchModel`). The model knows a
    memory of fixed latency that never pauses; for a random one (a latency range, pauses) it
    takes the range's middle and no pauses, an estimate only."""
    if network.weights != "axi":
        return CycleModel(dut.plan, time_steps=time_steps)
    from sim.tb.axi_memory import parse_latency

    low, high = parse_latency({**AXI_DEFAULTS, **(axi or {})}["latency"])
    return CycleModel(dut.plan, ring=dut.ring, latency=(low + high) // 2, time_steps=time_steps)


def step_report(dut, net, trace, rtl, meta, model=None) -> list[dict]:
    """Return one row per program step: cycles (mean over images; ``rtl_cycles`` the same),
    the cycle model's ``predicted_cycles`` (:class:`sim.perf.CycleModel`, mean over the same
    images), ideal cycles, SOPs, energy. Each ``rtl`` result gains its ``predicted_cycles``."""
    steps = dut.steps
    T = meta["T"]
    rows = []
    per_step = {}
    for image, result in enumerate(rtl):
        marks = [tuple(e) for e in result["steps"]]
        # A run that starts at step 0 (the first after reset) records no change into step 0 at
        # t = 0 (the layer schedule's next visit is step 0 again, at t = 1).
        if not marks or marks[0][:2] != (0, 0):
            marks = [(0, 0, 0)] + marks
        for (t0, k0, c0), (t1, k1, c1) in zip(marks, marks[1:]):
            if k0 < len(steps):
                per_step.setdefault((k0, t0), []).append(c1 - c0)
        last_t, last_k, last_c = marks[-1]
        if last_k < len(steps):
            per_step.setdefault((last_k, last_t), []).append(result["cycles"] - last_c)
    weight_bits = net.weight_bits
    model = model or CycleModel(dut.plan)
    # Whole runs: a step's cycles may depend on the steps before it (weights over AXI4).
    predictions = []
    for image, result in enumerate(rtl):
        run = model.predict(trace, image)
        result["predicted_cycles"] = run["total"]
        predictions.append({(row["t"], row["step"]): row["cycles"] for row in run["steps"]})
    for k, step in enumerate(steps):
        cycles = ideal = sops = macs = predicted = 0.0
        for t in range(T):
            if step.first_step_only and t and (k, t) not in per_step:
                continue  # a stem that ran only once (the shared network recomputes it)
            samples = per_step.get((k, t), [0])
            cycles += float(np.mean(samples))
            if step.kind is not StepKind.BEGIN_STEM:
                predicted += float(np.mean([run.get((t, k), 0) for run in predictions]))
            s, i, mac = 0.0, 0.0, 0.0
            for image in range(len(rtl)):
                a, b, c = _sops(dut, net, trace, step, t, image)
                s, i, mac = s + a, i + b, mac + c
            n = max(1, len(rtl))
            sops, ideal, macs = sops + s / n, ideal + i / n, macs + mac / n
        paper = E_MAC_PAPER * macs + E_AC_PAPER * sops
        memory = (macs * (E_MUL_INT8 + E_ADD_INT8 + E_SRAM_BYTE * weight_bits / 8)
                  + sops * (E_ADD_INT8 + E_SRAM_BYTE * weight_bits / 8))
        rows.append({"step": k, "kind": step.kind.label, "name": step.name, "cycles": cycles,
                     "rtl_cycles": cycles, "predicted_cycles": predicted,
                     "ideal_cycles": ideal, "utilisation": ideal / cycles if cycles else 0.0,
                     "sops": sops, "macs": macs, "energy_paper_pJ": paper,
                     "energy_memory_pJ": memory})
    return rows


def totals(summary: dict, clock_mhz: float = 100.0) -> dict:
    """Return (and store as ``summary['total']``) the per-step report summed over the steps:
    cycles (RTL and predicted, with the model's total and worst-step relative error), ideal
    cycles, utilisation, SOPs, MACs, energy, and the latency at ``clock_mhz``."""
    rows = summary["report"]
    total = {key: sum(r[key] for r in rows) for key in
             ("cycles", "rtl_cycles", "predicted_cycles", "ideal_cycles", "sops", "macs",
              "energy_paper_pJ", "energy_memory_pJ")}
    total["utilisation"] = total["ideal_cycles"] / total["cycles"] if total["cycles"] else 0
    # The cycle model against the RTL (sim.perf; targets: 3 % in total, 10 % per step).
    total["model_error"] = (abs(total["predicted_cycles"] - total["cycles"]) / total["cycles"]
                            if total["cycles"] else 0.0)
    total["model_worst_step_error"] = max(
        (abs(r["predicted_cycles"] - r["cycles"]) / r["cycles"] for r in rows if r["cycles"]),
        default=0.0)
    total["model_within_targets"] = (total["model_error"] <= TARGET_TOTAL
                                     and total["model_worst_step_error"] <= TARGET_STEP)
    total["latency_us"] = total["cycles"] / clock_mhz
    total["clock_mhz"] = clock_mhz
    summary["total"] = total
    return total


def write_report(summary: dict, out: Path, clock_mhz: float) -> None:
    """Write the per-step report as JSON, CSV and a PNG plot of cycles against the ideal."""
    out = Path(out)
    T = summary["T"]
    rows = summary["report"]
    totals(summary, clock_mhz)
    (out / f"report_T{T}.json").write_text(json.dumps(
        {k: v for k, v in summary.items() if k != "rtl"} | {"rtl_cycles": [
            r["cycles"] for r in summary["rtl"]], "predicted_cycles": [
                r.get("predicted_cycles") for r in summary["rtl"]], "rtl_wall_s": [r["wall_s"]
                                                                 for r in summary["rtl"]]},
        indent=1))
    with open(out / f"report_T{T}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    index = np.arange(len(rows))
    ax.bar(index - 0.2, [r["cycles"] for r in rows], 0.4, label="RTL cycles")
    ax.bar(index + 0.2, [r["ideal_cycles"] for r in rows], 0.4, label="ideal (work / lanes)")
    ax.set_xticks(index, [r["name"] for r in rows], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"shared network ({summary.get('checkpoint')}), T={T}: cycles per step")
    fig.tight_layout()
    # No software/date metadata: the same run gives the same bytes.
    fig.savefig(out / f"report_T{T}.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def print_summary(summary: dict) -> None:
    """Print predictions side by side and the per-step table."""
    T = summary["T"]
    note = "" if summary["trained"] else " (random demo weights: no checkpoint, accuracy moot)"
    if summary.get("input_source") == "random":
        note += " (random inputs: their predictions mean nothing; the bit-exact check still holds)"
    print(f"\n=== T={T}: {summary['images']} images{note}")
    fused = summary.get("sepconv_fused", True)
    if fused is not True:
        print(f"SepConv ({summary.get('sepconv')}): "
              + ("unfused in every block" if fused is False else
                 f"fused in {', '.join(fused) or 'no block'}, unfused in the others"))
    print(f"{'image':>5} {'label':>5} {'float':>5} {'int':>5} {'rtl':>5}  {'cycles':>8} "
          f"{'model':>8} {'wall s':>7}  bit-exact")
    for i, r in enumerate(summary["rtl"]):
        label = summary["labels"][i]
        print(f"{i:>5} {'-' if label is None else label:>5} {summary['float_pred'][i]:>5} "
              f"{summary['int_pred'][i]:>5} {summary['rtl_pred'][i]:>5}  {r['cycles']:>8} "
              f"{r.get('predicted_cycles', 0):>8} {r['wall_s']:>7.2f}  {'yes' if r['match'] else 'NO'}")
    if summary["report"]:
        print(f"\n{'step':<34} {'cycles':>9} {'model':>9} {'ideal':>9} {'util':>6} {'SOPs':>9} "
              f"{'E paper nJ':>10} {'E mem nJ':>9}")
        for r in summary["report"]:
            print(f"{r['name'][:34]:<34} {r['cycles']:>9.0f} {r['predicted_cycles']:>9.0f} "
                  f"{r['ideal_cycles']:>9.0f} "
                  f"{r['utilisation']:>6.2f} {r['sops']:>9.0f} {r['energy_paper_pJ'] / 1e3:>10.2f}"
                  f" {r['energy_memory_pJ'] / 1e3:>9.2f}")
        tot = summary.get("total")
        if tot:
            print(f"{'total':<34} {tot['cycles']:>9.0f} {tot['predicted_cycles']:>9.0f} "
                  f"{tot['ideal_cycles']:>9.0f} "
                  f"{tot['utilisation']:>6.2f} {tot['sops']:>9.0f} "
                  f"{tot['energy_paper_pJ'] / 1e3:>10.2f} {tot['energy_memory_pJ'] / 1e3:>9.2f}")
            print(f"latency at {tot['clock_mhz']:.0f} MHz: {tot['latency_us']:.1f} us per image")
            if summary.get("model_lower_bound_steps"):
                print("cycle model: a lower bound, not exact, for "
                      + ", ".join(summary["model_lower_bound_steps"])
                      + " (the depthwise engine may be slower than the plane writer there)")
            verdict = "within" if tot["model_within_targets"] else "OUTSIDE"
            print(f"cycle model (sim.perf): total {100 * tot['model_error']:.2f} % off the RTL, "
                  f"worst step {100 * tot['model_worst_step_error']:.2f} % ({verdict} the "
                  f"{100 * TARGET_TOTAL:.0f} % / {100 * TARGET_STEP:.0f} % targets)")
    axi = summary.get("axi")
    if axi and summary["rtl"]:
        read = summary["rtl"][0].get("weight_bytes")
        print(f"weights over AXI4 ({axi['data_width']}-bit bus, latency {axi['latency']}, pauses "
              f"{axi['pause']}): {read:,} bytes read per image (T x the image's layers: "
              f"T x {axi['bytes_per_step']:,}; the layer schedule reads a layer kept in the ring "
              f"once); floor (the weights at their bits, once per time step) T x "
              f"{axi['floor_bytes']:,}: {read / (T * axi['floor_bytes']):.3f}x; on-chip ring "
              f"{axi['ring_depth']:,} words ({axi['ring_bits'] / 1e3:,.0f} Kbit); per step: "
              "axi_read_bytes in the report")
    padding = summary.get("memory_padding")
    if padding:   # each memory's bits over what its contents need (hw.plan.padding_report)
        print("memory (bits / needed): " + ", ".join(
            f"{name} {row['bits'] / 8e3:,.0f} KB ({row['overhead']:.2f}x)"
            for name, row in padding.items() if row["overhead"] is not None))
    simulator = {"icarus": "Icarus"}.get(summary.get("simulator"), "Verilator")
    print(f"convert {summary['convert_s']:.1f} s, {simulator} build {summary['build_s']:.1f} s, "
          f"simulation of {summary['images']} images {summary['run_s']:.1f} s")
    if summary["error"]:
        print(f"MISMATCH:\n{summary['error']}")


def main(argv=None) -> int:
    """Run the end-to-end co-simulation; return 0 when the RTL equals the integer model everywhere.

    A thin wrapper: :func:`prepare` at every T, :func:`select_inputs`, then :func:`simulate`,
    :func:`write_report` and :func:`print_summary` per T (``rtl_gen.api`` calls the same).
    """
    p = Parser(prog="python -m sim.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=None,
                   help=f"the first N images per T (default: all of an --inputs file, else "
                        f"{DEFAULT_IMAGES})")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2], help="time steps (default 1 2)")
    p.add_argument("--max-T", type=int, default=None, metavar="N",
                   help="build one design for N time steps and run every --T (at most N) on it "
                        "through its time_steps port (default: a design per T)")
    p.add_argument("--checkpoint", default=None,
                   help=f"default {DEFAULT_CHECKPOINT}; 'random': seeded random weights. Its "
                        "configuration is the checkpoint's own (saved, else from its shapes)")
    p.add_argument("--variant", default=None,
                   help="use this golden.config variant's configuration instead of the "
                        "checkpoint's (for a checkpoint that saves none); its shapes must match")
    p.add_argument("--inputs", default=None, metavar="FILE|digits|random",
                   help="a .npy or .pt file of float images [N, C, H, W] in the model's pixel "
                        "range; 'digits': the held-out digits (1x32x32 models); 'random': seeded "
                        "random images. Default: the digits when the model takes 1x32x32, "
                        "else random images")
    p.add_argument("--sdsa", type=int, choices=(1, 2, 3, 4), default=None,
                   help="with --checkpoint random: the demo's shape with this SDSA operator, its "
                        "batch norms calibrated so that every LIF fires (default: the historic "
                        "random demo, SDSA-3, uncalibrated)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of random images (--inputs random) and of random weights "
                        "(--checkpoint random); default 0")
    p.add_argument("--lanes", type=int, default=None,
                   help="lanes of the engine, the LIF array and every memory word (default 16)")
    p.add_argument("--arch", choices=("shared",), default="shared",
                   help="the time-multiplexed network (hw.shared), the only one since the "
                        "one-engine-per-layer vehicle was retired")
    p.add_argument("--weights", choices=("internal", "axi"), default="internal",
                   help="'internal': a weight memory in the design (default); 'axi': weights "
                        "streamed from external memory over an AXI4 read master into an on-chip "
                        "ring (hw.weightfetch), the testbench's memory an AXI RAM model")
    p.add_argument("--schedule", choices=("time", "layer"), default="time",
                   help="the sequencer's order: 'time' (default: every step of a time step, "
                        "then the next time step; every LIF keeps its membranes) or 'layer' "
                        "(every time step of a step, then the next step: one LIF's membranes "
                        "at a time, every stream kept per time step; not with --weights axi)")
    p.add_argument("--parameters", choices=("internal", "external"), default="internal",
                   help="'external': the biases and LIF thresholds, like the weights, behind read "
                        "ports of the design that the testbench answers from $readmemh images "
                        "(the design holds no parameter; not with --weights axi)")
    p.add_argument("--fold", type=int, default=1, choices=(1, 2, 4, 8, 16, 32),
                   help="column folding: a layer of at most lanes / F output channels "
                        "accumulates F neighbouring output columns a cycle, F up to this "
                        "(default 1: none; lanes a power of two; not with --weights axi; "
                        "hw/progengine.py, \"Column folding\")")
    p.add_argument("--input-buffer", type=int, default=0, metavar="WORDS",
                   help="words the engine's input slice holds, dropping the spike map's empty "
                        "rows as they arrive: 0 (default, none) or 2..64 (design point field "
                        "'input_buffer'; hw/progengine.py, \"Cost\")")
    p.add_argument("--sepconv", choices=SEPCONV, default="fused",
                   help="SepConv's dwconv -> pwconv2: 'fused' (default: one dense 7x7 conv on "
                        "the engine), 'unfused' (the depthwise engine on the spikes, its "
                        "sums' bit planes, a 1x1 conv on the engine: hw/sepconv.py) or 'auto' "
                        "(per block, whichever the cycle model finds faster on 4 calibration "
                        "inputs); design point field 'sepconv'")
    p.add_argument("--threshold-memory", choices=("auto", "logic"), default="auto",
                   help="where the LIF thresholds go: 'auto' (default: the synthesis tool's "
                        "choice, block RAM) or 'logic' (LUTs and multiplexers, read from a "
                        "register of the group; design point field 'threshold_memory')")
    p.add_argument("--axi-width", type=int, default=64, choices=(32, 64, 128, 256, 512, 1024),
                   help="with --weights axi: bits of the AXI data bus (default 64)")
    p.add_argument("--weight-ring", type=int, default=None, metavar="WORDS",
                   help="with --weights axi: words of the on-chip weight ring, a power of two "
                        "(default: four of the largest blocks, at least 1,024)")
    p.add_argument("--axi-latency", default=AXI_DEFAULTS["latency"], metavar="N|LOW-HIGH",
                   help=f"with --weights axi: cycles from a burst's request to its first beat, "
                        f"fixed or drawn per burst (default {AXI_DEFAULTS['latency']})")
    p.add_argument("--axi-pause", type=float, default=AXI_DEFAULTS["pause"],
                   help=f"with --weights axi: chance per cycle that the memory drops arready and "
                        f"rvalid (default {AXI_DEFAULTS['pause']}; 0: a memory that never "
                        "stalls beyond its latency)")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for the latency figure (default 100 MHz; see docs/network.md)")
    p.add_argument("--out", default=str(ROOT / "build" / "e2e"), help="report directory")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="simulator (default: $SIM, else verilator); Icarus is far slower on the "
                        "whole network (docs/simulators.md)")
    args = p.parse_args(argv)
    problem = None
    if args.images is not None and args.images < 1:
        problem = f"--images {args.images} is out of range: at least 1"
    elif min(args.T) < 1:
        problem = f"--T {min(args.T)} is out of range: at least 1"
    elif args.max_T is not None and not max(args.T) <= args.max_T <= 64:
        problem = (f"--max-T {args.max_T} is out of range: {max(args.T)} (the largest --T) "
                   "to 64")
    elif args.lanes is not None and not 1 <= args.lanes <= 256:
        problem = f"--lanes {args.lanes} is out of range: 1..256"
    elif args.input_buffer != 0 and not 2 <= args.input_buffer <= 64:
        problem = f"--input-buffer {args.input_buffer} is out of range: 0 (none) or 2..64"
    elif not 0 < args.clock_mhz < float("inf"):
        problem = f"--clock-mhz {args.clock_mhz} must be finite and > 0"
    elif not 0 <= args.axi_pause < 1:
        problem = f"--axi-pause {args.axi_pause} is out of range: 0 <= p < 1"
    elif args.sdsa is not None and args.checkpoint != "random":
        problem = (f"--sdsa {args.sdsa} chooses the operator of a random model (--checkpoint "
                   "random); a checkpoint's operator is its own")
    if problem is None:
        from sim.tb.axi_memory import parse_latency
        try:
            parse_latency(args.axi_latency)
        except ValueError as error:
            problem = f"--axi-latency: {error}"
    if problem is None and args.checkpoint not in (None, "random") \
            and not Path(args.checkpoint).exists():
        problem = f"checkpoint {args.checkpoint} does not exist"
    networks = {}
    inputs = None
    if problem is None:
        # Load, check and quantize the checkpoint at every T, and read and check the inputs,
        # before anything is written, built or simulated: a bad checkpoint is one line naming
        # the file and the key, bad inputs one line naming the file and the problem.
        lanes = args.lanes or 16
        name = args.checkpoint or DEFAULT_CHECKPOINT
        try:
            for T in ([args.max_T] if args.max_T else args.T):
                built = prepare(T, args.checkpoint, variant_name=args.variant, lanes=lanes,
                                arch=args.arch, seed=args.seed, sdsa=args.sdsa,
                                weights=args.weights, axi_width=args.axi_width,
                                weight_ring=args.weight_ring, schedule=args.schedule,
                                parameters=args.parameters, fold=args.fold,
                                threshold_memory=args.threshold_memory,
                                input_buffer=args.input_buffer, sepconv=args.sepconv)
                if args.max_T:
                    networks = {run_T: built for run_T in args.T}
                else:
                    networks[T] = built
            inputs = select_inputs(networks[args.T[0]].net, args.images, args.inputs, args.seed)
        except (NotImplementedError, InputError) as error:  # refused model, bad inputs
            problem = _one_line(error)
        except KeyError as error:
            problem = f"checkpoint {name}: {_one_line(error)}"
        except (ValueError, OSError) as error:  # CheckpointError, QuantizationError
            problem = _one_line(error)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    status = 0
    for T in args.T:
        print(f"simulating {describe(networks[T].cfg)}"
              + (f", run for T={T} time steps" if args.max_T else ""), flush=True)
        print(f"inputs: {inputs.description}", flush=True)
        summary = simulate(networks[T], inputs, Path(args.out), simulator=args.sim,
                           axi={"latency": args.axi_latency, "pause": args.axi_pause},
                           time_steps=T if args.max_T else None)
        if summary["rtl"]:
            write_report(summary, Path(args.out), args.clock_mhz)
        print_summary(summary)
        if summary["error"] or not summary["rtl"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
