"""Load and save Meta-SpikeFormer checkpoints in the official formats, strictly and safely.

Accepted layouts (a ``.pth``/``.pt`` file read with ``torch.load(weights_only=True)``, or a
``.safetensors`` file):

- ``{'model': state_dict, ...}``: the official classification checkpoints (with or without
  ``head_kd.*``; the extra ``args``, ``optimizer``, ``epoch`` ... entries are ignored) and this
  project's demo checkpoint, which adds ``'config'`` (a :meth:`ModelConfig.to_dict` dict);
- a bare state dict;
- ``{'state_dict': ...}`` with a ``backbone.`` prefix and no classifier: the detection and
  segmentation layout of the same authors (keys outside ``backbone.`` are ignored; the head keeps
  its initial weights);
- a ``module.`` prefix (DataParallel) is removed.

Loading is strict: a missing, unexpected or mis-shaped key raises :class:`CheckpointError` naming
the key, the shape expected and the shape found, and the file. So does a value no trained model
holds (:func:`check_values`): NaN or Inf, a negative batch-norm ``running_var``, or a magnitude
beyond :data:`MAX_ABS_VALUE` (``running_var``: :data:`MAX_RUNNING_VAR`). Every message is one
line.
"""

from __future__ import annotations

import argparse
import json
import os
import re

import torch

from .config import ModelConfig, variant
from .model import MetaSpikeFormer

__all__ = ["CheckpointError", "read_checkpoint", "load_checkpoint", "save_checkpoint",
           "infer_config", "check_state_dict", "check_values", "MAX_ABS_VALUE",
           "MAX_RUNNING_VAR"]

#: Largest magnitude accepted in a checkpoint's floating-point tensors (weights, biases, BN
#: affine parameters and running means, learned thresholds). Trained values are of order 1 (the
#: demo's largest is 2.1); anything beyond 1e6 is corruption, not training. The bound also keeps
#: the arithmetic sane downstream: a folded weight is at most 1e6 / sqrt(BN eps 1e-5) = 3.2e8,
#: so float32 forward passes stay finite and the quantizer's per-channel scales stay far inside
#: float64, whose integers are exact below 2**53.
MAX_ABS_VALUE = 1e6
#: Largest accepted batch-norm ``running_var``: a variance is a square, so the square of
#: :data:`MAX_ABS_VALUE`. Zero is accepted (BN divides by ``sqrt(var + eps)``: a channel that never
#: varied, e.g. behind pruned weights, has a zero running variance, and it folds exactly);
#: negative is refused (no variance is negative; it makes the fold NaN).
MAX_RUNNING_VAR = MAX_ABS_VALUE ** 2


class CheckpointError(ValueError):
    """Report a checkpoint that does not fit the model (keys, shapes, format or values)."""


def _index(flat_position: int, shape: tuple) -> tuple:
    """Return the multi-index of a flat position (for messages)."""
    index = []
    for size in reversed(shape):
        index.append(flat_position % size)
        flat_position //= size
    return tuple(reversed(index))


def check_values(sd: dict, source: str = "state dict") -> None:
    """Raise :class:`CheckpointError` (one line) unless every floating value is plausible.

    Refused: NaN or Inf anywhere; a batch-norm ``running_var`` below 0 or above
    :data:`MAX_RUNNING_VAR`; any other value with ``|x| > MAX_ABS_VALUE``. The message names the
    source, the state-dict key, the first offending index and value, and the allowed range.
    Integer tensors (``num_batches_tracked``) are not checked.
    """
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        flat = value.detach().reshape(-1).to(torch.float64)
        if flat.numel() == 0:
            continue
        shape = tuple(value.shape)
        finite = torch.isfinite(flat)
        if not bool(finite.all()):
            nan = int(torch.isnan(flat).sum())
            inf = int(torch.isinf(flat).sum())
            first = int((~finite).nonzero()[0, 0])
            raise CheckpointError(
                f"{source}: key {key!r} holds {nan} NaN and {inf} Inf value(s) of {flat.numel()} "
                f"(first: {float(flat[first])} at index {_index(first, shape)}); every value "
                f"must be finite")
        if key.endswith("running_var"):
            low, high, what = 0.0, MAX_RUNNING_VAR, "a batch-norm running variance"
        else:
            low, high, what = -MAX_ABS_VALUE, MAX_ABS_VALUE, "a checkpoint value"
        outside = (flat < low) | (flat > high)
        if bool(outside.any()):
            first = int(outside.nonzero()[0, 0])
            raise CheckpointError(
                f"{source}: key {key!r} holds {int(outside.sum())} value(s) outside "
                f"[{low:g}, {high:g}] (first: {float(flat[first]):g} at index "
                f"{_index(first, shape)}); allowed for {what}: {low:g} to {high:g}")


