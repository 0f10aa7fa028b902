"""Command-line interface: thin wrappers that turn arguments into library calls.

Each capability registers its commands on :data:`brainxai.cli.app.app` from its own module; the
imports below are what makes them appear.
"""

from __future__ import annotations

import importlib
import logging

from brainxai.cli.app import app

_COMMAND_MODULES = (
    "data",
    "sources",
    "train",
    "calibrate",
    "evaluate",
    "explain",
    "analyze",
    "serve",
    "bench",
    "domain",
    "segment",
    "pacs",
)

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"brainxai.cli.{_name}")
    except ModuleNotFoundError as _exc:
        # A command module that is not written yet; anything else missing is a real error.
        if _exc.name != f"brainxai.cli.{_name}":
            raise
        logging.getLogger(__name__).debug("command module %s not present", _name)

__all__ = ["app"]
