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
user), onwards. The first entry always stays: it is the frame that ran the
code (IPython's ``run_code``), which IPython itself leaves out by offset. The
chain is edited in place (``tb_next`` is writable), so every later reader of
the exception sees the same traceback. Only interrupts are trimmed: any other
error's traceback is the truth about where it was raised.
"""

from __future__ import annotations

import bdb
import os
from pathlib import Path
from types import CodeType, TracebackType

#: Where threadline's own modules live (frames from here are the kernel's).
_KERNEL_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
#: Frames a debugger's trace function runs in: the interpreter called them, not the user.
_TRACE_ENTRIES: frozenset[CodeType] = frozenset({bdb.Bdb.trace_dispatch.__code__})


def _ends_user_code(tb: TracebackType) -> bool:
    code = tb.tb_frame.f_code
    return code.co_filename.startswith(_KERNEL_DIR) or code in _TRACE_ENTRIES


def trim_interrupt(tb: TracebackType | None) -> None:
    """Cut the kernel's frames off the traceback of an interrupt (see the module docstring)."""
    while tb is not None and tb.tb_next is not None:
        if _ends_user_code(tb.tb_next):
            tb.tb_next = None
            return
        tb = tb.tb_next
