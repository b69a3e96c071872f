"""Cocoa (``%gui osx``, ``%matplotlib osx``, macOS only): IPython's Cocoa inputhook.

Theory of operation
-------------------
Driving ``NSApplication`` takes the Objective-C runtime through ctypes: run
``[NSApp run]`` and stop it from a ``CFFileDescriptor`` callback on the
kernel's descriptor. IPython ships exactly that hook for its terminal
(``IPython.terminal.pt_inputhooks.osx``), with the inputhook form threadline
uses (``context.fileno()``), so threadline runs it as it is rather than keep
a second Objective-C bridge. It does not know ``context.timeout``: while it
runs, the kernel's asyncio timers (background tasks of cells) wait for the
next event or request.

Not exercised by threadline's tests, which run on Linux.
"""

from __future__ import annotations

from threadline.gui.idle import Inputhook


def inputhook_for() -> Inputhook:
    from IPython.terminal.pt_inputhooks import osx

    hook: Inputhook = osx.inputhook
    return hook
