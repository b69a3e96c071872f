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
holds the cache's lock only to take the cache (emptying it in place):
the transaction runs outside it. A lock of its own keeps writers in order, so
a reader that first writes the cache out (``search``, ``get_tail``,
``end_session``) still finds every cell stored before it asked -- it waits for
a write under way, then writes what came since.

In a burst of cells it also writes less often. Waking the saving thread after
every cell costs more than the write itself: it wakes on the other CPU and
takes the GIL from the cell (measured, ``pass`` round trips with history, 4
kernels each way: 0.62 ms with no saving thread, 0.78 with one woken per cell
that writes nothing, 0.92 writing). So the saving thread writes at most once
per ``write_interval`` (50 ms): a cell after a quiet spell is written at once,
as by IPython; cells that follow within the interval are written together at
its end, in one transaction, and wake nobody meanwhile (``store_inputs`` sets
an event no thread waits on). What a kernel killed outright can lose is the
last interval's cells of a burst; a reader or the kernel's exit writes the
cache out at once; a fork (which stops the saving thread) cuts the interval
short. ``c.KernelHistoryManager.write_interval = 0`` gives IPython's pace.
The database, its rows and their order are IPython's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from IPython.core.history import HistoryManager
from traitlets import Float

if TYPE_CHECKING:  # IPython's history imports sqlite3 when the shell is built
    import sqlite3


class KernelHistoryManager(HistoryManager):  # type: ignore[misc]
    """IPython's ``HistoryManager``; its writes block no cell, and a burst is written together."""

    # IPython's traits (annotations only: the traits themselves stay IPython's).
    db_input_cache: list[tuple[Any, ...]]
    db_output_cache: list[tuple[Any, ...]]

    write_interval = Float(
        0.05,
        help="Seconds the history thread lets pass between two writes to the database "
        "(cells stored meanwhile are written together); 0: after every cell, as IPython.",
    ).tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before IPython's constructor, which may start the saving thread.
        self._writing = threading.Lock()
        self._last_write = float("-inf")
        #: Set while the saving thread is being stopped: a paced write goes at once.
        self._hurry = threading.Event()
        super().__init__(*args, **kwargs)

    def writeout_cache(self, conn: sqlite3.Connection | None = None) -> None:
        """Write the cached inputs and outputs to the database (as IPython's does)."""
        if not self.enabled:
            return
        if conn is None:
            conn = self.db
        if threading.current_thread() is self.save_thread:
            self._pace()
        with self._writing:
            inputs = _take(self.db_input_cache, self.db_input_cache_lock)
            outputs = _take(self.db_output_cache, self.db_output_cache_lock)
            self._write_inputs(conn, inputs)
            self._write_outputs(conn, outputs)
            self._last_write = time.monotonic()

    def _pace(self) -> None:
        """On the saving thread: wait until ``write_interval`` has passed since the last write.

        Cut short by ``_stop_save_thread``, and -- looked at every
        ``_STOP_CHECK`` seconds -- by the thread's own ``stop``, which IPython
        registers with ``atexit`` and which joins the thread.
        """
        thread = self.save_thread
        deadline = self._last_write + self.write_interval
        while (wait := deadline - time.monotonic()) > 0 and not getattr(thread, "_stop_now", False):
            if self._hurry.wait(min(wait, _STOP_CHECK)):
                return

    def _stop_save_thread(self) -> None:
        """IPython's (before a fork, and at exit): the saving thread stops; a paced
        write it is waiting to make goes at once."""
        self._hurry.set()
        try:
            super()._stop_save_thread()
        finally:
            self._hurry.clear()

    def _write_inputs(self, conn: sqlite3.Connection, inputs: list[tuple[Any, ...]]) -> None:
        import sqlite3  # loaded already: the connection is one of its

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
        import sqlite3

        try:
            _insert(conn, _OUTPUT_ROW, self.session_number, outputs)
        except sqlite3.IntegrityError:
            print("!! Session/line number for output was not unique in database. Output will not be stored.")


#: How often a long pace looks whether the saving thread is being stopped.
_STOP_CHECK = 0.05


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
    """One transaction: every row, prefixed with the session number (all or none; none
    at all for no rows)."""
    if not rows:
        return
    with conn:
        for row in rows:
            conn.execute(statement, (session, *row))
