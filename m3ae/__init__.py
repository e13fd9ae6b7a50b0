"""M3AE: multi-modal masked autoencoders for medical vision-and-language pre-training.

The model, data and training loops. Knows nothing of Ray, MLflow or Optuna:
training reports through `m3ae.train.callbacks`, and the platform (`ablations`)
plugs tracking in behind it.
"""

from m3ae.config import Config, ConfigError, apply_overrides, profile

__all__ = ["Config", "ConfigError", "apply_overrides", "profile"]
