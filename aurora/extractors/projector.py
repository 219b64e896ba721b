"""Export feature sets (and labellings) to the TensorBoard embedding projector.

Layout under ``log_dir``::

    projector_config.pbtxt      one ``embeddings { ... }`` block per tag (merged, not replaced)
    <tag>/tensors.tsv           (N, D) features, tab-separated
    <tag>/metadata.tsv          header row ``index<TAB>path<TAB>...`` then one row per point
    <tag>/sprite.png            thumbnails on a square grid (at most 8192 px a side)

``tensorboard --logdir LOG_DIR`` then shows the points with their pictures under the
Projector tab. More label columns (cluster labels of a later run) are added with
:func:`add_projector_labels` without rewriting the tensors.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aurora.infra.atomic import atomic_write_bytes, atomic_write_text

CONFIG_NAME = "projector_config.pbtxt"
#: TensorBoard refuses sprites larger than this many pixels a side.
MAX_SPRITE_PX = 8192


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "isoformat"):  # datetime
        value = value.isoformat()
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _write_metadata(path: Path, columns: Mapping[str, Sequence[Any]], n: int) -> None:
    names = list(columns)
    for name in names:
        if len(columns[name]) != n:
            raise ValueError(
                f"projector metadata column '{name}' has {len(columns[name])} values for {n} points"
            )
    lines = ["\t".join(_cell(c) for c in names)]
    cols = [columns[c] for c in names]
    lines += ["\t".join(_cell(col[i]) for col in cols) for i in range(n)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_metadata(path: str | Path) -> dict[str, list[str]]:
    """Read a projector ``metadata.tsv`` back into ``{column: values}`` (all strings)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    return {name: [r[j] if j < len(r) else "" for r in body] for j, name in enumerate(header)}


