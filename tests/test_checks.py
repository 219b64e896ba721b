"""Settings checks: impossible values are refused by key; list values are fitted to the data."""

from __future__ import annotations

import numpy as np
import pytest

from aurora.checks import check_against_data, check_fusion, check_grid, check_training, int_list
from aurora.data.datamodule import split_indices
from aurora.errors import SettingsError

FUSION = {"threshold": 0.5, "min_cluster_size": 20, "n_partitions": 10, "search": None}
SEARCH = {
    "n_partitions": [3, 5],
    "thresholds": [0.3, 0.5],
    "min_sizes": [10, 20, 50],
    "target_groups": 37,
    "unassigned_penalty": 0.1,
}


def test_lone_k_is_a_one_element_grid() -> None:
    assert check_grid(3, 3).n_clusters == (3,)
    assert check_grid([6, 12, 6], 3).n_clusters == (6, 12)


@pytest.mark.parametrize("bad", [[0], [1], [], ["two"], [2.5], [True]])
def test_impossible_k_names_the_key(bad: object) -> None:
    with pytest.raises(SettingsError, match=r"grid\.n_clusters="):
        check_grid(bad, 3)


@pytest.mark.parametrize(
    ("fusion", "key"),
    [
        ({**FUSION, "threshold": 1.5}, "fusion.threshold"),
        ({**FUSION, "min_cluster_size": 0}, "fusion.min_cluster_size"),
        ({**FUSION, "n_partitions": "ten"}, "fusion.n_partitions"),
        ({**FUSION, "search": {**SEARCH, "thresholds": [0.5, -1]}}, "fusion.search.thresholds"),
        ({**FUSION, "search": {**SEARCH, "min_sizes": [0]}}, "fusion.search.min_sizes"),
    ],
)
def test_impossible_fusion_names_the_key(fusion: dict, key: str) -> None:
    with pytest.raises(SettingsError) as err:
        check_fusion(fusion)
    assert err.value.key == key and key in str(err.value)


def test_impossible_training_names_the_key() -> None:
    with pytest.raises(SettingsError, match="batch_size"):
        check_training({"batch_size": 1, "val_fraction": 0.05}, 10)
    with pytest.raises(SettingsError, match="val_fraction"):
        check_training({"batch_size": 8, "val_fraction": 0.9}, 10)
    with pytest.raises(SettingsError, match="max_epochs"):
        check_training({"batch_size": 8, "val_fraction": 0.05}, 0)


def test_values_are_fitted_to_the_accepted_count(caplog: pytest.LogCaptureFixture) -> None:
    fit = check_against_data(15, check_grid([6, 30, 100], 3), {**FUSION, "search": SEARCH})
    assert fit.n_clusters == (6, 14)  # k below the number of images
    assert fit.min_cluster_size == 15
    assert fit.search_min_sizes == (10, 15)
    assert fit.target_groups == 15
    assert "grid.n_clusters" in caplog.text and "[30, 100]" in caplog.text
    # Nothing changes when the data is large enough.
    big = check_against_data(1000, check_grid([6, 30], 3), {**FUSION, "search": SEARCH})
    assert big.n_clusters == (6, 30) and big.search_min_sizes == (10, 20, 50)


def test_fewer_than_two_images_cannot_be_grouped() -> None:
    with pytest.raises(SettingsError, match="at least 2"):
        check_against_data(1, check_grid([2], 2), FUSION)


def test_int_list_keeps_order() -> None:
    assert int_list("k", [5, 3.0, 4], 2) == [5, 3, 4]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16, 40, 200])
def test_validation_split_is_two_or_none(n: int) -> None:
    train, val = split_indices(n, 0.05, seed=0)
    assert len(val) == 0 or len(val) >= 2  # a lone validation image logs no loss
    assert len(train) >= 2
    assert len(val) == (0 if n < 4 else max(2, round(n * 0.05)))
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == n
