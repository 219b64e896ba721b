"""Where, when and how clear: each frame's station, the night scan, the screening flags, and
the frames that ``screen.exclude`` keeps out of the grid (rejected with reason ``screened``).

Runs after the features and before the grid (:func:`screen_context`); what it found goes to
``screen.csv`` and the nights' outputs once the groups exist (:mod:`aurora.run.nights`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from aurora.cache import Cache, stable_hash
from aurora.data.dataset import Truth
from aurora.data.decode import default_jobs
from aurora.data.manifest import ImageRecord
from aurora.data.sources import Rejection
from aurora.logs import log, stage
from aurora.run.context import RunContext
from aurora.run.features import ExtractedFeatures
from aurora.run.night_scan import ScanResult, scan_cached
from aurora.run.night_settings import NightSettings
from aurora.run.stores import ImageRows, store_rows
from aurora.sky.cloud import cloud_scores
from aurora.sky.names import station_from_name
from aurora.sky.screen import FLAGS, Screening, screen_frames


@dataclass(frozen=True)
class Screened:
    """What the screening found on a run's data rows (reference images are never screened).

    Attributes:
        ids: (N,) the data rows' ids, in the run's order before screening.
        times: (N,) their times (None where unknown).
        station_of: (N,) their station names (None: unknown).
        screening: the flags and numbers (:class:`aurora.sky.screen.Screening`), (N,) each.
        scan: keograms, activity and per-frame numbers.
        excluded: (N,) bool, kept out of the grid by ``screen.exclude``.
    """

    ids: list[str]
    times: list[datetime | None]
    station_of: list[str | None]
    screening: Screening
    scan: ScanResult
    excluded: np.ndarray


def stations_of(ids: Sequence[str], settings: NightSettings) -> list[str | None]:
    """Each frame's station: ``data.station``, else the one its file name names (if known)."""
    if settings.station is not None:
        return [settings.station] * len(ids)
    found = [station_from_name(i) for i in ids]
    return [s if s in settings.stations else None for s in found]


def screen_frames_of(
    ctx: RunContext, settings: NightSettings, cache_dir: str, jobs: int
) -> Screened:
    """Scan and screen the run's data rows (see the module doc)."""
    n = sum(c is None for c in ctx.reference_classes) if ctx.reference_classes else len(ctx.ids)
    ids, times = ctx.ids[:n], list(ctx.timestamps[:n]) or [None] * n
    store = next(iter(ctx.features.values())).store
    rows = store_rows(store, ids)
    by_id = {r.id: r for r in ctx.stores.manifest.records}
    records: list[ImageRecord] = [by_id[i] for i in ids]
    station_of = stations_of(ids, settings)
    circles = np.asarray(store.circle, np.float64)[rows]
    scan = scan_cached(
        Cache(cache_dir),
        records,
        times,
        station_of,
        settings.stations,
        circles,
        settings=settings.scan,
        jobs=jobs,
    )
    parts: list[tuple[np.ndarray, Screening]] = []
    missing: list[str] = []
    for name in sorted({s for s in station_of if s is not None}) + [None]:
        idx = np.asarray([i for i in range(n) if station_of[i] == name], np.int64)
        if not len(idx):
            continue
        station = settings.stations.get(name) if name is not None else None
        ref = None if station is None else station.clear_sky_stars
        score, _ = cloud_scores(scan.stars[idx], reference=ref)
        s = screen_frames(
            times=np.array(
                [
                    np.datetime64("NaT") if t is None else np.datetime64(t.replace(tzinfo=None))
                    for t in (times[i] for i in idx)
                ],
                "datetime64[ms]",
            ),
            station=station,
            circle=circles[idx],
            moon=np.asarray(store.moon)[rows[idx]],
            moon_xyr=np.asarray(store.moon_xyr)[rows[idx]],
            glare=np.asarray(store.glare)[rows[idx]],
            glare_xyr=np.asarray(store.glare_xyr)[rows[idx]],
            bright_xy=scan.bright_xy[idx],
            cloud_score=score,
            settings=settings.screen,
        )
        if s.missing:
            missing.append(s.missing)
        parts.append((idx, s))
    for line in dict.fromkeys(missing):
        log.info("screening: %s", line)
    screening = _merge(parts, n)
    excluded = np.zeros(n, bool)
    for flag in settings.exclude:
        excluded |= getattr(screening, flag).astype(bool)
    return Screened(ids, times, station_of, screening, scan, excluded)


def _merge(parts: list[tuple[np.ndarray, Screening]], n: int) -> Screening:
    """One :class:`Screening` of n rows from the per-station parts."""
    first = parts[0][1]
    out: dict[str, np.ndarray] = {}
    for name, col in first.columns().items():
        arr = np.zeros(n, col.dtype) if col.dtype == np.uint8 else np.full(n, np.nan)
        for idx, s in parts:
            arr[idx] = s.columns()[name]
        out[name] = arr
    return Screening(**out, missing=None)


