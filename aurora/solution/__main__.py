"""``python -m aurora.solution export RUN_DIR``: write a run's solution again, in this format.

A solution of an older format is refused by :func:`aurora.solution.load_solution`. This command
reruns the run's configuration into ``RUN_DIR`` with ``cluster.py``; every stage is cached, so it
costs little more than the grid, and the new ``solution/`` is written in the current format.

A run folder is data, maybe from someone else: its ``.hydra/overrides.yaml`` is never replayed
as it stands. Each override is parsed and checked against an allow-list, and the command is
rebuilt from the checked values (:func:`export_command`): a config-group choice must be an
option of ``conf/``, a key must exist in the composed ``cluster`` config, a value must be plain
data (a scalar, a list of scalars, or a mapping of plain keys to those); no ``hydra`` setting,
no ``_target_`` (or other instantiation key), no added key. Anything else refuses the export
with one ``error:`` line naming the override (exit 2).
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aurora.infra.errors import AuroraError
from aurora.solution.errors import SolutionError
from aurora.solution.limits import read_limited, solution_file

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.py"
CONF = ROOT / "conf"
OVERRIDES = ".hydra/overrides.yaml"
#: Largest ``overrides.yaml`` read, and most overrides in it (a command line's worth).
MAX_OVERRIDES_BYTES = 256 * 1024
MAX_OVERRIDES = 256
#: Keys Hydra's ``instantiate`` reads as code or call options: never set from a run folder.
_INSTANTIATE_KEYS = frozenset({"_target_", "_args_", "_partial_", "_recursive_", "_convert_"})
#: Overrides dropped, not replayed: what the export sets itself.
_DROPPED = frozenset({"mode"})


class ExportError(SolutionError):
    """A run folder whose recorded command cannot be replayed safely; names the override."""


def _refuse(override: str, why: str) -> ExportError:
    shown = override if len(override) <= 200 else override[:197] + "..."
    return ExportError(f"{OVERRIDES}: refusing to replay {shown!r}: {why}")


def _plain(value: Any, nested: bool = False) -> bool:
    """A scalar (None, bool, int, finite float, str without interpolation), a list of scalars, or
    a mapping of plain keys (never ``_target_`` or another ``_..._`` key) to those."""
    if isinstance(value, dict):
        return not nested and all(
            isinstance(k, str) and k.isidentifier() and not k.startswith("_") and _plain(v, True)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(not isinstance(v, list | dict) and _plain(v, True) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "${" not in value and "\x00" not in value
    return value is None or isinstance(value, bool | int)


def _typed(value: Any) -> Any:
    """``value`` with the type of every scalar (``1 == 1.0 == True`` in Python)."""
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    return (type(value).__name__, value)


def _value_text(value: Any) -> str:
    """``value`` as Hydra's override grammar writes it (strings always quoted)."""
    from hydra.core.override_parser.types import Quote, QuotedString

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value_text(v)}" for k, v in value.items()) + "}"
    return QuotedString(text=str(value), quote=Quote.single).with_quotes()


def _groups() -> dict[str, set[str]]:
    """Config group (``extractor``, ``hydra/launcher``...) -> its options in ``conf/``."""
    out: dict[str, set[str]] = {}
    for yaml_file in CONF.rglob("*.yaml"):
        rel = yaml_file.relative_to(CONF)
        if len(rel.parts) > 1:
            out.setdefault("/".join(rel.parts[:-1]), set()).add(rel.stem)
    return out


def _key_parts_ok(key: str) -> str | None:
    """Why a dotted key may not be set from a run folder, or None."""
    parts = key.split(".")
    if parts[0] == "hydra" or key.startswith("hydra/"):
        return "it sets Hydra itself (launchers, callbacks, run folders are not a run's settings)"
    if any(p in _INSTANTIATE_KEYS for p in parts):
        return "it sets an instantiation key (`_target_` and its kin name code to run)"
    if not all(p.isidentifier() or p.isdigit() for p in parts):
        return "it is not a plain dotted key"
    return None


def _has_key(cfg: Any, key: str) -> bool:
    """Whether ``key`` (dotted) exists in ``cfg``, a value of ``???`` included."""
    from omegaconf import DictConfig, ListConfig

    node = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig):
            if part not in node.keys():  # noqa: SIM118 - `in node` misses `???` values
                return False
            node = node._get_node(part)
        elif isinstance(node, ListConfig):
            if not part.isdigit() or int(part) >= len(node):
                return False
            node = node._get_node(int(part))
        else:
            return False
    return True


