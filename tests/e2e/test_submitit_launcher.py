"""``cluster.py -m`` through hydra-submitit-launcher: every grid cell a job of its own process.

``hydra/launcher=submitit_local`` runs the jobs as real subprocesses on this machine, the same
code path as ``hydra/launcher=slurm`` minus ``sbatch``; the SLURM config is checked by turning
it into the sbatch script that submitit would submit.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# Tiny networks and images (conf/debug/tiny.yaml); the cell comes from the sweep overrides.
TINY = ["debug=tiny", "fusion.n_partitions=3", "fusion.min_cluster_size=2"]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sweep(
    tmp_path: Path, ks: str, sky: Path, cache: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``cluster.py -m hydra/launcher=submitit_local ... clusterer.n_clusters=KS`` on the 24
    frames of ``sky`` (the session's; its encoder is in ``cache``)."""
    sweep = tmp_path / "multirun"
    cmd = [
        sys.executable,
        str(ROOT / "cluster.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "data=folder",
        f"data.root={sky}",
        f"paths.cache_dir={cache}",
        *TINY,
        "extractor=autoencoder",
        "reducer=pca",
        "clusterer=kmeans",
        f"clusterer.n_clusters={ks}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    return sweep, proc


def _job_logs(sweep: Path) -> dict[str, str]:
    """Submitit job id -> its stdout + stderr, checking each job folder holds logs and result."""
    jobs = [p for p in (sweep / ".submitit").iterdir() if p.is_dir() and "%" not in p.name]
    logs = {}
    for job in jobs:
        names = {p.name for p in job.iterdir()}
        expected = {f"{job.name}_0_{n}" for n in ("log.out", "log.err", "result.pkl")}
        assert expected <= names, names  # a result: the job returned (failed or not), no raise
        out, err = (job / f"{job.name}_0_log.{s}" for s in ("out", "err"))
        logs[job.name] = out.read_text() + err.read_text()
    assert str(os.getpid()) not in logs  # job ids of the local executor are process ids
    return logs


def test_submitit_local_sweep_runs_each_cell_as_a_job_and_finalises_once(
    tiny_sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    sweep, proc = _sweep(tmp_path, "3,4", tiny_sky, tiny_cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Submitit 'local' sweep output dir" in out

    ranking = _read(sweep / "ranking.csv")
    assert sorted(r["cell"] for r in ranking) == [
        "autoencoder/pca/kmeans/k3/s0",
        "autoencoder/pca/kmeans/k4/s0",
    ]
    labels = _read(sweep / "labels.csv")
    assert len(labels) + len(_read(sweep / "rejected.csv")) == 24 and labels
    assert (sweep / "report" / "index.html").is_file()
    assert json.loads((sweep / "status.json").read_text())["state"] == "finished"
    # Each Hydra job wrote its cell into its own folder, from a process of its own.
    assert list((sweep / "0").rglob("cell.json")) and list((sweep / "1").rglob("cell.json"))
    logs = _job_logs(sweep)
    assert len(logs) == 2
    assert sorted(
        k for k in ("kmeans__k3", "kmeans__k4") for text in logs.values() if k in text
    ) == ["kmeans__k3", "kmeans__k4"]


@pytest.mark.slow
def test_submitit_local_sweep_with_a_failing_job_finalises_the_others(
    tiny_sky: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """k = 1 fails in its job, which records it and returns: the rest is ranked."""
    sweep, proc = _sweep(tmp_path, "3,4,1", tiny_sky, tiny_cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]  # the failed cell is counted in the exit code
    assert "1 of 3 grid cells FAILED" in out, out[-3000:]
    assert len(_read(sweep / "ranking.csv")) == 2
    assert (sweep / "report" / "index.html").is_file()
    assert [r["cell"] for r in _read(sweep / "failed.csv")] == ["autoencoder/pca/kmeans/k1/s0"]
    assert json.loads((sweep / "status.json").read_text())["state"] == "finished_with_failures"
    assert list((sweep / "2").rglob("failed.json"))
    logs = _job_logs(sweep)
    assert len(logs) == 3
    assert sum("clusterer.n_clusters=1 cannot work" in text for text in logs.values()) == 1


def _sbatch_script(
    config_name: str, overrides: list[str], jobs: list[list[str]], tmp_path: Path, monkeypatch: Any
) -> tuple[DictConfig, str]:
    """The composed config and the sbatch script ``hydra/launcher=slurm`` would submit."""
    import submitit
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )
    scripts = []

    class Recorder(submitit.AutoExecutor):
        """The plugin's executor, with the submission replaced by writing the script down."""

        def map_array(self, fn: Any, *args: Any) -> list[Any]:
            ex = self._executor
            n = len(args[0])  # submitit submits one job as such, several as an array
            command, params = ex._submitit_command_str, ex.parameters
            text = _make_sbatch_string(
                command=command, folder=ex.folder, **params, map_count=n if n > 1 else None
            )
            scripts.append(text)
            return []

    monkeypatch.setattr(submitit, "AutoExecutor", Recorder)
    # SlurmExecutor refuses to start where there is no ``srun``.
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    launcher.launch(jobs, initial_job_idx=0)
    return cfg, scripts[0]


def test_slurm_launcher_config_makes_a_job_array_script(tmp_path: Path, monkeypatch: Any) -> None:
    _, script = _sbatch_script(
        "cluster",
        ["hydra.launcher.partition=gpu", "hydra.launcher.setup=[module load cuda]"],
        [["clusterer.n_clusters=3"], ["clusterer.n_clusters=4"]],
        tmp_path,
        monkeypatch,
    )
    lines = set(script.splitlines())
    expected = {
        "#SBATCH --partition=gpu",
        "#SBATCH --array=0-1%2",  # two cells, at most array_parallelism at once
        "#SBATCH --time=240",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        f"#SBATCH --output={tmp_path}/.submitit/%A_%a/%A_%a_0_log.out",
        f"#SBATCH --error={tmp_path}/.submitit/%A_%a/%A_%a_0_log.err",
        "module load cuda",
    }
    assert expected <= lines, "\n".join(sorted(expected - lines)) + "\n---\n" + script
    assert not any(line.startswith(("#SBATCH --account", "#SBATCH --qos")) for line in lines)
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines)


def test_ddp_training_on_slurm_runs_one_task_per_gpu_ranked_by_slurm(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """``train.py -m trainer=ddp hydra/launcher=slurm``, 2 nodes x 4 GPUs: one job, 8 tasks;
    in each task Lightning takes world size and ranks from SLURM (no process of its own)."""
    from hydra.utils import instantiate
    from lightning.fabric.plugins.environments import SLURMEnvironment

    overrides = ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    overrides += [f"hydra.launcher.{k}" for k in ("nodes=2", "gpus_per_node=4", "tasks_per_node=4")]
    cfg, script = _sbatch_script("train", overrides, [["model=simclr"]], tmp_path, monkeypatch)
    lines = set(script.splitlines())
    expected = {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"}
    assert expected <= lines, script
    assert not any(line.startswith("#SBATCH --array") for line in lines)

    # What srun gives the 6th task (node 1, local rank 1) of that job.
    slurm = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2"}
    slurm |= {"SLURM_NODEID": "1", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}
    slurm |= {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "gpu[07-08]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT"):  # set by Lightning below; removed afterwards
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    # The Trainer sets the process-wide rank of Lightning's rank-zero-only logging (to 5 here);
    # put it back afterwards, or every later test's logger would think it is not rank 0.
    from lightning.fabric.utilities import rank_zero
    from lightning.pytorch.utilities import rank_zero as pl_rank_zero

    for module in (rank_zero, pl_rank_zero):
        monkeypatch.setattr(module.rank_zero_only, "rank", module.rank_zero_only.rank)
    # CPU stands in for the GPUs: the cluster environment is chosen the same way.
    trainer = instantiate(
        cfg.trainer, out_dir=tmp_path, accelerator="cpu", precision="32-true", benchmark=False
    )
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank) == (8, 5, 1)
    assert trainer.node_rank == 1 and env.main_address == "gpu07"
