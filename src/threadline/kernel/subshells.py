"""Shell channels on threads of their own: JEP 91 subshells and the comm worker.

A ``ShellThread`` serves one ``ShellChannel`` on a dedicated thread with its
own event loop (which, as on the main thread, runs between requests and for
cells with top-level ``await``, and is stopped while a plain cell runs, so
``asyncio.run()`` works there too): requests posted to it run one at a time,
in order, and concurrently with every other shell thread (the main shell
included). The
comm worker is one such thread, so widgets answer while a cell is busy; each
subshell a client creates is another.

``SubshellManager`` is used from the IO thread only (control requests are
handled there), except ``interrupt_all`` and ``stop_all``, which only post to
channels and so are safe from any thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import threading
import uuid
from collections.abc import Callable

from threadline.kernel.shell_channel import STOP, ShellChannel

log = logging.getLogger("threadline.kernel")

#: The signal mask of the thread that imported this module (the main thread, at start-up).
_INITIAL_SIGNAL_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, [])


class ShellThread:
    """A ``ShellChannel`` served on a thread of its own."""

    def __init__(self, channel: ShellChannel, name: str) -> None:
        self.channel = channel
        self._loop = asyncio.new_event_loop()
        channel.bind_loop(self._loop)  # posts queue up until the loop runs
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # Subshells are started on the IO thread, which blocks signals; user code
        # runs here (and starts threads of its own), so it gets the usual mask.
        signal.pthread_sigmask(signal.SIG_SETMASK, _INITIAL_SIGNAL_MASK)
        asyncio.set_event_loop(self._loop)
        try:
            self.channel.serve()
        except Exception:
            log.exception("%s failed", self._thread.name)
        finally:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self.channel.close_loop()

    def interrupt(self) -> None:
        """Interrupt this thread's running cell, if any (or the one about to start)."""
        ident = self._thread.ident
        channel = self.channel
        if channel.interrupt_async_cell() or channel.interrupt_before_start():
            return
        if ident is None or not channel.sync_cell_running:
            return
        # Raised when the thread next runs Python bytecode (a blocking C call
        # such as time.sleep finishes first).
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))

    def stop(self, timeout: float = 2.0) -> None:
        self.channel.post(STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class SubshellManager:
    """Creates, lists and deletes subshells; finds the one a request is for."""

    def __init__(self, make_channel: Callable[[str], ShellChannel]) -> None:
        self._make_channel = make_channel
        self._subshells: dict[str, ShellThread] = {}

    def create(self) -> str:
        subshell_id = uuid.uuid4().hex
        runner = ShellThread(self._make_channel(subshell_id), name=f"threadline-subshell-{subshell_id[:8]}")
        self._subshells[subshell_id] = runner
        runner.start()
        return subshell_id

    def delete(self, subshell_id: str) -> bool:
        runner = self._subshells.pop(subshell_id, None)
        if runner is None:
            return False
        runner.channel.post(STOP)  # ends after its current request; never block the IO thread
        return True

    def get(self, subshell_id: str) -> ShellChannel | None:
        runner = self._subshells.get(subshell_id)
        return runner.channel if runner is not None else None

    def ids(self) -> list[str]:
        return list(self._subshells)

    def interrupt_all(self) -> None:
        for runner in list(self._subshells.values()):
            runner.interrupt()

    def stop_all(self) -> None:
        for runner in list(self._subshells.values()):
            runner.channel.post(STOP)
