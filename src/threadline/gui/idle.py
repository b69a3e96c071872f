"""The main thread's idle wait, which a GUI toolkit's event loop can take over.

Theory of operation
-------------------
The main thread runs the kernel's asyncio loop. Whenever that loop has nothing
to do it blocks in one place: its selector's ``select(timeout)``, where
``timeout`` is the time to its next timer (``None``: no timer). Every way work
reaches the main thread ends in a file descriptor registered with that
selector -- the shell socket's own descriptor, which the main thread watches
while it waits (kernel/shell_channel.py), the shell channel's doorbell, which
other threads ring when they post to it, the loop's self-pipe for
``call_soon_threadsafe``; a cell's ``add_reader`` or subprocess pipe is
registered there too.

On Linux the selector is an epoll set and on macOS a kqueue, and both are file
descriptors themselves: ``selector.fileno()`` becomes readable as soon as any
descriptor registered in the set is ready. So one descriptor tells a toolkit
"the kernel has work": ``IdleSelector.select`` hands it to the active
*inputhook*, which runs the toolkit's own loop (Qt's, Tcl's, GLib's) until the
toolkit's native watch on that descriptor fires (``QSocketNotifier``,
``createfilehandler``, ``io_add_watch``) or the toolkit's timer for
``timeout`` does. Then the real ``select(0)`` collects what is ready. The loop
never polls: an idle kernel with a GUI on sleeps in the toolkit's own wait,
which wakes for window events, for requests, and for asyncio timers alike.

Whatever the structure of the loop around it -- cells run inside it or outside
it -- this is the one place the main thread waits when it has nothing to do,
so this is the one place the toolkit runs. A cell that runs (or blocks) is not
in that wait, so windows freeze for that cell only, as in every kernel.

Toolkit callbacks run inside the wait, on the main thread. Work they give the
asyncio loop (``call_soon``, a task created, a future resolved) would wait for
the next event, since nothing writes the self-pipe for same-thread calls;
``MainLoop`` therefore wakes the wait itself when it is scheduled from inside
the inputhook.

An inputhook that raises is turned off (``on_failure`` reports it): the kernel
goes on without the toolkit rather than die in its own idle wait.

Only the main thread's loop uses this selector; the comm and subshell threads
keep plain loops (toolkits belong to the main thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import select
import selectors
from collections.abc import Callable
from typing import Protocol, TypeVarTuple

_Ts = TypeVarTuple("_Ts")

#: Timers due sooner than this are served by a plain select: starting the
#: toolkit's loop costs more than it could save.
SHORTEST_HOOK_WAIT = 0.001


class IdleContext:
    """What an inputhook is told: which descriptor means "work waits", and for how long to run.

    ``fileno()`` and ``input_is_ready()`` have the meaning IPython's terminal
    inputhooks give them (``IPython.terminal.pt_inputhooks``), so such a hook
    runs here unchanged; ``timeout`` is threadline's addition.
    """

    __slots__ = ("_fd", "timeout")

    def __init__(self, fd: int, timeout: float | None) -> None:
        self._fd = fd
        #: Seconds until the kernel's next timer; return by then. None: no timer is due.
        self.timeout = timeout

    def fileno(self) -> int:
        """Readable while the kernel has work: return as soon as it is."""
        return self._fd

    def input_is_ready(self) -> bool:
        """Whether the kernel has work now (a non-blocking look at ``fileno()``)."""
        return bool(select.select([self._fd], [], [], 0)[0])

    def timeout_ms(self) -> int | None:
        """``timeout`` in whole milliseconds, rounded up (toolkit timers count in ms)."""
        return None if self.timeout is None else max(1, math.ceil(self.timeout * 1000))


class Inputhook(Protocol):
    """Runs a toolkit's event loop until ``context`` says the kernel has work or its time is up."""

    def __call__(self, context: IdleContext, /) -> None: ...


class IdleSelector(selectors.DefaultSelector):
    """The main loop's selector: while an inputhook is set, its blocking waits run the toolkit."""

    def __init__(self) -> None:
        super().__init__()
        self.inputhook: Inputhook | None = None
        #: Called with the exception when the inputhook raises (the hook is off by then).
        self.on_failure: Callable[[BaseException], None] | None = None
        #: True while the inputhook runs (read by ``MainLoop`` on the same thread).
        self.in_hook = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        hook = self.inputhook
        if hook is None or (timeout is not None and timeout < SHORTEST_HOOK_WAIT):
            return super().select(timeout)
        self.in_hook = True
        try:
            # Toolkit callbacks run in a context of their own: nothing they set
            # leaks into the loop's context, and they have no origin cell (their
            # output goes where the routing rules send such output).
            contextvars.Context().run(hook, IdleContext(self.fileno(), timeout))
        except Exception as exc:
            self.inputhook = None
            if self.on_failure is not None:
                self.on_failure(exc)
        finally:
            self.in_hook = False
        return super().select(0)


class MainLoop(asyncio.SelectorEventLoop):
    """The main thread's asyncio loop: its idle wait is an ``IdleSelector``'s.

    Callbacks scheduled from inside the inputhook (a toolkit callback that
    creates a task) wake the wait, as work from other threads does.
    """

    def __init__(self) -> None:
        self.idle_selector = IdleSelector()
        super().__init__(self.idle_selector)

    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        if self.idle_selector.in_hook:
            self._write_to_self()  # type: ignore[attr-defined]
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        if self.idle_selector.in_hook:
            self._write_to_self()  # type: ignore[attr-defined]
        return handle
