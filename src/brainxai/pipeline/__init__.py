"""The analysis core: named steps (read, prepare, classify, explain, map back, ...) and what composes them.

:mod:`brainxai.pipeline.steps` holds the steps that every consumer shares (the analysis service,
``brainxai explain`` and the XAI benchmark), so each reads every format and prepares, explains and
maps back the same way.
"""
