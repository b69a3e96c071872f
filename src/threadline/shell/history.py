"""IPython's history database, written without holding up the next cell.

IPython stores each cell's input in a cache that its history thread writes to
SQLite; the thread is woken after every cell (``db_cache_size`` is 0). It
writes while holding the cache's lock, and a write is a transaction whose
commit waits for the disk (``synchronous=FULL``: an ``fsync``, about 1 ms
here). The next cell's ``store_inputs`` takes the same lock, so a cell that
follows a quick one waits for the previous cell's commit: with
``store_history`` set -- as JupyterLab, Notebook and nbclient send every cell
-- a ``pass`` round trip took 1.3-1.6 ms instead of 0.6 (in-kernel:
``store_inputs`` 456 us median, blocked; the write 965 us).

``KernelHistoryManager`` writes the same rows with the same statements, but
holds the cache's lock only to take the cache (swapping in an empty list):
the transaction runs outside it. A lock of its own keeps writers in order, so
a reader that first writes the cache out (``search``, ``get_tail``,
``end_session``) still finds every cell stored before it asked -- it waits for
a write under way, then writes what came since. The database, its rows and
the moments they are written are IPython's; only the waiting is gone.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

from IPython.core.history import HistoryManager


class KernelHistoryManager(HistoryManager):  # type: ignore[misc]
    """IPython's ``HistoryManager``; its writes do not block ``store_inputs``."""

    # IPython's traits (annotations only: the traits themselves stay IPython's).
    db_input_cache: list[tuple[Any, ...]]
    db_output_cache: list[tuple[Any, ...]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before IPython's constructor, which may start the saving thread.
        self._writing = threading.Lock()
        super().__init__(*args, **kwargs)

    def writeout_cache(self, conn: sqlite3.Connection | None = None) -> None:
        """Write the cached inputs and outputs to the database (as IPython's does)."""
        if not self.enabled:
            return
        if conn is None:
            conn = self.db
        with self._writing:
            inputs = _take(self.db_input_cache, self.db_input_cache_lock)
            outputs = _take(self.db_output_cache, self.db_output_cache_lock)
            self._write_inputs(conn, inputs)
            self._write_outputs(conn, outputs)

    def _write_inputs(self, conn: sqlite3.Connection, inputs: list[tuple[Any, ...]]) -> None:
        if not inputs:
            return
        try:
            _insert(conn, _INPUT_ROW, self.session_number, inputs)
        except sqlite3.IntegrityError:
            # IPython's answer to a clash: a new session, and one more try.
            self.new_session(conn)
            print(
                "ERROR! Session/line number was not unique in",
                "database. History logging moved to new session",
                self.session_number,
            )
            with contextlib.suppress(sqlite3.IntegrityError):
                _insert(conn, _INPUT_ROW, self.session_number, inputs)

    def _write_outputs(self, conn: sqlite3.Connection, outputs: list[tuple[Any, ...]]) -> None:
        if not outputs:
            return
        try:
            _insert(conn, _OUTPUT_ROW, self.session_number, outputs)
        except sqlite3.IntegrityError:
            print("!! Session/line number for output was not unique in database. Output will not be stored.")


def _take(cache: list[tuple[Any, ...]], lock: threading.Lock) -> list[tuple[Any, ...]]:
    """Everything in ``cache``, left empty in place. (Assigning a new list, as IPython
    does, is a trait assignment -- validation, change notification -- on the saving
    thread, whose every bytecode competes with the running cell for the GIL: a
    ``pass`` round trip with history, 5 kernels each way, twice: 0.95 -> 0.88 and
    0.82 -> 0.77 ms.)"""
    with lock:
        taken = cache[:]
        cache.clear()
    return taken


_INPUT_ROW = "INSERT INTO history VALUES (?, ?, ?, ?)"
_OUTPUT_ROW = "INSERT INTO output_history VALUES (?, ?, ?)"


def _insert(conn: sqlite3.Connection, statement: str, session: int, rows: list[tuple[Any, ...]]) -> None:
    """One transaction: every row, prefixed with the session number (all or none)."""
    with conn:
        for row in rows:
            conn.execute(statement, (session, *row))
