"""Interrupts that always land: SIGINT, a wake-up fd, and a watch on the IO thread.

Theory of operation
-------------------
CPython runs a Python-level signal handler only on the main thread, between
bytecodes; the C-level handler, which runs on whichever thread the OS chose,
only marks the signal as pending. A main thread blocked in a wait (a cell in
``threading.Event().wait()``) notices the mark only if the signal itself
broke its wait (EINTR). It does not when

1. the signal was taken by another thread: a process-directed SIGINT, as
   jupyter_client sends in signal mode, goes to any thread not blocking it;
2. the signal reached the main thread just after its last look at the mark
   and just before it blocked: the wait begins with the signal pending, and
   nothing will ever wake it. (Seen: once in 7,423 interrupts of a cell
   waiting on an ``Event`` while four threads printed.)

Either way the interrupt is lost and the cell runs on. So the C-level handler
also writes each signal's number to a socket (``signal.set_wakeup_fd``),
whatever thread it runs on, and the IO thread reads that socket. Seeing a
SIGINT there, it watches: if the Python handler has not run shortly after, it
*pokes* the main thread -- ``pthread_kill`` with a signal of the kernel's own
whose handler does nothing. The poke breaks the wait, and CPython then runs
every pending handler, the SIGINT one first among them. A poke with nothing
pending runs the empty handler and nothing else, so poking when in doubt is
always safe, where sending SIGINT again could interrupt a second time.

To tell "not run yet" from "already run", the Python handler first takes the
bytes waiting on the socket (what it takes, the IO thread never sees) and then
counts its run; the IO thread reads the count *before* it reads the socket.
A SIGINT byte the IO thread does see therefore belongs to a signal whose
handler had not run when the count was read.

The SIGINT handler may also ask for the interrupt to be delivered again (when
it landed in the kernel's own code; see ``ShellChannel.on_sigint``). It cannot
start a timer thread or take a lock to do so -- it may have interrupted code
holding that very lock -- so it writes a marker byte to the same socket, and
the IO thread sends a signal to the process a moment later, taking the same
path as the first one (the watch included: a main thread that blocks signals
while it runs the kernel's code would keep a signal sent to it alone pending
for good).

That signal is not SIGINT but one of the kernel's own (``again_signal``;
its handler is ``install``'s ``again``, which the kernel makes its SIGINT
handler too, telling the two apart by number). Python runs a signal's
handler once for any number of deliveries that came before it ran, so a
SIGINT sent again for a cell that has just ended, arriving with the user's
next interrupt, left one handler run for both -- and that run, taking it for
the late resend, dropped the interrupt: a trio cell slept on (once in CI, 1
of 953 tests). So a SIGINT is always a new interrupt, and an
``again_signal`` -- these resends, and the debugger's when it resumes a
thread it had stopped -- whose cell has ended is dropped on its own. A
handler's drain that takes a marker byte the IO thread had not read yet puts
it back.

SIGTERM (how a process is asked to end: jupyter_client's fallback, a
container stopping) is watched the same way, so that a kernel whose main
thread waits still shuts down in order, sending what its threads printed.

Limits: a cell that installs its own wake-up fd (asyncio's
``add_signal_handler``) switches the watch off until the kernel restarts; a
main thread inside one long C call is not woken by any signal.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

from threadline.io import IOThread

log = logging.getLogger("threadline.kernel")

Handler = Callable[[int, FrameType | None], None]

#: Written by the SIGINT handler: "deliver the interrupt again shortly" (signal numbers start at 1).
RESEND_MARKER = 0
#: How long after a resend request ``again_signal`` goes (seconds).
RESEND_DELAY = 0.002
#: First wait before poking, doubling up to the last, for at most ``POKE_PATIENCE`` (seconds).
POKE_FIRST = 0.002
POKE_LAST = 0.128
POKE_PATIENCE = 2.0


def _free_realtime_signal() -> int:
    """A real-time signal nobody else has a handler for (the highest free one)."""
    for number in range(signal.SIGRTMAX - 1, signal.SIGRTMIN, -1):
        if signal.getsignal(number) == signal.SIG_DFL:
            return number
    raise RuntimeError("no free real-time signal for the kernel's interrupts")


def _ignore_poke(signum: int, frame: FrameType | None) -> None:
    """The poke's handler: nothing. Its only job was to break the main thread's wait."""


class _Watch:
    """One watched signal: its handler's runs (main thread), and the IO thread's watch."""

    __slots__ = ("active", "base", "delay", "handler_runs", "since")

    def __init__(self) -> None:
        self.handler_runs = 0
        self.active = False
        self.base = 0
        self.since = 0.0
        self.delay = POKE_FIRST


class InterruptDelivery:
    """Makes sure every SIGINT (and SIGTERM) reaches the main thread's Python handler.

    ``install`` runs on the main thread; ``handler_started`` and
    ``resend_soon`` run inside the signal handlers (main thread, no locks);
    the rest runs on the IO thread.
    """

    def __init__(self, io: IOThread) -> None:
        self._io = io
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._main_ident = threading.main_thread().ident
        self.poke_signal = 0
        #: What ``resend_soon`` has sent: the interrupt, again (see the module docstring).
        self.again_signal = 0
        self._watches: dict[int, _Watch] = {}
        #: Pokes sent, for diagnosis (``get_ipython().kernel.interrupts.pokes``).
        self.pokes = 0
        #: Called (IO thread) with each poke: wakes the main thread's idle wait, where
        #: a GUI toolkit's loop may sleep through signals (Tcl's notifier does).
        self.wake_main: Callable[[], None] | None = None

    # -- main thread ----------------------------------------------------------------

    def install(self, handlers: Mapping[int, Handler], *, again: Handler) -> None:
        """Install ``handlers`` (signal number -> handler) and watch their signals;
        ``again`` handles what ``resend_soon`` sends. Each handler must call
        ``handler_started`` first. Main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return  # an embedded kernel: signals are the host's business
        self.poke_signal = _free_realtime_signal()
        signal.signal(self.poke_signal, _ignore_poke)
        self.again_signal = _free_realtime_signal()
        for signum, handler in {**handlers, self.again_signal: again}.items():
            self._watches[signum] = _Watch()
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._io.outbox.call_soon(lambda: self._io.add_reader(self._reader.fileno(), self._on_readable))

    def handler_started(self, signum: int = signal.SIGINT) -> None:
        """First thing in a watched signal's handler: what is waiting is being handled now."""
        if RESEND_MARKER in self._drain():
            self.resend_soon()  # the IO thread's, not ours: put it back
        watch = self._watches.get(signum)
        if watch is not None:
            watch.handler_runs += 1

    def resend_soon(self) -> None:
        """From the SIGINT handler: have ``again_signal`` sent shortly."""
        with contextlib.suppress(OSError):  # full: a marker is already waiting
            self._writer.send(bytes([RESEND_MARKER]))

    def close(self) -> None:
        """Stop watching (at shutdown, after the IO thread has stopped)."""
        if not self.poke_signal or threading.current_thread() is not threading.main_thread():
            # Only the main thread can unset the wake-up fd; while it is set the
            # socket stays open, so a late signal never writes into a reused fd.
            return
        previous = signal.set_wakeup_fd(-1)
        if previous != self._writer.fileno():
            signal.set_wakeup_fd(previous)  # other code's now; leave it alone
        self._reader.close()
        self._writer.close()

    # -- IO thread --------------------------------------------------------------------

    def _on_readable(self) -> None:
        # The counts are read before the socket: see the module's docstring.
        bases = {signum: watch.handler_runs for signum, watch in self._watches.items()}
        received = self._drain()
        if RESEND_MARKER in received:
            self._io.call_later(RESEND_DELAY, self.interrupt_again)
        now = time.monotonic()
        for signum, watch in self._watches.items():
            if signum in received:
                watch.base, watch.since, watch.delay = bases[signum], now, POKE_FIRST
                if not watch.active:
                    watch.active = True
                    self._io.call_later(watch.delay, functools.partial(self._check, signum))

    def _check(self, signum: int) -> None:
        watch = self._watches[signum]
        if watch.handler_runs != watch.base:
            watch.active = False
            return
        if time.monotonic() - watch.since >= POKE_PATIENCE:
            watch.active = False
            log.warning("signal %d did not reach the main thread (it is inside a long C call?)", signum)
            return
        self.pokes += 1
        self._signal_main(self.poke_signal)
        if self.wake_main is not None:
            self.wake_main()
        watch.delay = min(2 * watch.delay, POKE_LAST)
        self._io.call_later(watch.delay, functools.partial(self._check, signum))

    def interrupt_again(self) -> None:
        """Deliver the interrupt again now (any thread; the IO thread's resends, the
        debugger's retries). Without ``install`` (an embedded kernel), SIGINT.

        To the process, as jupyter_client sends SIGINT: the main thread takes it
        at once unless it blocks it; then another thread does, and the watch
        pokes. (Sent to the main thread alone, it stayed pending there for good.)
        """
        try:
            os.kill(os.getpid(), self.again_signal or signal.SIGINT)
        except OSError as exc:
            log.debug("could not deliver the interrupt again: %s", exc)

    def _signal_main(self, signum: int) -> None:
        if self._main_ident is None:
            return
        try:
            signal.pthread_kill(self._main_ident, signum)
        except OSError as exc:  # the main thread is gone: the process is ending
            log.debug("could not signal the main thread: %s", exc)

    def _drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._reader.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # closed at shutdown
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