def _torch_load(path: str) -> object:
    # Official checkpoints carry an argparse.Namespace of training arguments; it is plain data,
    # so it is the one class allowed beyond what weights_only accepts by default.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler raises several types; name the file
            raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): "
                                  f"{_load_failure(exc)}") from exc


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict | None, str]:
    """Return ``(state_dict, config_dict_or_None, layout)`` from a checkpoint file.

    ``layout`` is ``'model'``, ``'bare'``, ``'backbone'`` or ``'safetensors'``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        try:
            sd = load_file(path)
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
            config = json.loads(meta["config"]) if "config" in meta else None
        except Exception as exc:  # SafetensorError, JSONDecodeError, ...: name the file
            raise CheckpointError(f"{path}: cannot be read as safetensors: "
                                  f"{_one_line(exc)}") from exc
        if config is not None and not isinstance(config, dict):
            raise CheckpointError(f"{path}: metadata 'config' is not a JSON object")
        return _strip_module(sd), config, "safetensors"
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    config = obj.get("config") if isinstance(obj.get("config"), dict) else None
    if "model" in obj and isinstance(obj["model"], dict):
        return _strip_module(obj["model"]), config, "model"
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = _strip_module(obj["state_dict"])
        if any(k.startswith("backbone.") for k in sd):
            return ({k[len("backbone."):]: v for k, v in sd.items()
                     if k.startswith("backbone.")}, config, "backbone")
        return sd, config, "model"
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _strip_module(obj), None, "bare"
    raise CheckpointError(f"{path}: no 'model' or 'state_dict' entry and not a bare state dict "
                          f"(top-level keys: {sorted(map(str, obj))[:10]})")


def _load_failure(exc: BaseException) -> str:
    """Return the reason inside torch.load's message, on one line, without its advice.

    torch's text suggests re-running with ``weights_only=False``, which would run a hostile
    pickle's code; the reason alone is what the user needs.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Please use|Check the documentation|$)",
                      text, re.S)
    if found:
        detail = " ".join(found.group(1).split()).rstrip(".")
        call = re.search(r"Unsupported global: GLOBAL (\S+)", detail)
        if call:
            return (f"refused, unpickling it would call {call.group(1)} (a checkpoint holds "
                    f"tensors and plain data only; nothing was run)")
        return f"not a checkpoint of tensors and plain data ({detail})"
    if isinstance(exc, EOFError) or not text.strip():
        return f"empty or truncated ({type(exc).__name__})"
    return _one_line(text.split(". ")[0])


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    """Return an exception's message on one line, shortened to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _strip_module(sd: dict) -> dict:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def infer_config(sd: dict, source: str = "state dict", **overrides) -> ModelConfig:
    """Return the official-structure config whose shapes the state dict has.

    Widths, block counts, input channels, classes and the KD head come from the shapes; the
    image size (224), heads (8) and T (1) cannot be seen in weights and take the official
    values unless given in ``overrides``.
    """
    def shape(key):
        if key not in sd:
            raise CheckpointError(f"{source}: cannot infer the configuration, key {key!r} "
                                  f"is missing")
        return tuple(sd[key].shape)

    stem = shape("downsample1_1.encode_conv.weight")
    widths = [shape(f"{d}.encode_conv.weight")[0]
              for d in ("downsample1_2", "downsample2", "downsample3", "downsample4")]
    depths = []
    for stage in ("ConvBlock1_1", "ConvBlock1_2", "ConvBlock2_1", "ConvBlock2_2", "block3",
                  "block4"):
        idx = {int(m.group(1)) for k in sd for m in [re.match(rf"{stage}\.(\d+)\.", k)] if m}
        depths.append(max(idx) + 1 if idx else 0)
    fields = dict(embed_dim=tuple(widths), depths=tuple(depths), in_channels=stem[1],
                  kd_head="head_kd.weight" in sd, num_heads=8, img_size=224, T=1,
                  num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 1000,
                  name="from-checkpoint")
    if stem[0] * 2 != widths[0]:
        raise CheckpointError(f"{source}: stem width {stem[0]} is not half of "
                              f"downsample1_2's {widths[0]}; not an official-structure model "
                              f"(pass cfg= for ablations)")
    fields.update(overrides)
    return ModelConfig(**fields).validate()


def check_state_dict(model: torch.nn.Module, sd: dict, source: str = "state dict",
                     allow_missing: tuple = ()) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the model's keys and shapes.

    Parameters
    ----------
    allow_missing : tuple of str
        Key prefixes that may be absent (the head, for backbone-only checkpoints).
    """
    expected = model.state_dict()
    problems = []
    for key, ref in expected.items():
        if key not in sd:
            if not key.startswith(allow_missing) or not allow_missing:
                problems.append(f"missing key {key!r} (expected shape {tuple(ref.shape)}, "
                                f"found none)")
        elif tuple(sd[key].shape) != tuple(ref.shape):
            problems.append(f"key {key!r}: expected shape {tuple(ref.shape)}, found "
                            f"{tuple(sd[key].shape)}")
    for key in sd:
        if key not in expected:
            found = tuple(sd[key].shape) if hasattr(sd[key], "shape") else type(sd[key])
            problems.append(f"unexpected key {key!r} (expected none, found shape {found})")
    if problems:
        shown = "; ".join(problems[:4])
        more = f"; ... and {len(problems) - 4} more" if len(problems) > 4 else ""
        name = model.cfg.name if hasattr(model, "cfg") else type(model).__name__
        raise CheckpointError(f"{source} does not fit the {name} model "
                              f"({len(problems)} problem(s)): {shown}{more}")


