"""Golden float model of Meta-SpikeFormer: official-compatible, with ablations, energy, training.

Public API::

    from golden import ModelConfig, variant, MetaSpikeFormer, load_checkpoint, record_spikes

The names are imported on first use (PEP 562), so ``import golden.progress`` (the co-simulation's
testbench, inside the simulator) does not import torch and the model.
"""

import importlib

#: Public name -> the submodule that defines it.
_HOMES = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ABLATIONS": "config", "ModelConfig": "config", "ablation": "config", "variant": "config",
    "MultiStepLIF": "lif",
    "MetaSpikeFormer": "model", "build_model": "model", "lif_modules": "model",
    "record_spikes": "model",
}

__all__ = ["ABLATIONS", "CheckpointError", "MetaSpikeFormer", "ModelConfig", "MultiStepLIF",
           "ablation", "build_model", "lif_modules", "load_checkpoint", "record_spikes",
           "save_checkpoint", "variant"]


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'golden' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
