"""Tests of the preprocessing chain and its on-disk store."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from aurora import preprocess_store
from aurora.cache import Cache
from aurora.data.synth import render_sky
from aurora.preprocess import (
    TOO_DARK,
    ImageFormatError,
    PreprocessConfig,
    SkyCircle,
    detect_moon,
    disk_mask,
    find_sky_circle,
    lab_contrast,
    preprocess_image,
    to_uint8,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PLAIN = PreprocessConfig(size=64, lab_stretch=False, recenter_ab=False, star_kernel=0)


def _sky(seed: int, size: int = 96, moon: bool = False, morph: str = "patchy"):
    return render_sky(morph, np.random.default_rng(seed), size, moon, 0.0)


def _disk_image(size: int = 80, level: int = 120) -> np.ndarray:
    """A flat grey sky disk inscribed in a black square (exact circle known)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[disk_mask(size, 0.95)] = level
    return img


# --------------------------------------------------------------------------- sky circle


@pytest.mark.parametrize("size,seed", [(64, 0), (96, 1), (96, 2), (128, 3), (160, 4)])
def test_circle_on_synthetic_sky(size: int, seed: int) -> None:
    img, meta = _sky(seed, size, moon=seed % 2 == 0)
    c = find_sky_circle(img)
    tol = max(1.5, 0.015 * size)
    assert abs(c.cx - meta.circle_x) < tol
    assert abs(c.cy - meta.circle_y) < tol
    assert abs(c.r - meta.circle_r) < tol


def test_circle_offset_in_wide_frame_with_text() -> None:
    img, meta = _sky(5, 96)
    frame = np.zeros((120, 180, 3), np.uint8)
    frame[10:106, 60:156] = img
    cv2.putText(frame, "KHO 2024", (2, 115), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    frame[2:12, 2:40] = 255  # a caption block in the corner
    c = find_sky_circle(frame)
    assert abs(c.cx - (meta.circle_x + 60)) < 1.5
    assert abs(c.cy - (meta.circle_y + 10)) < 1.5
    assert abs(c.r - meta.circle_r) < 1.5


def test_circle_clipped_by_frame() -> None:
    """THEMIS-like: the circle is wider than the frame on two sides."""
    size = 120
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size, 3), np.uint8)
    img[(xx - 59.5) ** 2 + (yy - 61.0) ** 2 <= 63.0**2] = 90
    c = find_sky_circle(img)
    assert abs(c.cx - 59.5) < 1.5 and abs(c.cy - 61.0) < 1.5 and abs(c.r - 63.0) < 1.5


def _real_images() -> list[Path]:
    picks = [
        "kho_sony_samples/LYR-Sony-271119_224936-ql_PIL_default.jpg",
        "kho_sony_cloudiness/clouds/LYR-Sony-020220_073435-ql.jpg",
        "nipr_lyr_allsky_2014/20140221192040.jpg",
        "themis_asi_samples/gako20161013123527.pgm",
        "themis_asi_samples/rank20200104000000.pgm",
    ]
    return [DATA / p for p in picks]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
@pytest.mark.parametrize("path", _real_images(), ids=lambda p: p.name)
def test_real_cameras(path: Path) -> None:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw.ndim == 3:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    h, w = raw.shape[:2]
    c = find_sky_circle(to_uint8(raw))
    assert abs(c.cx - w / 2) < 0.06 * w and abs(c.cy - h / 2) < 0.06 * h
    assert 0.44 * min(h, w) < c.r < 0.53 * min(h, w)
    res = preprocess_image(raw, PreprocessConfig(size=64, dark_threshold=0))
    assert res.image is not None and res.image.shape == (64, 64, 3)
    assert res.image[disk_mask(64, 0.8)].mean() > 10


def test_fixed_circle_from_config_is_used() -> None:
    img = _disk_image(80)
    res = preprocess_image(img, dataclasses.replace(PLAIN, circle=(39.5, 39.5, 20.0)))
    assert res.circle == SkyCircle(39.5, 39.5, 20.0)
    assert res.image is not None and res.image[disk_mask(64, 0.9)].min() == 120


def test_no_circle_is_a_recorded_rejection() -> None:
    flat = np.full((64, 64, 3), 100, np.uint8)
    res = preprocess_image(flat, PLAIN)
    assert res.image is None and res.rejected is not None and "sky circle" in res.rejected


# --------------------------------------------------------------------------- conversion


def test_to_uint8_stretches_16bit_and_replicates_grey() -> None:
    raw = np.linspace(1000, 50000, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = to_uint8(raw, (0.0, 100.0))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    # Monotone in the raw value: a percentile stretch, not a rescale that reorders anything.
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)
    grey8 = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    assert np.array_equal(to_uint8(grey8)[..., 2], grey8)  # 8-bit grey passes unchanged


