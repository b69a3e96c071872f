"""The Jupyter messaging protocol, sans IO: no sockets, threads or event loops.

``Session`` encodes and decodes; ``Message`` is a decoded message;
``ConnectionInfo`` parses connection files. Failures are ``RemoteProtocolError``
(the peer's fault) or ``LocalProtocolError`` (ours).
"""

from threadline.protocol.connection import CHANNELS, ConnectionInfo
from threadline.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from threadline.protocol.message import (
    DELIMITER,
    PROTOCOL_VERSION,
    JSONDict,
    Message,
    error_content,
    pack,
    reply_type,
)
from threadline.protocol.session import DEFAULT_MAX_MESSAGE_SIZE, Frame, Session
from threadline.protocol.signing import ReplayGuard, Signer

__all__ = [
    "CHANNELS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DELIMITER",
    "PROTOCOL_VERSION",
    "ConnectionInfo",
    "Frame",
    "JSONDict",
    "LocalProtocolError",
    "Message",
    "ProtocolError",
    "RemoteProtocolError",
    "ReplayGuard",
    "Session",
    "Signer",
    "error_content",
    "pack",
    "reply_type",
]
