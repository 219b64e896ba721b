"""Tests of the preprocessing chain and its on-disk store."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT

from aurora.data.synth import render_sky
from aurora.infra.cache import Cache
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
from aurora.preprocess import store as preprocess_store

DATA = ROOT.parent / "shared" / "data"
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
    # The reason is the fixed word rejected.csv groups by; the why goes in the detail.
    assert res.image is None and res.rejected == "no sky circle"
    assert res.detail == "no sky region brighter than the black level (100)"


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
    assert store.glare.shape == store.twilight.shape == (len(store),)
    assert store.glare_xyr.shape == (len(store), 3)
    assert not store.glare.any() and not store.twilight.any()  # night skies, Moon inside

    def boom(*a, **k):
        raise AssertionError("the second call must not preprocess anything")

    monkeypatch.setattr(preprocess_store, "_process", boom)
    monkeypatch.setattr(preprocess_store, "read_image", boom)
    again = preprocess_store.build_preprocessed(dataset, CFG, cache, jobs=1, progress=False)
    assert again.key == store.key and np.array_equal(again.images, store.images)
    other = preprocess_store.store_key(dataset, dataclasses.replace(CFG, star_kernel=5))
    assert other != store.key
    assert preprocess_store.store_key(dataset, dataclasses.replace(CFG)) == store.key


def test_store_key_follows_the_chain_version(dataset, monkeypatch) -> None:
    # A change of what the chain outputs bumps STORE_VERSION, so no stale entry is reused.
    before = preprocess_store.store_key(dataset, CFG)
    monkeypatch.setattr(preprocess_store, "STORE_VERSION", "preprocess-test")
    assert preprocess_store.store_key(dataset, CFG) != before
    assert preprocess_store.store_key(dataset, dataclasses.replace(CFG, twilight_level=0)) != (
        preprocess_store.store_key(dataset, CFG)
    )


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

    conf = ROOT / "conf" / "preprocess"
    full = instantiate(OmegaConf.load(conf / "full.yaml"))
    minimal = instantiate(OmegaConf.load(conf / "minimal.yaml"))
    assert isinstance(full, PreprocessConfig) and full.recenter_ab and full.lab_stretch
    assert not minimal.recenter_ab and minimal.lab_stretch and minimal.star_kernel == 3
    assert full.l_percentiles == (0.5, 99.5) and hash(full) == hash(PreprocessConfig())


# --------------------------------------------------------------------------- Moon vs aurora
#
# Tiny skies (96 px, the sky circle inscribed) with known content. The chain decides on a
# 256 px work square, so a 3 px disc here is an 8 px disc there.

S96 = 96
CIRCLE96 = (47.5, 47.5, 48.0)
KEEP = PreprocessConfig(size=64, star_kernel=0, dark_threshold=0, moon="keep", circle=CIRCLE96)
YX = np.mgrid[:S96, :S96].astype(np.float32)


def _render(light: np.ndarray, colour: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """(S96, S96) brightness (clipped at 255: the sensor saturates) -> uint8 RGB sky disk."""
    img = np.clip(light[..., None] * np.asarray(colour, np.float32), 0, 255)
    img[~disk_mask(S96)] = 0
    return (img + 0.5).astype(np.uint8)


def _moon_light(
    x: float, y: float, r: float = 3.0, halo: float = 120.0, core: float = 2000.0
) -> np.ndarray:
    """A point source above saturation: a hard disc and a glow falling off the same way in
    every direction."""
    d = np.hypot(YX[1] - x, YX[0] - y)
    return np.where(d <= r, core, halo * np.exp(-(d - r) / 3.0))


def _blob(x: float, y: float, sx: float, sy: float, peak: float) -> np.ndarray:
    """A smooth auroral bump (Gaussian), clipped by the sensor where it exceeds 255."""
    return peak * np.exp(-0.5 * (((YX[1] - x) / sx) ** 2 + ((YX[0] - y) / sy) ** 2))


def test_round_saturated_disc_with_symmetric_glow_is_the_moon() -> None:
    res = preprocess_image(_render(40 + _moon_light(60, 38)), KEEP)
    assert res.moon.present
    assert math.hypot(res.moon.x - 60, res.moon.y - 38) < 1.0
    assert not res.glare.present and not res.twilight


def test_compact_elongated_bright_blob_is_not_the_moon() -> None:
    # A bright auroral form 3:1, saturated in its middle: compact but not round.
    res = preprocess_image(_render(40 + _blob(50, 45, 7.5, 2.5, 500)), KEEP)
    assert not res.moon.present


def test_round_hot_spot_on_an_arc_is_not_the_moon() -> None:
    # A round saturated spot on a bright arc: its glow runs along the arc, not all round.
    arc = 150 * np.exp(-0.5 * ((YX[0] - 48) / 3.0) ** 2)
    res = preprocess_image(_render(40 + arc + _blob(44, 48, 3.5, 3.5, 600)), KEEP)
    assert not res.moon.present


def test_soft_round_aurora_patch_is_not_the_moon() -> None:
    # Round, saturated, but a broad smooth bump barely above saturation: its half-brightness
    # region is far larger than its saturated top and the two are not a spot with a glow.
    res = preprocess_image(_render(30 + _blob(50, 50, 10.0, 10.0, 300)), KEEP)
    assert not res.moon.present


def test_green_saturated_spot_is_not_the_moon_on_a_colour_camera() -> None:
    # The same light as the Moon test, but only the green channel saturates (557.7 nm aurora).
    light = 40 + _moon_light(60, 38, core=400)  # green 400 (saturated), red 140, blue 120
    assert not preprocess_image(_render(light, (0.35, 1.0, 0.3)), KEEP).moon.present
    assert preprocess_image(_render(light), KEEP).moon.present


def test_moon_on_the_horizon_is_not_judged_as_the_moon() -> None:
    # Too near the horizon to see its glow all round (a synthetic caption's letter, or a Moon
    # setting): not the Moon; in a dark sky not glare either.
    res = preprocess_image(_render(40 + _moon_light(92, 48, r=2.5)), KEEP)
    assert not res.moon.present and not res.glare.present


# --------------------------------------------------------------------------- glare, twilight


def test_glare_at_the_edge_of_a_bright_sky_is_flagged_and_masked() -> None:
    # A low Moon over the horizon in a moonlit sky: white and saturated at the rim, the whole
    # sky bright around it.
    d = np.hypot(YX[1] - 10, YX[0] - 50)
    light = 215 + 200 * np.exp(-d / 10.0) + _blob(60, 50, 5.0, 1.5, 20)  # plus a faint form
    raw = _render(light)
    res = preprocess_image(raw, KEEP)
    assert res.glare.present and res.twilight and not res.moon.present
    assert res.glare.x < 20 and abs(res.glare.y - 50) < 5
    masked = preprocess_image(raw, dataclasses.replace(KEEP, moon="mask"))
    assert res.image is not None and masked.image is not None
    # Output pixels 0..63 span the 96 px frame: the glare core is at (6.7, 33.3).
    core = np.hypot(YX[1][:64, :64] - 6.7, YX[0][:64, :64] - 33.3) < 4
    assert res.image.max(axis=2)[core].min() >= 245  # kept: saturated
    assert masked.image.max(axis=2)[core].max() < 245  # masked: replaced by the sky around


def test_saturated_aurora_on_the_horizon_of_a_dark_sky_is_not_glare() -> None:
    # The same saturated source at the rim, but in a dark sky (Yellow River Station's brightest
    # arcs saturate on the horizon): not glare, and never masked.
    d = np.hypot(YX[1] - 10, YX[0] - 50)
    raw = _render(30 + 400 * np.exp(-d / 6.0))
    res = preprocess_image(raw, KEEP)
    assert not res.glare.present and not res.twilight
    masked = preprocess_image(raw, dataclasses.replace(KEEP, moon="mask"))
    assert masked.image is not None and res.image is not None
    assert np.array_equal(masked.image, res.image)


def test_uniformly_bright_sky_is_not_stretched_to_white() -> None:
    # Twilight: a bright, nearly uniform sky with a dark obstruction on the horizon (which used
    # to set the bottom of the L stretch and push the whole sky to white).
    rng = np.random.default_rng(0)
    light = 185 + rng.normal(0, 2.0, (S96, S96))
    light[(YX[1] > 88) & (np.abs(YX[0] - 48) < 12)] = 20
    raw = _render(light, (0.75, 0.8, 1.0))
    cfg = dataclasses.replace(KEEP, moon="mask")
    res = preprocess_image(raw, cfg)
    assert res.twilight and res.image is not None
    sky = res.image[disk_mask(64, 0.8)].max(axis=1)
    assert np.median(sky) < 215  # as bright as recorded (about 185), not white
    old = preprocess_image(raw, dataclasses.replace(cfg, twilight_level=0))  # the test off
    assert not old.twilight and old.image is not None
    assert np.median(old.image[disk_mask(64, 0.8)].max(axis=1)) > 235


def test_night_sky_is_not_twilight() -> None:
    img, _ = _sky(11, 96)
    assert not preprocess_image(img, PreprocessConfig(size=32)).twilight


# --------------------------------------------------------------------------- grey input


@pytest.mark.parametrize(
    "extra",
    [{}, {"background": 0.3, "max_gain": 6.0, "moon_light": True}],
    ids=["full", "demo"],
)
def test_grey_image_gives_neutral_ab_and_grey_output(extra: dict) -> None:
    grey = preprocess_image(_render(40 + _moon_light(60, 38))[..., 0], KEEP).image
    assert grey is not None
    arc = 150 * np.exp(-0.5 * ((YX[0] - 40) / 3.0) ** 2)
    raw = _render(30 + arc + _blob(30, 60, 6, 3, 200))[..., 0]  # (H, W) uint8, like a BMP
    cfg = dataclasses.replace(KEEP, moon="mask", **extra)
    res = preprocess_image(raw, cfg)
    assert res.image is not None
    img = res.image
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    assert (lab[..., 1] == 128).all() and (lab[..., 2] == 128).all()
    # The same grey stored as three equal channels gives the same output.
    again = preprocess_image(np.repeat(raw[..., None], 3, axis=2), cfg).image
    assert again is not None and np.array_equal(again, img)


# --------------------------------------------------------------------------- hole filling


def test_moon_masked_near_the_rim_leaves_no_bright_wedge() -> None:
    # A Moon near the horizon with the horizon band bright on one side of it (THEMIS RANK):
    # the fill is a blend of the sky around the hole, never brighter than that sky.
    from aurora.preprocess import fill_hole, mask_moon

    sq = _render(40 + _moon_light(40, 80, r=3.0, halo=60))
    rho = np.hypot(YX[1] - 47.5, YX[0] - 47.5) / 48
    band = (rho > 0.8) & (YX[1] < 40)
    sq[band] = np.maximum(sq[band], 150)  # bright horizon band left of the Moon
    out = mask_moon(sq, 40, 80, 3.0)
    changed = (out != sq).any(axis=2)
    assert changed[80, 40] and not changed[20, 60]
    ring = (cv2.dilate(changed.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~changed
    ring &= disk_mask(S96)
    assert out[changed].max() <= sq[ring].max()
    assert out[changed].min() >= sq[ring].min()
    # A hole between a bright and a dark half is filled with values in between, smoothly.
    half = np.zeros((S96, S96, 3), np.uint8)
    half[disk_mask(S96)] = 50
    half[:, :48][disk_mask(S96)[:, :48]] = 200
    hole = np.hypot(YX[1] - 48, YX[0] - 48) < 10
    filled = fill_hole(half, hole)
    assert filled[hole].min() >= 50 and filled[hole].max() <= 200
    row = filled[48, 38:59, 0].astype(int)
    assert np.all(np.diff(row) <= 0)  # monotone from the bright side to the dark side


# --------------------------------------------------------------------------- real frames


def _real(rel: str) -> np.ndarray:
    raw = cv2.imread(str(DATA / rel), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB) if raw.ndim == 3 else raw


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_real_themis_moon_is_found_and_masked_without_a_wedge() -> None:
    raw = _real("themis_asi_samples/rank20200104000000.pgm")
    keep = preprocess_image(raw, PreprocessConfig(size=96, moon="keep"))
    mask = preprocess_image(raw, PreprocessConfig(size=96))
    m = keep.moon
    assert m.present and math.hypot(m.x - 126, m.y - 227) < 4 and 3 < m.r < 9
    assert not keep.glare.present and not keep.twilight
    assert keep.image is not None and mask.image is not None
    n = round(2 * keep.circle.r)  # side of the circle's square, scaled to the 96 px output
    x0, y0 = round(keep.circle.cx - (n - 1) / 2), round(keep.circle.cy - (n - 1) / 2)
    k = 96 / n
    core = np.hypot(YX[1] - (m.x - x0) * k, YX[0] - (m.y - y0) * k) < 1.5 * m.r * k + 1
    assert keep.image.max(axis=2)[core].max() >= 245
    assert mask.image.max(axis=2)[core].max() < 200  # no white left where the Moon was


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_real_kho_edge_glare_is_flagged() -> None:
    raw = _real("kho_sony_samples/LYR-Sony-211121_170751.jpg")
    res = preprocess_image(raw, PreprocessConfig(size=96, moon="keep"))
    assert res.glare.present and not res.moon.present and res.twilight
    h, w = raw.shape[:2]
    assert res.glare.x < 0.2 * w and 0.4 * h < res.glare.y < 0.65 * h


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_real_nipr_twilight_is_recorded_and_not_white() -> None:
    res = preprocess_image(_real("nipr_lyr_allsky_2014/20140218171340.jpg"), PreprocessConfig())
    assert res.twilight and res.image is not None
    assert np.median(res.image[disk_mask(224, 0.9)].max(axis=1)) < 200  # was 220: white
    night = preprocess_image(_real("nipr_lyr_allsky_2014/20140221192040.jpg"), PreprocessConfig())
    assert not night.twilight and not night.glare.present and not night.moon.present


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data absent")
def test_real_samples_raise_no_false_moon_or_glare() -> None:
    # Night frames of the sample folders (aurora, stars, clouds): neither Moon nor glare.
    for rel in [
        "kho_sony_samples/LYR-Sony-111220_200933.jpg",
        "kho_sony_samples/LYR-Sony-271119_224936-ql_PIL_default.jpg",
        "themis_asi_samples/gako20161013123527.pgm",
        "nipr_lyr_allsky_2014/20140223030640.jpg",
        "nipr_lyr_allsky_2014/20140224020010.jpg",
    ]:
        res = preprocess_image(_real(rel), PreprocessConfig(size=32))
        assert not res.moon.present and not res.glare.present and not res.twilight, rel
