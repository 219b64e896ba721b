"""``python -m aurora.report RUN_DIR [--out DIR]``: rebuild a run's HTML report from its folder."""

from __future__ import annotations

import argparse
import sys

from aurora.report import ReportDataError, rebuild_report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, rebuild, print the path of ``index.html``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m aurora.report", description="Rebuild the HTML report of an aurora run."
    )
    parser.add_argument("run_dir", help="the run folder (holds summary.json and report/)")
    parser.add_argument("--out", default=None, help="report folder (default RUN_DIR/report)")
    args = parser.parse_args(argv)
    try:
        index = rebuild_report(args.run_dir, args.out)
    except ReportDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
