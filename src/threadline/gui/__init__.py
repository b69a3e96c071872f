"""GUI event loops on the main thread: ``%gui NAME`` and ``%matplotlib tk|qt|...``.

Theory of operation
-------------------
Toolkits (Tk, Qt, GTK, wx, Cocoa) insist on running on the main thread, and
their windows answer only while their event loop runs. The kernel's main
thread spends its idle time in one wait, its asyncio loop's selector
(``threadline.gui.idle``); enabling a GUI puts that toolkit's *inputhook* in
the wait. An inputhook runs the toolkit's loop until a file descriptor -- the
selector's own, readable whenever the kernel has work -- is readable, watching
it with the toolkit's native mechanism, or until the kernel's next timer is
due. The IO thread keeps every socket; the main thread wakes for a request at
once and burns no CPU while idle.

This package is the registry: a name (``tk``, ``qt``, ``gtk3``, ...) maps to a
``Toolkit``: the module holding its inputhook (one small module per toolkit,
imported only when enabled) and whether it needs a display. ``enable(name)``
checks the display, imports the module, calls its ``inputhook_for()`` (which
prepares the toolkit -- a ``QApplication``, a Tcl interpreter -- and returns
the hook) and installs the hook; ``enable(None)`` turns it off. The core (the
kernel, the shell) knows no toolkit; a toolkit threadline does not know is
added with ``register`` (see its docstring) and then works with ``%gui NAME``.

Where a callback's output goes: toolkit callbacks run on the main thread
between cells with no cell of their own, so their output and tracebacks go
where threadline sends all such output -- the most recent execute request
(README, "Where output goes"). ``threadline.bind(callback)`` pins a callback
to the cell that set it up instead.

Thread safety: ``enable`` and the hooks run on the main thread only (enabling
from another thread is refused); the selector reads its hook on that thread.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NamedTuple

from threadline.gui.idle import IdleContext, IdleSelector, Inputhook, MainLoop

__all__ = [
    "GuiUnavailable",
    "IdleContext",
    "Inputhook",
    "MainLoop",
    "Toolkit",
    "active",
    "attach",
    "available",
    "enable",
    "register",
]

log = logging.getLogger("threadline.gui")


class GuiUnavailable(RuntimeError):
    """This toolkit cannot run here (no display, not installed, wrong platform)."""


class Toolkit(NamedTuple):  # not a dataclass: built at every kernel's import, a tenth of the cost
    """How to run one toolkit's loop in the kernel's idle wait."""

    #: Returns the inputhook, after preparing the toolkit; raises GuiUnavailable when it cannot.
    load: Callable[[], Inputhook]
    #: Whether windows need a display server ($DISPLAY / $WAYLAND_DISPLAY on Linux and BSD).
    needs_display: bool = True
    #: The platforms it exists on (``sys.platform`` prefixes); empty: everywhere.
    platforms: tuple[str, ...] = ()


def _from_module(module: str, *args: str) -> Callable[[], Inputhook]:
    """Load ``threadline.gui.<module>.inputhook_for(*args)`` when the toolkit is enabled."""

    def load() -> Inputhook:
        hook: Inputhook = importlib.import_module(f"threadline.gui.{module}").inputhook_for(*args)
        return hook

    return load


_TOOLKITS: dict[str, Toolkit] = {
    "tk": Toolkit(_from_module("tk")),
    "qt": Toolkit(_from_module("qt", "qt")),
    "qt6": Toolkit(_from_module("qt", "qt6")),
    "qt5": Toolkit(_from_module("qt", "qt5")),
    "gtk3": Toolkit(_from_module("gtk", "3.0")),
    "gtk4": Toolkit(_from_module("gtk", "4.0")),
    "wx": Toolkit(_from_module("wx")),
    "osx": Toolkit(_from_module("osx"), needs_display=False, platforms=("darwin",)),
}
# Other names IPython and matplotlib use for the same loops.
_ALIASES = {"qt4": "qt", "gtk": "gtk3", "macosx": "osx", "tkinter": "tk"}

_selector: IdleSelector | None = None
_active: str | None = None


def register(
    name: str,
    inputhook: Inputhook,
    *,
    prepare: Callable[[], object] | None = None,
    needs_display: bool = True,
) -> None:
    """Make ``%gui name`` (and ``threadline.gui.enable(name)``) run ``inputhook``.

    ``inputhook(context)`` runs on the main thread whenever the kernel is
    idle. It must run the toolkit's event loop and return as soon as
    ``context.fileno()`` is readable (the kernel has work: watch it with the
    toolkit's own file-descriptor watch, never a poll) or ``context.timeout``
    seconds have passed (``None``: no deadline; ``context.timeout_ms()`` gives
    whole milliseconds). ``context.input_is_ready()`` answers "is it readable
    now?". An IPython terminal inputhook (``IPython.terminal.pt_inputhooks``)
    has this form already; one that ignores ``timeout`` delays the kernel's
    asyncio timers (background tasks) until the next event.

    ``prepare()``, if given, runs each time the GUI is enabled, before the
    hook is installed: create the toolkit's application object there, and
    raise ``GuiUnavailable("why")`` when the toolkit cannot run (the user
    sees the reason; nothing changes). ``needs_display``: refuse to enable
    without $DISPLAY/$WAYLAND_DISPLAY on Linux, for a toolkit that would
    abort the process without one. An exception the hook raises turns the
    loop off and is shown in the latest cell.
    """
    if not name or not name.isidentifier():
        raise ValueError(f"a GUI name must be an identifier, not {name!r}")

    def load() -> Inputhook:
        if prepare is not None:
            prepare()
        return inputhook

    _TOOLKITS[name] = Toolkit(load, needs_display=needs_display)


def available() -> list[str]:
    """The names ``%gui`` knows (whether or not each toolkit is installed)."""
    return sorted(_TOOLKITS)


def active() -> str | None:
    """The name of the GUI whose loop runs while the kernel is idle, or None."""
    return _active


def attach(selector: IdleSelector) -> None:
    """Called by the kernel: this is the main thread's idle wait."""
    global _selector
    _selector = selector
    selector.on_failure = _report_failure


def enable(name: str | None) -> None:
    """Run toolkit ``name``'s loop while the kernel is idle; ``None`` (or ``""``) turns it off.

    Raises ``GuiUnavailable`` with the reason when it cannot (nothing changes
    then), ``ValueError`` for a name it does not know.
    """
    global _active
    if threading.current_thread() is not threading.main_thread():
        raise GuiUnavailable("a GUI event loop can only be enabled from the main thread (a cell)")
    if _selector is None:
        raise GuiUnavailable("GUI event loops need the threadline kernel's main loop")
    if not name or name == "inline":
        _selector.inputhook, _active = None, None
        return
    canonical = _ALIASES.get(name, name)
    toolkit = _TOOLKITS.get(canonical)
    if toolkit is None:
        raise ValueError(f"unknown GUI {name!r}; known: {', '.join(available())}")
    if toolkit.platforms and not sys.platform.startswith(toolkit.platforms):
        raise GuiUnavailable(f"%gui {name} exists only on {', '.join(toolkit.platforms)}, not {sys.platform}")
    if toolkit.needs_display:
        _require_display(name)
    try:
        hook = toolkit.load()
    except ImportError as exc:
        raise GuiUnavailable(f"%gui {name} cannot load its toolkit: {exc}") from exc
    _selector.inputhook, _active = hook, canonical


def _require_display(name: str) -> None:
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return  # Windows and macOS always have their window system
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    qt_platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if name.startswith("qt") and qt_platform in ("offscreen", "minimal"):
        return  # Qt draws off screen: no display needed
    raise GuiUnavailable(
        f"%gui {name}: there is no display -- neither $DISPLAY nor $WAYLAND_DISPLAY is set in the "
        "kernel's environment, so no window can open. Start the kernel where a display is (or under "
        "Xvfb), or use %matplotlib inline."
    )


def _report_failure(exc: BaseException) -> None:
    """The inputhook raised (it is off now): say so where the user looks, and in the log."""
    global _active
    name, _active = _active, None
    log.error("the %s event loop failed and is turned off", name, exc_info=exc)
    notice = f"threadline: the {name} event loop failed and is off (%gui {name} restarts it):\n"
    sys.stderr.write(notice + "".join(traceback.format_exception(exc)))  # one write: one message
