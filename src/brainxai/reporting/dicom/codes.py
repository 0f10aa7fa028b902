"""The coded concepts and units the DICOM outputs use.

Standard codes (DCM, SCT, LN, UCUM from pydicom's code dictionary) where one fits; where none does
(the model's classes, brainxai's own parameters) a private coding scheme, ``99BRAINXAI``: the ``99``
prefix is DICOM's convention for local schemes (PS3.16 8.2), so no reader mistakes these for SNOMED
concepts. The classes are not mapped to SNOMED on purpose: the model's "glioma" is a label of the
training set, not a histological diagnosis.
"""

from __future__ import annotations

from typing import Any

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from brainxai.constants import CLASS_TITLES

#: The private coding scheme of brainxai's own concepts.
SCHEME = "99BRAINXAI"

#: UCUM units: millimetres when the pixel spacing comes from the file, pixels otherwise.
MM = codes.UCUM.Millimeter
MM2 = codes.UCUM.SquareMillimeter
MM3 = codes.UCUM.CubicMillimeter
#: UCUM annotation for counts of pixels (a length or an area measured on the pixel grid, not in mm).
PIXELS = Code("{pixels}", "UCUM", "pixels")
NO_UNITS = codes.UCUM.NoUnits
#: UCUM ``{ratio}``: a share of one quantity in another (the relevance inside the segmented tumour).
RATIO = codes.UCUM.Ratio

PROBABILITY = codes.DCM.Probability
AREA = codes.SCT.Area
LONG_AXIS = codes.SCT.LongAxis
SHORT_AXIS = codes.SCT.ShortAxis
COMMENT = codes.DCM.Comment
FINDING = codes.DCM.Finding
SALIENCY = codes.DCM.Saliency
BRAIN_MRI = codes.LN.BrainMRI
DEVICE = codes.DCM.Device

#: Purpose of the Contributing Equipment item that names the model (CID 7005). IHE AI Results used a
#: placeholder code (Newcode1, 99IHE, "Processing Algorithm"); the standard's own code is used here.
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment

#: brainxai's own quantities. Code values are at most 16 characters (SH: longer ones would need Long
#: Code Value, which older readers ignore), meanings at most 64 (LO).
DISTANCE_TO_HEAD_EDGE = Code("head-edge-dist", SCHEME, "Distance from relevance region to head edge")
# Estimates get concepts that say so: a reader of the coded value alone must not take them for measurements.
ESTIMATED_VOLUME = Code("est-volume", SCHEME, "Estimated volume (ellipsoid from one slice)")
MIDLINE_SHIFT = Code("midline-shift", SCHEME, "Estimated midline shift")
OEDEMA_AREA = Code("oedema-area", SCHEME, "Estimated hyperintense area around the region")
RCBV = Code("rcbv", SCHEME, "Relative cerebral blood volume")
TEXTURE_CV = Code("texture-cv", SCHEME, "Coefficient of variation of display intensity")
RELEVANCE_REGION = Code("relevance-region", SCHEME, "Relevance region of the explanation")
RESEARCH_USE = Code("research-use", SCHEME, "Research use statement")
NOT_ASSESSABLE = Code("not-assessable", SCHEME, "Not assessable (outside the model's training domain)")
INPUT_NOTE = Code("input", SCHEME, "Analysed input")
#: The segmented tumour's figures: a segmentation model's estimate, named so (not the relevance region's sizes).
TUMOUR_AREA = Code("seg-tumour-area", SCHEME, "Area of the segmented tumour (model estimate)")
TUMOUR_MAX_DIAMETER = Code("seg-tumour-long", SCHEME, "Maximum diameter of the segmented tumour (estimate)")
TUMOUR_PERPENDICULAR = Code("seg-tumour-perp", SCHEME, "Perpendicular diameter of segmented tumour (estimate)")
RELEVANCE_IN_TUMOUR = Code("relevance-in-tum", SCHEME, "Share of positive relevance inside the segmented tumour")
TUMOUR_METHOD = Code("seg-method", SCHEME, "Tumour segmentation method")


def coding_scheme() -> Any:
    """The Coding Scheme Identification item that declares :data:`SCHEME` in objects using it."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return CodingSchemeIdentificationItem(SCHEME, name="brainxai local concepts", responsible_organization="brainxai")


def class_code(name: str) -> Code:
    """The finding code of one model class (``glioma`` -> ``(glioma, 99BRAINXAI, "Glioma")``)."""
    return Code(name, SCHEME, CLASS_TITLES.get(name, name)[:64])


def class_probability_code(name: str) -> Code:
    """The measurement name of one class's probability."""
    return Code(f"p-{name}", SCHEME, f"Probability of {CLASS_TITLES.get(name, name)}"[:64])


#: Short code values of the spatial parameters (see :data:`brainxai.analysis.spatial.schema.PARAMETER_KEYS`).
PARAMETER_CODES: dict[str, str] = {
    "anatomical_region": "region",
    "hemisphere": "hemisphere",
    "spatial_relation": "relation",
    "area_volume": "area-volume",
    "maximum_dimensions": "max-dims",
    "texture": "texture",
    "midline_shift": "midline",
    "peritumoral_oedema": "oedema",
    "rcbv": "rcbv",
    "confidence": "confidence",
}


def parameter_code(key: str, name: str) -> Code:
    """The concept of one spatial parameter's text (its value as written for people, with units)."""
    return Code(PARAMETER_CODES.get(key, key[:14]), SCHEME, name[:64])


def parameter_method_code(key: str, name: str) -> Code:
    """The concept of one spatial parameter's method note."""
    return Code(f"m-{PARAMETER_CODES.get(key, key[:14])}", SCHEME, f"Method: {name}"[:64])
