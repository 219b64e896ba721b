"""What a run's stages hand each other (aurora.run.stores, aurora.run.context): image rows
across stores, and features cut to the images every extractor kept."""

from __future__ import annotations

import numpy as np

from aurora.run import (
    ImageRows,
)


def test_image_rows_matches_direct_indexing() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (10, 4, 4, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    ra, rb = np.array([9, 2, 4]), np.array([0, 3])
    direct = np.concatenate([a[ra], b[rb]])
    view = ImageRows([(a, ra), (b, rb)])
    assert view.shape == direct.shape and len(view) == 5
    idx = np.array([4, 0, 3, 1, 1])
    np.testing.assert_array_equal(view[idx], direct[idx])
    np.testing.assert_array_equal(view[1:4], direct[1:4])
    np.testing.assert_array_equal(view[3], direct[3])
    np.testing.assert_array_equal(np.asarray(view), direct)


def test_aligned_features_get_their_own_cache_key() -> None:
    """Features cut to the images every extractor kept are other rows than the cached entry's:
    their reductions must not be cached under the entry's key."""
    from types import SimpleNamespace

    from aurora.run import ExtractedFeatures
    from aurora.run.context import _rows

    store = SimpleNamespace(ids=["a", "b", "c"], images=np.arange(12).reshape(3, 2, 2, 1))
    feats = np.arange(6.0).reshape(3, 2)
    f = ExtractedFeatures("x", feats, "k", ["a", "b", "c"], False, store, "full", {}, {}, None)
    same, fewer = _rows(f, ["a", "b", "c"]), _rows(f, ["c", "a"])
    assert same.key == "k" and same.features is feats
    assert fewer.key != "k" and fewer.ids == ["c", "a"]
    np.testing.assert_array_equal(fewer.features, feats[[2, 0]])
    np.testing.assert_array_equal(np.asarray(fewer.images), store.images[[2, 0]])
