"""One plan per extractor (aurora.run.extractor_plan): the store and training it decides are what
the feature stage, ``mode=prepare`` and the budget read, for every experiment of conf/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import CONF, compose_cfg
from hydra.utils import instantiate

from aurora.run import features, prepare
from aurora.run.budget import describe_extractor
from aurora.run.extractor_plan import ExtractorPlan, plan_extractor
from aurora.run.settings import RunSettings

#: Every experiment of conf/experiment, the defaults, the tiny debug run, and a timm network given
#: its size two ways.
CASES = [
    [],
    ["debug=tiny"],
    ["+extractor@extractors.tf=mobilenet_v2_tf", "extractors.resnet50.input_size=160"],
    ["extractors.inception_v3.pretrained_cfg_overlay={input_size:[3,320,320]}"],
    *[[f"experiment={p.stem}"] for p in sorted((CONF / "experiment").glob("*.yaml"))],
]


def _settings(tmp_path: Path, over: list[str]) -> RunSettings:
    base = ["data=folder", f"data.root={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    return RunSettings.from_cfg(compose_cfg("cluster", [*base, *over]))


def _network_size(settings: RunSettings, node: dict[str, Any]) -> int:
    """The input side of the network a node builds, found without the plan: a timm model's
    pretrained config from timm (after the node's size or overlay), our encoder's training size
    (the checkpoint records the side it was trained at: ``train.image_size``)."""
    if "model_name" not in node:
        return settings.train.image_size
    from timm.models import get_pretrained_cfg

    overlay = (node.get("pretrained_cfg_overlay") or {}).get("input_size")
    default = get_pretrained_cfg(node["model_name"]).input_size
    return int(node.get("input_size") or (overlay or default)[-1])


class _Net:
    """A built extractor of a given input size (no weights)."""

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def identity(self) -> dict[str, Any]:
        return {"input_size": self.input_size}


class _Stores:
    """A StoreSet that records which (variant, size) stores are asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def get(self, variant: str, size: int) -> Any:
        self.asked.append((variant, int(size)))
        return _Store(f"{variant}@{size}")


@dataclasses.dataclass
class _Store:
    """A preprocessed store of four images (none read)."""

    key: str
    images: Any = None

    def __len__(self) -> int:
        return 4


def _fake_run(monkeypatch: pytest.MonkeyPatch, settings: RunSettings) -> None:
    """Build networks by the sizes :func:`_network_size` gives; train and extract nothing."""
    import aurora.extractors as E

    def build(params: dict[str, Any]) -> _Net:
        return _Net(_network_size(settings, params))

    def extract(store: Any, extractor: _Net, *args: Any, **kwargs: Any) -> Any:
        feats = np.zeros((4, 2), np.float32)
        return SimpleNamespace(features=feats, key="k", ids=list("abcd"), provenance={})

    monkeypatch.setattr(E, "build_extractor", build)
    monkeypatch.setattr(E, "extract_features", extract)
    monkeypatch.setattr(features, "_train_planned", lambda *a: Path("model.ckpt"))


@pytest.mark.parametrize("over", CASES, ids=lambda o: ",".join(o) or "defaults")
def test_feature_stage_prepare_and_budget_read_the_plan(
    over: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, over)
    _fake_run(monkeypatch, settings)
    names = [n for n, p in settings.plans.items() if "???" not in str(p.timm_model)]
    names = [n for n in names if settings.extractors[n].get("weights") != "???"]
    assert names
    specs = {
        n: (dict(p.node), None if p.trains else _Net(_network_size(settings, dict(p.node))))
        for n, p in settings.plans.items()
        if n in names
    }
    monkeypatch.setattr(prepare, "build_extractors", lambda s, n: (specs, {}))
    targets = {t.name: t for t in prepare._targets(settings)[0]}
    for name in names:
        plan = settings.plans[name]
        store = (plan.preprocess, plan.size)
        # the network built (or trained) reads the store the plan names
        assert _network_size(settings, dict(plan.node)) == plan.size, name
        # the budget
        fig = describe_extractor(settings, name)
        assert fig.store == store, name
        assert fig.trains == plan.trains, name
        # mode=prepare
        chain = instantiate(settings.preprocess[plan.preprocess])
        assert targets[name].cfg == dataclasses.replace(chain, size=plan.size), name
        assert (targets[name].extractor is None) == (plan.trains is not None), name
        # the feature stage: the training store, then the extraction store
        stores = _Stores()
        features.extract_all(settings, stores, tmp_path, [name], built=({name: specs[name]}, {}))
        assert stores.asked == [store] * (2 if plan.trains else 1), name


def test_plan_decisions() -> None:
    """The rules, on nodes: timm sizes (given, overlay, table, default), training, checkpoint."""

    def plan(node: dict[str, Any], name: str = "e") -> ExtractorPlan:
        return plan_extractor(name, node, image_size=48)

    timm = {"model_name": "resnet50", "preprocess": "minimal"}
    assert (plan(timm).size, plan(timm).preprocess, plan(timm).trains) == (224, "minimal", None)
    assert plan({"model_name": "inception_v3"}).size == 299
    assert plan({**timm, "input_size": 96}).size == 96
    overlay = {"input_size": [3, 256, 256]}
    assert plan({**timm, "pretrained_cfg_overlay": overlay}).size == 256
    ours = {"_target_": "aurora.extractors.CheckpointExtractor", "ckpt_path": "???"}
    trained = plan(ours, "simclr")
    assert (trained.trains, trained.model, trained.size, trained.preprocess) == (
        "simclr",
        "simclr",
        48,
        "full",
    )
    assert plan({**ours, "train": "autoencoder"}).trains == "autoencoder"
    given = plan({**ours, "ckpt_path": "/x/model.ckpt"})
    assert (given.trains, given.ckpt_path, given.size) == (None, "/x/model.ckpt", 48)


def test_plans_follow_the_nodes(tmp_path: Path) -> None:
    """A sweep job's settings (with_nodes) and fitted settings carry the plans of their nodes."""
    settings = _settings(tmp_path, ["debug=tiny"])
    assert set(settings.plans) == set(settings.extractors)
    node = {**settings.extractors["resnet50"], "input_size": 64}
    job = settings.with_nodes(extractors={"resnet50": node})
    assert list(job.plans) == ["resnet50"] and job.plans["resnet50"].size == 64
    assert dataclasses.replace(job, seed=1).plans == job.plans
