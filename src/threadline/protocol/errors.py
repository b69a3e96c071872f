"""The two ways a message can be wrong.

Everything that crosses the protocol boundary fails in exactly one of two ways:

* ``RemoteProtocolError``: the peer sent something we cannot accept (bad framing,
  a bad or replayed signature, malformed JSON, a message over the size limit).
  The kernel logs it, counts it and drops the message.
* ``LocalProtocolError``: our own code asked for something impossible (content
  that cannot be serialised, a header without a message type). That is a bug on
  this side and is raised to the caller.

Any other exception escaping the decoder is a bug in the decoder; the property
and fuzz tests exist to keep that promise.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of the two protocol errors; never raised itself."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a message that cannot be accepted.

    ``reason`` is a short, stable token (``"signature"``, ``"replay"``, ``"json"``,
    ``"framing"``, ``"oversize"``, ``"header"``) for counting and rate-limited
    logging; the message says what exactly was wrong, without secrets.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LocalProtocolError(ProtocolError):
    """This side asked the protocol layer for something it cannot do."""
