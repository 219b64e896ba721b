"""``cluster.py mode=prepare``: scan, preprocess and extract one shard of a data set (no grid).

A season is prepared by many jobs at once, then clustered by one run::

    python cluster.py -m mode=prepare prepare.shards=8 'prepare.shard=range(0,8)' \\
        data=folder data.root=SEASON hydra/launcher=slurm
    python cluster.py data=folder data.root=SEASON          # reads what the jobs prepared

Job ``i`` takes block ``i`` of the sorted list of input files (contiguous, so one job reads
neighbouring files): it scans them, preprocesses them with each preprocessing that the run's
extractors (``grid.extractors``) need, and extracts the features of each extractor that has
weights (an extractor that trains its encoder first only gets its training images prepared:
the encoder is trained on the whole data set, by the run). What a job computes is an ordinary
cache entry of its block. Once every block is done (checked by each job as it ends, by the
sweep's end, and by ``python -m aurora.run finalize SWEEP``) the blocks are joined into the
entries a one-process run would have written (same keys, same images), which the run that
follows reads instead of redoing the work, and the blocks' entries are deleted. Every input
ends as exactly one accepted image, duplicate or rejection of the joined store (checked as it
is written), and ``rejected.csv`` lists the rejections.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from aurora.data.dataset import ensure_dataset
from aurora.data.manifest import Manifest, write_rejected_csv
from aurora.data.scan_cache import (
    Listing,
    assemble_scan,
    block_manifests,
    list_inputs,
    missing_scan_shards,
    remove_scan_shards,
    scan_shard,
)
from aurora.infra.atomic import atomic_write_text
from aurora.infra.cache import Cache
from aurora.infra.config import plain
from aurora.infra.errors import RunError, SettingsError
from aurora.infra.logs import log, stage
from aurora.infra.run_folder import fail_run, finish_run
from aurora.preprocess import (
    PreprocessConfig,
    PreprocessedStore,
    assemble_preprocessed,
    build_preprocessed,
    store_key,
)
from aurora.preprocess.store import STAGE as STORE_STAGE
from aurora.run.budget import plan_budget
from aurora.run.checks import check_device, check_number
from aurora.run.features import build_extractors
from aurora.run.settings import RunSettings
from aurora.run.start import start_run

PREPARED_FILE = "prepared.json"


@dataclass(frozen=True)
class Target:
    """A preprocessed store that the run will read, and the extractor whose features it gets.

    Attributes:
        name: the extractor's name.
        cfg: the preprocessing chain at the store's size.
        extractor: the extractor, or None when its encoder is trained first (store only).
    """

    name: str
    cfg: PreprocessConfig
    extractor: Any = None


@dataclass(frozen=True)
class Shards:
    """Which block of how many (``prepare.shard``, ``prepare.shards``)."""

    shard: int
    shards: int

    @classmethod
    def from_cfg(cls, node: Any) -> Shards:
        """Checked ``prepare.*`` values.

        Raises:
            SettingsError: ``shards`` < 1, or ``shard`` outside ``[0, shards - 1]``.
        """
        node = node or {}
        shards = int(check_number("prepare.shards", node.get("shards", 1), 1, integer=True))
        shard = node.get("shard", 0)
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
            raise SettingsError("prepare.shard", shard, f"an integer in [0, {shards - 1}]")
        return cls(int(shard), shards)


def _targets(settings: RunSettings) -> tuple[list[Target], dict[str, str]]:
    """The stores and extractors of the run's extractors (``grid.extractors``, or all)."""
    names = settings.grid.axis("extractors", settings.extractors)
    unknown = sorted(set(names) - set(settings.extractors))
    if unknown:
        raise RunError(
            f"grid.extractors names {unknown}; configured: {sorted(settings.extractors)}"
        )
    specs, skipped = build_extractors(settings, names)
    variants = {k: instantiate(v) for k, v in settings.preprocess.items()}
    targets = []
    for name, (_, extractor) in specs.items():
        plan = settings.plans[name]
        variant = plan.preprocess
        if variant not in variants:
            raise RunError(
                f"extractor {name!r} wants preprocess variant {variant!r}; "
                f"configured: {sorted(variants)}"
            )
        # Trained first: its training store (the plan's); else the network's own input size.
        size = plan.size if extractor is None else int(extractor.input_size)
        targets.append(Target(name, dataclasses.replace(variants[variant], size=size), extractor))
    return targets, skipped


def _identity(target: Target) -> dict[str, Any]:
    return target.extractor.identity()


def _whole_done(whole: Manifest, target: Target, cache: Cache) -> bool:
    """The joined store (and features) of ``target`` are in the cache."""
    from aurora.extractors import feature_key

    key = store_key(whole, target.cfg)
    if not cache.exists(STORE_STAGE, key):
        return False
    return target.extractor is None or cache.exists("features", feature_key(key, _identity(target)))


