"""``brainxai bench``'s CPU-time figures: each timed figure's CPU median and the CPU-time ratios."""

from __future__ import annotations

import time

from brainxai.bench import Figure, format_bench, ratios, time_interleaved


def _spin(ms: float) -> None:
    end = time.process_time() + ms / 1000
    while time.process_time() < end:
        pass


def test_cpu_median_follows_the_work_and_not_the_sleep() -> None:
    out = time_interleaved(
        [Figure("busy", lambda: _spin(8)), Figure("asleep", lambda: time.sleep(0.008))], rounds=3, warmup=1
    )
    assert out["busy"]["cpu_median"] >= 7.5
    assert out["asleep"]["cpu_median"] < 3.0
    assert out["asleep"]["median"] >= 7.5


def test_ratio_has_cpu_value_where_both_figures_have_cpu_times() -> None:
    result = {
        "analyze_ms": 150.0,
        "lrp_ms": 100.0,
        "analyze_lrp_with_report": {"median": 150.0, "p95": 160.0, "n": 5, "cpu_median": 240.0},
        "classify+lrp": {"median": 100.0, "p95": 110.0, "n": 20, "cpu_median": 200.0},
        "classify_ms": 10.0,
        "gradcam_ms": 20.0,
    }
    out = ratios(result)
    assert out["ratio_analyze_vs_lrp"]["value"] == 1.5 and out["ratio_analyze_vs_lrp"]["pass"]
    assert out["ratio_analyze_vs_lrp"]["cpu_value"] == 1.2
    assert "cpu_value" not in out["ratio_classify_vs_gradcam"]  # no timed figures behind those medians
    text = format_bench(
        {
            "hardware": {"cpu": "x", "cores": 2, "torch_threads": 2},
            "model": {"name": "m"},
            "load_s": 0.1,
            "rss_after_load_mb": 1.0,
            "throughput_ips": 1.0,
            **result,
            **out,
        }
    )
    assert "CPU-time ratio 1.20" in text
    assert "240.0" in next(line for line in text.splitlines() if line.startswith("analyze_lrp_with_report"))


def test_load_warning_only_when_the_load_exceeded_the_cores() -> None:
    from brainxai.bench import load_warning

    assert load_warning({"cores": 2, "load_average_start": [0.4, 1, 1], "load_average_end": [1.9, 1, 1]}) is None
    warning = load_warning({"cores": 2, "load_average_start": [0.4, 1, 1], "load_average_end": [9.5, 1, 1]})
    assert warning is not None and "9.5 > 2 cores" in warning
    assert load_warning({"cores": 2}) is None
