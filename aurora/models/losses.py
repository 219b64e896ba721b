"""Contrastive losses: NT-Xent on one process or across all ranks of a DDP run."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from aurora.infra.errors import SettingsError


def _check_pairs(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> None:
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"nt_xent needs two (B, D) batches of equal shape, got {z1.shape}, {z2.shape}"
        )
    if temperature <= 0:
        raise SettingsError("temperature", temperature, "a number > 0")


def _unit_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, in float32 at least (float64 stays float64)."""
    return F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)


def _anchor_loss_sum(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    self_idx: torch.Tensor,
    pos_idx: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sum over anchors of ``-log softmax`` of the positive among all other candidates.

    Args:
        anchors: unit rows (A, D).
        candidates: unit rows (N, D); anchor k is row ``self_idx[k]`` of them.
        self_idx: (A,) index of each anchor among the candidates (excluded from its softmax).
        pos_idx: (A,) index of each anchor's positive among the candidates.
        temperature: softmax temperature T > 0.

    Returns:
        Scalar sum of the A cross entropies.
    """
    # Outside autocast: in bf16 the logits (|s/T| up to 1/T) would keep ~3 digits.
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        logits = anchors @ candidates.T / temperature
        is_self = torch.zeros_like(logits, dtype=torch.bool)
        is_self[torch.arange(len(anchors), device=logits.device), self_idx] = True
        logits = logits.masked_fill(is_self, float("-inf"))
        return F.cross_entropy(logits, pos_idx, reduction="sum")


def _pair_indices(offset: int, b: int, total: int, device: torch.device) -> tuple:
    """Self and positive indices of anchors ``[z1; z2]`` (2b rows) among ``[Z1; Z2]``.

    ``Z1`` and ``Z2`` stack the first and second views of all ``total`` images; this batch's
    images are rows ``offset .. offset + b - 1`` of each.
    """
    i = torch.arange(offset, offset + b, device=device)
    self_idx = torch.cat([i, total + i])
    pos_idx = torch.cat([total + i, i])
    return self_idx, pos_idx


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR's NT-Xent) on one process.

    Row i of ``z1`` and row i of ``z2`` are two views of one image (a positive pair); every
    other row of either batch is a negative. The loss is the mean over all 2B anchors of
    ``-log(exp(s_ip / T) / sum_{k != i} exp(s_ik / T))`` with ``s`` the cosine similarity.

    Args:
        z1: projections of the first views, (B, D).
        z2: projections of the second views, (B, D).
        temperature: softmax temperature T > 0.

    Returns:
        Scalar loss tensor (float32, or float64 for float64 input).
    """
    _check_pairs(z1, z2, temperature)
    if z1.shape[0] < 2:
        raise ValueError("nt_xent needs at least 2 images per batch (one negative per anchor)")
    b = z1.shape[0]
    z = _unit_rows(torch.cat([z1, z2], dim=0))
    self_idx, pos_idx = _pair_indices(0, b, b, z.device)
    return _anchor_loss_sum(z, z, self_idx, pos_idx, temperature) / (2 * b)


def _distributed_world() -> int:
    """World size of the default process group; 1 when torch.distributed is not running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class NTXentLoss(nn.Module):
    """NT-Xent whose negatives are the images of the whole global batch under DDP.

    With ``gather_distributed`` and an initialised process group of W > 1 ranks, every rank
    gathers the projections of all ranks (with gradient) and contrasts its own 2B anchors
    against all 2N views of the N images of the global batch; positives are the matching
    views. Every rank must call it at the same step (it runs collectives); local batch sizes
    may differ between ranks. Otherwise it is :func:`nt_xent` on the local batch.

    Scaling: the returned value is the single-process loss L on the concatenated global batch
    (the same on every rank). Its gradient is that of ``W/(2N) * sum of this rank's anchor
    terms``; the gather's backward sums the ranks' contributions, so rank r gets ``W dL/dz_r``
    and DDP's average over the W ranks gives exactly ``dL/dtheta`` of the single process.

    Args:
        temperature: softmax temperature T > 0.
        gather_distributed: contrast against all ranks' projections under DDP.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise SettingsError("temperature", temperature, "a number > 0")
        self.temperature = float(temperature)
        self.gather_distributed = bool(gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of this rank's view pairs.

        Args:
            z1: projections of the first views, (B, D).
            z2: projections of the second views, (B, D).

        Returns:
            Scalar loss tensor.
        """
        world = _distributed_world() if self.gather_distributed else 1
        if world == 1:
            return nt_xent(z1, z2, self.temperature)
        from torch.distributed.nn.functional import all_gather as all_gather_with_grad

        _check_pairs(z1, z2, self.temperature)
        b, rank = z1.shape[0], dist.get_rank()
        local = _unit_rows(torch.cat([z1, z2], dim=0))
        # Batch sizes of all ranks (the last batch of an epoch may differ), so that the
        # gather can pad to the largest and every rank knows where its images sit.
        sizes_t = torch.tensor([b], device=local.device)
        all_sizes = [torch.zeros_like(sizes_t) for _ in range(world)]
        dist.all_gather(all_sizes, sizes_t)
        sizes = [int(s.item()) for s in all_sizes]
        total, b_max = sum(sizes), max(sizes)
        if total < 2:
            raise ValueError("NT-Xent needs at least 2 images in the global batch")
        views = torch.stack([local[:b], local[b:]])  # (2, B, D)
        if b < b_max:
            views = F.pad(views, (0, 0, 0, b_max - b))
        gathered = all_gather_with_grad(views.contiguous())  # W x (2, b_max, D)
        z1_all = torch.cat([g[0, :n] for g, n in zip(gathered, sizes, strict=True)])
        z2_all = torch.cat([g[1, :n] for g, n in zip(gathered, sizes, strict=True)])
        candidates = torch.cat([z1_all, z2_all])  # (2N, D): the single-process layout
        self_idx, pos_idx = _pair_indices(sum(sizes[:rank]), b, total, local.device)
        local_sum = _anchor_loss_sum(local, candidates, self_idx, pos_idx, self.temperature)
        global_sum = local_sum.detach().clone()
        dist.all_reduce(global_sum)
        grad_path = local_sum * (world / (2 * total))
        return grad_path + (global_sum / (2 * total) - grad_path).detach()


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
