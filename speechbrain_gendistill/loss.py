"""DistilHuBERT's distillation loss, with padding masked out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DistillationLoss(nn.Module):
    """Per layer: L1(y, h) - lambda * log sigmoid(cos(y, h)), averaged over valid frames.

    Arguments
    ---------
    cosine_weight : float
        lambda (DistilHuBERT: 1).
    layer_weights : list of float, optional
        One weight per target layer for the sum over layers (default: all 1).

    Returns (from ``forward``) a dict with ``loss`` (the weighted sum, a scalar),
    ``l1`` [K] and ``cosine`` [K] (mean cosine similarity, not the loss term).

    Example
    -------
    >>> loss = DistillationLoss()
    >>> target = torch.randn(3, 2, 5, 8)
    >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    >>> out = loss(target, target, mask)
    >>> out["l1"].tolist(), [round(value, 5) for value in out["cosine"].tolist()]
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """

    def __init__(self, cosine_weight: float = 1.0, layer_weights: list[float] | None = None) -> None:
        super().__init__()
        self.cosine_weight = cosine_weight
        self.layer_weights = layer_weights

    def forward(
        self, predictions: torch.Tensor, targets: torch.Tensor, frame_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if predictions.shape != targets.shape:
            raise ValueError(
                f"student output {tuple(predictions.shape)} and teacher targets {tuple(targets.shape)} "
                "differ: [K, B, T, D] must match (same layers, same frame rate, same width)"
            )
        mask = frame_mask.to(predictions.dtype)  # [B, T]
        frames = mask.sum().clamp(min=1.0)
        l1 = ((predictions - targets).abs().mean(-1) * mask).sum((1, 2)) / frames
        cosine = F.cosine_similarity(predictions, targets, dim=-1)
        cosine_term = (-F.logsigmoid(cosine) * mask).sum((1, 2)) / frames
        mean_cosine = (cosine * mask).sum((1, 2)) / frames
        per_layer = l1 + self.cosine_weight * cosine_term
        weights = per_layer.new_tensor(self.layer_weights) if self.layer_weights else torch.ones_like(per_layer)
        if weights.shape != per_layer.shape:
            raise ValueError(f"layer_weights has {weights.numel()} entries for {per_layer.numel()} target layers")
        return {"loss": (weights * per_layer).sum(), "l1": l1.detach(), "cosine": mean_cosine.detach()}
