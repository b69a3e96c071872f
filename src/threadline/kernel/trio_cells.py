"""Cells with top-level ``await`` under trio (``%autoawait trio``), interruptible.

Theory of operation
-------------------
IPython's own trio runner is ``trio.run(cell)``. The shell channel runs such a
cell with no asyncio loop running (as a plain cell), through ``TrioCell.run``,
which adds two things:

* **Interrupts.** trio guards its own machinery against ``KeyboardInterrupt``
  ("KI protection"): a SIGINT that lands in trio's code must not raise there.
  trio does this with a SIGINT handler of its own, which it installs only when
  the default one is in place -- never in a kernel. So the kernel's handler
  asks ``interrupt_here``: if the interrupted code is protected (trio waiting
  for IO, or scheduling), the cell's cancel scope is cancelled through the run's
  ``TrioToken`` (signal-safe, by trio's own promise) and the cell ends at its
  current ``await`` as an interrupted cell; if it is the user's code, the
  handler raises ``KeyboardInterrupt`` there, as trio itself would. From another
  thread (a subshell's cell), ``cancel`` is used.
* **The signal wake-up fd.** On the main thread, ``trio.run`` points
  ``signal.set_wakeup_fd`` at its own socket and warns when something else
  (the kernel's interrupt watch) had set it. The kernel's fd is put aside for
  the cell's duration and restored afterwards; while the cell runs, trio's
  socket wakes the main thread for a signal taken by another thread, which is
  what the kernel's watch is there for.

A ``TrioCell`` is made, run and dropped by one shell channel, on its thread;
``cancel`` and ``interrupt_here`` only read the token and scope, which are set
once, before the cell's code starts.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trio


class TrioCell:
    """One cell's coroutine, run to completion by ``trio.run``."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        #: Set once an interrupt has cancelled the cell.
        self.cancelled = False

    def run(self, cell: Coroutine[Any, Any, Any]) -> Any:
        """Run ``cell`` under a new trio loop on this thread; its result (None if cancelled)."""
        import trio

        on_main_thread = threading.current_thread() is threading.main_thread()

        async def main() -> Any:
            try:
                with trio.CancelScope() as scope:
                    self._scope = scope
                    self._token = trio.lowlevel.current_trio_token()
                    return await cell
                return None
            finally:
                if on_main_thread:
                    # trio closes its wake-up socket pair before it restores the
                    # wake-up fd: a signal in between (an interrupt sent again as
                    # the cell ends) was written to a half-closed socket, and
                    # CPython reported BrokenPipeError into the next cell's
                    # stderr. Nothing needs waking while trio winds down.
                    signal.set_wakeup_fd(-1)

        kernel_wakeup_fd = signal.set_wakeup_fd(-1) if on_main_thread else -1
        try:
            return trio.run(main)
        finally:
            self._token = self._scope = None
            if on_main_thread:
                signal.set_wakeup_fd(kernel_wakeup_fd, warn_on_full_buffer=False)

    def cancel(self) -> bool:
        """Cancel the cell at its current (or next) ``await``. Safe from any thread and
        from a signal handler; False if it has not started or has finished."""
        token, scope = self._token, self._scope
        if token is None or scope is None:
            return False
        self.cancelled = True
        try:
            token.run_sync_soon(scope.cancel)
        except RuntimeError:  # trio.RunFinishedError: the cell has just finished
            return False
        return True

    def interrupt_here(self) -> bool:
        """From the SIGINT handler: True if the interrupt was delivered by cancelling
        (the signal landed in trio's protected code); False means "raise
        ``KeyboardInterrupt`` here", in the user's code."""
        import trio

        # Outside trio.run (just before or after the cell) this says "protected"
        # too, and ``cancel`` then declines: the caller treats that as kernel code.
        return trio.lowlevel.currently_ki_protected() and self.cancel()
