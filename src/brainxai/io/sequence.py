"""Naming the MR sequence from the free text a scanner or a user writes (series description, file name)."""

from __future__ import annotations


def sequence_from_text(*texts: str | None) -> str | None:
    """Guesses the MR sequence (FLAIR, T2, T1, DWI, perfusion) from descriptive text, or None."""
    text = " ".join(t for t in texts if t).upper().replace("_", " ").replace("-", " ")
    if not text.strip():
        return None
    if any(k in text for k in ("PERF", "DSC", "RCBV", "CBV", "DCE")):
        return "perfusion"
    if any(k in text for k in ("DWI", "DIFFUSION", "ADC", "TRACE")):
        return "DWI"
    words = text.split()
    t1 = any(w.startswith("T1") for w in words) or "MPRAGE" in text or "SPGR" in text
    if "FLAIR" in text and not t1:
        return "FLAIR"
    if any(w.startswith("T2") for w in words):
        return "T2"
    if t1:
        return "T1"
    return None
