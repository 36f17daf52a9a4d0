"""Keep-masks shared by magnitude pruning, CSP and CSP fine-tuning (`prune`, `csp`, `finetune`
import them from here, so none of the three imports another for a mask)."""

from __future__ import annotations

import torch

__all__ = ["nm_mask", "topk_mask"]


def topk_mask(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the `keep` largest scores in every row."""
    mask = torch.zeros(score.shape, dtype=torch.bool)
    return mask.scatter_(1, torch.topk(score, keep, dim=1).indices, True)


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of the `n` largest |score| in every `m` consecutive elements of a row."""
    rows, cols = score.shape
    groups = score.abs().reshape(rows, cols // m, m)
    mask = torch.zeros(groups.shape, dtype=torch.bool)
    return mask.scatter_(2, torch.topk(groups, n, dim=2).indices, True).reshape(rows, cols)
