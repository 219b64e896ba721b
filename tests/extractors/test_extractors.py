"""Feature extractors: shapes, determinism, weights resolution, sharded cache, projector."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, ROOT, tiny_cpu_trainer
from torch import nn

from aurora.extractors import (
    CheckpointExtractor,
    FeatureSet,
    TimmExtractor,
    add_projector_labels,
    build_extractor,
    export_feature_set,
    export_projector,
    extract_features,
    feature_key,
    read_metadata,
)
from aurora.infra.cache import file_sha256
from aurora.models.timm_config import ExtractorConfigError, UnknownModelError
from aurora.models.weights import (
    WeightsMismatchError,
    WeightsUnavailableError,
    state_dict_sha256,
    weights_unavailable_message,
)

S = 32


@dataclass
class FakeStore:
    """Stand-in for aurora.preprocess.PreprocessedStore with the attributes extraction uses."""

    key: str
    images: np.ndarray  # (N, S, S, 3) uint8
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        self.ids = self.ids or [f"img{i:03d}" for i in range(n)]
        self.paths = [f"/data/{i}.jpg" for i in self.ids]
        self.timestamps = [f"2024-01-01T00:{i % 60:02d}:00" for i in range(n)]
        self.moon = np.arange(n) % 3 == 0

    def __len__(self) -> int:
        return len(self.images)

    def float_batch(self, idx: np.ndarray) -> np.ndarray:
        return self.images[idx].astype(np.float32) / 255.0


def _sky(n: int, s: int = S, seed: int = 0) -> np.ndarray:
    """(n, s, s, 3) uint8 random images, black outside the inscribed circle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:s, :s] + 0.5 - s / 2
    inside = (yy**2 + xx**2) <= (s / 2) ** 2
    return (rng.integers(0, 256, (n, s, s, 3)) * inside[..., None]).astype(np.uint8)