def screen_context(
    ctx: RunContext, settings: NightSettings, cache_dir: str, jobs: int
) -> tuple[RunContext, Screened]:
    """Scan and screen the data rows; the excluded ones leave the context (``screened``)."""
    with stage("screen") as st:
        found = screen_frames_of(ctx, settings, cache_dir, jobs)
        counts = {f: int(getattr(found.screening, f).sum()) for f in FLAGS}
        st["msg"] = (
            f"{len(found.ids)} frames, {len(found.scan.nights)} nights; flagged "
            + ", ".join(f"{f} {c}" for f, c in counts.items())
            + f"; excluded {int(found.excluded.sum())}"
            + (f" ({', '.join(settings.exclude)})" if settings.exclude else "")
        )
    keep = np.ones(len(ctx.ids), bool)
    keep[: len(found.ids)] = ~found.excluded
    why = [""] * len(ctx.ids)
    for i in np.flatnonzero(found.excluded):
        why[i] = ", ".join(f for f in settings.exclude if getattr(found.screening, f)[i])
    return without_rows(ctx, keep, why), found


def without_rows(ctx: RunContext, keep: np.ndarray, why: Sequence[str]) -> RunContext:
    """``ctx`` without the rows where ``keep`` is false; each of them (and each copy of one)
    joins ``rejected`` with the reason ``screened`` and ``why[row]`` as detail."""
    keep = np.asarray(keep, bool)
    if keep.all():
        return ctx
    rows = np.flatnonzero(keep)
    ids = [ctx.ids[i] for i in rows]
    dropped = {ctx.ids[i]: why[i] for i in np.flatnonzero(~keep)}
    rejected = [*ctx.rejected, *(Rejection(i, "screened", d) for i, d in dropped.items())]
    duplicates = {}
    for dup, orig in ctx.duplicates.items():
        if orig in dropped:
            rejected.append(Rejection(dup, "screened", f"duplicate of {orig}: {dropped[orig]}"))
        else:
            duplicates[dup] = orig
    new_row = np.full(len(keep), -1, np.int64)
    new_row[rows] = np.arange(len(rows))

    def pairs(p: np.ndarray | None) -> np.ndarray | None:
        if p is None:
            return None
        q = new_row[np.asarray(p, np.int64).reshape(-1, 2)]
        return q[(q >= 0).all(axis=1)]

    truth = Truth(
        None if ctx.truth.classes is None else ctx.truth.classes[rows],
        {k: np.asarray(v)[rows] for k, v in ctx.truth.nuisances.items()},
    )
    return dataclasses.replace(
        ctx,
        features={k: _subset(f, rows, ids) for k, f in ctx.features.items()},
        ids=ids,
        paths=[ctx.paths[i] for i in rows],
        rejected=rejected,
        moon=None if ctx.moon is None else np.asarray(ctx.moon)[rows],
        timestamps=[ctx.timestamps[i] for i in rows] if ctx.timestamps else [],
        reference_classes=[ctx.reference_classes[i] for i in rows] if ctx.reference_classes else [],
        must_link=pairs(ctx.must_link),
        cannot_link=pairs(ctx.cannot_link),
        duplicates=duplicates,
        truth=truth,
    )


def _subset(f: ExtractedFeatures, rows: np.ndarray, ids: list[str]) -> ExtractedFeatures:
    """``f`` at its ``rows`` (now ``ids``); a new cache key names the new rows."""
    assert f.images is not None
    offsets = np.cumsum([0] + [len(r) for _, r in f.images.parts])
    parts = []
    for k, (arr, part_rows) in enumerate(f.images.parts):
        inside = rows[(rows >= offsets[k]) & (rows < offsets[k + 1])]
        if len(inside):
            parts.append((arr, part_rows[inside - offsets[k]]))
    return dataclasses.replace(
        f,
        features=f.features[rows],
        key=stable_hash(f.key, ids),
        ids=ids,
        images=ImageRows(parts),
    )


def screen_if_enabled(
    ctx: RunContext,
    settings: NightSettings,
    cache_dir: str,
    jobs: int | None,
    on_accepted: Callable[[int], None] | None = None,
) -> tuple[RunContext, Screened | None]:
    """:func:`screen_context` when ``nights.enabled``; ``on_accepted`` hears the new count of
    images when frames were excluded (the data checks run again on what the grid sees)."""
    if not settings.enabled:
        return ctx, None
    before = len(ctx.ids)
    ctx, found = screen_context(ctx, settings, cache_dir, jobs or default_jobs())
    if on_accepted is not None and len(ctx.ids) != before:
        on_accepted(len(ctx.ids))
    return ctx, found
