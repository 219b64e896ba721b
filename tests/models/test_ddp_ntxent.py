"""NT-Xent under DDP: two gloo processes train exactly the single-process global-batch objective."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aurora.models import NTXentLoss, SimCLR, build_encoder, nt_xent

WORLD = 2
T = 0.2
D_IN, D_OUT = 5, 4
# Images per rank: equal halves (what DDP's samplers give), and an uneven split.
SPLITS = {"even": (3, 3), "uneven": (4, 2)}

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not dist.is_available(), reason="needs fork and torch.distributed"
)


def _problem() -> dict[str, torch.Tensor]:
    """A fixed global batch (6 images, two views) and the initial weights of a Linear head."""
    g = torch.Generator().manual_seed(0)
    n = sum(SPLITS["even"])
    return {
        "x1": torch.randn(n, D_IN, generator=g, dtype=torch.float64),
        "x2": torch.randn(n, D_IN, generator=g, dtype=torch.float64),
        "weight": torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64),
        "bias": torch.randn(D_OUT, generator=g, dtype=torch.float64),
    }


def _head(p: dict[str, torch.Tensor]) -> nn.Linear:
    head = nn.Linear(D_IN, D_OUT).double()
    with torch.no_grad():
        head.weight.copy_(p["weight"])
        head.bias.copy_(p["bias"])
    return head


def _rank_main(rank: int, init_file: str, out_dir: str) -> None:
    """One DDP rank: its share of the global batch through a shared head, then the loss."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    p = _problem()
    out: dict[str, Any] = {}
    for split, sizes in SPLITS.items():
        lo = sum(sizes[:rank])
        sl = slice(lo, lo + sizes[rank])
        for gather in (True, False):
            head = _head(p)
            x1 = p["x1"][sl].clone().requires_grad_()
            x2 = p["x2"][sl].clone().requires_grad_()
            loss = NTXentLoss(T, gather_distributed=gather)(head(x1), head(x2))
            loss.backward()
            w = head.weight.grad.clone()
            dist.all_reduce(w)  # DDP's average over ranks
            out[split, gather] = {
                "loss": loss.detach(),
                "weight_grad": w / WORLD,
                "x1_grad": x1.grad,
            }
    # The real wrapper: DistributedDataParallel averages the head's gradient itself.
    ddp = DistributedDataParallel(_head(p))
    sl = slice(3 * rank, 3 * rank + 3)
    loss = NTXentLoss(T)(ddp(p["x1"][sl]), ddp(p["x2"][sl]))
    loss.backward()
    out["ddp"] = {"loss": loss.detach(), "weight_grad": ddp.module.weight.grad.clone()}
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Results of both ranks from one run of two forked gloo processes."""
    tmp = tmp_path_factory.mktemp("ddp")
    # Fork: the children inherit the imported modules (spawning re-imports torch and timm).
    ctx = torch.multiprocessing.start_processes(
        _rank_main, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=False,
        start_method="fork",
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the two gloo ranks did not finish in 120 s")
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def _single_process() -> dict[str, torch.Tensor]:
    """The reference: one process, the concatenated global batch, plain ``nt_xent``."""
    p = _problem()
    head = _head(p)
    x1 = p["x1"].clone().requires_grad_()
    loss = nt_xent(head(x1), head(p["x2"]), T)
    loss.backward()
    return {"loss": loss.detach(), "weight_grad": head.weight.grad, "x1_grad": x1.grad}


@pytest.mark.parametrize("split", list(SPLITS))
def test_distributed_loss_and_gradient_equal_single_process(ranks: list[dict], split: str) -> None:
    ref = _single_process()
    for rank, res in enumerate(ranks):
        got = res[split, True]
        assert torch.allclose(got["loss"], ref["loss"], rtol=0, atol=1e-6), rank
        assert torch.allclose(got["weight_grad"], ref["weight_grad"], rtol=0, atol=1e-5), rank
        # Each rank's own inputs get W times their single-process gradient (DDP divides by W).
        lo = sum(SPLITS[split][:rank])
        want = WORLD * ref["x1_grad"][lo : lo + SPLITS[split][rank]]
        assert torch.allclose(got["x1_grad"], want, rtol=0, atol=1e-5), rank


def test_distributed_data_parallel_wrapper_gives_single_process_gradient(
    ranks: list[dict],
) -> None:
    ref = _single_process()
    for res in ranks:
        assert torch.allclose(res["ddp"]["loss"], ref["loss"], rtol=0, atol=1e-6)
        assert torch.allclose(res["ddp"]["weight_grad"], ref["weight_grad"], rtol=0, atol=1e-5)


def test_without_gather_each_rank_trains_a_different_objective(ranks: list[dict]) -> None:
    ref = _single_process()
    p = _problem()
    for rank, res in enumerate(ranks):
        got = res["even", False]
        # Exactly the local-batch loss, which is not the global one.
        head, sl = _head(p), slice(3 * rank, 3 * rank + 3)
        local = nt_xent(head(p["x1"][sl]), head(p["x2"][sl]), T).detach()
        assert torch.allclose(got["loss"], local, rtol=0, atol=1e-12)
        assert abs(got["loss"].item() - ref["loss"].item()) > 1e-2
    averaged = (ranks[0]["even", False]["weight_grad"] - ref["weight_grad"]).abs().max()
    assert averaged.item() > 1e-3


def test_one_process_is_nt_xent() -> None:
    p = _problem()
    head = _head(p)
    z1, z2 = head(p["x1"]), head(p["x2"])
    assert NTXentLoss(T)(z1, z2).item() == nt_xent(z1, z2, T).item()
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)


def test_simclr_uses_the_swappable_loss_and_old_hparams_still_build() -> None:
    m = SimCLR(image_size=32, backbone="test_resnet", proj_hidden_dim=8, proj_dim=4)
    assert isinstance(m.criterion, NTXentLoss) and m.criterion.gather_distributed
    assert m.criterion.temperature == m.hparams.temperature
    assert not any(k.startswith("criterion") for k in m.state_dict())  # checkpoints unchanged
    off = SimCLR(
        image_size=32, backbone="test_resnet", proj_hidden_dim=8, proj_dim=4,
        gather_distributed=False,
    )  # fmt: skip
    assert not off.criterion.gather_distributed and off.hparams.gather_distributed is False
    # A checkpoint saved before the option existed has no such hparam: the default applies.
    old = {k: v for k, v in m.hparams.items() if k != "gather_distributed"}
    rebuilt = build_encoder("aurora.models.SimCLR", old)
    assert rebuilt.criterion.gather_distributed
    rebuilt.load_state_dict(m.state_dict())