class Counting(nn.Module):
    """Wraps an extractor; counts forward calls and can fail after ``fail_after`` calls."""

    def __init__(self, inner: nn.Module, fail_after: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.input_size = inner.input_size
        self.calls = 0
        self.images = 0
        self.fail_after = fail_after

    def identity(self) -> dict:
        return self.inner.identity()

    def provenance(self) -> dict:
        return self.inner.provenance()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.images += len(x)
        return self.inner(x)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny inputs gain nothing from intra-op threads, and they stall on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small() -> TimmExtractor:
    """A cheap real extractor: random MobileNet-v2 fed 32 px images."""
    return TimmExtractor("mobilenetv2_100", pretrained=False, input_size=32)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache and HF_HUB_OFFLINE=1."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


# --- extractors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dim", "size"),
    [
        ("resnet50", 2048, 224),
        ("mobilenetv2_100", 1280, 224),
        pytest.param("inception_v3", 2048, 299, marks=pytest.mark.slow),
    ],
)
def test_timm_extractor_shape_and_determinism(name: str, dim: int, size: int) -> None:
    ex = TimmExtractor(name, pretrained=False)
    assert ex.input_size == size
    x = torch.from_numpy(_sky(2, 64)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        a, b = ex(x), ex(x[1:])
    assert a.shape == (2, dim) and a.dtype == torch.float32
    torch.testing.assert_close(a[1:], b)  # same image, same features (any batch)
    assert not torch.equal(a[0], a[1])  # different images, different features
    ident = ex.identity()
    assert ident["pretrained"] is False and ident["input_size"] == size
    assert ex.provenance()["random_init"] is True


def test_random_init_is_seeded_and_hashed(small: TimmExtractor) -> None:
    ident = small.identity()
    assert TimmExtractor("mobilenetv2_100", pretrained=False, input_size=32).identity() == ident
    other = TimmExtractor("mobilenetv2_100", pretrained=False, input_size=32, seed=1)
    assert other.identity()["weights_sha256"] != ident["weights_sha256"]
    with pytest.raises(UnknownModelError, match="'resnet_fifty'"):
        TimmExtractor("resnet_fifty", pretrained=False)


def test_inception_v3_config_is_299() -> None:
    ex = TimmExtractor("inception_v3", pretrained=False, input_size=75)
    assert ex.pretrained_cfg["input_size"][-1] == 299
    assert ex.identity()["mean"] == pytest.approx([0.5, 0.5, 0.5])
    with torch.inference_mode():
        assert ex(torch.rand(1, 3, 40, 40)).shape == (1, 2048)


def test_normalisation_uses_timm_config(small: TimmExtractor) -> None:
    # The extractor equals: resize, (x - mean) / std with timm's ImageNet stats, model.
    x = torch.rand(2, 3, S, S)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(small(x), small.model((x - mean) / std), atol=1e-6)


# --- model kwargs and pretrained-config overlay ----------------------------------------------

HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
SHARED_MNV2 = (
    ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
)
#: From ../shared/weights/PROVENANCE.md.
SHARED_MNV2_SHA256 = "c36a87a143e0a29dfcb7282f1593b375585199aeb9c2c4826572133a3da250de"


def test_overlay_drives_the_preprocessing(small: TimmExtractor) -> None:
    ex = TimmExtractor(
        "mobilenetv2_100",
        pretrained=False,
        pretrained_cfg_overlay={**HALF, "input_size": [3, S, S], "interpolation": "bilinear"},
    )
    # Same weights as `small` (same seed): only the normalisation and the size changed.
    assert ex.input_size == S and ex.interpolation == "bilinear"
    assert ex.model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)  # in timm's own config too
    x = torch.rand(2, 3, S, S)
    with torch.inference_mode():
        torch.testing.assert_close(ex(x), small.model((x - 0.5) / 0.5), atol=1e-6, rtol=1e-5)
        assert not torch.allclose(ex(x), small(x), atol=1e-3)
    ident = ex.identity()
    assert ident["mean"] == [0.5] * 3 and ident["std"] == [0.5] * 3
    assert ident["pretrained_cfg_overlay"]["interpolation"] == "bilinear"
    assert feature_key("s", ident) != feature_key("s", small.identity())
    # The explicit input_size argument still wins over the overlay's.
    assert (
        TimmExtractor(
            "mobilenetv2_100",
            pretrained=False,
            input_size=40,
            pretrained_cfg_overlay={"input_size": [3, 64, 64]},
        ).input_size
        == 40
    )
    # No options: the identity (and so the cache key of existing features) is unchanged.
    assert "model_kwargs" not in small.identity()
    assert "pretrained_cfg_overlay" not in small.identity()
    assert (
        TimmExtractor(
            "mobilenetv2_100",
            pretrained=False,
            input_size=S,
            model_kwargs={},
            pretrained_cfg_overlay={},
        ).identity()
        == small.identity()
    )


def test_model_kwargs_reach_timm(small: TimmExtractor) -> None:
    from timm.layers import Conv2dSame

    same = TimmExtractor(
        "mobilenetv2_100", pretrained=False, input_size=S, model_kwargs={"pad_type": "same"}
    )
    assert isinstance(same.model.conv_stem, Conv2dSame)
    assert not isinstance(small.model.conv_stem, Conv2dSame)
    # TF padding changes no parameter, only the features: the identity must say so itself.
    assert same.identity()["weights_sha256"] == small.identity()["weights_sha256"]
    assert same.identity()["model_kwargs"] == {"pad_type": "same"}
    assert feature_key("s", same.identity()) != feature_key("s", small.identity())
    x = torch.rand(2, 3, S, S)
    with torch.inference_mode():
        assert not torch.allclose(same(x), small(x), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "overlay", "match"),
    [
        ({"no_such_arg": 1}, None, r"does not accept model_kwargs \{'no_such_arg': 1\}"),
        ({"num_classes": 10}, None, r"may not set \['num_classes'\]"),
        (None, {"meen": [0.5] * 3}, r"unknown fields \['meen'\]"),
        (None, {"file": "/w.safetensors"}, r"sets \['file'\].*extractor.weights=PATH"),
        (None, {"std": [0.5, 0.0, 0.5]}, r"pretrained_cfg_overlay.std .* three numbers > 0"),
        (None, {"mean": [0.5]}, r"pretrained_cfg_overlay.mean .* three numbers"),
        (None, {"input_size": [3, 224, 300]}, r"input_size .* \[3, S, S\]"),
    ],
)
def test_bad_kwargs_and_overlay_are_named(kwargs: dict, overlay: dict, match: str) -> None:
    with pytest.raises(ExtractorConfigError, match=match) as err:
        TimmExtractor(
            "mobilenetv2_100", pretrained=False, model_kwargs=kwargs, pretrained_cfg_overlay=overlay
        )
    assert "'mobilenetv2_100'" in str(err.value)


