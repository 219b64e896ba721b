"""Figures of the report (matplotlib, Agg canvas; no pyplot state) and montage sheets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from aurora.grid.scoring import n_groups

UNASSIGNED_RGBA = (0.62, 0.62, 0.62, 1.0)
_INDICES: tuple[tuple[str, str], ...] = (
    ("silhouette", "silhouette ↑"),
    ("calinski_harabasz", "Calinski–Harabasz ↑"),
    ("davies_bouldin", "Davies–Bouldin ↓"),
    ("stability_ari", "stability (ARI) ↑"),
)


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG."""
    path = Path(path)
    fig.savefig(path, format="png", facecolor="white")
    return path


def group_colours(k: int) -> np.ndarray:
    """(k, 4) RGBA, distinct for up to 60 groups (tab20, tab20b, tab20c), then hue steps."""
    from matplotlib import colormaps

    base: list[tuple[float, ...]] = []
    for name in ("tab10", "tab20b", "tab20c", "Dark2", "Set1"):
        cmap = colormaps[name]
        base.extend(cmap(i) for i in range(cmap.N))
    base = [c for c in base if abs(c[0] - c[1]) + abs(c[1] - c[2]) > 0.05]  # no greys
    if k <= len(base):
        return np.asarray(base[:k])
    hsv = colormaps["hsv"]
    return np.asarray([hsv(i / k) for i in range(k)])


def colour_of(label: int, colours: np.ndarray) -> tuple[float, ...]:
    """RGBA of a group label (-1 = unassigned grey)."""
    return UNASSIGNED_RGBA if label < 0 else tuple(colours[label])


