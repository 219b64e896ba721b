"""Where and when every frame was taken: stations and camera geometry, Sun and Moon ephemeris,
the cloud score and the per-frame screening flags. Must not import torch, aurora.run,
aurora.report or aurora.nights."""
