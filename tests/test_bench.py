"""``brainxai bench``: interleaved timing, the issue-25 ratio targets and the text report."""

from __future__ import annotations

import pytest

from brainxai.bench import RATIO_TARGETS, Figure, format_bench, ratios, run_bench, time_interleaved


def test_time_interleaved_takes_turns_and_warms_every_figure_up() -> None:
    calls: list[str] = []
    figures = [
        Figure("a", lambda: calls.append("a")),
        Figure("b", lambda: calls.append("b")),
        Figure("slow", lambda: calls.append("slow"), every=2),
    ]
    out = time_interleaved(figures, rounds=4, warmup=4)
    warm = 4 + 4 + 2  # the slow figure gets warmup // every, at least 2
    assert calls[:warm] == ["a"] * 4 + ["b"] * 4 + ["slow"] * 2
    assert calls[warm:] == ["a", "b", "slow", "a", "b", "a", "b", "slow", "a", "b"]
    assert {k: v["n"] for k, v in out.items()} == {"a": 4, "b": 4, "slow": 2}
    assert all(0 <= v["median"] <= v["p95"] for v in out.values())


def _figures(**over: float) -> dict:
    base = {
        "classify_ms": 6.0,
        "gradcam_ms": 18.0,
        "lrp_ms": 100.0,
        "analyze_ms": 140.0,
        "resnet18_classify_ms": 20.0,
        "throughput_ips": 160.0,
    }
    return base | over


def test_ratios_against_their_targets() -> None:
    r = ratios(_figures())
    assert set(r) == set(RATIO_TARGETS)
    assert r["ratio_classify_vs_resnet18"]["value"] == pytest.approx(0.3)
    assert r["ratio_classify_vs_gradcam"]["value"] == pytest.approx(6 / 18)
    assert r["ratio_batch32_vs_resnet18_rate"]["value"] == pytest.approx(160 / 50)  # ResNet-18: 50 images/s
    assert r["ratio_analyze_vs_lrp"]["value"] == pytest.approx(1.4)
    assert all(v["pass"] for v in r.values())

    bad = ratios(_figures(classify_ms=12.0, throughput_ips=140.0, analyze_ms=151.0))
    assert not bad["ratio_classify_vs_resnet18"]["pass"]  # 0.6 > 0.5
    assert bad["ratio_classify_vs_gradcam"]["pass"]  # 12 <= 18
    assert not bad["ratio_batch32_vs_resnet18_rate"]["pass"]  # 2.8 < 3
    assert not bad["ratio_analyze_vs_lrp"]["pass"]  # 1.51 > 1.5
    assert "ratio_analyze_vs_lrp" not in ratios({k: v for k, v in _figures().items() if k != "analyze_ms"})


def test_format_bench_shows_figures_and_ratio_verdicts() -> None:
    result = {
        "hardware": {"cpu": "x", "cores": 2, "torch_threads": 2, "load_average_start": [0.1, 0.2, 0.3]},
        "model": {"name": "m", "backend": "onnx"},
        "load_s": 0.1,
        "first_classify_s": 0.2,
        "rss_after_load_mb": 500.0,
        "classify": {"median": 6.0, "p95": 7.0, "n": 20},
        **_figures(analyze_ms=200.0),
    }
    result |= ratios(result)
    text = format_bench(result)
    assert "classified by onnx" in text and "load average [0.1, 0.2, 0.3]" in text
    assert "classify (ms)" in text
    line = next(row for row in text.splitlines() if row.startswith("ratio_analyze_vs_lrp"))
    assert "2.00" in line and "FAIL" in line
    assert "pass" in next(row for row in text.splitlines() if row.startswith("ratio_classify_vs_resnet18"))


@pytest.mark.slow
def test_run_bench_reports_every_figure_and_ratio() -> None:
    result = run_bench(repeats=2, methods=("gradcam",), with_analyze=False, with_peer=False)
    for key in ("classify_ms", "throughput_ips", "gradcam_ms", "resnet18_classify_ms", "first_classify_s"):
        assert result[key] > 0
    assert result["classify"]["n"] == 2 and result["throughput_batch32"]["n"] >= 1
    assert {"ratio_classify_vs_resnet18", "ratio_classify_vs_gradcam", "ratio_batch32_vs_resnet18_rate"} <= set(result)
    assert "ratio_analyze_vs_lrp" not in result  # no analysis timed
    assert "ratio_classify_vs_resnet18" in format_bench(result)
