"""UTC timestamps from all-sky camera file names.

Recognised patterns (the file name only; folders are ignored; all times are UTC):

========================================  ===================================================
``LYR-Sony-DDMMYY_HHMMSS[-ql...].jpg``    KHO Sony a7s quicklooks (two-digit year = 20YY)
``LYR-Sony-YYYYMMDD_HHMMSS.jpg``          KHO Sony a7s full frames
``YYYYMMDDhhmmss.jpg``                    NIPR Longyearbyen colour camera
``<site>YYYYMMDDhhmmss.pgm``              THEMIS raw stream0 frames (4-letter site)
``YYYYMMDD_HHMM_<site>_<imager>_...``     THEMIS/TREx one-minute stream0 files (minute start)
``thg_l1_asf_<site>_YYYYMMDDHH_vNN.cdf``  THEMIS L1 hourly CDF (start of the hour)
``<station>YYYYMMDD<band>HHMMSS.bmp``     Yellow River Station, e.g. ``N20031221G030001.bmp``
``...YYYYMMDD[_T-]HHMMSS...``             any other name with a date, separator, time
========================================  ===================================================

A name that matches a pattern but holds an impossible date or time (month 13, hour 25)
gives ``None``, as does a name with no timestamp.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePath

# Each pattern yields named groups; ``yy`` is a two-digit year, ``Y`` a four-digit one.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # KHO Sony: the station prefix is usually LYR; accept any letters before "-Sony-".
    re.compile(
        r"^[A-Za-z]+-Sony-(?:(?P<d>\d{2})(?P<m>\d{2})(?P<yy>\d{2})|(?P<Y>\d{4})(?P<m2>\d{2})(?P<d2>\d{2}))"
        r"_(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?!\d)",
        re.IGNORECASE,
    ),
    # THEMIS L1 CDF: thg_l1_asf_gako_2011010617_v01.cdf (hourly files).
    re.compile(
        r"^thg_l[0-9]_as[a-z]_[a-z0-9]{4}_(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?P<H>\d{2})(?!\d)",
        re.IGNORECASE,
    ),
    # Yellow River Station: station letter(s), date, band letter (G = 557.7 nm), time.
    re.compile(
        r"^[A-Za-z]+(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})[A-Za-z]"
        r"(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?!\d)"
    ),
    # UCalgary one-minute stream0 files: 20140310_0600_gill_themis19_full.pgm.gz (no seconds).
    re.compile(
        r"^(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})_(?P<H>\d{2})(?P<M>\d{2})_[A-Za-z0-9]{4}_",
    ),
    # NIPR (no prefix) and THEMIS PGM (four-letter site prefix): 14 digits.
    re.compile(
        r"^(?:[A-Za-z]{4})?(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"
        r"(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?!\d)"
    ),
    # Generic fallback: 8-digit date, one separator, 6-digit time, not inside a longer number.
    re.compile(
        r"(?<!\d)(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})[_T-]"
        r"(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?!\d)"
    ),
)


def _build(g: dict[str, str | None]) -> datetime | None:
    """Turn the named groups of one match into a UTC datetime, or None if impossible."""
    yy = g.get("yy")
    year = 2000 + int(yy) if yy is not None else int(g["Y"] or 0)
    month = int(g.get("m") or g.get("m2") or 0)
    day = int(g.get("d") or g.get("d2") or 0)
    try:
        return datetime(
            year,
            month,
            day,
            int(g.get("H") or 0),
            int(g.get("M") or 0),
            int(g.get("S") or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_timestamp(name: str) -> datetime | None:
    """Parse the UTC acquisition time encoded in a file name.

    Args:
        name: a file name or path (only the last component is used); may carry a
            ``#NNNN`` frame suffix, which is ignored.

    Returns:
        A timezone-aware UTC datetime, or None when the name holds no (valid) timestamp.
    """
    base = PurePath(name.split("#", 1)[0]).name
    for pattern in _PATTERNS:
        match = pattern.search(base)
        if match is not None:
            # The first pattern that matches decides; an impossible date is None, not a
            # reason to try a looser pattern on the same digits.
            return _build(match.groupdict())
    return None
