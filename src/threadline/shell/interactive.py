"""IPython's InteractiveShell, adapted to run behind a Jupyter kernel.

Execution, magics, history, completion (jedi) and inspection are IPython's
own; this subclass only redirects what IPython would print to a terminal:
tracebacks become ``error`` messages, pager text and ``set_next_input`` become
reply payloads, ``exit`` asks the kernel to shut down, and shell commands run
through pipes (there is no terminal).

The shell is a process-wide singleton (IPython's rule). The kernel executes one
cell at a time on it per shell thread; the last error of each executing thread
is kept thread-locally for the execute reply.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

from IPython.core.autocall import ExitAutocall
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Any as AnyTrait
from traitlets import Bool, Instance, Type, default

from threadline.after_import import importing, when_imported
from threadline.shell.display import JupyterDisplayHook, JupyterDisplayPublisher, KernelLink
from threadline.shell.history import KernelHistoryManager
from threadline.shell.tracebacks import trim_interrupt
from threadline.shell.transformer import CellTransformer

#: The modules that bring pdb in: the standard one, IPython's, the kernel's own.
_PDB_MODULES = ("pdb", "IPython.core.debugger", "threadline.shell.pdb_prompt")


class KernelExitAutocall(ExitAutocall):  # type: ignore[misc]
    """``exit`` / ``quit``; ``exit(keep_kernel=True)`` closes the front end but not the kernel."""

    def __call__(self, keep_kernel: bool = False) -> None:
        self._ip.keepkernel_on_exit = bool(keep_kernel)
        self._ip.ask_exit()


class ThreadlineShell(InteractiveShell):  # type: ignore[misc]
    """The IPython shell of a threadline kernel."""

    exiter = Instance(KernelExitAutocall)

    displayhook_class = Type(JupyterDisplayHook)
    display_pub_class = Type(JupyterDisplayPublisher)
    #: Whether ``exit`` keeps the kernel alive (the front end then closes only itself).
    keepkernel_on_exit = Bool(False)
    #: Set by the kernel right after construction.
    kernel_link = AnyTrait(None, allow_none=True)
    #: The kernel object, as ipywidgets and other libraries look it up (``get_ipython().kernel``).
    kernel = AnyTrait(None, allow_none=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._errors = threading.local()
        self._pretransformed = threading.local()
        self.set_hook("show_in_pager", _page_to_payload)

    @default("exiter")  # type: ignore[untyped-decorator]
    def _default_exiter(self) -> KernelExitAutocall:
        return KernelExitAutocall(self)

    @default("input_transformer_manager")  # type: ignore[untyped-decorator]
    def _default_input_transformer_manager(self) -> CellTransformer:
        return CellTransformer()  # IPython's, minus tokenizing plain Python (shell/transformer.py)

    @classmethod
    def create(cls, link: KernelLink, **config: Any) -> ThreadlineShell:
        shell: ThreadlineShell = cls.instance(**config)
        shell.kernel_link = link
        return shell

    def init_environment(self) -> None:
        """The environment a program sees when there is no terminal."""
        env = os.environ
        env["TERM"] = "xterm-color"
        env["CLICOLOR"] = "1"
        env["FORCE_COLOR"] = env.get("FORCE_COLOR", "1")
        env["PAGER"] = "cat"
        env["GIT_PAGER"] = "cat"
        env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    def init_history(self) -> None:
        """IPython's history, written without holding up the next cell (``shell/history.py``)."""
        self.history_manager = KernelHistoryManager(shell=self, parent=self)
        self.configurables.append(self.history_manager)

    @contextmanager
    def _tee(self, channel: str) -> Iterator[None]:
        """IPython 9 records every write made while a cell runs into its history.

        It does so by patching ``write`` on the stream object, so in a kernel
        where threads print, every thread's text -- gigabytes, for a flood --
        would be kept forever and filed under whichever cell happens to run.
        Stream text is therefore not recorded here; execute results still are.
        """
        yield

    def transform_cell(self, raw_cell: str) -> str:
        """IPython's transformation, keeping the cell's line numbers.

        IPython drops a cell's leading blank lines before compiling it, so the
        compiled code's line N is the cell's line N + k: a breakpoint the debugger
        panel sets on a line as the user sees it (and as ``dumpCell`` writes it)
        would miss, and a traceback would name the wrong line. Here the rest of
        the cell is transformed exactly as IPython does, and the blank lines are
        put back as empty ones.

        Inside ``transformed_once`` (the kernel's plain-cell path), IPython's own
        second call on the same cell returns the kernel's first result.
        """
        pending = getattr(self._pretransformed, "cell", None)
        if pending is not None and pending[0] is raw_cell:
            self._pretransformed.cell = None
            return str(pending[1])
        lines = raw_cell.splitlines(keepends=True)
        blank = 0
        while blank < len(lines) - 1 and lines[blank].isspace():
            blank += 1
        transformed: str = super().transform_cell("".join(lines[blank:]))
        return "\n" * blank + transformed

    def should_run_async(
        self, raw_cell: str, *, transformed_cell: str | None = None, preprocessing_exc_tuple: Any = None
    ) -> bool:
        """IPython's answer, without compiling a cell that cannot need a coroutine runner.

        IPython decides by compiling the whole cell (allowing top-level await)
        and looking for ``CO_COROUTINE`` -- and asks twice per cell, once here
        in the kernel and once inside ``run_cell``. Top-level code is a
        coroutine only through ``await``, ``async for``, ``async with`` or an
        async comprehension, all of which spell ``await`` or ``async``: a cell
        with neither word anywhere gets IPython's answer, False, for free.
        """
        cell = transformed_cell
        if cell is not None and "await" not in cell and "async" not in cell:
            return False
        answer: bool = super().should_run_async(
            raw_cell, transformed_cell=transformed_cell, preprocessing_exc_tuple=preprocessing_exc_tuple
        )
        return answer

    # No terminal: run shell commands through pipes so their output is captured.
    system = InteractiveShell.system_piped

    def enable_gui(self, gui: str | None = None) -> None:
        """``%gui NAME`` / ``%matplotlib NAME``: run that toolkit's loop while the kernel is idle."""
        from threadline import gui as gui_loops

        gui_loops.enable(gui)
        self.active_eventloop = gui_loops.active()  # IPython's name for it, read by libraries

    # -- errors ---------------------------------------------------------------------

    #: Set (on the main thread) while an interrupt is cancelling the running async cell.
    interrupting_async_cell = Bool(False)

    def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> None:
        """IPython's, except for interrupts: they show ``KeyboardInterrupt`` ending in the user's code.

        An interrupt cancels an async cell's task (or its trio cancel scope);
        IPython catches the resulting ``CancelledError`` (``trio.Cancelled``) in
        the cell like any other exception. The user asked for an interrupt, so
        that is what they see (and what the reply says). The kernel's own frames
        (its SIGINT handler, its ``input()``) are cut off an interrupt's
        traceback (``shell/tracebacks.py``).
        """
        etype, value, tb = sys.exc_info() if exc_tuple is None else exc_tuple
        if self.interrupting_async_cell and _is_cancellation(value):
            etype, value = KeyboardInterrupt, KeyboardInterrupt()
        if isinstance(value, KeyboardInterrupt):
            # Ends in the user's code, not in the kernel's handler (see shell/tracebacks.py).
            trim_interrupt(tb)
        _explain_no_running_loop(value)
        if value is not None:
            exc_tuple = (etype, value, tb)
        super().showtraceback(exc_tuple, *args, **kwargs)

    def _showtraceback(self, etype: type[BaseException], evalue: BaseException, stb: list[str]) -> None:
        content = {
            "ename": getattr(etype, "__name__", str(etype)),
            "evalue": str(evalue),
            "traceback": list(stb),
        }
        self._errors.last = content
        if getattr(self.displayhook, "formatting", False):
            # The cell's result could not be shown: the cell failed (as in ipykernel 7.3+).
            self._errors.in_displayhook = True
        _require_link(self).publish("error", content)

    def take_last_error(self) -> dict[str, Any] | None:
        """The error shown on this thread since the last call, if any."""
        error: dict[str, Any] | None = getattr(self._errors, "last", None)
        self._errors.last = None
        return error

    def take_displayhook_failure(self) -> bool:
        """Whether showing a cell's result on this thread failed since the last call."""
        failed = bool(getattr(self._errors, "in_displayhook", False))
        self._errors.in_displayhook = False
        return failed

    # -- payloads -------------------------------------------------------------------

    def set_next_input(self, text: str, replace: bool = False) -> None:
        self.payload_manager.write_payload({"source": "set_next_input", "text": text, "replace": replace})

    def use_kernel_pdb(self) -> None:
        """Every way into pdb opens ``KernelPdb`` (shell/pdb_prompt.py), from the first
        import of pdb or IPython's debugger on: a kernel never debugged loads neither.

        IPython's debugger imports pdb before it defines its own classes, and
        pdb_prompt imports both: whichever comes first, the install waits until
        none of the three is half built (``after_import.importing``).
        """

        def install(_module: object) -> None:
            if any(importing(name) for name in _PDB_MODULES):
                return  # the one being imported installs when it is done
            from threadline.shell import pdb_prompt

            pdb_prompt.install(self)

        for name in _PDB_MODULES:
            when_imported(name, install)

    @property
    def debugger_cls(self) -> type:
        """The debugger for ``%debug``, ``%pdb`` and the ``ipdb`` package (shell/pdb_prompt.py)."""
        from threadline.shell.pdb_prompt import KernelPdb  # pdb is imported when first needed

        return KernelPdb

    def ask_exit(self) -> None:
        self.exit_now = not self.keepkernel_on_exit
        self.payload_manager.write_payload({"source": "ask_exit", "keepkernel": self.keepkernel_on_exit})

    @contextmanager
    def transformed_once(self, raw_cell: str, transformed: str) -> Iterator[None]:
        """While the block runs on this thread, IPython's own ``transform_cell`` call
        inside ``run_cell`` -- on this very string -- gets ``transformed`` instead of
        transforming the cell again. The kernel transforms each cell once to decide
        how to run it; the second pass (tokenizing the cell, ~30 us for ``pass``)
        was pure repetition."""
        self._pretransformed.cell = (raw_cell, transformed)
        try:
            yield
        finally:
            self._pretransformed.cell = None


