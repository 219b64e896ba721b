"""Plumbing every stage shares: errors and the one-line guard, atomic writes, the on-disk cache,
logs, config values and estimators from a node, the run folder's status, this machine's memory.
Must not import any other package of aurora: it is the ground floor."""
