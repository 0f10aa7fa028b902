"""Per-finding guidance: typical next steps to discuss with a specialist, never a recommendation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from brainxai.constants import CLASS_TITLES

#: Said under every guidance block.
GUIDANCE_CAVEAT = (
    "These are typical next steps for this kind of finding, listed to support a discussion with a "
    "specialist. They are not recommendations for this patient and do not replace clinical judgement."
)

#: Below this probability the guidance adds a caution about the model's uncertainty.
LOW_CONFIDENCE = 0.7


@dataclass(frozen=True)
class Guidance:
    """What a report says after a finding."""

    title: str
    summary: str
    steps: tuple[str, ...]
    caveat: str = GUIDANCE_CAVEAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = list(self.steps)
        return d


_GUIDANCE: dict[str, tuple[str, tuple[str, ...]]] = {
    "glioma": (
        "The model's output resembles a glioma, an intra-axial tumour arising from glial cells.",
        (
            "Review of the full MRI study by a neuroradiologist.",
            "Contrast-enhanced MRI with advanced sequences (perfusion, diffusion, spectroscopy) if not yet done.",
            "Neurosurgical and neuro-oncology consultation, typically through a multidisciplinary tumour board.",
            (
                "Histopathological and molecular diagnosis (biopsy or resection) "
                "is the reference standard for type and grade."
            ),
        ),
    ),
    "meningioma": (
        "The model's output resembles a meningioma, usually a slow-growing extra-axial tumour of the meninges.",
        (
            "Review of the full MRI study by a neuroradiologist.",
            "Small lesions without symptoms are often followed with periodic MRI monitoring to assess growth.",
            (
                "Neurosurgical consultation when the lesion is symptomatic, large, growing "
                "or compresses nearby structures."
            ),
            "Radiotherapy or radiosurgery are options a specialist may discuss for selected lesions.",
        ),
    ),
    "pituitary": (
        "The model's output resembles a pituitary tumour, usually an adenoma of the sellar region.",
        (
            "Dedicated pituitary (sellar) MRI protocol and review by a neuroradiologist.",
            "Endocrine consultation with pituitary hormone assessment (hormone excess or deficiency).",
            "Visual field testing (ophthalmology) if the lesion may reach the optic chiasm.",
            "Neurosurgical consultation for lesions that are large, compressive or hormonally active.",
        ),
    ),
    "notumor": (
        "The model found no pattern of the three tumour types it knows on this image.",
        (
            "This does not exclude disease: the model sees one slice and knows only three tumour types.",
            "If symptoms or clinical suspicion persist, the full study should be reviewed by a radiologist.",
        ),
    ),
}


def guidance_for(prediction: str, probability: float | None = None) -> Guidance:
    """The guidance block for a predicted class.

    Args:
        prediction: Class name (``glioma``, ``meningioma``, ``notumor``, ``pituitary``).
        probability: The model's probability for it; a low value adds a caution.

    Raises:
        KeyError: Unknown class.
    """
    if prediction not in _GUIDANCE:
        raise KeyError(f"no guidance for class {prediction!r}; known: {', '.join(_GUIDANCE)}")
    summary, steps = _GUIDANCE[prediction]
    if probability is not None and probability < LOW_CONFIDENCE:
        steps = (
            (
                f"The model is uncertain (probability {probability:.0%}); give this result little weight "
                "and consider the other classes shown in the probability bars."
            ),
            *steps,
        )
    title = f"Typical next steps to discuss with a specialist ({CLASS_TITLES.get(prediction, prediction)})"
    return Guidance(title=title, summary=summary, steps=steps)
