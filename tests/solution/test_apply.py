"""Saved solutions (round trip, refusals) and applying them to new images."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cpu_trainer
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from aurora.data.sources import scan
from aurora.extractors import build_extractor, extract_features
from aurora.infra.cache import Cache
from aurora.infra.errors import AuroraError, RunError
from aurora.preprocess import PreprocessConfig, build_preprocessed
from aurora.reduction import cached_entry, fit_transform_cached
from aurora.report.record import RunRecord
from aurora.run import run_apply
from aurora.solution import (
    ALLOWED_EXTRACTORS,
    SolutionError,
    SolutionIntegrityError,
    SolutionVersionError,
    apply_solution,
    label_images,
    load_solution,
    save_solution,
)

N = 18


class PixelExtractor(nn.Module):
    """A fast test extractor with meaningful distances: mean colour and mean pixel-to-pixel
    change over a cells² grid.

    (A randomly initialised network maps every sky to nearly the same features, so novelty
    could not be tested with one.)
    """

    def __init__(self, cells: int = 8, preprocess: str = "full") -> None:
        super().__init__()
        self.cells = cells
        self.preprocess = preprocess
        self.input_size = 32

    def identity(self) -> dict:
        return {"kind": "pixels", "cells": self.cells}

    def export_params(self) -> dict:
        return {"cells": self.cells}

    @classmethod
    def from_export(cls, params: dict) -> PixelExtractor:
        return cls(**params)

    @property
    def num_features(self) -> int:
        return 6 * self.cells**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        texture = (x[..., 1:] - x[..., :-1]).abs()
        return torch.cat(
            [F.adaptive_avg_pool2d(v, self.cells).flatten(1) for v in (x, 4 * texture)], dim=1
        )


EXTRACTOR = {"_target_": f"{__name__}.PixelExtractor", "cells": 8, "preprocess": "full"}
REDUCER = {"_target_": "sklearn.decomposition.PCA", "n_components": 4}


def _make_record(root: Path, extractor_cfg: dict | None = None) -> RunRecord:
    """A small real run: synthetic sky -> preprocess -> random MobileNet -> PCA -> K-means."""
    from sklearn.cluster import KMeans

    from aurora.data.synth import generate

    data, cache_dir, run_dir = root / "sky", root / "cache", root / "run"
    run_dir.mkdir(parents=True)
    generate(data, n=N, seed=3, size=64, moon_prob=0.3, jobs=1)
    prep = PreprocessConfig(size=32)
    store = build_preprocessed(scan(data), prep, cache_dir, jobs=1, progress=False)
    params = dict(extractor_cfg or EXTRACTOR)
    extractor = build_extractor(params)
    fs = extract_features(store, extractor, cache_dir, batch_size=8, progress=False)
    cache = Cache(cache_dir)
    emb = fit_transform_cached(fs.features, REDUCER, 0, cache, fs.key)
    labels = KMeans(3, n_init=4, random_state=0).fit_predict(emb).astype(np.int64)
    labels[[0, 5]] = -1  # two unassigned images
    return RunRecord(
        run_dir=run_dir,
        ids=list(store.ids),
        paths=list(store.paths),
        timestamps=list(store.timestamps),
        labels=labels,
        features=np.asarray(fs.features),
        embedding=emb,
        thumbnails=store.images,
        moon=np.asarray(store.moon),
        truth=None,
        nuisances={},
        rejected=list(store.rejected),
        ranking=[],
        summary={"fusion": {"group": "all", "n_partitions": 3, "threshold": 0.5}},
        solution_cell={"cell": "net__pca__kmeans__k3", "extractor": "net", "reducer": "pca"},
        extractor_name="net",
        extractor_cfg=params,
        extractor_identity=extractor.identity(),
        preprocess_cfg=prep,
        reducer_cfg=REDUCER,
        reducer_entry=cached_entry(cache, fs.key, REDUCER, 0),
        features_key=fs.key,
        seed=0,
        config={"seed": 0, "note": "test"},
    )


@pytest.fixture(scope="module", autouse=True)
def _pixels_allowed() -> object:
    """The test's extractor joins the allow-list of classes a solution may rebuild."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ALLOWED_EXTRACTORS, "pixels", PixelExtractor)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, Path]:
    root = tmp_path_factory.mktemp("solution")
    record = _make_record(root)
    return record, save_solution(record, record.run_dir / "solution")


