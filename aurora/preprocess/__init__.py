"""The thesis preprocessing chain in OpenCV: sky circle, dark rejection, LAB contrast, stars, Moon.
Must not import models/, extractors/ or anything above them (only data/ and infra/).

Modules, in the order the chain uses them (each imports only those above it):

- :mod:`~aurora.preprocess.config`: :class:`PreprocessConfig`, the thresholds, the rejection
  reasons and the errors.
- :mod:`~aurora.preprocess.pixels`: 8-bit conversion (:func:`to_uint8`), brightness, disk
  masks, resizing.
- :mod:`~aurora.preprocess.geometry`: the fisheye sky circle (:func:`find_sky_circle`) and
  its bounding square (:func:`crop_square`).
- :mod:`~aurora.preprocess.sky`: darkness and twilight, filling the Moon's hole
  (:func:`mask_moon`), moonlight and background subtraction, the contrast stretches.
- :mod:`~aurora.preprocess.moon`: the Moon (:func:`detect_moon`) and edge glare.
- :mod:`~aurora.preprocess.chain`: one image through the chain (:func:`preprocess_image`).
- :mod:`~aurora.preprocess.store`: a whole data set, once, into a memory-mapped cache entry
  (:func:`build_preprocessed`, :class:`PreprocessedStore`).
- :mod:`~aurora.preprocess.figure` and ``__main__``: ``python -m aurora.preprocess show
  IMAGES... --out grid.png``.
"""

from aurora.preprocess.chain import PreprocessResult, preprocess_image
from aurora.preprocess.config import (
    ALL_SATURATED,
    BRIGHT_SKY,
    CIRCLE_SEARCH_SIZE,
    MIN_IMAGE_SIDE,
    MIN_SEARCH_SIDE,
    SATURATED,
    SATURATED_FRACTION,
    TOO_DARK,
    TOO_SMALL,
    WORK_SIZE,
    ImageFormatError,
    PreprocessConfig,
    PreprocessError,
    SkyCircleError,
)
from aurora.preprocess.figure import show
from aurora.preprocess.geometry import SkyCircle, crop_square, find_sky_circle
from aurora.preprocess.moon import ROUND, SYMMETRIC, GlareInfo, MoonInfo, SpotInfo, detect_moon
from aurora.preprocess.pixels import disk_mask, to_uint8
from aurora.preprocess.shards import assemble_preprocessed
from aurora.preprocess.sky import (
    fill_hole,
    lab_contrast,
    mask_moon,
    sky_floor,
    stretch_residual,
    subtract_background,
    subtract_moonlight,
    value_quantile,
)
from aurora.preprocess.store import PreprocessedStore, build_preprocessed, open_store, store_key

__all__ = [
    "ALL_SATURATED",
    "BRIGHT_SKY",
    "CIRCLE_SEARCH_SIZE",
    "MIN_IMAGE_SIDE",
    "MIN_SEARCH_SIDE",
    "ROUND",
    "SATURATED",
    "SATURATED_FRACTION",
    "SYMMETRIC",
    "TOO_DARK",
    "TOO_SMALL",
    "WORK_SIZE",
    "GlareInfo",
    "ImageFormatError",
    "MoonInfo",
    "PreprocessConfig",
    "PreprocessError",
    "PreprocessResult",
    "PreprocessedStore",
    "SkyCircle",
    "SkyCircleError",
    "SpotInfo",
    "assemble_preprocessed",
    "build_preprocessed",
    "crop_square",
    "detect_moon",
    "disk_mask",
    "fill_hole",
    "find_sky_circle",
    "lab_contrast",
    "mask_moon",
    "open_store",
    "preprocess_image",
    "show",
    "store_key",
    "sky_floor",
    "stretch_residual",
    "subtract_background",
    "subtract_moonlight",
    "to_uint8",
    "value_quantile",
]
