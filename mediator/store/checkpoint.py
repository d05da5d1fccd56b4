"""A WAL checkpointer on its own thread and connection, for SQLite files written on a hot path.

SQLite's automatic checkpoint runs inside the commit that crosses ``wal_autocheckpoint`` pages: that
commit (an ACK, a shared-record write) then pays for copying the WAL back into the database, and a
page written again and again is copied at every crossing. Here the writer's connection sets
``PRAGMA wal_autocheckpoint=0`` and this thread runs ``wal_checkpoint(PASSIVE)`` every ``interval``
seconds: PASSIVE never takes the write lock, so no commit waits for it, and each page is copied once
per round however often it was written in between.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

__all__ = ["CHECKPOINT_INTERVAL_S", "WalCheckpointer"]

log = structlog.get_logger(__name__)

CHECKPOINT_INTERVAL_S = 0.25


class WalCheckpointer:
    """Copies the WAL of ``path`` back into the database every ``interval`` seconds (PASSIVE)."""

    def __init__(self, path: str | Path, *, interval: float = CHECKPOINT_INTERVAL_S, name: str = "sqlite") -> None:
        self.path = Path(path)
        self.interval = interval
        self.name = name
        self.rounds = 0  # checkpoints run so far (for metrics and tests)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (blocking: call it from a thread, or where a short wait is fine)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # this connection never commits
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.rounds += 1
                except sqlite3.Error as exc:  # e.g. disk I/O error: the next round retries
                    log.warning("store.checkpoint_failed", store=self.name, error=type(exc).__name__)
        finally:
            conn.close()
