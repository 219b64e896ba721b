"""Synthetic colour all-sky camera images with known auroral morphology and nuisances.
Must not import anything of aurora outside data/ but infra/ (no preprocess/, models/, run/).

The sky is rendered on a coarse grid in *linear radiance*, warped into the fisheye circle of
the full image, and only then are stars, the Moon disk, camera tone curve, noise, the black
frame and the caption added at full resolution.

Geometry. The fisheye is equidistant: a pixel at normalised radius ``rho`` (0 at the circle
centre, 1 at its edge) looks at zenith angle ``rho * 90 deg``. North is up, east is left
(looking up at the sky). Image coordinates: ``x`` is the column, ``y`` the row, pixel centres
sit at integer coordinates (so a circle exactly centred in a 480 px image has centre 239.5).

Aurora. Except for the corona, emission is a 2-D pattern in the horizontal plane (km),
extruded along slightly tilted magnetic field lines (magnetic zenith about 8 deg south) and
integrated along each pixel's line of sight over altitude shells on a spherical Earth. The
green 557.7 nm line peaks just above a sharp lower border (95-125 km) and the red 630.0 nm
line at about 220 km and a little poleward, so arcs get red upper/poleward edges and
brighten towards the horizon (van Rhijn effect) by themselves. The corona is drawn directly
as rays radiating from the magnetic zenith.

Nuisances, all drawn independently of the morphology: the Moon (saturated white disk of
known centre and radius, a glare halo that stays below saturation, and moonlit sky), thin
clouds (a smooth low-frequency veil of strength ``clouds`` in [0, 1] that dims stars and
aurora and scatters aurora-, moon- and town light; 0 means clear), star density, airglow,
town-light glow on the horizon, exposure gain, read noise, circle position and size.

``labels.csv`` columns: ``path,morphology,moon,clouds,seed,moon_x,moon_y,moon_r,circle_x,
circle_y,circle_r``. ``clouds`` is the veil strength (``0`` = clear). ``moon_*`` are empty
when there is no Moon. The image in row ``i`` is exactly
``render_sky(morphology, np.random.default_rng(seed), size, moon, clouds, when=t)`` with ``t``
parsed from the file name, encoded with :data:`JPEG_QUALITY`.

Modules, in the order an image is made:

- :mod:`.truth`: the morphology names, :class:`SkyMeta` (an image's ground truth), the
  ``labels.csv`` columns, :class:`SynthError`.
- :mod:`.geometry`: the fisheye circle, the coarse sky grid and its lines of sight through
  the altitude shells, the plane raster.
- :mod:`.forms`: the plane pattern of each auroral form; :mod:`.emission`: its line-of-sight
  integrals per spectral line (and the corona, drawn in image space).
- :mod:`.sky`: :func:`render_sky`, the radiance steps (aurora, background, Moon, clouds,
  exposure); :mod:`.camera`: tone curve, warp, stars, Moon disk, read-out, caption.
- :mod:`.frames`: frame times and file names; :mod:`.dataset`: :func:`generate` and the
  command line (``python -m aurora.data.synth``).

A night (``python -m aurora.data.synth DIR --night``): :mod:`.schedule` plans the events
(:class:`NightSpec`, :func:`plan_events`), :mod:`.sequence` renders a fixed camera whose forms
drift smoothly inside an event and jump at onsets, :mod:`.night` writes the frames,
``labels.csv`` and ``events.csv`` (:func:`generate_night`, :func:`read_events`).
"""

from aurora.data.synth.camera import MOON_DISPLAY
from aurora.data.synth.dataset import (
    CLOUD_PROB,
    ImagePlan,
    generate,
    image_seed,
    main,
    plan_dataset,
    read_labels,
    render_plan,
)
from aurora.data.synth.frames import (
    FILE_PREFIX,
    FIRST_FRAME,
    FRAME_STEP_S,
    FRAMES_PER_NIGHT,
    JPEG_QUALITY,
    encode_jpeg,
    frame_name,
    frame_time,
)
from aurora.data.synth.night import (
    EVENT_COLUMNS,
    NIGHT_COLUMNS,
    generate_night,
    night_frame_name,
    parse_span,
    read_events,
)
from aurora.data.synth.schedule import NightEvent, NightSpec, plan_events
from aurora.data.synth.sky import render_sky
from aurora.data.synth.truth import CSV_COLUMNS, MORPHOLOGIES, SkyMeta, SynthError

__all__ = [
    "CLOUD_PROB",
    "CSV_COLUMNS",
    "EVENT_COLUMNS",
    "FILE_PREFIX",
    "FIRST_FRAME",
    "FRAMES_PER_NIGHT",
    "FRAME_STEP_S",
    "JPEG_QUALITY",
    "MOON_DISPLAY",
    "MORPHOLOGIES",
    "NIGHT_COLUMNS",
    "ImagePlan",
    "NightEvent",
    "NightSpec",
    "SkyMeta",
    "SynthError",
    "encode_jpeg",
    "frame_name",
    "frame_time",
    "generate",
    "generate_night",
    "image_seed",
    "main",
    "night_frame_name",
    "parse_span",
    "plan_dataset",
    "plan_events",
    "read_events",
    "read_labels",
    "render_plan",
    "render_sky",
]
