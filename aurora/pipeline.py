"""The main job: images -> preprocess -> features -> grid -> ranking -> fusion -> outputs.

``cluster.py`` is a thin Hydra wrapper around :func:`run_cluster` (one process, whole grid)
and :func:`run_sweep_cell` (one grid cell per job of a ``-m`` sweep, finalised by
:class:`aurora.sweep.FinalizeSweep`). Every stage reads and writes the on-disk cache, so a
second run, or a sweep over reducers and clusterers, never decodes an image or runs a network
again.

A grid cell that fails is recorded (``failed.json`` in its folder, ``failed.csv`` and the
summary counts) and the other cells are still ranked, fused and reported; the exit code is
then 1. A run folder's ``status.json`` says whether its results are current (running,
finished, finished_with_failures, failed), and a run moves the earlier results aside before it
starts (:mod:`aurora.run_status`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from aurora.cache import Cache, atomic_write_text, link_or_copy, stable_hash
from aurora.checks import (
    DataFit,
    check_against_data,
    check_fusion,
    check_grid,
    check_number,
    check_training,
)
from aurora.data.sources import (
    Manifest,
    Rejection,
    expand_duplicates,
    scan,
    write_rejected_csv,
)
from aurora.errors import PipelineError, SettingsError
from aurora.logs import log, stage
from aurora.preprocess import PreprocessConfig, PreprocessedStore, build_preprocessed
from aurora.record import FusionOutcome, RunRecord
from aurora.run_status import begin_run, fail_run, finish_run, one_line


def ensure_dataset(root: str | Path, synth: Mapping[str, Any] | None, jobs: int | None) -> Path:
    """Return the data folder, generating the synthetic sky there first when asked to.

    Args:
        root: image folder or list file.
        synth: ``{n, seed, size, moon_prob}`` for the built-in synthetic sky, or None.
        jobs: generator processes.
    """
    root = Path(root)
    if synth is not None and not (root / "labels.csv").is_file():
        from aurora.data.synth import generate

        # Never write into a folder that holds anything: it may be a user's images.
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise PipelineError(
                f"data.root={root} is not empty and has no labels.csv: the synthetic sky is "
                "generated only into a new or empty folder (for your own images use data=folder)"
            )

        log.info("generating the synthetic sky (%d images) in %s", synth["n"], root)
        generate(
            root,
            n=int(synth["n"]),
            seed=int(synth["seed"]),
            size=int(synth["size"]),
            moon_prob=float(synth["moon_prob"]),
            jobs=jobs,
        )
    return root


def prepare_images(
    data_root: str | Path,
    preprocess_cfg: PreprocessConfig,
    cache_root: str | Path,
    jobs: int | None = None,
    progress: bool = True,
) -> PreprocessedStore:
    """Scan a folder (or list file) and preprocess it into the cache.

    Args:
        data_root: image folder (recursive) or text file listing images.
        preprocess_cfg: the preprocessing chain.
        cache_root: cache folder.
        jobs: worker processes (None = all cores).
        progress: show progress bars.

    Returns:
        The preprocessed store; every input is in ``store.ids`` or ``store.rejected``.
    """
    manifest = scan(data_root, jobs=jobs, progress=progress)
    return build_preprocessed(manifest, preprocess_cfg, cache_root, jobs=jobs, progress=progress)


class StoreSet:
    """Preprocessed stores of one manifest, one per (preprocess variant, image size).

    Args:
        manifest: the scanned data set.
        variants: variant name -> preprocessing chain (sizes are overridden per request).
        cache_root: cache folder.
        jobs: worker processes.
    """

    def __init__(
        self,
        manifest: Manifest,
        variants: Mapping[str, PreprocessConfig],
        cache_root: str | Path,
        jobs: int | None,
    ) -> None:
        self.manifest = manifest
        self.variants = dict(variants)
        self.cache_root = Path(cache_root)
        self.jobs = jobs
        self._stores: dict[tuple[str, int], PreprocessedStore] = {}

    def get(self, variant: str, size: int) -> PreprocessedStore:
        """The store of ``variant`` at ``size`` px, built (or read from the cache) once."""
        if variant not in self.variants:
            raise PipelineError(
                f"unknown preprocess variant {variant!r}; configured: {sorted(self.variants)}"
            )
        key = (variant, int(size))
        if key not in self._stores:
            cfg = dataclasses.replace(self.variants[variant], size=int(size))
            with stage("preprocess") as st:
                store = build_preprocessed(self.manifest, cfg, self.cache_root, jobs=self.jobs)
                st["msg"] = (
                    f"{variant}@{size}px: {len(store)} accepted, {len(store.rejected)} rejected"
                    f" of {self.manifest.n_inputs} inputs"
                )
            self._stores[key] = store
        return self._stores[key]


class ImageRows:
    """Chosen rows of one or more (N_i, S, S, 3) image arrays, read lazily.

    Lets the report and the projector index the images of a run (possibly a million-image
    memory map plus a few reference images) without ever copying a whole store.

    Args:
        parts: (array, row indices into it) pairs, concatenated in order.
    """

    def __init__(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self._parts = [(a, np.asarray(r, dtype=np.int64)) for a, r in parts]
        self._offsets = np.cumsum([0] + [len(r) for _, r in self._parts])
        first = self._parts[0][0]
        self.shape = (int(self._offsets[-1]), *first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, int | np.integer):
            return self[np.array([idx])][0]
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self._offsets, idx, side="right") - 1
        for p, (arr, rows) in enumerate(self._parts):
            sel = np.flatnonzero(part == p)
            if sel.size:
                src = rows[idx[sel] - self._offsets[p]]
                order = np.argsort(src, kind="stable")  # memory maps read fastest in order
                out[sel[order]] = arr[src[order]]
        return out


@dataclass
class ExtractedFeatures:
    """Features of one extractor, aligned with the accepted images."""

    name: str
    features: np.ndarray  # (N, D) float32
    key: str
    ids: list[str]
    random_init: bool
    store: PreprocessedStore
    extractor_cfg: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    extractor: Any = None
    images: ImageRows | None = None  # (N, S, S, 3) the preprocessed images behind the rows


def _plain(node: Any) -> Any:
    """A resolved plain container from an OmegaConf node (or the value itself)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def train_encoder_cached(
    images: np.ndarray,
    store_key: str,
    model_cfg: Mapping[str, Any],
    trainer_cfg: Mapping[str, Any],
    loader_cfg: Mapping[str, Any],
    *,
    seed: int,
    cache_root: str | Path,
    log_dir: str | Path,
    logger_cfg: Mapping[str, Any] | None = None,
) -> Path:
    """Train an encoder once per (images, model, trainer, loader, seed); return its checkpoint.

    TensorBoard logs go to ``log_dir``; the best checkpoint is kept in the cache so later runs
    (and every job of a sweep) reuse it.

    Args:
        images: (N, S, S, 3) uint8 training images.
        store_key: cache key of ``images``.
        model_cfg: ``model`` group node (``_target_``).
        trainer_cfg: ``trainer`` group node.
        loader_cfg: batching and split settings (``aurora.data.datamodule.LoaderConfig``).
        seed: training seed.
        cache_root: cache folder.
        log_dir: where this run's logs and Lightning checkpoints go.
        logger_cfg: ``logger`` group node or None.

    Returns:
        Path of the cached checkpoint.
    """
    cache = Cache(cache_root)
    runtime = {"devices", "num_nodes", "strategy", "log_every_n_steps", "accelerator"}
    trainer_identity = {k: v for k, v in trainer_cfg.items() if k not in runtime}
    loader_identity = {
        k: v for k, v in loader_cfg.items() if k not in {"num_workers", "pin_memory"}
    }
    key = stable_hash(store_key, model_cfg, trainer_identity, loader_identity, seed)
    if cache.exists("train", key):
        return cache.path("train", key) / "model.ckpt"
    from aurora.data.datamodule import LoaderConfig
    from aurora.training import fit_model

    with cache.writing("train", key) as tmp:
        result = fit_model(
            images,
            model_cfg,
            trainer_cfg,
            log_dir,
            logger_cfg=logger_cfg,
            loader=LoaderConfig(**loader_cfg),
            seed=seed,
        )
        best = result.best_ckpt or result.last_ckpt
        if not best:
            raise PipelineError(f"training in {log_dir} wrote no checkpoint")
        link_or_copy(best, tmp / "model.ckpt")  # one copy on disk: a hard link when it can
    return cache.path("train", key) / "model.ckpt"


