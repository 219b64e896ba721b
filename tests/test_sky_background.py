"""Sky-background and moonlight subtraction (opt-in steps beyond the thesis chain)."""

from __future__ import annotations

import numpy as np

from aurora.preprocess import _disk, subtract_background, subtract_moonlight

S = 96


def _sky(glow: np.ndarray) -> np.ndarray:
    """A square sky: a smooth glow plus one thin bright arc across the zenith."""
    img = np.repeat(glow[..., None], 3, axis=2).astype(np.float32)
    yy = np.arange(S)[:, None]
    img[
        (np.abs(yy - S // 2) <= 1) & (np.arange(S)[None, :] > 10) & (np.arange(S)[None, :] < 86)
    ] += 120
    img[~_disk(S)] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def test_background_removes_smooth_gradient_and_keeps_the_arc() -> None:
    yy, xx = np.mgrid[:S, :S]
    glow = 30 + 60 * xx / S  # smooth brightening towards one side (moonlit or town-lit sky)
    img = _sky(glow)
    out = subtract_background(img, 0.3)
    inner = _disk(S, 0.8)
    off_arc = inner & (np.abs(yy - S // 2) > 4)
    # The gradient (60 grey levels across the image) is gone off the arc ...
    assert np.ptp(out[off_arc, 1]) < 15
    # ... while the arc still stands ~120 levels above its surroundings.
    on_arc = inner & (np.abs(yy - S // 2) <= 1)
    assert out[on_arc, 1].mean() > 90
    assert (out[~_disk(S)] == 0).all()


def test_moonlight_removes_glow_symmetric_about_the_moon() -> None:
    yy, xx = np.mgrid[:S, :S]
    mx, my = 30.0, 70.0
    d = np.hypot(xx - mx, yy - my)
    glow = 20 + 100 * np.exp(-d / 15)  # scattered light falling off with distance to the Moon
    img = _sky(glow)
    out = subtract_moonlight(img, mx, my)
    ring = _disk(S, 0.8) & (d > 8) & (d < 25) & (np.abs(yy - S // 2) > 4)
    before = img[ring, 1].astype(float).mean() - 20
    after = out[ring, 1].astype(float).mean() - 20
    assert before > 30 and after < 0.3 * before  # most of the excess near the Moon is gone
    on_arc = _disk(S, 0.8) & (np.abs(yy - S // 2) <= 1) & (np.abs(xx - 70) < 10)
    assert out[on_arc, 1].astype(float).mean() > 100  # aurora far from the Moon survives