def test_command_line_overrides_compose_without_plus(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    weights = tmp_path / "w.safetensors"
    overrides = [
        f"extractors.mobilenet_v2.weights={weights}",
        "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
        "extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("cluster", overrides=overrides)
    node = cfg.extractors.mobilenet_v2
    from timm.layers import Conv2dSame

    # The file does not exist here: build the same node with random weights instead.
    ex = build_extractor(node, weights=None, pretrained=False, input_size=S)
    assert isinstance(ex.model.conv_stem, Conv2dSame)
    assert ex.identity()["mean"] == [0.5] * 3 and ex.identity()["std"] == [0.5] * 3
    assert ex.identity()["pretrained_cfg_overlay"] == HALF
    import json

    json.dumps(ex.identity())  # JSON-native: a saved solution can rebuild and compare it
    with pytest.raises(WeightsUnavailableError, match="w.safetensors is not a file"):
        build_extractor(node)


def test_shared_mobilenet_v2_weights_load_and_classify() -> None:
    """The ../shared MobileNet-v2 as the `mobilenet_v2` extractor (checks of its PROVENANCE.md)."""
    if not SHARED_MNV2.is_file():
        pytest.skip("../shared/weights is absent")
    import timm
    from safetensors.torch import load_file

    assert file_sha256(SHARED_MNV2) == SHARED_MNV2_SHA256
    state = load_file(str(SHARED_MNV2))
    # The whole network, classifier included, loads strictly: no missing or unexpected key.
    full = timm.create_model("mobilenetv2_100", pretrained=False, pad_type="same").eval()
    result = full.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert float(state["classifier.weight"].std()) == pytest.approx(0.0423, abs=5e-4)

    ex = TimmExtractor(
        "mobilenetv2_100",
        weights=str(SHARED_MNV2),
        model_kwargs={"pad_type": "same"},
        pretrained_cfg_overlay=HALF,
        input_size=64,  # small and fast; the network is fully convolutional
    )
    assert ex.provenance()["weights_source"] == "file"
    assert ex.identity()["weights_sha256"] == SHARED_MNV2_SHA256
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        f = ex(x)
        # The extractor's features are the pre-logits of the full classifier, on [-1, 1] inputs.
        torch.testing.assert_close(f, full.forward_head(full.forward_features(2 * x - 1), True))
        logits = full.classifier(f)
        torch.testing.assert_close(logits, full(2 * x - 1))
        rand = TimmExtractor(
            "mobilenetv2_100",
            pretrained=False,
            model_kwargs={"pad_type": "same"},
            pretrained_cfg_overlay=HALF,
            input_size=64,
        )(x)
    assert f.shape == (3, 1280) and not torch.allclose(f, rand, atol=1e-2)
    assert (f >= 0).all() and f.std() > 0  # ReLU6 pooled features, not a constant


@pytest.mark.parametrize("kind", ["autoencoder", "simclr"])
def test_checkpoint_extractor(kind: str, tmp_path: Path) -> None:
    training = pytest.importorskip("aurora.training.fit")
    from aurora.data.datamodule import LoaderConfig

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    model = {
        "autoencoder": {
            "_target_": "aurora.models.AutoEncoder",
            "depth": 2,
            "width": 4,
            "latent_dim": 8,
        },
        "simclr": {
            "_target_": "aurora.models.SimCLR",
            "backbone": "resnet10t",
            "proj_hidden_dim": 16,
            "proj_dim": 8,
        },
    }[kind]
    trainer = tiny_cpu_trainer()
    loader = LoaderConfig(batch_size=4, num_workers=0, val_fraction=0.25)
    res = training.fit_model(_sky(8), model, trainer, tmp_path / "run", loader=loader)
    ex = CheckpointExtractor(res.last_ckpt, preprocess="full")
    dim = 8 if kind == "autoencoder" else 512
    assert ex.input_size == S and ex.num_features == dim
    assert ex.identity()["ckpt_sha256"] == file_sha256(res.last_ckpt)
    store = FakeStore("store-a", _sky(5, 48, seed=2))  # resized 48 -> 32 by the extractor
    fs = extract_features(store, ex, tmp_path / "cache", batch_size=2, progress=False)
    assert fs.features.shape == (5, dim) and fs.features.dtype == np.float32
    direct = ex(torch.from_numpy(_sky(5, 48, seed=2)).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(fs.features, direct.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert fs.provenance["random_init"] is False and fs.provenance["preprocess"] == "full"
    # the preprocessing variant and the model to train are not part of what the features are
    other = CheckpointExtractor(res.last_ckpt, preprocess="minimal", train="simclr")
    assert other.identity() == ex.identity() and other.train_model == "simclr"

    # Dihedral averaging: the mean of the 8 views computed by hand, the same features for a
    # rotated or mirrored image, and a different cache identity from single-view features.
    sym = CheckpointExtractor(res.last_ckpt, dihedral=True)
    x = torch.from_numpy(_sky(2, S, seed=3)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        views = [torch.rot90(v, k, (2, 3)) for v in (x, torch.flip(x, (3,))) for k in range(4)]
        by_hand = torch.stack([ex(v) for v in views]).mean(0)
        f = sym(x)
        torch.testing.assert_close(f, by_hand, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sym(torch.rot90(x, 1, (2, 3))), f, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sym(torch.flip(x, (2,))), f, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(ex(torch.rot90(x, 1, (2, 3))), ex(x), atol=1e-5)
    assert sym.identity() != ex.identity() and "dihedral" not in ex.identity()

    from aurora.models import CheckpointError

    with pytest.raises(CheckpointError, match="train.py model=autoencoder"):
        CheckpointExtractor(str(tmp_path / "missing.ckpt"))


# --- weights -------------------------------------------------------------------------------


def test_offline_without_weights_stops_with_the_message(offline: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        TimmExtractor("resnet50")  # pretrained=True by default
    assert time.perf_counter() - start < 20  # fails fast, no minute of hub retries
    expected = weights_unavailable_message(
        "resnet50",
        "timm/resnet50.a1_in1k",
        "HF_HUB_OFFLINE is set and the local cache has no copy.",
    )
    assert str(err.value) == expected
    for part in ("'resnet50'", "extractor.weights=PATH", "HF_HUB_OFFLINE=1", "timm/resnet50"):
        assert part in expected
    with pytest.raises(WeightsUnavailableError, match="nowhere.safetensors is not a file"):
        TimmExtractor("resnet50", weights="/nowhere.safetensors")


def test_hydra_config_stops_before_any_work(offline: Path) -> None:
    from omegaconf import OmegaConf

    for name in ("resnet50", "inception_v3", "mobilenet_v2"):
        cfg = OmegaConf.load(CONF / "extractor" / f"{name}.yaml")
        assert cfg.preprocess == "minimal" and cfg.pretrained is True
        with pytest.raises(WeightsUnavailableError, match=f"'{cfg.model_name}'"):
            build_extractor(cfg)
    for name in ("autoencoder", "simclr"):
        cfg = OmegaConf.load(CONF / "extractor" / f"{name}.yaml")
        assert cfg.preprocess == "full" and cfg.train is None
        assert cfg._target_ == "aurora.extractors.CheckpointExtractor"
    cfg = OmegaConf.load(CONF / "extractor" / "mobilenet_v2.yaml")
    ex = build_extractor(cfg, pretrained=False, input_size=32)
    assert isinstance(ex, TimmExtractor) and ex.preprocess == "minimal"
    # not part of the identity, so the features' cache keys do not depend on it
    full = build_extractor(cfg, pretrained=False, input_size=32, preprocess="full")
    assert full.preprocess == "full" and full.identity() == ex.identity()


def _full_state(src: TimmExtractor) -> dict[str, torch.Tensor]:
    """The extractor's weights plus an ImageNet classifier, as a full checkpoint would hold."""
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    state["classifier.weight"] = torch.zeros(1000, src.num_features)
    state["classifier.bias"] = torch.zeros(1000)
    return state


def test_local_weights_file_roundtrip(offline: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = TimmExtractor("mobilenetv2_100", pretrained=False, seed=7, input_size=S)
    path = tmp_path / "mnv2.safetensors"
    save_file(_full_state(src), str(path))
    ex = TimmExtractor("mobilenetv2_100", weights=str(path), input_size=S)
    x = torch.rand(3, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(ex(x), src(x))
    ident = ex.identity()
    assert ident["pretrained"] is True and ident["weights_sha256"] == file_sha256(path)
    # The cache trusts the hash of the weights loaded, not of the file they came from.
    assert ident["state_sha256"] == state_dict_sha256(src.state_dict())
    assert ex.provenance() == {
        "weights_source": "file",
        "weights_path": str(path),
        "random_init": False,
        "seed": None,
    }
    # Wrapped .pth with DDP prefixes loads too.
    pth = tmp_path / "mnv2.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _full_state(src).items()}}, pth)
    from_pth = TimmExtractor("mobilenetv2_100", weights=str(pth), input_size=S)
    with torch.inference_mode():
        assert torch.equal(from_pth(x), src(x))
    assert from_pth.identity()["state_sha256"] == ident["state_sha256"]  # same weights
    assert from_pth.identity()["weights_sha256"] != ident["weights_sha256"]  # other file
    # A file of another architecture is an error naming the keys.
    bad = dict(_full_state(src))
    del bad["conv_stem.weight"]
    bad["extra.weight"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"missing keys \[conv_stem.weight\].*extra"):
        TimmExtractor("mobilenetv2_100", weights=str(tmp_path / "bad.safetensors"))


def test_hf_cache_is_used_offline(offline: Path) -> None:
    from safetensors.torch import save_file

    src = TimmExtractor("mobilenetv2_100", pretrained=False, seed=3, input_size=S)
    repo = src.pretrained_cfg["hf_hub_id"]  # timm/mobilenetv2_100.ra_in1k
    folder = offline / "hub" / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    save_file(_full_state(src), str(snap / "model.safetensors"))
    ex = TimmExtractor("mobilenetv2_100", input_size=S)
    assert ex.provenance()["weights_source"] == "hf_cache"
    x = torch.rand(2, 3, S, S)
    with torch.inference_mode():
        assert torch.equal(ex(x), src(x))


def _hf_cache_entry(home: Path, repo: str, payload: bytes = b"w") -> Path:
    """A Hugging Face cache entry of ``repo`` holding ``model.safetensors``; returns the file."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    (snap / "model.safetensors").write_bytes(payload)
    return snap / "model.safetensors"


def test_resolve_weights_decides_the_source(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decision, in timm's order: file, Hugging Face cache, hub, else a clear refusal."""
    from aurora.models import weights as w

    local = tmp_path / "w.safetensors"
    local.write_bytes(b"w")
    repo = "timm/resnet18.a1_in1k"
    assert w.resolve_weights("resnet18", True, local, repo) == w.WeightsSource("file", local)
    # An explicit file wins over pretrained=False too (it implies pretrained weights).
    assert w.resolve_weights("resnet18", False, str(local), None).kind == "file"
    assert w.resolve_weights("resnet18", False, None, repo) == w.WeightsSource("random")
    with pytest.raises(w.WeightsUnavailableError, match="nope.pth is not a file"):
        w.resolve_weights("resnet18", False, tmp_path / "nope.pth", repo)
    with pytest.raises(w.WeightsUnavailableError, match="HF_HUB_OFFLINE is set"):
        w.resolve_weights("resnet18", True, None, repo)
    with pytest.raises(w.WeightsUnavailableError, match="timm has no pretrained weights"):
        w.resolve_weights("resnet18", True, None, None, url=None)
    monkeypatch.setattr(w, "hub_reachable", lambda: True)
    assert w.resolve_weights("resnet18", True, None, repo) == w.WeightsSource("hub")
    assert w.resolve_weights("resnet18", True, None, None, url="https://x/w.pth").kind == "hub"
    cached = _hf_cache_entry(offline, repo)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert w.resolve_weights("resnet18", True, None, repo) == w.WeightsSource("hf_cache", cached)
    # Nothing is downloaded, built or written: it only looks.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --- extraction and cache -------------------------------------------------------------------


def test_cache_hit_and_provenance(small: TimmExtractor, tmp_path: Path) -> None:
    store = FakeStore("store-a", _sky(7))
    ex = Counting(small)
    fs = extract_features(store, ex, tmp_path, batch_size=3, shard_size=4, progress=False)
    assert isinstance(fs, FeatureSet)
    assert fs.features.shape == (7, 1280) and fs.features.dtype == np.float32
    assert fs.ids == store.ids and ex.images == 7 and ex.calls == 3  # (3, 1) + (3,)
    x = torch.from_numpy(store.images).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        np.testing.assert_allclose(fs.features, small(x).numpy(), rtol=1e-4, atol=1e-5)
    prov = json.loads((fs.path / "provenance.json").read_text())
    assert prov["random_init"] is True and prov["extractor"] == small.identity()
    assert prov["extractor"]["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    assert {"torch", "timm", "numpy"} <= set(prov["versions"]) and prov["created"]
    assert json.loads((fs.path / "ids.json").read_text()) == store.ids
    assert not list((tmp_path / "features_shards").glob("*/*"))  # work files cleaned up
    # Second call, other batch size: served from the cache, the network never runs.
    again = Counting(small)
    fs2 = extract_features(store, again, tmp_path, batch_size=5, progress=False)
    assert again.calls == 0 and fs2.key == fs.key
    np.testing.assert_array_equal(fs2.features, fs.features)


def test_key_depends_on_store_and_extractor_not_runtime(small: TimmExtractor) -> None:
    base = feature_key("store-a", small.identity())
    assert feature_key("store-b", small.identity()) != base  # other preprocess config
    bigger = TimmExtractor("mobilenetv2_100", pretrained=False, input_size=64)
    assert feature_key("store-a", bigger.identity()) != base
    other = TimmExtractor("resnet50", pretrained=False)
    assert feature_key("store-a", other.identity()) != base
    assert feature_key("store-a", small.identity()) == base


def test_kill_and_resume_computes_only_missing_shards(small: TimmExtractor, tmp_path: Path) -> None:
    store = FakeStore("store-k", _sky(10, seed=5))
    kw = {"batch_size": 2, "shard_size": 4, "progress": False}  # shards 4 + 4 + 2
    ref = extract_features(store, small, tmp_path / "ref", **kw)
    killer = Counting(small, fail_after=4)  # 4 batches: shards 0 and 1 done, shard 2 not
    with pytest.raises(KeyboardInterrupt):
        extract_features(store, killer, tmp_path / "run", **kw)
    assert not (tmp_path / "run" / "features").exists() or not any(
        p.name == ref.key for p in (tmp_path / "run" / "features").iterdir()
    )
    shard_dir = next((tmp_path / "run" / "features_shards").iterdir())
    assert sorted(p.name for p in shard_dir.iterdir()) == ["shard_00000.npy", "shard_00001.npy"]
    resume = Counting(small)
    fs = extract_features(store, resume, tmp_path / "run", **kw)
    assert resume.images == 2 and resume.calls == 1  # only the last shard
    np.testing.assert_array_equal(fs.features, ref.features)
    assert fs.key == ref.key


def test_corrupt_shard_is_recomputed(small: TimmExtractor, tmp_path: Path) -> None:
    store = FakeStore("store-c", _sky(6, seed=6))
    kw = {"batch_size": 3, "shard_size": 3, "progress": False}
    killer = Counting(small, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        extract_features(store, killer, tmp_path, **kw)
    shard_dir = next((tmp_path / "features_shards").iterdir())
    (shard_dir / "shard_00000.npy").write_bytes(b"\x93NUMPY garbage")
    resume = Counting(small)
    fs = extract_features(store, resume, tmp_path, **kw)
    assert resume.images == 6 and fs.features.shape == (6, 1280)


def test_two_ranks_write_shards_and_rank0_assembles(small: TimmExtractor, tmp_path: Path) -> None:
    store = FakeStore("store-r", _sky(9, seed=7))
    kw = {"batch_size": 2, "shard_size": 2, "progress": False}  # 5 shards
    ref = extract_features(store, small, tmp_path / "ref", **kw)
    r1 = Counting(small)
    assert extract_features(store, r1, tmp_path / "dd", shard=(1, 2), **kw) is None
    assert r1.images == 4  # shards 1 and 3
    r0 = Counting(small)
    fs = extract_features(store, r0, tmp_path / "dd", shard=(0, 2), **kw)
    assert r0.images == 5  # shards 0, 2, 4
    np.testing.assert_array_equal(fs.features, ref.features)
    with pytest.raises(ValueError, match="invalid extraction shard"):
        extract_features(store, small, tmp_path / "x", shard=(2, 2), **kw)


def test_env_rank_and_workers(
    small: TimmExtractor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakeStore("store-w", _sky(6, seed=8))
    ref = extract_features(store, small, tmp_path / "ref", batch_size=3, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    part = Counting(small)
    out = extract_features(
        store, part, tmp_path / "env", batch_size=3, shard_size=2, progress=False
    )
    assert out is None and part.images == 2  # shard 2 of 3
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    fs = extract_features(
        store, small, tmp_path / "wk", batch_size=3, num_workers=1, progress=False
    )
    np.testing.assert_array_equal(fs.features, ref.features)


def test_bad_stores_are_rejected(small: TimmExtractor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no images"):
        extract_features(FakeStore("empty", _sky(0)), small, tmp_path, progress=False)
    store = FakeStore("short", _sky(3))
    store.ids = store.ids[:2]
    with pytest.raises(ValueError, match="3 images but 2 ids"):
        extract_features(store, small, tmp_path, progress=False)


# --- projector ------------------------------------------------------------------------------


def test_projector_files_are_readable(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(10, 6)).astype(np.float32)
    store = FakeStore("p", _sky(10, 16))
    meta = {
        "path": store.paths,
        "timestamp": store.timestamps,
        "moon": store.moon.tolist(),
        "morphology": ["arc\tx"] * 5 + [None] * 5,
    }
    cfg_path = export_projector(tmp_path, feats, meta, store.images, tag="resnet50")
    config = text_format.Parse(cfg_path.read_text(), ProjectorConfig())
    (emb,) = config.embeddings
    assert emb.tensor_name == "resnet50" and list(emb.tensor_shape) == [10, 6]
    tensors = np.loadtxt(tmp_path / emb.tensor_path, delimiter="\t")
    np.testing.assert_allclose(tensors, feats, rtol=1e-5)
    md = read_metadata(tmp_path / emb.metadata_path)
    assert list(md) == ["index", "path", "timestamp", "moon", "morphology"]
    assert md["path"] == store.paths and md["moon"][0] == "True" and md["morphology"][0] == "arc x"
    assert md["morphology"][9] == ""
    sprite = np.asarray(Image.open(tmp_path / emb.sprite.image_path))
    assert list(emb.sprite.single_image_dim) == [16, 16]
    assert sprite.shape == (64, 64, 3)  # 4 x 4 grid of 16 px thumbnails
    np.testing.assert_array_equal(sprite[16:32, 16:32], store.images[5])  # row 1, col 1

    # Labels added later; a second embedding keeps the first one.
    add_projector_labels(tmp_path, {"cluster": list(range(10))}, tag="resnet50")
    assert read_metadata(tmp_path / emb.metadata_path)["cluster"] == [str(i) for i in range(10)]
    export_projector(tmp_path, feats[:, :3], {"path": store.paths}, None, tag="simclr")
    config = text_format.Parse(cfg_path.read_text(), ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["resnet50", "simclr"]
    assert not config.embeddings[1].sprite.image_path
    with pytest.raises(ValueError, match="'path' has 3 values for 10 points"):
        export_projector(tmp_path, feats, {"path": store.paths[:3]})
    with pytest.raises(ValueError, match=r"thumbnails must be \(10, h, w, 3\)"):
        export_projector(tmp_path, feats, {}, store.images[:4])


def test_projector_sprite_is_shrunk_to_tensorboard_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from aurora.extractors import projector

    monkeypatch.setattr(projector, "MAX_SPRITE_PX", 256)
    thumbs = np.full((20, 64, 64, 3), 200, np.uint8)  # 5 x 5 grid of 64 px = 320 px
    cfg = export_projector(tmp_path, np.zeros((20, 2), np.float32), {}, thumbs)
    with Image.open(tmp_path / "features" / "sprite.png") as im:
        assert im.size == (255, 255)  # 5 cells of 51 px
    assert "single_image_dim: 51" in cfg.read_text()


def test_export_feature_set_from_store(small: TimmExtractor, tmp_path: Path) -> None:
    store = FakeStore("proj", _sky(5, seed=9))
    fs = extract_features(store, small, tmp_path / "cache", progress=False)
    cfg = export_feature_set(tmp_path / "tb", fs, store, {"cluster": [0, 1, 0, 1, -1]}, tag="mnv2")
    assert "mnv2/sprite.png" in cfg.read_text()
    md = read_metadata(tmp_path / "tb" / "mnv2" / "metadata.tsv")
    assert list(md) == ["index", "id", "path", "timestamp", "moon", "cluster"]
    assert md["id"] == store.ids and md["cluster"][-1] == "-1"
    other = FakeStore("other", _sky(5), ids=[f"x{i}" for i in range(5)])
    with pytest.raises(ValueError, match="image ids differ"):
        export_feature_set(tmp_path / "tb", fs, other)


def test_real_store_end_to_end(small: TimmExtractor, tmp_path: Path) -> None:
    data = ROOT.parent / "shared" / "data" / "kho_sony_samples"
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    sources = pytest.importorskip("aurora.data.sources")
    pre = pytest.importorskip("aurora.preprocess")
    store_mod = pytest.importorskip("aurora.preprocess.store")
    cfg = pre.PreprocessConfig(size=32)
    store = store_mod.build_preprocessed(sources.scan(data), cfg, tmp_path, jobs=1, progress=False)
    fs = extract_features(store, small, tmp_path, batch_size=2, progress=False)
    assert fs.features.shape == (len(store), 1280) and fs.ids == list(store.ids)
    x = torch.from_numpy(store.float_batch(slice(None))).permute(0, 3, 1, 2)
    with torch.inference_mode():
        np.testing.assert_allclose(fs.features, small(x).numpy(), rtol=1e-4, atol=1e-5)
    export_feature_set(tmp_path / "tb", fs, store)
    md = read_metadata(tmp_path / "tb" / "features" / "metadata.tsv")
    assert md["timestamp"][0].startswith("20") and md["path"] == [str(p) for p in store.paths]


def test_solution_of_another_architecture_is_refused_in_one_line(
    small: TimmExtractor, tmp_path: Path
) -> None:
    """A solution whose parameters name another network than its weights: the refusal says why
    (the names and shapes that differ) on one line, before any weight is loaded."""
    from aurora.solution import SolutionExtractorError
    from aurora.solution.extractor import export_extractor, rebuild_extractor

    entry = export_extractor(small, tmp_path)
    entry["params"]["model_name"] = "mobilenetv2_050"  # same layer names, half the channels
    with pytest.raises(SolutionExtractorError) as err:
        rebuild_extractor(entry, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "another architecture" in msg
    assert "shapes that differ [model.conv_stem.weight: file [32, 3, 3, 3] vs network [16," in msg
    entry["params"]["model_name"] = "resnet10t"  # other layer names
    with pytest.raises(SolutionExtractorError) as err:
        rebuild_extractor(entry, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "names the network has and the file lacks [model.conv1.0.weight" in msg
    assert re.search(r"\d+ names the file has and the network lacks \[model\.\w", msg)


def test_rebuilt_solution_network_is_keyed_by_the_weights_it_loaded(
    small: TimmExtractor, tmp_path: Path
) -> None:
    """Genuine weights: the run's identity (so the run's cache entries); other weights whose
    hash the folder claims to be the run's: an identity, and so a cache key, of their own."""
    from safetensors.torch import load_file, save_file

    from aurora.solution.extractor import WEIGHTS_FILE, export_extractor, rebuild_extractor

    entry = export_extractor(small, tmp_path)
    assert "state_sha256" not in entry["identity"]  # the entry's own state_sha256 says it
    assert entry["state_sha256"] == small.identity()["state_sha256"]
    assert rebuild_extractor(entry, tmp_path).identity() == small.identity()
    weights = tmp_path / WEIGHTS_FILE
    state = load_file(weights)
    save_file({k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}, weights)
    claims = {**entry, "identity": {**entry["identity"], "state_sha256": entry["state_sha256"]}}
    claims["state_sha256"] = state_dict_sha256(
        {k: v * 0.5 if v.is_floating_point() else v for k, v in small.state_dict().items()}
    )
    halved = rebuild_extractor(claims, tmp_path).identity()
    assert halved["state_sha256"] == claims["state_sha256"] != small.identity()["state_sha256"]
    assert feature_key("s", halved) != feature_key("s", small.identity())
