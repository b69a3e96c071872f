"""The kernel's history manager: IPython's rows, written without holding up the next cell."""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from IPython.core.history import HistoryManager
from IPython.core.interactiveshell import InteractiveShellABC
from jupyter_client.blocking.client import BlockingKernelClient
from traitlets.config import Config

from tests.kernel_helpers import TIMEOUT, execute, get_reply, start_kernel, stop_kernel
from threadline.shell.history import KernelHistoryManager

WAIT = 10.0  # a safety net: every wait below ends on an event


class GatedConnection:
    """A real SQLite connection whose statements wait for ``gate``: a write held open."""

    def __init__(self, path: Path) -> None:
        self.real = sqlite3.connect(path, check_same_thread=False)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __enter__(self) -> sqlite3.Connection:
        return self.real.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        return self.real.__exit__(kind, exc, tb)

    def execute(self, *args: Any) -> sqlite3.Cursor:
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return self.real.execute(*args)


class ArrivalLock:
    """A lock that says when a second thread comes to take it (the first still holding it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals = 0
        self.second_arrived = threading.Event()

    def __enter__(self) -> None:
        self._arrivals += 1
        if self._arrivals == 2:
            self.second_arrived.set()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class UserNamespace:
    """What the history manager uses of its shell: ``push`` (the ``_i``, ``_i1``... variables)."""

    def __init__(self) -> None:
        self.user_ns: dict[str, Any] = {}

    def push(self, variables: dict[str, Any], interactive: bool = True) -> None:
        self.user_ns.update(variables)


InteractiveShellABC.register(UserNamespace)


def _without_saving_thread(manager: HistoryManager) -> HistoryManager:
    """The test writes the cache out itself, when it chooses."""
    if manager.save_thread is not None:
        manager.save_thread.stop()
        manager.save_thread = None
    manager.using_thread = False
    return manager


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[HistoryManager]:
    made = _without_saving_thread(
        KernelHistoryManager(shell=UserNamespace(), hist_file=tmp_path / "history.sqlite")
    )
    try:
        yield made
    finally:
        made.db.close()


def _rows(manager: HistoryManager) -> list[tuple[int, str]]:
    query = "SELECT line, source FROM history WHERE session = ? ORDER BY line"
    return list(manager.db.execute(query, (manager.session_number,)))


def _in_thread(function: Any) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        function()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_a_cell_is_stored_while_the_previous_cells_write_is_under_way(manager: HistoryManager) -> None:
    # IPython's own manager holds the cache's lock for the whole transaction:
    # the second store_inputs would wait for the gate, and this test time out.
    manager.store_inputs(1, "a = 1")
    gated = GatedConnection(manager.hist_file)
    writer, written = _in_thread(lambda: manager.writeout_cache(gated))
    assert gated.entered.wait(WAIT)

    _, stored = _in_thread(lambda: manager.store_inputs(2, "b = 2"))
    assert stored.wait(WAIT), "store_inputs waited for the previous cell's write"

    gated.gate.set()
    assert written.wait(WAIT)
    writer.join(WAIT)
    manager.writeout_cache()
    assert _rows(manager) == [(1, "a = 1"), (2, "b = 2")]
    assert manager.input_hist_raw[1:] == ["a = 1", "b = 2"]
    assert manager.shell.user_ns["_i2"] == "b = 2"


def test_a_reader_finds_every_cell_stored_before_it_asked(manager: HistoryManager) -> None:
    # ``search`` and ``get_tail`` write the cache out first and then query the
    # database: a write under way elsewhere (its rows taken out of the cache
    # already) must be finished first, or the reader would miss those rows.
    arrivals = ArrivalLock()
    manager._writing = arrivals  # type: ignore[attr-defined]
    manager.store_inputs(1, "first = 1")
    gated = GatedConnection(manager.hist_file)
    _, written = _in_thread(lambda: manager.writeout_cache(gated))
    assert gated.entered.wait(WAIT)
    manager.store_inputs(2, "second = 2")

    seen: list[tuple[int, str, str]] = []
    _, read = _in_thread(lambda: seen.extend(manager.get_tail(10, raw=True, include_latest=True)))
    assert arrivals.second_arrived.wait(WAIT), "the reader did not wait for the write under way"
    gated.gate.set()
    assert written.wait(WAIT)
    assert read.wait(WAIT)
    assert [(line, source) for _, line, source in seen] == [(1, "first = 1"), (2, "second = 2")]


def test_a_clash_moves_history_to_a_new_session_as_ipython_does(
    manager: HistoryManager, capsys: pytest.CaptureFixture[str]
) -> None:
    first_session = manager.session_number
    with manager.db:
        manager.db.execute("INSERT INTO history VALUES (?, 1, 'taken', 'taken')", (first_session,))
    manager.store_inputs(1, "mine = 1")
    manager.writeout_cache()
    assert manager.session_number != first_session
    assert _rows(manager) == [(1, "mine = 1")]
    assert "History logging moved to new session" in capsys.readouterr().out
    assert manager.db_input_cache == []


def test_outputs_are_written_when_the_profile_logs_them(manager: HistoryManager) -> None:
    manager.db_log_output = True
    manager.store_inputs(1, "6 * 7")
    manager.output_hist_reprs[1] = "42"
    manager.store_output(1)
    manager.writeout_cache()
    query = "SELECT line, output FROM output_history WHERE session = ?"
    assert list(manager.db.execute(query, (manager.session_number,))) == [(1, "42")]
    assert manager.db_output_cache == []


def test_a_disabled_history_writes_nothing(tmp_path: Path) -> None:
    disabled = KernelHistoryManager(shell=UserNamespace(), hist_file=tmp_path / "off.sqlite", enabled=False)
    disabled.store_inputs(1, "x = 1")
    disabled.writeout_cache()  # no database to write to: returns quietly
    assert disabled.input_hist_raw[1:] == ["x = 1"]


# -- the saving thread's pace ------------------------------------------------------------


class PacingSeen(threading.Event):
    """The manager's ``_hurry`` event, which also says when the saving thread starts pacing."""

    def __init__(self) -> None:
        super().__init__()
        self.pacing = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.pacing.set()
        return super().wait(timeout)


