"""Background cells: ``%%background`` runs a cell's body on a thread of its own.

Theory of operation
-------------------
The cell that holds ``%%background`` only starts a thread and returns: its
reply comes back at once and the notebook is free. The thread runs the body
with IPython (``run_cell``, so magics, the last expression's value and
tracebacks work as in any cell), in the user's namespace, concurrently with
whatever runs next. Its routing origin is the ``%%background`` cell, as for
any thread a cell starts, so everything the body prints or displays, its
widgets and its traceback land under that cell however long it runs. A body
with top-level ``await`` runs on an event loop of its own, on its thread.

Unlike a subshell (JEP 91), which a *front end* creates and sends requests
to, a background cell needs nothing from the front end: any notebook, any
client. But it is one cell, not a shell: it has no execution count or history
of its own and takes no further requests.

Every background cell is kept in ``BackgroundCells`` (one per kernel) until
the kernel ends: ``%background`` lists them, ``%background --interrupt N``
(or ``all``) interrupts them, and so does the kernel's interrupt when no cell
runs in the main shell (one that does is interrupted alone: stopping a stuck
cell does not stop the long job behind it).
An interrupt raises ``KeyboardInterrupt`` in the body's thread
(``PyThreadState_SetAsyncExc``), but only while that thread is in the
user's code: raised inside the kernel's own code (a stream flush holding a
lock) it could leave a lock held, so the delivery waits for the thread to
leave it (bounded, as on the main thread). A body awaiting on its loop is
cancelled instead. A thread blocked in one C call (``time.sleep``) sees the
exception when the call returns.

Thread safety: the registry's list is appended to by the thread that runs
the magic and read by others (a list append is atomic); each cell's state is
written by its own thread only.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import sys
import threading
import time
from typing import Any, Final

from IPython.core.async_helpers import _asyncio_runner
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from threadline.kernel.shell_channel import _in_kernel_code
from threadline.shell.interactive import ThreadlineShell

#: How long an interrupt waits for a background thread to leave the kernel's code.
DELIVERY_PATIENCE: Final = 1.0
DELIVERY_RETRY: Final = 0.002


class BackgroundCell:
    """One ``%%background`` cell: its thread, its state, and a way to interrupt it."""

    def __init__(self, number: int, shell: ThreadlineShell, body: str) -> None:
        self.number = number
        self.body = body
        self.state = "starting"
        self.started = time.monotonic()
        self.finished: float | None = None
        self._shell = shell
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=f"threadline-background-{number}", daemon=True)

    def __repr__(self) -> str:
        return f"<background cell {self.number}: {self.state}, thread {self._thread.name}>"

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def done(self) -> bool:
        return self.finished is not None

    def start(self) -> None:
        self.state = "running"
        self._thread.start()  # the thread's output goes to the cell that starts it: this one

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the body to finish; whether it has."""
        self._thread.join(timeout)
        return self.done

    def _run(self) -> None:
        shell = self._shell
        outcome = "finished"
        try:
            transformed = shell.transform_cell(self.body)
            if shell.loop_runner is _asyncio_runner and shell.should_run_async(
                self.body, transformed_cell=transformed
            ):
                result = self._run_on_own_loop(transformed)
            else:
                result = shell.run_cell(self.body, store_history=False)
            if result.error_in_exec is not None or result.error_before_exec is not None:
                interrupted = isinstance(result.error_in_exec, (KeyboardInterrupt, asyncio.CancelledError))
                outcome = "interrupted" if interrupted else "failed"
        except KeyboardInterrupt:  # landed outside the body's own code
            outcome = "interrupted"
        finally:
            shell.take_last_error()  # this thread's, shown already
            self.finished = time.monotonic()
            self.state = outcome
            for stream in (sys.stdout, sys.stderr):
                stream.flush()

    def _run_on_own_loop(self, transformed: str) -> Any:
        shell = self._shell
        loop = self._loop = asyncio.new_event_loop()
        try:
            task = self._task = loop.create_task(
                shell.run_cell_async(self.body, store_history=False, transformed_cell=transformed)
            )
            return loop.run_until_complete(task)
        finally:
            self._task = None
            loop.close()

    def interrupt(self) -> bool:
        """Interrupt the body (from any thread); False if it is not running."""
        if self.done or self._thread.ident is None:
            return False
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            self._shell.interrupting_async_cell = True  # the cancelled await shows as the interrupt
            loop.call_soon_threadsafe(task.cancel)  # an awaiting body: cancel it
            return True
        threading.Thread(target=self._deliver_interrupt, name="threadline-interrupter", daemon=True).start()
        return True

    def _deliver_interrupt(self) -> None:
        """Raise KeyboardInterrupt in the body's thread once it runs the user's code."""
        ident = self._thread.ident
        assert ident is not None
        deadline = time.monotonic() + DELIVERY_PATIENCE
        while not self.done:
            frame = sys._current_frames().get(ident)
            if frame is None or not _in_kernel_code(frame) or time.monotonic() > deadline:
                exception = ctypes.py_object(KeyboardInterrupt)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exception)
                return
            time.sleep(DELIVERY_RETRY)  # a retry's pause, not a synchronisation


