"""Project-wide constants: class names, folder aliases, disclaimers."""

from __future__ import annotations

#: Canonical class names, in the order of the model's output units.
CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")

#: Human-readable class names for reports and pages.
CLASS_TITLES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary tumour",
}

#: The class that means "no tumour found".
NO_TUMOUR = "notumor"

#: Folder names seen in public copies of the dataset, mapped to canonical class names.
FOLDER_ALIASES: dict[str, str] = {
    "glioma": "glioma",
    "glioma_tumor": "glioma",
    "meningioma": "meningioma",
    "meningioma_tumor": "meningioma",
    "notumor": "notumor",
    "no_tumor": "notumor",
    "pituitary": "pituitary",
    "pituitary_tumor": "pituitary",
}

DISCLAIMER = (
    "Research use only. brainxai is not a medical device and its output is not a diagnosis; "
    "every finding must be reviewed by a qualified clinician."
)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
