"""Unsupervised morphological classification of auroral all-sky images: one package per stage of
the chain (data, preprocess, models, extractors, reduction, clustering, grid, fusion, sky, nights,
report, solution) over one corner of plumbing (infra); run/ alone reads a composed config.
A package imports only those below it (tests/test_house.py holds the few exceptions left)."""
