"""``get_ipython().kernel`` as libraries written for ipykernel use it.

Theory of operation
-------------------
``NotebookKernel`` is a thin face on threadline's ``Kernel``: it answers to
the attribute names that ipykernel's ``Kernel`` has and that libraries read,
each by calling into the core, and forwards every other attribute to the core
kernel (so ``get_ipython().kernel.io`` is still the IO thread).

The one piece with substance is the legacy send path. Old code sends with
``kernel.session.send(kernel.iopub_socket, msg_type, content, parent=...)``.
In ipykernel ``iopub_socket`` is a socket owned by a background thread; here
it is ``ChannelSocket``, whose ``send_multipart`` puts the finished frames in
the IO thread's outbox -- the same one thread-safe hand-off every threadline
message takes. ``CompatSession.send`` builds and signs the message with the
kernel's own ``protocol.Session`` on the calling thread. So that old call is
safe from any thread: a message is handed over whole and cannot interleave
with another, and one thread's messages leave in its order.

Nothing here holds state of its own: the parent comes from
``threadline.routing`` (one source of truth), the frames go to the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from threadline import routing
from threadline.io import Outbox
from threadline.kernel.kernel import Kernel
from threadline.protocol import Frame, JSONDict, Message, Session

log = logging.getLogger("threadline.compat")


def extract_header(message_or_header: Mapping[str, Any] | None) -> JSONDict:
    """The header of a message, or the header itself (jupyter_client's rule for ``parent=``)."""
    if not message_or_header:
        return {}
    header = message_or_header.get("header")
    if isinstance(header, Mapping):
        return dict(header)
    if "msg_id" in message_or_header:
        return dict(message_or_header)
    raise ValueError("parent must be a message (with a 'header') or a header (with a 'msg_id')")


def parent_message(parent: routing.Parent | Message | None) -> JSONDict:
    """What ipykernel's ``get_parent()`` returns, for the request output goes to now.

    ipykernel returns the whole request; threadline keeps only its header
    (see docs/compatibility.md), so ``content`` and ``metadata`` are absent.
    """
    if parent is None:
        return {}
    return {"header": parent.header, "msg_id": parent.msg_id, "msg_type": parent.msg_type}


class ChannelSocket:
    """A socket-like object for one channel: ``send_multipart`` queues the frames in the outbox.

    Safe from any thread (the outbox is the one thread-safe entry point).
    """

    def __init__(self, outbox: Outbox, channel: str) -> None:
        self._outbox = outbox
        self.channel = channel

    def send_multipart(
        self, frames: Sequence[Frame], flags: int = 0, copy: bool = True, track: bool = False
    ) -> None:
        self._outbox.put(self.channel, list(frames))

    def __repr__(self) -> str:
        return f"<threadline {self.channel} socket: sends through the IO thread's outbox>"


class CompatSession:
    """jupyter_client's ``Session`` API over threadline's ``protocol.Session``.

    The signing key is deliberately not exposed.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> str:
        """The session id (jupyter_client names it ``session``)."""
        return self._session.session_id

    @property
    def bsession(self) -> bytes:
        return self._session.session_id.encode()

    @property
    def username(self) -> str:
        return self._session.username

    def msg_header(self, msg_type: str) -> JSONDict:
        return self._session.new_header(msg_type)

    def msg(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """A message as a dict, not yet sent (jupyter_client's ``Session.msg``)."""
        head = dict(header) if header is not None else self.msg_header(msg_type)
        return {
            "header": head,
            "msg_id": head["msg_id"],
            "msg_type": head["msg_type"],
            "parent_header": extract_header(parent),
            "content": {} if content is None else dict(content),
            "metadata": {} if metadata is None else dict(metadata),
        }

    def send(  # noqa: PLR0917 (jupyter_client's positional signature)
        self,
        stream: Any,
        msg_or_type: Mapping[str, Any] | str,
        content: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        ident: bytes | Sequence[bytes] | None = None,
        buffers: Sequence[Frame] | None = None,
        track: bool = False,
        header: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> JSONDict | None:
        """Build, sign and send a message on ``stream``; returns it as a dict.

        ``stream`` is one of the kernel's ``ChannelSocket``s (anything with
        ``send_multipart``). ``msg_or_type`` is a message type, or a message
        built by ``msg()``.
        """
        if isinstance(msg_or_type, Mapping):
            message = dict(msg_or_type)
            buffers = buffers or message.get("buffers") or []
        else:
            message = self.msg(msg_or_type, content, parent, header, metadata)
        if stream is None:
            return None
        identities: Sequence[bytes] = [ident] if isinstance(ident, bytes) else list(ident or ())
        frames = self._session.encode(
            message["msg_type"],
            message["content"],
            parent=message["parent_header"],
            identities=identities,
            metadata=message["metadata"],
            buffers=list(buffers or ()),
            header=message["header"],
        )
        stream.send_multipart(frames)
        message["tracker"] = None
        return message


class NotebookKernel:
    """``get_ipython().kernel``: ipykernel's attribute names, answered by threadline's kernel."""

    def __init__(self, kernel: Kernel, connection_file: str | None = None) -> None:
        self._kernel = kernel
        # %connect_info and %qtconsole (ipykernel keeps it on its app)
        self.connection_file = connection_file
        # ipykernel.comm.Comm, bokeh's notebook handles, old ipywidgets: session.send(iopub_socket, ...)
        self.session = CompatSession(kernel.session)
        # the same legacy send path, from any thread
        self.iopub_socket = ChannelSocket(kernel.io.outbox, "iopub")
        # ipywidgets < 8 (comm.py shim for ipykernel < 6.18) and others: kernel.comm_manager
        self.comm_manager = kernel.comm_manager
        # libraries that reach the shell through the kernel (kernel.shell.user_ns)
        self.shell = kernel.shell
        # kernel.log.warning(...) in ipywidgets and notebook extensions
        self.log = log

    def __getattr__(self, name: str) -> Any:
        # Everything else is the core kernel's (``kernel.io``, ``kernel.interrupts``...).
        return getattr(self._kernel, name)

    # ipywidgets' Output widget and ipykernel.comm.Comm: the request output goes to
    def get_parent(self, channel: str = "shell") -> JSONDict:
        if channel == "control":
            return parent_message(self._kernel.last_control_request)
        return parent_message(routing.current_parent())

    @property
    def _parent_header(self) -> JSONDict:
        # ipywidgets' Output widget with ipykernel < 6 reads kernel._parent_header
        return self.get_parent()

    @property
    def _parent_ident(self) -> dict[str, list[bytes]]:
        # ipykernel >= 6 (and JupyterLab's issue 17785): routing identities of the requests, by channel
        parent = routing.current_parent()
        control = self._kernel.last_control_request
        return {
            "shell": list(parent.identities) if parent is not None else [],
            "control": list(control.identities) if control is not None else [],
        }

    @property
    def execution_count(self) -> int:
        # display hooks and loggers that number their output like the prompt
        count: int = self._kernel.shell.execution_count
        return count

    def send_response(  # noqa: PLR0917 (ipykernel's positional signature)
        self,
        stream: Any,
        msg_or_type: Mapping[str, Any] | str,
        content: Mapping[str, Any] | None = None,
        ident: bytes | Sequence[bytes] | None = None,
        buffers: Sequence[Frame] | None = None,
        track: bool = False,
        header: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        channel: str = "shell",
    ) -> JSONDict | None:
        # ipywidgets' Output widget outside IPython: kernel.send_response(kernel.iopub_socket, ...)
        return self.session.send(
            stream,
            msg_or_type,
            content,
            self.get_parent(channel),
            ident,
            buffers,
            track,
            header,
            metadata,
        )

    def __repr__(self) -> str:
        return f"<threadline kernel (ipykernel-compatible names) {id(self._kernel):#x}>"