def load_checkpoint(path: str | os.PathLike, cfg: ModelConfig | str | None = None,
                    **overrides) -> MetaSpikeFormer:
    """Build a model and load a checkpoint into it, strictly.

    Parameters
    ----------
    path : path-like
        ``.pth``/``.pt`` (read with ``weights_only=True``) or ``.safetensors``.
    cfg : ModelConfig or str, optional
        The configuration (or a variant name). Default: the checkpoint's ``'config'`` entry, else
        inferred from the shapes (:func:`infer_config`).
    **overrides
        Config fields to change, e.g. ``T=4`` or ``img_size=32``.

    Returns
    -------
    MetaSpikeFormer
        In eval mode.
    """
    sd, config, layout = read_checkpoint(path)
    source = f"checkpoint {os.fspath(path)}"
    if isinstance(cfg, str):
        cfg = variant(cfg, **overrides)
    elif cfg is not None:
        cfg = cfg.replace(**overrides).validate() if overrides else cfg.validate()
    elif config is not None:
        try:
            ModelConfig.from_dict(config).validate()
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{source}: its 'config' entry is not a valid model "
                                  f"configuration: {_one_line(exc)}") from exc
        cfg = ModelConfig.from_dict(config).replace(**overrides).validate()
    else:
        cfg = infer_config(sd, source, **overrides)
    model = MetaSpikeFormer(cfg)
    allow = ("head.", "head_kd.") if layout == "backbone" else ()
    check_state_dict(model, sd, source, allow_missing=allow)
    check_values(sd, source)
    model.load_state_dict(sd, strict=not allow)
    return model.eval()


def save_checkpoint(model: MetaSpikeFormer, path: str | os.PathLike, **extra) -> None:
    """Save ``{'model': state_dict, 'config': cfg.to_dict(), **extra}`` (or safetensors)."""
    path = os.fspath(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, path, metadata={"config": json.dumps(model.cfg.to_dict())})
        return
    torch.save({"model": sd, "config": model.cfg.to_dict(), **extra}, path)
