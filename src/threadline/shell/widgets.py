"""``with out:`` (an ipywidgets ``Output``) from several threads at once.

A front end shows in an ``Output`` widget every message whose parent
``msg_id`` equals the widget's ``msg_id``; ipywidgets sets that to the current
cell's id. That is kept for the first capture of a cell, so ``with out:``
behaves exactly as everywhere else.

A second capture that starts while another thread of the same cell is already
capturing cannot work that way: both widgets would claim the same cell id, and
a made-up id does not work either (JupyterLab attaches a widget's capture hook
only to requests the browser itself sent, so output under any other id is
shown nowhere). Such a capture gets a *sink* instead: while the block runs,
that thread's output is appended, on that thread, to the widget's own
``outputs`` state -- which every front end renders, nbclient included. So two
threads capturing into two widgets never see each other's output.

ipywidgets is not imported by the kernel: the patch is applied when user code
first imports ``ipywidgets.widgets.widget_output`` (or at once if it already
was), through ``threadline.after_import``.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import ModuleType
from typing import Any

from threadline import routing
from threadline.after_import import when_imported
from threadline.routing import Parent

_MODULE = "ipywidgets.widgets.widget_output"

# How many captures are open per cell (by msg_id), to know when one is concurrent.
_open_captures: Counter[str] = Counter()
_open_lock = threading.Lock()


class _WidgetSink:
    """Appends a thread's output to an ``Output`` widget's ``outputs`` state."""

    def __init__(self, widget: Any) -> None:
        self._widget = widget
        # One lock per widget: ``outputs += ...`` is a read-modify-write.
        self._lock: threading.Lock = widget.__dict__.setdefault("_threadline_lock", threading.Lock())

    def stream(self, name: str, text: str) -> None:
        with self._lock:
            outputs = tuple(self._widget.outputs)
            last = outputs[-1] if outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
                outputs = (*outputs[:-1], {**last, "text": last["text"] + text})
            else:
                outputs = (*outputs, {"output_type": "stream", "name": name, "text": text})
            self._widget.outputs = outputs

    def output(self, msg_type: str, content: dict[str, Any]) -> bool:
        if msg_type in ("display_data", "execute_result"):
            entry = {
                "output_type": "display_data",
                "data": content["data"],
                "metadata": content.get("metadata", {}),
            }
        elif msg_type == "error":
            entry = {"output_type": "error", **{k: content[k] for k in ("ename", "evalue", "traceback")}}
        elif msg_type == "clear_output":
            with self._lock:
                self._widget.outputs = ()
            return True
        else:
            return False  # e.g. update_display_data: matched by display_id, sent as usual
        with self._lock:
            self._widget.outputs = (*self._widget.outputs, entry)
        return True


def _capture_enter(self: Any) -> None:
    self._flush()
    parent = routing.current_parent()
    if parent is None:
        return
    with _open_lock:
        first = _open_captures[parent.msg_id] == 0
        _open_captures[parent.msg_id] += 1
    previous_msg_id: str | None = None
    if first:
        capture = parent
        previous_msg_id = self.msg_id
        self.msg_id = parent.msg_id
    else:
        capture = Parent(
            parent.header,
            parent.identities,
            allow_stdin=parent.allow_stdin,
            sink=_WidgetSink(self),
            header_json=parent.header_json,
        )
    stacks: dict[int, list[tuple[Any, str | None, str]]] = self.__dict__.setdefault(
        "_threadline_captures", {}
    )
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
    stacks: dict[int, list[tuple[Any, str | None, str]]] = self.__dict__.get("_threadline_captures", {})
    stack = stacks.get(threading.get_ident())
    if stack:
        token, previous_msg_id, cell_msg_id = stack.pop()
        routing.reset_origin(token)
        if previous_msg_id is not None:
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


def install_output_capture() -> None:
    """Patch ``Output`` now if imported, else as soon as it is. Idempotent."""
    when_imported(_MODULE, _patch)
