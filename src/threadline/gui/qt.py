"""Qt (``%gui qt|qt6|qt5``, ``%matplotlib qt``): a ``QEventLoop`` in the kernel's idle wait.

Theory of operation
-------------------
Qt aborts the whole process when it cannot reach its display, so enabling
first checks that an X server answers at a local ``$DISPLAY``.

The binding is the one already imported (matplotlib may have chosen it), else
the one ``$QT_API`` names, else the first installed of PySide6, PyQt6, PyQt5,
PySide2 (``qt6``/``qt5`` narrow the list). Enabling creates the
``QApplication`` if the user has none yet (kept alive here), because windows
need one and creating it is only safe on the main thread.

The hook runs a ``QEventLoop`` until a ``QSocketNotifier`` on the kernel's
descriptor (Qt's dispatcher waits on it natively) or a single-shot
``QTimer`` for the kernel's next timer quits it. Notifier, timer and loop are
made once and reused, the notifier disabled between waits. ``exec()`` may
also return early -- closing the last window quits every running loop -- so
it is entered again until the wait is really over.

An exception in a slot is printed by the binding through ``sys.excepthook``
(stderr: the latest cell) and the loop goes on.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
from types import ModuleType
from typing import Any

from threadline.gui import GuiUnavailable
from threadline.gui.idle import IdleContext, Inputhook

BINDINGS = {
    "qt": ("PySide6", "PyQt6", "PyQt5", "PySide2"),
    "qt6": ("PySide6", "PyQt6"),
    "qt5": ("PyQt5", "PySide2"),
}
#: $QT_API values (matplotlib's and qtpy's spelling) and the binding each means.
QT_API_NAMES = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside2": "PySide2"}

#: The QApplication this module created, if it did (a Qt application must outlive its windows).
_application: Any = None


def choose_binding(flavour: str) -> str:
    """The Qt binding to use for ``%gui <flavour>``."""
    candidates = BINDINGS[flavour]
    for name in candidates:
        if f"{name}.QtCore" in sys.modules:
            return name
    wanted = QT_API_NAMES.get(os.environ.get("QT_API", "").lower())
    if wanted in candidates:
        return wanted
    for name in candidates:
        try:
            importlib.import_module(f"{name}.QtCore")
        except ImportError:
            continue
        return name
    raise GuiUnavailable(f"%gui {flavour} needs a Qt binding; none of {', '.join(candidates)} is installed")


def require_x_server() -> None:
    """Refuse, rather than let Qt abort the whole process, when $DISPLAY names no X server.

    Only for Qt's X11 platform on a local display (``:N``, ``unix:N``), the usual
    case: it connects to the server's socket and hangs up.
    """
    display = os.environ.get("DISPLAY", "")
    platform = os.environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0]
    if platform != "xcb" or os.environ.get("WAYLAND_DISPLAY") or not sys.platform.startswith("linux"):
        return
    host, _, rest = display.rpartition(":")
    number = rest.partition(".")[0]
    if host not in ("", "unix") or not number.isdigit():
        return  # a remote display: let Qt try
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(f"/tmp/.X11-unix/X{number}")
        except OSError as exc:
            raise GuiUnavailable(
                f"%gui qt: no X server answers at DISPLAY={display} ({exc.strerror}); Qt would abort "
                "the kernel, so the Qt loop stays off"
            ) from exc


def inputhook_for(flavour: str) -> Inputhook:
    global _application
    binding = choose_binding(flavour)
    core: ModuleType = importlib.import_module(f"{binding}.QtCore")
    widgets: ModuleType = importlib.import_module(f"{binding}.QtWidgets")
    if widgets.QApplication.instance() is None:
        require_x_server()
        _application = widgets.QApplication([sys.argv[0] if sys.argv else "threadline"])
    loop = core.QEventLoop()
    timer = core.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    notifiers: dict[int, Any] = {}  # one per descriptor (the selector's stays the same)
    notifier_type = getattr(core.QSocketNotifier, "Type", core.QSocketNotifier)  # Qt 6 / Qt 5 enums
    read = notifier_type.Read

    def inputhook(context: IdleContext) -> None:
        fd = context.fileno()
        notifier = notifiers.get(fd)
        if notifier is None:
            notifier = notifiers[fd] = core.QSocketNotifier(fd, read)
            notifier.activated.connect(loop.quit)
        deadline = None if context.timeout is None else time.monotonic() + context.timeout
        timeout_ms = context.timeout_ms()
        if timeout_ms is not None:
            timer.start(timeout_ms)
        notifier.setEnabled(True)
        try:
            while True:
                loop.exec()
                if context.input_is_ready() or (deadline is not None and time.monotonic() >= deadline):
                    return
        finally:
            notifier.setEnabled(False)
            timer.stop()

    return inputhook
