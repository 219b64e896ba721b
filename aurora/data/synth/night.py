"""A synthetic night on disk: frames named by their UTC time, ``labels.csv`` and ``events.csv``.

``python -m aurora.data.synth DIR --night [--duration 6h --cadence 60s --seed 0 --size 480
--start 2024-12-01T21:00:00 --onsets N --gap 3h30m+20m]`` writes into ``DIR``:

- one JPEG per frame, ``synth_YYYYMMDD_HHMMSS.jpg`` (``--prefix`` changes ``synth_``), the
  UTC time of the frame (:func:`aurora.data.timestamps.parse_timestamp` reads it);
- ``labels.csv``, one row per written frame, columns :data:`NIGHT_COLUMNS`:
  ``path,time,morphology,event,phase,onset,active,level,circle_x,circle_y,circle_r``;
  ``onset`` is 1 on the first frame of an onset event only, ``level`` the auroral brightness;
- ``events.csv``, one row per injected event, columns :data:`EVENT_COLUMNS`:
  ``event,start,end,duration_s,morphology,phase,onset,active,frames``; ``start`` inclusive,
  ``end`` exclusive (ISO 8601 UTC with ``Z``); the events tile the night; ``frames`` is the
  number of frames written (a data gap removes some; a boundary may fall inside the gap).

Times in both tables are ``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import argparse
import csv
import re
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import cv2

from aurora.data.decode import default_jobs
from aurora.data.synth.frames import encode_jpeg, worker_init
from aurora.data.synth.schedule import (
    NIGHT_CADENCE_S,
    NIGHT_DURATION_S,
    NIGHT_START,
    NightEvent,
    NightSpec,
    event_of_slots,
    plan_events,
)
from aurora.data.synth.sequence import NightCamera, render_night_frame
from aurora.data.synth.truth import SynthError
from aurora.infra.atomic import atomic_write_text

NIGHT_PREFIX = "synth_"
NIGHT_COLUMNS: tuple[str, ...] = (
    "path",
    "time",
    "morphology",
    "event",
    "phase",
    "onset",
    "active",
    "level",
    "circle_x",
    "circle_y",
    "circle_r",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event",
    "start",
    "end",
    "duration_s",
    "morphology",
    "phase",
    "onset",
    "active",
    "frames",
)


def iso(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` of a UTC time (the format of both truth tables)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def night_frame_name(when: datetime, prefix: str = NIGHT_PREFIX) -> str:
    """``{prefix}YYYYMMDD_HHMMSS.jpg`` for a UTC time."""
    return f"{prefix}{when.astimezone(UTC):%Y%m%d_%H%M%S}.jpg"


def _frame_job(args: tuple[str, str, NightCamera, NightEvent, int, datetime, int]) -> str:
    """Render, encode and write one frame; its auroral level as text."""
    out_dir, name, camera, event, slot, when, cadence = args
    img, level = render_night_frame(camera, event, slot, when, cadence)
    Path(out_dir, name).write_bytes(encode_jpeg(img))
    return f"{level:.4f}"


def _render_all(tasks: list, jobs: int) -> list[str]:
    """Run :func:`_frame_job` over ``tasks``, in this process or in ``jobs`` workers."""
    if jobs <= 1:
        old = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return [_frame_job(t) for t in tasks]
        finally:
            cv2.setNumThreads(old)
    with ProcessPoolExecutor(jobs, initializer=worker_init) as pool:
        return list(pool.map(_frame_job, tasks, chunksize=max(1, len(tasks) // (jobs * 8))))


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    """CSV text of ``rows`` (values without commas) in ``columns`` order."""
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def _event_rows(spec: NightSpec, events: list[NightEvent], written: list[int]) -> list[dict]:
    """The ``events.csv`` rows."""
    rows = []
    for e in events:
        rows.append(
            {
                "event": str(e.index),
                "start": iso(spec.slot_time(e.first)),
                "end": iso(spec.slot_time(e.stop)),
                "duration_s": str((e.stop - e.first) * spec.cadence_s),
                "morphology": e.morphology,
                "phase": e.phase,
                "onset": str(int(e.onset)),
                "active": str(int(e.active)),
                "frames": str(sum(e.first <= k < e.stop for k in written)),
            }
        )
    return rows


def generate_night(
    out_dir: str | Path,
    spec: NightSpec | None = None,
    *,
    size: int = 480,
    prefix: str = NIGHT_PREFIX,
    jobs: int | None = None,
) -> tuple[Path, Path]:
    """Write a synthetic night (frames, ``labels.csv``, ``events.csv``) into ``out_dir``.

    Args:
        out_dir: destination folder (created if missing).
        spec: the night (default :class:`NightSpec()`: 6 h from 2024-12-01 21:00 UT, one frame
            a minute, 4 onsets); the same spec and size give byte-identical files.
        size: image side in pixels (>= 32).
        prefix: file name prefix (letters, digits, ``-``; e.g. ``LYR-Sony-`` names KHO).
        jobs: worker processes (default: all CPUs); 1 renders in this process.

    Returns:
        Paths of the written ``labels.csv`` (per frame) and ``events.csv`` (per event).
    """
    spec = spec if spec is not None else NightSpec()
    if not isinstance(size, int) or size < 32:
        raise SynthError(f"image size must be an integer of at least 32 px, got {size!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*_?", prefix):
        raise SynthError(f"file prefix must be letters, digits and '-' (then '_'), got {prefix!r}")
    events = plan_events(spec)
    camera = NightCamera(spec.seed, size)
    circle = camera.circle
    of_slot = event_of_slots(events, spec.n_slots)
    slots = spec.frame_slots()
    names = [night_frame_name(spec.slot_time(k), prefix) for k in slots]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [
        (str(out), name, camera, events[of_slot[k]], k, spec.slot_time(k), spec.cadence_s)
        for k, name in zip(slots, names, strict=True)
    ]
    levels = _render_all(tasks, min(jobs or default_jobs(), len(tasks)))
    rows = []
    for k, name, level in zip(slots, names, levels, strict=True):
        e = events[of_slot[k]]
        rows.append(
            {
                "path": name,
                "time": iso(spec.slot_time(k)),
                "morphology": e.morphology,
                "event": str(e.index),
                "phase": e.phase,
                "onset": str(int(e.onset and k == e.first)),
                "active": str(int(e.active)),
                "level": level,
                "circle_x": f"{circle.x:.2f}",
                "circle_y": f"{circle.y:.2f}",
                "circle_r": f"{circle.r:.2f}",
            }
        )
    labels, events_csv = out / "labels.csv", out / "events.csv"
    atomic_write_text(events_csv, _csv(_event_rows(spec, events, slots), EVENT_COLUMNS))
    atomic_write_text(labels, _csv(rows, NIGHT_COLUMNS))
    return labels, events_csv


def read_events(path: str | Path) -> list[dict[str, object]]:
    """Rows of an ``events.csv``: ``start``/``end`` as UTC datetimes, counts and flags as int."""
    out: list[dict[str, object]] = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, object] = dict(r)
            for key in ("start", "end"):
                row[key] = datetime.strptime(r[key], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            for key in ("event", "duration_s", "onset", "active", "frames"):
                row[key] = int(r[key])
            out.append(row)
    return out


_SPAN = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_span(text: str, what: str) -> int:
    """Whole seconds of a time span such as ``6h``, ``1h30m``, ``90m``, ``45s`` or ``60``.

    Raises:
        SynthError: the text is no span, or not a whole number of seconds.
    """
    m = _SPAN.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise SynthError(f"{what} {text!r} is not a time span such as 6h, 1h30m, 90m, 45s or 60")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mi * 60 + s
    if total != int(total):
        raise SynthError(f"{what} {text!r} is not a whole number of seconds")
    return int(total)


def add_night_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--night`` options of the command line."""
    g = p.add_argument_group("night (time-sequence mode)")
    g.add_argument("--night", action="store_true", help="write a night of frames with events")
    g.add_argument("--duration", default="6h", help="length of the night (6h, 90m, ...)")
    g.add_argument("--cadence", default="60s", help="time between frames (60s, 1m, 30, ...)")
    start = NIGHT_START.strftime("%Y-%m-%dT%H:%M:%S")
    g.add_argument("--start", default=start, help=f"UTC time of the first frame ({start})")
    g.add_argument("--onsets", type=int, default=None, help="onsets (default one per 90 min)")
    g.add_argument("--gap", default=None, help="leave out frames: AFTER+LENGTH, e.g. 3h30m+20m")
    g.add_argument("--prefix", default=NIGHT_PREFIX, help="file name prefix (synth_)")