@dataclass
class RunContext:
    """What the grid and the finalisation need from the data and feature stages."""

    stores: StoreSet
    features: dict[str, ExtractedFeatures]
    ids: list[str]  # (N,) accepted images (reference images last, ids "reference/<class>/...")
    paths: list[str]
    rejected: list[Rejection]
    skipped: dict[str, str] = field(default_factory=dict)
    moon: np.ndarray | None = None  # (N,) bool, Moon detected by preprocessing
    timestamps: list[Any] = field(default_factory=list)  # (N,) datetimes or None
    reference_classes: list[str | None] = field(default_factory=list)  # (N,) None = ordinary
    must_link: np.ndarray | None = None  # (M, 2) row pairs from the reference classes
    cannot_link: np.ndarray | None = None  # (C, 2)
    duplicates: dict[str, str] = field(default_factory=dict)  # copy id -> original id


def _truth_table(truth_csv: str | Path | None, root: Path) -> dict[str, dict[str, str]] | None:
    """Ground-truth rows keyed by image id (path relative to the data root)."""
    if not truth_csv:
        return None
    path = Path(truth_csv)
    if not path.is_file():
        raise PipelineError(f"ground-truth table {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise PipelineError(f"ground-truth table {path} needs a 'path' column")
    return {r["path"]: r for r in rows}


def extract_all(
    cfg: DictConfig,
    stores: StoreSet,
    run_dir: Path,
    names: Sequence[str],
    on_accepted: Callable[[int], None] | None = None,
    node_key: Mapping[str, str] | None = None,
) -> tuple[dict[str, ExtractedFeatures], dict[str, str]]:
    """Features for each configured extractor (training our own encoders when needed).

    Every extractor that needs no training is built first, so missing ImageNet weights stop
    (or are skipped) before any image is preprocessed or any network trained.

    Args:
        cfg: the composed ``cluster`` config (``extractors``, ``models``, ``train``, ...).
        stores: preprocessed stores of the data set.
        run_dir: run directory (training logs go under ``run_dir/train/<name>``).
        names: extractor names (keys of ``cfg.extractors``) to compute.
        on_accepted: called once with the number of accepted images of the first store,
            before any training or extraction (the settings checks against the data).
        node_key: extractor name -> the config key users set it under, for messages
            (default ``extractors.<name>``; a sweep job's is ``extractor``).

    Returns:
        Features per extractor, and extractors skipped (name -> one-line reason).
    """
    from aurora.extractors import WeightsUnavailableError, build_extractor, extract_features

    out: dict[str, ExtractedFeatures] = {}
    skipped: dict[str, str] = {}
    specs: dict[str, tuple[dict[str, Any], dict[str, Any], Any]] = {}
    for name in names:
        node = cfg.extractors[name]
        key = (node_key or {}).get(name, f"extractors.{name}")
        meta = _plain(node.get("meta", {})) or {}
        params = {k: v for k, v in _plain(node).items() if k != "meta"}
        extractor = None
        if OmegaConf.is_missing(node, "ckpt_path"):
            model_name = meta.get("train", name)
            if model_name not in cfg.models:
                raise PipelineError(
                    f"extractor {name!r} needs a checkpoint: set extractors.{name}.ckpt_path=... "
                    f"or meta.train to one of {sorted(cfg.models)}"
                )
        else:
            try:
                extractor = build_extractor(params)
            except WeightsUnavailableError as err:
                if not cfg.skip_unavailable_extractors:
                    raise PipelineError(
                        f"{err} (in this run the key is {key}.weights; or leave the extractor "
                        "out with grid.extractors, or set skip_unavailable_extractors=true)"
                    ) from err
                # One line: the first sentence names the model.
                reason = str(err).split(". ")[0].rstrip(".") + f" (set {key}.weights=PATH)"
                log.warning("skipping extractor %s: %s", name, reason)
                skipped[name] = reason
                continue
        specs[name] = (meta, params, extractor)
    pending = on_accepted

    def data_checks(store: PreprocessedStore) -> None:
        """The settings checks against the data: once, before the first training/extraction."""
        nonlocal pending
        if pending is not None:
            pending(len(store))
            pending = None

    for name, (meta, params, extractor) in specs.items():
        variant = meta.get("preprocess", "full")
        if extractor is None:
            model_name = meta.get("train", name)
            store = stores.get(variant, int(cfg.train.image_size))
            data_checks(store)
            with stage("train") as st:
                ckpt = train_encoder_cached(
                    store.images,
                    store.key,
                    _plain(cfg.models[model_name]),
                    _plain(cfg.trainer),
                    _plain(cfg.train.loader),
                    seed=int(cfg.seed),
                    cache_root=cfg.paths.cache_dir,
                    log_dir=run_dir / "train" / name,
                    logger_cfg=_plain(cfg.logger) if cfg.get("logger") else None,
                )
                st["msg"] = f"{name}: {len(store)} images -> {ckpt}"
            params["ckpt_path"] = str(ckpt)
            extractor = build_extractor(params)
        store = stores.get(variant, int(extractor.input_size))
        data_checks(store)
        with stage("extract") as st:
            fs = extract_features(
                store,
                extractor,
                cfg.paths.cache_dir,
                batch_size=int(cfg.extract.batch_size),
                num_workers=int(cfg.extract.num_workers),
                device=str(cfg.extract.device),
            )
            st["msg"] = f"{name}: {fs.features.shape[0]} x {fs.features.shape[1]} features"
        random_init = bool(fs.provenance.get("random_init", False))
        if random_init:
            log.warning("extractor %s uses RANDOM weights (pretrained=false)", name)
        out[name] = ExtractedFeatures(
            name,
            fs.features,
            fs.key,
            list(fs.ids),
            random_init,
            store,
            extractor_cfg={**params, "meta": meta},
            identity=extractor.identity(),
            extractor=extractor,
        )
    return out, skipped


def load_context(
    cfg: DictConfig,
    run_dir: Path,
    names: Sequence[str] | None = None,
    on_accepted: Callable[[int], None] | None = None,
    node_key: Mapping[str, str] | None = None,
) -> RunContext:
    """Data, preprocessing and features for a run (everything before the grid).

    Args:
        cfg: the composed ``cluster`` config.
        run_dir: run directory.
        names: extractors to compute (None = all configured).
        on_accepted: called with the accepted count before any training or extraction.
        node_key: extractor name -> its config key, for messages (see :func:`extract_all`).
    """
    jobs = cfg.get("jobs")
    with stage("data") as st:
        root = ensure_dataset(cfg.data.root, _plain(cfg.data.get("synth")), jobs)
        manifest = scan(root, jobs=jobs, progress=True)
        st["msg"] = (
            f"{manifest.n_inputs} inputs in {root}: {len(manifest.records)} readable candidates,"
            f" {len(manifest.rejected)} rejected while scanning"
        )
    variants = {k: instantiate(v) for k, v in cfg.preprocess.items()}
    stores = StoreSet(manifest, variants, cfg.paths.cache_dir, jobs)
    names = list(names if names is not None else cfg.extractors.keys())
    features, skipped = extract_all(cfg, stores, run_dir, names, on_accepted, node_key)
    if not features:
        raise PipelineError(
            "no extractor could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    ids, paths, rejected = _align(features, manifest)
    first = next(iter(features.values())).store
    duplicates = _duplicates(first, ids, rejected)
    ctx = RunContext(stores, features, ids, paths, rejected, skipped, duplicates=duplicates)
    pos = {i: k for k, i in enumerate(first.ids)}
    rows = np.array([pos[i] for i in ids], dtype=np.int64)
    ctx.moon = np.asarray(first.moon)[rows]
    ctx.timestamps = frame_times(
        [first.timestamps[k] for k in rows], ids, cfg.data.get("metadata"), cfg.data.get("truth")
    )
    ctx.reference_classes = [None] * len(ids)
    for f in features.values():
        fpos = {i: k for k, i in enumerate(f.store.ids)}
        f.images = ImageRows([(f.store.images, np.array([fpos[i] for i in ids], dtype=np.int64))])
    ref_dir = (cfg.get("constraints") or {}).get("reference_dir")
    if ref_dir:
        attach_references(cfg, ctx, Path(str(ref_dir)))
    return ctx


def frame_times(
    found: Sequence[Any],
    ids: Sequence[str],
    metadata_csv: str | Path | None,
    truth_csv: str | Path | None,
) -> list[Any]:
    """The UTC time of every image: the user's metadata table first, then file names and
    frame headers, then a ``time`` column of the truth table where nothing else gave one.

    Args:
        found: (N,) times from file names / frame headers (None where there was none).
        ids: (N,) image ids.
        metadata_csv: a CSV with ``path`` and ``time`` columns (``data.metadata``), or None.
        truth_csv: the truth table (``data.truth``), whose ``time`` column is optional.

    Returns:
        (N,) datetimes or None.
    """
    from aurora.data.metadata import read_time_column

    times = list(found)
    if metadata_csv:
        given = read_time_column(Path(str(metadata_csv)), ids)
        times = [g if g is not None else t for g, t in zip(given, times, strict=True)]
    if truth_csv and any(t is None for t in times) and Path(str(truth_csv)).is_file():
        given = read_time_column(Path(str(truth_csv)), ids, missing_ok=True)
        times = [t if t is not None else g for g, t in zip(given, times, strict=True)]
    return times


REFERENCE_PREFIX = "reference/"


def attach_references(cfg: DictConfig, ctx: RunContext, ref_dir: Path) -> None:
    """Add labelled reference images (one subfolder per class) and their constraints.

    The references go through the same preprocessing and extractors, join the data set at the
    end (ids ``reference/<class>/<file>``), and give must-link inside a class and cannot-link
    across classes for the clusterers that take constraints (COP-K-means).
    """
    from aurora.clustering import constraints_from_reference
    from aurora.extractors import extract_features

    with stage("references") as st:
        manifest = scan(ref_dir, jobs=cfg.get("jobs"))
        refs = StoreSet(manifest, ctx.stores.variants, ctx.stores.cache_root, ctx.stores.jobs)
        for r in manifest.rejected:
            ctx.rejected.append(Rejection(REFERENCE_PREFIX + r.path, r.reason, r.detail))
        flat = [r.id for r in manifest.records if "/" not in r.id]
        if flat:
            raise PipelineError(
                f"reference images must sit in one subfolder per class under {ref_dir}; "
                f"found {flat[0]} directly in it"
            )
        accepted: set[str] | None = None
        per_extractor = {}
        for name, f in ctx.features.items():
            variant = (f.extractor_cfg.get("meta") or {}).get("preprocess", "full")
            store = refs.get(variant, int(f.extractor.input_size))
            fs = extract_features(
                store,
                f.extractor,
                cfg.paths.cache_dir,
                batch_size=int(cfg.extract.batch_size),
                num_workers=0,
                device=str(cfg.extract.device),
            )
            per_extractor[name] = (store, fs)
            accepted = set(fs.ids) if accepted is None else accepted & set(fs.ids)
            for r in store.rejected:
                rid = REFERENCE_PREFIX + r.path
                if rid not in {x.path for x in ctx.rejected}:
                    ctx.rejected.append(Rejection(rid, r.reason, r.detail))
        ref_ids = [i for i in per_extractor[next(iter(per_extractor))][1].ids if i in accepted]
        if not ref_ids:
            raise PipelineError(f"no usable reference image under {ref_dir}")
        for name, (store, fs) in per_extractor.items():
            f = ctx.features[name]
            fpos = {i: k for k, i in enumerate(fs.ids)}
            spos = {i: k for k, i in enumerate(store.ids)}
            f.features = np.concatenate([f.features, fs.features[[fpos[i] for i in ref_ids]]])
            f.key = stable_hash(f.key, fs.key, ref_ids)
            rows = np.array([spos[i] for i in ref_ids], dtype=np.int64)
            assert f.images is not None
            f.images = ImageRows([*f.images._parts, (store.images, rows)])
        store = next(iter(per_extractor.values()))[0]
        spos = {i: k for k, i in enumerate(store.ids)}
        rows = np.array([spos[i] for i in ref_ids], dtype=np.int64)
        n0 = len(ctx.ids)
        id_to_path = {r.id: r.path for r in manifest.records}
        ctx.ids = [*ctx.ids, *(REFERENCE_PREFIX + i for i in ref_ids)]
        for f in ctx.features.values():
            f.ids = ctx.ids
        ctx.paths = [*ctx.paths, *(id_to_path[i] for i in ref_ids)]
        ctx.moon = np.concatenate([ctx.moon, np.asarray(store.moon)[rows]])
        ctx.timestamps = [*ctx.timestamps, *(store.timestamps[k] for k in rows)]
        classes = [i.split("/", 1)[0] for i in ref_ids]
        ctx.reference_classes = [*ctx.reference_classes, *classes]
        must, cannot = constraints_from_reference([None] * n0 + classes)
        ctx.must_link, ctx.cannot_link = np.asarray(must), np.asarray(cannot)
        st["msg"] = (
            f"{len(ref_ids)} reference images in {len(set(classes))} classes: "
            f"{len(ctx.must_link)} must-link, {len(ctx.cannot_link)} cannot-link"
        )


def _align(
    features: Mapping[str, ExtractedFeatures], manifest: Manifest
) -> tuple[list[str], list[str], list[Rejection]]:
    """Keep the images every extractor saw, recording any other as rejected (never dropped)."""
    sets = [set(f.ids) for f in features.values()]
    common = set.intersection(*sets)
    first = next(iter(features.values()))
    rejected = list(first.store.rejected)
    seen = {r.path for r in rejected}
    for f in features.values():
        for r in f.store.rejected:
            if r.path not in seen:
                why = f"in preprocessing for {f.name}: {r.detail}" if r.detail else f.name
                rejected.append(Rejection(r.path, r.reason, why))
                seen.add(r.path)
    ids = [i for i in first.ids if i in common]
    for name, f in features.items():
        if f.ids != ids:
            pos = {i: k for k, i in enumerate(f.ids)}
            f.features = f.features[[pos[i] for i in ids]]
            f.ids = ids
            log.info("aligned %s to %d common images", name, len(ids))
    id_to_path = {r.id: r.path for r in manifest.records}
    paths = [id_to_path.get(i, i) for i in ids]
    return ids, paths, rejected


def _duplicates(
    store: PreprocessedStore, ids: Sequence[str], rejected: list[Rejection]
) -> dict[str, str]:
    """The store's duplicates whose original is clustered; the others join ``rejected``.

    A copy is labelled like its original; when the original was set aside after the store
    (another extractor's preprocessing rejected it), the copy is rejected with it.
    """
    kept = set(ids)
    why = {r.path: r for r in rejected}
    out = {}
    for dup, orig in sorted(store.duplicates.items()):
        if orig in kept:
            out[dup] = orig
        elif dup not in why:
            r = why.get(orig)
            detail = f"duplicate of {orig}" + (f": {r.detail or r.reason}" if r else "")
            rejected.append(Rejection(dup, r.reason if r else "duplicate", detail))
    return out


def write_labels_csv(
    ids: Sequence[str],
    labels: np.ndarray,
    path: str | Path,
    duplicates: Mapping[str, str] | None = None,
) -> None:
    """``path,label`` for every accepted image (−1 = unassigned), written atomically.

    Args:
        ids: (N,) accepted image ids.
        labels: (N,) their labels.
        path: the CSV file.
        duplicates: copy id -> original id (in ``ids``); a copy gets its original's label.
    """
    all_ids, rows = expand_duplicates(ids, duplicates or {})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label"])
    for i, r in zip(all_ids, rows, strict=True):
        w.writerow([i, int(labels[r])])
    atomic_write_text(path, buf.getvalue())


def write_rejected(rejected: Sequence[Rejection], path: str | Path) -> None:
    """``path,reason`` for every rejected input."""
    write_rejected_csv(rejected, path)


@dataclass(frozen=True)
class CellSpec:
    """One grid cell: which features, reducer, clusterer and number of clusters."""

    extractor: str
    reducer: str
    clusterer: str
    n_clusters: int

    @property
    def name(self) -> str:
        """Folder-safe cell name, e.g. ``simclr__pca__kmeans__k12``."""
        return f"{self.extractor}__{self.reducer}__{self.clusterer}__k{self.n_clusters}"


def grid_cells(
    extractors: Sequence[str],
    reducers: Sequence[str],
    clusterers: Sequence[str],
    n_clusters: Sequence[int],
) -> list[CellSpec]:
    """The full product of the grid axes, in a fixed order."""
    return [
        CellSpec(e, r, c, int(k))
        for e in extractors
        for r in reducers
        for c in clusterers
        for k in n_clusters
    ]


def truth_columns(
    cfg: DictConfig, ids: Sequence[str]
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Ground-truth classes and nuisance flags per image, when a truth table is configured.

    Returns:
        (truth (N,) object array or None, nuisances name -> (N,) array). Images missing from
        the table get None (ignored by the external scores).
    """
    root = Path(cfg.data.root)
    table = _truth_table(cfg.data.get("truth"), root)
    if table is None:
        return None, {}
    column = cfg.data.get("truth_column") or "morphology"
    truth = np.array([table.get(i, {}).get(column) for i in ids], dtype=object)
    nuisances: dict[str, np.ndarray] = {}
    header = next(iter(table.values()), {})
    for name in cfg.data.get("nuisance_columns") or ["moon"]:
        if name in header:  # a real camera's table seldom has one: the detected Moon is used
            nuisances[name] = np.array([table.get(i, {}).get(name) for i in ids], dtype=object)
    return truth, nuisances


def _is_user_error(err: BaseException) -> bool:
    """An error aurora reports in one line (see :func:`aurora.cli.run_guarded`), not a bug."""
    from aurora.cli import error_line

    return isinstance(err, MissingMandatoryValue) or error_line(err) is not None


def _traceback_to_log_files(err: BaseException, what: str) -> None:
    """Write the traceback of ``err`` to the log files only (the console keeps one line)."""
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "traceback of %s",
        (what,),
        (type(err), err, err.__traceback__),
    )
    handlers = {
        h
        for logger in (log, logging.getLogger())
        for h in logger.handlers
        if isinstance(h, logging.FileHandler)
    }
    for h in handlers:
        if record.levelno >= h.level:
            h.handle(record)


def record_failure(out_dir: Path, meta: Mapping[str, Any], err: BaseException) -> Path:
    """Record a failed cell (``failed.json``) and log it in one line naming the cell.

    A bug (not an aurora error) keeps its traceback: in ``failed.json`` and in the log files.

    Returns:
        Path of ``failed.json``.
    """
    from aurora.grid import cell_name, write_failed

    bug = not _is_user_error(err)
    text = "".join(traceback.format_exception(err)) if bug else None
    path = write_failed(out_dir, meta, err, text)
    name = cell_name(meta)
    if bug:
        log.error("cell %s FAILED (traceback in %s): %s", name, path, one_line(err))
        _traceback_to_log_files(err, f"the failed cell {name}")
    else:
        log.error("cell %s FAILED: %s", name, one_line(err))
    return path


def run_grid(
    cfg: DictConfig,
    ctx: RunContext,
    cells: Sequence[CellSpec],
    cells_dir: Path,
    keep_going: bool = True,
) -> list[dict[str, Any]]:
    """Run the given grid cells and write each one's ``cell.json`` + ``labels.npy``.

    A cell that raises is recorded (``failed.json`` in its folder, read back with
    :func:`aurora.grid.collect_failed`; see :func:`record_failure`) and the grid goes on.

    Args:
        cfg: the composed ``cluster`` config.
        ctx: data and features of the run.
        cells: the cells to run.
        cells_dir: each cell gets the folder ``cells_dir/<cell.name>``.
        keep_going: false = a failing cell raises (a sweep job, which records itself).

    Returns:
        The finished cells as rows (see :func:`aurora.grid.collect_cells`).
    """
    from aurora.grid import clear_cell, collect_cells, run_cell, write_cell

    truth, nuisances = truth_columns(cfg, ctx.ids)
    moon = nuisances.get("moon", ctx.moon)
    for spec in cells:
        feats = ctx.features[spec.extractor]
        clusterer = {**_plain(cfg.clusterers[spec.clusterer]), "n_clusters": spec.n_clusters}
        meta = {
            "extractor": spec.extractor,
            "reducer": spec.reducer,
            "clusterer": spec.clusterer,
            "n_clusters": spec.n_clusters,
            "seed": int(cfg.seed),
            "random_init": feats.random_init,
        }
        out = cells_dir / spec.name
        clear_cell(out)
        try:
            with stage("cell") as st:
                result = run_cell(
                    feats.features,
                    _plain(cfg.reducers[spec.reducer]),
                    clusterer,
                    seed=int(cfg.seed),
                    cache=Cache(cfg.paths.cache_dir),
                    features_key=feats.key,
                    stability_splits=int(cfg.grid.stability_splits),
                    must_link=ctx.must_link,
                    cannot_link=ctx.cannot_link,
                    truth=truth,
                    nuisance={**nuisances, "moon": moon},
                )
                write_cell(result, out, meta)
                s = result.scores
                st["msg"] = (
                    f"{spec.name}: silhouette {s.get('silhouette', float('nan')):.3f}, "
                    f"stability ARI {s.get('stability_ari', float('nan')):.3f}"
                )
        except Exception as err:
            if not keep_going:
                raise
            record_failure(out, meta, err)
    return collect_cells(cells_dir)


def fuse(fusion_cfg: DictConfig, ranking_csv: Path, out_dir: Path) -> FusionOutcome:
    """Fuse the best-ranked partitions (per extractor or overall) by co-association voting.

    With ``fusion.search`` set, each group's setting is chosen by the thesis's loss and the
    group with the lowest loss gives ``labels.csv``; otherwise the configured voting is used and
    the group holding the best-ranked cell gives it.

    Args:
        fusion_cfg: the ``fusion`` group node.
        ranking_csv: the grid's ``ranking.csv``.
        out_dir: where per-group search tables and landscapes go.
    """
    from aurora.fusion import load_partitions, plot_search_landscape, select_partitions

    search = fusion_cfg.get("search")
    top_n = max(search.n_partitions) if search else int(fusion_cfg.n_partitions)
    groups = select_partitions(ranking_csv, top_n, bool(fusion_cfg.per_extractor))
    outcomes: list[FusionOutcome] = []
    for name, paths in groups.items():
        parts = load_partitions(paths)
        if search:
            n_avail = [p for p in search.n_partitions if p <= parts.shape[0]] or [parts.shape[0]]
            res = instantiate(search, n_partitions=n_avail)(parts)
            res.write_table(out_dir / f"fusion_search_{name}.csv")
            plot_search_landscape(res, out_dir / f"fusion_landscape_{name}.png")
            b = res.best
            outcomes.append(
                FusionOutcome(
                    res.labels,
                    name,
                    int(b["n_partitions"]),
                    float(b["threshold"]),
                    int(b["min_cluster_size"]),
                    float(b["loss"]),
                )
            )
        else:
            n = min(int(fusion_cfg.n_partitions), parts.shape[0])
            voting = instantiate(fusion_cfg.voting)
            labels = voting.fit_predict(parts[:n])
            outcomes.append(
                FusionOutcome(
                    np.asarray(labels, dtype=np.int64),
                    name,
                    n,
                    float(fusion_cfg.threshold),
                    int(fusion_cfg.min_cluster_size),
                    None,
                )
            )
    per_group = {
        o.group: {
            "n_groups": int(o.labels.max() + 1) if (o.labels >= 0).any() else 0,
            "unassigned": int((o.labels < 0).sum()),
            "n_partitions": o.n_partitions,
            "threshold": o.threshold,
            "min_cluster_size": o.min_cluster_size,
            "loss": o.loss,
        }
        for o in outcomes
    }
    best = min(outcomes, key=lambda o: o.loss) if search else outcomes[0]
    best.per_group = per_group
    return best


def external_summary(
    cfg: DictConfig,
    ids: Sequence[str],
    ranked: Sequence[Mapping[str, Any]],
    fused: np.ndarray,
    moon: np.ndarray | None = None,
) -> dict[str, Any]:
    """External scores of the best-ranked cell and of the fused grouping (truth needed).

    The fused grouping is scored on its assigned images (``fused >= 0``): the unassigned ones
    are reported as a fraction, not scored as one more group, so that homogeneity answers
    "how pure are the groups" and the fraction "how many images they leave out".
    """
    from aurora.scoring import external_scores, nuisance_dependence

    truth, nuisances = truth_columns(cfg, ids)
    if truth is None:
        return {}
    best_labels = np.load(ranked[0]["labels_path"])
    assigned = fused >= 0
    out: dict[str, Any] = {
        "best_cell": ranked[0]["cell"],
        "best_cell_external": external_scores(best_labels, truth),
        "fused_external": external_scores(fused[assigned], truth[assigned]),
        "fused_unassigned_fraction": float((~assigned).mean()),
    }
    if "moon" not in nuisances and moon is not None:
        nuisances["moon"] = np.asarray(moon)  # the Moon detected by preprocessing
    for name, values in nuisances.items():
        out[f"fused_ami_{name}"] = nuisance_dependence(fused[assigned], values[assigned])
    return out


def finalize(
    cfg: DictConfig,
    ctx: RunContext,
    cells: Sequence[Mapping[str, Any]],
    out_dir: Path,
    extra: Mapping[str, Any] | None = None,
    failed: Sequence[Mapping[str, Any]] = (),
) -> RunRecord:
    """Rank the cells, fuse, and write the run's outputs into ``out_dir``.

    Writes ``failed.csv`` (``cell,error,folder``; only a header when no cell failed),
    ``ranking.csv``, ``results.csv``, fusion tables, ``labels.csv`` (``path,label``),
    ``rejected.csv`` (``path,reason``), ``summary.json``, ``solution/`` and ``report/``.

    Args:
        cfg: the run's config.
        ctx: data and features of the run.
        cells: the finished cells (:func:`aurora.grid.collect_cells`).
        out_dir: the run (or sweep) folder.
        extra: more summary entries.
        failed: the cells that failed (:func:`aurora.grid.collect_failed`).

    Returns:
        The run record (its ``summary`` has counts, failed cells, the chosen fusion and, when
        truth exists, the external scores).

    Raises:
        PipelineError: no cell finished (after writing ``failed.csv``).
    """
    import json

    from aurora.grid import write_ranking, write_results

    ids, rejected = ctx.ids, ctx.rejected
    _check_some_cells(cells, failed, out_dir)
    n = {int(c["n_samples"]) for c in cells}
    if n != {len(ids)}:
        raise PipelineError(f"cells have {sorted(n)} labels but the data set has {len(ids)} images")
    with stage("rank") as st:
        ranked = write_ranking(cells, out_dir / "ranking.csv")
        write_results(cells, out_dir / "results.csv")
        st["msg"] = f"{len(cells)} cells ranked; best {ranked[0]['cell']}"
    with stage("fuse") as st:
        fusion = fuse(cfg.fusion, out_dir / "ranking.csv", out_dir)
        write_labels_csv(ids, fusion.labels, out_dir / "labels.csv", ctx.duplicates)
        write_rejected(rejected, out_dir / "rejected.csv")
        n_groups = int(fusion.labels.max() + 1) if (fusion.labels >= 0).any() else 0
        st["msg"] = (
            f"{fusion.group}: {n_groups} groups, {int((fusion.labels < 0).sum())} unassigned "
            f"(P={fusion.n_partitions}, t={fusion.threshold}, min size {fusion.min_cluster_size})"
        )
    summary: dict[str, Any] = {
        "data_root": str(cfg.data.root),
        "n_inputs": len(ids) + len(ctx.duplicates) + len(rejected),
        "n_duplicates": len(ctx.duplicates),
        "n_accepted": len(ids),
        "n_rejected": len(rejected),
        "rejected_by_reason": _count_reasons(rejected),
        "n_groups": n_groups,
        "n_unassigned": int((fusion.labels < 0).sum()),
        "fusion": {
            "group": fusion.group,
            "n_partitions": fusion.n_partitions,
            "threshold": fusion.threshold,
            "min_cluster_size": fusion.min_cluster_size,
            "loss": fusion.loss,
            "per_group": fusion.per_group,
        },
        "best_cell": ranked[0]["cell"],
        "n_cells": len(cells) + len(failed),
        "n_failed_cells": len(failed),
        "failed_cells": [{"cell": f["cell"], "error": f["error"]} for f in failed],
        **(extra or {}),
    }
    if n_groups == 0:
        summary["notice"] = _no_groups_reason(fusion, len(ids))
        log.warning("no groups: %s", summary["notice"])
    if "started" in summary:  # perf_counter() at the start of the run
        summary["seconds"] = round(time.perf_counter() - float(summary.pop("started")), 1)
    summary.update(external_summary(cfg, ids, ranked, fusion.labels, ctx.moon))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    record = _run_record(cfg, ctx, ranked, fusion, summary, out_dir)
    from aurora.report import write_report
    from aurora.solution import save_solution

    with stage("solution") as st:
        sol = save_solution(record, out_dir / "solution")
        st["msg"] = str(sol)
    with stage("report") as st:
        rep = write_report(record, out_dir / "report")
        st["msg"] = str(rep)
    return record


def _check_some_cells(
    cells: Sequence[Mapping[str, Any]], failed: Sequence[Mapping[str, Any]], out_dir: Path
) -> None:
    """Write ``failed.csv``; raise when no cell finished (there is nothing to rank)."""
    from aurora.grid import write_failed_csv

    write_failed_csv(failed, out_dir / "failed.csv")
    if cells:
        return
    if failed:
        first = failed[0]
        raise PipelineError(
            f"all {len(failed)} grid cells failed (see {out_dir / 'failed.csv'}); "
            f"the first, {first['cell']}: {first['error']}"
        )
    raise PipelineError(f"no finished grid cells under {out_dir}")


def _run_record(
    cfg: DictConfig,
    ctx: RunContext,
    ranked: Sequence[Mapping[str, Any]],
    fusion: FusionOutcome,
    summary: dict[str, Any],
    out_dir: Path,
) -> RunRecord:
    """Collect what the report and the solution need (the reduction is a cache hit)."""
    from aurora.reduce import cached_entry, fit_transform_cached

    group = fusion.group
    cell = next(r for r in ranked if group in ("all", str(r["extractor"])))
    name = str(cell["extractor"])
    feats = ctx.features[name]
    reducer_cfg = _plain(cfg.reducers[str(cell["reducer"])])
    cache = Cache(cfg.paths.cache_dir)
    seed = int(cfg.seed)
    embedding = fit_transform_cached(feats.features, reducer_cfg, seed, cache, feats.key)
    truth, nuisances = truth_columns(cfg, ctx.ids)
    store = feats.store
    logger_target = str((cfg.get("logger") or {}).get("_target_", ""))
    tb = out_dir / "tb" if "TensorBoard" in logger_target else None
    return RunRecord(
        run_dir=out_dir,
        ids=list(ctx.ids),
        paths=list(ctx.paths),
        timestamps=list(ctx.timestamps),
        labels=np.asarray(fusion.labels, dtype=np.int64),
        features=feats.features,
        embedding=np.asarray(embedding),
        thumbnails=feats.images,
        moon=np.asarray(ctx.moon),
        reference_classes=list(ctx.reference_classes),
        truth=truth,
        nuisances=nuisances,
        rejected=list(ctx.rejected),
        ranking=[dict(r) for r in ranked],
        summary=summary,
        solution_cell=dict(cell),
        extractor_name=name,
        extractor_cfg=feats.extractor_cfg,
        extractor_identity=feats.identity,
        preprocess_cfg=store.config,
        reducer_cfg=reducer_cfg,
        reducer_entry=cached_entry(cache, feats.key, reducer_cfg, seed),
        features_key=feats.key,
        seed=seed,
        config=OmegaConf.to_container(cfg, resolve=True),
        tensorboard_dir=tb,
    )


def _no_groups_reason(fusion: FusionOutcome, n: int) -> str:
    """Why a fusion left every image unassigned, and what to change."""
    return (
        f"every one of the {n} images is unassigned: no set of images agreeing in more than "
        f"{fusion.threshold:g} of the {fusion.n_partitions} fused partitions reached the minimum "
        f"group size {fusion.min_cluster_size} (fusion.min_cluster_size; with fusion=search, "
        "fusion.search.min_sizes). Lower it, lower fusion.threshold, or give more images"
    )


def _count_reasons(rejected: Sequence[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def _grid_cells(cfg: DictConfig, n_clusters: Sequence[int]) -> list[CellSpec]:
    """The cells of a single-process run: ``grid.*`` names (or all) x ``n_clusters``."""
    axes = {a: list(cfg.grid.get(a) or cfg[a]) for a in ("extractors", "reducers", "clusterers")}
    for axis, names in axes.items():
        unknown = sorted(set(names) - set(cfg[axis]))
        if unknown:
            raise PipelineError(f"grid.{axis} names {unknown}; configured: {sorted(cfg[axis])}")
    return grid_cells(axes["extractors"], axes["reducers"], axes["clusterers"], list(n_clusters))


def _check_settings(cfg: DictConfig) -> None:
    """The settings checks that need no data (names, types, ranges); before any work."""
    check_fusion(_plain(cfg.fusion))
    check_training(_plain(cfg.train.loader), cfg.trainer.get("max_epochs"))


def _apply_fit(cfg: DictConfig, fit: DataFit) -> None:
    """Write the fusion values fitted to the data back into the run's config."""
    cfg.fusion.min_cluster_size = fit.min_cluster_size
    if fit.search_min_sizes is not None:
        cfg.fusion.search.min_sizes = list(fit.search_min_sizes)
        cfg.fusion.search.target_groups = fit.target_groups


def _sweep_cell(cfg: DictConfig, choices: Mapping[str, str | None]) -> tuple[DictConfig, CellSpec]:
    """The one cell of a sweep job, from the ``extractor``/``reducer``/``clusterer`` groups."""
    picked = {g: choices.get(g) for g in ("extractor", "reducer", "clusterer")}
    missing = [g for g, v in picked.items() if v is None]
    if missing:
        raise PipelineError(f"a sweep job needs the groups {missing} to be chosen")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.extractors = {picked["extractor"]: cfg.extractor}
    cfg.reducers = {picked["reducer"]: cfg.reducer}
    cfg.clusterers = {picked["clusterer"]: cfg.clusterer}
    spec = CellSpec(
        str(picked["extractor"]),
        str(picked["reducer"]),
        str(picked["clusterer"]),
        int(check_number("clusterer.n_clusters", cfg.clusterer.n_clusters, 2, integer=True)),
    )
    return cfg, spec


def config_paths(cfg: DictConfig) -> list[str]:
    """Every string of the config (outside ``hydra``) that can be read: the paths a run reads.

    :func:`aurora.run_status.begin_run` never moves an earlier output that is or holds one of
    them (a cache, data or checkpoint someone put inside the run folder).
    """
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, DictConfig | ListConfig):
            keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
            for k in keys:
                if k == "hydra":
                    continue
                try:
                    value = node[k]  # resolves interpolations; unset or broken ones are skipped
                except Exception:
                    continue
                walk(value)
        elif isinstance(node, str) and node not in ("", ".", "???"):
            found.append(node)

    walk(cfg)
    return found


def start_run(cfg: DictConfig, run_dir: Path, job_dirs: bool = False) -> None:
    """Mark ``run_dir`` running, moving the earlier results aside (see :mod:`aurora.run_status`)."""
    begin_run(run_dir, keep=config_paths(cfg), job_dirs=job_dirs)


def run_cluster(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """The whole chain in one process: data -> features -> grid -> ranking -> fusion -> outputs.

    The folder's earlier results are moved aside first and ``status.json`` follows the run
    (running, finished, finished_with_failures, failed): see :mod:`aurora.run_status`.
    A grid cell that fails is recorded in ``failed.csv`` and the others go on.

    Args:
        cfg: the composed ``cluster`` config.
        run_dir: output folder (the Hydra run directory).

    Returns:
        The run summary (also in ``run_dir/summary.json``); ``n_failed_cells`` > 0 when some
        grid cells failed.
    """
    run_dir = Path(run_dir)
    start_run(cfg, run_dir)
    try:
        summary = _run_cluster(cfg, run_dir)
    except BaseException as err:
        fail_run(run_dir, err)
        raise
    finish_run(run_dir, summary["n_cells"], [f["cell"] for f in summary["failed_cells"]])
    return summary


def _run_cluster(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """:func:`run_cluster` in a folder already marked running."""
    from aurora.grid import collect_failed

    t0 = time.perf_counter()
    grid = check_grid(cfg.grid.n_clusters, cfg.grid.stability_splits)
    _check_settings(cfg)
    cells = _grid_cells(cfg, grid.n_clusters)
    run_dir.mkdir(parents=True, exist_ok=True)
    fits: list[DataFit] = []

    def on_accepted(n: int) -> None:
        fits.append(check_against_data(n, grid, _plain(cfg.fusion)))

    ctx = load_context(cfg, run_dir, sorted({c.extractor for c in cells}), on_accepted)
    (fit,) = fits  # load_context ran the checks before its first training or extraction
    cfg = cfg.copy()
    _apply_fit(cfg, fit)
    cells = [c for c in _grid_cells(cfg, fit.n_clusters) if c.extractor in ctx.features]
    with stage("grid") as st:
        rows = run_grid(cfg, ctx, cells, run_dir / "cells")
        failed = collect_failed(run_dir / "cells")
        st["msg"] = f"{len(rows)} cells" + (f", {len(failed)} FAILED" if failed else "")
    extra = {
        "started": t0,
        "skipped_extractors": ctx.skipped,
        "random_init_extractors": [k for k, f in ctx.features.items() if f.random_init],
    }
    record = finalize(cfg, ctx, rows, run_dir, extra, failed)
    _print_summary(record.summary, run_dir)
    return record.summary


def run_sweep_cell(
    cfg: DictConfig, job_dir: str | Path, choices: Mapping[str, str | None]
) -> dict[str, Any]:
    """One job of a ``-m`` sweep: compute one grid cell into ``job_dir`` (ranked at the end).

    The cell is the job's ``extractor``, ``reducer`` and ``clusterer`` group choices, with
    ``clusterer.n_clusters``; :class:`aurora.sweep.FinalizeSweep` ranks and fuses the sweep.
    """
    from aurora.grid import clear_cell

    job_dir = Path(job_dir)
    # What an earlier run of this job folder recorded (a failure, or another cell's result).
    for earlier in {job_dir, *(p.parent for p in job_dir.glob("*/cell.json"))}:
        clear_cell(earlier)
    cfg, cell = _sweep_cell(cfg, choices)
    grid = check_grid([cell.n_clusters], cfg.grid.stability_splits)
    _check_settings(cfg)

    def on_accepted(n: int) -> None:
        if cell.n_clusters >= n:
            raise SettingsError(
                "clusterer.n_clusters", cell.n_clusters, f"2 to {n - 1} for {n} accepted images"
            )
        check_against_data(n, grid, _plain(cfg.fusion))

    ctx = load_context(cfg, job_dir, [cell.extractor], on_accepted, {cell.extractor: "extractor"})
    rows = run_grid(cfg, ctx, [cell], job_dir, keep_going=False)
    return rows[0]


def _job_meta(cfg: DictConfig, choices: Mapping[str, str | None]) -> dict[str, Any]:
    """What is known of a sweep job's cell, for its ``failed.json`` (even if it failed early)."""
    meta: dict[str, Any] = {
        g: choices[g] for g in ("extractor", "reducer", "clusterer") if choices.get(g)
    }
    for key, name in (("clusterer.n_clusters", "n_clusters"), ("seed", "seed")):
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception:
            continue
        if value is not None:
            meta[name] = value
    return meta


def run_sweep_job(cfg: DictConfig, job_dir: str | Path, choices: Mapping[str, str | None]) -> int:
    """One job of a ``-m`` sweep, which never raises: a failure is recorded, not propagated.

    A job that fails writes ``failed.json`` (cell, error in one line, exception type; a bug's
    traceback) into its folder, so that the other jobs run and
    :class:`aurora.sweep.FinalizeSweep` ranks, fuses and reports the rest and counts it.

    Returns:
        The job's exit code: 0, 2 for an aurora error (printed in one line), 1 for a bug.
    """
    from aurora.cli import run_guarded

    job_dir = Path(job_dir)

    def job() -> None:
        try:
            run_sweep_cell(cfg, job_dir, choices)
        except Exception as err:
            record_failure(job_dir, _job_meta(cfg, choices), err)
            raise

    try:
        return run_guarded(job)
    except Exception:  # a bug: recorded above with its traceback
        return 1


def finalize_sweep(cfg: DictConfig, sweep_dir: Path, begin: bool = True) -> dict[str, Any]:
    """Rank and fuse every finished cell of a sweep; outputs go into ``sweep_dir``.

    Failed jobs (their ``failed.json``) are listed in ``failed.csv`` and counted in the
    summary; ``status.json`` follows the finalisation (see :mod:`aurora.run_status`).

    Args:
        cfg: the sweep's config (its ``hydra`` node is ignored).
        sweep_dir: the multirun folder.
        begin: move the folder's earlier results aside and mark it running first (false when
            :class:`aurora.sweep.FinalizeSweep` did so at the start of the sweep).

    Returns:
        The summary (``n_failed_cells`` > 0 when some jobs failed).
    """
    sweep_dir = Path(sweep_dir)
    if begin:
        start_run(cfg, sweep_dir)
    try:
        summary = _finalize_sweep(cfg, sweep_dir)
    except BaseException as err:
        fail_run(sweep_dir, err)
        raise
    finish_run(sweep_dir, summary["n_cells"], [f["cell"] for f in summary["failed_cells"]])
    return summary


def _finalize_sweep(cfg: DictConfig, sweep_dir: Path) -> dict[str, Any]:
    """:func:`finalize_sweep` in a folder already marked running."""
    from aurora.grid import collect_cells, collect_failed

    cells = collect_cells(sweep_dir)
    failed = collect_failed(sweep_dir)
    _check_some_cells(cells, failed, sweep_dir)
    names = sorted({str(c["extractor"]) for c in cells})
    # The sweep's config still holds Hydra's own node, whose per-job keys cannot resolve here.
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.set_struct(cfg, False)
    known = {n: cfg.extractors[n] for n in names if n in cfg.extractors}
    cfg.extractors = known
    ctx = load_context(cfg, sweep_dir, list(known))
    ks = sorted({int(c["n_clusters"]) for c in cells})
    grid = check_grid(ks, cfg.grid.stability_splits)
    _apply_fit(cfg, check_against_data(len(ctx.ids), grid, _plain(cfg.fusion)))
    record = finalize(cfg, ctx, cells, sweep_dir, failed=failed)
    _print_summary(record.summary, sweep_dir)
    return record.summary


def _print_summary(summary: Mapping[str, Any], out_dir: Path) -> None:
    """The end-of-run table on stdout."""
    lines = [
        "",
        "aurora summary",
        f"  inputs {summary['n_inputs']}: accepted {summary['n_accepted']}, "
        f"duplicates {summary.get('n_duplicates', 0)} (labelled like their originals), "
        f"rejected {summary['n_rejected']} {summary['rejected_by_reason'] or ''}",
        f"  groups {summary['n_groups']}, unassigned {summary['n_unassigned']}",
        f"  best grid cell (internal ranking): {summary['best_cell']}",
    ]
    n_failed = int(summary.get("n_failed_cells") or 0)
    if n_failed:
        lines.append(
            f"  {n_failed} of {summary['n_cells']} grid cells FAILED "
            f"(the others were ranked and fused; see {out_dir / 'failed.csv'}):"
        )
        shown = summary.get("failed_cells") or []
        lines += [f"    {f['cell']}: {f['error']}" for f in shown[:5]]
        if len(shown) > 5:
            lines.append(f"    ... and {len(shown) - 5} more")
    if summary.get("notice"):
        lines.append(f"  NOTE: {summary['notice']}")
    if summary.get("skipped_extractors"):
        for k, v in summary["skipped_extractors"].items():
            lines.append(f"  skipped {k}: {v}")
    if summary.get("random_init_extractors"):
        lines.append(f"  RANDOM weights: {summary['random_init_extractors']}")
    if "best_cell_external" in summary:
        b, f = summary["best_cell_external"], summary["fused_external"]
        lines.append(f"  best cell vs truth: AMI {b['ami']:.3f}, ARI {b['ari']:.3f}")
        lines.append(
            f"  fused vs truth (assigned images): homogeneity {f['homogeneity']:.3f}, "
            f"AMI {f['ami']:.3f}, unassigned {summary['fused_unassigned_fraction']:.1%}"
        )
        if "fused_ami_moon" in summary:
            lines.append(f"  fused vs Moon flag: AMI {summary['fused_ami_moon']:.3f}")
    lines.append(f"  outputs: {out_dir.resolve()}")
    if (out_dir / "report" / "index.html").is_file():
        lines.append(f"  report: {(out_dir / 'report' / 'index.html').resolve()}")
    print("\n".join(lines), flush=True)


def main(cfg: DictConfig, run_dir: str | Path, choices: Mapping[str, str | None], mode: str) -> int:
    """What ``cluster.py`` runs; returns the process exit code.

    Known failures (bad data folder, missing weights, impossible settings) are reported in one
    line instead of a traceback (:func:`aurora.cli.run_guarded`): exit code 2. A run whose
    outputs were written but some of whose grid cells failed returns 1 (the cells are listed in
    ``failed.csv`` and ``summary.json``). A sweep job never raises (:func:`run_sweep_job`): the
    code it returns is its Hydra return value, and the sweep's exit code is set by
    :class:`aurora.sweep.FinalizeSweep`.
    """
    from aurora.cli import run_guarded

    if cfg.mode == "apply":
        from aurora.apply import apply_solution

        return run_guarded(apply_solution, cfg, Path(run_dir))
    if "MULTIRUN" in mode:
        return run_sweep_job(cfg, run_dir, choices)
    summary: dict[str, Any] = {}

    def run() -> None:
        summary.update(run_cluster(cfg, run_dir))

    code = run_guarded(run)
    return 1 if code == 0 and summary.get("n_failed_cells") else code
