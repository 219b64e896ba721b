"""A run's scores and outputs in words: the one text the closing summary and the report use.

Each score is given with its scale (what 0 and 1 mean), and each output file with what it holds,
so that a first run explains itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Score name -> what its values mean, in a few words.
SCORE_SCALES: dict[str, str] = {
    "ari": "0 = chance, 1 = the labels exactly",
    "ami": "0 = chance, 1 = the labels exactly",
    "homogeneity": "1 = each group holds a single class",
    "completeness": "1 = each class lies in a single group",
    "purity": "share of images in their group's majority class",
    "moon_ami": "0 = independent of the Moon, 1 = the groups are the Moon flag",
    "silhouette": "-1 to 1, higher = tighter, better separated clusters",
    "calinski_harabasz": "0 up, higher = better separated",
    "davies_bouldin": "0 up, lower = better separated",
    "stability": "0 = chance, 1 = the same clusters on every subsample",
    "borda": "sum of the four ranks, lower = better",
}

#: Output of a run folder -> what it holds (in the order a user looks for them). A trailing
#: ``/`` marks a folder.
OUTPUTS: tuple[tuple[str, str], ...] = (
    ("labels.csv", "the group of every accepted image (path,label; -1 = in no group)"),
    ("rejected.csv", "every input left out, with its reason (path,reason,detail)"),
    ("report/index.html", "the report: summary, one montage per group, map, timeline, ranking"),
    (
        "solution/",
        "labels new images: cluster.py mode=apply solution=THIS data=folder data.root=NEW",
    ),
    ("summary.json", "the numbers of this summary"),
    (
        "screen.csv",
        "per frame: time, station, Sun and Moon, the flags daylight/twilight/moon/glare/cloud",
    ),
    ("keograms/", "per night: NIGHT.png (keogram, groups, activity, events), NIGHT.npz (data)"),
    ("events.csv", "the events of each night (start, end, group, activity, onset)"),
    ("ranking.csv", "the grid cells ranked (Borda count over four internal indices)"),
    ("results.csv", "every score of every grid cell"),
    ("failed.csv", "grid cells that failed and why (only a header when none did)"),
)


def scored(name: str, value: float, scale: str | None = None) -> str:
    """``"AMI 0.52 (0 = chance, 1 = the labels exactly)"``: a score with its scale.

    Args:
        name: the score as shown (``AMI``, ``homogeneity``).
        value: its value.
        scale: key of :data:`SCORE_SCALES` (default: ``name`` lower-cased).
    """
    meaning = SCORE_SCALES.get(scale or name.lower())
    return f"{name} {value:.2f}" + (f" ({meaning})" if meaning else "")


def outputs(run_dir: Path) -> list[tuple[str, str, Path]]:
    """The outputs present in ``run_dir``: (name, what it holds, absolute path), in
    :data:`OUTPUTS` order."""
    run_dir = Path(run_dir).resolve()
    found = []
    for name, what in OUTPUTS:
        path = run_dir / name.rstrip("/")
        if path.exists():
            if name == "solution/":
                what = what.replace("THIS", str(path))
            found.append((name, what, path))
    return found


def truth_lines(summary: Mapping[str, Any]) -> list[str]:
    """The scores against a truth table, each with its scale (empty without a truth table)."""
    if "best_cell_external" not in summary:
        return []
    b, f = summary["best_cell_external"], summary["fused_external"]
    lines = [
        "against the truth table:",
        f"  fused groups (assigned images): {scored('AMI', f['ami'])}, ARI {f['ari']:.2f}; "
        f"{scored('homogeneity', f['homogeneity'])}; "
        f"{summary['fused_unassigned_fraction']:.1%} unassigned",
        f"  best grid cell {summary.get('best_cell', '')}: AMI {b['ami']:.2f}, ARI {b['ari']:.2f}",
    ]
    if "fused_ami_moon" in summary:
        lines.append(
            f"  groups vs the Moon flag: {scored('AMI', summary['fused_ami_moon'], 'moon_ami')}"
        )
    return lines
