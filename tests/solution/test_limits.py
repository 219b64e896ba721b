"""A solution or run folder from someone else: limits before allocation, no way out of the
folder, a closed manifest schema, and an ``export`` that replays only what it checked."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, compose_cfg
from omegaconf import OmegaConf
from test_apply import _pixels_allowed, _rewrite, run, sol_copy  # noqa: F401

from aurora.solution import SolutionError, SolutionLimits, load_solution
from aurora.solution.__main__ import ExportError, export_command, main


def _refused(folder: Path, match: str, limits: SolutionLimits | None = None) -> str:
    """Load ``folder`` expecting a one-line :class:`SolutionError` matching ``match``."""
    with pytest.raises(SolutionError, match=match) as info:
        load_solution(folder, limits)
    message = str(info.value)
    assert "\n" not in message
    return message


def _rehash(folder: Path) -> None:
    """Record fresh hashes of every file (what whoever forges a folder does)."""
    _rewrite(folder, lambda m: None)


# ------------------------------------------------------------------------------------ export


class _Payload:
    """Unpickling this creates ``path``: the reproduction's payload."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


GOOD = [
    "debug=tiny",
    "data=folder",
    "data.root=/data/night one",
    "paths.cache_dir=/tmp/cache",
    "grid.n_clusters=[3,4]",
    "fusion.min_cluster_size=2",
    "seed=7",
    "extract.device=cpu",
    "preprocess@preprocess.full=minimal",
    "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
    "extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
]


def _run_folder(tmp_path: Path, overrides: list[str]) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def test_export_payload_is_refused(tmp_path: Path) -> None:
    """The issue's reproduction: two appended hydra.callbacks lines that unpickle a payload."""
    import joblib

    live = tmp_path / "live"
    joblib.dump(_Payload(live), tmp_path / "live.pkl")
    joblib.load(tmp_path / "live.pkl")
    assert live.exists()  # the payload is real: loading it runs code

    marker = tmp_path / "marker"
    payload = tmp_path / "payload.pkl"
    joblib.dump(_Payload(marker), payload)
    run_dir = _run_folder(tmp_path, GOOD)
    with open(run_dir / ".hydra" / "overrides.yaml", "a") as f:
        f.write("- +hydra.callbacks.pwn._target_=joblib.load\n")
        f.write(f"- +hydra.callbacks.pwn.filename={payload}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aurora.solution", "export", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "hydra.callbacks.pwn._target_" in lines[0]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("hydra/launcher=basic", "sets Hydra itself"),
        ("hydra.job.chdir=true", "sets Hydra itself"),
        ("extractors.resnet50._target_=os.system", "instantiation key"),
        ("+models.autoencoder._partial_=true", "instantiation key"),
        ("+note=1", "adds key note"),
        ("++grid.nonsense=1", "key grid.nonsense does not exist"),
        ("extractor=../../evil", "not an option of config group extractor"),
        ("seed=${oc.env:HOME}", "not plain data"),
        ("extractors.resnet50.model_kwargs={_target_:os.system}", "not plain data"),
        ("extractors.resnet50.model_kwargs={a:{_target_:os.system}}", "not plain data"),
        ("seed=1,2", "sweep"),
        ("extractor@hydra.callbacks.x=resnet50", "package"),
    ],
)
def test_export_refuses_what_it_cannot_check(tmp_path: Path, override: str, match: str) -> None:
    run_dir = _run_folder(tmp_path, [*GOOD, override])
    with pytest.raises(ExportError, match=match) as info:
        export_command(run_dir)
    assert override[:20] in str(info.value) and "\n" not in str(info.value)


def test_export_rebuilds_a_good_run(tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path, [*GOOD, "mode=apply"])
    cmd = export_command(run_dir)
    assert cmd[:2] == [sys.executable, str(ROOT / "cluster.py")]
    assert cmd[-1] == f"hydra.run.dir='{run_dir.resolve()}'"
    rebuilt = cmd[2:-1]
    assert not any(o.startswith("mode=") for o in rebuilt)
    assert "data.root='/data/night one'" in rebuilt and "grid.n_clusters=[3,4]" in rebuilt
    # the rebuilt overrides compose exactly the config of the recorded ones
    want = OmegaConf.to_container(compose_cfg("cluster", GOOD))
    got = OmegaConf.to_container(compose_cfg("cluster", rebuilt))
    assert got == want