def test_to_uint8_ignores_saturated_pixels_in_the_stretch() -> None:
    raw = np.full((64, 64), 3000, np.uint16)
    raw[:32] = 5000
    raw[:4, :4] = 65535  # a saturated Moon must not set the top of the stretch
    out = to_uint8(raw, (0.0, 100.0))
    assert out[10, 10, 0] == 255 and out[40, 40, 0] == 0


def test_bad_arrays_raise_a_specific_error() -> None:
    with pytest.raises(ImageFormatError):
        to_uint8(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageFormatError):
        to_uint8(np.zeros((32, 32, 3), bool))


# --------------------------------------------------------------------------- the thesis steps


def test_output_dtype_shape_range_and_black_outside() -> None:
    img, _ = _sky(7, 96)
    res = preprocess_image(img, PreprocessConfig(size=48, dark_threshold=0))
    assert res.rejected is None and res.image is not None
    assert res.image.shape == (48, 48, 3) and res.image.dtype == np.uint8
    assert res.image[~disk_mask(48)].max() == 0
    assert res.image.max() > 200  # L stretched to the full range


def test_dark_rejection_and_threshold_zero_disables_it() -> None:
    img, _ = _sky(8, 96)
    dim = (img.astype(np.float32) * 0.05).astype(np.uint8)
    v90 = np.quantile(dim.max(axis=2)[dim.max(axis=2) > 0], 0.9)
    res = preprocess_image(dim, PreprocessConfig(size=48, dark_threshold=v90 + 5))
    assert res.image is None and res.rejected == TOO_DARK
    res = preprocess_image(dim, PreprocessConfig(size=48, dark_threshold=0))
    assert res.image is not None and res.rejected is None
    bright = preprocess_image(img, PreprocessConfig(size=48, dark_threshold=v90 + 5))
    assert bright.rejected is None


def test_lab_contrast_clips_percentiles_and_centres_ab() -> None:
    rng = np.random.default_rng(0)
    lab = np.stack(
        [rng.integers(40, 200, (64, 64)), rng.integers(100, 140, (64, 64)), np.full((64, 64), 150)],
        axis=2,
    ).astype(np.uint8)
    inside = disk_mask(64)
    out = lab_contrast(lab, inside, (0.5, 99.5), recenter_ab=True)
    L = out[..., 0][inside]
    assert 0.002 < np.mean(L == 0) < 0.012 and 0.002 < np.mean(L == 255) < 0.012
    assert abs(out[..., 1][inside].mean() - 128) < 0.6
    assert abs(out[..., 2][inside].mean() - 128) < 0.6
    # Monotone in L: clipping + stretching keeps the order of the pixels.
    order = np.argsort(lab[..., 0][inside], kind="stable")
    assert np.all(np.diff(L[order].astype(int)) >= 0)
    same = lab_contrast(lab, inside, None, recenter_ab=False)
    assert np.array_equal(same, lab)


def test_lab_contrast_gain_cap_keeps_a_flat_sky_dark() -> None:
    rng = np.random.default_rng(1)
    # A flat sky: L spans 4 levels of noise. Uncapped, the stretch blows it up to 0..255.
    lab = np.stack(
        [rng.integers(30, 34, (64, 64)), np.full((64, 64), 128), np.full((64, 64), 128)], axis=2
    ).astype(np.uint8)
    inside = disk_mask(64)
    free = lab_contrast(lab, inside, (0.5, 99.5), recenter_ab=False)
    assert np.ptp(free[..., 0][inside]) > 200
    capped = lab_contrast(lab, inside, (0.5, 99.5), recenter_ab=False, max_gain=4.0)
    assert np.ptp(capped[..., 0][inside]) <= 4 * 3 + 1


def test_median_blur_removes_stars() -> None:
    img = _disk_image(64, 100)
    stars = [(20, 30), (40, 25), (33, 44), (28, 17)]
    for y, x in stars:
        img[y, x] = 255
    circle = (31.5, 31.5, 0.95 * 32)
    kept = preprocess_image(img, dataclasses.replace(PLAIN, circle=circle, star_kernel=0))
    blurred = preprocess_image(img, dataclasses.replace(PLAIN, circle=circle, star_kernel=3))
    assert kept.image is not None and blurred.image is not None
    assert kept.image.max() > 200  # stars survive without the filter
    assert blurred.image[disk_mask(64, 0.9)].max() <= 101  # and are gone with it


# --------------------------------------------------------------------------- Moon


@pytest.mark.parametrize("seed", range(6))
def test_moon_detection_on_synthetic_sky(seed: int) -> None:
    moon = seed % 2 == 0
    img, meta = _sky(100 + seed, 96, moon=moon, morph=("single_arc", "corona", "vortex")[seed % 3])
    m = detect_moon(img, find_sky_circle(img))
    assert m.present == moon
    if moon:
        assert math.hypot(m.x - meta.moon_x, m.y - meta.moon_y) < 2.0
    else:
        assert math.isnan(m.x)