def spec_from_args(a: argparse.Namespace) -> NightSpec:
    """The :class:`NightSpec` of parsed command-line arguments (SynthError if invalid)."""
    try:
        start = datetime.strptime(a.start, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise SynthError(f"start {a.start!r} is not a UTC time YYYY-MM-DDTHH:MM:SS") from None
    gap = None
    if a.gap is not None:
        after, plus, length = a.gap.partition("+")
        if not plus:
            raise SynthError(f"gap {a.gap!r} is not AFTER+LENGTH, e.g. 3h30m+20m")
        gap = (parse_span(after, "gap start"), parse_span(length, "gap length"))
    return NightSpec(
        seed=a.seed,
        start=start,
        duration_s=parse_span(a.duration, "duration"),
        cadence_s=parse_span(a.cadence, "cadence"),
        onsets=a.onsets,
        gap=gap,
    )


def run_night(a: argparse.Namespace) -> str:
    """Write the night the arguments describe; the line to print."""
    spec = spec_from_args(a)
    labels, events_csv = generate_night(a.out_dir, spec, size=a.size, prefix=a.prefix, jobs=a.jobs)
    with open(labels) as f:
        n = sum(1 for _ in f) - 1
    with open(events_csv) as f:
        rows = list(csv.DictReader(f))
    onsets = sum(r["onset"] == "1" for r in rows)
    return f"wrote {n} frames, {len(rows)} events ({onsets} onsets): {labels} and {events_csv}"


__all__ = [
    "EVENT_COLUMNS",
    "NIGHT_CADENCE_S",
    "NIGHT_COLUMNS",
    "NIGHT_DURATION_S",
    "NIGHT_PREFIX",
    "add_night_arguments",
    "generate_night",
    "iso",
    "night_frame_name",
    "parse_span",
    "read_events",
    "run_night",
    "spec_from_args",
]
