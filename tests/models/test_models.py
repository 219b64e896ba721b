"""Augmentations, NT-Xent, and the two feature modules (shapes, errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aurora.models import (
    AugmentConfig,
    AutoEncoder,
    BackboneError,
    SimCLR,
    SkyAugment,
    nt_xent,
    pair_similarities,
    sky_mask,
)
from aurora.models.base import warmup_cosine


def _nt_xent_reference(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """Loop-by-loop NT-Xent straight from the SimCLR paper."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


@pytest.mark.parametrize("t", [0.07, 0.5, 1.0])
def test_nt_xent_matches_reference(t: float) -> None:
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), t).item()
    assert got == pytest.approx(_nt_xent_reference(z1, z2, t), rel=1e-5)


def test_nt_xent_minimal_for_aligned_pairs() -> None:
    b, t = 4, 0.2
    z = torch.eye(b, 8)  # orthogonal images, identical views
    aligned = nt_xent(z, z.clone(), t).item()
    # Known answer: positive similarity 1, all 2B-2 negatives 0.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * b - 2))
    assert aligned == pytest.approx(expected, rel=1e-6)
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = z + 0.5 * torch.randn(z.shape, generator=rng)
        assert nt_xent(z, other, t).item() > aligned
    assert nt_xent(z, z.roll(1, dims=0), t).item() > aligned


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.ones(2, 3), torch.ones(2, 3), 0.0)


def test_pair_similarities_known_answer() -> None:
    z = torch.eye(3, 4)
    pos, neg = pair_similarities(z, z)
    assert pos.item() == pytest.approx(1.0)
    assert neg.item() == pytest.approx(0.0)
    pos, neg = pair_similarities(z, -z)
    assert pos.item() == pytest.approx(-1.0)


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def _sky_batch(b: int = 4, s: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 3, s, s, generator=g) * 0.8 + 0.1
    return x * sky_mask(s, s)


def test_augment_views_differ_and_stay_in_sky_circle() -> None:
    x = _sky_batch()
    aug = SkyAugment(blur_p=0.5, gray_p=0.0)
    g = torch.Generator().manual_seed(3)
    v1, v2 = aug(x, g), aug(x, g)
    outside = ~sky_mask(48, 48)
    for v in (v1, v2):
        assert v.shape == x.shape
        assert torch.all(v[:, :, outside] == 0)
        assert v.min() >= 0 and v.max() <= 1
    per_image = (v1 - v2).abs().flatten(1).mean(1)
    assert torch.all(per_image > 1e-3)
    # Same seed, same views.
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(aug(x, g1), aug(x, g2))


def test_rotation_about_zenith_keeps_radial_sky() -> None:
    s = 64
    ys, xs = torch.meshgrid(
        torch.arange(s) + 0.5 - s / 2, torch.arange(s) + 0.5 - s / 2, indexing="ij"
    )
    radial = (1 - (ys**2 + xs**2).sqrt() / (s / 2)).clamp(min=0)
    x = (radial * sky_mask(s, s))[None, None].repeat(2, 3, 1, 1)
    aug = SkyAugment(crop_p=0, brightness_p=0, contrast_p=0, hflip_p=0.5, rotation_p=1.0)
    v = aug(x, torch.Generator().manual_seed(0))
    inner = sky_mask(s, s) & ((ys**2 + xs**2).sqrt() < s / 2 - 2)
    assert (v - x)[:, :, inner].abs().max() < 0.05