def test_masking_removes_the_saturated_blob() -> None:
    img, meta = _sky(200, 96, moon=True)
    size = 96
    keep = preprocess_image(img, dataclasses.replace(PLAIN, size=size, moon="keep"))
    mask = preprocess_image(img, dataclasses.replace(PLAIN, size=size, moon="mask"))
    assert keep.moon.present and mask.moon.present
    assert keep.image is not None and mask.image is not None
    yy, xx = np.mgrid[:size, :size]
    c = keep.circle
    k = size / round(2 * c.r)
    near = np.hypot(xx - (meta.moon_x - c.cx) * k - 47.5, yy - (meta.moon_y - c.cy) * k - 47.5)
    near = near <= 2 * meta.moon_r * k + 2
    assert (keep.image.max(axis=2)[near] >= 245).sum() >= 4
    assert (mask.image.max(axis=2)[near] >= 245).sum() == 0
    # Away from the Moon, nothing changes.
    far = ~near & disk_mask(size, 0.9) & (np.hypot(xx - 47.5, yy - 47.5) >= 0)
    far &= np.hypot(xx - (meta.moon_x - c.cx) * k - 47.5, yy - (meta.moon_y - c.cy) * k - 47.5) > 30
    assert np.array_equal(keep.image[far], mask.image[far])


# --------------------------------------------------------------------------- store


@pytest.fixture()
def dataset(tmp_path: Path):
    from aurora.data.sources import scan

    root = tmp_path / "data"
    root.mkdir()
    for i in range(5):
        img, _ = _sky(300 + i, 64, moon=i == 1)
        cv2.imwrite(str(root / f"img{i}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    dark = (_sky(310, 64)[0] * 0.03).astype(np.uint8)
    cv2.imwrite(str(root / "dark.png"), dark)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return scan(root)


CFG = PreprocessConfig(size=32)


def test_store_accounting_cache_hit_and_key(dataset, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    store = preprocess_store.build_preprocessed(dataset, CFG, cache, jobs=1, progress=False)
    assert len(store) + len(store.rejected) == dataset.n_inputs
    assert sorted(store.ids + [r.path for r in store.rejected]) == sorted(
        [r.id for r in dataset.records] + [r.path for r in dataset.rejected]
    )
    assert {r.reason for r in store.rejected} >= {TOO_DARK}
    assert store.images.shape == (len(store), 32, 32, 3) and not store.images.flags.writeable
    batch = store.float_batch([0, 1])
    assert batch.dtype == np.float32 and batch.shape == (2, 32, 32, 3) and batch.max() <= 1.0
    assert store.moon.shape == (len(store),) and store.moon.sum() == 1
    assert store.circle.shape == (len(store), 3)

    def boom(*a, **k):
        raise AssertionError("the second call must not preprocess anything")

    monkeypatch.setattr(preprocess_store, "_process", boom)
    monkeypatch.setattr(preprocess_store, "read_image", boom)
    again = preprocess_store.build_preprocessed(dataset, CFG, cache, jobs=1, progress=False)
    assert again.key == store.key and np.array_equal(again.images, store.images)
    other = preprocess_store.store_key(dataset, dataclasses.replace(CFG, star_kernel=5))
    assert other != store.key
    assert preprocess_store.store_key(dataset, dataclasses.replace(CFG)) == store.key


def test_store_parallel_matches_serial(dataset, tmp_path: Path) -> None:
    a = preprocess_store.build_preprocessed(dataset, CFG, tmp_path / "a", jobs=1, progress=False)
    b = preprocess_store.build_preprocessed(dataset, CFG, tmp_path / "b", jobs=2, progress=False)
    assert a.ids == b.ids and np.array_equal(a.images, b.images)


def test_crash_mid_write_leaves_no_valid_entry(dataset, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    calls = {"n": 0}
    real = preprocess_store._process

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess_store, "_process", flaky)
    with pytest.raises(KeyboardInterrupt):
        preprocess_store.build_preprocessed(dataset, CFG, cache, jobs=1, progress=False)
    key = preprocess_store.store_key(dataset, CFG)
    assert not Cache(cache).exists("preprocess", key)
    assert not Cache(cache).path("preprocess", key).exists()
    with pytest.raises(FileNotFoundError):
        preprocess_store.open_store(cache, key)
    monkeypatch.setattr(preprocess_store, "_process", real)
    store = preprocess_store.build_preprocessed(dataset, CFG, cache, jobs=1, progress=False)
    assert len(store) + len(store.rejected) == dataset.n_inputs


def test_yaml_configs_instantiate() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "preprocess"
    full = instantiate(OmegaConf.load(conf / "full.yaml"))
    minimal = instantiate(OmegaConf.load(conf / "minimal.yaml"))
    assert isinstance(full, PreprocessConfig) and full.recenter_ab and full.lab_stretch
    assert not minimal.recenter_ab and minimal.lab_stretch and minimal.star_kernel == 3
    assert full.l_percentiles == (0.5, 99.5) and hash(full) == hash(PreprocessConfig())
