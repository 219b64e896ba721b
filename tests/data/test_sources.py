"""Image sources: accounting over broken files, formats, timestamps, manifests, real data."""

from __future__ import annotations

import shutil
import zlib
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from aurora.data.sources import (
    DUPLICATE,
    EMPTY_FILE,
    MISSING,
    REASONS,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED_FORMAT,
    DataSourceError,
    ImageReadError,
    ImageRecord,
    Manifest,
    Rejection,
    load_images,
    parse_timestamp,
    read_image,
    scan,
    write_rejected_csv,
)

OK = "ok"


def _colour(h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth RGB test image (H, W, 3) uint8 with distinct channels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], -1).astype(np.uint8)


def _encode(rgb: np.ndarray, ext: str) -> bytes:
    """Encode an RGB (or grey) array with OpenCV, which expects BGR."""
    arr = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    assert ok
    return buf.tobytes()


def _pgm16(arr: np.ndarray) -> bytes:
    h, w = arr.shape
    return f"P5\n{w} {h}\n65535\n".encode() + arr.astype(">u2").tobytes()


@pytest.fixture
def broken_folder(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, np.ndarray]]:
    """A folder mixing good and deliberately broken inputs.

    Returns:
        (folder, expected outcome per input id, exact pixels for lossless good inputs).
    """
    root = tmp_path / "data"
    (root / "nested" / "deeper").mkdir(parents=True)
    rgb = _colour()
    rgb16 = (rgb.astype(np.uint16) * 257 + 3).astype(np.uint16)
    grey = rgb[:, :, 1].copy()
    grey16 = (np.arange(40 * 56, dtype=np.uint32).reshape(40, 56) * 29 % 65536).astype(np.uint16)
    jpg = _encode(rgb, ".jpg")
    flipped_jpg = _encode(np.ascontiguousarray(rgb[::-1]), ".jpg")
    png16 = _encode(rgb16, ".png")
    corrupt_png = bytearray(_encode(rgb, ".png"))
    corrupt_png[60:90] = bytes(30)  # inside IDAT: zlib data and CRC no longer match
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)])

    files: dict[str, tuple[bytes, str]] = {
        "good.jpg": (jpg, OK),
        "good16.png": (png16, OK),
        "grey.png": (_encode(grey, ".png"), OK),
        "rgba.png": (cv2.imencode(".png", rgba[:, :, [2, 1, 0, 3]])[1].tobytes(), OK),
        "good.tif": (_encode(rgb16, ".tiff"), OK),
        "good.bmp": (_encode(rgb, ".bmp"), OK),
        "site20200101000000.pgm": (_pgm16(grey16), OK),
        "jpeg_named.png": (flipped_jpg, OK),
        "trailing_after_eoi.jpg": (jpg + b"camera-metadata-after-eoi" * 4, OK),
        "no_extension_png": (_encode(255 - grey, ".png"), OK),
        "nested/deeper/deep.jpg": (jpg, DUPLICATE),  # same bytes as good.jpg
        "nested/empty.jpg": (b"", EMPTY_FILE),
        "truncated.jpg": (jpg[: len(jpg) // 2], TRUNCATED),
        "truncated.png": (png16[: len(png16) // 2], TRUNCATED),
        "truncated.pgm": (_pgm16(grey16)[:1000], TRUNCATED),
        "truncated.bmp": (_encode(rgb, ".bmp")[:500], TRUNCATED),
        "text.jpg": (b"this is not an image\n", UNSUPPORTED_FORMAT),
        "random.png": (np.random.default_rng(0).bytes(3000), UNSUPPORTED_FORMAT),
        "anim.gif": (b"GIF89a" + bytes(40), UNSUPPORTED_FORMAT),
        "fake.cdf": (b"\xcd\xf3\x00\x01" + bytes(200), UNREADABLE),
        "corrupt.png": (bytes(corrupt_png), UNREADABLE),
    }
    # Not inputs: metadata, hidden files, hidden folders, unknown non-image files.
    ignored = {
        "labels.csv": b"path,label\ngood.jpg,arc\n",
        "PROVENANCE.md": b"# provenance\n",
        "notes.txt": jpg,  # text extension: ignored even with image bytes
        ".hidden.jpg": b"junk",
        ".cache/x.jpg": jpg,
        "blob.dat": b"some binary data that is no image",
    }
    for name, (data, _) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name, data in ignored.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    expected = {name: outcome for name, (_, outcome) in files.items()}
    exact = {
        "good16.png": rgb16,
        "grey.png": grey,
        "rgba.png": rgb,
        "good.tif": rgb16,
        "good.bmp": rgb,
        "site20200101000000.pgm": grey16,
        "no_extension_png": 255 - grey,
    }
    return root, expected, exact


def _account(manifest: Manifest, jobs: int = 2) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Run the full chain: scan rejections plus decode rejections."""
    accepted: dict[str, np.ndarray] = {}
    rejected = {r.path: r.reason for r in manifest.rejected}
    for record, out in load_images(manifest.records, jobs=jobs):
        if isinstance(out, Rejection):
            assert out.path == record.id
            assert out.path not in rejected
            rejected[out.path] = out.reason
        else:
            assert record.id not in accepted
            accepted[record.id] = out
    return accepted, rejected


def test_accounting_over_broken_files(broken_folder) -> None:
    root, expected, exact = broken_folder
    manifest = scan(root, jobs=3)
    assert manifest.root == root
    assert [r.id for r in manifest.records] == sorted(r.id for r in manifest.records)
    assert manifest.n_inputs == len(expected)

    accepted, rejected = _account(manifest)
    assert manifest.duplicates == {"nested/deeper/deep.jpg": "good.jpg"}
    assert set(accepted) | set(rejected) | set(manifest.duplicates) == set(expected)
    assert not set(accepted) & set(rejected)
    assert len(accepted) + len(manifest.duplicates) + len(rejected) == manifest.n_inputs
    got = {**{k: OK for k in accepted}, **rejected, **dict.fromkeys(manifest.duplicates, DUPLICATE)}
    assert got == expected
    assert set(rejected.values()) <= set(REASONS)

    for name, arr in exact.items():
        np.testing.assert_array_equal(accepted[name], arr, err_msg=name)
    for name, arr in accepted.items():
        assert arr.dtype in (np.uint8, np.uint16), name
        assert arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3), name
    # JPEG is lossy: compare to the source within compression error, which also checks RGB order.
    jpeg_diff = np.abs(accepted["good.jpg"].astype(int) - _colour().astype(int)).mean()
    assert jpeg_diff < 4
    assert accepted["good16.png"].dtype == np.uint16
    assert accepted["site20200101000000.pgm"].shape == (40, 56)
    flipped_diff = np.abs(accepted["jpeg_named.png"].astype(int) - _colour()[::-1]).mean()
    assert flipped_diff < 4
    ts = {r.id: r.timestamp for r in manifest.records}
    assert ts["site20200101000000.pgm"] == datetime(2020, 1, 1, tzinfo=UTC)
    assert ts["good.jpg"] is None


def test_truncated_jpeg_never_decodes_with_grey_rows(broken_folder) -> None:
    root, _, _ = broken_folder
    path = root / "truncated.jpg"
    record = ImageRecord("truncated.jpg", str(path), None, None, "x")
    with pytest.raises(ImageReadError) as info:
        read_image(record)
    assert info.value.reason == TRUNCATED
    assert "truncated.jpg" in str(info.value)


def test_read_image_reasons_and_messages(tmp_path: Path) -> None:
    missing = ImageRecord("gone.jpg", str(tmp_path / "gone.jpg"), None, None, "x")
    with pytest.raises(ImageReadError) as info:
        read_image(missing)
    assert info.value.reason == MISSING and "gone.jpg" in str(info.value)
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageReadError) as info:
        read_image(ImageRecord("e.png", str(tmp_path / "e.png"), None, None, "x"))
    assert info.value.reason == EMPTY_FILE
    # A float TIFF decodes but is neither 8- nor 16-bit.
    ok, buf = cv2.imencode(".tiff", np.ones((8, 8), np.float32))
    assert ok
    (tmp_path / "f.tif").write_bytes(buf.tobytes())
    with pytest.raises(ImageReadError) as info:
        read_image(ImageRecord("f.tif", str(tmp_path / "f.tif"), None, None, "x"))
    assert info.value.reason == UNSUPPORTED_FORMAT and "float32" in str(info.value)


def test_rgb_order_against_pillow(tmp_path: Path) -> None:
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200  # pure red, written by Pillow (RGB native)
    rgb[:, :4, 2] = 90
    Image.fromarray(rgb).save(tmp_path / "red.png")
    Image.fromarray(rgb).save(tmp_path / "red.jpg", quality=95)
    manifest = scan(tmp_path)
    accepted, rejected = _account(manifest, jobs=1)
    assert not rejected
    np.testing.assert_array_equal(accepted["red.png"], rgb)
    assert np.abs(accepted["red.jpg"].astype(int) - rgb).mean() < 3


def test_load_images_preserves_order(tmp_path: Path) -> None:
    for i in range(30):
        grey = np.full((8, 8), i, np.uint8)
        data = _encode(grey, ".png") if i % 7 else b"junk"
        (tmp_path / f"{i:03d}.png").write_bytes(data)
    manifest = scan(tmp_path)
    # Scan already rejects the junk; feed it back in to check decode-time rejections too.
    records = list(manifest.records) + [
        ImageRecord(r.path, str(tmp_path / r.path), None, None, "") for r in manifest.rejected
    ]
    records.sort(key=lambda r: r.id)
    for jobs in (1, 4):
        out = list(load_images(records, jobs=jobs))
        assert [r.id for r, _ in out] == [r.id for r in records]
        for record, arr in out:
            i = int(record.id[:3])
            if i % 7:
                assert isinstance(arr, np.ndarray) and arr[0, 0] == i
            else:
                assert arr == Rejection(record.id, UNSUPPORTED_FORMAT)


def test_list_file_input(tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    (data / "a").mkdir(parents=True)
    other = tmp_path / "elsewhere"
    other.mkdir()
    jpg = _encode(_colour(), ".jpg")
    (data / "a" / "one.jpg").write_bytes(jpg)
    (data / "two.png").write_bytes(_encode(_colour(), ".png"))
    (other / "three.jpg").write_bytes(_encode(np.ascontiguousarray(_colour()[::-1]), ".jpg"))
    (data / "bad.jpg").write_bytes(b"")
    lst = data / "list.txt"
    lst.write_text(
        "# my selection\n\n"
        "a/one.jpg\n"
        "  two.png  \n"
        "a/../two.png\n"  # the same file again: counted once
        f"{other / 'three.jpg'}\n"
        "bad.jpg\n"
        "missing.jpg\n"
        "notes.md\n"  # listed explicitly: an input, rejected
    )
    (data / "notes.md").write_text("hello\n")
    manifest = scan(lst)
    assert manifest.root == tmp_path
    ids = [r.id for r in manifest.records]
    assert ids == ["elsewhere/three.jpg", "imgs/a/one.jpg", "imgs/two.png"]
    assert {r.path: r.reason for r in manifest.rejected} == {
        "imgs/bad.jpg": EMPTY_FILE,
        "imgs/missing.jpg": MISSING,
        "imgs/notes.md": UNSUPPORTED_FORMAT,
    }
    assert manifest.n_inputs == 6
    for r in manifest.records:
        assert Path(r.path) == manifest.root / r.id


def test_data_source_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="nowhere"):
        scan(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match="empty"):
        scan(empty)
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "labels.csv").write_text("path,label\n")
    (meta / "PROVENANCE.md").write_text("x\n")
    with pytest.raises(DataSourceError, match="meta"):
        scan(meta)
    binary_list = tmp_path / "list.txt"
    binary_list.write_bytes(b"\xff\xfe\x00\x81bad")
    with pytest.raises(DataSourceError, match="list.txt") as info:
        scan(binary_list)
    assert "\n" not in str(info.value)
    comments_only = tmp_path / "only_comments.txt"
    comments_only.write_text("# nothing\n\n")
    with pytest.raises(DataSourceError, match="only_comments"):
        scan(comments_only)


def test_manifest_key_and_round_trip(broken_folder, tmp_path: Path) -> None:
    root, _, _ = broken_folder
    m1 = scan(root)
    m2 = scan(root, jobs=1)
    assert m1.key == m2.key and len(m1.key) >= 16
    assert m1.records == m2.records

    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert scan(moved).key == m1.key  # the key does not depend on where the data lives

    (moved / "good.bmp").write_bytes(_encode(_colour()[::-1].copy(), ".bmp"))
    m3 = scan(moved)
    assert m3.key != m1.key
    changed = {r.id for r in m3.records} ^ {r.id for r in m1.records}
    assert not changed  # same ids, different content
    (moved / "extra.png").write_bytes(_encode(_colour(), ".png"))
    assert scan(moved).key not in (m1.key, m3.key)

    out = tmp_path / "manifest.csv"
    m1.write(out)
    back = Manifest.read(out)
    assert back.records == m1.records
    assert back.rejected == m1.rejected
    assert back.root == m1.root
    assert back.key == m1.key

    rej = tmp_path / "rejected.csv"
    write_rejected_csv(m1.rejected, rej)
    lines = rej.read_text().splitlines()
    assert lines[0] == "path,reason,detail"
    assert len(lines) == 1 + len(m1.rejected)


def test_scan_progress_bar(broken_folder, capsys, monkeypatch) -> None:
    root, expected, _ = broken_folder
    # Bars are drawn on a terminal only (aurora.infra.logs.show_progress): as if this were one.
    monkeypatch.setattr("aurora.data.sources.show_progress", bool, raising=False)
    manifest = scan(root, progress=True)
    assert manifest.n_inputs == len(expected)
    assert "scan" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("LYR-Sony-271119_224936-ql_PIL_default.jpg", datetime(2019, 11, 27, 22, 49, 36)),
        ("LYR-Sony-311219_012338-ql.jpg", datetime(2019, 12, 31, 1, 23, 38)),
        ("LYR-Sony-111220_200933.jpg", datetime(2020, 12, 11, 20, 9, 33)),
        ("LYR-Sony-20171126_090010.jpg", datetime(2017, 11, 26, 9, 0, 10)),
        ("some/folder/LYR-Sony-20180206_090020.jpg", datetime(2018, 2, 6, 9, 0, 20)),
        ("20140218224110.jpg", datetime(2014, 2, 18, 22, 41, 10)),
        ("gako20161013123527.pgm", datetime(2016, 10, 13, 12, 35, 27)),
        ("rank20200104000000.pgm", datetime(2020, 1, 4)),
        ("thg_l1_asf_gako_2011010617_v01.cdf", datetime(2011, 1, 6, 17)),
        ("thg_l1_asf_gako_2011010617_v01.cdf#0003", datetime(2011, 1, 6, 17)),
        ("cam_20240105-231500_x.png", datetime(2024, 1, 5, 23, 15)),
        ("LYR-Sony-311319_012338-ql.jpg", None),  # month 13
        ("LYR-Sony-20171326_090010.jpg", None),
        ("20141301000000.jpg", None),
        ("gako20161013253527.pgm", None),  # hour 25
        ("LYR-Sony-300221_000000.jpg", None),  # 30 February
        ("image_0001.jpg", None),
        ("201401010620521.jpg", None),  # 15 digits: not a 14-digit stamp
        ("", None),
    ],
)
def test_parse_timestamp(name: str, expected: datetime | None) -> None:
    got = parse_timestamp(name)
    if expected is None:
        assert got is None
    else:
        assert got == expected.replace(tzinfo=UTC)
        assert got.tzinfo is not None and got.utcoffset().total_seconds() == 0


# --------------------------------------------------------------------------- real data


@pytest.fixture
def shared_data() -> Path:
    path = ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is absent")
    return path


def test_real_timestamps(shared_data: Path) -> None:
    names = [
        p
        for p in shared_data.rglob("*")
        if p.suffix.lower() in (".jpg", ".pgm", ".cdf") and p.is_file()
    ]
    assert len(names) >= 30
    for p in names:
        ts = parse_timestamp(p.name)
        assert ts is not None, p.name
        assert datetime(2010, 1, 1, tzinfo=UTC) < ts < datetime(2025, 1, 1, tzinfo=UTC)
        # the name's digits reappear in the parsed time (checks day/month/year order)
        assert ts.strftime("%H%M") in p.name or p.suffix == ".cdf", p.name


def test_themis_pgm_and_cdf(shared_data: Path) -> None:
    import cdflib

    folder = shared_data / "themis_asi_samples"
    manifest = scan(folder)
    assert not manifest.rejected
    pgm = [r for r in manifest.records if r.id.endswith(".pgm")]
    cdf = [r for r in manifest.records if r.frame is not None]
    assert len(pgm) == 2 and len(cdf) == 23
    assert manifest.n_inputs == 25

    for record in pgm:
        arr = read_image(record)
        assert arr.shape == (256, 256) and arr.dtype == np.uint16
        assert arr.max() > 255  # really 16-bit, not squeezed to 8
        with Image.open(record.path) as im:
            np.testing.assert_array_equal(arr, np.asarray(im))

    assert [r.frame for r in cdf] == list(range(23))
    assert cdf[0].id == "thg_l1_asf_gako_2011010617_v01.cdf#0000"
    assert len({r.content_hash for r in cdf}) == 1
    times = [r.timestamp for r in cdf]
    assert all(t is not None for t in times)
    assert all(a < b for a, b in zip(times, times[1:], strict=False))
    assert datetime(2011, 1, 6, 17, tzinfo=UTC) <= times[0]
    assert times[-1] < datetime(2011, 1, 6, 17, 1, 7, tzinfo=UTC)

    with cdflib.CDF(cdf[0].path) as direct:
        cube = direct.varget("thg_asf_gako")
    accepted, rejected = _account(Manifest(folder, cdf, []), jobs=2)
    assert not rejected
    for i, record in enumerate(cdf):
        arr = accepted[record.id]
        assert arr.shape == (256, 256) and arr.dtype == np.uint16
        np.testing.assert_array_equal(arr, cube[i])


@pytest.mark.parametrize(
    ("folder", "n", "shapes"),
    [
        ("kho_sony_samples", 3, {(480, 480, 3), (2832, 2832, 3)}),
        ("nipr_lyr_allsky_2014", 16, {(480, 720, 3)}),
        ("kho_sony_cloudiness", 11, {(504, 480, 3), (480, 480, 3)}),
    ],
)
def test_real_colour_folders(shared_data: Path, folder: str, n: int, shapes: set) -> None:
    manifest = scan(shared_data / folder)
    assert len(manifest.records) == n and not manifest.rejected  # labels.csv, PROVENANCE.md ignored
    assert all(r.timestamp is not None for r in manifest.records)
    accepted, rejected = _account(manifest, jobs=2)
    assert not rejected
    assert {a.shape for a in accepted.values()} == shapes
    # Compare one image per folder to Pillow's RGB decode (checks channel order).
    record = min(manifest.records, key=lambda r: Path(r.path).stat().st_size)
    with Image.open(record.path) as im:
        ref = np.asarray(im.convert("RGB")).astype(int)
    arr = accepted[record.id]
    assert arr.dtype == np.uint8
    assert np.abs(arr.astype(int) - ref).mean() < 1.0
    assert np.abs(arr[..., ::-1].astype(int) - ref).mean() > np.abs(arr.astype(int) - ref).mean()


def test_rejected_reason_names_are_the_documented_ones() -> None:
    assert REASONS == (
        "unreadable",
        "empty file",
        "truncated",
        "unsupported format",
        "missing",
        "dangling link",
        "symlink loop",
        "not a file",
        "too large",
    )
    e = ImageReadError(TRUNCATED, "x.jpg: truncated JPEG")
    assert e.reason == TRUNCATED and str(e) == "x.jpg: truncated JPEG"


def test_truncated_cdf_accounts_for_every_frame(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "themis_asi_samples" / "thg_l1_asf_gako_2011010617_v01.cdf"
    full = {r.frame: read_image(r) for r in scan(src).records}
    data = src.read_bytes()
    (tmp_path / "cut.cdf").write_bytes(data[: len(data) // 2])
    manifest = scan(tmp_path)
    accepted, rejected = _account(manifest)
    frames = {r.id: r.frame for r in manifest.records}
    assert len(accepted) + len(rejected) == manifest.n_inputs == 23
    assert rejected and set(rejected.values()) == {UNREADABLE}
    assert all(k.startswith("cut.cdf#") for k in rejected)
    for rid, arr in accepted.items():
        np.testing.assert_array_equal(arr, full[frames[rid]])


# --------------------------------------------------------------------------- THEMIS stream0

_S0_TIMES = ["2014-03-10 06:00:00.063119", "2014-03-10 06:00:03.042202", None]


def _stream0(frames: list[np.ndarray], times: list[str | None]) -> bytes:
    """A THEMIS stream0 file as UCalgary writes it: PGM frames, each with a metadata header."""
    out = []
    for i, (arr, t) in enumerate(zip(frames, times, strict=True)):
        out.append(b"P5\n")
        if i == 0:
            out.append(b'#"Site unique ID" test\n#"Imager unique ID" themis99\n')
        if t is not None:
            out.append(f'#"Image request start" {t} UTC\n'.encode())
        out.append(b'#"Exposure plus initial readout"    985.07 ms\n256 256\n65535\n')
        out.append(arr.astype(">u2").tobytes())
    return b"".join(out)


def _s0_frames(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3000, 65536, (256, 256), dtype=np.uint16) for _ in range(n)]


def _s0_time(t: str | None) -> datetime | None:
    return None if t is None else datetime.fromisoformat(t).replace(tzinfo=UTC)


def _listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_stream0_files_give_one_record_per_frame(tmp_path: Path) -> None:
    import bz2
    import gzip

    frames = _s0_frames()
    raw = _stream0(frames, _S0_TIMES)
    root = tmp_path / "s0"
    root.mkdir()
    files = {
        "plain_20140310_0600_test_themis99_full.pgm": raw,
        # Different header times (mtime): the same frames, not the same bytes (no duplicates).
        "g.pgm.gz": gzip.compress(raw, mtime=1),
        "b.pgm.bz2": bz2.compress(raw),
        "gzip_named_plain.pgm": gzip.compress(raw, mtime=2),  # content decides, not the name
        "UPPER.PGM.GZ": gzip.compress(raw, mtime=3),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    before = _listing(root)
    manifest = scan(root, jobs=2)
    assert not manifest.rejected
    assert manifest.n_inputs == 3 * len(files)
    for name in files:
        recs = [r for r in manifest.records if r.id.split("#")[0] == name]
        assert [r.id for r in recs] == [f"{name}#{i:04d}" for i in range(3)]
        assert [r.frame for r in recs] == [0, 1, 2]
        assert [r.timestamp for r in recs] == [_s0_time(t) for t in _S0_TIMES]
    accepted, rejected = _account(manifest, jobs=3)
    assert not rejected and len(accepted) == manifest.n_inputs
    for rid, arr in accepted.items():
        assert arr.dtype == np.uint16 and arr.flags.writeable
        np.testing.assert_array_equal(arr, frames[int(rid[-4:])], err_msg=rid)
    assert _listing(root) == before  # the reader's name trick writes nothing beside the data

    out = tmp_path / "manifest.csv"
    manifest.write(out)
    back = Manifest.read(out)
    assert back.records == manifest.records and back.root == manifest.root


def test_stream0_broken_files_are_rejections(tmp_path: Path) -> None:
    import gzip

    frames = _s0_frames()
    raw = _stream0(frames, _S0_TIMES)
    gz = gzip.compress(raw)
    corrupt = bytearray(gz)
    corrupt[len(gz) // 2 : len(gz) // 2 + 64] = bytes(64)
    small = [np.full((16, 16), 7, np.uint8)] * 2
    two_small = b"".join(b"P5\n16 16\n255\n" + a.tobytes() for a in small)
    single = _pgm16(frames[0][:64, :64])
    header_single = _stream0(frames[:1], _S0_TIMES[1:2])  # one frame: an ordinary image
    # A file cut short keeps its complete frames: {OK, TRUNCATED}.
    files: dict[str, tuple[bytes, str | set[str]]] = {
        "good.pgm.gz": (gz, OK),
        "cut.pgm.gz": (gz[: len(gz) // 2], {OK, TRUNCATED}),
        "cut_early.pgm.gz": (gz[:40], TRUNCATED),  # not one complete frame: the whole file
        "corrupt.pgm.gz": (bytes(corrupt), UNREADABLE),
        "cut_plain.pgm": (raw[: len(raw) - 50_000], {OK, TRUNCATED}),  # the last frame is cut
        "not_gzip.pgm.gz": (b"\x1f\x8b" + bytes(100), UNREADABLE),
        "single_no_metadata.pgm.gz": (gzip.compress(single), UNSUPPORTED_FORMAT),
        "single_256_no_metadata.pgm.gz": (gzip.compress(_pgm16(frames[0])), UNSUPPORTED_FORMAT),
        "two_small_frames.pgm": (two_small, UNSUPPORTED_FORMAT),
        "photo.jpg.gz": (gzip.compress(_encode(_colour(), ".jpg")), UNSUPPORTED_FORMAT),
        "empty.pgm.gz": (b"", EMPTY_FILE),
        "header_single.pgm": (header_single, OK),
    }
    ignored = {"table.csv.gz": gzip.compress(b"path,time\n"), "notes.gz": gzip.compress(b"x")}
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    for name, data in ignored.items():
        (tmp_path / name).write_bytes(data)
    manifest = scan(tmp_path)
    accepted, rejected = _account(manifest)
    assert manifest.n_inputs == len(accepted) + len(rejected)
    by_file: dict[str, set[str]] = {}
    for rid in accepted:
        by_file.setdefault(rid.split("#")[0], set()).add(OK)
    for rid, reason in rejected.items():
        by_file.setdefault(rid.split("#")[0], set()).add(reason)
    assert by_file == {
        name: outcome if isinstance(outcome, set) else {outcome}
        for name, (_, outcome) in files.items()
    }
    assert sorted(r for r in accepted if r.startswith("good")) == [
        f"good.pgm.gz#{i:04d}" for i in range(3)
    ]
    # A single plain frame keeps its plain id; its time comes from its header, not its name.
    record = next(r for r in manifest.records if r.id == "header_single.pgm")
    assert record.frame is None and record.timestamp == _s0_time(_S0_TIMES[1])
    np.testing.assert_array_equal(accepted["header_single.pgm"], frames[0])
    # The cut frame is rejected by its id, saying how many bytes are missing; the frames
    # before it are the file's own.
    cut = {r.path: r for r in manifest.rejected if r.path.startswith("cut_plain.pgm")}
    assert list(cut) == ["cut_plain.pgm#0002"]
    assert (
        "holds 81072 of 131072 pixel bytes (50000 bytes missing" in cut["cut_plain.pgm#0002"].detail
    )
    for i in (0, 1):
        np.testing.assert_array_equal(accepted[f"cut_plain.pgm#{i:04d}"], frames[i])
    # Messages name the file and say what is wrong.
    cut_id = next(r for r in rejected if r.startswith("cut.pgm.gz#"))
    rec = ImageRecord(cut_id, str(tmp_path / "cut.pgm.gz"), int(cut_id[-4:]), None, "x")
    with pytest.raises(ImageReadError) as info:
        read_image(rec)
    assert info.value.reason == TRUNCATED and "cut.pgm.gz" in str(info.value)
    assert "bytes missing" in str(info.value)
    rec = ImageRecord("good.pgm.gz#0007", str(tmp_path / "good.pgm.gz"), 7, None, "x")
    with pytest.raises(ImageReadError, match="no frame 7") as info:
        read_image(rec)
    rec = ImageRecord("good.pgm.gz", str(tmp_path / "good.pgm.gz"), None, None, "x")
    with pytest.raises(ImageReadError, match="stream0 frames") as info:
        read_image(rec)
    assert info.value.reason == UNSUPPORTED_FORMAT


def test_stream0_file_is_decoded_once(tmp_path: Path, monkeypatch) -> None:
    import gzip

    from aurora.data.themis import stream0

    calls: list[str] = []
    real = stream0._read_all

    def counting(path, compression):
        calls.append(path)
        return real(path, compression)

    monkeypatch.setattr(stream0, "_read_all", counting)
    for i in range(3):
        raw = _stream0(_s0_frames(seed=10 + i), _S0_TIMES)
        (tmp_path / f"f{i}.pgm.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    manifest = scan(tmp_path, jobs=3)
    accepted, rejected = _account(manifest, jobs=4)
    assert len(accepted) == 9 and not rejected
    assert len(calls) == 3  # scan decoded each file once; reading the frames reused it


def _naive_stream0(data: bytes) -> list[np.ndarray]:
    """Walk a stream0 PGM byte by byte: 'P5', header lines up to '65535', 256*256*2 bytes."""
    out = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 3] == b"P5\n"
        pos += 3
        while True:
            end = data.index(b"\n", pos)
            line, pos = data[pos:end], end + 1
            if line == b"65535":
                break
        out.append(np.frombuffer(data[pos : pos + 131072], ">u2").reshape(256, 256))
        pos += 131072
    return out


def test_themis_stream0_real_against_frames_csv(shared_data: Path, tmp_path: Path) -> None:
    import csv
    import gzip

    folder = shared_data / "themis_stream0_gill"
    with open(folder / "frames.csv", newline="") as f:
        truth = {f"{r['file']}#{int(r['frame_in_file']):04d}": r for r in csv.DictReader(f)}
    assert len(truth) == 120
    manifest = scan(folder)
    assert not manifest.rejected
    assert [r.id for r in manifest.records] == sorted(truth)
    for r in manifest.records:
        want = datetime.fromisoformat(truth[r.id]["image_request_start_utc"].removesuffix(" UTC"))
        assert r.timestamp == want.replace(tzinfo=UTC), r.id
    accepted, rejected = _account(manifest, jobs=2)
    assert not rejected and len(accepted) == 120 == manifest.n_inputs
    for rid, arr in accepted.items():
        t = truth[rid]
        assert arr.shape == (int(t["height"]), int(t["width"])) and arr.dtype == np.uint16
        assert (int(arr.min()), int(arr.max())) == (int(t["min"]), int(t["max"])), rid
    # Pixels equal a byte-by-byte walk of the file (plain and gzip).
    for name in ("20140310_0605_gill_themis19_full.pgm", "20140310_0600_gill_themis19_full.pgm.gz"):
        data = (folder / name).read_bytes()
        naive = _naive_stream0(gzip.decompress(data) if name.endswith(".gz") else data)
        assert len(naive) == 20
        for i, ref in enumerate(naive):
            np.testing.assert_array_equal(accepted[f"{name}#{i:04d}"], ref)


def test_themis_stream0_cut_keeps_its_good_frames(shared_data: Path, tmp_path: Path) -> None:
    """A download cut short keeps its complete frames (equal to the whole file's) and rejects
    the frame it stops in by id, saying how many bytes are missing."""
    import gzip

    folder = shared_data / "themis_stream0_gill"
    name = "20140310_0601_gill_themis19_full.pgm.gz"
    src = (folder / name).read_bytes()
    whole = _naive_stream0(gzip.decompress(src))
    plain = (folder / "20140310_0605_gill_themis19_full.pgm").read_bytes()
    (tmp_path / "cut.pgm.gz").write_bytes(src[: len(src) * 2 // 3])
    (tmp_path / "cut_plain.pgm").write_bytes(plain[: len(plain) - 1000])
    shutil.copy(folder / "20140310_0602_gill_themis19_full.pgm.gz", tmp_path)
    cut = scan(tmp_path)
    assert len(cut.rejected) == 2 and {r.reason for r in cut.rejected} == {TRUNCATED}
    gz_cut, plain_cut = cut.rejected
    assert plain_cut.path == "cut_plain.pgm#0019"
    assert "holds 130072 of 131072 pixel bytes (1000 bytes missing" in plain_cut.detail
    k = int(gz_cut.path.removeprefix("cut.pgm.gz#"))
    assert 0 < k < 20 and "bytes missing" in gz_cut.detail
    ids = [r.id for r in cut.records]
    assert ids == sorted(
        [f"cut.pgm.gz#{i:04d}" for i in range(k)]
        + [f"cut_plain.pgm#{i:04d}" for i in range(19)]
        + [f"20140310_0602_gill_themis19_full.pgm.gz#{i:04d}" for i in range(20)]
    )
    assert cut.n_inputs == k + 1 + 20 + 20
    accepted, rejected = _account(cut)
    assert set(rejected) == {gz_cut.path, plain_cut.path}
    for i in range(k):
        np.testing.assert_array_equal(accepted[f"cut.pgm.gz#{i:04d}"], whole[i])
    # Cut exactly after a frame: the compressed stream has no end; the next frame is the cut.
    raw = gzip.decompress(src)
    frame_end = 0
    for _ in range(3):  # past the header ('65535' ends it) and the raster of frames 0 to 2
        frame_end = raw.index(b"\n65535\n", frame_end) + 7 + 131072
    packer = zlib.compressobj(wbits=31)  # gzip, flushed but never finished
    (tmp_path / "cut.pgm.gz").write_bytes(
        packer.compress(raw[:frame_end]) + packer.flush(zlib.Z_SYNC_FLUSH)
    )
    again = scan(tmp_path)
    by_id = {r.path: r for r in again.rejected}
    assert by_id["cut.pgm.gz#0003"].reason == TRUNCATED
    assert "no end-of-stream marker" in by_id["cut.pgm.gz#0003"].detail
    assert [r.id for r in again.records if r.id.startswith("cut.pgm.gz")] == [
        f"cut.pgm.gz#{i:04d}" for i in range(3)
    ]


def test_stream0_frames_read_in_a_forked_worker(tmp_path: Path) -> None:
    import gzip
    import multiprocessing as mp

    from aurora.data.themis import stream0

    frames = _s0_frames()
    path = tmp_path / "f.pgm.gz"
    path.write_bytes(gzip.compress(_stream0(frames, _S0_TIMES), compresslevel=1))
    record = ImageRecord("f.pgm.gz#0001", str(path), 1, None, "x")
    # As if another thread of the parent were inside the cache when the pool forks.
    with stream0._cache_lock, mp.get_context("fork").Pool(1) as pool:
        arr = pool.apply_async(read_image, (record,)).get(timeout=60)
    np.testing.assert_array_equal(arr, frames[1])
