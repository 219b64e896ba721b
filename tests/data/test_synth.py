"""Tests of the synthetic all-sky generator (tiny images, a few seconds in total)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import chi2_contingency

from aurora.data import synth
from aurora.data.synth import (
    CSV_COLUMNS,
    MORPHOLOGIES,
    SynthError,
    encode_jpeg,
    frame_time,
    generate,
    plan_dataset,
    render_sky,
)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _rows(labels: Path) -> list[dict[str, str]]:
    with open(labels, newline="") as f:
        return list(csv.DictReader(f))


def _radius(img: np.ndarray, meta: synth.SkyMeta) -> np.ndarray:
    """Distance of every pixel centre from the true circle centre, in pixels; (S, S)."""
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.hypot(xx - meta.circle_x, yy - meta.circle_y)


def test_same_seed_same_bytes_for_any_job_count(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", n=7, seed=3, size=64, jobs=1)
    b = generate(tmp_path / "b", n=7, seed=3, size=64, jobs=2)
    c = generate(tmp_path / "c", n=7, seed=4, size=64, jobs=1)
    assert _hashes(a.parent) == _hashes(b.parent)
    assert len(_hashes(a.parent)) == 8  # 7 images + labels.csv
    differ = [k for k, v in _hashes(c.parent).items() if _hashes(a.parent)[k] != v]
    assert len(differ) == 8


def test_labels_describe_the_files(tmp_path: Path) -> None:
    n, size = 12, 64
    labels = generate(tmp_path, n=n, seed=1, size=size, moon_prob=0.5, jobs=1)
    assert labels == tmp_path / "labels.csv"
    header = labels.read_text().splitlines()[0]
    assert header == ",".join(CSV_COLUMNS)
    rows = _rows(labels)
    assert len(rows) == n
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == sorted(r["path"] for r in rows)
    assert Counter(r["morphology"] for r in rows) == dict.fromkeys(MORPHOLOGIES, n // 6)
    for i, r in enumerate(rows):
        when = datetime.strptime(r["path"], "LYR-Sony-%Y%m%d_%H%M%S.jpg").replace(tzinfo=UTC)
        assert when == frame_time(i)
        moon = r["moon"] == "1"
        assert (r["moon_x"] != "") == moon and (r["moon_r"] != "") == moon
        clouds = float(r["clouds"])
        assert 0.0 <= clouds <= 1.0
        # the row is the exact recipe of the file: re-render it and compare bytes
        img, meta = render_sky(
            r["morphology"], np.random.default_rng(int(r["seed"])), size, moon, clouds, when
        )
        assert encode_jpeg(img) == (tmp_path / r["path"]).read_bytes()
        assert meta.row(r["path"], int(r["seed"])) == r
        decoded = cv2.imread(str(tmp_path / r["path"]))
        assert decoded.shape == (size, size, 3)


def test_frames_follow_nights() -> None:
    assert frame_time(0) == datetime(2024, 12, 1, 15, 0, tzinfo=UTC)
    assert frame_time(1) == datetime(2024, 12, 1, 15, 1, tzinfo=UTC)
    assert frame_time(839) == datetime(2024, 12, 2, 4, 59, tzinfo=UTC)
    assert frame_time(840) == datetime(2024, 12, 2, 15, 0, tzinfo=UTC)


def test_moon_and_clouds_independent_of_morphology() -> None:
    plans = plan_dataset(3000, seed=0, moon_prob=0.3)
    moon_rate = np.mean([p.moon for p in plans])
    assert abs(moon_rate - 0.3) < 0.03
    for nuisance in ("moon", "clouds"):
        table = np.zeros((len(MORPHOLOGIES), 2))
        for p in plans:
            table[MORPHOLOGIES.index(p.morphology), int(bool(getattr(p, nuisance)))] += 1
        assert chi2_contingency(table).pvalue > 0.001, nuisance
    # and the morphology sequence is not tied to the time of night
    first_half = Counter(p.morphology for p in plans[:1500])
    assert max(first_half.values()) - min(first_half.values()) < 80


def test_outside_the_circle_is_black_except_corner_text() -> None:
    size = 96
    for i, morph in enumerate(MORPHOLOGIES):
        rng_a, rng_b = np.random.default_rng(i), np.random.default_rng(i)
        bare, meta = render_sky(morph, rng_a, size, moon=i % 2 == 0, clouds=0.8, caption=False)
        text, _ = render_sky(morph, rng_b, size, moon=i % 2 == 0, clouds=0.8)
        d = _radius(bare, meta)
        assert bare[d > meta.circle_r + 1].max() == 0
        assert bare[d < meta.circle_r - 2].min(axis=-1).mean() > 5  # the sky is not black
        corner = int(0.27 * size)
        changed = np.argwhere((text != bare).any(-1))
        assert len(changed) > 20
        near_x = np.minimum(changed[:, 1], size - 1 - changed[:, 1]) < corner
        near_y = np.minimum(changed[:, 0], size - 1 - changed[:, 0]) < corner
        assert (near_x & near_y).all()


def test_circle_is_randomised_and_inside_the_frame() -> None:
    metas = [render_sky("diffuse", np.random.default_rng(i), 96, False, 0.0)[1] for i in range(12)]
    xs = np.array([m.circle_x for m in metas])
    rs = np.array([m.circle_r for m in metas])
    assert xs.std() > 0.3 and rs.std() > 0.3
    for m in metas:
        assert m.circle_x - m.circle_r >= 0 and m.circle_x + m.circle_r <= 95
        assert m.circle_y - m.circle_r >= 0 and m.circle_y + m.circle_r <= 95


def test_moon_ground_truth_is_the_saturated_blob() -> None:
    size = 192
    for i in range(12):
        morph = MORPHOLOGIES[i % len(MORPHOLOGIES)]
        clouds = 0.7 if i % 3 == 0 else 0.0
        img, meta = render_sky(
            morph, np.random.default_rng(100 + i), size, True, clouds, caption=False
        )
        white = (img >= 250).all(-1)
        ys, xs = np.nonzero(white)
        assert len(xs) > 0
        assert abs(xs.mean() - meta.moon_x) < 0.6 and abs(ys.mean() - meta.moon_y) < 0.6
        assert abs(np.sqrt(len(xs) / np.pi) - meta.moon_r) < 1.0
        assert np.hypot(xs - meta.moon_x, ys - meta.moon_y).max() < meta.moon_r + 1.0
        # and without the Moon, nothing in the sky is saturated white
        img0, _ = render_sky(
            morph, np.random.default_rng(100 + i), size, False, clouds, caption=False
        )
        assert not (img0 >= 250).all(-1).any()


def _structure_features(img: np.ndarray, meta: synth.SkyMeta) -> np.ndarray:
    """A few hand-made morphology features of the green excess inside the circle."""
    f = img.astype(np.float32)
    e = cv2.GaussianBlur(f[..., 1] - 0.5 * (f[..., 0] + f[..., 2]), (0, 0), 1.0)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float32)
    dx, dy = xx - meta.circle_x, yy - meta.circle_y
    rho = np.hypot(dx, dy) / meta.circle_r
    inside = rho < 0.92
    lo, hi = np.percentile(e[inside], [5, 99])
    z = (np.clip((e - lo) / (hi - lo + 1e-6), 0, 1) * inside).astype(np.float32)
    gx, gy = cv2.Sobel(z, cv2.CV_32F, 1, 0), cv2.Sobel(z, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy) * inside
    w = mag.sum() + 1e-6
    tangential = (mag * np.sin(np.arctan2(gy, gx) - np.arctan2(dy, dx)) ** 2).sum() / w
    jxx, jyy, jxy = (gx * gx * inside).sum(), (gy * gy * inside).sum(), (gx * gy * inside).sum()
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)
    areas = [(z[inside] > t).mean() for t in (0.25, 0.5, 0.75)]
    blobs = cv2.connectedComponents((z > 0.5).astype(np.uint8))[0] - 1
    rings = [z[(rho >= a) & (rho < b)].mean() for a, b in ((0, 0.3), (0.3, 0.6), (0.6, 0.92))]
    return np.array([tangential, coherence, *areas, np.log1p(blobs), w / (z.sum() + 1e-6), *rings])


def _colour_features(img: np.ndarray, meta: synth.SkyMeta) -> np.ndarray:
    inside = _radius(img, meta) < 0.9 * meta.circle_r
    m = img[inside].astype(np.float64).mean(0)
    return np.array([*m, m[1] / (m[0] + 1), m.sum()])


def _nearest_centroid_accuracy(feats: np.ndarray, labels: np.ndarray, n_train: int) -> float:
    """Train on the first n_train renders of each class, test on the rest."""
    k = len(MORPHOLOGIES)
    per = len(labels) // k
    train = (np.arange(len(labels)) % per) < n_train
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-9
    z = (feats - mu) / sd
    cent = np.stack([z[train & (labels == c)].mean(0) for c in range(k)])
    pred = np.argmin(((z[~train, None] - cent[None]) ** 2).sum(-1), 1)
    return float((pred == labels[~train]).mean())


def test_morphologies_differ_by_structure_not_by_colour() -> None:
    per, n_train = 30, 16
    structure, colour, labels = [], [], []
    for c, morph in enumerate(MORPHOLOGIES):
        for i in range(per):
            rng = np.random.default_rng([7, c, i])
            moon, clouds = bool(rng.random() < 0.3), 0.6 if rng.random() < 0.3 else 0.0
            img, meta = render_sky(morph, rng, 96, moon, clouds, caption=False)
            structure.append(_structure_features(img, meta))
            colour.append(_colour_features(img, meta))
            labels.append(c)
    y = np.array(labels)
    acc = _nearest_centroid_accuracy(np.array(structure), y, n_train)
    assert acc >= 0.5, f"structure features separate morphologies only {acc:.2f} (chance 0.17)"
    # no single colour statistic gives the morphology away
    colour_arr = np.array(colour)
    for j in range(colour_arr.shape[1]):
        acc_j = _nearest_centroid_accuracy(colour_arr[:, j : j + 1], y, n_train)
        assert acc_j < 0.4, f"colour statistic {j} separates morphologies ({acc_j:.2f})"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"morphology": "aurora_borealis"}, "unknown morphology"),
        ({"size": 16}, "at least 32"),
        ({"clouds": 1.5}, "clouds"),
    ],
)
def test_render_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"morphology": "single_arc", "size": 64, "clouds": 0.0} | kwargs
    with pytest.raises(SynthError, match=message):
        render_sky(
            args["morphology"], np.random.default_rng(0), args["size"], False, args["clouds"]
        )


def test_cli_writes_a_data_set_and_reports_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synth.main([str(tmp_path / "out"), "--n", "3", "--size", "48", "--jobs", "1"]) == 0
    assert len(list((tmp_path / "out").glob("LYR-Sony-*.jpg"))) == 3
    assert synth.main([str(tmp_path / "bad"), "--n", "0"]) == 2
    assert "number of images" in capsys.readouterr().err
