"""Comms through the standard ``comm`` package, sendable from any thread.

ipywidgets and every other comm-based library create comms with
``comm.create_comm`` and find the manager with ``comm.get_comm_manager``; the
kernel installs its own implementations of both. ``Comm.publish_msg`` reads the
parent from ``threadline.routing`` and sends through the ``Sender`` -- that is,
through the outbox -- so a comm message from any thread is sent whole, in that
thread's order, never dropped, and tagged with the cell the thread belongs to.
"""

from __future__ import annotations

from typing import Any

import comm
from comm.base_comm import BaseComm, CommManager

from threadline import routing
from threadline.io import Sender
from threadline.protocol import Message

__all__ = ["Comm", "CommManager", "as_comm_message", "comm_info", "handle_comm_message", "install_comms"]


class Comm(BaseComm):  # type: ignore[misc]
    """A comm whose messages go out through the kernel's outbox."""

    sender: Sender | None = None  # set once, by install_comms

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        sender = Comm.sender
        if sender is None:
            raise RuntimeError("comms need a running threadline kernel")
        content: dict[str, Any] = {"data": {} if data is None else data, "comm_id": self.comm_id}
        content.update(keys)
        parent = routing.current_parent()
        sender.publish(
            msg_type,
            content,
            parent=parent.header_json if parent is not None else None,
            metadata=metadata,
            buffers=buffers or (),
        )


def install_comms(sender: Sender) -> CommManager:
    """Make ``comm.create_comm`` and ``comm.get_comm_manager`` use this kernel."""
    Comm.sender = sender
    manager = CommManager()

    def create_comm(*args: Any, **kwargs: Any) -> BaseComm:
        return Comm(*args, **kwargs)

    def get_comm_manager() -> CommManager:
        return manager

    comm.create_comm = create_comm
    comm.get_comm_manager = get_comm_manager
    return manager


def as_comm_message(message: Message) -> dict[str, Any]:
    """The dict shape comm handlers (and ipywidgets) expect for an incoming message."""
    return {
        "header": message.header,
        "msg_id": message.msg_id,
        "msg_type": message.msg_type,
        "parent_header": message.parent_header,
        "metadata": message.metadata,
        "content": message.content,
        "buffers": [memoryview(buffer) for buffer in message.buffers],
    }


def handle_comm_message(manager: CommManager, message: Message) -> None:
    """Dispatch one comm_open / comm_msg / comm_close to the manager."""
    handler = getattr(manager, message.msg_type)
    handler(None, None, as_comm_message(message))


def comm_info(manager: CommManager, target_name: str | None) -> dict[str, Any]:
    comms = {
        comm_id: {"target_name": c.target_name}
        for comm_id, c in list(manager.comms.items())
        if target_name is None or c.target_name == target_name
    }
    return {"status": "ok", "comms": comms}
