"""The file names of a solution folder and what each holds (format 2; nothing in it is code or
pickle). :mod:`aurora.solution.save` writes the folder, :mod:`aurora.solution.store` reads it.

Layout of ``RUN/solution/``::

    manifest.json     format, versions, counts, preprocessing, extractor and reducer
                      description, novelty threshold, the SHA-256 of every other file
    reference.npz     ids (N,), features (N, D), embedding (N, d), labels (N,), moon (N,)
    neighbours.npz    the :class:`aurora.fusion.FusedNeighbours` model (assigned images)
    linear.npz        the reducer's affine map (PCA, identity), when it has one
    extractor/weights.safetensors   the extractor's weights (state dict)
    run.json          the run's resolved config and chosen fusion (for people; never read)
"""

MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
NEIGHBOURS = "neighbours.npz"
RUN_INFO = "run.json"
