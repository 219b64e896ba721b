"""A tampered solution cannot poison the shared feature cache (issue 26, both sequences).

The adversary copies a trusted solution, zeroes every float tensor of its weights and rewrites
every hash the folder holds (``state_sha256`` and the weights file's SHA-256 in the manifest), so
that the copy claims the trusted network's identity. Applied first with a shared cache, it must
not leave features that the trusted solution, or an ordinary run with the genuine weights, then
reads as its own: their results on the shared cache equal their results on a fresh one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from safetensors.torch import load_file, load_model, save_file

from aurora.extractors import TimmExtractor, feature_key
from aurora.infra.cache import file_sha256
from aurora.models.weights import state_dict_sha256
from aurora.run import run_cluster
from aurora.solution import ALLOWED_EXTRACTORS, apply_solution, load_solution
from aurora.solution.extractor import WEIGHTS_FILE

#: A grid that finds groups on the tiny sky (a solution without any cannot label images).
GROUPS = [
    "grid.reducers=[pca,none]",
    "grid.n_clusters=[3,4]",
    "fusion.n_partitions=3",
    "fusion.min_cluster_size=2",
]


def _zeroed_copy(solution: Path, dest: Path) -> Path:
    """A copy of ``solution`` with zeroed weights whose recorded hashes say they are genuine."""
    copy = Path(shutil.copytree(solution, dest))
    weights = copy / WEIGHTS_FILE
    state = load_file(weights)
    save_file({k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()},
              weights)  # fmt: skip
    manifest = json.loads((copy / "manifest.json").read_text())
    ext = manifest["extractor"]
    # As the issue's probe computed it: the class's from_export, then safetensors' load_model.
    network = ALLOWED_EXTRACTORS[ext["kind"]].from_export(ext["params"])
    load_model(network, str(weights), strict=True)
    ext["state_sha256"] = state_dict_sha256(network.state_dict())
    manifest["files"][WEIGHTS_FILE] = file_sha256(weights)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def _apply(solution: Path, sky: Path, cache: Path, out: Path) -> str:
    """``cluster.py mode=apply solution=... data.root=sky paths.cache_dir=cache``: labels.csv."""
    apply_solution(solution, sky, out, cache_dir=cache, jobs=1, device="cpu")
    return (out / "labels.csv").read_text()


def _feature_keys(cache: Path) -> set[str]:
    root = cache / "features"
    return {p.name for p in root.iterdir() if not p.name.startswith(".")}


def _check_poison_sequence(
    sol: Path, sky: Path, overrides: list[str], trusted_labels: str, tmp_path: Path
) -> None:
    """Apply the zeroed copy of ``sol`` with cache C, then the trusted solution and an
    ordinary run (``overrides`` on C) with the genuine weights: both as on a fresh cache."""
    copy = _zeroed_copy(sol, tmp_path / "copy")
    shared = tmp_path / "C"
    tampered = _apply(copy, sky, shared, tmp_path / "apply_copy")
    poisoned_keys = _feature_keys(shared)
    assert len(poisoned_keys) == 1

    # The copy claims the trusted identity, but its key is that of the weights it holds.
    trusted_sol, copy_sol = load_solution(sol), load_solution(copy)
    claimed = json.loads((copy / "manifest.json").read_text())["extractor"]["identity"]
    assert claimed == json.loads((sol / "manifest.json").read_text())["extractor"]["identity"]
    assert copy_sol.extractor.identity() != trusted_sol.extractor.identity()
    assert feature_key("s", copy_sol.extractor.identity()) != feature_key(
        "s", trusted_sol.extractor.identity()
    )

    # The trusted solution on the shared cache: exactly its labels on a fresh cache.
    on_shared = _apply(sol, sky, shared, tmp_path / "apply_sol")
    on_fresh = _apply(sol, sky, tmp_path / "fresh", tmp_path / "apply_fresh")
    assert on_shared == on_fresh
    assert tampered != on_fresh  # the zeroed network's own results are its own
    assert _feature_keys(shared) - poisoned_keys  # an entry of its own, not the copy's

    # An ordinary run with the genuine weights on the shared cache: the trusted run's labels.
    run_cluster(compose_cfg("cluster", [*overrides, f"paths.cache_dir={shared}"]), tmp_path / "r")
    assert (tmp_path / "r" / "labels.csv").read_text() == trusted_labels


def test_poisoned_checkpoint_solution_leaves_trusted_results_unchanged(
    tiny_sky: Path, tiny_cache: Path, tiny_overrides: list[str], tmp_path: Path
) -> None:
    """Checkpoint kind: the tiny run's autoencoder (trained once in the session's cache)."""
    overrides = [*tiny_overrides, *GROUPS]
    run_cluster(compose_cfg("cluster", overrides), tmp_path / "run")
    trusted = (tmp_path / "run" / "labels.csv").read_text()
    sol = tmp_path / "run" / "solution"
    assert json.loads((sol / "manifest.json").read_text())["extractor"]["kind"] == "checkpoint"
    # The shared cache holds the trained encoder (no second training) but no features yet.
    shutil.copytree(tiny_cache / "train", tmp_path / "C" / "train")
    _check_poison_sequence(sol, tiny_sky, overrides, trusted, tmp_path)


@pytest.fixture
def genuine_weights(tmp_path: Path) -> Path:
    """A local MobileNet-v2 weights file (seeded random values standing in for ImageNet's)."""
    net = TimmExtractor("mobilenetv2_100", pretrained=False, seed=7, input_size=32)
    path = tmp_path / "mobilenetv2_100.safetensors"
    save_file({k: v.contiguous() for k, v in net.model.state_dict().items()}, path)
    return path


def test_poisoned_timm_solution_leaves_trusted_results_unchanged(
    tiny_sky: Path, genuine_weights: Path, tmp_path: Path
) -> None:
    """timm kind: a run on MobileNet-v2 with a local weights file, as ``experiment=real``."""
    overrides = [
        "debug=tiny",
        "data=folder",
        f"data.root={tiny_sky}",
        "grid.extractors=[mobilenet_v2]",
        f"extractors.mobilenet_v2.weights={genuine_weights}",
        "extractors.mobilenet_v2.input_size=32",
        *GROUPS,
    ]
    run_cluster(compose_cfg("cluster", [*overrides, f"paths.cache_dir={tmp_path / 'A'}"]),
                tmp_path / "run")  # fmt: skip
    trusted = (tmp_path / "run" / "labels.csv").read_text()
    sol = tmp_path / "run" / "solution"
    assert json.loads((sol / "manifest.json").read_text())["extractor"]["kind"] == "timm"
    _check_poison_sequence(sol, tiny_sky, overrides, trusted, tmp_path)


def test_poison_entry_recording_other_weights_is_not_read(
    genuine_weights: Path, tmp_path: Path
) -> None:
    """An entry moved under a key it does not belong to (an edited cache) is computed again."""
    import numpy as np

    from aurora.extractors import extract_features

    class Store:
        key = "store"
        images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        ids = [f"i{i}" for i in range(5)]

        def __len__(self) -> int:
            return 5

    genuine = TimmExtractor("mobilenetv2_100", weights=str(genuine_weights), input_size=32)
    zeroed = TimmExtractor("mobilenetv2_100", pretrained=False, input_size=32)
    for p in zeroed.parameters():
        p.data.zero_()
    zeroed.rehash_weights()
    assert zeroed.identity()["state_sha256"] != genuine.identity()["state_sha256"]
    cache = tmp_path / "cache"
    bad = extract_features(Store(), zeroed, cache, progress=False, device="cpu")
    good_key = feature_key("store", genuine.identity())
    shutil.copytree(bad.path, cache / "features" / good_key)  # planted under the genuine key
    good = extract_features(Store(), genuine, cache, progress=False, device="cpu")
    fresh = extract_features(Store(), genuine, tmp_path / "fresh", progress=False, device="cpu")
    assert good.key == good_key
    np.testing.assert_array_equal(good.features, fresh.features)
    assert not np.array_equal(good.features, bad.features)
