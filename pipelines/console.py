"""The console's progress lines: one per stage and batch, never per record, on stderr.

Connectors and transforms write them to the logger ``PROGRESS_LOGGER``; the CLI shows them
unless ``-q`` is given, and the run driver adds its own (which systems it checks, which dataflow
it runs)."""

from __future__ import annotations

import logging
import sys

from transforms.common import PROGRESS_LOGGER


def progress(message: str) -> None:
    logging.getLogger(PROGRESS_LOGGER).info(message)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each line."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def show_progress(enabled: bool) -> None:
    """Progress lines (one per stage and batch, never per record) on stderr."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled and not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
