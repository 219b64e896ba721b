"""What the generator promises: the morphology names, an image's ground truth, its labels row."""

from __future__ import annotations

from dataclasses import dataclass

from aurora.infra.errors import AuroraError

MORPHOLOGIES: tuple[str, ...] = (
    "single_arc",
    "multiple_arcs",
    "vortex",
    "patchy",
    "corona",
    "diffuse",
)
CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "morphology",
    "moon",
    "clouds",
    "seed",
    "moon_x",
    "moon_y",
    "moon_r",
    "circle_x",
    "circle_y",
    "circle_r",
)


class SynthError(AuroraError, ValueError):
    """Raised for invalid generator arguments (unknown morphology, bad size, ...)."""


@dataclass(frozen=True)
class SkyMeta:
    """Ground truth of one rendered image (pixel units, see :mod:`aurora.data.synth` for axes).

    ``moon_x``, ``moon_y``, ``moon_r`` are ``None`` when there is no Moon.
    """

    morphology: str
    moon: bool
    clouds: float
    moon_x: float | None
    moon_y: float | None
    moon_r: float | None
    circle_x: float
    circle_y: float
    circle_r: float

    def row(self, path: str, seed: int) -> dict[str, str]:
        """The ``labels.csv`` row of this image, as strings in :data:`CSV_COLUMNS` order."""

        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.2f}"

        return {
            "path": path,
            "morphology": self.morphology,
            "moon": str(int(self.moon)),
            "clouds": f"{self.clouds:.3f}",
            "seed": str(seed),
            "moon_x": fmt(self.moon_x),
            "moon_y": fmt(self.moon_y),
            "moon_r": fmt(self.moon_r),
            "circle_x": fmt(self.circle_x),
            "circle_y": fmt(self.circle_y),
            "circle_r": fmt(self.circle_r),
        }
