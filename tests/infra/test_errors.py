"""Error policy by type: an error a user can cause is one line (exit 2), a bug keeps its traceback.

Every error a user can cause derives from :class:`aurora.infra.errors.AuroraError` (and keeps its
other bases, so ``except ValueError`` still catches it); :func:`aurora.infra.guard.run_guarded`
prints those in one line whatever module raised them, and re-raises anything else, a bare
``ValueError`` raised by aurora's own code included.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import compose_cfg
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from aurora.infra.errors import AuroraError, SettingsError
from aurora.infra.guard import error_line, run_guarded

#: (module, class, the other base it keeps) of every error a user can cause.
USER_ERRORS = [
    ("aurora.infra.errors", "RunError", RuntimeError),
    ("aurora.infra.errors", "SettingsError", ValueError),
    ("aurora.infra.errors", "DiskFullError", RuntimeError),
    ("aurora.infra.errors", "OutOfMemoryError", MemoryError),
    ("aurora.models.checkpoint", "CheckpointError", ValueError),
    ("aurora.models.simclr", "BackboneError", RuntimeError),
    ("aurora.models.weights", "WeightsUnavailableError", RuntimeError),
    ("aurora.models.weights", "WeightsMismatchError", ValueError),
    ("aurora.extractors.timm_extractor", "UnknownModelError", ValueError),
    ("aurora.extractors.timm_extractor", "ExtractorConfigError", ValueError),
    ("aurora.data.metadata", "MetadataError", RuntimeError),
    ("aurora.data.themis", "CdfError", RuntimeError),
    ("aurora.data.themis", "Stream0Error", RuntimeError),
    ("aurora.data.synth", "SynthError", ValueError),
    ("aurora.data.manifest", "DataSourceError", RuntimeError),
    ("aurora.data.manifest", "ImageReadError", RuntimeError),
    ("aurora.data.datamodule", "DataError", ValueError),
    ("aurora.preprocess.config", "PreprocessError", ValueError),
    ("aurora.preprocess.config", "ImageFormatError", ValueError),
    ("aurora.preprocess.config", "SkyCircleError", ValueError),
    ("aurora.clustering.cop_kmeans", "InfeasibleConstraintsError", RuntimeError),
    ("aurora.clustering.memory", "MemoryLimitError", MemoryError),
    ("aurora.fusion.partitions", "FusionError", ValueError),
    ("aurora.report.data", "ReportDataError", RuntimeError),
    ("aurora.solution.errors", "SolutionError", RuntimeError),
    ("aurora.solution.errors", "ManifestError", RuntimeError),
]


@pytest.mark.parametrize(("module", "name", "other"), USER_ERRORS)
def test_user_errors_derive_from_aurora_error(module: str, name: str, other: type) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AuroraError) and issubclass(cls, other)


def _one_line(fn: Callable[[], Any], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``fn`` under :func:`run_guarded`; assert exit 2 and one ``error:`` line; return it."""
    assert run_guarded(fn) == 2
    out = capsys.readouterr()
    lines = [x for x in out.out.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, out.out
    assert "Traceback" not in out.out + out.err
    return lines[0]


def _missing_checkpoint(tmp: Path) -> None:
    from aurora.models.checkpoint import load_encoder

    load_encoder(tmp / "none.ckpt")


def _unknown_backbone(tmp: Path) -> None:
    from aurora.models.simclr import create_backbone

    create_backbone("not_a_net", pretrained=False)


def _unknown_timm_model(tmp: Path) -> None:
    from aurora.extractors import TimmExtractor

    TimmExtractor("not_a_model", pretrained=False)


def _missing_weights_file(tmp: Path) -> None:
    from aurora.extractors import TimmExtractor

    TimmExtractor("resnet18", weights=str(tmp / "nowhere.safetensors"))


def _bad_weights_file(tmp: Path) -> None:
    from aurora.extractors import TimmExtractor

    (tmp / "w.pth").write_bytes(b"not a state dict")
    TimmExtractor("resnet18", weights=str(tmp / "w.pth"))


def _missing_data(tmp: Path) -> None:
    from aurora.data.sources import scan

    scan(tmp / "no_such_folder")


def _bad_metadata(tmp: Path) -> None:
    from aurora.data.metadata import read_time_column

    (tmp / "meta.csv").write_text("file,when\na.jpg,2014\n")
    read_time_column(tmp / "meta.csv", ["a.jpg"])


def _bad_cdf(tmp: Path) -> None:
    from aurora.data.themis import cdf_frames

    (tmp / "x.cdf").write_bytes(b"not a cdf at all")
    cdf_frames(tmp / "x.cdf")


def _bad_stream0(tmp: Path) -> None:
    from aurora.data.themis import stream0_frames

    (tmp / "x.pgm").write_bytes(b"P5\n2 2\n255\n\x00\x00\x00\x00")
    stream0_frames(tmp / "x.pgm")


def _bad_image_file(tmp: Path) -> None:
    from aurora.data.sources import ImageRecord, read_image

    (tmp / "x.png").write_bytes(b"")
    read_image(ImageRecord("x.png", str(tmp / "x.png"), None, None, "x"))


def _synth_settings(tmp: Path) -> None:
    from aurora.data.synth import generate

    generate(tmp / "sky", n=0)


def _loader_settings(tmp: Path) -> None:
    from aurora.data.datamodule import LoaderConfig, SkyDataModule

    SkyDataModule(np.zeros((4, 32, 32, 3), np.uint8), LoaderConfig(batch_size=1))


def _preprocess_settings(tmp: Path) -> None:
    from aurora.preprocess import PreprocessConfig

    PreprocessConfig(size=4)


def _preprocess_through_hydra(tmp: Path) -> None:
    # train.py builds its preprocessing with instantiate, which wraps constructor errors.
    instantiate({"_target_": "aurora.preprocess.PreprocessConfig", "moon": "erase"})


def _model_settings_through_hydra(tmp: Path) -> None:
    # What training.fit_model meets for model.temperature=-1 or a bad augment value.
    instantiate(
        {
            "_target_": "aurora.models.SimCLR",
            "backbone": "test_resnet",
            "image_size": 32,
            "temperature": -1.0,
        }
    )


def _augment_settings(tmp: Path) -> None:
    from aurora.models.augment import SkyAugment

    SkyAugment(gray_p=2.0)


def _unknown_augment_setting(tmp: Path) -> None:
    from aurora.models.augment import SkyAugment

    SkyAugment(flip=0.5)


def _memory_budget(tmp: Path) -> None:
    from aurora.clustering.memory import check_quadratic_memory

    check_quadratic_memory(100_000, "KernelPCA", budget_bytes=1 << 20)


def _infeasible_constraints(tmp: Path) -> None:
    from aurora.clustering.cop_kmeans import COPKMeans

    x = np.arange(6, dtype=float).reshape(3, 2)
    pairs = [(0, 1), (0, 2), (1, 2)]  # three images pairwise apart, two groups
    COPKMeans(n_clusters=2, n_restarts=1, random_state=0).fit(x, cannot_link=pairs)


def _missing_report_data(tmp: Path) -> None:
    from aurora.report.data import ReportData

    ReportData.load(tmp / "report_data.npz")


def _missing_solution(tmp: Path) -> None:
    from aurora.solution import load_solution

    load_solution(tmp / "solution")


#: (area, what the user did, a word the one line must hold).
USER_MISTAKES = [
    ("models", _missing_checkpoint, "none.ckpt"),
    ("models", _unknown_backbone, "not_a_net"),
    ("extractors", _unknown_timm_model, "not_a_model"),
    ("extractors", _missing_weights_file, "nowhere.safetensors"),
    ("extractors", _bad_weights_file, "w.pth"),
    ("data", _missing_data, "no_such_folder"),
    ("data", _bad_metadata, "meta.csv"),
    ("data", _bad_cdf, "x.cdf"),
    ("data", _bad_stream0, "x.pgm"),
    ("data", _bad_image_file, "empty file"),
    ("data", _synth_settings, "number of images"),
    ("training", _loader_settings, "batch_size"),
    ("preprocess", _preprocess_settings, "preprocess.size=4"),
    ("preprocess", _preprocess_through_hydra, "preprocess.moon='erase'"),
    ("training", _model_settings_through_hydra, "temperature=-1.0"),
    ("training", _augment_settings, "augment.gray_p=2.0"),
    ("training", _unknown_augment_setting, "unknown augmentation setting"),
    ("clustering", _memory_budget, "KernelPCA"),
    ("clustering", _infeasible_constraints, "cannot"),
    ("report", _missing_report_data, "report_data.npz"),
    ("solution", _missing_solution, "solution"),
]


@pytest.mark.parametrize(
    ("area", "mistake", "named"), USER_MISTAKES, ids=[m.__name__ for _, m, _ in USER_MISTAKES]
)
def test_user_error_is_one_line(
    area: str, mistake: Callable[[Path], None], named: str, tmp_path: Path, capsys
) -> None:
    line = _one_line(lambda: mistake(tmp_path), capsys)
    assert named in line, line


def test_settings_errors_are_still_value_errors() -> None:
    from aurora.models.augment import SkyAugment
    from aurora.preprocess import PreprocessConfig

    with pytest.raises(ValueError, match="preprocess.size"):
        PreprocessConfig(size=4)
    with pytest.raises(SettingsError) as info:
        SkyAugment(crop_scale=(0.5, 2.0))
    assert info.value.key == "augment.crop_scale" and info.value.value == (0.5, 2.0)


def _aurora_bug() -> None:
    # A bare ValueError raised by aurora's own code is a bug (here: an invalid shard index).
    from aurora.extractors.inference import resolve_shard

    resolve_shard((3, 2))


def test_bug_in_aurora_code_keeps_its_traceback() -> None:
    with pytest.raises(ValueError, match="invalid extraction shard"):
        run_guarded(_aurora_bug)
    with pytest.raises(KeyError):
        run_guarded(lambda: {}["aurora"])


def test_policy_is_by_type_not_by_module() -> None:
    # The class's module no longer decides: an aurora-defined class that is not an
    # AuroraError is a bug; an AuroraError defined anywhere is the user's.
    bug = type("Bug", (ValueError,), {"__module__": "aurora.grid.cell"})
    own = type("Own", (AuroraError,), {"__module__": "somewhere.else"})
    assert error_line(bug("bug")) is None
    assert error_line(ValueError("bug")) is None
    assert error_line(own("a  user's\n mistake")) == "a user's mistake"
    with pytest.raises(ValueError, match="^bug$"):
        run_guarded(lambda: (_ for _ in ()).throw(bug("bug")))


def test_hydra_wrapped_bug_keeps_its_traceback() -> None:
    with pytest.raises(InstantiationException):
        run_guarded(instantiate, {"_target_": "builtins.int", "_args_": ["x"]})


# --- exhausted memory: the stage that was running, not the function that started the run -------


def _error_line_of(out: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith("error:")]
    return line


def test_out_of_memory_while_preprocessing_is_not_blamed_on_extraction(
    tiny_overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Preprocessing runs inside extract_all (the stores are built on demand): the error must
    # name preprocessing and its knob, not feature extraction and extract.batch_size.
    import aurora.preprocess.store
    from aurora.run import run_cluster

    def oom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (3, 2**30)")

    monkeypatch.setattr(aurora.preprocess.store, "preprocess_image", oom)
    cfg = compose_cfg("cluster", [*tiny_overrides, f"paths.cache_dir={tmp_path / 'cache'}"])
    assert run_guarded(run_cluster, cfg, tmp_path / "run") == 2
    line = _error_line_of(capsys.readouterr().out)
    assert line.startswith("error: out of host memory during preprocessing (tried to allocate 3.00")
    assert "lower jobs" in line and "extract" not in line


def test_out_of_memory_while_building_the_network_is_not_blamed_on_extraction(
    tiny_overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # The extractor's network is built (weights loaded) before any image goes through it: a
    # batch size cannot help there.
    import aurora.extractors.inference
    from aurora.run import run_cluster

    def oom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError()

    monkeypatch.setattr(aurora.extractors.inference, "instantiate", oom)
    cfg = compose_cfg("cluster", tiny_overrides)
    assert run_guarded(run_cluster, cfg, tmp_path / "run") == 2
    line = _error_line_of(capsys.readouterr().out)
    assert line.startswith("error: out of host memory during extractor set-up: the network")
    assert "batch_size" not in line and "batch sizes do not change that" in line


def test_out_of_memory_while_importing_a_library_is_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # What `import torch` raises under a tight address-space limit (ulimit -v), from inside a
    # function that imports lazily (as extract_all imports aurora.extractors).
    (tmp_path / "heavy_lib.py").write_text(
        "raise ImportError('libtorch_cpu.so: failed to map segment from shared object')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def extract_all() -> None:
        import heavy_lib  # noqa: F401

    assert run_guarded(extract_all) == 2
    line = _error_line_of(capsys.readouterr().out)
    assert line.startswith("error: out of host memory during start-up: loading torch")
    # An ImportError of any other kind is a bug (or a missing package), not memory.
    (tmp_path / "broken_lib.py").write_text("raise ImportError('no module named x')\n")

    def other() -> None:
        import broken_lib  # noqa: F401

    with pytest.raises(ImportError):
        run_guarded(other)
