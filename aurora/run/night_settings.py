"""The time-aware settings of a run, read from plain config nodes and checked before any work:
which station each frame belongs to, the screening thresholds and exclusions, the nights'
gap, activity window and event segmentation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aurora.infra.errors import SettingsError
from aurora.nights import EventSettings
from aurora.nights.activity import check_window
from aurora.run.night_scan import ScanSettings
from aurora.sky.screen import ScreenSettings
from aurora.sky.station import Camera, Station

#: The flags ``screen.exclude`` may name.
EXCLUDABLE = ("daylight", "twilight", "moon", "glare", "cloud")


@dataclass(frozen=True)
class NightSettings:
    """The time-aware settings of a run (``data.station``, ``stations``, ``screen``, ``nights``).

    Attributes:
        enabled: scan, screen and write the nights (``nights.enabled``).
        station: the station of every frame (``data.station``), or None: from the file names.
        stations: name -> station, every known entry (``stations``).
        screen: the flags' thresholds.
        exclude: flags that keep a frame out of the grid (``screen.exclude``).
        scan: the gap between nights and the activity window.
        events: the event segmentation and the onset criterion.
    """

    enabled: bool = True
    station: str | None = None
    stations: dict[str, Station] = dataclasses.field(default_factory=dict)
    screen: ScreenSettings = ScreenSettings()
    exclude: tuple[str, ...] = ()
    scan: ScanSettings = ScanSettings()
    events: EventSettings = EventSettings()

    @classmethod
    def from_nodes(
        cls,
        *,
        station: Any,
        stations: dict[str, Any] | None,
        screen: dict[str, Any] | None,
        nights: dict[str, Any] | None,
    ) -> NightSettings:
        """Read and check the plain config nodes; every error names its key.

        Raises:
            SettingsError: an unknown station or flag, or a value that cannot work.
        """
        built: dict[str, Station] = {}
        for name, node in (stations or {}).items():
            built[name] = _station(name, node)
        if station is not None and str(station) not in built:
            known = ", ".join(sorted(built)) or "none"
            raise SettingsError(
                "data.station", station, f"the name of an entry of `stations` ({known})"
            )
        screen = dict(screen or {})
        exclude = screen.pop("exclude", None) or ()
        if isinstance(exclude, str):
            exclude = [exclude]
        bad = [f for f in exclude if f not in EXCLUDABLE]
        if bad:
            raise SettingsError("screen.exclude", list(exclude), f"flags among {EXCLUDABLE}")
        nights = dict(nights or {})
        enabled = nights.get("enabled", True)
        if not isinstance(enabled, bool):
            raise SettingsError("nights.enabled", enabled, "true or false")
        activity = dict(nights.get("activity") or {})
        return cls(
            enabled=enabled,
            station=None if station is None else str(station),
            stations=built,
            screen=_build("screen", ScreenSettings, screen),
            exclude=tuple(str(f) for f in exclude),
            scan=_scan_settings(nights.get("gap", 7200.0), activity),
            events=_build("nights.events", EventSettings, nights.get("events") or {}),
        )


def _build(key: str, cls: type, node: dict[str, Any]) -> Any:
    node = {k: v for k, v in node.items() if k != "_target_"}
    try:
        return cls(**node)
    except TypeError as err:
        raise SettingsError(key, sorted(node), f"fields of {cls.__name__}: {err}") from None
    except ValueError as err:
        if isinstance(err, SettingsError):
            raise
        raise SettingsError(key, node, str(err)) from None


def _station(name: str, node: Any) -> Station:
    if not isinstance(node, dict):
        raise SettingsError(f"stations.{name}", node, "a station entry (conf/station/*.yaml)")
    node = {k: v for k, v in node.items() if k != "_target_"}
    camera = dict(node.pop("camera", None) or {})
    camera.pop("_target_", None)
    try:
        return Station(**{"name": name, **node, "camera": Camera(**camera)})
    except (TypeError, ValueError) as err:
        raise SettingsError(f"stations.{name}", node.get("name", name), str(err)) from None


def _scan_settings(gap: Any, activity: dict[str, Any]) -> ScanSettings:
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap > 0:
        raise SettingsError("nights.gap", gap, "seconds > 0")
    window = check_window(activity.get("window", 12))
    max_size = activity.get("max_size", 512)
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 8
    ):
        raise SettingsError("nights.activity.max_size", max_size, "null or an integer >= 8")
    return ScanSettings(gap_s=float(gap), window=window, max_size=max_size)
