"""The preprocessing figure: originals (sky circle, Moon, edge glare marked) beside their
preprocessed versions."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from aurora.data import sources
from aurora.preprocess.chain import preprocess_image
from aurora.preprocess.config import PreprocessConfig
from aurora.preprocess.pixels import to_uint8


def _read_any(path: Path) -> list[tuple[str, np.ndarray]]:
    """Images of ``path`` for the figure: a file, the first frame of a multi-frame file (CDF,
    THEMIS stream0 ``.pgm[.gz]``), or a folder."""
    if path.is_dir() or path.suffix.lower() in (".cdf", ".gz", ".bz2", ".pgm", ".pnm"):
        # Multi-frame files (CDF, THEMIS stream0): scan the file itself, first frame only.
        manifest = sources.scan(path)
        recs = manifest.records if path.is_dir() else manifest.records[:1]
        out = []
        for r in recs:
            try:
                out.append((r.id, sources.read_image(r)))
            except sources.ImageReadError as err:
                print(f"not drawn: {r.id}: {err}")
        out_rejected = [f"not drawn: {r.path}: {r.reason}" for r in manifest.rejected]
        print(*out_rejected, sep="\n", end="\n" if out_rejected else "")
        return out
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return []  # not an image (e.g. a README beside the images): nothing to draw
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return [(path.name, img)]


def show(paths: list[Path], out: Path, cfg: PreprocessConfig) -> None:
    """Draw originals (circle, Moon in red, edge glare dashed orange) beside their preprocessed
    versions (titled with the Moon, glare and twilight flags).

    Args:
        paths: image files.
        out: PNG file to write.
        cfg: chain settings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    items = [item for p in paths for item in _read_any(Path(p))]
    cols = 4  # two (original, preprocessed) pairs per row
    rows = max(1, math.ceil(len(items) / 2))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (name, raw) in enumerate(items):
        a0, a1 = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        rgb = to_uint8(raw, cfg.u16_percentiles)
        res = preprocess_image(raw, cfg)
        a0.imshow(rgb)
        a0.set_title(name, fontsize=7)
        c = res.circle
        if math.isfinite(c.r):
            a0.add_patch(Circle((c.cx, c.cy), c.r, fill=False, color="cyan", lw=1))
            a0.plot([c.cx], [c.cy], "c+")
        if res.moon.present:
            m = res.moon
            a0.add_patch(
                Circle((m.x, m.y), max(m.r * 2, 0.02 * c.r), fill=False, color="red", lw=1.2)
            )
        if res.glare.present:
            g = res.glare
            a0.add_patch(Circle((g.x, g.y), g.r, fill=False, color="orange", lw=1.2, ls="--"))
        flags = [
            f"moon={'yes' if res.moon.present else 'no'}",
            *(["glare"] if res.glare.present else []),
            *(["twilight"] if res.twilight else []),
        ]
        if res.image is not None:
            a1.imshow(res.image)
            a1.set_title(" ".join(flags), fontsize=7)
        else:
            a1.text(
                0.5,
                0.5,
                f"rejected:\n{res.rejected}",
                ha="center",
                va="center",
                fontsize=7,
                wrap=True,
                transform=a1.transAxes,
            )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
