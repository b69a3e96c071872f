"""wxPython (``%gui wx``, ``%matplotlib wx``): a ``wx.GUIEventLoop`` in the idle wait.

Theory of operation
-------------------
wx offers no portable way to watch a file descriptor, but it offers a
thread-safe, natively waking way to stop its loop: ``wx.CallAfter``. So while
the hook runs the loop, a small watcher thread blocks in ``select`` on the
kernel's descriptor (and on a pipe the hook uses to release it) and, when the
descriptor is readable, calls ``wx.CallAfter(loop.Exit)``. A ``wx.CallLater``
quits at the kernel's next timer. Neither side polls. Enabling creates the
``wx.App`` if there is none (kept alive here).

Not exercised by threadline's tests: wxPython has no Linux wheels on PyPI
(see docs/gui.md).
"""

from __future__ import annotations

import importlib
import os
import select
import threading
from typing import Any

from threadline.gui import GuiUnavailable
from threadline.gui.idle import IdleContext, Inputhook

_application: Any = None


def inputhook_for() -> Inputhook:
    global _application
    try:
        wx: Any = importlib.import_module("wx")
    except ImportError as exc:
        raise GuiUnavailable(f"%gui wx needs wxPython: {exc}") from exc
    if wx.GetApp() is None:
        _application = wx.App(redirect=False)

    def inputhook(context: IdleContext) -> None:
        loop = wx.GUIEventLoop()
        release_r, release_w = os.pipe()

        def watch() -> None:
            ready, _, _ = select.select([context.fileno(), release_r], [], [])
            if context.fileno() in ready:
                wx.CallAfter(loop.Exit)

        watcher = threading.Thread(target=watch, name="threadline-wx-watch", daemon=True)
        watcher.start()
        timeout_ms = context.timeout_ms()
        timer = wx.CallLater(timeout_ms, loop.Exit) if timeout_ms is not None else None
        try:
            with wx.EventLoopActivator(loop):
                loop.Run()
        finally:
            if timer is not None:
                timer.Stop()
            os.write(release_w, b"x")
            watcher.join()
            os.close(release_r)
            os.close(release_w)

    return inputhook