def test_export_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "no_run")]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: ") and "single" in out[0]
    run_dir = _run_folder(tmp_path, [*GOOD, "+hydra.callbacks.x._target_=joblib.load"])
    assert main(["export", str(run_dir)]) == 2
    assert capsys.readouterr().out.count("error:") == 1


def test_export_overrides_link_out_of_the_run_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(yaml.safe_dump(GOOD))
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").symlink_to(outside)
    with pytest.raises(ExportError, match="symbolic link.*outside the run folder"):
        export_command(run_dir)


# ------------------------------------------------------------------------ links and devices


def test_link_out_of_the_folder_is_refused(sol_copy: Path, tmp_path: Path) -> None:  # noqa: F811
    secret = tmp_path / "secret.json"
    shutil.copy(sol_copy / "run.json", secret)  # same bytes: its hash still matches
    (sol_copy / "run.json").unlink()
    (sol_copy / "run.json").symlink_to(secret)
    message = _refused(sol_copy, "run.json")
    assert "symbolic link" in message and "outside the solution folder" in message


def test_folder_link_out_of_the_folder_is_refused(sol_copy: Path, tmp_path: Path) -> None:  # noqa: F811
    shutil.move(sol_copy / "extractor", tmp_path / "extractor")
    (sol_copy / "extractor").symlink_to(tmp_path / "extractor", target_is_directory=True)
    _refused(sol_copy, "extractor.*symbolic link.*outside the solution folder")


def test_link_inside_the_folder_is_followed(sol_copy: Path) -> None:  # noqa: F811
    (sol_copy / "data").mkdir()
    shutil.move(sol_copy / "run.json", sol_copy / "data" / "run.json")
    (sol_copy / "run.json").symlink_to(Path("data") / "run.json")
    _rehash(sol_copy)
    assert load_solution(sol_copy).n_groups == 3


def test_link_to_a_device_is_refused(sol_copy: Path) -> None:  # noqa: F811
    (sol_copy / "run.json").unlink()
    (sol_copy / "run.json").symlink_to("/dev/zero")
    _refused(sol_copy, r"run\.json.*(symbolic link|not a regular file)")
    # inside the folder (a device node cannot be made here: a FIFO is the same kind of thing)
    (sol_copy / "run.json").unlink()
    os.mkfifo(sol_copy / "run.json")
    message = _refused(sol_copy, r"run\.json.*not a regular file")
    assert "missing" not in message


def test_path_traversal_is_refused_in_words(sol_copy: Path) -> None:  # noqa: F811
    manifest = json.loads((sol_copy / "manifest.json").read_text())
    manifest["files"]["x/../reference.npz"] = manifest["files"]["reference.npz"]
    (sol_copy / "manifest.json").write_text(json.dumps(manifest))
    message = _refused(sol_copy, r"file name 'x/\.\./reference\.npz' in .*leaves the solution")
    assert "(?!" not in message and "^" not in message


# --------------------------------------------------------------------- the manifest's schema


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(note="hello"), r"top level.*'note' was unexpected"),
        (lambda m: m["preprocess"].update(extra=1), r"preprocess.*'extra' was unexpected"),
        (lambda m: m["preprocess"].update(size="big"), r"preprocess\.size.*not of type"),
        (lambda m: m["preprocess"].update(star_kernel=3.0), r"preprocess\.star_kernel"),
        (lambda m: m["preprocess"].update(moon=["mask"]), r"preprocess\.moon"),
        (lambda m: m["preprocess"].update(l_percentiles=[1, 2, 3]), r"l_percentiles"),
        (lambda m: m["novelty"].update(threshold=1e300), r"novelty\.threshold"),
        (lambda m: m["extractor"]["params"].update(x=[{"a": 1}] * 300), r"params\.x.*too long"),
        (lambda m: m.update(seed=True), r"field seed"),
        (lambda m: m.update(n_groups=3.0), r"field n_groups"),
    ],
)
def test_manifest_schema_is_closed_and_typed(
    sol_copy: Path,  # noqa: F811
    edit: Callable[[dict], None],
    match: str,
) -> None:
    _rewrite(sol_copy, edit)
    _refused(sol_copy, match)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(sol_copy: Path, constant: str) -> None:  # noqa: F811
    path = sol_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["novelty"]["quantile"] = "@"
    path.write_text(json.dumps(manifest).replace('"@"', constant))
    message = _refused(sol_copy, r"manifest\.json")
    assert "NaN" in message or "range" in message


