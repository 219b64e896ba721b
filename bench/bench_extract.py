"""Feature extraction throughput: end to end (cache -> features) vs the bare forward pass.

For each ImageNet extractor (random weights, same cost as pretrained) this measures, side by
side in one run and interleaved (bare, e2e, bare, e2e, ...; best of the repeats kept):

* bare: ``model(x)`` on in-memory tensors already at the input size and normalised
  (channels-last, ``inference_mode``; bf16 autocast on CUDA);
* e2e:  :func:`aurora.extractors.extract_features` on a memory-mapped uint8 store at the
  network's input size (the ``minimal`` / ``minimal_299`` preprocess sizes), fresh cache:
  read, uint8 -> float, normalise, forward, shard files, final cache entry.

Usage::

    .venv/bin/python bench/bench_extract.py                       # CPU, batch 32, 64 images
    .venv/bin/python bench/bench_extract.py --device cuda --n 2048 --models resnet50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aurora.extractors import TimmExtractor, extract_features

MODELS = ("resnet50", "inception_v3", "mobilenetv2_100")


@dataclass
class MemmapStore:
    """Minimal preprocessed store: (N, S, S, 3) uint8 memmap on disk."""

    key: str
    images: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.images)


def make_store(folder: Path, n: int, size: int) -> MemmapStore:
    rng = np.random.default_rng(0)
    mm = np.memmap(folder / f"images_{size}.u8", np.uint8, mode="w+", shape=(n, size, size, 3))
    for i in range(n):
        mm[i] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mm.flush()
    ro = np.memmap(folder / f"images_{size}.u8", np.uint8, mode="r", shape=(n, size, size, 3))
    return MemmapStore(f"bench-{size}-{n}", ro, [f"img{i}" for i in range(n)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_rate(
    ex: TimmExtractor, x: torch.Tensor, batch: int, device: torch.device
) -> tuple[float, float]:
    """Images/s of the bare model on prepared tensors (N, 3, S, S): per wall / CPU second."""
    cuda = device.type == "cuda"
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for a in range(0, len(x), batch):
            ex.model(x[a : a + batch])
    _sync(device)
    return len(x) / (time.perf_counter() - t), len(x) / (time.process_time() - c)


def e2e_rate(
    ex: TimmExtractor,
    store: MemmapStore,
    batch: int,
    device: torch.device,
    root: Path,
    workers: int,
) -> tuple[float, float]:
    """Images/s of extract_features from the memmap store into a fresh cache (wall, CPU)."""
    t, c = time.perf_counter(), time.process_time()
    fs = extract_features(
        store,
        ex,
        root,
        batch_size=batch,
        num_workers=workers,
        device=device,
        shard_size=1024,
        progress=False,
    )
    _sync(device)
    rate = len(store) / (time.perf_counter() - t), len(store) / (time.process_time() - c)
    assert fs is not None and fs.features.shape[0] == len(store)
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--n", type=int, default=64, help="images per measurement")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"batch={args.batch} n={args.n} repeats={args.repeats} workers={args.workers}"
    )
    print(
        "wall = images per wall second; cpu = images per process CPU second (robust to other"
        " load on a shared machine; with workers > 0 it misses the workers' CPU)"
    )
    head = ("model", "size", "bare img/s", "e2e img/s", "e2e/bare", "bare/cpu-s", "e2e/cpu-s")
    print(f"{head[0]:<18}{head[1]:>6}" + "".join(f"{h:>12}" for h in head[2:]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for name in args.models:
            ex = TimmExtractor(name, pretrained=False)
            ex.to(device=device, memory_format=torch.channels_last).eval()
            size = ex.input_size
            store = make_store(tmp_path, args.n, size)
            x = torch.from_numpy(np.array(store.images)).to(device)
            x = ((x.permute(0, 3, 1, 2).float() / 255 - ex.mean) / ex.std).contiguous(
                memory_format=torch.channels_last
            )
            bare_rate(ex, x[: args.batch], args.batch, device)  # warm-up
            bare, e2e = [], []
            for r in range(args.repeats):
                bare.append(bare_rate(ex, x, args.batch, device))
                root = tmp_path / f"cache-{name}-{r}"
                e2e.append(e2e_rate(ex, store, args.batch, device, root, args.workers))
            b, e = max(r[0] for r in bare), max(r[0] for r in e2e)
            bc, ec = max(r[1] for r in bare), max(r[1] for r in e2e)
            print(
                f"{name:<18}{size:>6}{b:>12.1f}{e:>12.1f}{e / b:>12.1%}{bc:>12.1f}{ec:>12.1f}"
                f"   cpu ratio {ec / bc:.1%}",
                flush=True,
            )
            del x


if __name__ == "__main__":
    main()
