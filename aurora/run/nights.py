"""A run's nights once its groups exist: ``screen.csv``, ``keograms/NIGHT.npz`` and ``.png``,
``events.csv`` and the season overview, with their lines of the summary.

Every frame of a night is in its keogram and activity curve, screened or not; the group strip
shows the fused group of the clustered frames (-1 unassigned, -2 screened out), and the
events are found on the clustered frames (their features, groups, activity, brightness).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.grid.scoring import n_groups as count_groups
from aurora.infra.atomic import atomic_write_text
from aurora.infra.logs import stage
from aurora.nights import (
    Event,
    Keogram,
    feature_change,
    find_events,
    save_keogram,
    write_events_csv,
)
from aurora.nights.figure import night_figure, save_figure, season_figure
from aurora.run.night_scan import NightScan
from aurora.run.night_settings import NightSettings
from aurora.run.screening import Screened
from aurora.sky.screen import FLAGS

#: Group of a frame the screening kept out of the grid, in a keogram's ``groups``.
SCREENED = -2


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def write_screen_csv(path: Path, screened: Screened, night_of: Sequence[str]) -> None:
    """``screen.csv``: one row per data frame; ``path,time,station,night``, the flags (0/1),
    ``excluded`` and the numbers behind the flags (empty where unknown)."""
    cols = screened.screening.columns()
    flags = [f for f in FLAGS if f in cols]
    numbers = [c for c in cols if c not in flags]
    head = ["path", "time", "station", "night", *flags, "excluded", *numbers, "stars", "brightness"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    scan = screened.scan
    for i, frame in enumerate(screened.ids):
        t = screened.times[i]
        w.writerow(
            [
                frame,
                "" if t is None else t.isoformat(),
                screened.station_of[i] or "",
                night_of[i],
                *(int(cols[f][i]) for f in flags),
                int(screened.excluded[i]),
                *(_fmt(cols[c][i]) for c in numbers),
                _fmt(scan.stars[i]),
                _fmt(scan.brightness[i]),
            ]
        )
    atomic_write_text(path, buf.getvalue())


def write_nights(
    out_dir: Path,
    screened: Screened,
    settings: NightSettings,
    ids: Sequence[str],
    labels: np.ndarray,
    features: np.ndarray,
) -> dict[str, Any]:
    """Write the nights' outputs into ``out_dir`` (module doc).

    Args:
        out_dir: the run folder.
        screened: the screening of the run's data frames.
        settings: the nights' settings.
        ids: (M,) the clustered rows' ids (data rows first, references after).
        labels: (M,) their fused groups (-1 unassigned).
        features: (M, D) their features (the solution's extractor).

    Returns:
        The summary entries: ``nights`` (per night: frames, flags, events, onsets), ``n_events``,
        ``n_onsets``, ``screened_by_flag``.
    """
    with stage("nights") as st:
        row_of = {i: k for k, i in enumerate(ids)}
        night_of = [""] * len(screened.ids)
        events: list[Event] = []
        per_night: list[dict[str, Any]] = []
        n_groups = count_groups(labels)
        for night in screened.scan.nights:
            for r in night.rows:
                night_of[r] = night.name
            found, entry = _write_night(
                out_dir / "keograms", night, screened, settings, row_of, labels, features
            )
            entry["group_counts"] = np.bincount(entry.pop("labels"), minlength=n_groups).tolist()
            events += found
            per_night.append(entry)
        write_events_csv(events, out_dir / "events.csv")
        write_screen_csv(out_dir / "screen.csv", screened, night_of)
        if per_night:
            _season(out_dir / "keograms" / "season.png", per_night, n_groups)
        onsets = sum(e.onset for e in events)
        st["msg"] = f"{len(per_night)} nights, {len(events)} events, {onsets} onsets"
    return {
        "nights": per_night,
        "n_events": len(events),
        "n_onsets": onsets,
        "screened_by_flag": {f: int(getattr(screened.screening, f).sum()) for f in FLAGS},
        "n_screened_out": int(screened.excluded.sum()),
    }


def _write_night(
    keo_dir: Path,
    night: NightScan,
    screened: Screened,
    settings: NightSettings,
    row_of: dict[str, int],
    labels: np.ndarray,
    features: np.ndarray,
) -> tuple[list[Event], dict[str, Any]]:
    """One night: its events, ``NIGHT.npz`` and ``NIGHT.png``; its summary entry (with the
    assigned ``labels`` of its clustered frames, for the group counts)."""
    frames = [screened.ids[r] for r in night.rows]
    clustered = np.array([f in row_of for f in frames], bool)
    at = np.array([row_of[f] for f in frames if f in row_of], np.int64)
    groups = np.full(len(frames), SCREENED, np.int64)
    groups[clustered] = labels[at]
    change = np.full(len(frames), np.nan)
    found: list[Event] = []
    if clustered.sum() >= 2:
        change[clustered] = feature_change(features[at], settings.scan.window)
        found = find_events(
            night.name,
            night.times[clustered],
            features=features[at],
            groups=labels[at],
            activity=night.activity[clustered],
            brightness=screened.scan.brightness[night.rows][clustered],
            settings=settings.events,
        )
    keo = Keogram(
        keogram=night.keogram,
        times=night.times,
        paths=np.array(frames, dtype=str),
        activity=night.activity,
        feature_change=change,
        groups=groups,
    )
    save_keogram(keo_dir / f"{night.name}.npz", keo)
    fig = night_figure(
        night.keogram,
        night.times,
        groups=np.where(groups == SCREENED, -1, groups),
        activity=night.activity,
        events=found,
        title=f"{night.name}" + (f" ({night.station})" if night.station else ""),
    )
    save_figure(fig, keo_dir / f"{night.name}.png")
    flags = screened.screening
    assigned = labels[at]
    return found, {
        "night": night.name,
        "station": night.station,
        "frames": len(frames),
        "clustered": int(clustered.sum()),
        "flags": {f: int(getattr(flags, f)[night.rows].sum()) for f in FLAGS},
        "too_dark": _within(screened.too_dark, night.times, settings.scan.gap_s),
        "events": len(found),
        "onsets": sum(e.onset for e in found),
        "labels": assigned[assigned >= 0],
    }


def _within(times: np.ndarray, night: np.ndarray, gap_s: float) -> int:
    """How many of ``times`` fall in the night's span, widened by the gap on both sides."""
    if not len(times) or not len(night):
        return 0
    gap = np.timedelta64(int(gap_s * 1000), "ms")
    return int(((times >= night.min() - gap) & (times <= night.max() + gap)).sum())


def _season(path: Path, per_night: list[dict[str, Any]], n_groups: int) -> None:
    """The season overview figure: frames, groups and flags per night."""
    frames = np.array([p["frames"] for p in per_night], np.float64)
    counts = np.array([p["group_counts"] for p in per_night], np.float64).reshape(
        len(per_night), n_groups
    )
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    flags = np.array([[p["flags"][f] for f in FLAGS] for p in per_night], np.float64)
    fig = season_figure(
        [p["night"] for p in per_night],
        frames,
        share,
        flags / np.maximum(frames[:, None], 1),
        list(FLAGS),
    )
    save_figure(fig, path)
