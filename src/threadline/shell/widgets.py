"""``with out:`` (an ipywidgets ``Output``) that captures only the calling thread.

A front end shows in an ``Output`` widget every message whose parent
``msg_id`` equals the widget's ``msg_id``. ipywidgets sets that to the current
cell's id, so two threads of one cell capturing into two widgets would each
see both threads' output. Here, entering ``with out:`` gives the calling
thread a capture parent of its own -- the cell's header with a fresh
``msg_id`` -- routes the thread's output to it for the duration of the block,
and points the widget at it. Leaving the block restores the thread's previous
routing (and the widget's previous ``msg_id``).

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
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from threadline import routing
from threadline.routing import Parent

_MODULE = "ipywidgets.widgets.widget_output"


def _capture_enter(self: Any) -> None:
    self._flush()
    parent = routing.current_parent()
    if parent is None:
        return
    capture = Parent(
        {**parent.header, "msg_id": f"{parent.msg_id}-output-{uuid.uuid4().hex[:12]}"},
        parent.identities,
        allow_stdin=parent.allow_stdin,
    )
    stacks: dict[int, list[tuple[Any, str]]] = self.__dict__.setdefault("_threadline_captures", {})
    stack = stacks.setdefault(threading.get_ident(), [])
    stack.append((routing.set_origin(capture), self.msg_id))
    self.msg_id = capture.msg_id


def _capture_exit(self: Any, etype: Any, evalue: Any, tb: Any) -> bool | None:
    shown = False
    if etype is not None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.showtraceback((etype, evalue, tb), tb_offset=0)  # into the widget
            shown = True
    self._flush()
    stacks: dict[int, list[tuple[Any, str]]] = self.__dict__.get("_threadline_captures", {})
    stack = stacks.get(threading.get_ident())
    if stack:
        token, previous_msg_id = stack.pop()
        routing.reset_origin(token)
        self.msg_id = previous_msg_id
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
