"""Bytes in, messages out; messages in, bytes out.

``Session`` is the whole sans-IO surface of the wire protocol:

* ``encode(msg_type, content, ...)`` builds a header and returns the frames of
  a signed message, ready for a socket: ``[identities..., DELIMITER, signature,
  header, parent, metadata, content, buffers...]``.
* ``decode(frames)`` checks size, framing, signature and replay, parses the JSON
  and returns a ``Message``, or raises ``RemoteProtocolError``. Nothing else
  escapes it, whatever the bytes.

Thread safety: ``encode`` may be called from any number of threads at once. It
reads only immutable state, copies the keyed HMAC, and takes message ids from an
``itertools.count`` (whose ``next`` is atomic in CPython). That is what lets
every thread serialise and sign its own messages, so the IO thread only moves
bytes. ``decode`` mutates the replay window and belongs to the receiving thread.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from threadline.protocol.errors import LocalProtocolError, RemoteProtocolError
from threadline.protocol.message import (
    DELIMITER,
    DUMPS_OPTIONS,
    PROTOCOL_VERSION,
    JSONDict,
    Message,
    json_default,
)
from threadline.protocol.signing import DEFAULT_SCHEME, JOIN_LIMIT, ReplayGuard, Signer

#: What a frame may be on the way out. Buffers are sent without copying.
Frame = bytes | bytearray | memoryview

#: Default ceiling on the size of one incoming message (all frames together).
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024

_EMPTY_DICT = b"{}"
#: Content up to this size is copied to its own size before it is sent (see ``_sign``).
EXACT_COPY_LIMIT = 2 * 1024 * 1024
_dumps = orjson.dumps


class Session:
    """Encodes and decodes Jupyter messages for one kernel (or one client)."""

    def __init__(
        self,
        key: bytes = b"",
        signature_scheme: str = DEFAULT_SCHEME,
        *,
        session_id: str | None = None,
        username: str = "threadline",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        replay_window: int = 65536,
    ) -> None:
        if max_message_size < 1:
            raise LocalProtocolError("max_message_size must be positive")
        self.signer = Signer(key, signature_scheme)
        self.session_id = session_id or uuid.uuid4().hex
        self.username = username
        self.max_message_size = max_message_size
        self._replays = ReplayGuard(replay_window)
        self._msg_ids = itertools.count(1)
        self._msg_id_prefix = f"{self.session_id[:12]}_{os.getpid()}_"

    # -- building -----------------------------------------------------------------

    def new_header(self, msg_type: str, *, subshell_id: str | None = None) -> JSONDict:
        """A fresh header for a message of ``msg_type`` from this session."""
        if not msg_type or not isinstance(msg_type, str):
            raise LocalProtocolError(f"msg_type must be a non-empty string, got {msg_type!r}")
        header: JSONDict = {
            "msg_id": f"{self._msg_id_prefix}{next(self._msg_ids)}",
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session_id,
            # orjson writes aware datetimes as RFC 3339 with a "Z" suffix.
            "date": datetime.now(UTC),
            "version": PROTOCOL_VERSION,
        }
        if subshell_id is not None:
            header["subshell_id"] = subshell_id
        return header

    def encode(
        self,
        msg_type: str,
        content: Mapping[str, Any],
        *,
        parent: Mapping[str, Any] | bytes | None = None,
        identities: Sequence[bytes] = (),
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        header: Mapping[str, Any] | None = None,
    ) -> list[Frame]:
        """Frames of a new signed message. Safe to call from any thread.

        ``parent`` may be given already serialised (``bytes``: the parent's header
        exactly as it came off the wire, see ``Message.header_json``): a reply
        or an output then costs no serialisation of it at all.
        """
        if header is None:
            header = self.new_header(msg_type)
        try:  # orjson directly, not through pack(): this runs once per message sent
            head = _dumps(header, default=json_default, option=DUMPS_OPTIONS)
            if isinstance(parent, bytes):
                above = parent
            else:
                above = _dumps(parent, default=json_default, option=DUMPS_OPTIONS) if parent else _EMPTY_DICT
            meta = _dumps(metadata, default=json_default, option=DUMPS_OPTIONS) if metadata else _EMPTY_DICT
            body = _dumps(content, default=json_default, option=DUMPS_OPTIONS)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise LocalProtocolError(f"message part is not JSON-serialisable: {exc}") from exc
        frames: list[Frame] = [*identities, DELIMITER, *self._sign(head, above, meta, body)]
        if buffers:
            frames.extend(buffers)
        return frames

    def _sign(self, head: bytes, above: bytes, meta: bytes, body: bytes) -> tuple[bytes, ...]:
        """(signature, header, parent, metadata, content), ready to be frames.

        A small message is joined once -- the HMAC needs it whole -- and its
        four frames are cut back out of the joined bytes. The cut costs a
        copy and saves a great deal more: orjson returns each result in a
        1 KiB allocation shrunk to size, and while many messages wait in the
        outbox those shrunk blocks fragment the C heap so badly that encoding
        a message took 7.9 us instead of 3.0 (100 messages alive, measured);
        exact-size copies keep it at the lower figure. A large message is
        signed part by part instead.

        Its content is copied to its own size too, up to ``EXACT_COPY_LIMIT``:
        orjson returns its result in the buffer it wrote it in, 8-16 times the
        size of the text (1.0 MB for a 64 kB stream message, measured), and a
        message held in the outbox or by ZeroMQ holds all of it. Such buffers
        come from the C heap, whose pages stay resident once touched: a flood's
        resident growth was ~15 MB with 2 MB of messages waiting, mostly this.
        Larger results are left alone: their buffers exceed glibc's largest
        mmap threshold (32 MB), so they are mapped on their own and the part
        never written is never resident, while a copy would be.
        """
        signer = self.signer
        a = len(head)
        b = a + len(above)
        c = b + len(meta)
        if c + len(body) > JOIN_LIMIT:
            if len(body) < EXACT_COPY_LIMIT:
                body = bytes(memoryview(body))
            return signer.sign((head, above, meta, body)), head, above, meta, body
        joined = b"".join((head, above, meta, body))
        return signer.sign_joined(joined), joined[:a], joined[a:b], joined[b:c], joined[c:]

    # -- reading ------------------------------------------------------------------

    def decode(self, frames: Sequence[bytes]) -> Message:
        """Parse and authenticate one received message.

        Raises ``RemoteProtocolError`` (and nothing else) when the frames are not
        an acceptable message. The size limit is enforced before any parsing.
        """
        size = 0
        for frame in frames:
            if not isinstance(frame, bytes):
                raise LocalProtocolError("decode takes a sequence of bytes frames")
            size += len(frame)
        if size > self.max_message_size:
            raise RemoteProtocolError(
                "oversize", f"message of {size} bytes exceeds the limit of {self.max_message_size}"
            )
        try:
            split = frames.index(DELIMITER)
        except ValueError:
            raise RemoteProtocolError("framing", "no <IDS|MSG> delimiter frame") from None
        if len(frames) - split - 1 < 5:
            raise RemoteProtocolError("framing", "fewer than five frames after the delimiter")
        signature = frames[split + 1]
        parts = frames[split + 2 : split + 6]
        if self.signer.enabled:
            if not signature:
                raise RemoteProtocolError("signature", "message is not signed")
            if self._replays.seen(signature):
                raise RemoteProtocolError("replay", "signature was already used")
            if not self.signer.verify(signature, parts):
                raise RemoteProtocolError("signature", "signature does not match")
            # Only a verified signature enters the window: forged ones must not
            # be able to evict real ones. (Checked again as it enters: two
            # threads may be decoding the same replayed message.)
            if not self._replays.remember(signature):
                raise RemoteProtocolError("replay", "signature was already used")
        header, parent, metadata, content = (
            _parse(part, name) for part, name in zip(parts, _PART_NAMES, strict=True)
        )
        msg_id = header.get("msg_id")
        msg_type = header.get("msg_type")
        if not isinstance(msg_id, str) or not isinstance(msg_type, str) or not msg_type:
            raise RemoteProtocolError("header", "header needs string msg_id and msg_type")
        return Message(
            header=header,
            parent_header=parent,
            metadata=metadata,
            content=content,
            buffers=tuple(frames[split + 6 :]),
            identities=tuple(frames[:split]),
            header_json=parts[0],
        )


_PART_NAMES = ("header", "parent_header", "metadata", "content")


def _parse(part: bytes, name: str) -> JSONDict:
    try:
        value = orjson.loads(part)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError("json", f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError("json", f"{name} must be a JSON object")
    return value
