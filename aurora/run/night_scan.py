"""One more read of every accepted frame at full resolution, for what needs original pixels.

Per frame: the keogram column, the mean sky brightness, the star count (the cloud score's
input) and the brightest point of the sky (it confirms a predicted Moon); per night, the
activity curve. Frames are read in worker processes, night by night in time order, and the
results are kept in the cache (stage ``nights``), keyed by the frames' contents, the station
and the settings, so a second run, or every job of a sweep, reads them back.

One geometry per night: the camera's zenith and horizon when the station gives them, else the
median of the circles the preprocessing detected on the night's frames. A frame whose size
differs from the night's first is resized to it (a camera that changed resolution mid-night).
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from aurora.data.decode import read_image
from aurora.data.manifest import ImageRecord
from aurora.data.sources import ImageReadError
from aurora.infra.atomic import atomic_save_npz
from aurora.infra.cache import Cache, stable_hash
from aurora.nights import ActivityAccumulator, KeogramBuilder, Nights, split_nights
from aurora.nights.keogram import to_datetime64
from aurora.sky.camera import meridian_pixels, sky_mask
from aurora.sky.cloud import star_count
from aurora.sky.spot import brightest_spot
from aurora.sky.station import Camera, Station

STAGE = "nights"
#: Bumped whenever what the scan computes changes for the same frames and settings.
VERSION = "nights-v1"
_CHUNK = 8


@dataclass(frozen=True)
class ScanSettings:
    """What the scan computes besides the frames (``nights.*``).

    Attributes:
        gap_s: a new night starts after a gap longer than this, seconds.
        window: frames per window of the activity curve.
        max_size: largest frame side the activity uses as is (larger: block-summed).
    """

    gap_s: float = 7200.0
    window: int = 12
    max_size: int | None = 512


@dataclass(frozen=True)
class NightScan:
    """One night's products, frames in time order.

    Attributes:
        name: the night's name (``YYYY-MM-DD``, prefixed by the station when a run has more).
        station: the station's name, or None.
        rows: (T,) the run's rows of the frames.
        keogram: (L, T) or (L, T, C), north (or image-up without a station) first.
        times: (T,) datetime64[ms] UTC.
        activity: (T,) the windowed change (NaN where the window does not fit).
        circle: (3,) the geometry used: zenith x, y and horizon radius in original pixels.
    """

    name: str
    station: str | None
    rows: np.ndarray
    keogram: np.ndarray
    times: np.ndarray
    activity: np.ndarray
    circle: np.ndarray


@dataclass(frozen=True)
class ScanResult:
    """The scan of a run's frames: per frame (N,) arrays over its rows, and its nights.

    ``stars`` and ``brightness`` are NaN and ``bright_xy`` NaN for a frame that could not be
    read again (it was read once; a file changed since is the only way).
    """

    stars: np.ndarray
    brightness: np.ndarray
    bright_xy: np.ndarray
    nights: list[NightScan]


def _night_circle(camera: Camera, circles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(3,) the night's zenith (x, y) and horizon radius: the camera's, else the median of the
    detected circles, else the image's inscribed circle."""
    c = np.asarray(circles, np.float64).reshape(-1, 3)
    ok = np.isfinite(c).all(axis=1)
    h, w = int(shape[0]), int(shape[1])
    med = (
        np.median(c[ok], axis=0)
        if ok.any()
        else np.array([(w - 1) / 2, (h - 1) / 2, min(h, w) / 2])
    )
    x, y = camera.zenith if camera.zenith is not None else (med[0], med[1])
    r = camera.horizon_radius if camera.horizon_radius is not None else med[2]
    return np.array([x, y, r], np.float64)


def _grey(image: np.ndarray) -> np.ndarray:
    return image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)


