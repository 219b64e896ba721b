"""Events of a night: change points of its features and group sequence, and onset candidates.

Signal. The night's features are centred and reduced by PCA to ``pca_dims`` components, scaled
so that their total variance is 1; beside them, for each fused group, its share of the frames
within ``group_smooth_s / 2`` seconds of the frame (unassigned frames count in no group),
multiplied by ``group_weight``: a few stray frames do not make an event, and two groups that
alternate frame by frame (one kind of sky split in two clusters) read as one steady mixture,
not as many short events (without features: the one-hot code of the majority group over that
window, exactly piecewise constant). Segments of that (T, pca_dims + G) signal of least squared
deviation are the events (``ruptures.Pelt``, cost ``model``). With ``model`` "trend" (the
default) each feature may follow a straight line in time inside a segment, each group share is
constant: an arc that brightens or drifts for half an hour is one event, a jump is a boundary
(``aurora.nights.boundaries.trend_cost``); "l2" etc. are piecewise-constant ``ruptures`` costs.

Penalty (a BIC-like rule): a change point is kept when it lowers the cost by more than
``penalty * (p + 1) * sigma2 * log(T)``: p parameters per extra segment (with "trend" a mean
and a slope per feature and a mean per group share; else one mean per dimension) and its
start; sigma2 the noise variance of a feature dimension, estimated from the differences
between frames one shortest event apart (median absolute deviation, robust to the jumps
themselves: what varies faster than an event is noise), and at least the sampling variance
of a group share, ``group_weight^2 / (4 n)`` with n the mean number of frames in the group
window (a share of 1/2 estimated from n frames). The shortest event is ``min_event_s``
seconds (default: the width of the group window), in frames at the night's median cadence
(at least 3 with "trend"). Defaults chosen by these rules, not fitted to the YRS labels
(bench/bench_events.py measures them there, bench/bench_night_synth.py on the synthetic night).

Event (a row of ``events.csv``): ``night``; ``start`` and ``end``, the times of its first and
last frame (ISO 8601, UTC); ``duration_s = end - start``; ``group``, its most frequent fused
group (-1 = unassigned) and ``share``, that group's fraction of its frames; ``activity_mean``
and ``activity_peak`` (NaN where the activity is undefined), ``peak_time``; ``onset`` 0/1.

Onset candidate (breakup-like: a sudden rise of brightness and activity into an active group).
An event other than the night's first is one when all of:

1. its dominant group is active: the night's groups ranked by mean activity over their
   frames, it is in the top ``active_fraction`` of them (at least one group);
2. the peak activity within its first ``onset_window_s`` seconds is at least
   ``onset_activity_ratio`` times the night's median activity (the windowed change peaks at
   every boundary, so a preceding event's own mean is no steady reference);
3. (only when a brightness curve is given) its mean brightness over its first
   ``onset_window_s`` seconds is at least ``onset_brightness_ratio`` times the preceding
   event's mean brightness.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aurora.infra.errors import SettingsError
from aurora.nights.boundaries import change_points

#: Columns of ``events.csv``, in order.
EVENT_COLUMNS = (
    "night",
    "start",
    "end",
    "duration_s",
    "group",
    "share",
    "activity_mean",
    "activity_peak",
    "peak_time",
    "onset",
)
_MODELS = ("trend", "l2", "l1", "rbf", "normal")


@dataclass(frozen=True)
class EventSettings:
    """Parameters of the event segmentation and the onset criterion (module doc)."""

    pca_dims: int = 5
    group_weight: float = 1.0
    group_smooth_s: float = 120.0
    min_event_s: float = 120.0
    penalty: float = 1.0
    model: str = "trend"
    onset_window_s: float = 300.0
    onset_activity_ratio: float = 1.5
    onset_brightness_ratio: float = 1.2
    active_fraction: float = 0.34

    def __post_init__(self) -> None:
        if isinstance(self.pca_dims, bool) or not isinstance(self.pca_dims, int):
            raise SettingsError("nights.events.pca_dims", self.pca_dims, "an integer >= 0")
        if self.pca_dims < 0:
            raise SettingsError("nights.events.pca_dims", self.pca_dims, "an integer >= 0")
        if self.model not in _MODELS:
            raise SettingsError("nights.events.model", self.model, f"one of {_MODELS}")
        for name in ("group_weight", "group_smooth_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise SettingsError(f"nights.events.{name}", v, "a finite number >= 0")
        for name in ("min_event_s", "penalty", "onset_window_s", "onset_activity_ratio"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise SettingsError(f"nights.events.{name}", v, "a finite number > 0")
        v = self.onset_brightness_ratio
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise SettingsError("nights.events.onset_brightness_ratio", v, "a number > 0")
        if not 0 < self.active_fraction <= 1:
            raise SettingsError("nights.events.active_fraction", self.active_fraction, "(0, 1]")
        if self.pca_dims == 0 and self.group_weight == 0:
            raise SettingsError("nights.events.pca_dims", 0, ">= 1 when group_weight is 0")


@dataclass(frozen=True)
class Event:
    """One event of a night (a row of ``events.csv``; the module doc defines each field)."""

    night: str
    start: datetime
    end: datetime
    duration_s: float
    group: int
    share: float
    activity_mean: float
    activity_peak: float
    peak_time: datetime | None
    onset: int


def epoch_seconds(times: Sequence[datetime] | np.ndarray) -> np.ndarray:
    """(T,) float64 seconds since 1970 UTC of datetimes (naive = UTC) or datetime64 values."""
    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return np.array([(t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() for t in times])


def majority_smooth(groups: np.ndarray, seconds: np.ndarray, width_s: float) -> np.ndarray:
    """(T,) the most frequent label (-1 counts as a label) among the frames within
    ``width_s / 2`` seconds of each frame; a tie keeps the frame's own label when it is among
    the most frequent, else the smallest. ``seconds`` must be sorted."""
    groups = np.asarray(groups)  # any labels (ints, class names)
    if width_s <= 0 or groups.size == 0:
        return groups.copy()
    values, codes = np.unique(groups, return_inverse=True)
    onehot = np.zeros((groups.size, values.size))
    onehot[np.arange(groups.size), codes] = 1.0
    c = np.concatenate([np.zeros((1, values.size)), np.cumsum(onehot, axis=0)])
    lo = np.searchsorted(seconds, seconds - width_s / 2, side="left")
    hi = np.searchsorted(seconds, seconds + width_s / 2, side="right")
    counts = c[hi] - c[lo] + 0.5 * onehot  # own label wins a tie
    return values[np.argmax(counts, axis=1)]


def group_onehot(groups: np.ndarray) -> np.ndarray:
    """(T, G) one-hot of ``groups`` (labels 0..G-1; -1 = all zeros)."""
    groups = np.asarray(groups, dtype=np.int64)
    g = int(groups.max()) + 1 if groups.size and groups.max() >= 0 else 0
    onehot = np.zeros((groups.size, g))
    known = groups >= 0
    onehot[np.flatnonzero(known), groups[known]] = 1.0
    return onehot


def group_shares(groups: np.ndarray, seconds: np.ndarray, width_s: float) -> np.ndarray:
    """(T, G) each group's share of the frames within ``width_s / 2`` seconds of each frame
    (labels 0..G-1; -1 counts in the frames, in no group). ``seconds`` must be sorted."""
    onehot = group_onehot(groups)
    if width_s <= 0 or onehot.size == 0:
        return onehot
    c = np.concatenate([np.zeros((1, onehot.shape[1])), np.cumsum(onehot, axis=0)])
    lo = np.searchsorted(seconds, seconds - width_s / 2, side="left")
    hi = np.searchsorted(seconds, seconds + width_s / 2, side="right")
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def share_variance(groups: np.ndarray | None, seconds: np.ndarray, s: EventSettings) -> float:
    """Sampling variance of a group share, ``group_weight^2 / (4 n)`` with n the mean number of
    frames in the group window (a share of 1/2 from n frames; 0 without groups)."""
    if groups is None or s.group_weight == 0 or s.group_smooth_s <= 0 or len(seconds) == 0:
        return 0.0
    lo = np.searchsorted(seconds, seconds - s.group_smooth_s / 2, side="left")
    hi = np.searchsorted(seconds, seconds + s.group_smooth_s / 2, side="right")
    return s.group_weight**2 / (4 * float(np.mean(hi - lo)))


def event_signal(
    features: np.ndarray | None, groups: np.ndarray | None, seconds: np.ndarray, s: EventSettings
) -> np.ndarray:
    """(T, D) signal whose change points are the events (module doc)."""
    parts = []
    if features is not None and s.pca_dims > 0:
        f = np.asarray(features, dtype=np.float64)
        f = f - f.mean(axis=0)
        _, sv, vt = np.linalg.svd(f, full_matrices=False)
        k = min(s.pca_dims, vt.shape[0])
        scores = f @ vt[:k].T
        total = float(np.sqrt((sv[:k] ** 2).sum() / max(len(f), 1)))
        parts.append(scores / total if total > 0 else scores)
    if groups is not None and s.group_weight > 0:
        if parts:
            shares = group_shares(groups, seconds, s.group_smooth_s)
        else:  # no feature noise to hold the shares' ramps against: piecewise constant codes
            shares = group_onehot(majority_smooth(groups, seconds, s.group_smooth_s))
        parts.append(s.group_weight * shares)
    if not parts:
        raise SettingsError("features, groups", None, "at least one of them for the signal")
    return np.hstack(parts)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def active_groups(groups: np.ndarray, activity: np.ndarray, fraction: float) -> set[int]:
    """The night's groups (>= 0) whose mean activity is in the top ``fraction`` of them."""
    means = {}
    for g in np.unique(groups[groups >= 0]):
        m = _nanmean(activity[groups == g])
        if math.isfinite(m):
            means[int(g)] = m
    if not means:
        return set()
    n = max(1, int(math.ceil(fraction * len(means))))
    return set(sorted(means, key=lambda g: -means[g])[:n])


