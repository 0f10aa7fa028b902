"""Before/after: every fast path against the eager library baseline, measured in one run, same images.

For the shipped default model and for ``resnet18`` (random weights: latency does not depend on
them), each row times the plain library call ("baseline": eager PyTorch forward, pytorch-grad-cam's
``GradCAM``, zennit's ``Gradient`` attributor with the composite registered per call) and the path
brainxai uses, and checks that both give the same output. Candidate speed-ups that brainxai does not
use (channels-last, ONNX Runtime, int8 static quantisation, ``torch.compile``) are timed too; the
quantised model is also scored on the raw and de-duplicated Testing sets, because it is only
acceptable if accuracy drops by at most 0.2 points.

    python benchmarks/perf.py --data ../shared/data/brain-tumor-mri \
        --dedup-list runs/compare/audit/audit_dedup_test.txt --out benchmarks/perf
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainxai.bench import hardware_summary
from brainxai.inference import Classifier
from brainxai.io.raster import read_raster
from brainxai.pipeline.demo import sample_scans

REPEATS = 20
LRP_NOTE = (
    "hooked BN-folded copy kept between calls; z+ skips its all-zero branch and sign terms; "
    "ReLU pass-through without hooks; no discarded input gradients"
)


def _one_hot_relevance(out: torch.Tensor) -> torch.Tensor:
    return out * torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)


def _library_lrp(model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """zennit as documented: EpsilonPlusFlat + canonizers, registered for each attribution."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    from brainxai.explain.lrp import canonizers_for

    def run(x: torch.Tensor) -> np.ndarray:
        for p in model.parameters():
            p.requires_grad_(False)
        composite = EpsilonPlusFlat(epsilon=1e-6, canonizers=canonizers_for(model))
        with Gradient(model=model, composite=composite) as attributor:
            _, rel = attributor(x.clone().requires_grad_(True), _one_hot_relevance)
        return rel.sum(1).detach().numpy()

    return run


