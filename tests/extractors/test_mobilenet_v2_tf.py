"""conf/extractor/mobilenet_v2_tf.yaml: TensorFlow-trained MobileNet-v2 weights need only their
path (one override beside it instead of two: TF padding and [-1, 1] inputs come with it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_cfg
from omegaconf import DictConfig

from aurora.infra.config import plain

SHARED_MNV2 = (
    ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
)
S = 64  # small and fast: the network is fully convolutional

#: The form this entry replaces: the path plus two overrides.
TWO_OVERRIDES = [
    "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
    "extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
]
ONE_OVERRIDE = ["extractor@extractors.mobilenet_v2=mobilenet_v2_tf"]


def _node(overrides: list[str]) -> DictConfig:
    return compose_cfg("cluster", ["experiment=real", *overrides]).extractors.mobilenet_v2


def _features(node: DictConfig, **changes: object) -> tuple[torch.Tensor, dict]:
    """The extractor built from ``node`` (as a run builds it) on a fixed input: (3, 1280)."""
    from aurora.extractors import build_extractor

    ex = build_extractor(plain(node), input_size=S, **changes)
    x = torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return ex(x), ex.identity()


def test_one_override_is_the_two_override_form_with_the_real_file() -> None:
    if not SHARED_MNV2.is_file():
        pytest.skip("../shared/weights is absent")
    path = f"extractors.mobilenet_v2.weights={SHARED_MNV2}"
    one, one_id = _features(_node([*ONE_OVERRIDE, path]))
    two, two_id = _features(_node([*TWO_OVERRIDES, path]))
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert one_id == two_id  # the same cache key: features computed one way serve the other
    plain_net, _ = _features(_node([path]))  # the file with timm's defaults: other features
    assert not torch.allclose(one, plain_net, atol=1e-3)
    assert one.shape == (3, 1280) and one.std() > 0


def test_random_weights_with_pretrained_false() -> None:
    """Without the file (pretrained=false, weights=null): the same network, randomly initialised
    by the same seed, in both forms; TF padding and the [-1, 1] normalisation are applied."""
    from timm.layers import Conv2dSame

    from aurora.extractors import build_extractor

    random = ["extractors.mobilenet_v2.pretrained=false", "extractors.mobilenet_v2.weights=null"]
    one, one_id = _features(_node([*ONE_OVERRIDE, *random]))
    two, two_id = _features(_node([*TWO_OVERRIDES, *random]))
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert one_id == two_id
    assert one_id["mean"] == [0.5] * 3 and one_id["std"] == [0.5] * 3 and not one_id["pretrained"]
    node = plain(_node([*ONE_OVERRIDE, *random]))
    assert isinstance(build_extractor(node, input_size=S).model.conv_stem, Conv2dSame)
    default, _ = _features(_node(random))  # timm's padding and ImageNet normalisation
    assert not torch.allclose(one, default, atol=1e-4)


def test_the_path_is_required(tmp_path: Path) -> None:
    """timm's own mobilenetv2_100 weights are PyTorch-trained: never fetched for this entry. A
    run without the path stops before any work, naming the key."""
    from aurora.extractors import build_extractor
    from aurora.infra.errors import RunError
    from aurora.models.weights import WeightsUnavailableError
    from aurora.run.features import build_extractors
    from aurora.run.settings import RunSettings

    cfg = compose_cfg("cluster", ["experiment=real", "data.root=/nowhere", *ONE_OVERRIDE])
    assert cfg.extractors.mobilenet_v2._get_node("weights")._is_missing()
    settings = RunSettings.from_cfg(cfg)
    for skip in (False, True):  # a missing setting, not missing weights: never left out
        settings = dataclasses.replace(settings, skip_unavailable_extractors=skip)
        with pytest.raises(RunError, match=r"extractors.mobilenet_v2.weights is not set"):
            build_extractors(settings, ["mobilenet_v2"])
    missing = tmp_path / "w.safetensors"
    with pytest.raises(WeightsUnavailableError, match="w.safetensors is not a file"):
        build_extractor(plain(_node([*ONE_OVERRIDE, f"extractors.mobilenet_v2.weights={missing}"])))


def test_a_sweep_job_takes_it_by_name() -> None:
    cfg = compose_cfg("cluster", ["extractor=mobilenet_v2_tf", "extractor.weights=/w.safetensors"])
    node = plain(cfg.extractor)
    assert node["weights"] == "/w.safetensors"
    assert node["model_kwargs"] == {"pad_type": "same"}
    assert node["pretrained_cfg_overlay"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
