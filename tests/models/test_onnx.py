"""ONNX Runtime serving: same probabilities and features as torch, a disk cache, a clean fallback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import brainxai.models.onnx as onnx_backend
from brainxai.data.preprocess import PreprocessConfig
from brainxai.inference import Classifier, default_checkpoint_path
from brainxai.io.raster import read_raster
from brainxai.models.checkpoint import CheckpointMeta, LoadedCheckpoint
from brainxai.models.onnx import resolve_backend

pytest.importorskip("onnxruntime")
if not default_checkpoint_path().with_suffix(".safetensors").is_file():
    pytest.skip("no default model shipped", allow_module_level=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private export cache for this module (the user's cache is never touched)."""
    path = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINXAI_ONNX_CACHE", str(path))
        mp.delenv("BRAINXAI_BACKEND", raising=False)
        yield path


@pytest.fixture(scope="module")
def pair(cache: Path) -> tuple[Classifier, Classifier]:
    """The shipped model served by ONNX Runtime and by torch."""
    fast = Classifier.load(device="cpu")
    assert fast.backend == "onnx"
    assert fast.onnx_session() is not None
    return fast, Classifier.load(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def prepared_samples(pair: tuple[Classifier, Classifier], samples_dir: Path) -> np.ndarray:
    scans = [read_raster(p) for p in sorted(samples_dir.glob("*.jpg"))]
    assert len(scans) >= 4
    return np.stack([pair[0].prepare(s) for s in scans])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_probabilities_match_torch_on_the_sample_scans(pair, prepared_samples) -> None:
    fast, ref = pair
    batched = fast.predict_proba_prepared(prepared_samples)
    np.testing.assert_allclose(batched, ref.predict_proba_prepared(prepared_samples), atol=1e-5, rtol=0)
    for one in prepared_samples:  # batch 1, as the analysis service classifies
        np.testing.assert_allclose(
            fast.predict_proba_prepared(one[None]), ref.predict_proba_prepared(one[None]), atol=1e-5, rtol=0
        )
    assert [p.label for p in fast.predict(list(prepared_samples))] == [
        p.label for p in ref.predict(list(prepared_samples))
    ]


def test_probabilities_and_logits_match_torch_on_random_inputs(pair) -> None:
    fast, ref = pair
    images = np.random.default_rng(0).integers(0, 256, (5, 224, 224), dtype=np.uint8)
    for batch in (images[:1], images):
        np.testing.assert_allclose(
            fast.predict_proba_prepared(batch, batch_size=3), ref.predict_proba_prepared(batch), atol=1e-5, rtol=0
        )
        assert _rel(fast.logits_prepared(batch), ref.logits_prepared(batch)) < 1e-5


def test_features_match_torch(pair, prepared_samples) -> None:
    fast, ref = pair
    for batch in (prepared_samples[:1], prepared_samples):
        logits, feats = fast.logits_and_features_prepared(batch, batch_size=3)
        ref_logits, ref_feats = ref.logits_and_features_prepared(batch)
        assert feats.shape == ref_feats.shape == (len(batch), 1280)
        assert feats.dtype == np.float32 and logits.dtype == np.float32
        assert _rel(feats, ref_feats) < 1e-4
        assert _rel(logits, ref_logits) < 1e-5
    empty_logits, empty_feats = fast.logits_and_features_prepared(prepared_samples[:0])
    assert empty_logits.shape == (0, 4) and empty_feats.shape == (0, 1280)


def test_second_load_reads_the_cache_without_exporting(pair, cache, monkeypatch) -> None:
    sha = pair[0].checkpoint.sha256
    entry = onnx_backend.cached_path(sha)
    assert entry.is_file() and entry.parent == cache

    def no_export(*_a, **_k):
        raise AssertionError("exported again despite a cached model")

    monkeypatch.setattr(onnx_backend, "export_onnx", no_export)
    again = Classifier.load(device="cpu")
    assert again.onnx_session() is not None and again.backend == "onnx"


def _tiny(sha: str) -> LoadedCheckpoint:
    """A small conv net with BatchNorm and a linear head, standing in for a checkpoint read from disk."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()
    pre = PreprocessConfig(img_size=32, crop=False)
    meta = CheckpointMeta(model="tiny", classes=["a", "b", "c", "d"], preprocess=pre)
    return LoadedCheckpoint(model=model, meta=meta, weights_path=Path("tiny"), sha256=sha)


def test_damaged_cache_entry_is_exported_again(cache) -> None:
    entry = onnx_backend.cached_path("tiny-damaged")
    entry.write_bytes(b"not an onnx model")
    clf = Classifier(_tiny("tiny-damaged"), device="cpu")
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    ref = Classifier(_tiny("tiny-damaged"), device="cpu", backend="torch").predict_proba_prepared(x)
    np.testing.assert_allclose(clf.predict_proba_prepared(x), ref, atol=1e-6, rtol=0)
    assert clf.backend == "onnx"
    assert entry.read_bytes()[:4] != b"not "


def test_falls_back_to_torch_with_one_warning_when_onnxruntime_is_missing(cache, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    clf = Classifier(_tiny("tiny-no-runtime"), device="cpu")
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="brainxai.inference"):
        probs = clf.predict_proba_prepared(x)
        clf.predict_proba_prepared(x)
        clf.logits_and_features_prepared(x)
    assert clf.backend == "torch" and clf.onnx_session() is None
    assert len([r for r in caplog.records if "ONNX Runtime is unavailable" in r.getMessage()]) == 1
    ref = Classifier(_tiny("tiny-no-runtime"), device="cpu", backend="torch").predict_proba_prepared(x)
    np.testing.assert_array_equal(probs, ref)
    forced = Classifier(_tiny("tiny-no-runtime"), device="cpu", backend="onnx")
    with pytest.raises(ImportError):
        forced.predict_proba_prepared(x)


def test_falls_back_to_torch_when_the_export_fails(cache, monkeypatch, caplog) -> None:
    def broken(*_a, **_k):
        raise onnx_backend.OnnxExportError("untraceable")

    monkeypatch.setattr(onnx_backend, "export_onnx", broken)
    clf = Classifier(_tiny("tiny-broken-export"), device="cpu")
    with caplog.at_level(logging.WARNING, logger="brainxai.inference"):
        clf.predict_proba_prepared(np.zeros((1, 32, 32), np.uint8))
    assert clf.backend == "torch"
    assert any("untraceable" in r.getMessage() for r in caplog.records)


def test_forced_torch_backend_by_argument_and_environment(cache, monkeypatch) -> None:
    clf = Classifier(_tiny("tiny-forced"), device="cpu", backend="torch")
    assert clf.backend == "torch" and clf.onnx_session() is None
    monkeypatch.setenv("BRAINXAI_BACKEND", "torch")
    assert Classifier(_tiny("tiny-forced"), device="cpu").backend == "torch"
    monkeypatch.setenv("BRAINXAI_BACKEND", "onnx")
    assert Classifier(_tiny("tiny-forced"), device="cpu", backend="torch").backend == "torch"  # argument wins
    assert not onnx_backend.cached_path("tiny-forced").exists()


def test_backend_resolution() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == ("onnx", False)
    assert resolve_backend("auto", cpu, cacheable=False) == ("torch", False)  # in-memory model: no cache key
    assert resolve_backend("auto", cuda) == ("torch", False)
    assert resolve_backend("torch", cuda) == ("torch", True)
    with pytest.raises(ValueError, match="CPU"):
        resolve_backend("onnx", cuda)
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("tensorrt", cpu)


def test_export_rejects_outputs_that_differ_from_torch() -> None:
    loaded = _tiny("")
    shape = (3, 32, 32)
    session = onnx_backend.OnnxClassifier(onnx_backend.export_onnx(loaded.model, shape))
    assert onnx_backend.check_equivalence(session, loaded.model, shape) < 1e-5
    with torch.no_grad():
        loaded.model[-1].bias.add_(1.0)  # the export no longer reproduces the model
    with pytest.raises(onnx_backend.OnnxExportError, match="differ"):
        onnx_backend.check_equivalence(session, loaded.model, shape)


def test_a_confident_segmenter_passes_the_check_on_absolute_probabilities() -> None:
    # Probabilities near zero everywhere (logits about -12) on the check's random input: relative to their
    # largest value, float rounding would look like a mismatch; a probability is compared in absolute terms.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)).eval()
    with torch.no_grad():
        net[2].bias.fill_(-12.0)
    shape = (3, 32, 32)
    session = onnx_backend.OnnxModel(onnx_backend.export_onnx(net, shape, onnx_backend.SEGMENTER))
    assert onnx_backend.check_equivalence(session, net, shape, onnx_backend.SEGMENTER) < 1e-6
    with torch.no_grad():
        net[2].bias.fill_(0.0)  # the export no longer reproduces the model: probabilities differ by ~0.5
    with pytest.raises(onnx_backend.OnnxExportError, match="absolute"):
        onnx_backend.check_equivalence(session, net, shape, onnx_backend.SEGMENTER)
