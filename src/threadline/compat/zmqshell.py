"""The shell under the name libraries look for: ``ZMQInteractiveShell``.

Theory of operation
-------------------
Libraries decide "am I in a notebook?" by the shell's class name (rich,
plotly, many ``is_notebook()`` helpers), and traitlets matches configuration
sections by class name, so ``c.ZMQInteractiveShell.x`` and ``%config
ZMQInteractiveShell.x = ...`` work only if the class is really called that.
This subclass of threadline's shell carries that name, ipykernel's kernel
magics, and ipykernel's parent accessors -- all of them calling into
``threadline.routing``, which stays the one source of truth for where output
goes. Because this module's dotted name ends in ``zmqshell``, the common
``'zmqshell' in str(type(get_ipython()))`` test answers yes as well.

``alias_ipykernel_zmqshell`` answers tqdm's test (``'ipykernel.zmqshell' in
sys.modules``, tqdm >= 4.67.2) by registering this module under that name
when the real one is not loaded. It adds no ``ipykernel`` package, so
``import ipykernel`` still finds the real one or fails as usual.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Mapping
from typing import Any

from threadline import routing
from threadline.compat.kernel import extract_header, parent_message
from threadline.compat.magics import KernelMagics
from threadline.shell.interactive import ThreadlineShell

__all__ = ["ZMQInteractiveShell", "alias_ipykernel_zmqshell"]


class ZMQInteractiveShell(ThreadlineShell):
    """threadline's shell, named as ipykernel's is (rich, plotly, tqdm, traitlets config read the name)."""

    def init_magics(self) -> None:
        super().init_magics()
        # ipykernel's kernel magics: %connect_info, %autosave, %edit, %less, %man, %clear, %qtconsole
        self.register_magics(KernelMagics)
        self.magics_manager.register_alias("ed", "edit")

    # ipywidgets' Output widget (and ipykernel.comm users): the request output goes to now
    def get_parent(self) -> dict[str, Any]:
        return parent_message(routing.current_parent())

    @property
    def parent_header(self) -> dict[str, Any]:
        # ipykernel's name for the same thing
        return self.get_parent()

    def set_parent(self, parent: Mapping[str, Any]) -> None:
        """Send this context's output (this thread, this task) to ``parent``'s cell.

        ipywidgets' Output widget calls this with the current parent; that is
        a no-op here, so the request's identities (for ``input()``) are kept.
        """
        header = extract_header(parent)
        current = routing.current_parent()
        if current is not None and current.header.get("msg_id") == header.get("msg_id"):
            return
        routing.set_origin(routing.Parent(header=header))

    # ipykernel >= 6.29's thread-local parent (its own test suite; libraries that route a thread)
    def set_thread_parent(self, parent: Mapping[str, Any]) -> contextvars.Token[routing.Route | None]:
        """Send this thread's (this context's) output to ``parent``'s cell until ``reset_thread_parent``."""
        current = routing.current_parent()
        header = extract_header(parent)
        if current is not None and current.header.get("msg_id") == header.get("msg_id"):
            return routing.set_origin(current)  # keeps the request's identities (for input())
        return routing.set_origin(routing.Parent(header=header))

    def reset_thread_parent(self, token: contextvars.Token[routing.Route | None]) -> None:
        """Undo ``set_thread_parent``: the context's own routing again (in threadline, a thread's
        own cell -- see docs/compatibility.md, "Thread output")."""
        routing.reset_origin(token)


def alias_ipykernel_zmqshell() -> None:
    """Make ``'ipykernel.zmqshell' in sys.modules`` true (tqdm.auto reads it), unless it already is."""
    sys.modules.setdefault("ipykernel.zmqshell", sys.modules[__name__])
