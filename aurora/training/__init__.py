"""Fitting our feature models with Lightning: the trainer, its checkpoints, the fit on images.
Must not import run/, report/ or solution/; takes arrays, paths and group nodes, not a config."""
