"""Nights of a season: observing sessions, keograms, activity curves, events and onsets, figures.

Takes times, pixel indices, masks and arrays; must not import torch, aurora.run, aurora.report
or aurora.sky.
"""

from aurora.nights.activity import ActivityAccumulator, activity_curve, feature_change
from aurora.nights.boundaries import BoundaryScore, boundary_f1
from aurora.nights.events import (
    Event,
    EventSettings,
    find_events,
    read_events_csv,
    write_events_csv,
)
from aurora.nights.figure import night_figure, save_figure, season_figure
from aurora.nights.keogram import Keogram, KeogramBuilder, load_keogram, save_keogram
from aurora.nights.sessions import Nights, split_nights

__all__ = [
    "ActivityAccumulator",
    "BoundaryScore",
    "Event",
    "EventSettings",
    "Keogram",
    "KeogramBuilder",
    "Nights",
    "activity_curve",
    "boundary_f1",
    "feature_change",
    "find_events",
    "load_keogram",
    "night_figure",
    "read_events_csv",
    "save_figure",
    "save_keogram",
    "season_figure",
    "split_nights",
    "write_events_csv",
]
