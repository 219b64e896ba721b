"""Contrastive losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR's NT-Xent).

    Row i of ``z1`` and row i of ``z2`` are two views of one image (a positive pair); every
    other row of either batch is a negative. The loss is the mean over all 2B anchors of
    ``-log(exp(s_ip / T) / sum_{k != i} exp(s_ik / T))`` with ``s`` the cosine similarity.

    Args:
        z1: projections of the first views, (B, D).
        z2: projections of the second views, (B, D).
        temperature: softmax temperature T > 0.

    Returns:
        Scalar loss tensor.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"nt_xent needs two (B, D) batches of equal shape, got {z1.shape}, {z2.shape}"
        )
    if z1.shape[0] < 2:
        raise ValueError("nt_xent needs at least 2 images per batch (one negative per anchor)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, target)


def pair_similarities(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cosine similarity of positive pairs and of negative pairs.

    Args:
        z1: first views, (B, D).
        z2: second views, (B, D).

    Returns:
        (mean positive similarity, mean negative similarity) as scalar tensors; negatives are
        all pairs of distinct images across the 2B views.
    """
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.T
    idx = torch.arange(b, device=z.device)
    pos = sim[idx, idx + b].mean()
    same_image = torch.eye(b, device=z.device, dtype=torch.bool).repeat(2, 2)
    neg = sim[~same_image].mean()
    return pos, neg
