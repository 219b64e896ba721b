"""The recipe of train.py lives in aurora/run/ (the one reader of a composed config); what it
calls takes arrays, paths and group nodes; the logger is recognised by its class."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT
from lightning.pytorch.loggers import TensorBoardLogger

from aurora.training.loggers import logs_to_tensorboard


class _MyTensorBoard(TensorBoardLogger):
    """A subclass is still a TensorBoard logger."""


def _reads_a_composed_config(path: Path) -> list[str]:
    """What in ``path`` reads a composed config: Hydra's runtime config, or a parameter named
    ``cfg`` typed as a whole ``DictConfig``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "hydra.core.hydra_config":
            found.append(f"{path.name}:{node.lineno} imports HydraConfig")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in node.args.args + node.args.kwonlyargs:
                ann = ast.unparse(arg.annotation) if arg.annotation else ""
                if arg.arg == "cfg" and ann == "DictConfig":
                    found.append(f"{path.name}:{node.lineno} {node.name}(cfg: DictConfig)")
    return found


def test_only_run_reads_a_composed_config() -> None:
    """No module of aurora outside run/ takes a composed config or asks Hydra for one."""
    outside = [
        p
        for p in sorted((ROOT / "aurora").rglob("*.py"))
        if "run" not in p.relative_to(ROOT / "aurora").parts[:1]
    ]
    found = [hit for p in outside for hit in _reads_a_composed_config(p)]
    assert not found, found
    # The checker sees what it looks for: the recipe itself reads one.
    assert _reads_a_composed_config(ROOT / "aurora" / "run" / "train.py")


def test_train_py_runs_the_recipe_of_run() -> None:
    """``python train.py`` runs :func:`aurora.run.train.train`; training/ never imports run/."""
    tree = ast.parse((ROOT / "train.py").read_text(encoding="utf-8"))
    imports = {
        (n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }
    assert ("aurora.run.train", "train") in imports
    for path in (ROOT / "aurora" / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("aurora.run"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("aurora.run") for a in node.names), path


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"_target_": "lightning.pytorch.loggers.TensorBoardLogger", "name": "tb"}, True),
        ({"_target_": f"{__name__}._MyTensorBoard"}, True),
        ({"_target_": "lightning.pytorch.loggers.CSVLogger"}, False),
        ({"_target_": "aurora.training.loggers.no_logger"}, False),
        ({"_target_": "no_such_package.TensorBoardLogger"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_the_logger_is_known_by_its_class(node: dict | None, expected: bool) -> None:
    """A TensorBoard logger (or subclass) by class, never by the spelling of its target."""
    assert logs_to_tensorboard(node) is expected


def test_the_logger_groups_of_conf() -> None:
    """conf/logger/: tensorboard logs to TensorBoard, none does not."""
    import yaml

    conf = ROOT / "conf" / "logger"
    assert logs_to_tensorboard(yaml.safe_load((conf / "tensorboard.yaml").read_text()))
    assert not logs_to_tensorboard(yaml.safe_load((conf / "none.yaml").read_text()))


def test_the_two_entry_configs_name_their_settings_alike() -> None:
    """train.py and cluster.py: one key per setting (``train.loader.*``, ``jobs``, ``seed``)."""
    from conftest import compose_cfg

    train, cluster = compose_cfg("train", []), compose_cfg("cluster", [])
    assert set(train.train.loader) == set(cluster.train.loader)
    for key in ("jobs", "seed"):
        assert key in train and key in cluster
    assert "loader" not in train and "loader" not in cluster


def test_the_old_loader_key_of_train_py_is_refused_by_hydra() -> None:
    """``loader.batch_size=...`` (the name before ``train.loader``) is Hydra's struct error."""
    from conftest import compose_cfg
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="loader"):
        compose_cfg("train", ["loader.batch_size=8"])
    assert compose_cfg("train", ["train.loader.batch_size=8"]).train.loader.batch_size == 8
