"""Pixel-level helpers shared by the chain: 8-bit conversion, brightness, sensor saturation,
disk masks of a square, anti-aliased resizing."""

from __future__ import annotations

import cv2
import numpy as np

from aurora.preprocess.config import MIN_IMAGE_SIDE, ImageFormatError

cv2.setNumThreads(1)  # the chain is parallel over images; OpenCV's own threads only contend


def to_uint8(raw: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.9)) -> np.ndarray:
    """Convert any supported image array to 8-bit RGB.

    8-bit input is passed through; 16-bit (and float) input is stretched so that the given
    percentiles map to 0 and 255. Grey input is replicated to three channels, an alpha channel
    is dropped.

    Args:
        raw: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, uint8, uint16 or float.
        percentiles: lower/upper percentiles of the stretch for non-8-bit input.

    Returns:
        (H, W, 3) uint8 RGB array.

    Raises:
        ImageFormatError: for other shapes or dtypes, or an empty image.
    """
    if raw.ndim == 3 and raw.shape[2] in (1, 3, 4):
        raw = raw[..., 0] if raw.shape[2] == 1 else raw[..., :3]
    if raw.ndim not in (2, 3) or min(raw.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageFormatError(f"expected an (H, W) or (H, W, 3) image, got shape {raw.shape}")
    if raw.dtype != np.uint8:
        if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
            raise ImageFormatError(f"unsupported image dtype {raw.dtype}")
        data = raw.astype(np.float32)
        finite = np.isfinite(data)
        if not finite.any():
            raise ImageFormatError("image has no finite pixel values")
        sat = sensor_saturation(raw)
        if sat is not None and sat.mean() < 0.5:
            # Saturated pixels (the Moon) would otherwise set the top and darken the sky.
            finite &= ~sat if raw.ndim == 2 else ~sat[..., None]
        lo, hi = np.percentile(data[finite], percentiles)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        data = np.nan_to_num((data - lo) * scale, nan=0.0, posinf=255.0, neginf=0.0)
        raw = np.clip(data + 0.5, 0, 255).astype(np.uint8)
    if raw.ndim == 2:
        raw = np.repeat(raw[:, :, None], 3, axis=2)
    return np.ascontiguousarray(raw)


def brightness(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 HSV value, max of R, G, B (OpenCV, much faster than ``max(axis=2)``)."""
    if rgb.ndim == 2:
        return rgb
    r, g, b = cv2.split(rgb)
    return cv2.max(cv2.max(r, g), b)


def sensor_saturation(raw: np.ndarray) -> np.ndarray | None:
    """(H, W) bool mask of sensor-saturated pixels for integer input wider than 8 bits.

    Returns ``None`` for 8-bit or float input (saturation is then read from the 8-bit image).
    """
    if raw.dtype == np.uint8 or not np.issubdtype(raw.dtype, np.integer):
        return None
    grey = raw.max(axis=2) if raw.ndim == 3 else raw
    return grey >= 0.95 * np.iinfo(raw.dtype).max


def disk_mask(size: int, scale: float = 1.0) -> np.ndarray:
    """(size, size) bool disk inscribed in the square (radius ``scale * size / 2``)."""
    c = (size - 1) / 2.0
    yy, xx = np.ogrid[:size, :size]
    return (xx - c) ** 2 + (yy - c) ** 2 <= (scale * size / 2.0) ** 2


_DISKS: dict[tuple[int, float], np.ndarray] = {}


def disk(size: int, scale: float = 1.0) -> np.ndarray:
    """:func:`disk_mask`, computed once per ``(size, scale)`` and shared: do not write to it."""
    key = (size, scale)
    if key not in _DISKS:
        _DISKS[key] = disk_mask(size, scale)
    return _DISKS[key]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased square resize: Gaussian pyramid down to < 2x, then blur + bilinear.

    Much faster than ``INTER_AREA`` at non-integer ratios, with a similar result.
    """
    while img.shape[0] >= 2 * size:
        img = cv2.pyrDown(img)
    if img.shape[0] > size:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    elif img.shape[0] == size:
        return img.copy()
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
