"""CurveZMQ on the kernel's sockets: the one place that sets the Curve socket options.

Theory of operation
-------------------
jupyter_client (>= 8.9) provisions one Curve key pair per kernel and writes it
into the connection file; ``ConnectionInfo`` has parsed and checked its form.
Every socket the kernel binds -- shell, control and stdin (ROUTER), iopub
(XPUB) and the heartbeat's ROUTER -- is made a Curve *server* with that pair by
``make_curve_server``, called on the socket before it binds (libzmq fixes a
connection's security mechanism when the connection is made). Clients use the
public key as their server key; the handshake then gives every connection its
own short-term session keys, and everything after it -- requests, replies,
outputs, subscriptions, heartbeats -- is encrypted and authenticated by
libzmq. A peer without the public key cannot complete the handshake, so libzmq
never hands the kernel anything it sent; a plain (NULL-mechanism) peer is
refused the same way.

Nothing above libzmq changes: the IO thread's one-call sends (``zsend``, which
calls ``zmq_sendiov``/``zmq_send`` directly) hand plain frames to libzmq, which
encrypts them in its IO thread like any other socket's traffic.

No ZAP handler is installed, as in ipykernel: jupyter_client's heartbeat
client connects with a fresh throw-away key pair, so there is no client key to
check against; knowing the kernel's public key is what admits a client (it is
in the 0600 connection file only). ``threadline.protocol.connection`` says why
that makes the public key a secret too.

``curve_problem`` answers, before any socket exists, whether this libzmq can
do what the connection file asks: Curve needs libzmq built with libsodium (or
its bundled TweetNaCl), which ``zmq.has("curve")`` reports, and a public key
that belongs to the secret key (``zmq.curve_public``). A kernel whose file asks
for encryption it cannot provide refuses to start instead of running in plain
text.
"""

from __future__ import annotations

from typing import Any

import zmq

from threadline.protocol import ConnectionInfo

#: Why a kernelspec may not declare Curve support here, or None when it may.
CURVE_UNAVAILABLE_REASON: str | None = (
    None
    if zmq.has("curve")
    else (
        f"the libzmq {zmq.zmq_version()} that pyzmq {zmq.__version__} uses was built without CurveZMQ "
        "(it needs libsodium); install a pyzmq wheel from PyPI, whose bundled libzmq has it"
    )
)


def curve_available() -> bool:
    """Whether this libzmq can encrypt with CurveZMQ (``zmq.has("curve")``)."""
    return CURVE_UNAVAILABLE_REASON is None


def curve_problem(connection: ConnectionInfo) -> str | None:
    """Why the kernel cannot be the Curve server this connection asks for (None: it can, or none is asked).

    The answer never quotes a key.
    """
    public_key, secret_key = connection.curve_publickey, connection.curve_secretkey
    if public_key is None or secret_key is None:
        return None
    if CURVE_UNAVAILABLE_REASON is not None:
        return f"the connection file asks for transport encryption, but {CURVE_UNAVAILABLE_REASON}"
    if zmq.curve_public(secret_key.encode("ascii")) != public_key.encode("ascii"):
        return (
            "curve_publickey is not the public key of curve_secretkey: no client could connect. "
            "Let the kernel manager provision the pair (zmq.curve_keypair())"
        )
    return None


def make_curve_server(sock: zmq.Socket[Any], connection: ConnectionInfo) -> None:
    """Make ``sock`` a Curve server with the connection's key pair; nothing without one.

    Call it before ``bind``: connections accepted earlier would not be encrypted.
    """
    if connection.curve_secretkey is None or connection.curve_publickey is None:
        return
    sock.curve_secretkey = connection.curve_secretkey.encode("ascii")
    sock.curve_publickey = connection.curve_publickey.encode("ascii")
    sock.curve_server = True


def new_key_pair() -> tuple[str, str]:
    """A fresh (public, secret) Curve key pair in Z85, for a kernel that writes its own connection file."""
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")
