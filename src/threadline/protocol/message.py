"""The decoded message, and the JSON rules every part of a message follows.

A ``Message`` is what the decoder hands the kernel: five parts of the Jupyter
wire format plus the routing identities it arrived with. It is a frozen value;
nothing mutates a message after it is built, so it may be read from any thread.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from threadline.protocol.errors import LocalProtocolError

#: The protocol version this package speaks (messaging spec 5.4, with JEP 91).
PROTOCOL_VERSION = "5.4"

#: The frame that separates routing identities from the message proper.
DELIMITER = b"<IDS|MSG>"

JSONDict = dict[str, Any]

DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def json_default(value: object) -> object:
    """Serialise the few non-JSON types the Jupyter ecosystem routinely sends."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        # jupyter_client encodes stray bytes as base64 text; do the same.
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def pack(value: Mapping[str, Any]) -> bytes:
    """Serialise one part of a message to JSON bytes.

    Raises ``LocalProtocolError`` when the value cannot be serialised: content is
    built by this side, so a bad value is this side's bug.
    """
    try:
        return orjson.dumps(value, default=json_default, option=DUMPS_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise LocalProtocolError(f"message part is not JSON-serialisable: {exc}") from exc


def reply_type(request_type: str) -> str:
    """``execute_request`` -> ``execute_reply``, as the messaging spec names replies."""
    if request_type.endswith("_request"):
        return request_type[: -len("_request")] + "_reply"
    return request_type + "_reply"


def error_content(ename: str, evalue: str) -> JSONDict:
    """The content of an error reply (no traceback: the kernel raised it, not user code)."""
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": []}


@dataclass(frozen=True, slots=True)
class Message:
    """One received message. ``header`` always has string ``msg_id`` and ``msg_type``."""

    header: JSONDict
    parent_header: JSONDict
    metadata: JSONDict
    content: JSONDict
    buffers: tuple[bytes, ...] = ()
    identities: tuple[bytes, ...] = field(default=(), repr=False)
    #: The header frame exactly as received (verified, and parsed into ``header``):
    #: what a reply or an output carries as its parent, with no re-serialising.
    #: Empty for a message that was not decoded from frames.
    header_json: bytes = field(default=b"", repr=False, compare=False)

    @property
    def parent_part(self) -> JSONDict | bytes:
        """This message as the parent of another: its header, serialised if possible."""
        return self.header_json or self.header

    @property
    def msg_id(self) -> str:
        value: str = self.header["msg_id"]
        return value

    @property
    def msg_type(self) -> str:
        value: str = self.header["msg_type"]
        return value

    @property
    def subshell_id(self) -> str | None:
        """The JEP 91 subshell this request is for, or None for the main shell."""
        value = self.header.get("subshell_id")
        return value if isinstance(value, str) else None