class BackgroundCells:
    """Every background cell of this kernel, by number."""

    def __init__(self, shell: ThreadlineShell) -> None:
        self._shell = shell
        self._numbers = itertools.count(1)
        self.cells: list[BackgroundCell] = []

    def start(self, body: str) -> BackgroundCell:
        cell = BackgroundCell(next(self._numbers), self._shell, body)
        self.cells.append(cell)
        cell.start()
        return cell

    def running(self) -> list[BackgroundCell]:
        return [cell for cell in self.cells if not cell.done]

    def get(self, number: int) -> BackgroundCell | None:
        return next((cell for cell in self.cells if cell.number == number), None)

    def interrupt_all(self) -> None:
        """Interrupt every running background cell. Safe from any thread; never blocks."""
        for cell in self.running():
            cell.interrupt()

    def table(self) -> str:
        if not self.cells:
            return "no background cells\n"
        now = time.monotonic()
        lines = []
        for cell in self.cells:
            seconds = (cell.finished or now) - cell.started
            first = next((line for line in cell.body.splitlines() if line.strip()), "")
            lines.append(f"{cell.number:>3}  {cell.state:<11} {seconds:8.1f}s  {first[:50]}")
        return "  #  state        running  first line\n" + "\n".join(lines) + "\n"


@magics_class
class BackgroundMagics(Magics):  # type: ignore[misc]
    """``%%background`` and ``%background``."""

    def __init__(self, shell: ThreadlineShell, cells: BackgroundCells) -> None:
        super().__init__(shell)
        self.cells = cells

    @magic_arguments()  # type: ignore[untyped-decorator]
    @argument(  # type: ignore[untyped-decorator]
        "--interrupt", metavar="N", help="interrupt background cell N (or 'all')"
    )
    @line_cell_magic  # type: ignore[untyped-decorator]
    def background(self, line: str, cell: str | None = None) -> BackgroundCell | None:
        """Run this cell on a thread of its own; its output lands here, however late.

        ``%%background`` at the top of a cell: the rest of the cell runs on a
        new thread and the cell's reply comes back at once, so the notebook is
        free for other cells. Returns the background cell (``.interrupt()``,
        ``.join()``, ``.state``). ``%background`` lists the kernel's background
        cells; ``%background --interrupt N`` (or ``all``) interrupts them. The
        kernel's interrupt reaches them when no cell runs in the main shell.
        """
        arguments = parse_argstring(self.background, line)
        if cell is not None:
            return self.cells.start(cell)
        if arguments.interrupt is None:
            sys.stdout.write(self.cells.table())
            return None
        if arguments.interrupt == "all":
            self.cells.interrupt_all()
            return None
        target = self.cells.get(int(arguments.interrupt)) if arguments.interrupt.isdigit() else None
        if target is None:
            raise ValueError(f"no background cell {arguments.interrupt!r} (see %background)")
        target.interrupt()
        return None


def install(shell: ThreadlineShell) -> BackgroundCells:
    """Register ``%%background`` / ``%background`` on ``shell``; the registry."""
    cells = BackgroundCells(shell)
    shell.register_magics(BackgroundMagics(shell, cells))
    return cells
