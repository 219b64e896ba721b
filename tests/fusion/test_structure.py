"""Is there anything to group? (aurora.fusion.structure): fused groups against featureless
noise of the same spread and against blocks of time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg
from sklearn.cluster import KMeans

from aurora.fusion.structure import StructureTest, assess_structure

T0 = datetime(2014, 3, 10, 6, 0, tzinfo=UTC)


def _times(n: int, step_s: float = 3.0) -> list[datetime]:
    return [T0 + timedelta(seconds=step_s * i) for i in range(n)]


def _kmeans(x: np.ndarray, k: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(x)


def test_well_separated_blobs_have_structure() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(4, 16))
    truth = rng.integers(0, 4, size=400)  # frames in random order: no time blocks
    x = centres[truth] + rng.normal(size=(400, 16))
    res = assess_structure(x, _kmeans(x, 4), _times(400), seed=0)
    assert res.structure and res.reason == "separated"
    assert res.separation < res.null_separation_min
    assert not res.time_blocks
    assert res.to_summary()["structure"] is True
    assert "sentence" not in res.to_summary()["structure_test"]


def test_one_gaussian_blob_split_by_kmeans_has_none() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)) * np.linspace(3.0, 0.5, 16)
    res = assess_structure(x, _kmeans(x, 5), None, seed=0)
    assert not res.structure and res.reason == "noise"
    assert res.p_value > res.alpha
    assert res.time_order == "input order"
    out = res.to_summary()
    assert out["structure"] is False
    assert out["structure_test"]["sentence"].startswith("No structure:")


def _drift(n: int, noise: float, seed: int) -> np.ndarray:
    """(n, 16): a slow path wandering through six dimensions of feature space (a static sky
    changing a little) plus independent noise of each frame."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, n)[:, None]
    waves = [w(np.pi * f * s) for f in (1, 2, 3) for w in (np.cos, np.sin)]
    path = np.hstack([*waves, np.zeros((n, 10))]) * 2.0 / np.sqrt(3.0)
    return path + rng.normal(scale=noise, size=(n, 16))


def test_slow_drift_cut_into_time_blocks_has_none() -> None:
    n = 300
    x = _drift(n, noise=0.6, seed=2)
    times = _times(n)
    # K-means cuts the path into blocks of time, better separated than Gaussian noise is (a
    # curve cuts cleanly) but closer to each other than consecutive frames.
    y = _kmeans(x, 6)
    res = assess_structure(x, y, times, seed=0)
    assert not res.structure and res.reason == "time_blocks"
    assert res.separation < res.null_separation_min
    assert res.time_blocks and res.signal_to_noise < 1.0
    assert "blocks of time" in res.to_summary()["structure_test"]["sentence"]
    # The same frames given in another order are put back in time order.
    back = np.arange(n)[::-1]
    again = assess_structure(x[back], y[back], [times[i] for i in back], seed=0)
    assert again.agreement == res.agreement
    assert again.signal_to_noise == pytest.approx(res.signal_to_noise)
    # Six contiguous blocks of time, cut without looking: no structure either.
    blocks = np.repeat(np.arange(6), n // 6)
    assert not assess_structure(x, blocks, times, seed=0).structure
    # Without the times (input order shuffled) the same groups are not blocks of time.
    mixed = np.random.default_rng(0).permutation(n)
    assert not assess_structure(x[mixed], y[mixed], None, seed=0).time_blocks
    # Frames without a time (labelled reference images) go last; the others keep their order.
    extra = np.vstack([x[mixed], np.zeros((3, 16))])
    times_mixed = [times[i] for i in mixed] + [None, None, None]
    part = assess_structure(extra, np.r_[y[mixed], [-1, -1, -1]], times_mixed, seed=0)
    assert part.time_order == "timestamps" and part.agreement == res.agreement


def test_blocks_of_time_farther_apart_than_the_frame_noise_have_structure() -> None:
    """A night whose forms last for many frames each (and come back): groups are blocks of
    time, but their centroids differ by much more than consecutive frames."""
    rng = np.random.default_rng(3)
    forms = rng.normal(scale=3.0, size=(3, 16))
    runs = np.repeat(rng.permutation(np.tile(np.arange(3), 4)), 30)  # 12 episodes of 30 frames
    x = forms[runs] + rng.normal(scale=0.5, size=(len(runs), 16))
    res = assess_structure(x, _kmeans(x, 3), _times(len(runs)), seed=0)
    assert res.structure and res.time_blocks and res.signal_to_noise > 1.0


def test_unassigned_left_out_and_fewer_than_two_groups_is_none() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 8))
    one = np.where(np.arange(50) < 40, 0, -1)
    res = assess_structure(x, one, None, seed=0)
    assert not res.structure and res.reason == "one_group" and res.n_frames == 40
    none = assess_structure(x, np.full(50, -1), None, seed=0)
    assert not none.structure and none.reason == "no_groups" and none.n_frames == 0
    same = assess_structure(np.ones((30, 4)), np.repeat([0, 1, 2], 10), None, seed=0)
    assert not same.structure and same.reason == "no_spread"
    # Consecutive frames of a group identical: no noise at all, and valid JSON.
    steps = np.repeat(rng.normal(scale=5.0, size=(3, 8)), 20, axis=0)
    exact = assess_structure(steps, np.repeat([0, 1, 2], 20), _times(60), seed=0)
    assert exact.signal_to_noise == float("inf") and exact.structure
    json.dumps(exact.to_summary(), allow_nan=False)


def test_deterministic_for_a_seed_and_sampled_rows() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 40))
    y = _kmeans(x, 3)
    a = assess_structure(x, y, None, seed=7, max_rows=200, n_components=8)
    b = assess_structure(x, y, None, seed=7, max_rows=200, n_components=8)
    assert a == b and a.n_rows == 200 and a.n_components == 8 and a.n_frames == 600
    assert isinstance(a, StructureTest)
    with pytest.raises(ValueError, match="do not match"):
        assess_structure(x, y[:10], None)


def test_run_records_structure_in_summary_and_report(
    tiny_overrides: list[str], tmp_path: Path
) -> None:
    from aurora.run import run_cluster

    run_dir = tmp_path / "run"
    summary = run_cluster(compose_cfg("cluster", tiny_overrides), run_dir)
    saved = json.loads((run_dir / "summary.json").read_text())
    assert isinstance(saved["structure"], bool) and saved["structure"] == summary["structure"]
    test = saved["structure_test"]
    assert test["n_groups"] == saved["n_groups"]
    assert test["n_frames"] == saved["n_accepted"] - saved["n_unassigned"]
    page = (run_dir / "report" / "index.html").read_text()
    shown = saved["structure"] is False and saved["n_groups"] > 0
    assert ('id="structure"' in page) == shown
    if shown:
        assert test["sentence"] in page