@pytest.fixture
def sol_copy(run: tuple[RunRecord, Path], tmp_path: Path) -> Path:
    """A private copy of the solution, free to be damaged."""
    return Path(shutil.copytree(run[1], tmp_path / "solution"))


def test_round_trip(run: tuple[RunRecord, Path]) -> None:
    record, path = run
    sol = load_solution(path)
    np.testing.assert_array_equal(sol.labels, record.labels)
    np.testing.assert_allclose(sol.embedding, record.embedding, rtol=1e-6, atol=1e-6)
    assert sol.ids == record.ids and sol.features.shape == record.features.shape
    assert sol.linear is not None and sol.linear.components.shape == (4, 6 * 8**2)
    # PCA as arrays reproduces the reference embedding from the reference features
    np.testing.assert_allclose(
        sol.linear.transform(sol.features), sol.embedding, rtol=1e-4, atol=1e-4
    )
    assert sol.preprocess_cfg == record.preprocess_cfg
    assert sol.n_groups == 3 and sol.novelty_threshold is not None
    assert sol.extractor.identity() == {"kind": "pixels", "cells": 8}
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["reducer"]["transform"] == "linear"
    assert manifest["versions"]["aurora"]
    assert json.loads((path / "run.json").read_text())["config"]["note"] == "test"
    # the FusedNeighbours model holds the assigned images only
    assert len(sol.neighbours.labels_) == N - 2
    # nothing in the folder needs pickle: arrays, safetensors and JSON only
    suffixes = {p.suffix for p in path.rglob("*") if p.is_file()}
    assert suffixes == {".json", ".npz", ".safetensors"}
    for npz in path.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_tampered_linear_map_is_refused(sol_copy: Path) -> None:
    with open(sol_copy / "linear.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(SolutionIntegrityError, match=r"linear\.npz.*SHA-256"):
        load_solution(sol_copy)


@pytest.mark.parametrize(
    "name", ["reference.npz", "linear.npz", "extractor/weights.safetensors", "manifest.json"]
)
def test_missing_file_is_named(sol_copy: Path, name: str) -> None:
    (sol_copy / name).unlink()
    with pytest.raises(SolutionIntegrityError, match=name.replace(".", r"\.")):
        load_solution(sol_copy)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("format_version", 999, "format version 999"),
        ("format_version", 1, "format 1.*python -m aurora.solution export"),
        ("aurora_version", "99.0.0", "aurora 99"),
    ],
)
def test_incompatible_version_is_refused(
    sol_copy: Path, key: str, value: object, match: str
) -> None:
    manifest = json.loads((sol_copy / "manifest.json").read_text())
    manifest[key] = value
    (sol_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SolutionVersionError, match=match):
        load_solution(sol_copy)
    assert issubclass(SolutionVersionError, AuroraError)  # cluster.py prints one line


def _rewrite(folder: Path, edit: Callable[[dict], None]) -> None:
    """Edit the manifest as an adversary would: change it, and record fresh hashes."""
    from aurora.infra.cache import file_sha256

    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    manifest["files"] = {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


class _Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    path = ""

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def _plant_pickle(path: Path, marker: Path) -> None:
    import pickle

    m = _Marker()
    m.path = str(marker)
    path.write_bytes(pickle.dumps(m))


def test_planted_pickle_is_never_loaded(sol_copy: Path, tmp_path: Path) -> None:
    """A pickle in place of the reducer map (with its hash recorded) is refused, not run."""
    marker = tmp_path / "pwned"
    # an .npz whose array is a pickled object: np.load(allow_pickle=False) refuses it
    np.savez(sol_copy / "linear.npz", mean=np.array([_Marker()], dtype=object))
    _plant_pickle(sol_copy / "reducer.joblib", marker)
    _rewrite(sol_copy, lambda m: None)
    with pytest.raises(SolutionError, match=r"linear\.npz"):
        load_solution(sol_copy)

    def old_reducer(m: dict) -> None:  # what format 1 did: a transform read from a pickle
        m["reducer"]["transform"] = "reducer"

    _rewrite(sol_copy, old_reducer)
    with pytest.raises(SolutionError, match="reducer.transform"):
        load_solution(sol_copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    "where",
    [
        lambda m: m["extractor"]["params"].update(_target_="pathlib.Path.touch"),
        lambda m: m["extractor"].update(config={"_target_": "joblib.load"}),
        lambda m: m["preprocess"].update(_target_="os.system"),
    ],
)
def test_planted_target_is_refused(sol_copy: Path, tmp_path: Path, where: Callable) -> None:
    marker = tmp_path / "pwned"
    _rewrite(sol_copy, where)
    with pytest.raises(SolutionError, match="_target_"):
        load_solution(sol_copy)
    assert not marker.exists()


def test_extractor_outside_the_allow_list_is_refused(sol_copy: Path) -> None:
    def other(m: dict) -> None:
        m["extractor"]["kind"] = "builtins"

    _rewrite(sol_copy, other)
    with pytest.raises(SolutionError, match="kind 'builtins' is not one of"):
        load_solution(sol_copy)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("threshold", -1.0, "novelty.threshold"),
        ("threshold", 99.0, "novelty.threshold is 99"),  # in range, but not the reference's
        ("quantile", 2.0, "novelty.quantile"),
        ("space", "embedding", "novelty.space"),
    ],
)
def test_manifest_value_out_of_range_is_refused(
    sol_copy: Path, field: str, value: object, match: str
) -> None:
    _rewrite(sol_copy, lambda m: m["novelty"].update({field: value}))
    with pytest.raises(SolutionError, match=match):
        load_solution(sol_copy)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("n_groups", 99, "n_groups"), ("n_groups", "3", "n_groups"), ("n_reference", 0, "n_ref")],
)
def test_manifest_counts_are_checked(sol_copy: Path, key: str, value: object, match: str) -> None:
    _rewrite(sol_copy, lambda m: m.update({key: value}))
    with pytest.raises(SolutionError, match=match):
        load_solution(sol_copy)


