"""Specific rejection reasons and duplicates: every bad input case of one small corpus."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose_cfg

from aurora.data.sources import (
    DANGLING_LINK,
    MISSING,
    NOT_A_FILE,
    SYMLINK_LOOP,
    DataSourceError,
    Manifest,
    duplicate_detail,
    expand_duplicates,
    scan,
    write_rejected_csv,
)
from aurora.data.synth import render_sky
from aurora.preprocess import (
    ALL_SATURATED,
    MIN_SEARCH_SIDE,
    TOO_DARK,
    TOO_SMALL,
    PreprocessConfig,
    disk_mask,
    find_sky_circle,
    preprocess_image,
)
from aurora.preprocess import store as preprocess_store

CFG = PreprocessConfig(size=32)
GOOD = ("sky0.png", "sky1.png", "sky2.png")


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), arr)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Good 64 px skies, every bad case and three copies of one sky (one in a subfolder)."""
    root = tmp_path / "data"
    for i, name in enumerate(GOOD):
        _png(root / name, render_sky("patchy", np.random.default_rng(300 + i), 64, False, 0.0)[0])
    shutil.copyfile(root / "sky0.png", root / "sky0_copy.png")
    (root / "sub").mkdir()
    shutil.copyfile(root / "sky0.png", root / "sub" / "again.png")
    _png(root / "white.png", np.full((64, 64, 3), 255, np.uint8))
    shutil.copyfile(root / "white.png", root / "white_copy.png")  # copy of a rejected image
    _png(root / "tiny.png", np.random.default_rng(1).integers(0, 255, (10, 10, 3), np.uint8))
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    os.mkfifo(root / "pipe.jpg")  # opening it would block: it must never be opened
    return root


def test_folder_scan_reasons_and_duplicates(corpus: Path) -> None:
    m = scan(corpus, jobs=2)
    reasons = {r.path: r.reason for r in m.rejected}
    assert reasons == {
        "dangling.jpg": DANGLING_LINK,
        "loop_a.jpg": SYMLINK_LOOP,
        "loop_b.jpg": SYMLINK_LOOP,
        "pipe.jpg": NOT_A_FILE,
    }
    assert m.duplicates == {
        "sky0_copy.png": "sky0.png",
        "sub/again.png": "sky0.png",
        "white_copy.png": "white.png",
    }
    assert [r.id for r in m.records] == [*GOOD, "tiny.png", "white.png"]
    assert m.n_inputs == 12 == len(m.records) + len(m.duplicates) + len(m.rejected)
    detail = {r.path: r.detail for r in m.rejected}
    assert "nowhere.jpg" in detail["dangling.jpg"] and "FIFO" in detail["pipe.jpg"]


