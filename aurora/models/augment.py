"""Batched, on-device augmentations for all-sky images.

All geometric changes (rotation about the zenith, flips, random resized crop) are folded into
one affine warp per image and applied with a single ``grid_sample`` over the batch, so a batch
of views costs one kernel launch on the GPU. Random parameters are drawn on the CPU from an
explicit ``torch.Generator`` (a few numbers per image), which makes views reproducible from a
seed and independent of the device and of the global RNG (needed for exact resumption).
Every view is re-masked to the inscribed sky circle, so nothing outside the circle is ever lit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aurora.infra.errors import SettingsError


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the all-sky augmentations.

    Attributes:
        rotation_p: probability of a random rotation about the zenith (image centre).
        rotation_degrees: maximum absolute angle; 180 means any azimuth.
        hflip_p: probability of a left-right flip.
        vflip_p: probability of an up-down flip.
        crop_p: probability of a random resized crop.
        crop_scale: range of the crop's area as a fraction of the image.
        crop_ratio: range of the crop's aspect ratio (width / height).
        brightness_p: probability of multiplying by a random brightness factor.
        brightness: factor drawn from [1 - brightness, 1 + brightness].
        contrast_p: probability of scaling the deviation from the sky mean.
        contrast: factor drawn from [1 - contrast, 1 + contrast].
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's sigma, as a fraction of the image side.
        channel_p: probability of multiplying each colour channel by its own random factor
            (a shift of hue and saturation: the red/green ratio of an aurora varies from frame
            to frame, so without it the network can tell frames apart by colour alone).
        channel: each channel's factor drawn from [1 - channel, 1 + channel].
        gray_p: probability of dropping colour (off here; conf/model/simclr.yaml turns it and
            the channel gains on for morphology).
        glow_p: probability of adding a smooth, colourless sky glow: light falling off with
            the distance to a random point (what is left of moonlight, twilight or town light)
            plus a brightening towards the horizon, so features learn to ignore it.
        glow: peak brightness of the glow, drawn from [0, glow] (images are in [0, 1]).
        noise_p: probability of adding Gaussian pixel noise (sensor noise, residual stars).
        noise: its standard deviation, drawn from [0, noise].
        crop_in_disc: keep each crop's circle inside the sky disc (its centre drawn within
            ``1 - half side`` of the zenith), so no view shows the black outside the sky.
        standardize_p: probability of setting the view's mean and standard deviation inside
            the sky disc to ``standardize_mean`` and ``standardize_std`` (before the other
            photometric changes, which then start from the same level in both views): the
            frame's brightness and contrast no longer tell two frames apart.
        standardize_mean: the mean grey level of a standardised view, in [0, 1].
        standardize_std: its standard deviation inside the disc, > 0.
        gamma_p: probability of a gamma change ``x ** g``.
        gamma: range of ``g``, drawn log-uniformly.
        offset_p: probability of adding a constant to the sky (a dark-level change).
        offset: the constant drawn from [-offset, offset].
    """

    rotation_p: float = 1.0
    rotation_degrees: float = 180.0
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    crop_p: float = 0.8
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.333)
    brightness_p: float = 0.8
    brightness: float = 0.3
    contrast_p: float = 0.8
    contrast: float = 0.3
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.005, 0.02)
    channel_p: float = 0.0
    channel: float = 0.3
    gray_p: float = 0.0
    glow_p: float = 0.0
    glow: float = 0.3
    noise_p: float = 0.0
    noise: float = 0.05
    # Off by default: what breaks the brightness shortcut on real skies (issue 28); the
    # synthetic demo's views are drawn exactly as before when these are off.
    crop_in_disc: bool = False
    standardize_p: float = 0.0
    standardize_mean: float = 0.4
    standardize_std: float = 0.2
    gamma_p: float = 0.0
    gamma: tuple[float, float] = (0.67, 1.5)
    offset_p: float = 0.0
    offset: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise SettingsError(f"augment.{name}", value, "a probability in [0, 1]")
        for name in ("crop_scale", "crop_ratio", "blur_sigma", "gamma"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise SettingsError(f"augment.{name}", (lo, hi), "(lo, hi) with 0 < lo <= hi")
        if self.crop_scale[1] > 1.0:
            raise SettingsError("augment.crop_scale", self.crop_scale, "an upper bound <= 1")
        for name in ("brightness", "contrast", "channel"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SettingsError(f"augment.{name}", getattr(self, name), "a value in [0, 1)")
        for name in ("glow", "noise", "offset", "standardize_mean"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"augment.{name}", getattr(self, name), "a value in [0, 1]")
        if not 0.0 < self.standardize_std <= 0.5:
            raise SettingsError(
                "augment.standardize_std", self.standardize_std, "a value in (0, 0.5]"
            )


def sky_mask(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask of the circle inscribed in an image, shape (H, W)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    return (ys[:, None] ** 2 + xs[None, :] ** 2) <= 1.0


def _bernoulli(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def _uniform(lo: float, hi: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


class SkyAugment(nn.Module):
    """Random all-sky views of a batch.

    Args:
        **params: fields of :class:`AugmentConfig` (plain values so the module's hyperparameters
            stay serialisable).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__()
        for key in ("crop_scale", "crop_ratio", "blur_sigma", "gamma"):
            if key in params:
                params[key] = tuple(params[key])
        known = {f.name for f in fields(AugmentConfig)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SettingsError(
                f"augment.{unknown[0]}",
                params[unknown[0]],
                f"unknown augmentation setting (the settings are {', '.join(sorted(known))})",
            )
        self.cfg = AugmentConfig(**params)

    def _affine(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Per-image affine maps from output to input normalised coordinates, shape (n, 2, 3)."""
        c = self.cfg
        angle = _uniform(-c.rotation_degrees, c.rotation_degrees, n, gen) * math.pi / 180
        angle = torch.where(_bernoulli(c.rotation_p, n, gen), angle, torch.zeros(n))
        sx = torch.where(_bernoulli(c.hflip_p, n, gen), -1.0, 1.0)
        sy = torch.where(_bernoulli(c.vflip_p, n, gen), -1.0, 1.0)
        # Random resized crop: area fraction and log-uniform aspect ratio, centre anywhere
        # that keeps the crop inside the image.
        area = _uniform(c.crop_scale[0], c.crop_scale[1], n, gen)
        log_r = _uniform(math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]), n, gen)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        u, v = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
        if c.crop_in_disc:
            # The crop's inscribed ellipse (the view's sky circle) inside the unit disc.
            reach = (1 - torch.maximum(cw, ch)).clamp(min=0.0) * torch.sqrt(u)
            cx, cy = reach * torch.cos(2 * math.pi * v), reach * torch.sin(2 * math.pi * v)
        else:
            cx, cy = (1 - cw) * (2 * u - 1), (1 - ch) * (2 * v - 1)
        crop = _bernoulli(c.crop_p, n, gen)
        cw, ch = torch.where(crop, cw, 1.0), torch.where(crop, ch, 1.0)
        cx, cy = torch.where(crop, cx, 0.0), torch.where(crop, cy, 0.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # input = R @ Flip @ (diag(cw, ch) @ out + (cx, cy)): the view is a crop of the
        # rotated, flipped sky.
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * sx * cw
        theta[:, 0, 1] = -sin * sy * ch
        theta[:, 1, 0] = sin * sx * cw
        theta[:, 1, 1] = cos * sy * ch
        theta[:, 0, 2] = cos * sx * cx - sin * sy * cy
        theta[:, 1, 2] = sin * sx * cx + cos * sy * cy
        return theta

    def _glow(self, n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
        """Smooth colourless glows, shape (n, 1, h, w): a source at a random point of the sky
        (falling off over a random scale) plus a random brightening towards the horizon."""
        c = self.cfg
        apply = _bernoulli(c.glow_p, n, gen)
        amp = torch.where(apply, _uniform(0.0, c.glow, n, gen), torch.zeros(n))
        rim = torch.where(apply, _uniform(0.0, c.glow, n, gen), torch.zeros(n))
        ang = _uniform(0.0, 2 * math.pi, n, gen)
        rad = torch.sqrt(_uniform(0.0, 1.0, n, gen))  # uniform over the disk
        px, py = rad * torch.cos(ang), rad * torch.sin(ang)
        scale = _uniform(0.2, 1.0, n, gen)
        ys = torch.linspace(-1.0, 1.0, h)[None, :, None]
        xs = torch.linspace(-1.0, 1.0, w)[None, None, :]
        d = torch.sqrt((xs - px[:, None, None]) ** 2 + (ys - py[:, None, None]) ** 2)
        r2 = (xs**2 + ys**2).clamp(max=1.0)
        glow = amp[:, None, None] * torch.exp(-d / scale[:, None, None])
        glow = glow + rim[:, None, None] * r2**3
        return glow[:, None]

    def _levels(self, x: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per-view standardisation inside the disc, then gamma; (n, C, H, W) -> same.

        Random numbers are drawn only for the changes that are on, so views without them are
        drawn exactly as before these options existed.
        """
        c = self.cfg
        n, ch = x.shape[:2]
        if c.standardize_p > 0:
            apply = _bernoulli(c.standardize_p, n, gen).to(x.device)[:, None, None, None]
            count = mask.sum() * ch
            mean = (x * mask).sum(dim=(1, 2, 3), keepdim=True) / count
            var = (((x - mean) * mask) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count
            std = var.sqrt().clamp(min=1e-4)
            z = ((x - mean) / std * c.standardize_std + c.standardize_mean) * mask
            x = torch.where(apply, z, x)
        if c.gamma_p > 0:
            lo, hi = math.log(c.gamma[0]), math.log(c.gamma[1])
            g = torch.exp(_uniform(lo, hi, n, gen))
            g = torch.where(_bernoulli(c.gamma_p, n, gen), g, torch.ones(n))
            x = x.clamp(0.0, 1.0) ** g.to(x)[:, None, None, None]
        return x

    def _blur(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        c = self.cfg
        n, ch, h, w = x.shape
        apply = _bernoulli(c.blur_p, n, gen)
        if not bool(apply.any()):
            return x
        sigma = _uniform(c.blur_sigma[0], c.blur_sigma[1], n, gen) * max(h, w)
        sigma = sigma.clamp(min=1e-3)
        radius = max(1, int(math.ceil(3 * float(sigma.max()))))
        radius = min(radius, (min(h, w) - 1) // 2) or 1
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
        k = k / k.sum(dim=1, keepdim=True)
        # Images that are not blurred get the identity kernel.
        ident = (t == 0).float()[None, :].expand(n, -1)
        k = torch.where(apply[:, None], k, ident).to(device=x.device, dtype=x.dtype)
        k = k.repeat_interleave(ch, dim=0)  # (n*ch, K)
        y = x.reshape(1, n * ch, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, k[:, None, None, :], groups=n * ch)
        y = F.conv2d(y, k[:, None, :, None], groups=n * ch)
        return y.reshape(n, ch, h, w)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one random view of each image.

        Args:
            x: images (B, C, H, W) in [0, 1], sky inside the inscribed circle, any device.
            generator: CPU generator for the random parameters; the global RNG when None.

        Returns:
            Views (B, C, H, W) in [0, 1], black outside the inscribed circle.
        """
        if x.ndim != 4:
            raise ValueError(f"SkyAugment expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
        gen = generator if generator is not None else torch.default_generator
        c = self.cfg
        n, ch, h, w = x.shape
        mask = sky_mask(h, w, x.device).to(x.dtype)
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

        theta = self._affine(n, gen).to(device=x.device, dtype=work.dtype)
        grid = F.affine_grid(theta, [n, ch, h, w], align_corners=False)
        out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out * mask
        out = self._levels(out, mask, gen)

        bright = torch.where(
            _bernoulli(c.brightness_p, n, gen),
            _uniform(1 - c.brightness, 1 + c.brightness, n, gen),
            torch.ones(n),
        )
        contrast = torch.where(
            _bernoulli(c.contrast_p, n, gen),
            _uniform(1 - c.contrast, 1 + c.contrast, n, gen),
            torch.ones(n),
        )
        bright = bright.to(out)[:, None, None, None]
        contrast = contrast.to(out)[:, None, None, None]
        sky_mean = (out * mask).sum(dim=(1, 2, 3), keepdim=True) / (mask.sum() * ch)
        out = (out - sky_mean) * contrast + sky_mean
        out = out * bright

        if c.offset_p > 0:
            shift = torch.where(
                _bernoulli(c.offset_p, n, gen),
                _uniform(-c.offset, c.offset, n, gen),
                torch.zeros(n),
            )
            out = out + shift.to(out)[:, None, None, None]
        if c.channel_p > 0:
            apply = _bernoulli(c.channel_p, n, gen)[:, None]
            gains = _uniform(1 - c.channel, 1 + c.channel, n * ch, gen).reshape(n, ch)
            gains = torch.where(apply, gains, torch.ones(n, ch))
            out = out * gains.to(out)[:, :, None, None]
        if c.gray_p > 0:
            gray = _bernoulli(c.gray_p, n, gen).to(out.device)[:, None, None, None]
            if ch == 3:
                lum = (
                    out * torch.tensor([0.299, 0.587, 0.114], device=out.device)[:, None, None]
                ).sum(dim=1, keepdim=True)
                out = torch.where(gray, lum.expand_as(out), out)
        if c.glow_p > 0:
            out = out + self._glow(n, h, w, gen).to(out)
        if c.noise_p > 0:
            std = torch.where(
                _bernoulli(c.noise_p, n, gen), _uniform(0.0, c.noise, n, gen), torch.zeros(n)
            )
            noise = torch.randn(out.shape, generator=gen).to(out)
            out = out + noise * std.to(out)[:, None, None, None]
        if c.blur_p > 0:
            out = self._blur(out, gen)
        out = out.clamp(0.0, 1.0) * mask
        return out.to(x.dtype)
