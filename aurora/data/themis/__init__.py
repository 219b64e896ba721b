"""THEMIS all-sky imager files, in the two formats users download.
Must not import anything of aurora outside data/ but infra/.

- :mod:`.cdf`: L1 CDF (``thg_l1_asf_<site>_YYYYMMDDHH_vNN.cdf``), an hour of frames read with
  cdflib (:func:`cdf_frames`, :func:`read_cdf_frame`, :class:`CdfError`).
- :mod:`.stream0`: raw stream0 PGM (``20140310_0600_gill_themis19_full.pgm.gz``), a minute of
  16-bit frames each with a header giving its UTC time (:func:`stream0_frames`,
  :func:`read_stream0_frame`, :func:`stream0_header_time`, :class:`Stream0Error`); its bytes
  (headers, frames) are parsed by :mod:`.stream0_parse`.
"""

from aurora.data.themis.cdf import CdfError, cdf_frame_size, cdf_frames, read_cdf_frame
from aurora.data.themis.stream0 import (
    compression_of,
    read_stream0_frame,
    stream0_cut,
    stream0_frames,
)
from aurora.data.themis.stream0_parse import STREAM0_REASONS, Stream0Error, stream0_header_time

__all__ = [
    "STREAM0_REASONS",
    "CdfError",
    "Stream0Error",
    "cdf_frame_size",
    "cdf_frames",
    "compression_of",
    "read_cdf_frame",
    "read_stream0_frame",
    "stream0_cut",
    "stream0_frames",
    "stream0_header_time",
]
