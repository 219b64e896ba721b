"""The typed fusion settings and the estimators' parameters: one validator per parameter for
both, keyword-only parameters, scikit-learn's parameter API, the estimators the settings make."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from conftest import ROOT
from omegaconf import OmegaConf
from sklearn.base import clone
from sklearn.utils import estimator_checks

from aurora.fusion import (
    CoAssociationVoting,
    FusedNeighbours,
    FusionError,
    FusionParameterError,
    FusionSettings,
    search_fusion,
)
from aurora.infra.errors import SettingsError

FUSION_NODE = {"threshold": 0.5, "min_cluster_size": 2, "n_partitions": 3, "per_extractor": True}


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3", float("nan")])
def test_min_size_is_refused_alike_by_the_estimator_and_the_settings(bad: object) -> None:
    with pytest.raises(FusionParameterError) as by_estimator:
        CoAssociationVoting(min_cluster_size=bad).fit(np.zeros((3, 2), int))
    with pytest.raises(FusionParameterError) as by_settings:
        FusionSettings.from_node({**FUSION_NODE, "min_cluster_size": bad})
    assert by_estimator.value.key == "min_cluster_size"
    assert by_settings.value.key == "fusion.min_cluster_size"
    assert by_estimator.value.allowed == by_settings.value.allowed
    assert isinstance(by_settings.value, SettingsError)  # the run's one error line
    assert isinstance(by_estimator.value, FusionError)  # what the estimator promises


def test_threshold_of_a_setting_must_be_in_the_range_of_the_co_association() -> None:
    parts = np.array([[0, 0, 1], [0, 1, 1]])
    # The estimator takes any finite t: below 0 all join, at the top none does.
    assert CoAssociationVoting(threshold=-0.1).fit_predict(parts.T).tolist() == [0, 0, 0]
    assert CoAssociationVoting(threshold=1.0).fit_predict(parts.T).tolist() == [0, 1, 2]
    with pytest.raises(FusionParameterError, match=r"^threshold=inf "):
        CoAssociationVoting(threshold=float("inf")).fit(parts.T)
    # A setting must be useful: [0, 1] unweighted, [0, mean weight] weighted.
    for bad in (-0.1, 1.5):
        with pytest.raises(SettingsError, match=r"^fusion\.threshold=.*\[0, 1\]"):
            FusionSettings.from_node({**FUSION_NODE, "threshold": bad})
    weighted = {**FUSION_NODE, "threshold": 1.5, "voting": {"weights": [2.0, 2.0, 2.0]}}
    assert FusionSettings.from_node(weighted).threshold == 1.5
    with pytest.raises(SettingsError, match=r"^fusion\.search\.thresholds=.*\[0, 1\]"):
        FusionSettings.from_node({**FUSION_NODE, "search": {**SEARCH_NODE, "thresholds": [0.5, 2]}})


SEARCH_NODE = {
    "n_partitions": [2, 9],
    "thresholds": [0.3, 0.6],
    "min_sizes": [1, 4],
    "target_groups": 3,
    "unassigned_penalty": 0.1,
    "weights": None,
}


def test_settings_make_the_estimators_they_describe() -> None:
    rng = np.random.default_rng(5)
    parts = rng.integers(-1, 3, size=(4, 60))
    settings = FusionSettings.from_node({**FUSION_NODE, "voting": {"weights": [1, 2, 1, 1]}})
    voting = settings.voting_estimator()
    expected = CoAssociationVoting(threshold=0.5, min_cluster_size=2, weights=[1, 2, 1, 1])
    assert np.array_equal(voting.fit_predict(parts.T), expected.fit_predict(parts.T))
    searched = FusionSettings.from_node({**FUSION_NODE, "search": SEARCH_NODE})
    assert searched.candidates == 9  # the most partitions any grid point fuses
    res = searched.search.search(parts)  # 9 > P = 4: left out
    direct = search_fusion(
        parts, n_partitions=[2], thresholds=[0.3, 0.6], min_sizes=[1, 4], target_groups=3,
        unassigned_penalty=0.1,
    )  # fmt: skip
    assert res.table == direct.table and np.array_equal(res.labels, direct.labels)


def test_fitted_settings_take_the_lowered_values_and_keep_the_rest() -> None:
    searched = FusionSettings.from_node({**FUSION_NODE, "search": SEARCH_NODE})
    fitted = searched.fitted(1, (1, 2), 2)
    assert fitted.min_cluster_size == 1 and fitted.voting_estimator().min_cluster_size == 1
    assert fitted.search is not None
    assert (fitted.search.min_sizes, fitted.search.target_groups) == ((1, 2), 2)
    assert fitted.search.thresholds == searched.search.thresholds
    assert searched.min_cluster_size == 2  # frozen: the original is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        searched.threshold = 0.1  # type: ignore[misc]


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


def test_default_fusion_config_builds_the_voting_estimator() -> None:
    node = OmegaConf.load(ROOT / "conf" / "fusion" / "default.yaml")
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
