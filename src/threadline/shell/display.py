"""Rich output: IPython's display publisher and display hook, speaking Jupyter.

``display()``, ``clear_output()`` and ``update_display()`` may be called from
any thread: they read the parent from ``threadline.routing`` and send through
the ``Sender``. Before each, the calling thread's own stream text is flushed,
so what a thread printed before displaying something is shown before it.

The display hook (``execute_result``) runs on the thread executing the cell;
its per-result state is thread-local so concurrent subshells do not mix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher

from threadline import routing
from threadline.io import Sender


class KernelLink:
    """What the IPython side needs from the kernel: a sender and a stream flush."""

    def __init__(self, sender: Sender, flush_thread_streams: Callable[[], None]) -> None:
        self.sender = sender
        self.flush_thread_streams = flush_thread_streams

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
    ) -> None:
        """Publish on iopub to the current cell, after this thread's pending text."""
        self.flush_thread_streams()
        parent = routing.current_parent()
        if parent is not None and parent.sink is not None and parent.sink.output(msg_type, content):
            return
        self.sender.publish(
            msg_type,
            content,
            parent=parent.header_json if parent is not None else None,
            metadata=metadata,
            buffers=buffers or (),
        )


def _link_of(shell: Any) -> KernelLink:
    link: KernelLink | None = getattr(shell, "kernel_link", None)
    if link is None:
        raise RuntimeError("the threadline shell is not connected to a kernel")
    return link


class JupyterDisplayPublisher(DisplayPublisher):  # type: ignore[misc]
    """Sends ``display_data``, ``update_display_data`` and ``clear_output``."""

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: object = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        self._validate_data(data, metadata)
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        msg_type = "update_display_data" if update else "display_data"
        _link_of(self.shell).publish(msg_type, content)

    def clear_output(self, wait: bool = False) -> None:
        _link_of(self.shell).publish("clear_output", {"wait": bool(wait)})


class JupyterDisplayHook(DisplayHook):  # type: ignore[misc]
    """Sends ``execute_result`` for the value of a cell's last expression."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = threading.local()

    def start_displayhook(self) -> None:
        super().start_displayhook()
        self._pending.content = {
            "execution_count": self.prompt_count,
            "data": {},
            "metadata": {},
        }

    @property
    def formatting(self) -> bool:
        """Whether this thread is between start and finish of showing a cell's result."""
        return getattr(self._pending, "content", None) is not None

    def write_output_prompt(self) -> None:
        pass  # the front end draws the prompt from execution_count

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> None:
        content = self._pending.content
        content["data"] = format_dict
        content["metadata"] = md_dict or {}
        if "text/plain" in format_dict:
            self.shell.history_manager.output_hist_reprs[self.prompt_count] = format_dict["text/plain"]

    def finish_displayhook(self) -> None:
        content = getattr(self._pending, "content", None)
        self._pending.content = None
        self._is_active = False
        if content and content["data"]:
            _link_of(self.shell).publish("execute_result", content)
