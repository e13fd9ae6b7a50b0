"""The M3AE model and its pluggable components.

Importing this package registers every component (encoders, fusion, masking,
decoders, objectives, ITM negatives) in `m3ae.registry`.

    model = build_model(cfg.model, vocab)
    out = model(batch)            # M3AEOutput: loss, losses, metrics, mim_pred, mim_mask
    fused = model.encode(images, input_ids, attention_mask)   # Fused: ..., pooled [B, 2D]
"""

from m3ae.model import decoders, encoders, fusion, masking, objectives  # noqa: F401  (registration)
from m3ae.model.heads import ClassificationHead, ITMHead, Pooler, VQAHead
from m3ae.model.m3ae import M3AE, Fused, M3AEOutput, build_model

__all__ = ["M3AE", "M3AEOutput", "Fused", "build_model", "VQAHead", "ClassificationHead", "ITMHead", "Pooler"]
