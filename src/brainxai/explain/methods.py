"""The built-in explanation methods by name: the one list every selection of methods derives from.

Plain data, so that callers can name methods without importing the libraries behind them.
"""

#: Every built-in method, in the order the registry lists them (``list_explainers``).
METHODS: tuple[str, ...] = ("lrp", "gradcam", "gradcam++", "hirescam", "guided-backprop", "guided-gradcam")

#: The methods an analysis offers (the web page when the registry cannot be asked, the benchmarked
#: set): every method but guided backprop, whose unsigned sensitivity map serves as a factor of
#: Guided Grad-CAM.
ANALYSIS_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m != "guided-backprop")

#: :data:`ANALYSIS_METHODS` in the order ``brainxai bench`` times them: the CAM family first, LRP last
#: (the order decides which sample scan each timed call gets, as ``benchmarks/perf.md`` was measured).
BENCH_METHODS: tuple[str, ...] = (*(m for m in ANALYSIS_METHODS if m != "lrp"), "lrp")
