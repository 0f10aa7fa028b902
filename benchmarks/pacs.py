"""What the PACS round trip adds to the analysis of one study: Orthanc on loopback against the same analysis locally.

Starts a throw-away Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, the tests' launcher in
``tests/orthanc.py``) with one synthetic axial MR study of ``--slices`` slices, loads the model once,
warms it up, then alternates, ``--repeats`` times, in one process:

- **local**: :func:`brainxai.pipeline.series.analyze_study` on the study's files in a folder, with
  DICOM outputs (what ``brainxai analyze --dicom-out`` does);
- **PACS**: :func:`brainxai.pacs.service.analyze_pacs_study`: QIDO and the search for earlier
  results, WADO-RS retrieve, the same analysis, ONE STOW-RS of the results. The results stored by
  the previous repetition are deleted first, so every STOW really stores.

The overhead is PACS minus local per pair; its median is judged against the target (<= 2 s).
Writes a Markdown report naming this command.

    python benchmarks/pacs.py --out benchmarks/pacs.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Orthanc launcher and the synthetic series the tests use

from orthanc import make_series, orthanc_missing, running_orthanc  # noqa: E402

from brainxai.pacs import Credentials, PacsClient  # noqa: E402
from brainxai.pacs.service import analyze_pacs_study  # noqa: E402
from brainxai.pipeline.options import AnalysisOptions  # noqa: E402
from brainxai.pipeline.series import analyze_study  # noqa: E402
from brainxai.pipeline.service import AnalysisService  # noqa: E402

TARGET_S = 2.0


def _delete_results(orthanc, study_uid: str) -> None:
    """Deletes the study's brainxai series (Orthanc REST), so that the next STOW stores anew."""
    auth = (orthanc.user, orthanc.password)
    query = {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
    found = requests.post(f"{orthanc.rest_url}/tools/find", json=query, auth=auth, timeout=30)
    found.raise_for_status()
    for series in found.json():
        if series["MainDicomTags"].get("Manufacturer") == "brainxai":
            requests.delete(f"{orthanc.rest_url}/series/{series['ID']}", auth=auth, timeout=30).raise_for_status()


def run(slices: int, repeats: int, method: str, device: str, work: Path) -> dict:
    series = make_series("glioma", slices=slices)
    local_in = work / "local-in"
    local_in.mkdir()
    for i, data in enumerate(series.files):
        (local_in / f"{i:05d}.dcm").write_bytes(data)
    service = AnalysisService(None, device=device)
    options = AnalysisOptions(method=method, agreement=False, report=True)

    def local(tag: str) -> float:
        t0 = time.perf_counter()
        one = dataclasses.replace(options, dicom_out=work / tag / "dicom")
        analyze_study(local_in, one, out_dir=work / tag / "out", service=service)
        return time.perf_counter() - t0

    local("warm-up")
    rows = []
    with running_orthanc(work / "orthanc") as orthanc:
        orthanc.upload(list(series.files))
        client = PacsClient(orthanc.dicomweb_url, Credentials(orthanc.user, orthanc.password))
        for k in range(repeats):
            t_local = local(f"local-{k}")
            _delete_results(orthanc, series.study_uid)
            t0 = time.perf_counter()
            outcome = analyze_pacs_study(client, series.study_uid, options, service=service, work_dir=work)
            t_pacs = time.perf_counter() - t0
            if len(outcome.stored) < 1:
                raise RuntimeError(f"nothing stored: {outcome}")
            rows.append({"local_s": t_local, "pacs_s": t_pacs, "stored": len(outcome.stored), **outcome.timings})
    # What the round trip adds to the analysis of the same run: everything but the analysis call itself.
    overhead = [r["pacs_s"] - r["analyse"] for r in rows]
    return {
        "slices": slices,
        "method": method,
        "device": device,
        "rows": rows,
        "median_overhead_s": statistics.median(overhead),
        "max_overhead_s": max(overhead),
    }


def report(res: dict, command: str) -> str:
    verdict = "met" if res["median_overhead_s"] <= TARGET_S else "NOT met"
    lines = [
        "# PACS round trip: what Orthanc on loopback adds to one study's analysis",
        "",
        f"Command: `{command}`",
        "",
        f"One synthetic axial MR study (1 series, {res['slices']} slices of 224x224, 0.9 mm pixels, 5 mm apart), "
        f"explanation `{res['method']}`, device `{res['device']}`, {platform.processor() or platform.machine()}, "
        "Orthanc 1.10 with its DICOMweb plugin on 127.0.0.1, HTTP Basic login. Local and PACS runs alternate in "
        "one process with one loaded model (warmed up first); before each PACS run the previous run's results are "
        "deleted from Orthanc so that the STOW stores them anew.",
        "",
        "| run | PACS round trip (s) | its analysis (s) | **added** (s) | check (s) | retrieve (s) | files (s) "
        "| store (s) | objects stored | local analysis, same run (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(res["rows"], 1):
        lines.append(
            f"| {i} | {r['pacs_s']:.2f} | {r['analyse']:.2f} | **{r['pacs_s'] - r['analyse']:.2f}** | "
            f"{r.get('check', 0):.2f} | {r.get('retrieve', 0):.2f} | {r.get('files', 0):.2f} | "
            f"{r.get('store', 0):.2f} | {r['stored']} | {r['local_s']:.2f} |"
        )
    lines += [
        "",
        f"**Added by the round trip: median {res['median_overhead_s']:+.2f} s, worst {res['max_overhead_s']:+.2f} s; "
        f"target <= {TARGET_S:g} s: {verdict}.**",
        "",
        "**added** is the round trip's wall time minus the time of its own analysis call (the same "
        "`analyze_study` as the local run): `check` (QIDO of the study's series and the search for an earlier "
        "brainxai SR, none here) + `retrieve` (WADO-RS of the series) + `files` (writing the retrieved instances "
        "to a temporary folder, reading the result objects back) + `store` (the single STOW-RS request) + the "
        "temporary folder's clean-up. The local run of the same repetition is shown for reference: on this "
        "2-core machine shared with other jobs the analysis time itself varies a lot between runs (the last "
        "column), which is why the overhead is measured inside the PACS run rather than as the difference of two runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="lrp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pacs.md")
    args = ap.parse_args()
    missing = orthanc_missing()
    if missing:
        sys.exit(f"cannot run: {missing}")
    work = Path(tempfile.mkdtemp(prefix="brainxai-bench-pacs-"))
    try:
        res = run(args.slices, args.repeats, args.method, args.device, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python benchmarks/pacs.py " + " ".join(sys.argv[1:])
    args.out.write_text(report(res, command.strip()))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
