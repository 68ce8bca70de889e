"""State persistence: an emulator's collections as one JSON file, flushed from a background
thread."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sandbox.wire import dumps, loads

logger = logging.getLogger(__name__)


class StateFile:
    """An emulator's state as one JSON file, written atomically (temp file + ``os.replace``).

    Writes only mark the state dirty; a background thread flushes it at most every
    ``interval_s`` seconds, so a write costs O(1) however large the state is. :meth:`stop`
    flushes what is left.
    """

    def __init__(
        self, path: Path, snapshot: Callable[[], Mapping[str, Any]], interval_s: float = 0.5
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._interval_s = interval_s
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return loads(self.path.read_bytes())

    def mark_dirty(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sandbox-state-{self.path.stem}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            text = dumps(self._snapshot())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # keep flushing later writes even if one flush failed
                logger.exception("could not write sandbox state to %s", self.path)