def test_glow_is_colourless_smooth_and_inside_the_sky() -> None:
    s = 48
    x = torch.zeros(6, 3, s, s)  # a black sky: whatever appears is the glow
    only_glow = dict(crop_p=0, brightness_p=0, contrast_p=0, hflip_p=0, rotation_p=0)
    v = SkyAugment(glow_p=1.0, glow=0.5, **only_glow)(x, torch.Generator().manual_seed(1))
    inside = sky_mask(s, s)
    assert torch.all(v[:, :, ~inside] == 0)
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])  # no colour
    assert v.amax(dim=(1, 2, 3)).min() > 0.0 and v.max() <= 0.5 + 0.5 + 1e-6
    # Smooth: neighbouring pixels inside the sky differ far less than the glow itself.
    inner = inside[:, 1:] & inside[:, :-1]
    step = (v[:, 0, :, 1:] - v[:, 0, :, :-1]).abs()[:, inner].amax(dim=1)
    assert torch.all(step < 0.3 * v.amax(dim=(1, 2, 3)) + 1e-6)
    off = SkyAugment(glow_p=0.0, **only_glow)(x, torch.Generator().manual_seed(1))
    assert torch.all(off == 0)
    noisy = SkyAugment(noise_p=1.0, noise=0.1, **only_glow)(
        x + 0.5 * inside, torch.Generator().manual_seed(2)
    )
    assert (noisy - 0.5)[:, :, inside].std() > 0.01


def test_channel_gains_scale_each_channel_by_one_factor_per_image() -> None:
    s = 32
    inside = sky_mask(s, s)
    x = torch.rand(5, 3, s, s, generator=torch.Generator().manual_seed(0)) * 0.5 * inside
    only = dict(crop_p=0, brightness_p=0, contrast_p=0, hflip_p=0, rotation_p=0)
    v = SkyAugment(channel_p=1.0, channel=0.4, **only)(x, torch.Generator().manual_seed(3))
    ratio = v[:, :, inside] / x[:, :, inside].clamp(min=1e-6)
    lit = x[:, :, inside] > 0.05
    gains = torch.stack(
        [torch.stack([ratio[i, c][lit[i, c]].median() for c in range(3)]) for i in range(5)]
    )  # (5, 3): one factor per image and channel
    for i in range(5):
        for c in range(3):
            assert torch.allclose(ratio[i, c][lit[i, c]], gains[i, c], atol=1e-4)
    assert torch.all((gains >= 0.6 - 1e-6) & (gains <= 1.4 + 1e-6))
    # The three channels of an image get different factors (a change of hue, not brightness).
    assert torch.all(gains.std(dim=1) > 1e-3)
    off = SkyAugment(channel_p=0.0, **only)(x, torch.Generator().manual_seed(3))
    assert torch.allclose(off, x, atol=1e-5)  # identity warp: equal up to rounding
    with pytest.raises(ValueError, match="channel"):
        SkyAugment(channel=1.5)


def test_augment_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="rotation_p"):
        SkyAugment(rotation_p=1.5)
    with pytest.raises(ValueError, match="unknown augmentation"):
        SkyAugment(solarize=0.2)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.5, 1.5))


def test_autoencoder_shapes_and_masked_reconstruction() -> None:
    ae = AutoEncoder(image_size=32, depth=3, width=8, latent_dim=16).eval()
    x = _sky_batch(3, 32)
    with torch.no_grad():
        z = ae.encode(x)
        r = ae(x)
    assert z.shape == (3, 16) and ae.feature_dim == 16
    assert r.shape == x.shape
    assert torch.all(r[:, :, ~sky_mask(32, 32)] == 0)
    with pytest.raises(ValueError, match="divisible"):
        AutoEncoder(image_size=36, depth=3)


def test_simclr_encode_is_backbone_not_projection() -> None:
    m = SimCLR(image_size=32, backbone="test_resnet", proj_hidden_dim=32, proj_dim=8).eval()
    x = _sky_batch(3, 32)
    with torch.no_grad():
        h = m.encode(x)
        z = m(x)
    assert h.shape == (3, 96) and m.feature_dim == 96
    assert z.shape == (3, 8)
    assert torch.allclose(z, m.projector(h))


def test_simclr_backbone_errors_name_the_model(tmp_path) -> None:
    with pytest.raises(BackboneError, match="not_a_net"):
        SimCLR(backbone="not_a_net")
    missing = tmp_path / "resnet10t.safetensors"
    with pytest.raises(BackboneError, match="resnet10t.*pretrained_file"):
        SimCLR(backbone="resnet10t", pretrained=True, pretrained_file=str(missing))
