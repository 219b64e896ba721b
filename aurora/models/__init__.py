"""Self-supervised feature learning: autoencoder and SimCLR LightningModules.
Must not import run/, training/ or report/ (its import of extractors/ for the timm backbone
is listed to go in tests/test_house.py)."""

from aurora.models.augment import AugmentConfig, SkyAugment, sky_mask
from aurora.models.autoencoder import AutoEncoder
from aurora.models.base import FeatureModule
from aurora.models.checkpoint import CheckpointError, build_encoder, load_encoder
from aurora.models.losses import NTXentLoss, nt_xent, pair_similarities
from aurora.models.simclr import BackboneError, SimCLR, create_backbone

__all__ = [
    "AugmentConfig",
    "AutoEncoder",
    "BackboneError",
    "CheckpointError",
    "FeatureModule",
    "NTXentLoss",
    "SimCLR",
    "SkyAugment",
    "build_encoder",
    "create_backbone",
    "load_encoder",
    "nt_xent",
    "pair_similarities",
    "sky_mask",
]
