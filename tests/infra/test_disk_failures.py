"""Out of disk, out of memory, killed: one line, nothing partial left, the next run goes on.

Also: one copy of each checkpoint on disk (``last.ckpt`` a link, the cache entry a hard link).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_cpu_trainer, tiny_simclr

import aurora.infra.atomic as atomic_mod
from aurora.data.datamodule import LoaderConfig
from aurora.infra.atomic import atomic_write_bytes, check_free_space, link_or_copy, remove_stale_tmp
from aurora.infra.cache import Cache
from aurora.infra.errors import DiskFullError, OutOfMemoryError, disk_full_error
from aurora.infra.guard import error_line, run_guarded
from aurora.training.checkpoints import is_complete_checkpoint
from aurora.training.fit import fit_model

warnings.filterwarnings("ignore", ".*does not have many workers.*")

S = 32
SIMCLR = tiny_simclr()
TRAINER = tiny_cpu_trainer(max_epochs=2, log_every_n_steps=1)
LOADER = {"batch_size": 8, "num_workers": 0, "val_fraction": 0.25}
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def sky() -> np.ndarray:
    """(16, S, S, 3) uint8 noise skies, black outside the inscribed circle."""
    rng = np.random.default_rng(0)
    yy, xx = (np.mgrid[:S, :S] + 0.5 - S / 2) / (S / 2)
    inside = (yy**2 + xx**2) <= 1
    return (rng.integers(0, 256, (16, S, S, 3)) * inside[..., None]).astype(np.uint8)


def _error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error:")]


def _files(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- stale temporaries of killed writers ------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_killed_writer_tmp_is_removed_by_next_write_live_one_kept(tmp_path: Path) -> None:
    # A real writer killed with SIGKILL half-way through its entry.
    code = (
        "import sys, time\n"
        "from aurora.infra.cache import Cache\n"
        "cm = Cache(sys.argv[1]).writing('train', 'killed')\n"
        "d = cm.__enter__()\n"
        "(d / 'model.ckpt').write_bytes(b'0' * 4096)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    stage = tmp_path / "train"
    (killed,) = stage.iterdir()
    assert killed.name.startswith(f".killed.tmp-{proc.pid}@")

    host = atomic_mod._HOST
    live = stage / f".live.tmp-{os.getpid()}@{host}~abcd1234"  # this process: still writing
    live.mkdir()
    dead = stage / f".dead.tmp-{_dead_pid()}@{host}~abcd1234"
    dead.mkdir()
    reused = stage / f".reused.tmp-{os.getpid()}@{host}~abcd1234"  # pid reused since
    reused.mkdir()
    old = time.time() - 10 * 24 * 3600
    os.utime(reused, (old, old))
    far_fresh = stage / ".far.tmp-123@elsewhere~abcd1234"  # another host, recent: kept
    far_fresh.mkdir()
    far_old = stage / ".farold.tmp-123@elsewhere~abcd1234"  # another host, 10 days: gone
    far_old.mkdir()
    os.utime(far_old, (old, old))
    legacy = stage / ".legacy.tmp-x1y2z3w4"  # before pids were recorded, 10 days old
    legacy.mkdir()
    os.utime(legacy, (old, old))
    unrelated = stage / ".notes"
    unrelated.mkdir()

    cache = Cache(tmp_path)
    with cache.writing("train", "next") as d:
        (d / "v").write_text("x")
    assert sorted(p.name for p in stage.iterdir()) == sorted(
        [live.name, far_fresh.name, unrelated.name, "next"]
    )
    assert remove_stale_tmp(stage) == []  # nothing more to remove
    # The killed key can be written again and is then complete.
    with cache.writing("train", "killed") as d:
        (d / "model.ckpt").write_bytes(b"1")
    assert cache.exists("train", "killed")


def test_atomic_write_leaves_no_partial_file_on_enospc(tmp_path: Path, monkeypatch) -> None:
    def half_then_full(f, data, chunk=0):
        f.write(bytes(memoryview(data)[: len(data) // 2]))
        f.flush()
        raise ENOSPC

    monkeypatch.setattr(atomic_mod, "_write_fully", half_then_full)
    target = tmp_path / "sub" / "blob.bin"
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(target, b"x" * 10_000)
    err = info.value
    assert err.path == target and err.needed_bytes == 10_000 and err.free_bytes is not None
    assert str(err).startswith(f"disk full writing {target}: ")
    assert _files(tmp_path / "sub") == []


def test_check_free_space(tmp_path: Path) -> None:
    free = check_free_space(tmp_path / "not" / "yet", 1)
    assert free > 0
    with pytest.raises(DiskFullError, match=r"disk full writing .*yet: .* free, .* needed"):
        check_free_space(tmp_path / "not" / "yet", free * 4 + (1 << 40))


# --- one line for a full disk and for exhausted memory -----------------------------------------


def _nested_enospc() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/cache/x.npz")
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from e
    except RuntimeError:
        raise ValueError("wrapped again") from None  # __context__ still holds the chain


def test_run_guarded_disk_full_in_chain_is_one_line(capsys) -> None:
    assert run_guarded(_nested_enospc) == 2
    (line,) = _error_lines(capsys.readouterr().out)
    assert line.startswith("error: disk full writing /data/cache/x.npz: ")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert "disk quota exceeded" in str(disk_full_error(quota, "/home/u/run"))
    with pytest.raises(ValueError):  # a bug keeps its traceback
        run_guarded(lambda: int("x"))


def test_run_guarded_memory_error_is_one_line(capsys) -> None:
    def allocate() -> None:
        np.ones((1 << 26, 1 << 26))  # 32 PiB: numpy refuses at once

    assert run_guarded(allocate) == 2
    (line,) = _error_lines(capsys.readouterr().out)
    assert line.startswith("error: out of host memory (tried to allocate 32.0 PiB")
    assert "extract.batch_size" in line

    from aurora.clustering.memory import MemoryLimitError

    own = MemoryLimitError("KernelPCA on 9 points needs ... raise memory_budget_bytes.")
    assert error_line(own) == str(own)  # aurora's own advice is kept


def test_gpu_oom_in_training_names_the_training_batch_size(
    sky: np.ndarray, tmp_path: Path, monkeypatch, capsys
) -> None:
    from aurora.models import SimCLR

    def oom(self, batch, batch_idx):
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "79.19 GiB of which 1.50 GiB is free.\nOf the allocated memory ..."
        )

    monkeypatch.setattr(SimCLR, "training_step", oom)
    code = run_guarded(fit_model, sky, SIMCLR, TRAINER, tmp_path, loader=LoaderConfig(**LOADER))
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().out)
    assert line.startswith(
        "error: out of GPU memory during training (Tried to allocate 2.00 GiB, 1.50 GiB free)"
    )
    assert "lower the training batch size (train.loader.batch_size)" in line
    assert isinstance(OutOfMemoryError("host"), MemoryError)


# --- a full disk during training: nothing partial, the rerun finishes -------------------------


def test_disk_full_while_checkpointing_then_rerun(
    sky: np.ndarray, tmp_path: Path, monkeypatch, capsys
) -> None:
    from aurora.run import train_encoder_cached

    real_write = atomic_mod._write_fully
    written: list[str] = []

    def full_disk(f, data, chunk=64 << 20):
        written.append(f.name)
        if ".ckpt" in f.name:  # the checkpoint's temporary file: half of it, then no space
            f.write(bytes(memoryview(data)[: len(data) // 2]))
            f.flush()
            raise ENOSPC
        real_write(f, data)

    def train(log_dir: Path) -> int:
        return run_guarded(
            train_encoder_cached,
            sky,
            "store-key",
            SIMCLR,
            TRAINER,
            LOADER,
            seed=0,
            cache_root=tmp_path / "cache",
            log_dir=log_dir,
        )

    monkeypatch.setattr(atomic_mod, "_write_fully", full_disk)
    assert train(tmp_path / "run1") == 2
    out = capsys.readouterr()
    (line,) = _error_lines(out.out)
    ckpts = tmp_path / "run1" / "checkpoints"
    assert line.startswith(f"error: disk full writing {ckpts}{os.sep}best-epoch000")
    assert " free, " in line and " needed" in line
    assert "Traceback" not in out.out + out.err
    assert any(".ckpt" in w for w in written)  # the fault really hit a checkpoint write
    assert _files(ckpts) == []  # no partial checkpoint, no temporary file
    assert _files(tmp_path / "cache" / "train") == []  # no temporary entry in the cache

    monkeypatch.setattr(atomic_mod, "_write_fully", real_write)
    assert train(tmp_path / "run2") == 0
    (entry,) = (tmp_path / "cache" / "train").iterdir()
    assert is_complete_checkpoint(entry / "model.ckpt")
    assert sorted(p.name for p in entry.iterdir()) == ["_COMPLETE", "model.ckpt"]
    assert train(tmp_path / "run3") == 0  # reused: no training at all this time
    assert not (tmp_path / "run3").exists()


def test_enospc_raised_inside_lightning_names_the_checkpoint_folder(
    sky: np.ndarray, tmp_path: Path, monkeypatch, capsys
) -> None:
    def save(obj, f, *a, **k):  # torch's writer reports ENOSPC as a RuntimeError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("[enforce fail at inline_container.cc] file write failed") from e

    monkeypatch.setattr(torch, "save", save)
    assert run_guarded(fit_model, sky, SIMCLR, TRAINER, tmp_path, loader=LoaderConfig(**LOADER))
    (line,) = _error_lines(capsys.readouterr().out)
    assert line.startswith(f"error: disk full writing {tmp_path / 'checkpoints'}: ")
    assert _files(tmp_path / "checkpoints") == []


def test_training_is_refused_before_it_starts_when_the_weights_cannot_fit(
    sky: np.ndarray, tmp_path: Path, monkeypatch, capsys
) -> None:
    import lightning.pytorch as pl

    fits: list[int] = []
    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: fits.append(1))
    monkeypatch.setattr(atomic_mod, "free_bytes", lambda path: 1000)
    assert run_guarded(fit_model, sky, SIMCLR, TRAINER, tmp_path, loader=LoaderConfig(**LOADER))
    (line,) = _error_lines(capsys.readouterr().out)
    assert line.startswith(f"error: disk full writing {tmp_path / 'checkpoints'}: 1000 B free, ")
    assert fits == []


# --- one copy of each checkpoint ---------------------------------------------------------------


def _disk_bytes(*folders: Path) -> int:
    """Bytes of the distinct files (by inode) under ``folders``; links count once, symlinks 0."""
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for p in folder.rglob("*"):
            st = p.lstat()
            if p.is_file() and not p.is_symlink():
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def test_one_copy_of_each_checkpoint(sky: np.ndarray, tmp_path: Path) -> None:
    res = fit_model(sky, SIMCLR, TRAINER, tmp_path / "run", loader=LoaderConfig(**LOADER))
    best, last = Path(res.best_ckpt), Path(res.last_ckpt)
    assert best.name.startswith("best-") and last.name == "last.ckpt"
    assert last.is_symlink() and last.resolve() == best.resolve()
    entry = link_or_copy(last, tmp_path / "cache" / "train" / "k" / "model.ckpt")
    st_best, st_entry = best.stat(), entry.stat()
    assert (st_entry.st_dev, st_entry.st_ino) == (st_best.st_dev, st_best.st_ino)
    assert st_best.st_nlink == 2
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert _disk_bytes(ckpt_dir, tmp_path / "cache") == st_best.st_size
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [best.name, "last.ckpt"]
    assert is_complete_checkpoint(entry)


def test_link_or_copy_copies_across_file_systems(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc" * 1000)
    dst = tmp_path / "out" / "b.bin"
    dst.parent.mkdir()
    dst.write_bytes(b"old")

    def no_link(a, b, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    assert link_or_copy(src, dst) == dst
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_ino != src.stat().st_ino
    assert _files(dst.parent) == ["b.bin"]  # no temporary left
