"""The feature cache's keys, names and matching rules, without torch.

The one home of what the feature entries (:mod:`aurora.extractors.feature_store`), the
extraction (:mod:`aurora.extractors.inference`) and the run's up-front estimate
(:mod:`aurora.run.budget`, which must not import torch) agree on: the stage names, the key of
an entry, the files it holds, and which entry belongs to which extractor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from aurora.infra.cache import Cache, stable_hash

#: Cache stage of the feature entries.
STAGE = "features"
#: Cache stage of an extraction in progress (its shard files).
SHARD_STAGE = "features_shards"
#: Bump when the meaning of stored features changes (e.g. the uint8 -> float conversion).
#: v2: keyed by the hash of the weights loaded (v1 keys held hashes a solution could claim).
FORMAT = "features-v2"
#: Images per shard file of an extraction (the unit of resumption).
SHARD_SIZE = 4096
#: The identity field holding the hash aurora computed of the weights a network loaded.
LOADED_WEIGHTS_KEY = "state_sha256"
#: The files of an entry: (N, D) float32 rows in store order, the N image ids, the provenance.
FEATURES_FILE = "features.npy"
IDS_FILE = "ids.json"
PROVENANCE_FILE = "provenance.json"


def feature_key(store_key: str, identity: Mapping[str, Any]) -> str:
    """Cache key of the features of a store under an extractor identity."""
    return stable_hash(FORMAT, store_key, dict(identity))


def weights_match(provenance: Mapping[str, Any], identity: Mapping[str, Any]) -> bool:
    """Whether an entry (its provenance) was computed with the weights of ``identity`` (its
    ``state_sha256``).

    The key already holds that hash; this reads it back from the entry's provenance, so an
    entry put under a key it does not belong to (a damaged or edited cache) is not read.
    """
    recorded = (provenance.get("extractor") or {}).get(LOADED_WEIGHTS_KEY)
    return recorded == identity.get(LOADED_WEIGHTS_KEY)


def entry_provenances(cache: Cache) -> Iterator[dict[str, Any]]:
    """The provenance of every complete feature entry of ``cache`` (unreadable ones skipped)."""
    root = cache.root / STAGE
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if cache.exists(STAGE, entry.name):
            try:
                yield json.loads((entry / PROVENANCE_FILE).read_text())
            except (OSError, ValueError):
                continue


def computed_by(
    provenance: Mapping[str, Any],
    *,
    store_key: str,
    timm_model: str | None = None,
    pretrained: bool = True,
    ckpt_path: str | None = None,
    dihedral: bool = False,
) -> bool:
    """Whether an entry holds the features of store ``store_key`` by the extractor these
    configured values describe, as far as they tell without building it (without its weights'
    hash): a timm network of that name with or without pretrained weights, or one of our
    encoders from that checkpoint with those views.

    An entry of a solution's network never is (its entries are keyed by its own weights).

    Args:
        provenance: the entry's provenance.
        store_key: the store's cache key.
        timm_model: the timm model name, or None for one of our encoders.
        pretrained: the timm network has pretrained weights.
        ckpt_path: our encoder's checkpoint (None: not known yet, never a match).
        dihedral: our encoder averages the 8 dihedral views.
    """
    if provenance.get("store_key") != store_key:
        return False
    ident = provenance.get("extractor") or {}
    details = provenance.get("extractor_details") or {}
    if details.get("weights_source") == "solution":
        return False
    if timm_model is not None:
        return ident.get("model_name") == timm_model and bool(ident.get("pretrained")) == bool(
            pretrained
        )
    if ckpt_path is None:
        return False
    same_views = bool(ident.get("dihedral", False)) == bool(dihedral)
    return str(details.get("ckpt_path")) == str(ckpt_path) and same_views