def _sprite(thumbnails: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    """PNG bytes of the sprite grid and the (width, height) of one cell."""
    from PIL import Image

    n, h, w = thumbnails.shape[:3]
    grid = math.ceil(math.sqrt(n))
    scale = min(1.0, MAX_SPRITE_PX / (grid * max(h, w)))
    ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
    sheet = np.zeros((grid * ch, grid * cw, 3), dtype=np.uint8)
    for i in range(n):
        img = thumbnails[i]
        if (ch, cw) != (h, w):
            img = np.asarray(Image.fromarray(img).resize((cw, ch), Image.BILINEAR))
        r, c = divmod(i, grid)
        sheet[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = img
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    return buf.getvalue(), (cw, ch)


def _as_uint8_rgb(thumbnails: np.ndarray, n: int) -> np.ndarray:
    t = np.asarray(thumbnails)
    if t.ndim == 3:  # greyscale
        t = np.repeat(t[..., None], 3, axis=-1)
    if t.ndim != 4 or t.shape[0] != n or t.shape[-1] != 3:
        raise ValueError(f"projector thumbnails must be ({n}, h, w, 3) images, got shape {t.shape}")
    if t.dtype != np.uint8:
        t = (np.clip(t.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return t


def _load_config(log_dir: Path) -> Any:
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    path = log_dir / CONFIG_NAME
    if path.is_file():
        text_format.Parse(path.read_text(), config)
    return config


def export_projector(
    log_dir: str | Path,
    features: np.ndarray,
    metadata: Mapping[str, Sequence[Any]],
    thumbnails: np.ndarray | None = None,
    tag: str = "features",
) -> Path:
    """Write one embedding (features, metadata columns, sprite) for the TensorBoard projector.

    Args:
        log_dir: TensorBoard log folder (created if needed). Other tags already there are kept;
            the same tag is replaced.
        features: (N, D) features.
        metadata: columns of N values each, e.g. ``path``, ``timestamp``, ``moon``,
            ``morphology`` (when known), ``cluster`` (when available). An ``index`` column
            (0..N-1) is always written first.
        thumbnails: (N, h, w, 3) uint8 (or float in [0, 1]) pictures of the points, or None.
        tag: name of the embedding; also its sub-folder.

    Returns:
        Path of ``projector_config.pbtxt``.
    """
    from google.protobuf import text_format

    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"projector features must be a non-empty (N, D) array, got {feats.shape}")
    if not tag or "/" in tag or tag.startswith("."):
        raise ValueError(f"projector tag must be a plain folder name, got {tag!r}")
    n = feats.shape[0]
    log_dir = Path(log_dir)
    sub = log_dir / tag
    sub.mkdir(parents=True, exist_ok=True)

    buf = io.StringIO()
    np.savetxt(buf, feats, fmt="%.6g", delimiter="\t")
    atomic_write_text(sub / "tensors.tsv", buf.getvalue())
    columns: dict[str, Sequence[Any]] = {"index": range(n)}
    columns.update({k: v for k, v in metadata.items() if k != "index"})
    _write_metadata(sub / "metadata.tsv", columns, n)

    config = _load_config(log_dir)
    kept = [e for e in config.embeddings if e.tensor_name != tag]
    del config.embeddings[:]
    config.embeddings.extend(kept)
    emb = config.embeddings.add()
    emb.tensor_name = tag
    emb.tensor_path = f"{tag}/tensors.tsv"
    emb.metadata_path = f"{tag}/metadata.tsv"
    emb.tensor_shape.extend([n, feats.shape[1]])
    if thumbnails is not None:
        png, (cw, ch) = _sprite(_as_uint8_rgb(thumbnails, n))
        atomic_write_bytes(sub / "sprite.png", png)
        emb.sprite.image_path = f"{tag}/sprite.png"
        emb.sprite.single_image_dim.extend([cw, ch])
    else:
        (sub / "sprite.png").unlink(missing_ok=True)
    path = log_dir / CONFIG_NAME
    atomic_write_text(path, text_format.MessageToString(config))
    return path


def add_projector_labels(
    log_dir: str | Path, labels: Mapping[str, Sequence[Any]], tag: str = "features"
) -> Path:
    """Add (or replace) metadata columns of an exported embedding, e.g. cluster labels.

    Args:
        log_dir: the folder given to :func:`export_projector`.
        labels: columns of N values each.
        tag: the embedding to extend.

    Returns:
        Path of the rewritten ``metadata.tsv``.
    """
    path = Path(log_dir) / tag / "metadata.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"no projector embedding '{tag}' in {log_dir} (missing {path})")
    columns: dict[str, Sequence[Any]] = dict(read_metadata(path))
    n = len(columns["index"])
    columns.update({k: v for k, v in labels.items() if k != "index"})
    _write_metadata(path, columns, n)
    return path


def export_feature_set(
    log_dir: str | Path,
    feature_set: Any,
    store: Any,
    labels: Mapping[str, Sequence[Any]] | None = None,
    tag: str = "features",
) -> Path:
    """Export a :class:`~aurora.extractors.FeatureSet` with its store's pictures and metadata.

    Columns ``path``, ``timestamp`` and ``moon`` come from the store (when it has them);
    ``labels`` adds more (``morphology`` when known, ``cluster`` ...). The store's images are
    the thumbnails (shrunk to fit TensorBoard's sprite limit, read image by image from the
    memory map).

    Args:
        log_dir: TensorBoard log folder.
        feature_set: features (N, D) with ``ids`` in store order.
        store: the preprocessed store the features were extracted from.
        labels: extra columns of N values each.
        tag: embedding name.

    Returns:
        Path of ``projector_config.pbtxt``.
    """
    ids = [str(i) for i in store.ids]
    if list(feature_set.ids) != ids:
        raise ValueError(
            f"feature set {feature_set.key} does not belong to store {store.key}: image ids differ"
        )
    columns: dict[str, Sequence[Any]] = {"id": ids}
    for name in ("path", "timestamp", "moon"):
        values = getattr(store, name + "s" if name != "moon" else name, None)
        if values is not None:
            columns[name] = list(values)
    columns.update(labels or {})
    return export_projector(log_dir, feature_set.features, columns, store.images, tag=tag)