def test_deep_nesting_is_refused_without_recursion_error(sol_copy: Path) -> None:  # noqa: F811
    path = sol_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["extractor"]["params"]["deep"] = "@"
    depth = 200_000  # far deeper than Python's recursion limit
    path.write_text(json.dumps(manifest).replace('"@"', "[" * depth + "]" * depth))
    _refused(sol_copy, r"nesting depth of .*manifest\.json is 2000\d\d, above the limit 32")


def test_neighbours_n_neighbors_out_of_range_is_refused(sol_copy: Path) -> None:  # noqa: F811
    path = sol_copy / "neighbours.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for bad in (-5, 0, 10_000):
        np.savez(path, **{**arrays, "n_neighbors": np.array(bad, np.int64)})
        _rehash(sol_copy)
        _refused(sol_copy, rf"neighbours\.npz: n_neighbors is {bad}; it must be 1\.\.16")
    np.savez(path, **{**arrays, "max_distance": np.array(-1.0)})
    _rehash(sol_copy)
    _refused(sol_copy, r"max_distance is -1\.0")


# --------------------------------------------------------------------- limits before allocation


def _npz_with_header(path: Path, arrays: dict[str, np.ndarray], forged: dict[str, tuple]) -> None:
    """An .npz whose ``forged`` members declare a shape (float32) but hold only their header."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, value, allow_pickle=False)
            zf.writestr(f"{name}.npy", buf.getvalue())
        for name, shape in forged.items():
            buf = io.BytesIO()
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(buf, header)
            zf.writestr(f"{name}.npy", buf.getvalue())


def _reference(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_declared_shape_far_beyond_memory_is_refused(sol_copy: Path) -> None:  # noqa: F811
    """Features declared as 18 x 10^12 floats (72 TB): refused from the header alone; loading
    them would have been a MemoryError, never this message."""
    arrays = _reference(sol_copy)
    del arrays["features"]
    _npz_with_header(sol_copy / "reference.npz", arrays, {"features": (18, 10**12)})
    _rehash(sol_copy)
    _refused(sol_copy, r"features per image is 1000000000000, above the limit 65536")


def test_header_that_lies_about_its_data_is_refused(sol_copy: Path) -> None:  # noqa: F811
    arrays = _reference(sol_copy)
    del arrays["features"]
    _npz_with_header(sol_copy / "reference.npz", arrays, {"features": (18, 384)})
    _rehash(sol_copy)
    _refused(sol_copy, r"features declares \(18, 384\) float32 .* holds 0 B of data")


def test_compressed_bomb_is_refused_before_allocation(sol_copy: Path) -> None:  # noqa: F811
    """Zeros compress ~1000:1: a small file whose arrays take far more memory than allowed."""
    arrays = _reference(sol_copy)
    arrays["features"] = np.zeros((18, 500_000), np.float64)  # 69 MiB, ~70 KiB compressed
    np.savez_compressed(sol_copy / "reference.npz", **arrays)
    assert (sol_copy / "reference.npz").stat().st_size < 256 * 1024
    _rehash(sol_copy)
    limits = SolutionLimits(memory_bytes=8 * 2**20, max_features=10**6)
    tracemalloc.start()
    try:
        message = _refused(sol_copy, r"arrays take 137\.\d MiB once loaded", limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "8.0 MiB" in message and "SolutionLimits.memory_bytes" in message
    assert peak < 8 * 2**20  # the 69 MiB array was never made


def test_n_reference_above_the_limit_is_refused(sol_copy: Path) -> None:  # noqa: F811
    _rewrite(sol_copy, lambda m: m.update(n_reference=10**9))
    _refused(sol_copy, r"n_reference is 1000000000, above the limit 10000000 .*max_reference")


def test_image_size_above_the_limit_is_refused(sol_copy: Path) -> None:  # noqa: F811
    _rewrite(sol_copy, lambda m: m["preprocess"].update(size=1_000_000))
    _refused(sol_copy, r"preprocess\.size is 1000000, above the limit 4096 .*max_image_size")


def _checkpoint_entry(latent_dim: int) -> Callable[[dict], None]:
    """An autoencoder extractor entry whose latent_dim sets the size of its network."""

    def edit(m: dict) -> None:
        hparams = {"image_size": 32, "depth": 2, "width": 4, "latent_dim": latent_dim}
        m["extractor"].update(
            kind="checkpoint",
            params={
                "model_class": "aurora.models.AutoEncoder",
                "hparams": hparams,
                "feature_dim": latent_dim,
            },
            identity={"kind": "checkpoint"},
        )

    return edit


_OVER_WEIGHTS_LIMIT = (
    r"extractor\.params describe is [\d,]+ values \([\d.]+ [GT]iB\), above the limit 4\.0 GiB "
    r"\(SolutionLimits\.max_weights_bytes\)"
)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # ~10^12 values, 8 TB: building it for real could only fail for lack of memory
        (_checkpoint_entry(10**9), _OVER_WEIGHTS_LIMIT),
        # 400 MB: within the limit, but far more than the weights file holds
        (
            _checkpoint_entry(10**5),
            r"describe has [\d,]+ values \(3\d\d\.\d MiB\), but its weights",
        ),
        (
            lambda m: m["extractor"].update(
                kind="timm",
                params={
                    "model_name": "vit_base_patch16_224",
                    "model_kwargs": {"embed_dim": 4096, "depth": 64, "num_heads": 16},
                },
                identity={"kind": "timm"},
            ),
            _OVER_WEIGHTS_LIMIT,
        ),
    ],
)
def test_declared_network_is_sized_before_it_is_built(
    sol_copy: Path,  # noqa: F811
    edit: Callable[[dict], None],
    match: str,
) -> None:
    import resource

    _rewrite(sol_copy, edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(sol_copy, match)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert grown < 200 * 1024  # far below the network's size: it was built on the meta device


def test_timm_solution_round_trip(tmp_path: Path) -> None:
    """A real timm network's manifest passes the closed schema and the size checks."""
    from test_apply import _make_record

    from aurora.solution import save_solution

    cfg = {
        "_target_": "aurora.extractors.TimmExtractor",
        "model_name": "mobilenetv2_100",
        "pretrained": False,
        "input_size": 32,
    }
    record = _make_record(tmp_path, cfg)
    sol = load_solution(save_solution(record, tmp_path / "solution"))
    manifest = json.loads((tmp_path / "solution" / "manifest.json").read_text())
    assert manifest["extractor"]["kind"] == "timm"
    assert manifest["extractor"]["params"]["model_name"] == "mobilenetv2_100"
    np.testing.assert_array_equal(sol.labels, record.labels)


