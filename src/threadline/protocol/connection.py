"""Connection files: the JSON document that tells a kernel where to listen.

Only parsing and formatting live here; reading and writing the file (with mode
0600) is the caller's business, so this module stays free of IO.

Theory of operation
-------------------
``ConnectionInfo.from_json`` validates everything once, when the file is read,
and the frozen result is trusted from then on. A bad file is a
``LocalProtocolError`` whose message names the field and what is wrong with it.

Transport encryption (CurveZMQ). jupyter_client >= 8.9 provisions a Curve key
pair for a kernel whose kernelspec declares ``"supported_encryption":
["curve"]``, and writes it into the connection file as ``curve_publickey`` and
``curve_secretkey``: 40-character Z85 strings (32 raw bytes each). The kernel
is the Curve *server* with that pair on every socket; clients connect with the
public key as their server key. The fields are parsed and checked here (both or
neither, each well-formed Z85 of the right length); whether the installed
libzmq can do Curve, and whether the public key belongs to the secret one, are
questions for the IO layer (``threadline.io.curve``), which has libzmq.

Secrets. The HMAC ``key`` and both Curve keys are credentials: the HMAC key
lets a peer have code run; the Curve *public* key is one too, because the
kernel's Curve server authenticates no client (no ZAP handler: jupyter_client's
heartbeat connects with a fresh throw-away key pair), so anyone who knows the
public key can complete the handshake and, on iopub, read every output without
signing anything. So none of the three values ever appears in an error
message, in ``repr``/``str``, or in ``as_dict()`` -- the dictionary meant for
showing a connection to a person (``%connect_info``, logs). Only ``to_json``,
which writes the connection file itself, carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import orjson

from threadline.protocol.errors import LocalProtocolError
from threadline.protocol.signing import DEFAULT_SCHEME

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")

#: The connection-file fields that hold the Curve key pair.
CURVE_FIELDS = ("curve_publickey", "curve_secretkey")

#: What ``as_dict`` shows instead of a secret value.
HIDDEN = "<hidden>"

#: ZeroMQ's Z85 alphabet (RFC 32/Z85): 85 printable characters, one per base-85 digit.
Z85_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_DIGIT = {char: value for value, char in enumerate(Z85_ALPHABET)}

#: A Curve key in Z85: 32 bytes, five characters for every four bytes.
CURVE_KEY_LENGTH = 40

_SECRET_FIELDS = frozenset({"key", *CURVE_FIELDS})


def z85_problem(text: str) -> str | None:
    """Why ``text`` is not a Curve key in Z85, or None when it is one.

    The answer never quotes the text (it may be a secret key).
    """
    if len(text) != CURVE_KEY_LENGTH:
        return f"must be {CURVE_KEY_LENGTH} characters of Z85, not {len(text)}"
    for start in range(0, CURVE_KEY_LENGTH, 5):
        value = 0
        for offset, char in enumerate(text[start : start + 5]):
            digit = _Z85_DIGIT.get(char)
            if digit is None:
                return f"has a character that is not Z85 at position {start + offset + 1}"
            value = value * 85 + digit
        if value >= 1 << 32:
            return f"is not valid Z85 (the group at position {start + 1} is out of range)"
    return None


@dataclass(frozen=True, slots=True, repr=False)
class ConnectionInfo:
    """Where the five channels listen, the key that signs messages, and the Curve keys, if any."""

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
    #: The kernel's CurveZMQ key pair (Z85), both or neither; None: no encryption.
    curve_publickey: str | None = None
    curve_secretkey: str | None = None

    def __post_init__(self) -> None:
        # Built in code as well as from files: the pair is checked either way.
        problem = _curve_pair_problem(self.curve_publickey, self.curve_secretkey)
        if problem is not None:
            raise LocalProtocolError(problem)

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
        for field in fields(cls):
            if field.name in raw:
                known[field.name] = raw[field.name]
        for channel in CHANNELS:
            port = known.get(f"{channel}_port", 0)
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                raise LocalProtocolError(f"{channel}_port must be an integer port, got {port!r}")
        for name in ("ip", "transport", "key", "signature_scheme", "kernel_name"):
            if name in known and not isinstance(known[name], str):
                shown = type(known[name]).__name__ if name in _SECRET_FIELDS else repr(known[name])
                raise LocalProtocolError(f"{name} must be a string, got {shown}")
        if known.get("transport", "tcp") not in ("tcp", "ipc"):
            raise LocalProtocolError(f"transport must be 'tcp' or 'ipc', got {known['transport']!r}")
        for name in CURVE_FIELDS:
            # jupyter_client writes either both keys as strings or neither; a
            # null is read as "absent", so that half a pair is still caught.
            if known.get(name) is None:
                known.pop(name, None)
            elif not isinstance(known[name], str):
                raise LocalProtocolError(f"{name} must be a Z85 string, got {type(known[name]).__name__}")
        return cls(**known)

    def to_json(self) -> bytes:
        """The connection file's content, secrets included (write it with mode 0600)."""
        return orjson.dumps(self._as_dict(reveal=True), option=orjson.OPT_INDENT_2)

    def as_dict(self) -> dict[str, Any]:
        """The connection for showing to a person: every key replaced by ``HIDDEN``.

        This is what logs and any display of the connection should print
        (``%connect_info`` in ``threadline.compat`` leaves the Curve keys out
        of what it shows the same way); a client that needs the keys reads the
        connection file, which ``to_json`` wrote.
        """
        return self._as_dict(reveal=False)

    def _as_dict(self, *, reveal: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in CURVE_FIELDS and value is None:
                continue  # no encryption: the file has no Curve fields at all
            if not reveal and field.name in _SECRET_FIELDS and value:
                value = HIDDEN
            out[field.name] = value
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items())
        return f"ConnectionInfo({shown})"

    __str__ = __repr__

    @property
    def encrypted(self) -> bool:
        """Whether the kernel's sockets are Curve servers (the file carries a key pair)."""
        return self.curve_secretkey is not None

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

    def exposure_warning(self) -> str | None:
        """What to tell the user when this kernel would talk in plain text beyond this host.

        None for an encrypted kernel, for the ipc transport (a file that only
        its owner can open) and for a loopback address.
        """
        if self.encrypted or self.transport != "tcp" or _is_loopback(self.ip):
            return None
        return (
            f"listening on {self.ip} over TCP without encryption: anyone who can reach these "
            "ports can read the code, outputs and input() answers that cross them. "
            "Start the kernel from a Jupyter server or kernel manager with transport "
            "encryption (jupyter_client >= 8.9: c.KernelManager.transport_encryption = 'required'; "
            "jupyter_server >= 2.20: c.MappingKernelManager.transport_encryption = 'required'), "
            "or run `threadline --encrypt`, or bind to 127.0.0.1 and reach it through an SSH tunnel."
        )


def _curve_pair_problem(public: str | None, secret: str | None) -> str | None:
    """Why these two connection-file values are not a usable Curve key pair (None: they are)."""
    if public is None and secret is None:
        return None
    if public is None or secret is None:
        present, missing = ("curve_publickey", "curve_secretkey") if secret is None else CURVE_FIELDS[::-1]
        return (
            f"the connection file has {present} but no {missing}: transport encryption needs "
            "both keys of the pair (or neither, for none)"
        )
    for name, value in zip(CURVE_FIELDS, (public, secret), strict=True):
        problem = z85_problem(value)
        if problem is not None:
            return f"{name} {problem}"
    return None


def _is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; an unresolved host name counts as exposed."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    import ipaddress  # here, not at the top: only needed once the kernel is serving

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
