"""Figures of the nights: one night's panel (keogram, group strip, activity, events) and a
season overview (frames, groups and screening flags per night). Matplotlib, Agg canvas, PNG.

The panel's time axis is UT; frames closer together than ``gap_cadences`` times the night's
median cadence form runs, each drawn over its own time span, so the time between runs (the
camera off, frames screened out) stays blank instead of being stretched over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aurora.infra.errors import SettingsError
from aurora.nights.events import Event

#: Largest number of keogram rows drawn (taller keograms are sampled evenly).
MAX_ROWS = 800
UNASSIGNED = (0.85, 0.85, 0.85, 1.0)


def default_colours(k: int) -> np.ndarray:
    """(k, 4) RGBA group colours (tab10, then tab20b and tab20c, cycled)."""
    base: list[tuple[float, ...]] = []
    for name in ("tab10", "tab20b", "tab20c"):
        cmap = colormaps[name]
        base.extend(cmap(i) for i in range(cmap.N))
    return np.array([base[i % len(base)] for i in range(max(k, 0))]).reshape(-1, 4)


def runs(times_s: np.ndarray, gap_cadences: float) -> list[tuple[int, int]]:
    """[start, stop) index ranges of frames no more than ``gap_cadences`` median cadences apart."""
    if times_s.size == 0:
        return []
    dt = np.diff(times_s)
    cadence = float(np.median(dt)) if dt.size else 1.0
    cuts = np.flatnonzero(dt > gap_cadences * max(cadence, 1e-9)) + 1
    edges = [0, *cuts.tolist(), times_s.size]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _display(keogram: np.ndarray) -> tuple[np.ndarray, dict[str, object]]:
    """The keogram as drawn (rows sampled, colour scaled to [0, 1]) and imshow's options."""
    k = keogram[:: max(1, -(-keogram.shape[0] // MAX_ROWS))].astype(np.float64)
    finite = k[np.isfinite(k)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    if k.ndim == 3:
        return np.clip((k - lo) / (hi - lo), 0, 1), {}
    return k, {"cmap": "gray", "vmin": lo, "vmax": hi}


def _spans(x: np.ndarray, parts: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """The x extent of each run: half a cadence beyond its first and last frame."""
    half = float(np.median(np.diff(x))) / 2 if x.size > 1 else 1 / 86400
    return [(x[a] - half, x[b - 1] + half) for a, b in parts]


def _group_strip(
    ax: Axes,
    groups: np.ndarray,
    parts: list[tuple[int, int]],
    spans: list[tuple[float, float]],
    colours: np.ndarray | None,
) -> None:
    """Draw the (T,) groups as a colour strip, run by run, on ``ax``."""
    pal = (
        default_colours(int(groups.max()) + 1 if groups.size else 0) if colours is None else colours
    )
    rgba = np.array([pal[v] if v >= 0 else UNASSIGNED for v in groups]).reshape(1, -1, 4)
    for (a, b), (x0, x1) in zip(parts, spans, strict=True):
        ax.imshow(rgba[:, a:b], extent=(x0, x1, 0, 1), aspect="auto", interpolation="nearest")
    ax.set_yticks([])
    ax.set_ylabel("group", rotation=0, ha="right", va="center")


def night_figure(
    keogram: np.ndarray,
    times: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    activity: np.ndarray | None = None,
    events: Sequence[Event] = (),
    title: str = "",
    gap_cadences: float = 3.0,
    colours: np.ndarray | None = None,
) -> Figure:
    """One night's panel.

    Args:
        keogram: (L, T) or (L, T, C), row 0 = north.
        times: (T,) datetime64 UTC (frames with NaT are left out).
        groups: (T,) fused group of every frame (-1 = unassigned), drawn as a colour strip.
        activity: (T,) activity curve (NaN where undefined).
        events: the night's events; a dashed line at each start, a red one at each onset.
        title: the figure's title (e.g. the night's name).
        gap_cadences: a gap longer than this many median cadences is left blank.
        colours: (K, 4) RGBA per group (default :func:`default_colours`).
    """
    if gap_cadences <= 0:
        raise SettingsError("gap_cadences", gap_cadences, "a number > 0")
    t64 = np.asarray(times).astype("datetime64[ms]")
    keep = ~np.isnat(t64)
    order = np.argsort(t64[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    x = mdates.date2num(t64[idx])
    parts = runs(x * 86400.0, gap_cadences)
    spans = _spans(x, parts)
    rows = [3.0] + ([0.35] if groups is not None else []) + ([1.2] if activity is not None else [])
    fig = Figure(figsize=(12, 1.2 + 1.1 * sum(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, sharex=True, gridspec_kw={"height_ratios": rows})
    axes = np.atleast_1d(axes)
    ax = axes[0]
    data, opts = _display(keogram[:, idx])
    nrow = data.shape[0]
    for (a, b), (x0, x1) in zip(parts, spans, strict=True):
        ax.imshow(
            data[:, a:b],
            extent=(x0, x1, nrow - 0.5, -0.5),
            origin="upper",
            aspect="auto",
            interpolation="nearest",
            **opts,
        )
    ax.set_ylim(nrow - 0.5, -0.5)  # row 0 (north) at the top
    ax.set_yticks([0, nrow - 1], ["N", "S"])
    ax.set_ylabel("meridian")
    if title:
        ax.set_title(title)
    axis = 1
    if groups is not None:
        _group_strip(axes[axis], np.asarray(groups)[idx], parts, spans, colours)
        axis += 1
    if activity is not None:
        act = np.asarray(activity, dtype=np.float64)[idx]
        for a, b in parts:
            axes[axis].plot(x[a:b], act[a:b], color="k", lw=0.8)
        axes[axis].set_ylabel("activity")
    for e in events[1:]:
        at = mdates.date2num(np.datetime64(e.start.astimezone(UTC).replace(tzinfo=None), "ms"))
        style = {"color": "red", "lw": 1.6, "ls": "-"} if e.onset else {"color": "0.3", "lw": 0.7}
        for axx in axes:
            axx.axvline(at, **({"ls": "--"} | style))
    if x.size:
        axes[0].set_xlim(spans[0][0], spans[-1][1])
    # Ticks at round times; seconds shown only when the night is shorter than 10 minutes.
    short = x.size > 0 and (x[-1] - x[0]) * 86400.0 < 600.0
    axes[-1].xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=12))
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M"))
    day = str(t64[idx[0]])[:10] if idx.size else ""
    axes[-1].set_xlabel(f"UT {day}".strip())
    return fig


def season_figure(
    nights: Sequence[str],
    frames: np.ndarray,
    group_share: np.ndarray,
    flag_share: np.ndarray,
    flag_names: Sequence[str],
    *,
    colours: np.ndarray | None = None,
) -> Figure:
    """Season overview: per night its frames, the share of each group and of each flag.

    Args:
        nights: (n,) night names.
        frames: (n,) frames per night.
        group_share: (n, G) share of each fused group among the night's clustered frames.
        flag_share: (n, F) share of the night's frames carrying each screening flag.
        flag_names: (F,) the flags' names.
        colours: (G, 4) RGBA per group (default :func:`default_colours`).
    """
    n = len(nights)
    gs, fs = np.asarray(group_share, float).reshape(n, -1), np.asarray(flag_share, float)
    fs = fs.reshape(n, -1)
    if len(frames) != n or fs.shape[1] != len(flag_names):
        raise SettingsError("season_figure", (len(frames), fs.shape), "one row per night")
    pal = default_colours(gs.shape[1]) if colours is None else colours
    fig = Figure(figsize=(max(6.0, 0.5 * n + 3), 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_g, ax_f = fig.subplots(2, 1, sharex=True)
    pos = np.arange(n)
    bottom = np.zeros(n)
    for g in range(gs.shape[1]):
        ax_g.bar(pos, gs[:, g], bottom=bottom, color=pal[g], label=f"group {g}")
        bottom += gs[:, g]
    for p, count in zip(pos, frames, strict=True):
        ax_g.text(p, 1.01, str(int(count)), ha="center", va="bottom", fontsize=7)
    ax_g.set_ylim(0, 1.1)
    ax_g.set_ylabel("share of frames\n(frames on top)")
    if 0 < gs.shape[1] <= 20:  # no group (nothing grouped yet): no legend to draw
        ax_g.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=7)
    width = 0.8 / max(len(flag_names), 1)
    for f, name in enumerate(flag_names):
        ax_f.bar(pos - 0.4 + width * (f + 0.5), fs[:, f], width=width, label=name)
    ax_f.set_ylim(0, 1)
    ax_f.set_ylabel("share flagged")
    if flag_names:
        ax_f.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=7)
    ax_f.set_xticks(pos, list(nights), rotation=60, ha="right", fontsize=7)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG to ``path`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
