"""Tk (``%gui tk``, ``%matplotlib tk``): Tcl's event loop in the kernel's idle wait.

Theory of operation
-------------------
Tcl keeps one event queue per thread, shared by every interpreter in it: a
``Tcl_DoOneEvent`` made through any interpreter serves the windows of every
``tkinter.Tk()`` the user creates (their X connection is a Tcl file handler),
their ``after`` timers and idle callbacks. So the hook drives the queue
through a private, window-less interpreter (``tkinter.Tcl()``): it registers
the kernel's descriptor with ``createfilehandler`` (Tcl's notifier waits on it
natively) and a ``createtimerhandler`` for the kernel's next timer, and calls
``dooneevent()`` -- which blocks, with the GIL released, until some event --
until either has fired. The user's ``Tk()`` objects are untouched: they may
be created and destroyed freely.

A Tk callback that raises is reported by tkinter itself
(``Tk.report_callback_exception``: the traceback on stderr, so in the latest
cell).
"""

from __future__ import annotations

import tkinter
from typing import Any

from threadline.gui.idle import IdleContext, Inputhook

#: The window-less interpreter that drives the queue: one per process, reused by every ``%gui tk``.
_driver: Any = None


def inputhook_for() -> Inputhook:
    """Prepare a window-less Tcl interpreter to drive the thread's event queue."""
    global _driver
    if _driver is None:
        _driver = tkinter.Tcl().tk
    driver = _driver

    def inputhook(context: IdleContext) -> None:
        woken = False

        def wake(*_: object) -> None:
            nonlocal woken
            woken = True

        fd = context.fileno()
        driver.createfilehandler(fd, tkinter.READABLE, wake)
        timeout_ms = context.timeout_ms()
        timer = driver.createtimerhandler(timeout_ms, wake) if timeout_ms is not None else None
        try:
            while not woken:
                driver.dooneevent(0)
        finally:
            driver.deletefilehandler(fd)
            if timer is not None:
                timer.deletetimerhandler()

    return inputhook
