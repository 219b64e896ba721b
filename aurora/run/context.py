"""Everything a run knows before its grid: images, features, references, truth (built once).

:func:`load_context` scans the data, extracts the features of each extractor, keeps the
images every extractor saw (any other is recorded as rejected, never dropped), appends the
labelled reference images and reads the ground truth, and returns one :class:`RunContext`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate

from aurora.data.dataset import Truth, ensure_dataset, frame_times, read_truth
from aurora.data.scan_cache import scan_cached
from aurora.data.sources import Manifest, Rejection
from aurora.grid.sample import fit_sample_rows
from aurora.infra.cache import stable_hash
from aurora.infra.errors import RunError
from aurora.infra.logs import log, stage
from aurora.preprocess import PreprocessedStore
from aurora.run.budget import plan_budget
from aurora.run.features import ExtractedFeatures, build_extractors, extract_all
from aurora.run.references import References, extract_references
from aurora.run.settings import RunSettings
from aurora.run.stores import ImageRows, StoreSet, store_rows


@dataclass(frozen=True)
class RunContext:
    """What the grid and the finalisation need from the data and feature stages.

    Every per-image field has one entry per accepted image, in the order of ``ids``
    (reference images last, ids ``reference/<class>/...``).
    """

    stores: StoreSet
    features: dict[str, ExtractedFeatures]
    ids: list[str]  # (N,)
    paths: list[str]  # (N,)
    rejected: list[Rejection]
    skipped: dict[str, str] = field(default_factory=dict)  # extractor -> why it was left out
    moon: np.ndarray | None = None  # (N,) bool, Moon detected by preprocessing
    timestamps: list[Any] = field(default_factory=list)  # (N,) datetimes or None
    reference_classes: list[str | None] = field(default_factory=list)  # (N,) None = ordinary
    must_link: np.ndarray | None = None  # (M, 2) row pairs from the reference classes
    cannot_link: np.ndarray | None = None  # (C, 2)
    duplicates: dict[str, str] = field(default_factory=dict)  # copy id -> original id
    truth: Truth = Truth(None, {})  # the truth table's classes and nuisances

    def fit_rows(self, fit_sample: int | None, seed: int) -> np.ndarray | None:
        """The rows every grid cell fits on (:func:`aurora.grid.sample.fit_sample_rows`): at most
        ``fit_sample``, evenly spaced in time, plus every row a constraint names; None when
        there are no more rows than that."""
        pairs = [np.asarray(p).ravel() for p in (self.must_link, self.cannot_link) if p is not None]
        keep = np.concatenate(pairs).astype(np.int64) if pairs else None
        times = self.timestamps or None
        return fit_sample_rows(len(self.ids), fit_sample, times=times, seed=seed, keep=keep)

    def nuisances(self) -> dict[str, np.ndarray]:
        """The nuisances every cell is scored against: the truth table's, and the Moon (the
        table's ``moon`` column, else the Moon detected by preprocessing)."""
        found = self.truth.nuisances
        return {**found, "moon": found.get("moon", self.moon)}