def hex_colour(rgba: Sequence[float]) -> str:
    """``#rrggbb`` of an RGBA tuple."""
    r, g, b = (int(round(255 * float(v))) for v in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def montage_sheet(thumbs: np.ndarray, cols: int = 8, gap: int = 2) -> np.ndarray:
    """Thumbnails (m, s, s, 3) on a grid with dark gaps -> (H, W, 3) uint8."""
    m, s = len(thumbs), thumbs.shape[1]
    cols = max(1, cols)  # fixed width: a small group's pictures keep the same scale
    rows = max(1, -(-m // cols))
    sheet = np.full((rows * (s + gap) + gap, cols * (s + gap) + gap, 3), 24, np.uint8)
    for k in range(m):
        r, c = divmod(k, cols)
        y, x = gap + r * (s + gap), gap + c * (s + gap)
        sheet[y : y + s, x : x + s] = thumbs[k]
    return sheet


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array as PNG."""
    from PIL import Image

    path = Path(path)
    Image.fromarray(image).save(path, format="PNG", optimize=True)
    return path


def plot_map(
    map2d: np.ndarray,
    labels: np.ndarray,
    centres: Mapping[int, int],
    shown: np.ndarray,
    caption: str,
    references: np.ndarray | None = None,
) -> Figure:
    """Scatter of the 2-D map coloured by group, group numbers at their central images.

    Args:
        map2d: (N, 2) coordinates.
        labels: (N,) groups, -1 unassigned.
        centres: group -> index of its image nearest the group centre (labelled on the map).
        shown: indices of the images in the montages (outlined: the "reference" pictures).
        caption: how the map was made (x/y axis meaning).
        references: (N,) bool labelled reference images (drawn as stars), or None.
    """
    k = n_groups(labels)
    colours = group_colours(k)
    fig = _figure(8.0, 6.6)
    ax = fig.add_subplot()
    n = len(labels)
    size = float(np.clip(4000.0 / max(n, 1), 1.0, 30.0))
    un = labels < 0
    if un.any():
        ax.scatter(
            *map2d[un].T,
            s=size,
            c=[UNASSIGNED_RGBA],
            lw=0,
            alpha=0.5,
            rasterized=True,
            label=f"unassigned ({int(un.sum())})",
        )
    if k:
        ax.scatter(*map2d[~un].T, s=size, c=colours[labels[~un]], lw=0, alpha=0.8, rasterized=True)
    if len(shown):
        ax.scatter(
            *map2d[shown].T,
            s=size * 2.5 + 8,
            facecolors="none",
            edgecolors="black",
            lw=0.6,
            label="images shown in the montages",
        )
    if references is not None and references.any():
        ax.scatter(
            *map2d[references].T,
            s=size * 4 + 30,
            marker="*",
            c="gold",
            edgecolors="black",
            lw=0.6,
            zorder=3,
            label=f"labelled reference images ({int(references.sum())})",
        )
    _number_groups(ax, map2d, centres, colours)
    ax.set_xlabel("map axis 1")
    ax.set_ylabel("map axis 2")
    ax.set_title(f"Embedding map: {k} groups, {n} images\n({caption})", fontsize=10)
    if un.any() or len(shown) or (references is not None and references.any()):
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    return fig


def _number_groups(
    ax: Axes, map2d: np.ndarray, centres: Mapping[int, int], colours: np.ndarray
) -> None:
    """Write each group's number on the map at its central image.

    Args:
        ax: the map's axes.
        map2d: (N, 2) coordinates.
        centres: group -> index of its image nearest the group centre (-1 skipped).
        colours: (K, 4) RGBA of the groups.
    """
    for g, i in centres.items():
        if g < 0:
            continue
        ax.annotate(
            str(g),
            map2d[i],
            fontsize=8,
            ha="center",
            va="center",
            weight="bold",
            color="black",
            bbox={
                "boxstyle": "round,pad=0.15",
                "fc": to_rgba(colours[g], 0.85),
                "ec": "black",
                "lw": 0.5,
            },
        )


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def plot_ranking(rows: Sequence[Mapping[str, Any]], highlight: str | None = None) -> Figure | None:
    """The four internal indices of every grid cell, cells in rank order.

    Args:
        rows: ranked cells (``ranking.csv`` rows: ``cell``, ``extractor`` and the indices).
        highlight: cell name to mark (the solution cell).
    """
    if not rows:
        return None
    extractors = list(dict.fromkeys(str(r.get("extractor", "")) for r in rows))
    pal = group_colours(len(extractors))
    colour = {e: pal[i] for i, e in enumerate(extractors)}
    x = np.arange(1, len(rows) + 1)
    fig = _figure(max(7.0, min(16.0, 0.22 * len(rows) + 4)), 7.2)
    axes = fig.subplots(len(_INDICES), 1, sharex=True)
    for ax, (key, title) in zip(axes, _INDICES, strict=True):
        vals = np.array([_float(r.get(key)) for r in rows])
        ax.bar(
            x,
            np.nan_to_num(vals),
            color=[colour[str(r.get("extractor", ""))] for r in rows],
            width=0.8,
        )
        ax.set_ylabel(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if highlight is not None:
            for xi, r in zip(x, rows, strict=True):
                if r.get("cell") == highlight:
                    ax.axvspan(xi - 0.5, xi + 0.5, color="gold", alpha=0.35, lw=0)
    axes[-1].set_xlabel("grid cell, in Borda rank order (1 = best)")
    if len(rows) <= 40:
        axes[-1].set_xticks(x, [str(r.get("cell", "")) for r in rows], rotation=90, fontsize=7)
    handles = [Patch(color=colour[e], label=e or "?") for e in extractors]
    fig.legend(
        handles=handles, fontsize=8, ncols=min(len(extractors), 6), loc="outside upper right"
    )
    axes[0].set_xlim(0.4, len(rows) + 0.6)
    fig.suptitle(
        "Internal indices of the grid cells, coloured by extractor (gold band: the solution cell)",
        fontsize=10,
        x=0.01,
        ha="left",
    )
    return fig


def plot_timeline(times: Sequence[datetime | None], labels: np.ndarray) -> Figure | None:
    """Group occurrence against time, and the images per time bin stacked by group.

    Returns None when no timestamp is known.
    """
    import matplotlib.dates as mdates

    known = np.array([t is not None for t in times])
    if not known.any():
        return None
    t = mdates.date2num([times[i] for i in np.flatnonzero(known)])
    lab = np.asarray(labels)[known]
    k = n_groups(labels)
    colours = group_colours(k)
    fig = _figure(10.0, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    rgba = np.array([colour_of(int(g), colours) for g in lab])
    tick = float(np.clip(1500.0 / (k + 1) ** 2, 4.0, 60.0))  # ticks never reach the next row
    top.scatter(t, lab, c=rgba, marker="|", s=tick, lw=1.0, rasterized=True)
    top.set_ylabel("group (−1 = unassigned)")
    step = max(1, -(-(k + 1) // 25))
    top.set_yticks(np.arange(-1, k, step))
    top.set_ylim(-1.7, max(k, 1) - 0.3)
    top.grid(axis="x", alpha=0.3)
    top.set_title(f"Group occurrence against time (UTC), {int(known.sum())} images", fontsize=10)
    span = float(t.max() - t.min())
    nbins = int(np.clip(len(t) // 8, 1, 60))
    edges = np.linspace(t.min(), t.max() + max(span, 1e-3) * 1e-6, nbins + 1)
    base = np.zeros(nbins)
    for g in [*range(k), -1]:
        counts, _ = np.histogram(t[lab == g], bins=edges)
        if counts.any():
            bottom.bar(
                edges[:-1],
                counts,
                width=np.diff(edges),
                bottom=base,
                align="edge",
                color=colour_of(g, colours),
                lw=0,
            )
            base += counts
    bottom.set_ylabel("images per bin")
    bottom.set_xlabel("time (UTC)")
    loc = mdates.AutoDateLocator()
    bottom.xaxis.set_major_locator(loc)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    return fig