def prepare_shard(
    settings: RunSettings,
    listing: Listing,
    shards: Shards,
    targets: Sequence[Target],
    run_dir: Path,
) -> dict[str, Any]:
    """Scan, preprocess and extract block ``shards.shard`` (each step cached).

    The block's memory and disk are estimated after its scan, before any other work
    (:func:`aurora.run.budget.plan_budget`: ``run_dir/estimates.json``); a stage over the
    budget stops the job there.

    Returns:
        What the block holds: inputs, accepted images per store, rejections, duplicates.
    """
    from aurora.extractors import extract_features

    cache = Cache(settings.cache_dir)
    whole = assemble_scan(listing, shards.shards, cache.root)
    with stage("scan") as st:
        part = scan_shard(listing, shards.shard, shards.shards, cache.root, settings.jobs, True)
        st["msg"] = (
            f"shard {shards.shard}/{shards.shards}: {part.n_inputs} inputs, "
            f"{len(part.records)} images"
        )
    plan_budget(part, settings, [t.name for t in targets], 0, run_dir)
    done: dict[str, Any] = {
        "inputs": part.n_inputs,
        "scan_rejected": len(part.rejected),
        "stores": {},
    }
    for t in targets:
        if whole is not None and _whole_done(whole, t, cache):
            done["stores"][t.name] = "joined already"
            continue
        with stage("preprocess") as st:
            store = build_preprocessed(part, t.cfg, cache.root, jobs=settings.jobs)
            st["msg"] = (
                f"{t.name}@{t.cfg.size}px: {len(store)} accepted, {len(store.rejected)} rejected"
            )
        done["stores"][t.name] = {
            "accepted": len(store),
            "rejected": len(store.rejected),
            "duplicates": len(store.duplicates),
        }
        if t.extractor is not None and len(store):
            with stage("extract") as st:
                ex = settings.extract
                fs = extract_features(
                    store,
                    t.extractor,
                    cache.root,
                    batch_size=ex.batch_size,
                    num_workers=ex.num_workers,
                    device=ex.device,
                    shard=(0, 1),
                )
                assert fs is not None
                st["msg"] = f"{t.name}: {fs.features.shape[0]} x {fs.features.shape[1]} features"
    return done


def assemble_prepared(
    settings: RunSettings, listing: Listing, shards: int, targets: Sequence[Target]
) -> tuple[dict[str, Any], list[int]]:
    """Join the blocks into the whole data set's scan, stores and features, where all are done.

    The blocks' entries are deleted once everything of every target is joined.

    Returns:
        The summary of the joined data (empty while blocks are missing) and the blocks that
        are not done yet.
    """
    from aurora.extractors import assemble_features, feature_key, load_feature_set

    cache = Cache(settings.cache_dir)
    whole = assemble_scan(listing, shards, cache.root)
    if whole is None:
        return {}, missing_scan_shards(listing, shards, cache.root)
    parts = block_manifests(listing, shards, cache.root)
    missing: set[int] = set()
    stores: dict[str, PreprocessedStore] = {}
    leftovers: list[tuple[str, str]] = []  # the blocks' entries, deleted at the end
    for t in targets:
        key = store_key(whole, t.cfg)
        part_keys = [store_key(p, t.cfg) for p in parts]
        leftovers += [(STORE_STAGE, k) for k in part_keys if k != key]
        absent = [s for s, k in enumerate(part_keys) if not cache.exists(STORE_STAGE, k)]
        if not cache.exists(STORE_STAGE, key):
            if absent:
                missing.update(absent)
                continue
            blocks = [
                PreprocessedStore(cache.path(STORE_STAGE, k), p)
                for k, p in zip(part_keys, parts, strict=True)
            ]
            with stage("join") as st:
                assemble_preprocessed(whole, t.cfg, cache.root, blocks)
                st["msg"] = f"{t.name}@{t.cfg.size}px: preprocessed store of {shards} shards"
        store = build_preprocessed(whole, t.cfg, cache.root)  # the joined entry, from the cache
        stores[t.name] = store
        if t.extractor is None:
            continue
        identity = _identity(t)
        whole_fkey = feature_key(key, identity)
        fkeys = [(s, feature_key(k, identity)) for s, k in enumerate(part_keys) if k != key]
        if cache.exists("features", whole_fkey):
            leftovers += [("features", fk) for _, fk in fkeys]
            continue
        sizes = _block_sizes(cache, part_keys)
        need = [(s, fk) for s, fk in fkeys if sizes[s] is None or sizes[s] > 0]
        absent = [s for s, fk in need if not cache.exists("features", fk)]
        if absent:
            missing.update(absent)
            continue
        with stage("join") as st:
            feats = [load_feature_set(cache.path("features", fk)) for _, fk in need]
            fs = assemble_features(store, feats, cache.root)
            st["msg"] = (
                f"{t.name}: {fs.features.shape[0]} x {fs.features.shape[1]} features, "
                f"{shards} shards"
            )
        leftovers += [("features", fk) for _, fk in need]
    if missing:
        return {}, sorted(missing)
    for entry_stage, k in leftovers:
        cache.remove(entry_stage, k)
    remove_scan_shards(listing, shards, cache.root)
    first = next(iter(stores.values()), None)
    summary = _joined_summary(whole, stores, shards)
    return {"summary": summary, "rejected": first.rejected if first else whole.rejected}, []


