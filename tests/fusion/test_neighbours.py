"""FusedNeighbours: new images labelled by their nearest fused neighbours (a scikit-learn
classifier saved as ``.npz``); its results and file layout unchanged by the redesign of issue 20.

The digests were computed before issue 20 (``FusedNeighbours.predict`` returning ``(labels,
distances)``) on the fixed inputs built here; the new API must give the same bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import array_digest
from sklearn.utils.estimator_checks import check_estimator

from aurora.fusion import (
    FusedNeighbours,
    FusionError,
)


def test_fused_neighbours_vote_and_round_trip(tmp_path: Path) -> None:
    x = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [5, 5], [5.1, 5], [9, 9]])
    y = np.array([0, 0, 1, 1, 1, -1])  # the -1 image is never a reference
    model = FusedNeighbours(n_neighbors=3, max_distance=2.0).fit(x, y)
    new = np.array([[0.05, 0], [5, 5.05], [9, 9]])
    lab = model.predict(new)
    assert lab.tolist() == [0, 1, -1]
    dist, idx = model.kneighbors(new)
    assert dist.shape == idx.shape == (3, 3)
    assert dist[2, 0] == pytest.approx(np.hypot(3.9, 4))
    assert np.all(np.diff(dist, axis=1) >= 0)  # nearest first
    model.save(tmp_path / "nn.npz")
    with np.load(tmp_path / "nn.npz", allow_pickle=False) as z:
        assert "embedding" in z
    again = FusedNeighbours.load(tmp_path / "nn.npz")
    assert np.array_equal(again.predict(new), lab)
    assert np.array_equal(again.kneighbors(new)[0], dist)
    with pytest.raises(FusionError, match="new points"):
        again.predict(np.zeros((1, 3)))


def _neighbour_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embedding (200, 5), fused labels (200,) with -1s, new points (50, 5)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=3.0, size=(6, 5))
    y = rng.integers(0, 6, 200)
    x = centres[y] + rng.normal(size=(200, 5))
    y[rng.random(200) < 0.1] = -1
    q = centres[rng.integers(0, 6, 50)] + rng.normal(scale=1.5, size=(50, 5))
    return x, y, q


BEFORE_NEIGHBOURS = {
    (1, None): "59ea67afda3e8a23",
    (1, 2.0): "247c9c79b9ebd4ac",
    (3, None): "6b827f2f017558aa",
    (3, 2.0): "15e7d0c833a98c38",
    (4, None): "9986112c65a4936f",
    (4, 2.0): "247c9c79b9ebd4ac",
    (7, None): "c9b516fb9c88a083",
    (7, 2.0): "06c0388b12af193c",
}


def test_neighbours_identical_to_before_redesign() -> None:
    x, y, q = _neighbour_case()
    for (k, max_distance), expected in BEFORE_NEIGHBOURS.items():
        model = FusedNeighbours(n_neighbors=k, max_distance=max_distance).fit(x, y)
        nearest = model.kneighbors(q)[0][:, 0]  # the old predict's second output
        assert array_digest(model.predict(q), nearest) == expected, (k, max_distance)


def test_neighbours_file_in_the_old_layout_loads(tmp_path: Path) -> None:
    # Written by hand, key by key, as solutions saved before the redesign hold it.
    x, y, q = _neighbour_case()
    keep = y >= 0
    path = tmp_path / "neighbours.npz"
    np.savez(
        path,
        format=np.array("aurora.fusion.FusedNeighbours/1"),
        embedding=x[keep].astype(np.float32),
        labels=y[keep].astype(np.int64),
        n_neighbors=np.array(3, np.int64),
        max_distance=np.array(np.nan),
    )
    model = FusedNeighbours.load(path)
    assert model.get_params() == {"n_neighbors": 3, "max_distance": None}
    fresh = FusedNeighbours(n_neighbors=3).fit(x, y)
    assert np.array_equal(model.predict(q), fresh.predict(q))
    assert model.n_features_in_ == 5 and np.array_equal(model.classes_, np.arange(6))
    # and what save writes back is the same layout
    model.save(tmp_path / "again.npz")
    with np.load(path) as a, np.load(tmp_path / "again.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes()


def test_neighbours_pass_sklearn_estimator_checks() -> None:
    # Fused labels are integers (-1 = unassigned), so string classes are refused on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(
            FusedNeighbours(n_neighbors=3),
            expected_failed_checks={
                "check_classifiers_classes": "fused labels are integers, -1 = unassigned"
            },
        )


def test_neighbours_query_errors_and_empty_query() -> None:
    x, y, q = _neighbour_case()
    model = FusedNeighbours(n_neighbors=4).fit(x, y)
    with pytest.raises(FusionError, match=r"\(q, 5\)"):
        model.predict(q[:, :3])
    with pytest.raises(FusionError, match="finite"):
        model.predict(np.full((1, 5), np.nan))
    with pytest.raises(FusionError, match="n_neighbors"):
        model.kneighbors(q, n_neighbors=1000)
    assert model.predict(q[:0]).shape == (0,)
    dist, idx = model.kneighbors(q[:0])
    assert dist.shape == idx.shape == (0, 4)
    idx = model.kneighbors(q, 2, return_distance=False)
    assert idx.shape == (50, 2) and idx.max() < len(model.labels_)
    with pytest.raises(FusionError, match="integers"):
        FusedNeighbours().fit(x, y.astype(str))
    with pytest.raises(FusionError, match="no assigned image"):
        FusedNeighbours().fit(x, np.full(200, -1))
