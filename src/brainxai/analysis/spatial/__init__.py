"""The ten spatial parameters of a finding, measured from one 2-D slice.

Inputs are the display image, the explanation's region (a boolean mask: where the relevance map is
concentrated, *not* a segmentation), a brain mask and the pixel spacing. Every parameter carries its
unit and a one-line note on how it was obtained; anything a single slice cannot support is reported
as "not assessable" rather than as a number.

Image geometry conventions: rows run top to bottom, columns left to right. On an axial slice the top
of the image is taken as anterior. "Left" and "right" are sides of the *image*; which side of the
patient that is depends on the display convention (radiological: the patient's right is on the
image's left), which raster exports do not record.

Modules: :mod:`~.schema` (the :class:`SpatialParameter` record and the keys), :mod:`~.geometry`
(measurements of masks), :mod:`~.midline` (the symmetry midline and its shift), :mod:`~.parameters`
(one builder per parameter) and :mod:`~.compute` (:func:`compute_spatial_parameters`, which composes them).
"""

from brainxai.analysis.spatial.compute import compute_spatial_parameters
from brainxai.analysis.spatial.geometry import (
    Spacing,
    ellipse_axes,
    ellipsoid_volume,
    feret_diameters,
    glcm_contrast,
    region_area,
    region_centroid,
    surface_distance,
)
from brainxai.analysis.spatial.midline import MidlineEstimate, estimate_midline
from brainxai.analysis.spatial.parameters import SURFACE_MARGIN_FRACTION, SURFACE_MARGIN_MM
from brainxai.analysis.spatial.schema import (
    NOT_APPLICABLE_NO_TUMOUR,
    PARAMETER_KEYS,
    PARAMETER_NAMES,
    SpatialParameter,
)

__all__ = [
    "NOT_APPLICABLE_NO_TUMOUR",
    "PARAMETER_KEYS",
    "PARAMETER_NAMES",
    "SURFACE_MARGIN_FRACTION",
    "SURFACE_MARGIN_MM",
    "MidlineEstimate",
    "Spacing",
    "SpatialParameter",
    "compute_spatial_parameters",
    "ellipse_axes",
    "ellipsoid_volume",
    "estimate_midline",
    "feret_diameters",
    "glcm_contrast",
    "region_area",
    "region_centroid",
    "surface_distance",
]