def _joined_summary(
    whole: Manifest, stores: dict[str, PreprocessedStore], shards: int
) -> dict[str, Any]:
    """The joined data in numbers: its inputs, and each joined store's key, size and counts."""
    return {
        "shards": shards,
        "n_inputs": whole.n_inputs,
        "stores": {
            n: {
                "key": s.key,
                "size": s.size,
                "accepted": len(s),
                "duplicates": len(s.duplicates),
                "rejected": len(s.rejected),
            }
            for n, s in stores.items()
        },
    }


def _block_sizes(cache: Cache, keys: Sequence[str]) -> list[int | None]:
    """Accepted images of each block's store (None when it is not in the cache)."""
    out: list[int | None] = []
    for k in keys:
        index = cache.path(STORE_STAGE, k) / "index.json"
        out.append(
            len(json.loads(index.read_text())["ids"]) if cache.exists(STORE_STAGE, k) else None
        )
    return out


def _write_outputs(out_dir: Path, joined: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    doc = {**extra, **joined.get("summary", {})}
    atomic_write_text(out_dir / PREPARED_FILE, json.dumps(doc, indent=2, default=str) + "\n")
    if "rejected" in joined:
        write_rejected_csv(joined["rejected"], out_dir / "rejected.csv")
    return doc


def _setup(cfg: DictConfig) -> tuple[RunSettings, Listing, list[Target], dict[str, str]]:
    settings = RunSettings.from_cfg(cfg)
    root = ensure_dataset(settings.data.root, settings.data.synth, settings.jobs)
    listing = list_inputs(root, settings.data.max_pixels)
    targets, skipped = _targets(settings)
    return settings, listing, targets, skipped


def run_prepare(cfg: DictConfig, job_dir: str | Path) -> dict[str, Any]:
    """One shard of ``mode=prepare`` (the whole data set with ``prepare.shards=1``).

    Writes ``prepared.json`` into ``job_dir`` (the block's counts; the joined data's once
    every block is done) and, once joined, ``rejected.csv``.
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    shards = Shards.from_cfg(cfg.get("prepare"))
    check_device(cfg.extract.device, here=True)  # this job extracts: before any work
    settings, listing, targets, skipped = _setup(cfg)
    block = prepare_shard(settings, listing, shards, targets, job_dir)
    joined, missing = assemble_prepared(settings, listing, shards.shards, targets)
    if missing:
        log.info(
            "prepare: shards %s of %d are not done yet; the last one to finish joins them",
            missing,
            shards.shards,
        )
    extra = {
        "shard": shards.shard,
        "shards": shards.shards,
        "block": block,
        "skipped_extractors": skipped,
        "joined": not missing,
    }
    return _write_outputs(job_dir, joined, extra)


def finalize_prepare(cfg: DictConfig, sweep_dir: Path, begin: bool = True) -> dict[str, Any]:
    """Join the shards of a ``mode=prepare`` sweep; its ``prepared.json`` and ``rejected.csv``.

    Args:
        cfg: the sweep's config.
        sweep_dir: the multirun folder.
        begin: move the folder's earlier results aside and mark it running first (false when
            :class:`aurora.run.sweep.FinalizeSweep` did so at the start of the sweep).

    Raises:
        RunError: some blocks are not done, naming them and the command that redoes them.
    """
    if begin:
        start_run(cfg, sweep_dir)
    shards = Shards.from_cfg({**(plain(cfg.get("prepare")) or {}), "shard": 0})
    try:
        settings, listing, targets, skipped = _setup(cfg)
        joined, missing = assemble_prepared(settings, listing, shards.shards, targets)
        if missing:
            listed = ",".join(str(s) for s in missing)
            raise RunError(
                f"shards {listed} of {shards.shards} are not prepared (failed or killed): rerun "
                f"them with the same command and prepare.shard={listed}, then "
                f"python -m aurora.run finalize {sweep_dir}"
            )
        doc = _write_outputs(
            sweep_dir, joined, {"shards": shards.shards, "skipped_extractors": skipped}
        )
    except BaseException as err:
        fail_run(sweep_dir, err)
        raise
    finish_run(sweep_dir, 0, [])
    log.info(
        "prepared %d inputs in %d shards: %s",
        doc["n_inputs"],
        shards.shards,
        sweep_dir / PREPARED_FILE,
    )
    return doc