def test_limits_are_configurable(sol_copy: Path) -> None:  # noqa: F811
    assert load_solution(sol_copy).n_groups == 3
    _refused(
        sol_copy,
        r"features per image is 384, above the limit 100",
        SolutionLimits(max_features=100),
    )
    _refused(
        sol_copy, r"manifest\.json is .* above the limit", SolutionLimits(max_manifest_bytes=100)
    )


def test_pickle_in_an_npz_is_refused_from_its_header(sol_copy: Path, tmp_path: Path) -> None:  # noqa: F811
    marker = tmp_path / "pwned"
    arrays = _reference(sol_copy)
    arrays["ids"] = np.array([_Payload(marker)] * 18, dtype=object)
    np.savez(sol_copy / "reference.npz", **arrays)
    _rehash(sol_copy)
    _refused(sol_copy, r"reference\.npz array ids holds Python objects")
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_Payload(marker))) is None and marker.exists()


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [[1], {"b": []}]}', 4),
        ('{"a": "[[[{{{"}', 1),  # brackets inside a string do not nest
        ('{"a": "\\"[[", "b": [[]]}', 3),  # nor after an escaped quote
        ('["\\\\", [[]]]', 3),  # an escaped backslash ends before the quote
    ],
)
def test_json_depth_skips_strings(text: str, depth: int) -> None:
    from aurora.solution.limits import json_depth

    json.loads(text)  # each text is valid JSON
    assert json_depth(text) == depth


def test_repeated_manifest_key_is_refused(sol_copy: Path) -> None:  # noqa: F811
    path = sol_copy / "manifest.json"
    text = path.read_text()
    path.write_text(text.replace('"n_groups": 3', '"n_groups": 3, "n_groups": 2', 1))
    _refused(sol_copy, "key 'n_groups' appears twice")
