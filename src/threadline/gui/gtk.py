"""GTK 3 and 4 (``%gui gtk3|gtk4``, ``%matplotlib gtk3|gtk4``): a GLib main loop in the idle wait.

Theory of operation
-------------------
GTK's events, like every GLib source of the thread's default main context,
are dispatched by a ``GLib.MainLoop``. The hook runs one until a GLib watch
on the kernel's descriptor (``GLib.io_add_watch``: the main context polls it
natively) or a ``GLib.timeout_add`` for the kernel's next timer quits it, and
removes both sources afterwards. Enabling checks that PyGObject has the
requested GTK version (``gi.require_version``), so a mismatch is reported
when the GUI is enabled rather than in the idle wait.

Not exercised by threadline's tests: PyGObject does not install from PyPI
without GTK's development files (see docs/gui.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from threadline.gui import GuiUnavailable
from threadline.gui.idle import IdleContext, Inputhook


def inputhook_for(version: str) -> Inputhook:
    try:
        gi: Any = importlib.import_module("gi")
        gi.require_version("Gtk", version)
        glib: Any = importlib.import_module("gi.repository.GLib")
    except (ImportError, ValueError) as exc:
        raise GuiUnavailable(f"%gui gtk{version[0]} needs PyGObject with GTK {version}: {exc}") from exc

    def inputhook(context: IdleContext) -> None:
        loop = glib.MainLoop()
        live: dict[str, int] = {}

        def quitter(kind: str) -> Any:
            def quit(*_: object) -> bool:
                del live[kind]  # returning False removes this source
                loop.quit()
                return False

            return quit

        live["fd"] = glib.io_add_watch(context.fileno(), glib.PRIORITY_DEFAULT, glib.IO_IN, quitter("fd"))
        timeout_ms = context.timeout_ms()
        if timeout_ms is not None:
            live["timer"] = glib.timeout_add(timeout_ms, quitter("timer"))
        try:
            loop.run()
        finally:
            for source in list(live.values()):
                glib.source_remove(source)

    return inputhook