def _library_gradcam(model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    from pytorch_grad_cam import GradCAM

    from brainxai.explain.cam import aligned_maps
    from brainxai.models import get_target_layer

    layer = get_target_layer(model)

    def run(x: torch.Tensor) -> np.ndarray:
        with GradCAM(model=model, target_layers=[layer]) as cam:
            # brainxai's documented receptive-field alignment (explain/cam.py) is part of the method.
            return aligned_maps(cam(input_tensor=x, targets=None), cam, model, layer, x)

    return run


def _ours(method: str, model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    from brainxai.explain import create_explainer

    explainer = create_explainer(method, model)
    return lambda x: np.stack([e.relevance for e in explainer.explain(x)])


def _onnx_session(model: torch.nn.Module, x: torch.Tensor, quantize_with: np.ndarray | None = None) -> Any:
    """An ONNX Runtime session for ``model`` (fp32, or int8 QDQ calibrated on ``quantize_with``)."""
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(
        model,
        x,
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
    )
    data = buf.getvalue()
    if quantize_with is not None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"x": quantize_with[i : i + 1]} for i in range(len(quantize_with))])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(data)
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
            data = dst.read_bytes()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ORT's threads spin after each run by default, stealing the CPU from the interleaved eager call.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _pair(name: str, baseline: Callable[[], Any], ours: Callable[[], Any], repeats: int = REPEATS) -> dict[str, Any]:
    """Times baseline and ours interleaved (so load changes hit both alike)."""
    for fn in (baseline, ours):
        fn()
        fn()
    b, o = [], []
    for _ in range(repeats):
        for fn, acc in ((baseline, b), (ours, o)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1000)
    row = {"figure": name, "baseline_ms": float(np.median(b)), "ours_ms": float(np.median(o))}
    row["speedup"] = row["baseline_ms"] / row["ours_ms"]
    return row


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _test_set(data: Path, clf: Classifier, dedup_list: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from brainxai.data.dataset import decode_samples, discover_samples
    from brainxai.evaluation.evaluate import resolve_test_folder

    folder = resolve_test_folder(data)
    decoded = decode_samples(
        discover_samples(folder, clf.classes), clf.preprocess, cache_dir=".cache/brainxai", progress=False
    )
    rel = [os.path.relpath(s.path, data) for s in decoded.samples]
    labels = np.array([s.label for s in decoded.samples])
    keep = set(dedup_list.read_text().split()) if dedup_list else set()
    dedup = np.array([r in keep for r in rel])
    return decoded.images, labels, dedup


def _accuracy(
    predict: Callable[[np.ndarray], np.ndarray],
    clf: Classifier,
    images: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
) -> dict[str, float]:
    preds = np.concatenate(
        [predict(clf.tensor(images[i : i + 64]).numpy()).argmax(1) for i in range(0, len(images), 64)]
    )
    correct = preds == labels
    return {"raw": float(correct.mean()), "dedup": float(correct[mask].mean()) if mask.any() else float("nan")}


def _rss_of(code: str) -> float:
    """RSS in MB of a fresh interpreter after running ``code``."""
    script = code + "\nimport re;print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def _server_rss() -> dict[str, float]:
    """RSS of ``brainxai serve`` after start-up, and after analyses with each explanation family."""
    import httpx

    from brainxai.web.process import ServerProcess, add_user, rss_bytes

    work = Path(tempfile.mkdtemp(prefix="brainxai-perf-"))
    add_user(work / "data", "perf", "perf-password-123")
    scan = next(iter(sample_scans().values())).read_bytes()
    out: dict[str, float] = {}
    with ServerProcess(work / "data", None, log_path=work / "server.log") as server:
        out["server after start-up"] = rss_bytes(server.pid) / 2**20
        tok = httpx.post(
            f"{server.url}/api/auth/token", json={"username": "perf", "password": "perf-password-123"}, timeout=60
        ).json()["access_token"]
        for method in ("gradcam", "lrp"):
            httpx.post(
                f"{server.url}/api/analyze",
                headers={"Authorization": f"Bearer {tok}"},
                files={"file": ("scan.jpg", scan)},
                data={"patient_code": "PERF-1", "method": method},
                timeout=300,
            ).raise_for_status()
            out[f"server after an analysis with {method}"] = rss_bytes(server.pid) / 2**20
    return out


def run(data: Path | None, dedup_list: Path | None, with_compile: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    scans = [read_raster(p) for p in sample_scans().values()]
    result: dict[str, Any] = {
        "hardware": hardware_summary(),
        "repeats": REPEATS,
        "rows": [],
        "equivalence": {},
        "candidates": {},
    }
    rows, eq, cand = result["rows"], result["equivalence"], result["candidates"]

    t = time.perf_counter()
    clf = Classifier.load(device="cpu")
    result["load_s"] = time.perf_counter() - t
    x1 = clf.tensor(clf.prepare(scans[0])[None])
    x32 = clf.tensor(np.stack([clf.prepare(scans[i % len(scans)]) for i in range(32)]))
    eager, folded = clf.model, clf._classify_model

    def fwd(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)

        return call

    rows.append(_pair("default: classify, batch 1", fwd(eager, x1), fwd(folded, x1)) | {"ours": "BatchNorm folded"})
    eq["default classify (folded vs eager logits)"] = _max_rel_diff(
        fwd(folded, x32)().numpy(), fwd(eager, x32)().numpy()
    )
    r = _pair("default: batch 32", fwd(eager, x32), fwd(folded, x32), repeats=5) | {"ours": "BatchNorm folded"}
    r["baseline_ips"], r["ours_ips"] = 32000 / r["baseline_ms"], 32000 / r["ours_ms"]
    rows.append(r)

    for method, library in (("gradcam", _library_gradcam), ("lrp", _library_lrp)):
        lib, ours = library(eager), _ours(method, eager)
        eq[f"default {method} map (ours vs library)"] = _max_rel_diff(ours(x32[:4]), lib(x32[:4]))
        note = "exact GAP shortcut, no backward" if method == "gradcam" else LRP_NOTE
        rows.append(_pair(f"default: classify + {method}", lambda f=lib: f(x1), lambda f=ours: f(x1)) | {"ours": note})

    # Candidates for the plain classify path, against the eager baseline.
    import copy

    cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)  # Module.to is in place: use a copy
    cand["default channels-last (folded)"] = _pair(
        "channels-last", fwd(eager, x1), fwd(cl, x1.contiguous(memory_format=torch.channels_last))
    )
    sess = _onnx_session(folded, x1)
    cand["default ONNX Runtime fp32"] = _pair(
        "onnxruntime fp32", fwd(eager, x1), lambda: sess.run(None, {"x": x1.numpy()})
    )
    eq["default ONNX Runtime fp32 logits"] = _max_rel_diff(
        sess.run(None, {"x": x32.numpy()})[0], fwd(eager, x32)().numpy()
    )

    if data is not None:
        images, labels, dedup = _test_set(data, clf, dedup_list)
        rng = np.random.default_rng(0)
        from brainxai.data.dataset import decode_samples, discover_samples
        from brainxai.training.split import resolve_training_folder

        train = decode_samples(
            discover_samples(resolve_training_folder(data), clf.classes),
            clf.preprocess,
            cache_dir=".cache/brainxai",
            progress=False,
        )
        calib = clf.tensor(train.images[rng.choice(len(train.images), 128, replace=False)]).numpy()
        q = _onnx_session(folded, x1, quantize_with=calib)
        cand["default ONNX Runtime int8 (static, QDQ)"] = _pair(
            "onnxruntime int8", fwd(eager, x1), lambda: q.run(None, {"x": x1.numpy()})
        )

        def torch_predict(arr: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return folded(torch.from_numpy(arr)).numpy()

        acc_fp32 = _accuracy(torch_predict, clf, images, labels, dedup)
        acc_int8 = _accuracy(lambda a: q.run(None, {"x": a})[0], clf, images, labels, dedup)
        result["quantisation_accuracy"] = {
            "fp32": acc_fp32,
            "int8": acc_int8,
            "drop_points": {k: 100 * (acc_fp32[k] - acc_int8[k]) for k in acc_fp32},
            "n_raw": len(labels),
            "n_dedup": int(dedup.sum()),
        }

    if with_compile:
        t = time.perf_counter()
        compiled = torch.compile(folded)
        fwd(compiled, x1)()
        cand["default torch.compile (folded)"] = _pair("torch.compile", fwd(eager, x1), fwd(compiled, x1)) | {
            "compile_s": time.perf_counter() - t
        }

    # resnet18 at 224x224, the second reference model.
    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, LoadedCheckpoint

    torch.manual_seed(0)
    resnet = create_model("resnet18", pretrained=False).eval()
    rclf = Classifier(
        LoadedCheckpoint(
            model=resnet,
            meta=CheckpointMeta(
                model="resnet18", classes=list(clf.classes), preprocess=resnet.brainxai_config.preprocess
            ),
            weights_path=Path(),
            sha256="",
        ),
        device="cpu",
    )
    r1 = rclf.tensor(rclf.prepare(scans[0])[None])
    rows.append(
        _pair("resnet18: classify, batch 1", fwd(resnet, r1), fwd(rclf._classify_model, r1))
        | {"ours": "BatchNorm folded"}
    )
    for method, library in (("gradcam", _library_gradcam), ("lrp", _library_lrp)):
        lib, ours = library(resnet), _ours(method, resnet)
        eq[f"resnet18 {method} map (ours vs library)"] = _max_rel_diff(ours(r1), lib(r1))
        rows.append(
            _pair(f"resnet18: classify + {method}", lambda f=lib: f(r1), lambda f=ours: f(r1))
            | {"ours": "exact shortcut: Grad-CAM weights = fc weights" if method == "gradcam" else LRP_NOTE}
        )
    rsess = _onnx_session(rclf._classify_model, r1)
    cand["resnet18 ONNX Runtime fp32"] = _pair(
        "onnxruntime fp32", fwd(resnet, r1), lambda: rsess.run(None, {"x": r1.numpy()})
    )

    result["rss_mb"] = {
        "import torch": _rss_of("import torch"),
        "import torch + torchvision": _rss_of("import torch, torchvision"),
        "Classifier.load() (classify only)": _rss_of(
            "from brainxai.inference import Classifier; Classifier.load(device='cpu')"
        ),
    } | _server_rss()
    return result


def to_markdown(result: dict[str, Any], command: str) -> str:
    hw = result["hardware"]
    out = [
        "# Performance: before and after, one run",
        "",
        f"Command: `{command}`",
        "",
        f"Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['torch_threads']} torch threads, torch {hw['torch']}"
        + (f", GPU {hw['gpu']}" if "gpu" in hw else ", no GPU")
        + ".",
        (
            f"Medians of {result['repeats']} interleaved repeats after warm-up; "
            "batch 1 on a real sample scan unless stated."
        ),
        "",
        "| figure | baseline (eager library call) ms | brainxai ms | speed-up | what brainxai does |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        out.append(
            f"| {r['figure']} | {r['baseline_ms']:.1f} | {r['ours_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {r.get('ours', '')} |"
        )
    out += ["", "Equivalence (max |ours - reference| / max |reference|):", ""]
    out += [f"- {k}: {v:.2e}" for k, v in result["equivalence"].items()]
    out += [
        "",
        "## Candidates measured and not used",
        "",
        "| candidate | eager ms | candidate ms | speed-up |",
        "|---|---|---|---|",
    ]
    for k, r in result["candidates"].items():
        out.append(f"| {k} | {r['baseline_ms']:.1f} | {r['ours_ms']:.1f} | {r['speedup']:.2f}x |")
    if "quantisation_accuracy" in result:
        qa = result["quantisation_accuracy"]
        out += [
            "",
            (
                f"int8 accuracy: raw {qa['int8']['raw']:.4f} vs fp32 {qa['fp32']['raw']:.4f} "
                f"(drop {qa['drop_points']['raw']:.2f} points, n={qa['n_raw']}); de-duplicated "
                f"{qa['int8']['dedup']:.4f} vs {qa['fp32']['dedup']:.4f} "
                f"(drop {qa['drop_points']['dedup']:.2f} points, n={qa['n_dedup']})."
            ),
        ]
    out += ["", "## Memory (RSS of a fresh process, MB)", ""]
    out += [f"- {k}: {v:.0f}" for k, v in result["rss_mb"].items()]
    out.append(f"\nModel load: {result['load_s']:.2f} s.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="Dataset root, for the quantised model's accuracy.")
    ap.add_argument("--dedup-list", type=Path, default=None)
    ap.add_argument("--compile", action="store_true", help="Also time torch.compile (needs a C compiler).")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/perf"))
    args = ap.parse_args(argv)
    result = run(args.data, args.dedup_list, args.compile)
    command = "python benchmarks/perf.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["command"] = command
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = to_markdown(result, command)
    args.out.with_suffix(".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
