"""The content-addressed cache and the atomic array writers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from aurora.infra.atomic import atomic_save_npy, atomic_save_npz
from aurora.infra.cache import Cache, stable_hash


@dataclass(frozen=True)
class _Cfg:
    size: int
    kernel: int


def test_stable_hash_ignores_key_order_and_yaml_spelling() -> None:
    a = stable_hash({"a": 1, "b": [1.0, 2]}, "x")
    assert a == stable_hash({"b": [1, 2.0], "a": 1}, "x")
    assert a == stable_hash(OmegaConf.create({"b": [1, 2], "a": 1}), "x")
    assert a != stable_hash({"a": 1, "b": [1, 3]}, "x")
    assert stable_hash(_Cfg(224, 3)) == stable_hash({"kernel": 3, "size": 224})
    assert stable_hash(np.arange(4)) != stable_hash(np.arange(5))


def test_entry_exists_only_after_successful_write(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError), cache.writing("stage", "k1") as d:
        (d / "part.bin").write_bytes(b"half")
        raise RuntimeError("killed")
    assert not cache.exists("stage", "k1")
    assert not cache.path("stage", "k1").exists()
    assert list((tmp_path / "stage").iterdir()) == []  # no temporary folder left behind

    with cache.writing("stage", "k1") as d:
        (d / "part.bin").write_bytes(b"full")
    assert cache.exists("stage", "k1")
    assert (cache.path("stage", "k1") / "part.bin").read_bytes() == b"full"


def test_second_writer_does_not_clobber_complete_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with cache.writing("s", "k") as d:
        (d / "v").write_text("first")
    with cache.writing("s", "k") as d:
        (d / "v").write_text("second")
    assert (cache.path("s", "k") / "v").read_text() == "first"


def test_atomic_save_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.npz"
    atomic_save_npz(path, x=np.arange(3))
    np.testing.assert_array_equal(np.load(path)["x"], np.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]


def test_atomic_save_npy_writes_what_np_save_writes(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "ref.npy", arr)
    path = tmp_path / "sub" / "shard_00000.npy"
    dead = path.with_name(f".{path.name}.{'0' * 32}.tmp")  # a killed writer's, older name form
    dead.parent.mkdir()
    dead.write_bytes(b"half")
    os.utime(dead, (0, 0))  # untouched for far longer than STALE_TMP_AGE_S
    atomic_save_npy(path, arr)
    assert path.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
