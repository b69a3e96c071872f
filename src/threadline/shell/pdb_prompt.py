"""pdb in a notebook: IPython's debugger, its prompt answered over the stdin channel.

Theory of operation
-------------------
``breakpoint()``, ``pdb.set_trace()``, IPython's ``set_trace()``, ``%debug``,
``%pdb`` and ``pdb.post_mortem()`` all open ``KernelPdb``: IPython's debugger
(the ``ipdb>`` prompt, colours, ``?``/``??``), as under ipykernel. Its prompt is
``input()``, which the kernel answers through the stdin channel
(``kernel/stdin.py``), so the front end shows a text box under the cell.
``install`` makes every one of those entry points open it; the shell calls it
as soon as pdb or IPython's debugger is first imported, by whatever thread
(``ThreadlineShell.use_kernel_pdb``): a kernel never debugged loads neither.

An interrupt at the prompt (the stop button) ends the debugging session and
the cell: the prompt is withdrawn, tracing stops, and ``KeyboardInterrupt``
leaves the cell, whose reply says so; the next cell runs. (ipykernel's
``InterruptiblePdb`` leaves the debugger but lets the cell run on, and a
``breakpoint()`` in a loop prompts again at once; docs/compatibility.md.)
IPython's debugger catches ``KeyboardInterrupt`` around its prompt loop, so
the interrupt passes it disguised as ``_LeaveCell`` and is raised again,
unchanged, once outside.

The kernel's SIGINT handler stays in charge while the debugged code runs
(``nosigint``): pdb would otherwise put its own in place on ``continue``, and
an interrupt would open a prompt instead of stopping the cell.

``breakpoint()`` calls ``pdb.set_trace`` (the default of ``PYTHONBREAKPOINT``),
so replacing that one function covers it. When the visual debugger (JupyterLab's
debugger panel, ``kernel/debugger.py``) has a client attached, it takes the
breakpoint instead: ``visual_breakpoint`` is its hook.
"""

from __future__ import annotations

import pdb
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from IPython.core import debugger


class _LeaveCell(BaseException):
    """Carries an interrupt at the prompt past IPython's own ``except KeyboardInterrupt``."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__()
        self.interrupt = interrupt


class KernelPdb(debugger.InterruptiblePdb):  # type: ignore[misc]
    """IPython's debugger, for a kernel: an interrupt at its prompt ends the cell."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("nosigint", True)  # the kernel's SIGINT handler stays in charge
        super().__init__(*args, **kwargs)

    def cmdloop(self, intro: str | None = None) -> None:
        try:
            super().cmdloop(intro)  # InterruptiblePdb's: stops debugging on an interrupt, re-raises
        except KeyboardInterrupt as interrupt:
            self.message("--KeyboardInterrupt--")
            raise _LeaveCell(interrupt) from None

    def interaction(self, frame: FrameType | None, tb_or_exc: Any) -> None:
        try:
            super().interaction(frame, tb_or_exc)
        except _LeaveCell as leave:
            raise leave.interrupt from None


#: Set by the visual debugger: called with the frame of a ``breakpoint()``; True
#: means it stopped there itself (a client is attached), so no prompt is needed.
visual_breakpoint: Callable[[FrameType], bool] | None = None


def set_trace(*, header: str | None = None) -> None:
    """``pdb.set_trace`` (and so ``breakpoint()``): stop in the caller's frame."""
    frame = sys._getframe().f_back
    assert frame is not None
    hook = visual_breakpoint
    if hook is not None and hook(frame):
        return
    debugging = KernelPdb()
    if header is not None:
        debugging.message(header)
    debugging.set_trace(frame)


def install(shell: Any) -> None:
    """Make every way into pdb open ``KernelPdb`` (when pdb is first imported; again is harmless)."""
    debugger.Pdb = KernelPdb  # IPython's own set_trace() builds one of these
    pdb.Pdb = KernelPdb  # type: ignore[misc]  # pdb.post_mortem(), pdb.pm(), pdb.run()
    pdb.set_trace = set_trace  # and breakpoint(), through PYTHONBREAKPOINT's default
    shell.InteractiveTB.debugger_cls = KernelPdb  # %debug and %pdb
    shell.InteractiveTB.pdb = None
