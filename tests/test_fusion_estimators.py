"""The fusion estimators as scikit-learn estimators, and their results unchanged by the redesign.

The digests below were computed with the implementation before issue 20 (``CoAssociationVoting``
fed (P, n) partitions, ``FusedNeighbours.predict`` returning ``(labels, distances)``) on the
fixed inputs built here; the new API must give the same bytes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import check_estimator

from aurora.fusion import (
    CoAssociationVoting,
    FusedNeighbours,
    FusionError,
    FusionSettings,
    run_fusion_search,
    search_fusion,
)

# --------------------------------------------------------------------------- fixed inputs


def _digest(*arrays: object) -> str:
    h = hashlib.sha256()
    for a in arrays:
        arr = np.asarray(a)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _voting_cases() -> list[tuple[np.ndarray, np.ndarray | None, float, int, int]]:
    """(partitions (P, n), weights, threshold, min size, max_block_entries)."""
    rng = np.random.default_rng(20250101)
    out = []
    for case in range(60):
        n = int(rng.integers(1, 400))
        n_part = int(rng.integers(1, 12))
        k = int(rng.integers(2, 12))
        parts = rng.integers(-1, k, size=(n_part, n))
        if case % 3:
            base = rng.integers(0, k, size=n)
            parts = np.where(rng.random((n_part, n)) < 0.8, base[None, :], parts)
        kind = case % 4
        w = [
            None,
            rng.integers(0, 5, n_part) / 4,
            rng.uniform(0, 2, n_part),
            rng.choice([0.1, 0.2, 0.3, 0.7], n_part),
        ][kind]
        ww = np.ones(n_part) if w is None else w
        threshold = (
            float(np.sum(ww[rng.random(n_part) < 0.5])) / n_part
            if case % 3 == 0
            else float(rng.uniform(0.1, 0.9))
        )
        out.append((parts, w, threshold, int(rng.integers(0, 6)), int(rng.integers(1, 2000))))
    base = rng.integers(0, 30, size=4000)  # a larger correlated case scanned in many blocks
    parts = np.where(
        rng.random((10, 4000)) < 0.85, base[None, :], rng.integers(-1, 30, size=(10, 4000))
    )
    for t in (0.3, 0.5, 0.7):
        out.append((parts, None, t, 20, 5000))
    return out


def _neighbour_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embedding (200, 5), fused labels (200,) with -1s, new points (50, 5)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=3.0, size=(6, 5))
    y = rng.integers(0, 6, 200)
    x = centres[y] + rng.normal(size=(200, 5))
    y[rng.random(200) < 0.1] = -1
    q = centres[rng.integers(0, 6, 50)] + rng.normal(scale=1.5, size=(50, 5))
    return x, y, q


def _search_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    truth = np.repeat(np.arange(5), 40)
    parts = np.stack(
        [np.where(rng.random(200) < 0.15, rng.integers(-1, 5, 200), truth) for _ in range(8)]
    )
    return parts, truth


BEFORE_VOTING = "8c0eb7b0cb0abeb7"
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
BEFORE_SEARCH = "23b05323ba7a6537"
BEFORE_SEARCH_FILES = {"labels.csv": "9819edf361df8a09", "fusion_search.csv": "4c333820b95a045b"}
BEFORE_NPZ = "65f43fc6e4850c9e"
NPZ_LAYOUT = {  # neighbours.npz of a saved solution: these arrays, nothing else
    "format": ("<U31", ()),
    "embedding": ("<f4", (199, 4)),
    "labels": ("<i8", (199,)),
    "n_neighbors": ("<i8", ()),
    "max_distance": ("<f8", ()),
}

# --------------------------------------------------------------------------- identical results


def test_voting_identical_to_before_redesign() -> None:
    per_case = []
    for parts, w, t, ms, block in _voting_cases():
        m = CoAssociationVoting(
            threshold=t, min_cluster_size=ms, weights=w, max_block_entries=block
        ).fit(parts.T)
        stats = [m.n_groups_, m.n_unassigned_, m.n_signatures_, m.n_signature_edges_]
        per_case.append(_digest(m.labels_, m.group_sizes_, stats))
    assert _digest(np.array(per_case)) == BEFORE_VOTING


def test_neighbours_identical_to_before_redesign() -> None:
    x, y, q = _neighbour_case()
    for (k, max_distance), expected in BEFORE_NEIGHBOURS.items():
        model = FusedNeighbours(n_neighbors=k, max_distance=max_distance).fit(x, y)
        nearest = model.kneighbors(q)[0][:, 0]  # the old predict's second output
        assert _digest(model.predict(q), nearest) == expected, (k, max_distance)


def test_search_and_written_files_identical_to_before_redesign(tmp_path: Path) -> None:
    parts, truth = _search_case()
    res = search_fusion(
        parts,
        n_partitions=[2, 5, 8],
        thresholds=[0.2, 0.4, 0.6, 0.8],
        min_sizes=[1, 10, 30],
        target_groups=5,
        unassigned_penalty=0.05,
    )
    rows = np.array([repr(sorted(r.items())) for r in res.table])
    assert _digest(rows, res.labels, np.array(repr(sorted(res.best.items())))) == BEFORE_SEARCH

    ids = [f"img_{i:03d}.png" for i in range(200)]
    emb = np.random.default_rng(3).normal(size=(200, 4)) + truth[:, None] * 4
    run_fusion_search(
        parts,
        ids,
        tmp_path,
        n_partitions=[3, 8],
        thresholds=[0.3, 0.6],
        min_sizes=[1, 10],
        target_groups=5,
        unassigned_penalty=0.1,
        embedding=emb,
        n_neighbors=3,
    )
    for name, expected in BEFORE_SEARCH_FILES.items():
        data = (tmp_path / name).read_bytes()
        if name == "labels.csv":  # one labels.csv writer now: same rows, "\n" line ends
            assert b"\r" not in data
            data = data.replace(b"\n", b"\r\n")
        assert hashlib.sha256(data).hexdigest()[:16] == expected
    with np.load(tmp_path / "neighbours.npz", allow_pickle=False) as z:
        assert {k: (z[k].dtype.str, z[k].shape) for k in z.files} == NPZ_LAYOUT
        assert _digest(*[z[k] for k in sorted(z.files)]) == BEFORE_NPZ


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


# --------------------------------------------------------------------------- scikit-learn API

API_CHECKS = (
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_valid_tag_types",
)


@pytest.mark.parametrize(
    "estimator",
    [
        CoAssociationVoting(
            threshold=0.3,
            min_cluster_size=4,
            weights=[1.0, 2.0, 0.5],
            max_block_entries=100,
            progress=False,
        ),
        FusedNeighbours(n_neighbors=5, max_distance=1.5),
    ],
    ids=["voting", "neighbours"],
)
def test_parameter_api(estimator: object) -> None:
    for check in API_CHECKS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the checks set parameters to odd values on purpose
            getattr(estimator_checks, check)(type(estimator).__name__, estimator)
    params = estimator.get_params()
    twin = clone(estimator)
    assert twin is not estimator and twin.get_params() == params
    assert twin.set_params(**params) is twin and twin.get_params() == params


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


def test_voting_follows_estimator_conventions() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, 120)
    X = np.where(rng.random((120, 6)) < 0.8, base[:, None], rng.integers(-1, 5, (120, 6)))
    X_copy = X.copy()
    model = CoAssociationVoting(threshold=0.5, min_cluster_size=3)
    assert model.fit(X) is model
    assert np.array_equal(X, X_copy)  # input untouched
    assert model.n_features_in_ == 6 and model.labels_.shape == (120,)
    assert not hasattr(clone(model), "labels_")
    assert np.array_equal(
        CoAssociationVoting(threshold=0.5, min_cluster_size=3).fit_predict(X), model.labels_
    )
    # lists, Fortran order and read-only arrays give the same answer
    frozen = np.asfortranarray(X)
    frozen.flags.writeable = False
    for same in (X.tolist(), frozen):
        assert np.array_equal(
            CoAssociationVoting(threshold=0.5, min_cluster_size=3).fit_predict(same), model.labels_
        )
    # the order of the partitions does not matter (weights follow their partition)
    w = rng.uniform(0.5, 2, 6)
    perm = rng.permutation(6)
    a = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w).fit_predict(X)
    b = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w[perm]).fit_predict(
        X[:, perm]
    )
    assert np.array_equal(a, b)
    # the order of the images only renumbers the groups
    rows = rng.permutation(120)
    c = CoAssociationVoting(threshold=0.4, min_cluster_size=1, weights=w).fit_predict(X[rows])
    assert adjusted_rand_score(a[rows], c) == 1.0


def test_voting_bad_input_names_the_shape() -> None:
    with pytest.raises(FusionError, match="n_samples, n_partitions"):
        CoAssociationVoting().fit(np.zeros((4, 0), int))
    with pytest.raises(FusionError, match="integer labels"):
        CoAssociationVoting().fit(np.full((3, 2), 0.5))
    with pytest.raises(FusionError, match="integer labels"):
        CoAssociationVoting().fit(np.array([["a", "b"]]))
    assert CoAssociationVoting().fit_predict(np.zeros((0, 3), int)).shape == (0,)


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


def test_default_fusion_config_builds_the_voting_estimator() -> None:
    node = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "fusion" / "default.yaml")
    fusion = OmegaConf.to_container(node, resolve=True)
    assert "neighbours" not in fusion  # declared once, never read: removed
    settings = FusionSettings.from_node(fusion)
    voting = settings.voting_estimator()
    assert isinstance(voting, CoAssociationVoting)
    assert voting.get_params() == {
        "threshold": fusion["threshold"],
        "min_cluster_size": fusion["min_cluster_size"],
        **fusion["voting"],
    }


@pytest.mark.parametrize(
    ("make", "args"),
    [
        (CoAssociationVoting, (0.5,)),
        (CoAssociationVoting, (0.5, 2)),
        (FusedNeighbours, (3,)),
    ],
)
def test_estimators_take_keywords_only(make: type, args: tuple) -> None:
    with pytest.raises(TypeError, match="positional"):
        make(*args)


def test_search_takes_its_grid_by_keyword_only() -> None:
    parts = np.zeros((2, 5), int)
    with pytest.raises(TypeError, match="positional"):
        search_fusion(parts, [2], [0.5], [1], 2)  # type: ignore[misc]