@functools.lru_cache(maxsize=4)
def _mask(camera: Camera, circle: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The sky mask of one geometry, kept: every frame of a night shares it."""
    mask = sky_mask(camera, np.asarray(circle), shape)
    mask.flags.writeable = False
    return mask


def _read_frame(
    task: tuple[ImageRecord, tuple[int, int] | None, Camera, np.ndarray],
) -> tuple[np.ndarray | None, float, float, tuple[float, float]]:
    """Worker: one frame's image (resized to ``shape`` when given) and its numbers."""
    record, shape, camera, circle = task
    try:
        image = read_image(record)
    except ImageReadError:
        return None, np.nan, np.nan, (np.nan, np.nan)
    if shape is not None and image.shape[:2] != shape:
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    grey = _grey(image)
    mask = _mask(camera, tuple(float(v) for v in circle), image.shape[:2])
    level = float(grey[mask].mean()) if mask.any() else float(grey.mean())
    stars = float(star_count(image, camera=camera, circle=circle))
    return image, level, stars, brightest_spot(image, circle)


def _frames(
    records: Sequence[ImageRecord],
    shape: tuple[int, int],
    camera: Camera,
    circle: np.ndarray,
    jobs: int,
) -> Iterator[tuple[np.ndarray | None, float, float, tuple[float, float]]]:
    """The frames' images and numbers, in order, read by ``jobs`` workers."""
    tasks = [(r, shape, camera, circle) for r in records]
    if jobs <= 1 or len(tasks) < 2 * _CHUNK:
        yield from map(_read_frame, tasks)
        return
    with mp.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(_read_frame, tasks, chunksize=_CHUNK)


def _scan_night(
    name: str,
    rows: np.ndarray,
    records: Sequence[ImageRecord],
    times: np.ndarray,
    station: Station | None,
    circles: np.ndarray,
    settings: ScanSettings,
    jobs: int,
    out: dict[str, np.ndarray],
) -> NightScan:
    """Read one night's frames (in time order) into its keogram and activity."""
    camera = station.camera if station is not None else Camera()
    first = read_image(records[0])
    circle = _night_circle(camera, circles, first.shape)
    shape = (int(first.shape[0]), int(first.shape[1]))
    keo_rows, keo_cols = meridian_pixels(camera, circle, first.shape)
    keogram = KeogramBuilder(keo_rows, keo_cols)
    activity = ActivityAccumulator(
        sky_mask(camera, circle, first.shape), window=settings.window, max_size=settings.max_size
    )
    for k, (image, level, stars, xy) in enumerate(_frames(records, shape, camera, circle, jobs)):
        if image is None:  # unreadable now: a blank column keeps the time axis
            image = np.zeros_like(first)
        keogram.add(image, None, records[k].id)
        activity.add(image)
        row = rows[k]
        out["brightness"][row], out["stars"][row] = level, stars
        out["bright_xy"][row] = xy
    return NightScan(
        name=name,
        station=None if station is None else station.name,
        rows=rows,
        keogram=keogram.result().keogram,
        times=times,
        activity=activity.result(),
        circle=circle,
    )


def night_names(nights: Nights, station: str | None, prefix: bool) -> list[str]:
    """The nights' names, with the station in front when a run has frames of several."""
    return [f"{station}_{n}" if prefix and station else n for n in nights.names]


def scan_nights(
    records: Sequence[ImageRecord],
    times: Sequence[datetime | None],
    station_of: Sequence[str | None],
    stations: dict[str, Station],
    circles: np.ndarray,
    *,
    settings: ScanSettings,
    jobs: int,
) -> ScanResult:
    """Read every frame once more: keograms and activity per night, numbers per frame.

    Args:
        records: (N,) the run's data frames.
        times: (N,) their UTC times (None: in no night; still read for its stars).
        station_of: (N,) the station name of each frame, or None.
        stations: name -> station.
        circles: (N, 3) the sky circle the preprocessing found on each frame.
        settings: the gap, the activity window and size.
        jobs: worker processes.

    Returns:
        The :class:`ScanResult`.
    """
    n = len(records)
    out = {
        "stars": np.full(n, np.nan),
        "brightness": np.full(n, np.nan),
        "bright_xy": np.full((n, 2), np.nan),
    }
    found: list[NightScan] = []
    names = sorted({s for s in station_of if s is not None}) + [None]
    groups = {s: [i for i in range(n) if station_of[i] == s] for s in names}
    groups = {s: g for s, g in groups.items() if g}
    for name in names:
        idx = np.asarray(groups.get(name, []), np.int64)
        if not len(idx):
            continue
        nights = split_nights([times[i] for i in idx], gap=settings.gap_s)
        labels = night_names(nights, name, prefix=len(groups) > 1)
        station = stations.get(name) if name is not None else None
        for k, label in enumerate(labels):
            rows = idx[nights.frames(k)]
            order = np.argsort(np.array([times[i].timestamp() for i in rows]), kind="stable")
            rows = rows[order]
            t64 = to_datetime64([times[i] for i in rows])
            found.append(
                _scan_night(
                    label,
                    rows,
                    [records[i] for i in rows],
                    t64,
                    station,
                    circles[rows],
                    settings,
                    jobs,
                    out,
                )
            )
        timeless = idx[nights.index < 0]
        if len(timeless):  # no night, but their stars and brightest spot still count
            camera = station.camera if station is not None else Camera()
            for i in timeless:
                _, level, stars, xy = _read_frame((records[i], None, camera, circles[i]))
                out["brightness"][i], out["stars"][i], out["bright_xy"][i] = level, stars, xy
    return ScanResult(out["stars"], out["brightness"], out["bright_xy"], found)


def scan_key(
    records: Sequence[ImageRecord],
    station_of: Sequence[str | None],
    stations: dict[str, Station],
    settings: ScanSettings,
) -> str:
    """The cache key of a scan: the frames' contents and times, their stations, the settings."""
    used = sorted({s for s in station_of if s is not None})
    return stable_hash(
        VERSION,
        [(r.id, r.content_hash, r.frame, str(r.timestamp)) for r in records],
        list(station_of),
        [repr(stations[s]) for s in used],
        repr(settings),
    )


def scan_cached(
    cache: Cache,
    records: Sequence[ImageRecord],
    times: Sequence[datetime | None],
    station_of: Sequence[str | None],
    stations: dict[str, Station],
    circles: np.ndarray,
    *,
    settings: ScanSettings,
    jobs: int,
) -> ScanResult:
    """:func:`scan_nights`, read from the cache when the same frames were scanned before."""
    key = stable_hash(scan_key(records, station_of, stations, settings), [str(t) for t in times])
    if cache.exists(STAGE, key):
        return _load(cache.path(STAGE, key))
    result = scan_nights(
        records, times, station_of, stations, circles, settings=settings, jobs=jobs
    )
    with cache.writing(STAGE, key) as tmp:
        _save(tmp, result)
    return result


def _save(folder: Path, result: ScanResult) -> None:
    atomic_save_npz(
        folder / "frames.npz",
        stars=result.stars,
        brightness=result.brightness,
        bright_xy=result.bright_xy,
    )
    index = []
    for k, night in enumerate(result.nights):
        atomic_save_npz(
            folder / f"night_{k:05d}.npz",
            rows=night.rows,
            keogram=night.keogram,
            times=night.times,
            activity=night.activity,
            circle=night.circle,
        )
        index.append({"name": night.name, "station": night.station})
    (folder / "nights.json").write_text(json.dumps(index))


def _load(folder: Path) -> ScanResult:
    with np.load(folder / "frames.npz", allow_pickle=False) as z:
        stars, brightness, bright_xy = z["stars"], z["brightness"], z["bright_xy"]
    nights = []
    for k, entry in enumerate(json.loads((folder / "nights.json").read_text())):
        with np.load(folder / f"night_{k:05d}.npz", allow_pickle=False) as z:
            nights.append(
                NightScan(
                    name=str(entry["name"]),
                    station=entry["station"],
                    rows=z["rows"],
                    keogram=z["keogram"],
                    times=z["times"],
                    activity=z["activity"],
                    circle=z["circle"],
                )
            )
    return ScanResult(stars, brightness, bright_xy, nights)