def test_store_reasons_details_and_accounting(corpus: Path, tmp_path: Path) -> None:
    m = scan(corpus)
    store = preprocess_store.build_preprocessed(m, CFG, tmp_path / "cache", jobs=1)
    assert store.ids == list(GOOD)
    assert store.duplicates == {"sky0_copy.png": "sky0.png", "sub/again.png": "sky0.png"}
    by_path = {r.path: r for r in store.rejected}
    assert by_path["white.png"].reason == ALL_SATURATED
    assert by_path["tiny.png"].reason == TOO_SMALL
    assert by_path["tiny.png"].detail == (
        f"10x10 px, at least {MIN_SEARCH_SIDE} px per side needed to find the sky circle"
    )
    # A copy of a rejected image is rejected for the same reason, naming its original.
    assert by_path["white_copy.png"].reason == ALL_SATURATED
    assert by_path["white_copy.png"].detail.startswith(duplicate_detail("white.png"))
    assert len(store) + len(store.duplicates) + len(store.rejected) == m.n_inputs == 12

    # rejected.csv: short code in `reason`, the message in `detail`.
    out = tmp_path / "rejected.csv"
    write_rejected_csv(store.rejected, out)
    with open(out, newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert rows["tiny.png"]["reason"] == "too small" and "10x10" in rows["tiny.png"]["detail"]

    # One line per input: each duplicate takes its original's row.
    all_ids, rows_of = expand_duplicates(store.ids, store.duplicates)
    assert len(all_ids) + len(store.rejected) == m.n_inputs
    assert [store.ids[i] for i in rows_of] == [
        "sky0.png",
        "sky0.png",  # sky0_copy.png
        "sky1.png",
        "sky2.png",
        "sky0.png",  # sub/again.png
    ]


def test_cached_store_follows_the_current_duplicates(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = preprocess_store.build_preprocessed(scan(corpus), CFG, cache, jobs=1, progress=False)
    shutil.copyfile(corpus / "sky2.png", corpus / "sky2_copy.png")
    (corpus / "dangling.jpg").unlink()
    m = scan(corpus)
    again = preprocess_store.build_preprocessed(m, CFG, cache, jobs=1, progress=False)
    assert again.key == first.key  # same records: the entry is re-used ...
    assert again.duplicates["sky2_copy.png"] == "sky2.png"  # ... with the current inputs
    assert "dangling.jpg" not in {r.path for r in again.rejected}
    assert len(again) + len(again.duplicates) + len(again.rejected) == m.n_inputs == 12


def test_list_file_reasons(corpus: Path, tmp_path: Path) -> None:
    (corpus / "folder").mkdir()
    names = [*GOOD, "sky0_copy.png", "sub/again.png", "tiny.png", "dangling.jpg", "loop_a.jpg"]
    lst = corpus / "list.txt"
    lst.write_text("\n".join([*names, "folder", "gone.png", "pipe.jpg"]) + "\n")
    m = scan(lst)
    assert {r.path: r.reason for r in m.rejected} == {
        "folder": NOT_A_FILE,
        "gone.png": MISSING,
        "dangling.jpg": DANGLING_LINK,
        "loop_a.jpg": SYMLINK_LOOP,
        "pipe.jpg": NOT_A_FILE,
    }
    assert m.duplicates == {"sky0_copy.png": "sky0.png", "sub/again.png": "sky0.png"}
    assert m.n_inputs == 11 == len(m.records) + len(m.duplicates) + len(m.rejected)


def _stream0(seed: int, n: int = 2) -> bytes:
    """A THEMIS stream0 file: n 256 x 256 16-bit PGM frames, each with a metadata header."""
    rng = np.random.default_rng(seed)
    return b"".join(
        f'P5\n#"Image request start" 2014-03-10 06:00:0{i}.000000 UTC\n256 256\n65535\n'.encode()
        + rng.integers(0, 65536, (256, 256)).astype(">u2").tobytes()
        for i in range(n)
    )


def test_duplicate_multi_frame_file_maps_frame_by_frame(tmp_path: Path) -> None:
    (tmp_path / "b_orig.pgm").write_bytes(_stream0(0))
    (tmp_path / "c_copy.pgm").write_bytes(_stream0(0))
    (tmp_path / "a_other.pgm").write_bytes(_stream0(1))
    m = scan(tmp_path)
    assert [r.id for r in m.records] == ["a_other.pgm#0000", "a_other.pgm#0001"] + [
        "b_orig.pgm#0000",
        "b_orig.pgm#0001",
    ]
    assert m.duplicates == {
        "c_copy.pgm#0000": "b_orig.pgm#0000",
        "c_copy.pgm#0001": "b_orig.pgm#0001",
    }
    assert m.n_inputs == 6


def test_manifest_round_trip_keeps_duplicates_and_details(corpus: Path, tmp_path: Path) -> None:
    m = scan(corpus)
    m.write(tmp_path / "manifest.csv")
    back = Manifest.read(tmp_path / "manifest.csv")
    assert back.duplicates == m.duplicates and back.records == m.records
    assert [(r.path, r.reason, r.detail) for r in back.rejected] == [
        (r.path, r.reason, r.detail) for r in m.rejected
    ]
    assert back.n_inputs == m.n_inputs


def test_expand_duplicates_known_answer_and_errors() -> None:
    ids, rows = expand_duplicates(["b", "d"], {"a": "d", "c": "b", "e": "b"})
    assert ids == ["a", "b", "c", "d", "e"] and rows.tolist() == [1, 0, 0, 1, 0]
    assert rows.dtype == np.int64
    ids, rows = expand_duplicates([], {})
    assert ids == [] and rows.shape == (0,)
    with pytest.raises(ValueError, match="x.png"):
        expand_duplicates(["a"], {"b": "x.png"})
    with pytest.raises(ValueError, match="both"):
        expand_duplicates(["a", "b"], {"b": "a"})


def test_saturation_and_size_in_the_chain() -> None:
    white16 = np.full((64, 64), 65535, np.uint16)
    res = preprocess_image(white16, CFG)
    assert res.rejected == ALL_SATURATED and "100%" in (res.detail or "")
    # A sky circle that is all white inside black corners: found, and still saturated.
    disk = np.zeros((64, 64, 3), np.uint8)
    disk[disk_mask(64, 0.95)] = 255
    res = preprocess_image(disk, CFG)
    assert res.rejected == ALL_SATURATED and "sky circle" in (res.detail or "")
    # Half of the sky saturated (a big glare) is not a saturated frame.
    half = disk.copy()
    half[:32] //= 3
    assert preprocess_image(half, CFG).rejected is None
    # Too small only where the circle must be found; a fixed circle works on a small frame.
    small = np.zeros((20, 20, 3), np.uint8)
    small[disk_mask(20, 0.9)] = 120
    assert preprocess_image(small, CFG).rejected == TOO_SMALL
    fixed = PreprocessConfig(size=32, circle=(9.5, 9.5, 9.0))
    assert preprocess_image(small, fixed).rejected is None
    assert preprocess_image(np.zeros((5, 5), np.uint8), fixed).rejected == TOO_SMALL


def test_min_search_side_is_not_above_what_the_search_can_do() -> None:
    # At the minimum side a sky disk with a margin to the frame is found.
    n = MIN_SEARCH_SIDE
    img = np.zeros((n, n, 3), np.uint8)
    img[disk_mask(n, 0.6)] = 120
    c = find_sky_circle(img)
    assert abs(c.r - 0.3 * n) < 1.5 and abs(c.cx - (n - 1) / 2) < 1.0


def test_too_dark_names_the_level_and_the_threshold() -> None:
    cfg = PreprocessConfig(size=32, dark_threshold=30.0)
    sky = np.zeros((64, 64, 3), np.uint8)
    sky[disk_mask(64, 0.9)] = 12  # a sky circle whose brightest tenth is at 12
    res = preprocess_image(sky, cfg)
    assert res.rejected == TOO_DARK
    assert res.detail == (
        "0.9-quantile of HSV value inside the sky circle = 12 (of 255), below "
        "preprocess.<variant>.dark_threshold=30"
    )
    # No circle to find in a black frame: the level of the whole frame is given.
    res = preprocess_image(np.full((64, 64, 3), 3, np.uint8), cfg)
    assert res.rejected == TOO_DARK and "of the whole frame" in (res.detail or "")
    assert "= 3 (of 255)" in (res.detail or "")
    brighter = sky.copy()
    brighter[disk_mask(64, 0.9)] = 40
    assert preprocess_image(brighter, cfg).rejected is None


def test_too_dark_detail_reaches_rejected_csv(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "sky.png", render_sky("patchy", np.random.default_rng(300), 64, False, 0.0)[0])
    dark = np.zeros((64, 64, 3), np.uint8)
    dark[disk_mask(64, 0.9)] = 5
    _png(root / "dark.png", dark)
    store = preprocess_store.build_preprocessed(scan(root), CFG, tmp_path / "cache", jobs=1)
    (rej,) = store.rejected
    assert rej.path == "dark.png" and rej.reason == TOO_DARK
    assert "= 5 (of 255), below preprocess.<variant>.dark_threshold=20" in rej.detail


def test_links_to_devices_and_fifos_are_not_files_naming_the_target(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "sky.png", render_sky("patchy", np.random.default_rng(300), 64, False, 0.0)[0])
    os.mkfifo(tmp_path / "pipe")
    os.symlink("/dev/zero", root / "zero.jpg")
    os.symlink(tmp_path / "pipe", root / "pipe.png")
    m = scan(root)
    by_path = {r.path: r for r in m.rejected}
    assert {p: r.reason for p, r in by_path.items()} == {
        "zero.jpg": NOT_A_FILE,
        "pipe.png": NOT_A_FILE,
    }
    assert "a link to /dev/zero, a character device" in by_path["zero.jpg"].detail
    assert f"a link to {tmp_path / 'pipe'}, a FIFO" in by_path["pipe.png"].detail
    # Named by a list file, too.
    lst = root / "list.txt"
    lst.write_text("zero.jpg\nsky.png\n")
    m = scan(lst)
    assert [(r.path, r.reason) for r in m.rejected] == [("zero.jpg", NOT_A_FILE)]


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("PROVENANCE.md", b"# Where they come from\nsee the site\nand ask\n", "its 2 lines"),
        ("weights.bin", b"\x00\x01\x02binary", "nor a text list of images"),
    ],
)
def test_data_root_that_is_a_file_says_so_in_one_line(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataSourceError) as info:
        scan(path)
    text = str(info.value)
    assert text.startswith(f"data.root={path} is a file, not a folder") and says in text
    assert "\n" not in text


def test_data_root_that_is_a_device_is_refused_unread(tmp_path: Path) -> None:
    os.symlink("/dev/zero", tmp_path / "zero")  # reading it as a list would never end
    with pytest.raises(DataSourceError, match="is not a folder.*character device"):
        scan(tmp_path / "zero")


def test_data_root_file_is_one_error_line_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from hydra.types import RunMode

    from aurora.run.cli import main

    readme = tmp_path / "README.md"
    readme.write_text("# notes\nnot a list of images\n")
    overrides = ["debug=tiny", "data=folder", f"data.root={readme}", f"paths.cache_dir={tmp_path}"]
    assert main(compose_cfg("cluster", overrides), tmp_path / "run", {}, RunMode.RUN) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"error: data.root={readme} is a file, not a folder")