def test_apply_reproduces_reference_labels(run: tuple[RunRecord, Path], tmp_path: Path) -> None:
    record, path = run
    sol = load_solution(path)
    res = label_images(sol, record.run_dir.parent / "sky", tmp_path / "cache2", jobs=1,
                       progress=False)  # fmt: skip
    assert res.ids == record.ids and not res.rejected
    assigned = record.labels >= 0
    np.testing.assert_array_equal(res.labels[assigned], record.labels[assigned])
    assert res.distances[assigned].max() < 1e-3
    assert not res.novel[assigned].any()
    assert (res.labels >= 0).all()  # unassigned reference images get their nearest group


def _test_card(path: Path) -> None:
    """A checkerboard inside a sky circle: unlike any sky.

    (Pure pixel noise is not a good "novel" image: the chain's star filter, resize and L/a/b
    normalisation turn it into a featureless grey glow much like a diffuse-aurora frame.)
    """
    yy, xx = np.mgrid[:64, :64]
    img = np.repeat(((yy // 8 + xx // 8) % 2 * 255).astype(np.uint8)[..., None], 3, axis=-1)
    img[(yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 30**2] = 0
    Image.fromarray(img).save(path)


def test_apply_cli_accounting_and_novelty(run: tuple[RunRecord, Path], tmp_path: Path) -> None:
    record, path = run
    new = tmp_path / "new"
    new.mkdir()
    sky = record.run_dir.parent / "sky"
    for name in sorted(p.name for p in sky.glob("*.jpg"))[:4]:
        shutil.copy(sky / name, new / name)
    first = sorted(p.name for p in new.iterdir())[0]
    shutil.copy(new / first, new / "zz_copy.jpg")  # same content: labelled like its original
    _test_card(new / "card.png")
    (new / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(new / "black.png")
    cfg = OmegaConf.create(
        {
            "solution": str(path),
            "data": {"root": str(new)},
            "paths": {"cache_dir": str(tmp_path / "cache")},
            "jobs": 1,
            "extract": {"batch_size": 8, "num_workers": 0, "device": "cpu"},
        }
    )
    out = tmp_path / "out"
    summary = run_apply(cfg, out)
    with open(out / "labels.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    with open(out / "rejected.csv", newline="") as f:
        rejected = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    inputs = {p.name for p in new.iterdir()}
    assert set(rows) | set(rejected) == inputs and not set(rows) & set(rejected)
    assert {"broken.jpg", "black.png"} <= set(rejected)
    assert list(next(iter(rows.values()))) == ["path", "label", "distance", "novel"]
    assert rows["card.png"]["novel"] == "1"
    assert all(rows[n]["novel"] == "0" for n in rows if n != "card.png")
    assert summary["n_inputs"] == len(inputs) and summary["n_novel"] == 1
    assert rows["zz_copy.jpg"]["label"] == rows[first]["label"]
    assert rows["zz_copy.jpg"]["distance"] == rows[first]["distance"]
    assert summary["n_duplicates"] == 1
    assert summary["n_labelled"] + summary["n_rejected"] == summary["n_inputs"]
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    # a failing rerun into the same folder leaves nothing that looks current
    cfg.solution = str(tmp_path / "gone")
    with pytest.raises(SolutionError):
        run_apply(cfg, out)
    assert not (out / "labels.csv").exists() and not (out / "apply_summary.json").exists()
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_apply_takes_the_run_limits(
    run: tuple[RunRecord, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mode=apply`` applies ``data.max_pixels`` to new images and ``budget.memory_gb`` to
    the solution, as a run does."""
    record, path = run
    new = tmp_path / "new"
    new.mkdir()
    sky = record.run_dir.parent / "sky"
    for name in sorted(p.name for p in sky.glob("*.jpg"))[:3]:
        shutil.copy(sky / name, new / name)
    Image.fromarray(np.zeros((65, 64, 3), np.uint8)).save(new / "big.png")
    cfg = OmegaConf.create(
        {
            "solution": str(path),
            "data": {"root": str(new), "max_pixels": 64 * 64},
            "paths": {"cache_dir": str(tmp_path / "cache")},
            "jobs": 1,
            "extract": {"batch_size": 8, "num_workers": 0, "device": "cpu"},
        }
    )
    run_apply(cfg, tmp_path / "out")
    with open(tmp_path / "out" / "rejected.csv", newline="") as f:
        rejected = {r["path"]: r for r in csv.DictReader(f)}
    assert rejected["big.png"]["reason"] == "too large"
    assert "4096" in rejected["big.png"]["detail"]
    seen: dict = {}
    monkeypatch.setattr("aurora.solution.apply_solution", lambda *a, **kw: seen.update(kw))
    cfg.budget = {"memory_gb": 0.5}
    run_apply(cfg, tmp_path / "out2")
    assert seen["limits"].memory() == (2**29, "budget.memory_gb")
    assert seen["max_pixels"] == 64 * 64


def test_apply_needs_solution_and_data(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"solution": None, "data": {"root": "x"}})
    with pytest.raises(RunError, match="solution=DIR"):
        run_apply(cfg, tmp_path)
    cfg = OmegaConf.create({"solution": str(tmp_path / "nope"), "data": {"root": None}})
    with pytest.raises(RunError, match="data.root=NEW_IMAGES"):
        run_apply(cfg, tmp_path)
    with pytest.raises(SolutionError, match="does not exist"):
        apply_solution(tmp_path / "nope", "x", tmp_path, cache_dir=tmp_path / "cache")


def test_checkpoint_extractor_is_copied(tmp_path: Path) -> None:
    """A checkpoint extractor's .ckpt travels inside the solution and is used from there."""
    training = pytest.importorskip("aurora.training.fit")
    from aurora.data.datamodule import LoaderConfig

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    model = {"_target_": "aurora.models.AutoEncoder", "depth": 2, "width": 4, "latent_dim": 8}
    trainer = tiny_cpu_trainer()
    loader = LoaderConfig(batch_size=4, num_workers=0, val_fraction=0.25)
    res = training.fit_model(images, model, trainer, tmp_path / "train", loader=loader)
    cfg = {
        "_target_": "aurora.extractors.CheckpointExtractor",
        "ckpt_path": str(res.last_ckpt),
        "preprocess": "full",
    }
    record = _make_record(tmp_path / "r", cfg)
    sol_dir = save_solution(record, tmp_path / "solution")
    shutil.rmtree(Path(res.last_ckpt).parent)  # the solution must not need the checkpoints
    manifest = json.loads((sol_dir / "manifest.json").read_text())
    assert manifest["extractor"]["kind"] == "checkpoint"
    assert manifest["extractor"]["params"]["model_class"].endswith(".AutoEncoder")
    assert not list(sol_dir.rglob("*.ckpt"))  # weights only, as safetensors
    sol = load_solution(sol_dir)
    out = label_images(sol, tmp_path / "r" / "sky", tmp_path / "cache3", jobs=1, progress=False)
    assigned = record.labels >= 0
    np.testing.assert_array_equal(out.labels[assigned], record.labels[assigned])


def test_other_extractor_is_refused(sol_copy: Path) -> None:
    def edit(m: dict) -> None:
        m["extractor"]["params"]["cells"] = 4  # rebuilds a different extractor

    _rewrite(sol_copy, edit)
    with pytest.raises(SolutionError, match=r"differs .*\['cells'\]"):
        load_solution(sol_copy)