Saving = tuple[HistoryManager, "queue.Queue[list[tuple[Any, ...]]]", PacingSeen]


@pytest.fixture
def saving(tmp_path: Path) -> Iterator[Saving]:
    """A manager whose own saving thread runs, an hour between writes; each write's rows."""
    made = KernelHistoryManager(
        shell=UserNamespace(), hist_file=tmp_path / "history.sqlite", write_interval=3600
    )
    writes: queue.Queue[list[tuple[Any, ...]]] = queue.Queue()
    write_inputs = made._write_inputs

    def recorded(conn: sqlite3.Connection, inputs: list[tuple[Any, ...]]) -> None:
        write_inputs(conn, inputs)
        if inputs:
            writes.put([row[:2] for row in inputs])

    made._write_inputs = recorded
    made._hurry = hurry = PacingSeen()
    try:
        yield made, writes, hurry
    finally:
        made.close()


def test_a_cell_after_a_quiet_spell_is_written_at_once(saving: Saving) -> None:
    manager, writes, _ = saving
    manager.store_inputs(1, "a = 1")
    assert writes.get(timeout=WAIT) == [(1, "a = 1")]  # not an hour later


def test_cells_of_a_burst_are_written_together_and_a_fork_hurries_them(saving: Saving) -> None:
    manager, writes, hurry = saving
    manager.store_inputs(1, "a = 1")
    assert writes.get(timeout=WAIT) == [(1, "a = 1")]
    manager.store_inputs(2, "b = 2")
    assert hurry.pacing.wait(WAIT), "the saving thread wrote the burst's first cell at once"
    manager.store_inputs(3, "c = 3")
    manager.store_inputs(4, "d = 4")
    # What IPython does before a fork (and at exit): stop the saving thread.
    _, stopped = _in_thread(manager._stop_save_thread)
    assert writes.get(timeout=WAIT) == [(2, "b = 2"), (3, "c = 3"), (4, "d = 4")]  # one transaction
    assert stopped.wait(WAIT)
    assert _rows(manager) == [(1, "a = 1"), (2, "b = 2"), (3, "c = 3"), (4, "d = 4")]
    # Restarted by the next cell, as after a fork; paces afresh.
    manager.store_inputs(5, "e = 5")
    assert manager.save_thread is not None and manager.save_thread.is_alive()


