"""The thesis preprocessing chain in OpenCV: sky circle, dark rejection, LAB contrast, stars, Moon.

One image goes through :func:`preprocess_image`:

1. 16-bit or grey input is stretched to 8-bit RGB (:func:`.pixels.to_uint8`).
2. The fisheye sky circle is found (:func:`.geometry.find_sky_circle`) or taken from the
   config.
3. The circle's bounding square is cut out (zero padded where it leaves the frame) and resized
   to a fixed working size (:data:`.config.WORK_SIZE`) for the decisions that must not depend
   on the output size: darkness (0.9-quantile of HSV value inside the circle,
   :func:`.sky.value_quantile`), the Moon (a point source: :func:`.moon.moon_from_work`), edge
   glare (:func:`.moon.detect_glare_square`) and twilight (a bright sky:
   :func:`.sky.sky_floor`).
4. The square is resized to the output size; the Moon, edge glare and their glow are replaced
   by the sky around them (:func:`.sky.mask_moon`; optional); with ``moon_light`` and
   ``background`` the scattered moonlight and the smooth sky background are subtracted
   (:func:`.sky.subtract_moonlight`, :func:`.sky.subtract_background`).
5. LAB: L clipped to its percentiles inside the circle and stretched to full range (not for a
   twilight sky); a and b re-centred on 128 (optional; :func:`.sky.lab_contrast`). Grey input
   stays exactly grey.
6. Median blur removes stars; everything outside the circle is set to black.

The star filter works at the output resolution, after resizing, so its kernel means the same
thing for a 256 px THEMIS frame and a 2832 px KHO frame.

Rejection reasons are listed in :mod:`aurora.preprocess.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from aurora.preprocess.config import (
    ALL_SATURATED,
    MIN_IMAGE_SIDE,
    MIN_SEARCH_SIDE,
    NO_SKY_CIRCLE,
    SATURATED,
    SATURATED_FRACTION,
    TOO_DARK,
    TOO_SMALL,
    WORK_SIZE,
    PreprocessConfig,
    SkyCircleError,
)
from aurora.preprocess.geometry import SkyCircle, crop_square, find_sky_circle, square_to_orig
from aurora.preprocess.moon import (
    GlareInfo,
    MoonInfo,
    detect_glare_square,
    glare_info,
    moon_from_work,
)
from aurora.preprocess.pixels import brightness, disk, resize, sensor_saturation, to_uint8
from aurora.preprocess.sky import (
    lab_contrast,
    mask_moon,
    sky_floor,
    stretch_residual,
    subtract_background,
    subtract_moonlight,
    value_quantile,
)


@dataclass
class PreprocessResult:
    """Output of :func:`preprocess_image`.

    Attributes:
        image: (size, size, 3) uint8 RGB, black outside the circle; ``None`` when rejected.
        rejected: the rejection reason (a short code, see :mod:`aurora.preprocess.config`),
            or ``None``.
        circle: the sky circle used.
        moon: the Moon detection (original pixels).
        glare: saturated glare at the edge of the sky (original pixels).
        twilight: the sky itself is bright (see ``PreprocessConfig.twilight_level``).
        detail: one line on why it was rejected (size and minimum, saturated fraction), or
            ``None``.
    """

    image: np.ndarray | None
    rejected: str | None
    circle: SkyCircle
    moon: MoonInfo = field(default_factory=MoonInfo.absent)
    glare: GlareInfo = field(default_factory=GlareInfo.absent)
    twilight: bool = False
    detail: str | None = None


#: The circle of a rejection made before any circle was found.
_NO_CIRCLE = SkyCircle(math.nan, math.nan, math.nan)


def _saturated_fraction(
    raw: np.ndarray,
    rgb: np.ndarray,
    sat: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> float:
    """Fraction of pixels at the maximum value.

    Args:
        raw: the input as given (decides 8-bit or sensor saturation).
        rgb: (h, w, 3) uint8 image the fraction is measured on (8-bit input).
        sat: (h, w) bool sensor saturation matching ``rgb`` (wider input); computed from
            ``raw`` when ``None``.
        inside: (h, w) bool pixels that count (default: all).
    """
    if sat is None:
        sat = sensor_saturation(raw)
    hit = brightness(rgb) >= SATURATED if sat is None else sat
    if inside is not None:
        hit = hit[inside]
    return float(np.count_nonzero(hit)) / max(1, hit.size)


def _dark_detail(level: float, threshold: float, where: str) -> str:
    """The detail of a ``too dark`` rejection: the measured level and the threshold."""
    return (
        f"0.9-quantile of HSV value {where} = {level:.0f} (of 255), below "
        f"preprocess.<variant>.dark_threshold={threshold:g}"
    )


def preprocess_image(raw: np.ndarray, cfg: PreprocessConfig) -> PreprocessResult:
    """Run the whole chain on one image.

    Args:
        raw: (H, W) or (H, W, 3) RGB image, uint8 or uint16.
        cfg: chain settings.

    Returns:
        The (size, size, 3) uint8 RGB image (or a rejection), the circle, the Moon, edge
        glare and the twilight flag. With ``moon="mask"`` the Moon and the glare are replaced
        by the sky around them. A grey input gives a grey output (R = G = B).

    Raises:
        ImageFormatError: for arrays that are not images.
    """
    small = _too_small(raw, cfg)
    if small is not None:
        return small
    rgb = to_uint8(raw, cfg.u16_percentiles)
    circle = _sky_circle(raw, rgb, cfg)
    if isinstance(circle, PreprocessResult):
        return circle
    crop, _, _ = crop_square(rgb, circle)
    work = resize(crop, WORK_SIZE)
    sat = sensor_saturation(raw)
    if sat is not None:
        sat_sq, _, _ = crop_square(sat.astype(np.uint8) * 255, circle)
        sat = resize(sat_sq, WORK_SIZE) >= 128
    frac = _saturated_fraction(raw, work, sat, disk(WORK_SIZE))
    if frac >= SATURATED_FRACTION:
        detail = f"{frac:.0%} of the sky circle at the maximum value"
        return PreprocessResult(None, ALL_SATURATED, circle, detail=detail)
    moon = moon_from_work(work, circle, sat)
    glares = detect_glare_square(work, sat)
    glare = glare_info(glares[0] if glares else None, circle, WORK_SIZE)
    twilight = cfg.twilight_level > 0 and sky_floor(work) >= cfg.twilight_level
    level = value_quantile(work, 0.9) if cfg.dark_threshold > 0 else 255.0
    if level < cfg.dark_threshold:
        detail = _dark_detail(level, cfg.dark_threshold, "inside the sky circle")
        return PreprocessResult(None, TOO_DARK, circle, moon, glare, twilight, detail)

    img = resize(crop, cfg.size)
    grey = bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())
    if cfg.moon == "mask":
        img = _mask_moon_and_glare(img, circle, moon, glares, moon_light=cfg.moon_light)
    inside = disk(cfg.size)
    img = _contrast(img, cfg, inside, twilight=twilight, grey=grey)
    if cfg.star_kernel > 1:
        img = cv2.medianBlur(img, cfg.star_kernel)
    img[~inside] = 0
    return PreprocessResult(img, None, circle, moon, glare, twilight)


def _too_small(raw: np.ndarray, cfg: PreprocessConfig) -> PreprocessResult | None:
    """The rejection of an image (H, W[, 3]) too small for the chain, else None."""
    need = MIN_IMAGE_SIDE if cfg.circle is not None else MIN_SEARCH_SIDE
    if raw.ndim in (2, 3) and min(raw.shape[:2]) < need:
        h, w = raw.shape[:2]
        why = "" if cfg.circle is not None else " to find the sky circle"
        return PreprocessResult(
            None,
            TOO_SMALL,
            _NO_CIRCLE,
            detail=f"{w}x{h} px, at least {need} px per side needed{why}",
        )
    return None


def _sky_circle(
    raw: np.ndarray, rgb: np.ndarray, cfg: PreprocessConfig
) -> SkyCircle | PreprocessResult:
    """The sky circle of the config, else the one found in ``rgb`` (H, W, 3) uint8.

    Where none is found: the rejection that says why (saturated frame, too dark a frame, or
    no circle).
    """
    if cfg.circle is not None:
        return SkyCircle(*cfg.circle)
    try:
        return find_sky_circle(rgb)
    except SkyCircleError as err:
        frac = _saturated_fraction(raw, rgb)
        if frac >= SATURATED_FRACTION:
            detail = f"{frac:.0%} of the frame at the maximum value"
            return PreprocessResult(None, ALL_SATURATED, _NO_CIRCLE, detail=detail)
        whole = value_quantile(resize(rgb, WORK_SIZE), 0.9) if cfg.dark_threshold else 255
        if whole < cfg.dark_threshold:
            detail = _dark_detail(whole, cfg.dark_threshold, "of the whole frame (no sky circle)")
            return PreprocessResult(None, TOO_DARK, _NO_CIRCLE, detail=detail)
        return PreprocessResult(None, NO_SKY_CIRCLE, _NO_CIRCLE, detail=str(err))


def _mask_moon_and_glare(
    img: np.ndarray,
    circle: SkyCircle,
    moon: MoonInfo,
    glares: list[tuple[float, float, float]],
    *,
    moon_light: bool,
) -> np.ndarray:
    """Replace the edge glare, the Moon and their glow by the sky around them.

    Args:
        img: (size, size, 3) the circle's square at the output size.
        circle: the sky circle (original pixels).
        moon: the Moon (original pixels).
        glares: (x, y, r) of each glare in the working square (:data:`WORK_SIZE` px).
        moon_light: also subtract the moonlight scattered over the sky.
    """
    size = img.shape[0]
    for gx, gy, gr in glares:  # glare is masked like the Moon and its glow
        f = size / WORK_SIZE
        img = mask_moon(img, (gx + 0.5) * f - 0.5, (gy + 0.5) * f - 0.5, gr * f)
    if moon.present:
        x0, y0, k = square_to_orig(circle, size)
        mx, my = (moon.x + 0.5 - x0) / k - 0.5, (moon.y + 0.5 - y0) / k - 0.5
        img = mask_moon(img, mx, my, moon.r / k)
        if moon_light:
            img = subtract_moonlight(img, mx, my)
    return img


def _contrast(
    img: np.ndarray, cfg: PreprocessConfig, inside: np.ndarray, *, twilight: bool, grey: bool
) -> np.ndarray:
    """Background, residual stretch of a wide input and LAB contrast inside the circle.

    Args:
        img: (size, size, 3) RGB, uint8 (or wider after the background subtraction).
        cfg: chain settings.
        inside: (size, size) bool, the sky circle.
        twilight: a bright sky: its L is not stretched.
        grey: the input is grey (R = G = B), and so stays the output.

    Returns:
        (size, size, 3) uint8 RGB.
    """
    if cfg.background > 0:
        img = subtract_background(img, cfg.background)
    l_gain = cfg.max_gain
    if img.dtype != np.uint8:
        img, gain = stretch_residual(img, inside, cfg.l_percentiles[1], l_gain)
        if l_gain is not None:
            # One budget for both stretches, so the cap holds for the whole chain.
            l_gain = max(1.0, l_gain / gain)
    if cfg.lab_stretch or cfg.recenter_ab:
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
        lab = lab_contrast(
            lab,
            inside,
            # A bright sky is not a night sky to stretch: its brightness is kept as recorded.
            cfg.l_percentiles if cfg.lab_stretch and not twilight else None,
            cfg.recenter_ab and not grey,  # grey: a = b = 128 already, nothing to centre
            l_gain,
        )
        img = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        if grey:
            # LAB -> RGB rounds each channel on its own (R, G, B may differ by 1): stay grey.
            img = np.repeat(img[..., 1:2], 3, axis=2)
    return img
