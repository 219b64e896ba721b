"""Views that break the shortcuts of real skies (issue 28): rotation, crops inside the disc,
per-view standardisation, gamma and offset keep the sky disc and its mask."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT

from aurora.infra.errors import SettingsError
from aurora.models.augment import SkyAugment, sky_mask

S = 48
NO_PHOTO = {"brightness_p": 0.0, "contrast_p": 0.0}
NO_GEOMETRY = {"rotation_p": 0.0, "hflip_p": 0.0, "vflip_p": 0.0, "crop_p": 0.0}


def _disc(n: int = 6, value: float = 1.0) -> torch.Tensor:
    """(n, 3, S, S): ``value`` inside the inscribed disc, 0 outside."""
    return sky_mask(S, S).float().expand(n, 3, S, S) * value


def _sky(n: int = 6, seed: int = 0) -> torch.Tensor:
    """(n, 3, S, S) grey random skies in [0.2, 0.6] inside the disc."""
    g = torch.Generator().manual_seed(seed)
    grey = 0.2 + 0.4 * torch.rand(n, 1, S, S, generator=g)
    return (grey * sky_mask(S, S).float()).expand(n, 3, S, S).contiguous()


def _interior(margin: float = 2.0) -> torch.Tensor:
    """(S, S) bool: pixels at least ``margin`` px inside the disc's rim."""
    ys = torch.arange(S, dtype=torch.float32) + 0.5 - S / 2
    r = torch.sqrt(ys[:, None] ** 2 + ys[None, :] ** 2)
    return r <= S / 2 - margin


def test_a_rotation_by_any_angle_keeps_the_disc() -> None:
    aug = SkyAugment(
        rotation_p=1.0, rotation_degrees=180.0, hflip_p=0.5, vflip_p=0.5, crop_p=0.0, **NO_PHOTO
    )
    out = aug(_disc(16), torch.Generator().manual_seed(1))
    mask = sky_mask(S, S)
    assert torch.all(out[:, :, ~mask] == 0)
    # Inside, away from the rim's interpolation, the lit disc stays lit everywhere.
    assert torch.allclose(out[:, :, _interior()], torch.ones(1), atol=1e-5)


@pytest.mark.parametrize("in_disc", [False, True])
def test_crops_inside_the_disc_show_no_black(in_disc: bool) -> None:
    aug = SkyAugment(
        rotation_p=1.0, crop_p=1.0, crop_scale=[0.1, 1.0], crop_in_disc=in_disc, **NO_PHOTO
    )
    out = aug(_disc(64), torch.Generator().manual_seed(2))
    dark = (out[:, 0, _interior()] < 0.5).float().mean(dim=1)  # (64,) share per view
    if in_disc:
        assert float(dark.max()) == 0.0
    else:  # the plain crop reaches outside the sky: the test can tell the two apart
        assert float(dark.max()) > 0.05


def test_photometric_changes_keep_the_mask_and_range() -> None:
    aug = SkyAugment(
        **NO_GEOMETRY,
        brightness_p=1.0,
        brightness=0.9,
        contrast_p=1.0,
        contrast=0.9,
        standardize_p=1.0,
        gamma_p=1.0,
        gamma=[0.3, 3.0],
        offset_p=1.0,
        offset=0.5,
        blur_p=1.0,
        noise_p=1.0,
    )
    out = aug(_sky(16), torch.Generator().manual_seed(3))
    mask = sky_mask(S, S)
    assert torch.all(out[:, :, ~mask] == 0)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out[:, :, mask].std()) > 0.01  # the sky is still there


def test_standardised_views_have_the_set_level_whatever_the_frame() -> None:
    x = torch.cat([_sky(4) * 0.3, _sky(4, seed=1)])  # dim and bright frames
    aug = SkyAugment(
        **NO_GEOMETRY, **NO_PHOTO, standardize_p=1.0, standardize_mean=0.4, standardize_std=0.1
    )
    out = aug(x, torch.Generator().manual_seed(4))
    inside = out[:, :, sky_mask(S, S)]  # (8, 3, P)
    torch.testing.assert_close(inside.mean(dim=(1, 2)), torch.full((8,), 0.4), atol=1e-4, rtol=0)
    torch.testing.assert_close(inside.std(dim=(1, 2)), torch.full((8,), 0.1), atol=2e-3, rtol=0)
    # An affine change of each frame: the pixels keep their order.
    a, b = x[0, 0][sky_mask(S, S)], out[0, 0][sky_mask(S, S)]
    assert torch.equal(torch.argsort(a), torch.argsort(b))


def test_gamma_keeps_the_order_of_the_pixels_and_changes_the_level() -> None:
    x = _sky(4)
    aug = SkyAugment(**NO_GEOMETRY, **NO_PHOTO, gamma_p=1.0, gamma=[2.0, 3.0])
    out = aug(x, torch.Generator().manual_seed(5))
    mask = sky_mask(S, S)
    assert torch.all(out[:, :, mask] < x[:, :, mask])  # g > 1 darkens values in (0, 1)
    assert torch.equal(torch.argsort(x[1, 0][mask]), torch.argsort(out[1, 0][mask]))


#: The commit before the options of issue 28 (the views the synthetic demo was measured with).
BEFORE = "68f6069"


def _old_augment() -> type:
    """SkyAugment as it was at :data:`BEFORE` (skip without git history)."""
    import subprocess
    import types

    root = ROOT
    try:
        src = subprocess.run(
            ["git", "show", f"{BEFORE}:aurora/models/augment.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git history with {BEFORE} is not available")
    import sys

    # The module paths of then that have moved since (issue 29: aurora.errors -> aurora.infra).
    src = src.replace("from aurora.errors import", "from aurora.infra.errors import")
    module = types.ModuleType("augment_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(src, "augment_before.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.SkyAugment


@pytest.mark.parametrize(
    "params",
    [
        {},
        {
            "blur_p": 0.3,
            "vflip_p": 0.5,
            "glow_p": 0.8,
            "noise_p": 0.5,
            "channel_p": 0.8,
            "gray_p": 0.5,
            "crop_scale": [0.7, 1.0],
        },
    ],
)
def test_defaults_draw_the_views_of_before(params: dict) -> None:
    """With the new options off (the default), the views are those of before, bit for bit:
    the synthetic demo's figures cannot move."""
    old_cls = _old_augment()
    x = torch.rand(8, 3, S, S, generator=torch.Generator().manual_seed(6)) * sky_mask(S, S)
    old = old_cls(**params)(x, torch.Generator().manual_seed(7))
    new = SkyAugment(**params)(x, torch.Generator().manual_seed(7))
    assert torch.equal(old, new)
    moved = SkyAugment(**params, gamma_p=0.5)(x, torch.Generator().manual_seed(7))
    assert not torch.equal(old, moved)


@pytest.mark.parametrize(
    "bad",
    [{"gamma": [0.0, 2.0]}, {"offset": 1.5}, {"standardize_std": 0.0}, {"gamma_p": 2.0}],
)
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(SettingsError):
        SkyAugment(**bad)