def test_a_reader_does_not_wait_for_the_pace(saving: Saving) -> None:
    manager, writes, hurry = saving
    manager.store_inputs(1, "a = 1")
    assert writes.get(timeout=WAIT) == [(1, "a = 1")]
    manager.store_inputs(2, "b = 2")
    assert hurry.pacing.wait(WAIT)
    seen: list[tuple[int, int, str]] = []
    _, read = _in_thread(lambda: seen.extend(manager.get_tail(10, raw=True, include_latest=True)))
    assert read.wait(WAIT), "the reader waited for the saving thread's pace"
    assert [(line, source) for _, line, source in seen] == [(1, "a = 1"), (2, "b = 2")]


def test_the_pace_is_configurable(tmp_path: Path) -> None:
    config = Config()
    config.KernelHistoryManager.write_interval = 0.0
    made = KernelHistoryManager(shell=UserNamespace(), hist_file=tmp_path / "h.sqlite", config=config)
    try:
        assert made.write_interval == 0.0
    finally:
        made.close()


# -- in a kernel ---------------------------------------------------------------------------


def _where_history_goes(kc: BlockingKernelClient) -> tuple[str, int]:
    """The kernel's history file and session number (and that its manager is threadline's)."""
    where = execute(
        kc,
        "_h = get_ipython().history_manager",
        user_expressions={
            "file": "str(_h.hist_file)",
            "kind": "type(_h).__name__",
            "session": "_h.session_number",
        },
    ).content["user_expressions"]
    assert where["kind"]["data"]["text/plain"] == "'KernelHistoryManager'"
    return where["file"]["data"]["text/plain"].strip("'"), int(where["session"]["data"]["text/plain"])


def _run_back_to_back(kc: BlockingKernelClient, cells: list[str]) -> None:
    ids = [kc.execute(cell, store_history=True) for cell in cells]  # all sent before any reply
    replies = [get_reply(kc, msg_id) for msg_id in ids]
    assert [r["content"]["status"] for r in replies] == ["ok"] * len(cells)


def _stored(hist_file: str, session: int) -> list[str]:
    """Straight from the file, through a connection of this process: what is committed."""
    with sqlite3.connect(hist_file, timeout=TIMEOUT) as db:
        query = "SELECT source FROM history WHERE session = ? ORDER BY line"
        return [row[0] for row in db.execute(query, (session,))]


CELLS = [f"value_{n} = {n}" for n in range(60)]
FIRST = "_h = get_ipython().history_manager"


def test_cells_sent_back_to_back_are_all_in_the_database(kc: BlockingKernelClient) -> None:
    hist_file, session = _where_history_goes(kc)
    _run_back_to_back(kc, CELLS)
    tail = get_reply(kc, kc.history(hist_access_type="tail", n=len(CELLS), raw=True, output=False))
    assert [entry[2] for entry in tail["content"]["history"]] == CELLS
    assert _stored(hist_file, session) == [FIRST, *CELLS]  # the tail wrote the cache out first


FORK = "import os\nchild = os.fork()\nif child == 0:\n    os._exit(0)\nos.waitpid(child, 0)"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("fork_first", [False, True], ids=["started", "restarted-after-fork"])
def test_a_burst_is_in_the_database_after_the_kernel_shuts_down(fork_first: bool) -> None:
    # An hour between writes: only the way out can have written the burst. A
    # fork stops IPython's saving thread and the next cell starts a new one,
    # whose own atexit ``stop`` (which joins it) then runs before the shell's:
    # the pace must give way to it, or the kernel hangs on its way out.
    manager, kc = start_kernel(extra_arguments=["--KernelHistoryManager.write_interval=3600"])
    try:
        interval = execute(kc, "pass", user_expressions={"i": "get_ipython().history_manager.write_interval"})
        assert interval.content["user_expressions"]["i"]["data"]["text/plain"] == "3600.0"
        first = [FORK] if fork_first else []
        if fork_first:
            assert execute(kc, FORK).content["status"] == "ok"
        hist_file, session = _where_history_goes(kc)
        _run_back_to_back(kc, CELLS)
    finally:
        stop_kernel(manager, kc)  # an orderly shutdown_request
    assert _stored(hist_file, session) == ["pass", *first, FIRST, *CELLS]