def load_context(
    settings: RunSettings,
    run_dir: Path,
    names: Sequence[str] | None = None,
    on_accepted: Callable[[int], None] | None = None,
    node_key: Mapping[str, str] | None = None,
    n_cells: int = 1,
) -> RunContext:
    """Data, preprocessing, features, references and truth of a run (everything before the grid).

    Args:
        settings: the run's settings.
        run_dir: run directory.
        names: extractors to compute (None = all configured).
        on_accepted: called with the accepted count before any training or extraction.
        node_key: extractor name -> its config key, for messages (see :func:`extract_all`).
        n_cells: grid cells the run computes (or ranks), for the estimates of
            :func:`aurora.run.budget.plan_budget` (written to ``run_dir/estimates.json``;
            a stage over the budget stops the run there).
    """
    data, jobs = settings.data, settings.jobs
    manifest = _scan_data(settings)
    names = list(names if names is not None else settings.extractors)
    # Weights found or not before the budget: it lists only the extractors (and cells) that run.
    built = build_extractors(settings, names, node_key)
    running, skipped = [n for n in names if n not in built[1]], built[1]
    if not running:
        raise RunError(
            "no extractor could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    # Memory and disk of each stage for this many images, before any of them runs (the cells
    # are a product over the extractors: the skipped ones' share is left out).
    plan_budget(manifest, settings, running, n_cells * len(running) // len(names), run_dir)
    variants = {k: instantiate(v) for k, v in settings.preprocess.items()}
    stores = StoreSet(manifest, variants, settings.cache_dir, jobs)
    extracted, _ = extract_all(settings, stores, run_dir, names, on_accepted, node_key, built)
    ids, paths, rejected = _align(extracted, manifest)
    first = next(iter(extracted.values())).store
    duplicates = _duplicates(first, ids, rejected)
    rows = store_rows(first, ids)
    moon = np.asarray(first.moon)[rows]
    timestamps = frame_times([first.timestamps[k] for k in rows], ids, data.metadata, data.truth)
    features = {name: _rows(f, ids) for name, f in extracted.items()}
    classes: list[str | None] = [None] * len(ids)
    must = cannot = None
    if data.reference_dir:
        refs = extract_references(
            Path(str(data.reference_dir)),
            features,
            stores,
            settings.extract,
            settings.cache_dir,
            jobs,
            rejected,
        )
        must, cannot = refs.must_link, refs.cannot_link
        ids = [*ids, *refs.ids]
        features = {name: _append(f, refs, ids) for name, f in features.items()}
        paths = [*paths, *refs.paths]
        rejected = [*rejected, *refs.rejected]
        moon = np.concatenate([moon, refs.moon])
        timestamps = [*timestamps, *refs.timestamps]
        classes = [*classes, *refs.classes]
    return RunContext(
        stores,
        features,
        ids,
        paths,
        rejected,
        skipped,
        moon=moon,
        timestamps=timestamps,
        reference_classes=classes,
        must_link=must,
        cannot_link=cannot,
        duplicates=duplicates,
        truth=read_truth(data.truth, ids, data.truth_column, data.nuisance_columns),
    )


def _scan_data(settings: RunSettings) -> Manifest:
    """The data stage: the data set (made first when synthetic) scanned, through its cache."""
    data, jobs = settings.data, settings.jobs
    with stage("data") as st:
        root = ensure_dataset(data.root, data.synth, jobs)
        manifest = scan_cached(
            root, settings.cache_dir, jobs=jobs, progress=True, max_pixels=data.max_pixels
        )
        st["msg"] = (
            f"{manifest.n_inputs} inputs in {root}: {len(manifest.records)} readable candidates,"
            f" {len(manifest.rejected)} rejected while scanning"
        )
    return manifest


def _rows(f: ExtractedFeatures, ids: list[str]) -> ExtractedFeatures:
    """``f`` restricted to ``ids`` (in that order), with its images."""
    images = ImageRows([(f.store.images, store_rows(f.store, ids))])
    if f.ids == ids:
        return dataclasses.replace(f, ids=ids, images=images)
    pos = {i: k for k, i in enumerate(f.ids)}
    log.info("aligned %s to %d common images", f.name, len(ids))
    return dataclasses.replace(
        f,
        features=f.features[[pos[i] for i in ids]],
        key=stable_hash(f.key, ids),  # other rows than the cached entry's: another key
        ids=ids,
        images=images,
    )


def _append(f: ExtractedFeatures, refs: References, ids: list[str]) -> ExtractedFeatures:
    """``f`` with the reference rows appended (``ids`` = the run's ids with the references)."""
    feats, key = refs.features[f.name]
    assert f.images is not None
    return dataclasses.replace(
        f,
        features=np.concatenate([f.features, feats]),
        key=stable_hash(f.key, key, refs.source_ids),
        ids=ids,
        images=ImageRows([*f.images.parts, refs.images[f.name]]),
    )


def _align(
    features: Mapping[str, ExtractedFeatures], manifest: Manifest
) -> tuple[list[str], list[str], list[Rejection]]:
    """The images every extractor saw, their paths, and the rejections (any image some
    extractor's preprocessing set aside is recorded, never dropped)."""
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
