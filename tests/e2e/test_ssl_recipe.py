"""The real-sky SimCLR recipe as config (conf/model/simclr_real.yaml, experiment=ssl_real):
a tiny training run through train.py, the checkpoint as an extractor, the ImageNet start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_cfg
from safetensors.torch import load_file

from aurora.extractors import CheckpointExtractor
from aurora.models import load_encoder
from aurora.run.train import train

SHARED_MNV2 = (
    ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
)


def _recipe(tiny_sky: Path, tiny_cache: Path, out: Path, *extra: str):
    return compose_cfg(
        "train",
        [
            "debug=tiny_train",
            "data=folder",
            f"data.root={tiny_sky}",
            f"paths.cache_dir={tiny_cache}",
            "model=simclr_real",
            "preprocess=minimal",
            "model.proj_hidden_dim=32",
            "model.proj_dim=16",
            f"out_dir={out}",
            *extra,
        ],
    )


def test_train_py_trains_the_recipe_from_scratch(
    tiny_sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = _recipe(
        tiny_sky, tiny_cache, tmp_path / "t", "model.pretrained=false", "model.pretrained_file=null"
    )
    result = train(cfg)
    assert result.epochs == 1 and Path(result.last_ckpt).is_file()
    model, info = load_encoder(result.last_ckpt)
    hp = info["hparams"]
    assert hp["backbone"] == "mobilenetv2_100" and hp["freeze_bn"] is True
    assert hp["model_kwargs"] == {"pad_type": "same"} and hp["augment"]["crop_in_disc"] is True
    assert type(model.backbone.conv_stem).__name__ == "Conv2dSame"
    # The checkpoint is an extractor, as cluster.py's `simclr` extractor builds it.
    ex = CheckpointExtractor(result.last_ckpt, preprocess="minimal")
    with torch.inference_mode():
        feats = ex(torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, 1280) and torch.isfinite(feats).all()
    # Read at another size than trained: the encoder sees the frames resized to that size.
    big = CheckpointExtractor(result.last_ckpt, preprocess="minimal", input_size=48)
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        want = model.eval().encode(
            torch.nn.functional.interpolate(
                x, size=(48, 48), mode="bilinear", align_corners=False, antialias=True
            ).clamp(0, 1)
        )
        assert torch.allclose(big(x), want, atol=1e-5)
        assert not torch.allclose(ex(x), big(x), atol=1e-3)
    assert big.identity()["input_size"] == 48 and ex.identity()["input_size"] == 32
    params = big.export_params()
    assert params["input_size"] == 48 and "input_size" not in ex.export_params()
    rebuilt = CheckpointExtractor.from_export(params)
    rebuilt.load_state_dict(big.state_dict())
    with torch.inference_mode():
        assert torch.allclose(rebuilt(x), big(x))


def test_train_py_starts_from_the_imagenet_file(
    tiny_sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """With a zero learning rate and frozen batch norm, the backbone of the checkpoint is the
    file's, tensor for tensor (running statistics included): the file is what training starts
    from."""
    if not SHARED_MNV2.is_file():
        pytest.skip("../shared/weights is absent")
    cfg = _recipe(
        tiny_sky, tiny_cache, tmp_path / "t", f"model.pretrained_file={SHARED_MNV2}", "model.lr=0"
    )
    result = train(cfg)
    state = torch.load(result.last_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = load_file(str(SHARED_MNV2))
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    assert backbone and set(backbone) <= set(weights)
    for key, value in backbone.items():
        assert torch.equal(value, weights[key]), key


def test_the_recipe_wants_its_file_and_experiment_ssl_real_trains_it() -> None:
    cfg = compose_cfg("train", ["model=simclr_real"])
    assert cfg.model.pretrained is True and cfg.model._get_node("pretrained_file")._is_missing()
    run = compose_cfg("cluster", ["experiment=ssl_real"])
    assert run.models.simclr.backbone == "mobilenetv2_100"
    assert list(run.grid.extractors) == ["simclr"] and run.extractors.simclr.preprocess == "minimal"
    # The synthetic demo keeps its own recipe.
    demo = compose_cfg("cluster", ["experiment=demo"])
    assert demo.models.simclr.backbone == "resnet18"
    assert "crop_in_disc" not in demo.models.simclr.augment


@pytest.mark.slow
def test_cluster_py_trains_and_groups_with_experiment_ssl_real(
    tiny_overrides: list[str], tmp_path: Path
) -> None:
    """``python cluster.py experiment=ssl_real``: the recipe trained from scratch (tiny), its
    features grouped on the `minimal` store."""
    from aurora.run import run_cluster

    cfg = compose_cfg(
        "cluster",
        [
            "experiment=ssl_real",
            *tiny_overrides,
            "grid.extractors=[simclr]",
            "grid.n_clusters=[3]",
            "models.simclr.pretrained=false",
            "models.simclr.pretrained_file=null",
            "models.simclr.proj_hidden_dim=32",
            "models.simclr.proj_dim=16",
        ],
    )
    summary = run_cluster(cfg, tmp_path / "run")
    assert summary["n_failed_cells"] == 0
    assert (tmp_path / "run" / "train" / "simclr").is_dir()
