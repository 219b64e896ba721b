"""Is there anything to group? The structure test of each run (aurora.fusion.structure) on a
featureless real sky, a labelled real day and the synthetic sky, side by side.

Usage::

    python bench/bench_structure.py                      # GILL, YRS (if built), synthetic sky
    python bench/bench_structure.py --gill DIR --yrs DIR --yrs-truth CSV --cache DIR
    python bench/bench_structure.py --no-synth --no-yrs  # GILL only

Each data set is one whole run (:func:`aurora.run.run_cluster`) into ``OUT/NAME``:

- ``gill``: ``experiment=real data=folder data.root=GILL`` (``../shared/data/themis_stream0_gill``:
  120 frames, six minutes of a static moonlit sky). Expected: no structure.
- ``yrs``: the same on the Yellow River Station day of ``../shared/REAL_DATA.md``
  (``/tmp/yrs/images`` with ``/tmp/yrs/truth.csv``; skipped when absent). Expected: structure.
- ``synth``: ``experiment=demo`` (``make demo``: the synthetic sky, CAE and SimCLR trained
  here; its networks come from the demo's cache). Expected: structure.

The real runs use the MobileNet-v2 of ``../shared/weights`` (``--weights``) with TF padding and
[-1, 1] inputs, as ``../shared/REAL_DATA.md`` says. ``--cache`` is their feature cache (default:
the config's ``paths.cache_dir``): a second bench run only re-runs the grid. One line per data
set: frames and groups tested, the groups' separation (CI = within / total sum of squares,
lower = better separated) beside K-means on 19 draws of Gaussian noise of the same spread
(lowest, mean) and the Monte Carlo p-value; whether the groups are blocks of time (share of
consecutive frames in one group, beside the highest share over 19 random orders); their
signal-to-noise (between-group variance over the frame-to-frame noise); the verdict.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_avg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GILL = SHARED / "data" / "themis_stream0_gill"
YRS = Path("/tmp/yrs/images")
YRS_TRUTH = Path("/tmp/yrs/truth.csv")
WEIGHTS = SHARED / "weights" / "mobilenetv2_100.tf_quant_in1k_dequant.safetensors"


def real_overrides(weights: Path) -> list[str]:
    """``experiment=real`` with a local TensorFlow-trained MobileNet-v2 file."""
    return [
        "experiment=real",
        f"extractors.mobilenet_v2.weights={weights}",
        "extractors.mobilenet_v2.model_kwargs={pad_type:same}",
        "extractors.mobilenet_v2.pretrained_cfg_overlay={mean:[0.5,0.5,0.5],std:[0.5,0.5,0.5]}",
    ]


def run_one(overrides: Sequence[str], out: Path) -> dict[str, Any]:
    """One whole run into ``out``; returns its summary (``structure``, ``structure_test``)."""
    from hydra import compose, initialize_config_dir

    from aurora.run import run_cluster

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("cluster", overrides=list(overrides))
    return run_cluster(cfg, out)


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_row(name: str, summary: Mapping[str, Any], seconds: float) -> str:
    """One line of the table."""
    t = summary["structure_test"]
    verdict = "structure" if summary["structure"] else f"NO structure ({t['reason']})"
    return (
        f"{name:<6} {t['n_frames']:>6} {t['n_groups']:>4}  {_f(t['separation'])} "
        f"{_f(t['null_separation_min'])} {_f(t['null_separation_mean'])} {_f(t['p_value'], 2):>5}"
        f"  {_f(t['agreement'], 2)} {_f(t['agreement_null_max'], 2)}"
        f"  {_f(t['signal_to_noise'], 2):>5}  {verdict}  ({seconds:.0f} s run)"
    )


HEADER = (
    "data   frames   K  CI     null   null   p      same  same   S/N    verdict\n"
    "                   groups lowest mean          time  random"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gill", type=Path, default=GILL, help="the GILL folder")
    ap.add_argument("--yrs", type=Path, default=YRS, help="the YRS images folder")
    ap.add_argument("--yrs-truth", type=Path, default=YRS_TRUTH, help="the YRS truth CSV")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="MobileNet-v2 TF weights")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache of the real runs")
    ap.add_argument("--out", type=Path, default=None, help="runs go to OUT/NAME")
    ap.add_argument("--no-gill", action="store_true")
    ap.add_argument("--no-yrs", action="store_true")
    ap.add_argument("--no-synth", action="store_true")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "outputs" / "bench_structure" / time.strftime("%Y-%m-%d_%H-%M-%S")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = [f"paths.cache_dir={args.cache}"] if args.cache else []
    real = [*real_overrides(args.weights), *cache, "data=folder"]
    jobs: list[tuple[str, list[str]]] = []
    if not args.no_gill:
        jobs.append(("gill", [*real, f"data.root={args.gill}"]))
    if not args.no_yrs and args.yrs.is_dir() and args.yrs_truth.is_file():
        jobs.append(("yrs", [*real, f"data.root={args.yrs}", f"data.truth={args.yrs_truth}"]))
    elif not args.no_yrs:
        print(f"yrs skipped: {args.yrs} or {args.yrs_truth} is absent (../shared/REAL_DATA.md)")
    if not args.no_synth:
        jobs.append(("synth", ["experiment=demo"]))
    rows = []
    for name, overrides in jobs:
        t0 = time.perf_counter()
        summary = run_one(overrides, out / name)
        rows.append(format_row(name, summary, time.perf_counter() - t0))
        (out / name / "bench_structure.json").write_text(
            json.dumps({k: summary[k] for k in ("structure", "structure_test")}, indent=2) + "\n"
        )
    print(f"\nstructure test ({load_avg()}); runs in {out}")
    print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
