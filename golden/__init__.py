"""Golden float model of Meta-SpikeFormer: official-compatible, with ablations, energy, training.

Public API::

    from golden import ModelConfig, variant, MetaSpikeFormer, load_checkpoint, record_spikes
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ABLATIONS, ModelConfig, ablation, variant
from .lif import MultiStepLIF
from .model import MetaSpikeFormer, build_model, lif_modules, record_spikes

__all__ = ["ABLATIONS", "CheckpointError", "MetaSpikeFormer", "ModelConfig", "MultiStepLIF",
           "ablation", "build_model", "lif_modules", "load_checkpoint", "record_spikes",
           "save_checkpoint", "variant"]
