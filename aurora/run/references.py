"""Labelled reference images of a run: one subfolder per class, through the run's chain.

:func:`extract_references` preprocesses and extracts them like the data; they join the run's
rows at the end (ids ``reference/<class>/<file>``) and give the must-link and cannot-link
pairs of the clusterers that take constraints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aurora.clustering import constraints_from_reference
from aurora.data.sources import Manifest, Rejection, scan
from aurora.infra.errors import RunError
from aurora.infra.logs import stage
from aurora.preprocess import PreprocessedStore
from aurora.run.features import ExtractedFeatures
from aurora.run.settings import ExtractSettings
from aurora.run.stores import StoreSet, store_rows

REFERENCE_PREFIX = "reference/"


@dataclass(frozen=True)
class References:
    """Labelled reference images, extracted like the data, to append to a run's rows.

    Attributes:
        ids: (R,) ``reference/<class>/<file>``.
        source_ids: (R,) ``<class>/<file>``, their ids in the reference folder.
        paths: (R,) their files.
        classes: (R,) their class (subfolder).
        moon: (R,) bool, Moon detected by preprocessing.
        timestamps: (R,) datetimes or None.
        rejected: reference inputs that did not become images.
        features: extractor name -> ((R, D) features, the cache key of their extraction).
        images: extractor name -> (store images, (R,) rows) of the preprocessed images.
        must_link: (M, 2) row pairs of the run (data rows first) inside a class.
        cannot_link: (C, 2) row pairs across classes.
    """

    ids: list[str]
    source_ids: list[str]
    paths: list[str]
    classes: list[str]
    moon: np.ndarray
    timestamps: list[Any]
    rejected: list[Rejection]
    features: dict[str, tuple[np.ndarray, str]]
    images: dict[str, tuple[np.ndarray, np.ndarray]]
    must_link: np.ndarray
    cannot_link: np.ndarray


def extract_references(
    ref_dir: Path,
    features: Mapping[str, ExtractedFeatures],
    stores: StoreSet,
    extract: ExtractSettings,
    cache_dir: str | Path,
    jobs: int | None,
    rejected: Sequence[Rejection] = (),
) -> References:
    """Labelled reference images (one subfolder per class), through the same preprocessing and
    extractors as the data.

    They join the data set at the end (ids ``reference/<class>/<file>``) and give must-link
    inside a class and cannot-link across classes for the clusterers that take constraints
    (COP-K-means).

    Args:
        ref_dir: the reference folder.
        features: the run's features per extractor (its extractor and preprocessing are used).
        stores: the run's stores (their variants and cache are used).
        extract: batch size and device of the extraction.
        cache_dir: cache folder.
        jobs: worker processes.
        rejected: the run's rejections so far (a reference rejected twice is recorded once).

    Returns:
        The :class:`References`; their constraints count the run's ``len(ids)`` data rows of
        ``features`` first.
    """
    with stage("references") as st:
        manifest, dropped = _scan_references(ref_dir, jobs)
        refs = StoreSet(manifest, stores.variants, stores.cache_root, stores.jobs)
        per_extractor, accepted, more = _extract_each(
            features, refs, extract, cache_dir, seen={x.path for x in [*rejected, *dropped]}
        )
        dropped += more
        ref_ids = [i for i in per_extractor[next(iter(per_extractor))][1].ids if i in accepted]
        if not ref_ids:
            raise RunError(f"no usable reference image under {ref_dir}")
        feats: dict[str, tuple[np.ndarray, str]] = {}
        images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (store, fs) in per_extractor.items():
            fpos = {i: k for k, i in enumerate(fs.ids)}
            feats[name] = (fs.features[[fpos[i] for i in ref_ids]], fs.key)
            images[name] = (store.images, store_rows(store, ref_ids))
        store = next(iter(per_extractor.values()))[0]
        rows = store_rows(store, ref_ids)
        id_to_path = {r.id: r.path for r in manifest.records}
        classes = [i.split("/", 1)[0] for i in ref_ids]
        n_data = len(next(iter(features.values())).ids)
        must, cannot = (
            np.asarray(p) for p in constraints_from_reference([None] * n_data + classes)
        )
        st["msg"] = (
            f"{len(ref_ids)} reference images in {len(set(classes))} classes: "
            f"{len(must)} must-link, {len(cannot)} cannot-link"
        )
    return References(
        ids=[REFERENCE_PREFIX + i for i in ref_ids],
        source_ids=ref_ids,
        paths=[id_to_path[i] for i in ref_ids],
        classes=classes,
        moon=np.asarray(store.moon)[rows],
        timestamps=[store.timestamps[k] for k in rows],
        rejected=dropped,
        features=feats,
        images=images,
        must_link=must,
        cannot_link=cannot,
    )


def _scan_references(ref_dir: Path, jobs: int | None) -> tuple[Manifest, list[Rejection]]:
    """The reference folder scanned, and its rejections under their run ids.

    Raises:
        RunError: an image directly in the folder, outside a class subfolder.
    """
    manifest = scan(ref_dir, jobs=jobs)
    dropped = [Rejection(REFERENCE_PREFIX + r.path, r.reason, r.detail) for r in manifest.rejected]
    flat = [r.id for r in manifest.records if "/" not in r.id]
    if flat:
        raise RunError(
            f"reference images must sit in one subfolder per class under {ref_dir}; "
            f"found {flat[0]} directly in it"
        )
    return manifest, dropped


def _extract_each(
    features: Mapping[str, ExtractedFeatures],
    refs: StoreSet,
    extract: ExtractSettings,
    cache_dir: str | Path,
    *,
    seen: set[str],
) -> tuple[dict[str, tuple[PreprocessedStore, Any]], set[str], list[Rejection]]:
    """The reference images through each extractor's preprocessing and network.

    Args:
        features: the run's features per extractor (its extractor and preprocessing are used).
        refs: the reference stores.
        extract: batch size and device of the extraction.
        cache_dir: cache folder.
        seen: run ids of the rejections recorded so far (not recorded again).

    Returns:
        (extractor name -> (its reference store, its feature set), the ids every extractor
        accepted, the new rejections of the preprocessing under their run ids).
    """
    from aurora.extractors import extract_features  # torch: loaded with the first extraction

    seen = set(seen)
    dropped: list[Rejection] = []
    accepted: set[str] | None = None
    per_extractor: dict[str, tuple[PreprocessedStore, Any]] = {}
    for name, f in features.items():
        store = refs.get(f.preprocess, int(f.extractor.input_size))
        fs = extract_features(
            store,
            f.extractor,
            cache_dir,
            batch_size=extract.batch_size,
            num_workers=0,
            device=extract.device,
        )
        per_extractor[name] = (store, fs)
        accepted = set(fs.ids) if accepted is None else accepted & set(fs.ids)
        for r in store.rejected:
            rid = REFERENCE_PREFIX + r.path
            if rid not in seen:
                dropped.append(Rejection(rid, r.reason, r.detail))
                seen.add(rid)
    return per_extractor, accepted if accepted is not None else set(), dropped
