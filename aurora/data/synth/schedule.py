"""The plan of a synthetic night: its frame times and the auroral events that tile it.

A night is a run of substorm-like cycles: ``quiet`` (diffuse or multiple arcs) -> ``growth``
(an arc brightening slowly) -> ``onset`` (a sudden brightening into a vortex, a corona or
patchy aurora, with fast motion and flicker) -> sometimes ``expansion`` (a second active form,
no new brightening) -> ``recovery`` (dimmer pulsating patches, or diffuse glow). Neighbouring
events always differ in morphology. Each event starts on a frame time; an event holds the
frames from its ``start`` (inclusive) to its ``end`` (exclusive), so the events tile
``[night start, night start + duration)`` without overlap.

A data gap leaves frames out but does not change the events (a boundary may fall inside it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from aurora.data.synth.truth import MORPHOLOGIES, SynthError

NIGHT_START = datetime(2024, 12, 1, 21, 0, 0, tzinfo=UTC)  # new Moon; crosses UT midnight
NIGHT_DURATION_S = 6 * 3600
NIGHT_CADENCE_S = 60
ONSET_EVERY_S = 90 * 60  # default number of onsets: one per 90 min of night
MIN_EVENT_S = 300  # events last several minutes at least ...
MIN_EVENT_FRAMES = 4  # ... and several frames
MAX_GAP_S = 2 * 3600  # a longer gap would split the night (the pipeline's nights.gap)
PHASES: tuple[str, ...] = ("quiet", "growth", "onset", "expansion", "recovery")
# Relative durations of each phase (uniform range, minutes); scaled so the night is filled.
_PHASE_MINUTES: dict[str, tuple[float, float]] = {
    "quiet": (20.0, 50.0),
    "growth": (10.0, 35.0),
    "onset": (8.0, 15.0),
    "expansion": (6.0, 15.0),
    "recovery": (15.0, 40.0),
}
_PHASE_FORMS: dict[str, dict[str, float]] = {
    "quiet": {"diffuse": 0.65, "multiple_arcs": 0.35},
    "growth": {"single_arc": 0.6, "multiple_arcs": 0.4},
    "onset": {"vortex": 0.4, "corona": 0.35, "patchy": 0.25},
    "expansion": {"corona": 0.5, "vortex": 0.5},
    "recovery": {"patchy": 0.8, "diffuse": 0.2},
}
EXPANSION_PROB = 0.4


@dataclass(frozen=True)
class NightEvent:
    """One event of the night: one morphology from frame ``first`` to frame ``stop`` (excl.).

    ``level0`` / ``level1`` are the auroral brightness at the start and end of the event (the
    scale of ``render_sky``'s level); ``onset`` is 1 for a breakup-like sudden brightening,
    ``active`` for fast-changing phases (onset and expansion).
    """

    index: int
    phase: str
    morphology: str
    first: int
    stop: int
    level0: float
    level1: float
    seed: int

    @property
    def onset(self) -> bool:
        """A breakup-like onset: the event starts with a sudden brightening."""
        return self.phase == "onset"

    @property
    def active(self) -> bool:
        """Fast motion and flicker (onset and expansion phases)."""
        return self.phase in ("onset", "expansion")


@dataclass(frozen=True)
class NightSpec:
    """The parameters of a night (validated on creation; :class:`SynthError` otherwise).

    Attributes:
        seed: the night's seed; the same spec gives byte-identical files.
        start: UTC time of the first frame (timezone-aware).
        duration_s: length of the night in seconds (frames at ``start + k * cadence_s``).
        cadence_s: seconds between frames (whole seconds: file names carry seconds).
        onsets: number of substorm cycles, each with one onset (None: one per 90 min).
        gap: ``(offset_s, length_s)`` of a data gap after ``start`` (frames left out), or None.
    """

    seed: int = 0
    start: datetime = NIGHT_START
    duration_s: int = NIGHT_DURATION_S
    cadence_s: int = NIGHT_CADENCE_S
    onsets: int | None = None
    gap: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def n_slots(self) -> int:
        """Frame times of the night, gap included."""
        return self.duration_s // self.cadence_s

    @property
    def n_onsets(self) -> int:
        """Number of onsets (substorm cycles) of the night."""
        return self.onsets if self.onsets is not None else max(1, self.duration_s // ONSET_EVERY_S)

    def slot_time(self, k: int) -> datetime:
        """UTC time of frame slot ``k`` (0 <= k < :attr:`n_slots`)."""
        return self.start + timedelta(seconds=k * self.cadence_s)

    def in_gap(self, k: int) -> bool:
        """Whether slot ``k`` falls in the data gap (its frame is not written)."""
        if self.gap is None:
            return False
        off = k * self.cadence_s
        return self.gap[0] <= off < self.gap[0] + self.gap[1]

    def frame_slots(self) -> list[int]:
        """The slots whose frames are written (all but the gap), in time order."""
        return [k for k in range(self.n_slots) if not self.in_gap(k)]


def _check_spec(spec: NightSpec) -> None:
    """Raise a one-line :class:`SynthError` for a parameter that cannot make a night."""
    if not isinstance(spec.seed, int) or spec.seed < 0:
        raise SynthError(f"seed must be an integer >= 0, got {spec.seed!r}")
    if spec.start.tzinfo is None or spec.start.utcoffset() != timedelta(0):
        raise SynthError(f"night start must be a UTC time, got {spec.start.isoformat()}")
    if not isinstance(spec.cadence_s, int) or not 1 <= spec.cadence_s <= 3600:
        raise SynthError(f"cadence must be whole seconds in [1, 3600], got {spec.cadence_s!r}")
    if not isinstance(spec.duration_s, int) or not 0 < spec.duration_s <= 24 * 3600:
        raise SynthError(f"duration must be whole seconds in (0, 24 h], got {spec.duration_s!r}")
    if spec.onsets is not None and (not isinstance(spec.onsets, int) or spec.onsets < 1):
        raise SynthError(f"onsets must be an integer >= 1, got {spec.onsets!r}")
    # each cycle has at most five events (quiet, growth, onset, expansion, recovery)
    need = 5 * spec.n_onsets * spec.cadence_s * min_event_frames(spec.cadence_s)
    if spec.duration_s < need:
        raise SynthError(
            f"a night of {spec.duration_s} s at a cadence of {spec.cadence_s} s is too short for "
            f"{spec.n_onsets} onset(s): it needs at least {need} s (up to 5 events per onset, "
            f">= {MIN_EVENT_S} s and >= {MIN_EVENT_FRAMES} frames each); lengthen it or ask "
            "fewer onsets"
        )
    if spec.gap is not None:
        off, length = spec.gap
        if not 0 < off < off + length < spec.duration_s or length < spec.cadence_s:
            raise SynthError(
                f"gap {off}+{length} s must lie inside the night (0, {spec.duration_s}) s and "
                f"last at least one cadence ({spec.cadence_s} s)"
            )
        if length >= MAX_GAP_S:
            raise SynthError(
                f"gap of {length} s would split the night (gaps of {MAX_GAP_S} s or more start "
                "a new night); make it shorter"
            )


def _choose(rng: np.random.Generator, phase: str, previous: str | None) -> str:
    """A morphology for ``phase``, never the previous event's."""
    forms = {m: w for m, w in _PHASE_FORMS[phase].items() if m != previous}
    if not forms:  # every form of the phase equals the previous: take any other morphology
        forms = {m: 1.0 for m in MORPHOLOGIES if m != previous}
    names = sorted(forms)
    p = np.array([forms[m] for m in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _phases(rng: np.random.Generator, n_onsets: int) -> list[str]:
    """The phases of the night, cycle after cycle."""
    out: list[str] = []
    for _ in range(n_onsets):
        out += ["quiet", "growth", "onset"]
        if rng.random() < EXPANSION_PROB:
            out.append("expansion")
        out.append("recovery")
    return out


def _levels(rng: np.random.Generator, phase: str, before: float | None) -> tuple[float, float]:
    """Brightness at the start and end of an event, continuing from ``before`` (the end of the
    previous event): a jump up only at an onset."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    prev = before if before is not None else u(0.5, 0.9)
    if phase == "quiet":
        start = min(u(0.5, 0.9), prev * 1.1)
        return start, start * u(0.8, 1.2)
    if phase == "growth":
        start = prev * u(0.9, 1.15)
        return start, start * u(1.4, 2.0)
    if phase == "onset":
        start = min(max(prev * u(3.0, 4.0), 2.5), 5.0)
        return start, start * u(0.35, 0.55)
    if phase == "expansion":
        start = prev * u(0.7, 0.9)
        return start, start * u(0.6, 0.9)
    start = prev * u(0.7, 0.95)  # recovery
    return start, start * u(0.4, 0.7)


def min_event_frames(cadence_s: int) -> int:
    """Frames of the shortest event: several minutes and several frames."""
    return max(MIN_EVENT_FRAMES, math.ceil(MIN_EVENT_S / cadence_s))


def _edges(weights: np.ndarray, n_slots: int, least: int) -> list[int]:
    """End slot of each event: ``least`` frames each, the rest shared in proportion to
    ``weights`` (cumulative rounding, so the last edge is ``n_slots``)."""
    extra = n_slots - least * len(weights)
    shares = np.rint(np.cumsum(weights) / weights.sum() * extra).astype(int)
    return (least * np.arange(1, len(weights) + 1) + shares).tolist()


def plan_events(spec: NightSpec) -> list[NightEvent]:
    """The events of a night, in time order; they tile its frame slots exactly."""
    rng = np.random.default_rng([spec.seed, 0x5C4ED])
    phases = _phases(rng, spec.n_onsets)
    weights = np.array([rng.uniform(*_PHASE_MINUTES[p]) for p in phases])
    edges = _edges(weights, spec.n_slots, min_event_frames(spec.cadence_s))
    events: list[NightEvent] = []
    morph: str | None = None
    level: float | None = None
    for i, (phase, first, stop) in enumerate(zip(phases, [0, *edges[:-1]], edges, strict=True)):
        morph = _choose(rng, phase, morph)
        level0, level1 = _levels(rng, phase, level)
        level = level1
        seed = int(np.random.SeedSequence([spec.seed, 0xE7E, i]).generate_state(1)[0])
        events.append(
            NightEvent(i, phase, morph, first, stop, round(level0, 4), round(level1, 4), seed)
        )
    return events


def event_of_slots(events: list[NightEvent], n_slots: int) -> np.ndarray:
    """Index of the event of every frame slot; (n_slots,) int64."""
    out = np.full(n_slots, -1, dtype=np.int64)
    for e in events:
        out[e.first : e.stop] = e.index
    return out