def _is_onset(
    seg: slice,
    prev: slice,
    seconds: np.ndarray,
    activity: np.ndarray,
    brightness: np.ndarray | None,
    s: EventSettings,
) -> bool:
    """Criteria 2 and 3 of the module doc for the event ``seg`` after the event ``prev``."""
    first = np.arange(seg.start, seg.stop)
    first = first[seconds[first] - seconds[seg.start] <= s.onset_window_s]
    typical = float(np.nanmedian(activity)) if np.isfinite(activity).any() else math.nan
    peak = activity[first]
    peak = float(np.nanmax(peak)) if np.isfinite(peak).any() else math.nan
    if not (math.isfinite(typical) and math.isfinite(peak)):
        return False
    if peak < s.onset_activity_ratio * typical:
        return False
    if brightness is None:
        return True
    before, after = _nanmean(brightness[prev]), _nanmean(brightness[first])
    return math.isfinite(before) and after >= s.onset_brightness_ratio * before


def find_events(
    night: str,
    times: Sequence[datetime] | np.ndarray,
    *,
    features: np.ndarray | None,
    groups: np.ndarray | None,
    activity: np.ndarray | None = None,
    brightness: np.ndarray | None = None,
    settings: EventSettings = EventSettings(),
) -> list[Event]:
    """The events of one night (module doc).

    Args:
        night: the night's name.
        times: (T,) the frames' times (datetimes or datetime64), in time order.
        features: (T, D) the frames' features, or None (groups only).
        groups: (T,) int fused group of each frame (-1 = unassigned), or None (features only).
        activity: (T,) the activity curve (NaN where undefined), or None.
        brightness: (T,) the mean sky brightness of each frame, or None (criterion 3 skipped).
        settings: segmentation and onset parameters.

    Returns:
        The events in time order, covering every frame once.
    """
    seconds = epoch_seconds(times)
    t = len(seconds)
    if t == 0:
        return []
    if np.any(np.diff(seconds) < 0):
        raise SettingsError("times", "unsorted", "the night's frames in time order")
    for name, arr in (("features", features), ("groups", groups), ("activity", activity)):
        if arr is not None and len(arr) != t:
            raise SettingsError(name, len(arr), f"one entry per frame ({t})")
    grp = np.full(t, -1, dtype=np.int64) if groups is None else np.asarray(groups, np.int64)
    act = np.full(t, np.nan) if activity is None else np.asarray(activity, np.float64)
    bri = None if brightness is None else np.asarray(brightness, np.float64)
    signal = event_signal(features, groups, seconds, settings)
    n_feat = min(settings.pca_dims, *np.shape(features)) if features is not None else 0
    found = change_points(
        signal,
        seconds,
        n_features=n_feat,
        share_variance=share_variance(groups, seconds, settings),
        min_event_s=settings.min_event_s,
        penalty=settings.penalty,
        model=settings.model,
    )
    bounds = [0, *found.tolist(), t]
    active = active_groups(grp, act, settings.active_fraction)
    stamp = [datetime.fromtimestamp(x, UTC) for x in seconds]
    events: list[Event] = []
    for k in range(len(bounds) - 1):
        seg = slice(bounds[k], bounds[k + 1])
        values, counts = np.unique(grp[seg], return_counts=True)
        dominant = int(values[np.argmax(counts)])
        a = act[seg]
        defined = np.isfinite(a)
        peak_i = seg.start + int(np.nanargmax(a)) if defined.any() else None
        onset = (
            k > 0
            and dominant in active
            and _is_onset(seg, slice(bounds[k - 1], bounds[k]), seconds, act, bri, settings)
        )
        events.append(
            Event(
                night=night,
                start=stamp[seg.start],
                end=stamp[seg.stop - 1],
                duration_s=float(seconds[seg.stop - 1] - seconds[seg.start]),
                group=dominant,
                share=float(counts.max() / counts.sum()),
                activity_mean=_nanmean(a),
                activity_peak=float(a[peak_i - seg.start]) if peak_i is not None else math.nan,
                peak_time=stamp[peak_i] if peak_i is not None else None,
                onset=int(onset),
            )
        )
    return events


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_events_csv(events: Sequence[Event], path: str | Path) -> None:
    """Write ``events.csv`` (columns :data:`EVENT_COLUMNS`; times ISO 8601 UTC, NaN empty)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EVENT_COLUMNS)
        for e in events:
            w.writerow([_fmt(getattr(e, c)) for c in EVENT_COLUMNS])


def read_events_csv(path: str | Path) -> list[Event]:
    """Read an ``events.csv`` written by :func:`write_events_csv`."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kw: dict[str, object] = {}
            for c in EVENT_COLUMNS:
                v = row[c]
                if c in ("start", "end", "peak_time"):
                    kw[c] = datetime.fromisoformat(v) if v else None
                elif c in ("group", "onset"):
                    kw[c] = int(v)
                elif c == "night":
                    kw[c] = v
                else:
                    kw[c] = float(v) if v else math.nan
            out.append(Event(**kw))  # type: ignore[arg-type]
    return out