#: Added to "no running event loop": in ipykernel the same code finds the kernel's loop.
NO_RUNNING_LOOP_NOTE = (
    "threadline runs a cell without top-level await outside the kernel's event loop (so that "
    "asyncio.run() works there). Await something in the cell (even `await asyncio.sleep(0)`) "
    "to run it on the loop, or schedule with asyncio.ensure_future(...). See docs/threads.md, section 10."
)


def _explain_no_running_loop(value: BaseException | None) -> None:
    if (
        isinstance(value, RuntimeError)
        and str(value) == "no running event loop"
        and NO_RUNNING_LOOP_NOTE not in getattr(value, "__notes__", ())
    ):
        value.add_note(NO_RUNNING_LOOP_NOTE)


def _is_cancellation(value: BaseException | None) -> TypeGuard[BaseException]:
    """Whether ``value`` is how asyncio or trio (``%autoawait trio``) ends a cancelled cell."""
    if isinstance(value, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(value, trio.Cancelled)


def _page_to_payload(shell: ThreadlineShell, data: Any, start: int = 0, screen_lines: int = 0) -> None:
    """IPython's pager hook: send the text as a ``page`` payload, as front ends expect."""
    if not isinstance(data, dict):
        data = {"text/plain": str(data)}
    shell.payload_manager.write_payload({"source": "page", "data": data, "start": start})


def _require_link(shell: ThreadlineShell) -> KernelLink:
    link: KernelLink | None = shell.kernel_link
    if link is None:
        raise RuntimeError("the threadline shell is not connected to a kernel")
    return link
