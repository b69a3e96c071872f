"""Listening before ZeroMQ: the kernel's ports accept connections before pyzmq is imported.

Theory of operation
-------------------
A Jupyter client connects to the kernel's five ports as soon as it has spawned
the process -- a few milliseconds later, before any Python process can have
bound them (measured here: the client connects 4-8 ms after the kernel's
process exists; the interpreter alone needs ~12 ms to run its first line).
ZeroMQ retries a refused connection after ``ZMQ_RECONNECT_IVL`` (100 ms) plus
a random jitter of up to as much again, each socket on its own: the client's
second attempts fall anywhere from 100 to 200 ms after its first. A kernel that
has not bound a port by then is reached one retry later -- another 100-200 ms
for the user, decided by a few milliseconds of import time (importing pyzmq
alone takes ~40 ms on our 2-core machine; the whole path to bound ZeroMQ
sockets ~100 ms, and more on a slow or busy machine).

So the launcher (``threadline.app``) reads the connection file's addresses and
opens plain listening TCP sockets on its ports first, with the standard library
only. From then on the operating system completes every client's TCP handshake
and queues what the client sends. The IO thread later makes each ZeroMQ socket
take its listening descriptor (``ZMQ_USE_FD``, libzmq >= 4.2: the path built
for systemd's socket activation) instead of binding a new one; libzmq then
accepts the queued connections and the ZeroMQ handshake (Curve included) runs
as if the client had connected just then. Nothing is lost: the client's bytes
wait in the kernel's socket buffers.

A client can do better still: threadline's kernel provisioner
(``threadline.provisioner``, named in the kernelspec) opens these listening
sockets in the client's own process *before* it spawns the kernel and hands
them over (their descriptors, and ``THREADLINE_LISTENERS`` naming them): then
the client's very first connection is accepted and no retry is ever waited
for. ``listen_early`` takes such descriptors when the variable names a
listening TCP socket on each of the connection file's ports, and listens
itself otherwise.

This module must stay cheap to import: the standard library's ``json``,
``socket``, ``os`` and ``stat``, nothing of threadline but this file (``threadline.io``'s
package imports its submodules on first use). Anything unusual -- the ipc
transport, a host name instead of an address, a port of 0, a port already
taken, an unreadable file, a system other than POSIX -- means "no early
listening" for every channel, and the IO thread binds as it always has (and
reports any error then).
"""

from __future__ import annotations

import json
import os
import socket
import stat

#: The channels, as the connection file names their ports (``<channel>_port``).
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")

#: libzmq's own listen backlog (``ZMQ_BACKLOG``'s default).
BACKLOG = 100


#: Names the listening descriptors a kernel inherits: ``shell=7,iopub=8,...``.
INHERITED = "THREADLINE_LISTENERS"


def listen_early(connection_file: str | None) -> dict[str, int]:
    """Listen on the connection file's TCP ports; channel -> listening descriptor.

    The descriptors the launching client handed over (``INHERITED``) if they
    are exactly those ports' listeners; otherwise new ones. Empty when the
    file cannot be used this way (see the module docstring). The caller owns
    the descriptors: each goes to a ZeroMQ socket (``ZMQ_USE_FD``), or is
    closed with ``close_all``.
    """
    addresses = _tcp_addresses(_read(connection_file))
    handed_over = _take_inherited(addresses)
    if handed_over or addresses is None:
        return handed_over
    return _listen_all(*addresses)


def listen_for(connection_info: dict[str, object]) -> dict[str, int]:
    """Listen on the ports of a connection (a kernel manager's ``get_connection_info()``).

    For the client side (``threadline.provisioner``); empty when it cannot be
    done, exactly as for ``listen_early``.
    """
    addresses = _tcp_addresses(connection_info)
    return {} if addresses is None else _listen_all(*addresses)


def _listen_all(host: str, ports: list[int]) -> dict[str, int]:
    listeners: dict[str, int] = {}
    try:
        for channel, port in zip(CHANNELS, ports, strict=True):
            listeners[channel] = _listen(host, port)
    except OSError:
        close_all(listeners)
        return {}
    return listeners


def _take_inherited(addresses: tuple[str, list[int]] | None) -> dict[str, int]:
    """The handed-over listeners, if every one is right; else none (and they are closed).

    The variable is removed either way: the kernel's own child processes must
    not take it for theirs.
    """
    named = os.environ.pop(INHERITED, None)
    if named is None:
        return {}
    fds: dict[str, int] = {}
    for item in named.split(","):
        channel, _, number = item.partition("=")
        if number.isdigit():
            fds[channel] = int(number)
    right = (
        addresses is not None
        and set(fds) == set(CHANNELS)
        and all(
            _is_listener(fds[channel], addresses[0], port)
            for channel, port in zip(CHANNELS, addresses[1], strict=True)
        )
    )
    if not right:
        # Close the sockets among them: the ports must be free for the kernel's
        # own listeners. Whatever else a wrong variable names is not ours.
        for fd in fds.values():
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.close(fd)
            except OSError:  # not open
                pass
        return {}
    return fds


def _is_listener(fd: int, host: str, port: int) -> bool:
    """A listening TCP socket bound to (host, port); made non-blocking and not inheritable."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or not listening or sock.getsockname() != (host, port):
            return False
        sock.setblocking(False)
        # The spawn made it inheritable: a cell's ``os.system("... &")`` must not
        # keep the kernel's port after the kernel has gone.
        sock.set_inheritable(False)
        return True
    except OSError:
        return False
    finally:
        sock.detach()


def _read(connection_file: str | None) -> object:
    if connection_file is None:
        return None
    try:
        with open(connection_file, "rb") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _tcp_addresses(raw: object) -> tuple[str, list[int]] | None:
    """The connection's IPv4 address and its five ports, in ``CHANNELS`` order, or None."""
    if os.name != "posix":
        # Elsewhere SO_REUSEADDR means something else (Windows: another process
        # may bind the same port) and libzmq takes a SOCKET handle: bind as before.
        return None
    if not isinstance(raw, dict) or raw.get("transport", "tcp") != "tcp":
        return None
    host = raw.get("ip", "127.0.0.1")
    host = "0.0.0.0" if host == "*" else host
    ports = [raw.get(f"{channel}_port") for channel in CHANNELS]
    if not (isinstance(host, str) and _is_ipv4(host)):
        return None
    valid = [port for port in ports if type(port) is int and 0 < port < 65536]  # not bool, not 0
    return (host, valid) if len(valid) == len(CHANNELS) else None


def close_all(listeners: dict[str, int]) -> None:
    """Close the descriptors no ZeroMQ socket took."""
    for fd in listeners.values():
        os.close(fd)
    listeners.clear()


def _listen(host: str, port: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As libzmq does for its own listeners: a restarted kernel may reuse
        # its ports while the old connections are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        # libzmq accepts only when the descriptor is readable, but a client
        # may be gone by then: a non-blocking accept says EAGAIN instead of waiting.
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock.detach()  # not inherited by child processes (Python's default)


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True
