"""Running brainxai on engines users already operate: Ray Data for archive-scale batch analysis.

- :mod:`~brainxai.scale.inputs`: what a run analyses (folders, globs, manifests) and what an earlier
  run already wrote (resume).
- :mod:`~brainxai.scale.rows`: the result table's schema and one row per scan.
- :mod:`~brainxai.scale.ray_engine`: the Ray Data pipeline (``brainxai analyze --engine ray``).

Ray is an optional extra (``pip install "brainxai[ray]"``); nothing here imports it until the Ray
engine runs. Distributed training lives in :mod:`brainxai.training.distributed`.
"""
