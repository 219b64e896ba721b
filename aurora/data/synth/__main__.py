"""``python -m aurora.data.synth OUT_DIR --n 600 --seed 0 --size 480`` (see :func:`main`)."""

from aurora.data.synth.dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
