"""How well the morphologies can be told apart at all at a given image size, with labels.

Usage:
    python bench/bench_ceiling.py [--n 1200] [--sizes 64 96] [--epochs 30] [--seed 0]
        [--experiment quality] [--cache .cache/aurora] [--threads 2] [--no-stem-pool]
        [OVERRIDE ...]

A diagnostic for the quality bar of issue 9, never part of the chain: it preprocesses the
configured data (the synthetic sky by default; any folder with ``data=folder data.root=DIR
data.truth=CSV``) exactly as ``experiment=quality`` does (Moon masked, same cache), then trains
the SimCLR backbone (timm resnet18, random init) *supervised* on the true morphology of 80% of
the labelled images (random rotations by 90 degrees and mirrors, AdamW, one-cycle schedule)
and scores the held-out 20%. Prints, per image size: test accuracy, the confusion matrix, and
the homogeneity of the predicted classes with the truth. An unsupervised grouping of features
learned at the same size is unlikely to be purer than this, so it says whether a purity bar is
in reach at that size or needs larger images (or more data). ``--no-stem-pool`` drops the
max-pool of the ResNet stem (the usual change for small images: 4x finer feature maps, about 3x
the time), to see whether the early downsampling is what loses thin, close arcs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.metrics import confusion_matrix, homogeneity_score

from aurora.data.dataset import ensure_dataset, read_truth
from aurora.data.sources import scan
from aurora.run import RunSettings, StoreSet

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Ceiling:
    """Held-out scores of one supervised run."""

    size: int
    accuracy: float
    homogeneity: float
    confusion: np.ndarray  # (C, C), rows = truth
    seconds: float


def supervised_ceiling(
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    epochs: int,
    seed: int,
    stem_pool: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Train resnet18 on 80% of the images, predict the other 20%.

    Args:
        images: (N, S, S, 3) uint8.
        labels: (N,) int class indices.
        n_classes: number of classes.
        epochs: training epochs.
        seed: split and initialisation seed.
        stem_pool: keep the max-pool of the ResNet stem.

    Returns:
        (test labels (M,), test predictions (M,)).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels).long()
    perm = torch.randperm(len(y), generator=gen)
    test, train = perm[: len(y) // 5], perm[len(y) // 5 :]
    mean = x[train].mean((0, 2, 3), keepdim=True)
    std = x[train].std((0, 2, 3), keepdim=True)
    model = timm.create_model("resnet18", pretrained=False, num_classes=n_classes)
    if not stem_pool:
        model.maxpool = torch.nn.Identity()
    batch = 64
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            xb = torch.rot90(x[idx], int(torch.randint(4, (1,), generator=gen)), dims=(2, 3))
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(3)
            loss = F.cross_entropy(model((xb - mean) / std), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [model((x[test[i : i + 256]] - mean) / std).argmax(1) for i in range(0, len(test), 256)]
        )
    return y[test].numpy(), pred.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--experiment", default="quality")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "aurora"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-stem-pool", dest="stem_pool", action="store_false")
    ap.add_argument(
        "overrides", nargs="*", help="Hydra overrides (e.g. preprocess.full.background=0)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [
        f"experiment={args.experiment}",
        f"data.synth.n={args.n}",
        f"paths.cache_dir={args.cache}",
        *args.overrides,
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("cluster", overrides=overrides)
    settings = RunSettings.from_cfg(cfg)
    data = settings.data
    if not data.truth:
        raise SystemExit("no ground truth configured: set data.truth=CSV")
    root = ensure_dataset(data.root, data.synth, settings.jobs)
    manifest = scan(root, jobs=settings.jobs, progress=False)
    full = instantiate(settings.preprocess["full"])
    stores = StoreSet(manifest, {"full": full}, settings.cache_dir, settings.jobs)
    results = []
    for size in args.sizes:
        store = stores.get("full", size)
        truth = read_truth(data.truth, store.ids, data.truth_column, data.nuisance_columns).classes
        assert truth is not None  # data.truth checked above
        known = np.array([bool(t) for t in truth])
        names = sorted(set(truth[known]))
        labels = np.array([names.index(t) for t in truth[known]])
        t0 = time.perf_counter()
        y, pred = supervised_ceiling(
            store.images[known], labels, len(names), args.epochs, args.seed, args.stem_pool
        )
        results.append(
            Ceiling(
                size,
                float((pred == y).mean()),
                float(homogeneity_score(y, pred)),
                confusion_matrix(y, pred, labels=range(len(names))),
                time.perf_counter() - t0,
            )
        )
        r = results[-1]
        print(
            f"\n{size} px: held-out accuracy {r.accuracy:.3f}, homogeneity {r.homogeneity:.3f}",
            flush=True,
        )
        print(f"  ({len(y)} test images, {args.epochs} epochs, {r.seconds:.0f} s)")
        print("  confusion (rows = truth): " + ", ".join(names))
        for name, row in zip(names, r.confusion, strict=True):
            print(f"  {name:>14} " + " ".join(f"{v:4d}" for v in row))


if __name__ == "__main__":
    main()
