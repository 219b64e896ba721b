"""A run's settings, read from the composed Hydra config once.

:meth:`RunSettings.from_cfg` is the one place that turns the ``cluster`` config into plain
values: frozen dataclasses for what the orchestrator reads key by key, plain dicts for the
nodes that are instantiated (``_target_``) or checked as a whole. Nothing below
:mod:`aurora.run` sees the config. What the data decides later (k lowered to the accepted
count, minimum group sizes; :class:`aurora.run.checks.DataFit`) gives new settings through
:meth:`RunSettings.fitted`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aurora.data.formats import DEFAULT_MAX_PIXELS, check_max_pixels
from aurora.fusion.settings import FusionSettings
from aurora.infra.config import plain
from aurora.infra.errors import SettingsError
from aurora.run.checks import (
    DataFit,
    check_extract,
    check_fit_sample,
    check_int,
    check_jobs,
    check_number,
    check_seed,
    check_training,
)
from aurora.run.extractor_plan import ExtractorPlan, plan_extractors
from aurora.run.night_settings import NightSettings


@dataclass(frozen=True)
class DataSettings:
    """Where the images and their tables are (``data.*``, ``constraints.reference_dir``).

    Attributes:
        root: image folder, list file or single image.
        synth: ``{n, seed, size, moon_prob}`` of the synthetic sky to generate there, or None.
        metadata: CSV of frame times (``path,time``), or None.
        truth: ground-truth CSV (``path`` plus the class column), or None.
        truth_column: the truth table's class column.
        nuisance_columns: truth table columns measured as nuisances.
        reference_dir: folder of labelled reference images (one subfolder per class), or None.
        max_pixels: largest image accepted, in pixels from its header (``too large`` above).
    """

    root: str
    synth: dict[str, Any] | None = None
    metadata: str | None = None
    truth: str | None = None
    truth_column: str = "morphology"
    nuisance_columns: tuple[str, ...] = ("moon",)
    reference_dir: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ExtractSettings:
    """Batched feature extraction (``extract.*``).

    Attributes:
        batch_size: images per forward pass (>= 1).
        num_workers: loader worker processes (0 = read in the main process).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (:data:`aurora.run.checks.DEVICE_FORMS`).
    """

    batch_size: int
    num_workers: int
    device: str

    @classmethod
    def from_node(cls, node: Mapping[str, Any], *, here: bool = False) -> ExtractSettings:
        """Read and check an ``extract`` node.

        Args:
            node: the plain ``extract`` node.
            here: also check that this machine has the device (a run that may extract);
                see :func:`aurora.run.checks.check_device`.

        Raises:
            SettingsError: a value that cannot work, naming its key.
        """
        check_extract(node, here=here)
        return cls(int(node["batch_size"]), int(node.get("num_workers", 0)), str(node["device"]))


@dataclass(frozen=True)
class TrainSettings:
    """Training of our own encoders when an extractor has no checkpoint.

    Attributes:
        image_size: side in px of the training images (``train.image_size``).
        models: model name -> ``models.<name>`` node (``_target_`` ...).
        trainer: the ``trainer`` node.
        loader: ``train.loader`` (:class:`aurora.data.datamodule.LoaderConfig` fields).
        logger: the ``logger`` node, or None.
        callbacks: the ``callbacks`` node: name -> Lightning callback node (``_target_``).
    """

    image_size: int
    models: dict[str, dict[str, Any]]
    trainer: dict[str, Any]
    loader: dict[str, Any]
    logger: dict[str, Any] | None
    callbacks: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class GridSettings:
    """The grid of a single-process run (``grid.*``), as configured (checked by the run).

    Attributes:
        extractors: names to combine, or None = every configured one; idem ``reducers``,
            ``clusterers``.
        n_clusters: the k values as given (a list or one value;
            :func:`aurora.run.checks.check_grid`).
        stability_splits: as given.
        fit_sample: the most rows a cell fits its reducer and clusterer on (None = all).
    """

    extractors: tuple[str, ...] | None
    reducers: tuple[str, ...] | None
    clusterers: tuple[str, ...] | None
    n_clusters: Any
    stability_splits: Any
    fit_sample: int | None = None

    def axis(self, name: str, configured: Mapping[str, Any]) -> list[str]:
        """The names of grid axis ``name`` (``extractors``, ...): as given, or all configured."""
        return list(getattr(self, name) or configured)


@dataclass(frozen=True)
class BudgetSettings:
    """The memory and disk a run must fit (``budget.*``; :mod:`aurora.run.budget`).

    Attributes:
        memory_gb: peak memory allowed, in GB (2**30 bytes); None = this machine's or job's
            (cgroup limit, else ``SLURM_MEM_PER_NODE``, else the memory available).
        disk_gb: new disk allowed, in GB; None = the free space of the cache's file system.
        check: refuse a run over budget; false = print the estimates and go on.
    """

    memory_gb: float | None = None
    disk_gb: float | None = None
    check: bool = True

    @classmethod
    def from_node(cls, node: Mapping[str, Any] | None) -> BudgetSettings:
        """Read and check a ``budget`` node (None = all defaults).

        Raises:
            SettingsError: a size that is not a number > 0, or ``check`` not a boolean.
        """
        node = node or {}

        def size(key: str) -> float | None:
            value = node.get(key)
            if value is None:
                return None
            return float(check_number(f"budget.{key}", value, 0.001))

        check = node.get("check", True)
        if not isinstance(check, bool):
            raise SettingsError("budget.check", check, "true or false")
        return cls(size("memory_gb"), size("disk_gb"), check)


def night_settings(cfg: DictConfig) -> NightSettings:
    """The time-aware settings of a ``cluster`` config (``data.station``, ``stations``,
    ``screen``, ``nights``), checked (:meth:`NightSettings.from_nodes`)."""
    return NightSettings.from_nodes(
        station=cfg.data.get("station"),
        stations=plain(cfg.get("stations")),
        screen=plain(cfg.get("screen")),
        nights=plain(cfg.get("nights")),
    )


@dataclass(frozen=True)
class RunSettings:
    """Everything a ``cluster.py`` run reads from its config.

    Attributes:
        seed: the run seed.
        cache_dir: the cache folder (``paths.cache_dir``).
        jobs: worker processes for decoding and preprocessing (None = all cores).
        data: images and tables.
        extract: feature extraction.
        train: encoder training.
        grid: the grid axes.
        preprocess: variant name -> ``preprocess.<name>`` node.
        extractors: name -> ``extractors.<name>`` node (an unset ``ckpt_path`` reads ``"???"``).
        reducers: name -> ``reducers.<name>`` node.
        clusterers: name -> ``clusterers.<name>`` node.
        fusion: the fusion's settings, checked.
        skip_unavailable_extractors: leave out an ImageNet extractor whose weights are missing.
        config: the whole resolved config (recorded with the solution).
        budget: the memory and disk the run must fit.
        nights: stations, screening, nights and events (the time-aware half).
        plans: extractor name -> its :class:`~aurora.run.extractor_plan.ExtractorPlan` (the
            store it reads, whether it trains first), made from ``extractors`` and
            ``train.image_size`` whenever the settings are made (here, and by
            :meth:`with_nodes`).
    """

    seed: int
    cache_dir: str
    jobs: int | None
    data: DataSettings
    extract: ExtractSettings
    train: TrainSettings
    grid: GridSettings
    preprocess: dict[str, dict[str, Any]]
    extractors: dict[str, dict[str, Any]]
    reducers: dict[str, dict[str, Any]]
    clusterers: dict[str, dict[str, Any]]
    fusion: FusionSettings
    skip_unavailable_extractors: bool
    config: dict[str, Any]
    budget: BudgetSettings = BudgetSettings()
    nights: NightSettings = NightSettings()
    plans: dict[str, ExtractorPlan] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plans = plan_extractors(self.extractors, image_size=self.train.image_size)
        object.__setattr__(self, "plans", plans)  # frozen: set once, here

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> RunSettings:
        """Read the composed ``cluster`` config. A ``hydra`` node (in a sweep's saved config)
        is left out: its per-job keys cannot resolve outside a job.

        The settings that need no data are checked here, before any work: ``seed``, ``jobs``,
        ``extract.*`` (the device's form; whether this machine has it is
        :func:`aurora.run.checks.check_device`'s ``here``, for runs that extract), ``train.*`` and
        ``trainer.*`` (:func:`aurora.run.checks.check_training`), ``grid.fit_sample``, ``budget.*``,
        ``fusion.*`` (:meth:`aurora.fusion.FusionSettings.from_node`).

        Raises:
            SettingsError: one of those values cannot work (the message names the key).
            omegaconf.errors.MissingMandatoryValue: ``data.root`` (or another value read
                here) is unset.
        """
        if "hydra" in cfg:
            cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        data = cfg.data
        constraints = cfg.get("constraints") or {}
        grid = cfg.grid

        def names(key: str) -> tuple[str, ...] | None:
            value = grid.get(key)
            return tuple(str(v) for v in value) if value else None

        seed, jobs = check_seed(cfg.get("seed")), check_jobs(cfg.get("jobs"))
        extract = ExtractSettings.from_node(plain(cfg.extract))
        trainer, loader = plain(cfg.trainer), plain(cfg.train.loader)
        check_training(loader, trainer)
        image_size = check_int("train.image_size", cfg.train.image_size, 8)
        return cls(
            seed=seed,
            cache_dir=str(cfg.paths.cache_dir),
            jobs=jobs,
            data=DataSettings(
                root=str(data.root),
                synth=plain(data.get("synth")),
                metadata=data.get("metadata"),
                truth=data.get("truth"),
                truth_column=str(data.get("truth_column") or DataSettings.truth_column),
                nuisance_columns=tuple(
                    str(c) for c in data.get("nuisance_columns") or DataSettings.nuisance_columns
                ),
                reference_dir=constraints.get("reference_dir") or None,
                max_pixels=check_max_pixels(data.get("max_pixels", DEFAULT_MAX_PIXELS)),
            ),
            extract=extract,
            train=TrainSettings(
                image_size=image_size,
                models=plain(cfg.models),
                trainer=trainer,
                loader=loader,
                logger=plain(cfg.logger) if cfg.get("logger") else None,
                callbacks=plain(cfg.get("callbacks")) or {},
            ),
            grid=GridSettings(
                names("extractors"),
                names("reducers"),
                names("clusterers"),
                plain(grid.n_clusters),
                grid.stability_splits,
                check_fit_sample(grid.get("fit_sample")),
            ),
            preprocess=plain(cfg.preprocess),
            extractors=plain(cfg.extractors),
            reducers=plain(cfg.reducers),
            clusterers=plain(cfg.clusterers),
            fusion=FusionSettings.from_node(plain(cfg.fusion)),
            skip_unavailable_extractors=bool(cfg.skip_unavailable_extractors),
            config=plain(cfg),
            budget=BudgetSettings.from_node(plain(cfg.get("budget"))),
            nights=night_settings(cfg),
        )

    def with_nodes(self, **groups: dict[str, dict[str, Any]]) -> RunSettings:
        """These settings with whole groups of named nodes replaced (``extractors=...``,
        ``reducers=...``, ``clusterers=...``), in the recorded ``config`` too."""
        config = {**self.config, **copy.deepcopy(groups)}
        return dataclasses.replace(self, config=config, **groups)

    def fitted(self, fit: DataFit) -> RunSettings:
        """These settings with the fusion values fitted to the data.

        ``fusion.min_cluster_size`` (and ``fusion.search.min_sizes`` / ``target_groups`` with a
        search) take the fitted values, in ``fusion`` and in the recorded ``config``.
        """
        fusion = self.fusion.fitted(fit.min_cluster_size, fit.search_min_sizes, fit.target_groups)
        node = copy.deepcopy(self.config["fusion"])
        node["min_cluster_size"] = fusion.min_cluster_size
        if fusion.search is not None:
            node["search"]["min_sizes"] = list(fusion.search.min_sizes)
            node["search"]["target_groups"] = fusion.search.target_groups
        config = {**self.config, "fusion": node}
        return dataclasses.replace(self, fusion=fusion, config=config)
