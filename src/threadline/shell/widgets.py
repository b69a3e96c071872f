"""``with out:`` (an ipywidgets ``Output``) from several threads at once.

A front end shows in an ``Output`` widget every message whose parent
``msg_id`` equals the widget's ``msg_id``. ipywidgets sets that to the current
cell's id. That is kept for the first capture of a cell -- so ``with out:``
behaves exactly as everywhere else, also in clients such as nbclient that
only read the executing cell's messages -- but a capture that starts while
another thread of the same cell is already capturing gets a parent of its
own: the cell's header with a fresh ``msg_id``. The thread's output is routed
there for the duration of the block, and only its widget shows it. So two
threads capturing into two widgets never see each other's output.

The widget's ``msg_id`` is always changed while the thread is still routed to
the cell, so that state update reaches every client. Leaving the block
restores the thread's routing, then the widget's previous ``msg_id``.

ipywidgets is not imported by the kernel: the patch is applied when user code
first imports ``ipywidgets.widgets.widget_output`` (or at once if it already
was), through a small import hook.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from threadline import routing
from threadline.routing import Parent

_MODULE = "ipywidgets.widgets.widget_output"

# How many captures are open per cell (by msg_id), to know when to isolate.
_open_captures: Counter[str] = Counter()
_open_lock = threading.Lock()


def _capture_enter(self: Any) -> None:
    self._flush()
    parent = routing.current_parent()
    if parent is None:
        return
    with _open_lock:
        shared = _open_captures[parent.msg_id] == 0
        _open_captures[parent.msg_id] += 1
    capture = (
        parent
        if shared
        else Parent(
            {**parent.header, "msg_id": f"{parent.msg_id}-output-{uuid.uuid4().hex[:12]}"},
            parent.identities,
            allow_stdin=parent.allow_stdin,
        )
    )
    previous_msg_id = self.msg_id
    self.msg_id = capture.msg_id  # sent while still routed to the cell
    stacks: dict[int, list[tuple[Any, str, str]]] = self.__dict__.setdefault("_threadline_captures", {})
    stacks.setdefault(threading.get_ident(), []).append(
        (routing.set_origin(capture), previous_msg_id, parent.msg_id)
    )


def _capture_exit(self: Any, etype: Any, evalue: Any, tb: Any) -> bool | None:
    shown = False
    if etype is not None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.showtraceback((etype, evalue, tb), tb_offset=0)  # into the widget
            shown = True
    self._flush()
    stacks: dict[int, list[tuple[Any, str, str]]] = self.__dict__.get("_threadline_captures", {})
    stack = stacks.get(threading.get_ident())
    if stack:
        token, previous_msg_id, cell_msg_id = stack.pop()
        routing.reset_origin(token)
        self.msg_id = previous_msg_id
        with _open_lock:
            _open_captures[cell_msg_id] -= 1
            if _open_captures[cell_msg_id] <= 0:
                del _open_captures[cell_msg_id]
    return True if shown else None


def _patch(module: ModuleType) -> None:
    output = module.Output
    if getattr(output, "_threadline_patched", False):
        return
    output.__enter__ = _capture_enter
    output.__exit__ = _capture_exit
    output._threadline_patched = True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of one module to patch it once loaded."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                _patch_after_exec(spec.loader)
                return spec
        return None


def _patch_after_exec(loader: Any) -> None:
    original = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        original(module)
        _patch(module)

    loader.exec_module = exec_module


def install_output_capture() -> None:
    """Patch ``Output`` now if imported, else as soon as it is. Idempotent."""
    module = sys.modules.get(_MODULE)
    if module is not None:
        _patch(module)
        return
    if not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
