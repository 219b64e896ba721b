"""SimCLR's backbone from a local ImageNet file (strict keys, TF padding, frozen batch norm) and
any timm network as an extractor by name (conf/extractor/timm.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_cfg
from safetensors.torch import load_file, save_file

from aurora.extractors import build_extractor
from aurora.infra.config import plain
from aurora.models import BackboneError, SimCLR
from aurora.models.timm_config import UnknownModelError

SHARED_MNV2 = (
    ROOT.parent / "shared" / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"
)
TF = {
    "model_kwargs": {"pad_type": "same"},
    "pretrained_cfg_overlay": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}
S = 32


def _needs_shared() -> None:
    if not SHARED_MNV2.is_file():
        pytest.skip("../shared/weights is absent")


def test_simclr_backbone_holds_the_tensors_of_the_file() -> None:
    _needs_shared()
    model = SimCLR(
        image_size=S,
        backbone="mobilenetv2_100",
        pretrained=True,
        pretrained_file=str(SHARED_MNV2),
        **TF,
    )
    state, own = load_file(str(SHARED_MNV2)), model.backbone.state_dict()
    assert set(own) == set(state) - {"classifier.weight", "classifier.bias"}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    # TF weights: [-1, 1] inputs, the overlay's normalisation.
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    assert type(model.backbone.conv_stem).__name__ == "Conv2dSame"


def test_a_file_for_another_network_is_refused_in_one_line(tmp_path: Path) -> None:
    wrong = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(2, 8)}, wrong)
    with pytest.raises(BackboneError) as err:
        SimCLR(
            image_size=S, backbone="mobilenetv2_100", pretrained=True, pretrained_file=str(wrong)
        )
    text = str(err.value)
    assert "\n" not in text
    assert "model.pretrained_file" in text and str(wrong) in text and "missing keys" in text


def test_a_bad_model_kwarg_is_refused() -> None:
    with pytest.raises(BackboneError, match="num_classes"):
        SimCLR(image_size=S, backbone="resnet18", model_kwargs={"num_classes": 3})


def test_frozen_batch_norm_keeps_the_running_statistics() -> None:
    torch.manual_seed(0)
    model = SimCLR(
        image_size=S, backbone="mobilenetv2_100", freeze_bn=True, proj_hidden_dim=16, proj_dim=8
    )
    model.train()
    bn = model.backbone.bn1
    assert not bn.training and model.projector[1].training  # the head's norm still learns
    before = bn.running_mean.clone()
    model(torch.rand(4, 3, S, S))
    assert torch.equal(bn.running_mean, before)
    free = SimCLR(image_size=S, backbone="mobilenetv2_100", proj_hidden_dim=16, proj_dim=8)
    free.train()
    assert free.backbone.bn1.training


def _timm_node(*overrides: str):
    cfg = compose_cfg(
        "cluster", ["+extractor@extractors.timm=timm", "grid.extractors=[timm]", *overrides]
    )
    assert list(cfg.grid.extractors) == ["timm"]
    return cfg.extractors.timm


def test_any_timm_model_by_name_with_random_weights() -> None:
    node = _timm_node("extractors.timm.model_name=resnet18", "extractors.timm.pretrained=false")
    ex = build_extractor(plain(node), input_size=S)
    with torch.inference_mode():
        out = ex(torch.rand(2, 3, S, S))
    assert out.shape == (2, 512)
    assert ex.identity()["model_name"] == "resnet18" and ex.provenance()["random_init"]
    # Its pretrained config drives the preprocessing: timm's ImageNet mean and std.
    assert ex.identity()["mean"] == pytest.approx([0.485, 0.456, 0.406], abs=1e-6)


def test_the_model_name_is_required() -> None:
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="model_name"):
        build_extractor(plain(_timm_node("extractors.timm.pretrained=false")))
    with pytest.raises(UnknownModelError, match="no_such_net"):
        build_extractor(plain(_timm_node("extractors.timm.model_name=no_such_net")))


def test_the_sweep_form_names_the_model_too() -> None:
    cfg = compose_cfg("cluster", ["extractor=timm", "extractor.model_name=mobilenetv2_100"])
    assert cfg.extractor.model_name == "mobilenetv2_100" and cfg.extractor.preprocess == "minimal"


def test_the_local_mobilenet_file_gives_the_features_of_mobilenet_v2_tf() -> None:
    _needs_shared()
    node = _timm_node(
        "extractors.timm.model_name=mobilenetv2_100",
        f"extractors.timm.weights={SHARED_MNV2}",
        "extractors.timm.model_kwargs={pad_type:same}",
        "extractors.timm.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
    )
    ref = compose_cfg(
        "cluster",
        [
            "extractor@extractors.mobilenet_v2=mobilenet_v2_tf",
            f"extractors.mobilenet_v2.weights={SHARED_MNV2}",
        ],
    ).extractors.mobilenet_v2
    x = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(0))
    a, b = build_extractor(plain(node), input_size=S), build_extractor(plain(ref), input_size=S)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert a.identity() == b.identity()  # one cache key: features computed once serve both


def test_frozen_blocks_keep_their_weights_and_the_rest_trains() -> None:
    torch.manual_seed(0)
    model = SimCLR(
        image_size=32,
        backbone="mobilenetv2_050",
        proj_hidden_dim=16,
        proj_dim=8,
        frozen=["conv_stem", "bn1", "blocks.0", "blocks.1"],
    )
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model._shared_step(torch.rand(4, 3, 32, 32), "val", 0).backward()
    opt.step()
    for name, p in model.backbone.named_parameters():
        fixed = name.split(".")[0] in ("conv_stem", "bn1") or name.startswith(
            ("blocks.0.", "blocks.1.")
        )
        assert torch.equal(p, before[name]) == fixed, name
    assert model.hparams["frozen"] == ["conv_stem", "bn1", "blocks.0", "blocks.1"]


def test_a_frozen_prefix_that_names_nothing_is_refused() -> None:
    with pytest.raises(BackboneError, match="model.frozen: 'blocks.99' names no parameter"):
        SimCLR(image_size=32, backbone="mobilenetv2_050", frozen=["blocks.99"])
