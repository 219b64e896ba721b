"""The station a file name names (see :mod:`aurora.data.timestamps` for the name patterns).

``station_from_name`` returns the name of a ``conf/station`` entry, or None when the name does
not say where it was taken (or names a site without an entry).
"""

from __future__ import annotations

import re
from pathlib import PurePath

#: THEMIS sites with a ``conf/station/themis_<site>.yaml`` entry.
THEMIS_SITES = frozenset({"gill", "gako", "rank"})

_THEMIS = (
    # UCalgary one-minute stream0 files: 20140310_0600_gill_themis19_full.pgm.gz
    re.compile(r"^\d{8}_\d{4}_(?P<site>[a-z]{4})_", re.IGNORECASE),
    # THEMIS L1 CDF: thg_l1_asf_gako_2011010617_v01.cdf
    re.compile(r"^thg_l\d_as[a-z]_(?P<site>[a-z]{4})_\d{10}", re.IGNORECASE),
    # Raw THEMIS PGM frame: gako20161013123527.pgm
    re.compile(r"^(?P<site>[a-z]{4})\d{14}(?!\d)", re.IGNORECASE),
)
_KHO_SONY = re.compile(r"^LYR-Sony-\d{6}", re.IGNORECASE)
# Yellow River Station: N (Ny-Alesund) + date + band letter + time, e.g. N20031221G030001.bmp
_YRS = re.compile(r"^N\d{8}[A-Z]\d{6}(?!\d)")


def station_from_name(name: str) -> str | None:
    """The station entry a file name names.

    Args:
        name: a file name or path (only the last component counts); a ``#NNNN`` frame
            suffix is ignored.

    Returns:
        ``themis_<site>`` (a THEMIS site in :data:`THEMIS_SITES`), ``kho_sony``, ``yrs``, or
        None.
    """
    base = PurePath(name.split("#", 1)[0]).name
    if _KHO_SONY.match(base):
        return "kho_sony"
    if _YRS.match(base):
        return "yrs"
    for pattern in _THEMIS:
        m = pattern.match(base)
        if m is not None:
            site = m.group("site").lower()
            return f"themis_{site}" if site in THEMIS_SITES else None
    return None
