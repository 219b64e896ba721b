"""Settings, thresholds, rejection reasons and errors of the preprocessing chain.

Rejection reasons (``PreprocessResult.rejected``; ``detail`` says more where given):

- ``too small``: a side below :data:`MIN_SEARCH_SIDE` px when the circle is searched (below
  :data:`MIN_IMAGE_SIDE` px with a fixed circle); the detail gives the size and the minimum.
- ``saturated``: at least :data:`SATURATED_FRACTION` of the frame (when no circle is found) or
  of the sky circle is at the maximum value (V >= :data:`SATURATED` for 8-bit input, sensor
  saturation for 16-bit input): nothing is left to see.
- ``too dark``: the darkness test (``PreprocessConfig.dark_threshold``).
- ``no sky circle``: no plausible sky circle in an image of usable size (the detail says why).
- ``bad image`` (recorded by :mod:`aurora.preprocess.store`; the detail says why): an array
  the chain does not understand.
"""

from __future__ import annotations

from dataclasses import dataclass

from aurora.infra.errors import AuroraError, SettingsError

#: Side of the square the darkness and Moon decisions are made on (independent of ``size``).
WORK_SIZE = 256
#: Long side of the thumbnail the sky circle is searched on.
CIRCLE_SEARCH_SIZE = 320
#: V (max of R, G, B) at or above which a pixel counts as saturated.
SATURATED = 245
#: Reason recorded for images rejected by the darkness test.
TOO_DARK = "too dark"
#: Reason recorded for frames (or sky circles) almost entirely at the maximum value.
ALL_SATURATED = "saturated"
#: Fraction of the frame (or of the sky circle) at the maximum value that makes it ``saturated``.
SATURATED_FRACTION = 0.9
#: Reason recorded for images too small for the chain.
TOO_SMALL = "too small"
#: Reason recorded for images in which no plausible sky circle is found.
NO_SKY_CIRCLE = "no sky circle"
#: Reason recorded for arrays the chain does not understand.
BAD_IMAGE = "bad image"
#: Smallest side (px) the chain handles at all (with a fixed circle from the config).
MIN_IMAGE_SIDE = 8
#: Smallest side (px) in which the sky circle can be found: the circle is fitted to at least 20
#: boundary points of a half-size thumbnail, and below about 24 px not even a flat disk well
#: inside the frame gives them (a disk filling 95% of the frame needs about 56 px).
MIN_SEARCH_SIDE = 32
#: Sky floor (0.1-quantile of V over the inner sky) at or above which the sky itself is bright
#: (twilight, daylight, a low Moon): half of full scale, far above any night sky's darkest tenth.
BRIGHT_SKY = 128.0


class PreprocessError(AuroraError, ValueError):
    """Base class of the errors raised by the preprocessing chain."""


class ImageFormatError(PreprocessError):
    """The array is not an image the chain understands (shape or dtype)."""


class SkyCircleError(PreprocessError):
    """No plausible fisheye sky circle could be found in the image."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing chain (built from ``conf/preprocess/*.yaml``).

    Attributes:
        size: side of the square output image in pixels.
        lab_stretch: clip L (CIELAB) to ``l_percentiles`` inside the circle and stretch it to
            the full 0..255 range.
        l_percentiles: lower and upper percentiles of L used by ``lab_stretch``.
        recenter_ab: shift a and b so that their means inside the circle are 128 (neutral).
        star_kernel: median blur kernel (odd) in output pixels; 0 or 1 disables the filter.
        dark_threshold: reject the image as ``"too dark"`` when the 0.9-quantile of HSV value
            (0..255) inside the circle is below this; 0 disables the test.
        moon: ``"mask"`` replaces the Moon and its glare with local sky; ``"keep"`` leaves it.
            Detection always runs and is recorded either way.
        background: subtract the smooth sky background (airglow, moonlit and cloud-lit sky,
            twilight): the per-channel median over a window of this fraction of the image side,
            so that structures narrower than the window remain (0 disables it).
        moon_light: with ``moon="mask"``, also remove the scattered moonlight: the excess of
            the azimuthal median brightness around the Moon over the sky far from it.
        max_gain: upper limit on the contrast gain of the L stretch (and of the stretch of what
            rises above the subtracted background), so that a sky with nothing above its
            background stays dark instead of having its noise stretched to the full range
            (``None``: no limit, as in the thesis).
        circle: fixed ``(cx, cy, r)`` in original pixels for a known camera; ``None`` finds the
            circle in every image.
        u16_percentiles: percentiles stretched to 0..255 when the input is 16-bit.
        twilight_level: the image is recorded as twilight (a bright sky: twilight, daylight,
            a sky lit by a low Moon) when the 0.1-quantile of HSV value (0..255) over the inner
            90% of the circle is at or above this; its L is then not stretched, so a bright sky
            is not turned white (what rises above a subtracted ``background`` is still
            stretched, up to ``max_gain``). The default, half of full scale, is far above the
            darkest tenth of any night sky. 0 disables the test.
    """

    size: int = 224
    lab_stretch: bool = True
    l_percentiles: tuple[float, float] = (0.5, 99.5)
    recenter_ab: bool = True
    star_kernel: int = 3
    dark_threshold: float = 20.0
    moon: str = "mask"
    moon_light: bool = False
    background: float = 0.0
    max_gain: float | None = None
    circle: tuple[float, float, float] | None = None
    u16_percentiles: tuple[float, float] = (0.5, 99.9)
    twilight_level: float = BRIGHT_SKY

    def __post_init__(self) -> None:
        # Hydra hands lists (ListConfig) for tuple fields; keep the dataclass hashable and the
        # cache key independent of how the YAML spelled them.
        for name in ("l_percentiles", "u16_percentiles", "circle"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.size < 8:
            raise SettingsError("preprocess.size", self.size, "at least 8")
        lo, hi = self.l_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise SettingsError("preprocess.l_percentiles", (lo, hi), "0 <= lo < hi <= 100")
        if self.star_kernel > 1 and self.star_kernel % 2 == 0:
            raise SettingsError("preprocess.star_kernel", self.star_kernel, "an odd size (or 0/1)")
        if self.max_gain is not None and self.max_gain < 1:
            raise SettingsError("preprocess.max_gain", self.max_gain, "at least 1 (or null)")
        if self.moon not in ("mask", "keep"):
            raise SettingsError("preprocess.moon", self.moon, "'mask' or 'keep'")
        if self.circle is not None and (len(self.circle) != 3 or self.circle[2] <= 0):
            raise SettingsError("preprocess.circle", self.circle, "(cx, cy, r) with r > 0")
