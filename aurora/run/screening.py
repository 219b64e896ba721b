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
from typing import TYPE_CHECKING

import numpy as np

from aurora.data.dataset import Truth
from aurora.data.decode import default_jobs
from aurora.data.manifest import ImageRecord
from aurora.data.sources import Rejection
from aurora.infra.cache import Cache, stable_hash
from aurora.infra.logs import log, stage
from aurora.nights.keogram import to_datetime64
from aurora.preprocess import TOO_DARK, PreprocessedStore
from aurora.run.context import RunContext
from aurora.run.features import ExtractedFeatures
from aurora.run.night_scan import ScanResult, scan_cached
from aurora.run.night_settings import NightSettings
from aurora.run.stores import ImageRows, store_rows
from aurora.sky.cloud import cloud_scores
from aurora.sky.names import station_from_name
from aurora.sky.screen import FLAGS, Screening, screen_frames

if TYPE_CHECKING:
    from aurora.solution.apply import ApplyResult


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
        too_dark: datetime64[ms] times of the inputs rejected ``too dark`` (for the nights'
            counts; they are in no keogram).
    """

    ids: list[str]
    times: list[datetime | None]
    station_of: list[str | None]
    screening: Screening
    scan: ScanResult
    excluded: np.ndarray
    too_dark: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, "datetime64[ms]"))

    def why(self, row: int, exclude: Sequence[str]) -> str:
        """The flags of ``exclude`` that frame ``row`` carries (a ``screened`` detail)."""
        return ", ".join(f for f in exclude if getattr(self.screening, f)[row])


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
    times = list(ctx.timestamps[:n]) or [None] * n
    store = next(iter(ctx.features.values())).store
    found = screen_rows(
        ctx.ids[:n], times, ctx.stores.manifest.records, store, settings, cache_dir, jobs
    )
    return with_too_dark(found, ctx.rejected, ctx.stores.manifest.records)


def with_too_dark(
    found: Screened, rejected: Sequence[Rejection], records: Sequence[ImageRecord]
) -> Screened:
    """``found`` with the times of the inputs rejected ``too dark`` (those with a time)."""
    dark = {r.path for r in rejected if r.reason == TOO_DARK}
    times = [r.timestamp for r in records if r.id in dark and r.timestamp is not None]
    return dataclasses.replace(found, too_dark=to_datetime64(times))


def screen_rows(
    ids: Sequence[str],
    times: Sequence[datetime | None],
    records: Sequence[ImageRecord],
    store: PreprocessedStore,
    settings: NightSettings,
    cache_dir: str,
    jobs: int,
) -> Screened:
    """Scan and screen the frames ``ids`` (all in ``store``).

    Args:
        ids: (N,) the frames.
        times: (N,) their UTC times (None where unknown).
        records: the manifest's records (the frames among them are read again).
        store: the preprocessed store of the frames (sky circle, Moon and glare found).
        settings: stations, thresholds, exclusions, the scan's settings.
        cache_dir: the cache (the scan is kept there).
        jobs: worker processes.
    """
    ids, times, n = list(ids), list(times), len(ids)
    rows = store_rows(store, ids)
    by_id = {r.id: r for r in records}
    station_of = stations_of(ids, settings)
    circles = np.asarray(store.circle, np.float64)[rows]
    scan = scan_cached(
        Cache(cache_dir),
        [by_id[i] for i in ids],
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
        at = rows[idx]
        s = screen_frames(
            times=to_datetime64([times[i] for i in idx]),
            station=station,
            circle=circles[idx],
            moon=np.asarray(store.moon)[at],
            moon_xyr=np.asarray(store.moon_xyr)[at],
            glare=np.asarray(store.glare)[at],
            glare_xyr=np.asarray(store.glare_xyr)[at],
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
        why[i] = found.why(i, settings.exclude)
    return without_rows(ctx, keep, why), found


def screened_out(
    rejected: Sequence[Rejection], duplicates: dict[str, str], dropped: dict[str, str]
) -> tuple[list[Rejection], dict[str, str]]:
    """The rejections with each ``dropped`` id (id -> flags) and each copy of one added, reason
    ``screened``; the copies whose original stays."""
    out = [*rejected, *(Rejection(i, "screened", d) for i, d in dropped.items())]
    kept = {}
    for dup, orig in duplicates.items():
        if orig in dropped:
            out.append(Rejection(dup, "screened", f"duplicate of {orig}: {dropped[orig]}"))
        else:
            kept[dup] = orig
    return out, kept


def without_rows(ctx: RunContext, keep: np.ndarray, why: Sequence[str]) -> RunContext:
    """``ctx`` without the rows where ``keep`` is false; each of them (and each copy of one)
    joins ``rejected`` with the reason ``screened`` and ``why[row]`` as detail."""
    keep = np.asarray(keep, bool)
    if keep.all():
        return ctx
    rows = np.flatnonzero(keep)
    ids = [ctx.ids[i] for i in rows]
    dropped = {ctx.ids[i]: why[i] for i in np.flatnonzero(~keep)}
    rejected, duplicates = screened_out(ctx.rejected, ctx.duplicates, dropped)
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


def screen_applied(
    result: ApplyResult, settings: NightSettings, cache_dir: str, jobs: int | None
) -> tuple[ApplyResult, Screened | None]:
    """The screening of ``mode=apply``'s labelled images: the excluded ones (and their copies)
    leave ``result`` for its rejections, reason ``screened``."""
    if not settings.enabled or not result.ids or result.store is None:
        return result, None
    store = result.store
    times = [store.timestamps[k] for k in store_rows(store, result.ids)]
    found = screen_rows(
        result.ids, times, result.records, store, settings, cache_dir, jobs or default_jobs()
    )
    found = with_too_dark(found, result.rejected, result.records)
    if not found.excluded.any():
        return result, found
    keep = ~found.excluded
    why = {i: found.why(k, settings.exclude) for k, i in enumerate(result.ids) if found.excluded[k]}
    rejected, duplicates = screened_out(result.rejected, result.duplicates, why)
    kept = dataclasses.replace(
        result,
        ids=[i for i, k in zip(result.ids, keep, strict=True) if k],
        labels=result.labels[keep],
        distances=result.distances[keep],
        novel=result.novel[keep],
        embedding=result.embedding[keep],
        rejected=rejected,
        duplicates=duplicates,
        features=None if result.features is None else result.features[keep],
    )
    return kept, found
