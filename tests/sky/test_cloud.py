"""aurora.sky.cloud and spot: stars of a synthetic field against the same field fogged."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from conftest import ROOT

from aurora.sky.camera import sky_mask
from aurora.sky.cloud import cloud_scores, star_count
from aurora.sky.spot import brightest_spot
from aurora.sky.station import Camera

SIZE = 96
CIRCLE = (47.5, 47.5, 46.0)


def _star_field(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(SIZE, SIZE) uint8 dark sky with noise and ``n`` one-pixel stars above 30 deg."""
    rng = np.random.default_rng(seed)
    img = rng.normal(20.0, 1.5, (SIZE, SIZE))
    ok = sky_mask(Camera(), CIRCLE, (SIZE, SIZE), min_elevation_deg=35.0)
    ys, xs = np.nonzero(ok)
    pick = rng.choice(len(ys), size=n, replace=False)
    img[ys[pick], xs[pick]] += rng.uniform(40, 120, n)
    return np.clip(img, 0, 255).astype(np.uint8), np.column_stack([xs[pick], ys[pick]])


def test_star_field_counted() -> None:
    img, stars = _star_field(25)
    n = star_count(img, camera=Camera(), circle=CIRCLE)
    # stars closer than 2 px merge into one peak; none is missed otherwise
    assert 20 <= n <= 25


def test_fog_and_blur_hide_stars() -> None:
    img, _ = _star_field(25)
    clear = star_count(img, camera=Camera(), circle=CIRCLE)
    fog = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 2.5) * 0.4 + 120
    rng = np.random.default_rng(1)
    fog = np.clip(fog + rng.normal(0, 3.0, fog.shape), 0, 255).astype(np.uint8)
    fogged = star_count(fog, camera=Camera(), circle=CIRCLE)
    assert fogged < clear / 4
    scores, ref = cloud_scores(np.array([clear, fogged]))
    assert scores[0] < scores[1]


def test_extended_aurora_is_not_stars() -> None:
    img, _ = _star_field(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    arc = 80 * np.exp(-(((yy - 40) / 6.0) ** 2))  # a broad arc across the sky
    img = np.clip(img + arc, 0, 255).astype(np.uint8)
    assert star_count(img, camera=Camera(), circle=CIRCLE) <= 1


def test_stars_below_the_elevation_limit_are_ignored() -> None:
    img = np.full((SIZE, SIZE), 20, np.uint8)
    img[47, 5] = 200  # about 8 deg above the horizon (equidistant 180)
    assert star_count(img, camera=Camera(), circle=CIRCLE, min_elevation_deg=30.0) == 0
    assert star_count(img, camera=Camera(), circle=CIRCLE, min_elevation_deg=0.0) == 1


def test_cloud_scores_reference_and_percentile() -> None:
    s, ref = cloud_scores(np.array([0.0, 50.0, 100.0, 200.0]), reference=100.0)
    assert ref == 100.0 and np.allclose(s, [1.0, 0.5, 0.0, 0.0])
    s, ref = cloud_scores(np.array([10.0, 20.0, np.nan]), percentile=100.0)
    assert ref == 20.0 and np.allclose(s[:2], [0.5, 0.0]) and np.isnan(s[2])
    s, ref = cloud_scores(np.zeros(3))
    assert np.isnan(s).all()
    with pytest.raises(ValueError, match="percentile"):
        cloud_scores(np.ones(2), percentile=0.0)


def test_brightest_spot() -> None:
    img = np.full((SIZE, SIZE), 30, np.uint16)
    cv2.circle(img, (70, 30), 3, 60000, -1)
    img[5, 5] = 65535  # outside the circle: ignored
    x, y = brightest_spot(img, CIRCLE)
    assert abs(x - 70) <= 1 and abs(y - 30) <= 1


SHARED = ROOT.parent / "shared" / "data" / "kho_sony_cloudiness"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared absent")
def test_kho_clear_frame_has_more_stars_than_cloudy() -> None:
    from aurora.preprocess.geometry import find_sky_circle

    with open(SHARED / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in ("clear", "clouds")]
    counts = {}
    for r in rows:
        rgb = cv2.cvtColor(cv2.imread(str(SHARED / r["filename"])), cv2.COLOR_BGR2RGB)
        counts[r["filename"]] = (
            r["label"],
            star_count(rgb, camera=Camera(), circle=find_sky_circle(rgb)),
        )
    clear = [n for lab, n in counts.values() if lab == "clear"]
    cloudy = [n for lab, n in counts.values() if lab == "clouds"]
    assert min(clear) > max(cloudy)
