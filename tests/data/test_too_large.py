"""Images too large to decode: refused from their header (``too large``) before any pixel array."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose_cfg
from PIL import Image

from aurora.data.formats import DEFAULT_MAX_PIXELS, detect_format, image_size
from aurora.data.scan_cache import scan_cached
from aurora.data.sources import TOO_LARGE, ImageReadError, ImageRecord, read_image, scan
from aurora.infra.errors import SettingsError
from aurora.run import RunSettings, run_cluster

BOMB_SIDE = 30_000  # 900 Mpx: 0.9 GB as grey uint8 once decoded, from an 873 KB file
LIMIT_TEXT = f"data.max_pixels={DEFAULT_MAX_PIXELS}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A valid all-black grey PNG of side x side pixels, as
    ``cv2.imwrite('bomb.png', numpy.zeros((side, side), numpy.uint8))`` writes it, made without
    its pixels in memory or a pass of zlib over them: rows are compressed in blocks of equal
    bytes after a full flush (which resets the compressor), so one block's bytes repeat."""
    per = next(k for k in (100, 10, 5, 2, 1) if side % k == 0)  # rows per block
    block = bytes(side + 1) * per  # filter byte 0, then the row's pixels, per times
    packer = zlib.compressobj(6)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    same = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    header, first = first[:2], first[2:]  # the zlib header comes with the first output
    assert first == same  # the compressor starts afresh after a full flush
    check = 1
    for _ in range(side // per):
        check = zlib.adler32(block, check)
    final = b"\x01\x00\x00\xff\xff"  # an empty stored block marked last
    idat = header + first * (side // per) + final + struct.pack(">I", check)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    write_png_bomb(path)
    return path


@pytest.fixture
def bomb_sky(tiny_sky: Path, bomb: Path, tmp_path: Path) -> Path:
    """The session's tiny sky with the bomb beside its frames."""
    root = tmp_path / "sky"
    shutil.copytree(tiny_sky, root)
    shutil.copy(bomb, root / "bomb.png")
    return root


def test_the_bomb_is_what_the_issue_describes(bomb: Path) -> None:
    assert 800_000 < bomb.stat().st_size < 1_000_000
    data = bomb.read_bytes()
    assert image_size("png", data[:4096]) == (BOMB_SIDE, BOMB_SIDE)
    with pytest.raises(Image.DecompressionBombError, match="900000000 pixels"):
        Image.open(bomb)  # Pillow's own reading of the header agrees, and refuses it too
    # The writer makes valid PNGs: a small one decodes to its black pixels.
    small = bomb.parent / "small.png"
    write_png_bomb(small, 300)
    assert cv2.imread(str(small), cv2.IMREAD_UNCHANGED).tolist() == np.zeros((300, 300)).tolist()


def test_scan_rejects_the_bomb_by_its_header(bomb_sky: Path, tmp_path: Path) -> None:
    m = scan(bomb_sky, jobs=2)
    (rej,) = m.rejected
    assert rej.path == "bomb.png" and rej.reason == TOO_LARGE
    assert "30000x30000 = 900.0 Mpx" in rej.detail and LIMIT_TEXT in rej.detail
    assert len(m.records) == 24 and m.n_inputs == 25
    # The limit is a setting: a cached scan applies another limit to the same results.
    small = scan_cached(bomb_sky, tmp_path / "cache", max_pixels=64 * 64 - 1)
    assert {r.reason for r in small.rejected} == {TOO_LARGE} and len(small.rejected) == 25
    assert "data.max_pixels=4095" in small.rejected[-1].detail
    again = scan_cached(bomb_sky, tmp_path / "cache", max_pixels=64 * 64)
    assert [r.path for r in again.rejected] == ["bomb.png"] and len(again.records) == 24
    # Asked to read it anyway, the decoder refuses it before decoding.
    record = ImageRecord("bomb.png", str(bomb_sky / "bomb.png"), None, None, "x")
    with pytest.raises(ImageReadError, match="900.0 Mpx") as info:
        read_image(record, max_pixels=DEFAULT_MAX_PIXELS)
    assert info.value.reason == TOO_LARGE


_MEASURE = """
import json, sys
from aurora.data.sources import ImageRecord, ImageReadError, read_image, scan
from aurora.preprocess import PreprocessConfig, build_preprocessed


def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


root, cache = sys.argv[1], sys.argv[2]
before = peak_mb()
m = scan(root, jobs=2)
store = build_preprocessed(m, PreprocessConfig(size=32), cache, jobs=1, progress=False)
try:
    read_image(ImageRecord("bomb.png", root + "/bomb.png", None, None, "x"), max_pixels=10**8)
    read = "decoded"
except ImageReadError as e:
    read = e.reason
rejected = [r.reason for r in store.rejected]
print(json.dumps({"n": len(store), "rejected": rejected, "read": read, "mb": peak_mb() - before}))
"""


def test_scan_and_decode_of_the_bomb_allocate_nothing(bomb_sky: Path, tmp_path: Path) -> None:
    """Scan, preprocessing and a direct read of a folder with the bomb, in a fresh process:
    its peak memory grows by far less than the 900 MB one decode of the bomb would take."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb_sky), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == 24 and got["rejected"] == [TOO_LARGE] and got["read"] == TOO_LARGE
    assert got["mb"] < 300, f"peak memory grew by {got['mb']:.0f} MB"


def test_cluster_run_rejects_the_bomb(bomb_sky: Path, tiny_cache: Path, tmp_path: Path) -> None:
    overrides = ["debug=tiny", "data=folder", f"data.root={bomb_sky}"]
    cfg = compose_cfg("cluster", [*overrides, f"paths.cache_dir={tiny_cache}"])
    run_cluster(cfg, tmp_path / "run")
    with open(tmp_path / "run" / "rejected.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert rows["bomb.png"]["reason"] == TOO_LARGE and LIMIT_TEXT in rows["bomb.png"]["detail"]
    with open(tmp_path / "run" / "labels.csv", newline="") as f:
        labelled = [r["path"] for r in csv.DictReader(f)]
    assert "bomb.png" not in labelled and len(labelled) + len(rows) == 25
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rejected_by_reason"].get(TOO_LARGE) == 1


@pytest.mark.parametrize("value", [0, 1.5, "many", True])
def test_max_pixels_setting_is_checked(tiny_overrides: list[str], value: object) -> None:
    cfg = compose_cfg("cluster", [*tiny_overrides, f"data.max_pixels={value}"])
    with pytest.raises(SettingsError, match="data.max_pixels"):
        RunSettings.from_cfg(cfg)
    ok = compose_cfg("cluster", [*tiny_overrides, "data.max_pixels=2e8"])
    assert RunSettings.from_cfg(ok).data.max_pixels == 200_000_000


def _encoded(arr: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def _pillow(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def test_header_sizes_of_every_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (37, 53), np.uint8)
    rgb = rng.integers(0, 255, (37, 53, 3), np.uint8)
    files = {
        "a.png": _encoded(rgb, ".png"),
        "a.jpg": _encoded(rgb, ".jpg"),
        "a.bmp": _encoded(grey, ".bmp"),
        "a.pgm": _encoded(grey, ".pgm"),
        "a.ppm": _encoded(rgb, ".ppm"),
        "a.tif": _encoded(rgb, ".tif"),
        "big.tif": _pillow(rgb, "TIFF", big_tiff=True),
        "deflate.tif": _pillow(grey, "TIFF", compression="tiff_deflate"),
        "core.bmp": _pillow(grey, "BMP"),
        # Its frame header lies beyond the first 4096 bytes: read from the file.
        "exif.jpg": _pillow(rgb, "JPEG", exif=b"Exif\x00\x00" + bytes(60_000)),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert image_size(detect_format(data[:16]), data[:4096], str(path)) == (53, 37), name
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (37, 53), name
    assert image_size("jpeg", files["exif.jpg"][:4096]) is None  # head alone: not known
    assert image_size("png", b"\x89PNG\r\n\x1a\n" + bytes(8)) is None  # no IHDR