def checked_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides of a run folder, checked against the allow-list and written anew.

    Args:
        overrides: the lines of ``.hydra/overrides.yaml``.

    Returns:
        The overrides to give ``cluster.py``, rebuilt from their parsed values (``mode=``
        dropped).

    Raises:
        ExportError: the first override that is not allowed, named with the reason.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType, ValueType
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    groups = _groups()
    group_lines: list[str] = []
    key_lines: list[tuple[str, str]] = []
    for line in overrides:
        try:
            ov = parser.parse_override(line)
        except HydraException as err:
            raise _refuse(line, f"not an override ({' '.join(str(err).split())[:120]})") from err
        key = ov.key_or_group
        group = key if key in groups and not key.startswith("hydra") else None
        why = None if group else _key_parts_ok(key)
        if why:
            raise _refuse(line, why)
        if ov.package is not None and ov.package != "_global_" and _key_parts_ok(ov.package):
            raise _refuse(line, f"its package {ov.package!r} is not a plain config path")
        text = ov.get_key_element()
        if not ov.is_delete():
            if ov.value_type != ValueType.ELEMENT:
                raise _refuse(line, "a sweep replays only with `python cluster.py -m`")
            value = ov.value()
            if not _plain(value):
                raise _refuse(line, "its value is not plain data (scalars, lists, plain keys)")
            if group is not None and (not isinstance(value, str) or value not in groups[group]):
                raise _refuse(line, f"{value!r} is not an option of config group {group} (conf/)")
            # A group's option is a file name of conf/ (checked above): written as it is.
            text += "=" + (value if group is not None else _value_text(value))
            again = parser.parse_override(text).value()
            if _typed(again) != _typed(value):  # the rebuilt text must mean the checked value
                raise _refuse(line, "its value cannot be written back exactly")
        if group is not None:
            group_lines.append(text)
        elif key in _DROPPED and ov.type == OverrideType.CHANGE:
            continue
        elif ov.is_add():
            raise _refuse(line, f"it adds key {key}, which the cluster config does not have")
        else:
            key_lines.append((key, text))
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("cluster", overrides=group_lines)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ExportError(
            f"{OVERRIDES}: its config-group choices do not compose: {' '.join(str(err).split())}"
        ) from err
    for key, text in key_lines:
        if not _has_key(cfg, key):
            raise _refuse(text, f"key {key} does not exist in the cluster config")
    return group_lines + [text for _, text in key_lines]


def export_command(run_dir: Path) -> list[str]:
    """The ``cluster.py`` command line that remakes the run in ``run_dir``.

    Raises:
        ExportError: ``run_dir`` has no readable ``.hydra/overrides.yaml`` (not a single run's
            folder), or an override in it is not allowed (:func:`checked_overrides`).
    """
    run_dir = Path(run_dir).expanduser()
    if not (run_dir / ".hydra").is_dir():
        raise ExportError(
            f"{run_dir / OVERRIDES} not found: RUN_DIR must be the folder of a single "
            "`python cluster.py` run (for a -m sweep, rerun the sweep's command)"
        )
    try:
        path = solution_file(run_dir, OVERRIDES, what="run")
        text = read_limited(path, MAX_OVERRIDES_BYTES, str(path), "max_overrides_bytes")
        overrides = yaml.safe_load(text.decode("utf-8")) or []
    except SolutionError as err:
        raise ExportError(str(err)) from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ExportError(f"{run_dir / OVERRIDES} is not YAML: {err}") from err
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ExportError(f"{run_dir / OVERRIDES} is not a list of overrides")
    if len(overrides) > MAX_OVERRIDES:
        raise ExportError(
            f"{run_dir / OVERRIDES} holds {len(overrides)} overrides; at most {MAX_OVERRIDES}"
        )
    kept = checked_overrides(overrides)
    run = f"hydra.run.dir={_value_text(str(run_dir.resolve()))}"
    return [sys.executable, str(CLUSTER), *kept, run]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code of the rerun (2 with one ``error:`` line when the
    run folder is refused)."""
    parser = argparse.ArgumentParser(prog="python -m aurora.solution", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="rewrite RUN_DIR/solution in the current format")
    exp.add_argument("run_dir", type=Path, help="folder of the run (holds .hydra/ and solution/)")
    args = parser.parse_args(argv)
    try:
        cmd = export_command(args.run_dir)
    except AuroraError as err:
        print(f"error: {' '.join(str(err).split())}", flush=True)
        return 2
    print("rerunning:", shlex.join(cmd), flush=True)
    return subprocess.call(cmd, cwd=CLUSTER.parent)


if __name__ == "__main__":
    sys.exit(main())
