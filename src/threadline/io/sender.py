"""Serialise and sign on the calling thread, then hand the frames to the outbox.

This is how every part of the kernel sends: the expensive work (JSON, HMAC)
happens on whichever thread produced the message, in parallel with the IO
thread, which only moves finished frames to sockets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadline.io.outbox import Outbox
from threadline.protocol import Frame, JSONDict, Session


class Sender:
    """Builds messages with a ``Session`` and queues them in an ``Outbox``. Thread-safe."""

    def __init__(self, session: Session, outbox: Outbox) -> None:
        self.session = session
        self.outbox = outbox

    def send(
        self,
        channel: str,
        msg_type: str,
        content: Mapping[str, Any],
        *,
        parent: Mapping[str, Any] | bytes | None = None,
        identities: Sequence[bytes] = (),
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        header: JSONDict | None = None,
    ) -> JSONDict:
        """Queue one message; returns its header."""
        if header is None:
            header = self.session.new_header(msg_type)
        message = self.build(
            channel,
            msg_type,
            content,
            parent=parent,
            identities=identities,
            metadata=metadata,
            buffers=buffers,
            header=header,
        )
        self.outbox.put(*message)
        return header

    def build(
        self,
        channel: str,
        msg_type: str,
        content: Mapping[str, Any],
        *,
        parent: Mapping[str, Any] | bytes | None = None,
        identities: Sequence[bytes] = (),
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        header: JSONDict | None = None,
    ) -> tuple[str, list[Frame]]:
        """One message, serialised and signed: for ``send``, or ``send_together``."""
        frames = self.session.encode(
            msg_type,
            content,
            parent=parent,
            identities=identities,
            metadata=metadata,
            buffers=buffers,
            header=header,
        )
        return channel, frames

    def send_together(self, messages: list[tuple[str, list[Frame]]]) -> None:
        """Queue built messages, in order, handed over together (``Outbox.put_all``)."""
        self.outbox.put_all(messages)

    def publish(
        self,
        msg_type: str,
        content: Mapping[str, Any],
        *,
        parent: Mapping[str, Any] | bytes | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
    ) -> JSONDict:
        """Queue one message on iopub."""
        return self.send("iopub", msg_type, content, parent=parent, metadata=metadata, buffers=buffers)
