"""An interrupt's traceback ends in the user's code.

Theory of operation
-------------------
A ``KeyboardInterrupt`` from the stop button is raised by the kernel's SIGINT
handler, a Python function (``ShellChannel.on_sigint``: it decides first
whether the moment is safe), or re-raised by the kernel's own ``input()`` and
by the text debugger when the interrupt came at a prompt. Python records every
frame the exception passed through, so the traceback the user would see ends in
the kernel's code -- the handler, the stdin wait, the debugger's trace
function -- where ipykernel's (whose handler is C) ends at the user's line.

``trim_interrupt`` cuts those frames off the traceback object itself, before
IPython formats it and stores it for ``%debug`` and ``%tb``: everything from
the first frame of threadline's own code, or of a debugger's trace function
(``bdb.Bdb.trace_dispatch``, entered from the interpreter, not called by the
user), onwards -- an interrupt at a debugger's prompt then ends at the line the
debugger had stopped on. The first entry always stays: it is the frame that ran the
code (IPython's ``run_code``), which IPython itself leaves out by offset. The
chain is edited in place (``tb_next`` is writable), so every later reader of
the exception sees the same traceback. Only interrupts are trimmed: any other
error's traceback is the truth about where it was raised.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import CodeType, FrameType, TracebackType

#: Where threadline's own modules live (frames from here are the kernel's).
_KERNEL_DIR = str(Path(__file__).resolve().parent.parent) + os.sep


def _is_trace_entry(code: CodeType) -> bool:
    """Is this a debugger's trace function, called by the interpreter, not the user?
    (No debugger can have run if ``bdb`` was never imported.)"""
    bdb = sys.modules.get("bdb")
    return bdb is not None and code is getattr(bdb.Bdb.trace_dispatch, "__code__", None)


def _ends_user_code(tb: TracebackType) -> bool:
    code = tb.tb_frame.f_code
    return code.co_filename.startswith(_KERNEL_DIR) or _is_trace_entry(code)


def trim_interrupt(tb: TracebackType | None) -> None:
    """Cut the kernel's frames off the traceback of an interrupt (see the module docstring)."""
    while tb is not None and tb.tb_next is not None:
        if _ends_user_code(tb.tb_next):
            tb.tb_next = _traced_frame_entry(tb, tb.tb_next)
            return
        tb = tb.tb_next


def _traced_frame_entry(last: TracebackType, cut: TracebackType) -> TracebackType | None:
    """What replaces the cut-off entries: nothing, or the frame a debugger had stopped in.

    An interrupt at a debugger's prompt leaves its trace function, which the
    interpreter called for an event in the user's frame. When that event was the
    frame's return (pdb's "--Return--"), the frame is no longer in the traceback;
    an entry for it, at the line it stopped on, ends the traceback where the user
    saw the debugger stop.
    """
    if not _is_trace_entry(cut.tb_frame.f_code):
        return None
    traced = cut.tb_frame.f_locals.get("frame")
    if not isinstance(traced, FrameType) or traced is last.tb_frame:
        return None
    return TracebackType(None, traced, traced.f_lasti, traced.f_lineno or 0)
