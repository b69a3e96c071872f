"""Connection files: the JSON document that tells a kernel where to listen.

Only parsing and formatting live here; reading and writing the file (with mode
0600) is the caller's business, so this module stays free of IO.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from threadline.protocol.errors import LocalProtocolError
from threadline.protocol.signing import DEFAULT_SCHEME

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Where the five channels listen, and the key that signs messages."""

    shell_port: int = 0
    iopub_port: int = 0
    stdin_port: int = 0
    control_port: int = 0
    hb_port: int = 0
    ip: str = "127.0.0.1"
    transport: str = "tcp"
    key: str = ""
    signature_scheme: str = DEFAULT_SCHEME
    kernel_name: str = ""

    @classmethod
    def from_json(cls, data: bytes | str) -> ConnectionInfo:
        """Parse a connection file, with a clear error for anything unusable."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise LocalProtocolError(f"connection file is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise LocalProtocolError("connection file must hold a JSON object")
        known: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name in raw:
                known[name] = raw[name]
        for channel in CHANNELS:
            port = known.get(f"{channel}_port", 0)
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                raise LocalProtocolError(f"{channel}_port must be an integer port, got {port!r}")
        for name in ("ip", "transport", "key", "signature_scheme", "kernel_name"):
            if name in known and not isinstance(known[name], str):
                raise LocalProtocolError(f"{name} must be a string, got {known[name]!r}")
        if known.get("transport", "tcp") not in ("tcp", "ipc"):
            raise LocalProtocolError(f"transport must be 'tcp' or 'ipc', got {known['transport']!r}")
        return cls(**known)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    def port(self, channel: str) -> int:
        if channel not in CHANNELS:
            raise LocalProtocolError(f"unknown channel {channel!r}")
        value: int = getattr(self, f"{channel}_port")
        return value

    def with_ports(self, ports: dict[str, int]) -> ConnectionInfo:
        """A copy with the given channels' ports (after binding to port 0)."""
        changes: dict[str, Any] = {f"{channel}_port": port for channel, port in ports.items()}
        return replace(self, **changes)

    def url(self, channel: str) -> str:
        """The ZeroMQ endpoint of ``channel``, as jupyter_client spells it."""
        port = self.port(channel)
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"tcp://{self.ip}:{port}"
