"""File names that are not UTF-8 survive to every output, byte for byte."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose_cfg

from aurora.data.manifest import Manifest
from aurora.data.sources import TRUNCATED, scan
from aurora.run import run_cluster

BAD = b"bad\xff\xfename.jpg"  # not UTF-8: what a camera PC with a Latin-1 locale can leave
COPY = b"copy\xe9.jpg"  # a byte copy of a frame (a duplicate) under a Latin-1 name
CUT = b"sub\xff/cut\xfe.jpg"  # cut short (rejected), in a folder whose name is not UTF-8 either


def _read(path: Path) -> list[dict[str, str]]:
    """A CSV as aurora documents reading it: UTF-8 with the bad bytes escaped back."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sky(tiny_sky: Path, tmp_path: Path) -> Path:
    """The session's tiny sky plus a new frame, a copy and a cut frame with non-UTF-8 names."""
    root = tmp_path / "sky"
    shutil.copytree(tiny_sky, root)
    frames = sorted(root.glob("*.jpg"))
    base = os.fsencode(root)
    flipped = cv2.flip(cv2.imread(str(frames[0])), 1)  # a new image, not a copy of one
    ok, buf = cv2.imencode(".jpg", flipped)
    assert ok
    with open(os.path.join(base, BAD), "wb") as f:
        f.write(buf.tobytes())
    shutil.copyfile(frames[1], os.path.join(base, COPY))
    os.mkdir(os.path.join(base, CUT.split(b"/")[0]))
    data = frames[2].read_bytes()
    with open(os.path.join(base, CUT), "wb") as f:
        f.write(data[: len(data) // 2])
    return root


def _inputs(root: Path) -> set[bytes]:
    """Every input file's path relative to the data root, as the file system's bytes."""
    base = os.fsencode(root)
    out = set()
    for dirpath, _, names in os.walk(base):
        for name in names:
            if name.endswith(b".jpg"):
                out.add(os.path.relpath(os.path.join(dirpath, name), base))
    return out


def test_non_utf8_names_reach_every_output(sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    overrides = ["debug=tiny", "data=folder", f"data.root={sky}", "fusion.min_cluster_size=2"]
    cfg = compose_cfg("cluster", [*overrides, f"paths.cache_dir={tiny_cache}"])
    run = tmp_path / "run"
    run_cluster(cfg, run)

    labels = _read(run / "labels.csv")
    rejected = _read(run / "rejected.csv")
    written = [os.fsencode(r["path"]) for r in labels + rejected]
    assert len(written) == len(set(written))  # each input once ...
    assert set(written) == _inputs(sky) and len(written) == 24 + 3  # ... and every one
    assert {os.fsencode(r["path"]): r["reason"] for r in rejected} == {CUT: TRUNCATED}
    assert os.fsencode(str(sky)) + b"/" + CUT in os.fsencode(rejected[0]["detail"])
    label = {os.fsencode(r["path"]): r["label"] for r in labels}
    frames = sorted(p.name for p in sky.glob("LYR-*.jpg"))
    assert label[COPY] == label[os.fsencode(frames[1])]  # a duplicate takes its original's

    # JSON escapes the bad bytes and reads them back; the solution keeps the new image's id.
    summary = json.loads((run / "summary.json").read_text(encoding="ascii"))
    assert summary["n_inputs"] == 27
    with np.load(run / "solution" / "reference.npz") as ref:
        ids = [os.fsencode(str(i)) for i in ref["ids"]]
    assert BAD in ids
    html = (run / "report" / "index.html").read_bytes()
    html.decode("utf-8")  # the report is valid UTF-8 whatever the names


def test_manifest_and_list_file_round_trip_the_bytes(sky: Path, tmp_path: Path) -> None:
    m = scan(sky)
    ids = {os.fsencode(r.id) for r in m.records} | {os.fsencode(d) for d in m.duplicates}
    assert BAD in ids and COPY in ids
    m.write(tmp_path / "manifest.csv")
    back = Manifest.read(tmp_path / "manifest.csv")
    assert back.records == m.records and back.duplicates == m.duplicates
    assert [r.path for r in back.rejected] == [r.path for r in m.rejected]
    # A list file naming them (in their own bytes) reads the same files.
    lst = os.path.join(os.fsencode(sky), b"list.txt")
    with open(lst, "wb") as f:
        f.write(b"\n".join([BAD, COPY, CUT]) + b"\n")
    listed = scan(os.fsdecode(lst))
    assert {os.fsencode(r.id) for r in listed.records} == {BAD, COPY}
    assert [os.fsencode(r.path) for r in listed.rejected] == [CUT]
