"""CurveZMQ, below the kernel: parsing the key pair, hiding it, and the socket options.

The connection-file fields are checked in the protocol layer (both keys or
neither, each 40 characters of Z85) and never shown; the IO layer makes a
socket a Curve server and refuses a pair whose public key is not the secret
key's. The heartbeat is checked here on its own, with a real Curve client (as
jupyter_client's, with a throw-away key pair) and a plain one.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from threadline.app import kernel_spec
from threadline.io import Heartbeat, curve_available, curve_problem, new_key_pair
from threadline.io.curve import make_curve_server
from threadline.protocol import ConnectionInfo, LocalProtocolError
from threadline.protocol.connection import HIDDEN, z85_problem

pytestmark = pytest.mark.skipif(not curve_available(), reason="this libzmq has no CurveZMQ")

TIMEOUT_MS = 30_000


def key_pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def curve_file(**fields: Any) -> bytes:
    return orjson.dumps({"shell_port": 1, "key": "k", **fields})


# -- the protocol layer: parsing, validating and hiding the key pair -----------------------------


def test_a_key_pair_is_read_and_written_back() -> None:
    public, secret = key_pair()
    info = ConnectionInfo.from_json(curve_file(curve_publickey=public, curve_secretkey=secret))
    assert info.encrypted
    assert (info.curve_publickey, info.curve_secretkey) == (public, secret)
    written = json.loads(info.to_json())
    assert (written["curve_publickey"], written["curve_secretkey"]) == (public, secret)
    assert ConnectionInfo.from_json(info.to_json()) == info
    assert info.with_ports({"iopub": 7}).curve_secretkey == secret


def test_no_keys_means_no_encryption_and_no_curve_fields_in_the_file() -> None:
    for text in (curve_file(), curve_file(curve_publickey=None, curve_secretkey=None)):
        info = ConnectionInfo.from_json(text)
        assert not info.encrypted
        assert "curve_publickey" not in json.loads(info.to_json())
        assert "curve_secretkey" not in json.loads(info.to_json())


@pytest.mark.parametrize(
    ("present", "missing"), [("curve_publickey", "curve_secretkey"), ("curve_secretkey", "curve_publickey")]
)
@pytest.mark.parametrize("absent_as", ["missing", "null"])
def test_half_a_key_pair_is_refused_by_name(present: str, missing: str, absent_as: str) -> None:
    public, secret = key_pair()
    value = public if present == "curve_publickey" else secret
    fields: dict[str, Any] = {present: value}
    if absent_as == "null":
        fields[missing] = None
    with pytest.raises(LocalProtocolError) as caught:
        ConnectionInfo.from_json(curve_file(**fields))
    message = str(caught.value)
    assert f"has {present} but no {missing}" in message
    assert value not in message


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("a" * 39, "must be 40 characters of Z85, not 39"),
        ("a" * 41, "must be 40 characters of Z85, not 41"),
        ("", "must be 40 characters of Z85, not 0"),
        ("a" * 20 + "~" + "a" * 19, "not Z85 at position 21"),
        ("a" * 20 + '"' + "a" * 19, "not Z85 at position 21"),
        ("#####" + "a" * 35, "out of range"),  # 85**5 - 1 does not fit in 32 bits
    ],
)
@pytest.mark.parametrize("which", ["curve_publickey", "curve_secretkey"])
def test_a_malformed_key_is_refused_without_quoting_it(bad: str, expected: str, which: str) -> None:
    public, secret = key_pair()
    fields = {"curve_publickey": public, "curve_secretkey": secret, which: bad}
    with pytest.raises(LocalProtocolError, match=which) as caught:
        ConnectionInfo.from_json(curve_file(**fields))
    assert expected in str(caught.value)
    for value in {public, secret, bad} - {""}:
        assert value not in str(caught.value)


@pytest.mark.parametrize("value", [1, ["a"], {"k": "v"}, True])
def test_a_key_that_is_not_a_string_is_refused(value: Any) -> None:
    public, _ = key_pair()
    with pytest.raises(LocalProtocolError, match="curve_secretkey must be a Z85 string"):
        ConnectionInfo.from_json(curve_file(curve_publickey=public, curve_secretkey=value))


def test_z85_check_accepts_what_libzmq_makes() -> None:
    for _ in range(50):
        public, secret = zmq.curve_keypair()
        assert z85_problem(public.decode()) is None
        assert z85_problem(secret.decode()) is None
    assert z85_problem(z85.encode(b"\xff" * 32).decode()) is None  # the largest group


def test_built_in_code_the_pair_is_checked_too() -> None:
    public, _ = key_pair()
    with pytest.raises(LocalProtocolError, match="no curve_secretkey"):
        ConnectionInfo(curve_publickey=public)


def test_repr_str_and_as_dict_hide_every_key() -> None:
    public, secret = key_pair()
    hmac_key = "d0d1d2d3-signing-key-e4e5e6e7"
    info = ConnectionInfo(shell_port=5, key=hmac_key, curve_publickey=public, curve_secretkey=secret)
    shown = info.as_dict()
    assert shown["key"] == shown["curve_publickey"] == shown["curve_secretkey"] == HIDDEN
    assert shown["shell_port"] == 5 and shown["transport"] == "tcp"
    for text in (repr(info), str(info), json.dumps(shown), f"{info}", f"{info!r}"):
        for secret_value in (hmac_key, public, secret):
            assert secret_value not in text
    assert "shell_port=5" in repr(info)
    # Without encryption there is nothing to hide but the HMAC key.
    plain = ConnectionInfo(key=hmac_key).as_dict()
    assert plain["key"] == HIDDEN and "curve_secretkey" not in plain


def test_a_non_string_hmac_key_is_not_quoted_either() -> None:
    with pytest.raises(LocalProtocolError, match="key must be a string, got int") as caught:
        ConnectionInfo.from_json(orjson.dumps({"key": 123456789}))
    assert "123456789" not in str(caught.value)


@pytest.mark.parametrize(
    ("ip", "transport", "encrypted", "warned"),
    [
        ("0.0.0.0", "tcp", False, True),
        ("*", "tcp", False, True),
        ("::", "tcp", False, True),
        ("10.1.2.3", "tcp", False, True),
        ("kernel-box.example.org", "tcp", False, True),
        ("0.0.0.0", "tcp", True, False),
        ("127.0.0.1", "tcp", False, False),
        ("127.0.1.1", "tcp", False, False),
        ("::1", "tcp", False, False),
        ("localhost", "tcp", False, False),
        ("/tmp/kernel-ipc", "ipc", False, False),
    ],
)
def test_plain_text_beyond_this_host_is_warned_about(
    ip: str, transport: str, encrypted: bool, warned: bool
) -> None:
    public, secret = key_pair() if encrypted else (None, None)
    info = ConnectionInfo(ip=ip, transport=transport, curve_publickey=public, curve_secretkey=secret)
    warning = info.exposure_warning()
    assert (warning is not None) == warned
    if warning is not None:
        assert f"listening on {ip} over TCP without encryption" in warning
        assert "transport_encryption = 'required'" in warning  # what to do instead
        assert "threadline --encrypt" in warning


# -- the IO layer: socket options and the key pair's consistency -----------------------------------


def test_curve_problem_finds_a_public_key_of_another_pair() -> None:
    public, secret = key_pair()
    other_public, _ = key_pair()
    assert curve_problem(ConnectionInfo(curve_publickey=public, curve_secretkey=secret)) is None
    assert curve_problem(ConnectionInfo()) is None
    problem = curve_problem(ConnectionInfo(curve_publickey=other_public, curve_secretkey=secret))
    assert problem is not None and "is not the public key of curve_secretkey" in problem
    assert other_public not in problem and secret not in problem


def test_new_key_pair_is_a_pair() -> None:
    public, secret = new_key_pair()
    assert curve_problem(ConnectionInfo(curve_publickey=public, curve_secretkey=secret)) is None
    assert new_key_pair() != (public, secret)


def test_make_curve_server_sets_the_options_and_only_with_keys(context: zmq.Context[Any]) -> None:
    public, secret = key_pair()
    with context.socket(zmq.ROUTER) as sock:
        make_curve_server(sock, ConnectionInfo(curve_publickey=public, curve_secretkey=secret))
        assert sock.curve_server == 1
        assert sock.mechanism == zmq.CURVE
    with context.socket(zmq.ROUTER) as sock:
        make_curve_server(sock, ConnectionInfo())
        assert sock.mechanism == zmq.NULL


def handshake_failure(sock: zmq.Socket[Any], url: str, send: list[bytes] | None = None) -> str:
    """Connect ``sock`` to ``url`` (sending ``send`` at once, if given) and wait for its
    first failed handshake, on the socket's monitor; the event's name."""
    monitor = sock.get_monitor_socket()  # before connect: no event can be missed
    try:
        sock.connect(url)
        if send is not None:
            # Queued: only a completed handshake would let it out. Never waited
            # for: once in CI, under load, this send blocked until the test timed
            # out (300 s) -- the failed handshake ends the connection with no
            # reconnect, and a send that finds no pipe waits for one forever. (Not
            # reproduced in isolation: there, after the failure, the send still
            # queues.) Whether it is queued or refused, nothing may come of it,
            # which is what the callers check.
            with contextlib.suppress(zmq.Again):
                sock.send_multipart(send, zmq.NOBLOCK)
        while monitor.poll(TIMEOUT_MS):
            event = zmq.Event(recv_monitor_message(monitor)["event"])
            if event.name.startswith("HANDSHAKE_FAILED"):
                return event.name
            assert event != zmq.Event.HANDSHAKE_SUCCEEDED
        raise TimeoutError("no handshake event")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def test_the_heartbeat_echoes_curve_clients_only(context: zmq.Context[Any]) -> None:
    public, secret = key_pair()
    heartbeat = Heartbeat(ConnectionInfo(curve_publickey=public, curve_secretkey=secret))
    heartbeat.start()
    try:
        url = f"tcp://127.0.0.1:{heartbeat.port}"
        # As jupyter_client's HBChannel: a throw-away pair, the kernel's public key as server key.
        with context.socket(zmq.REQ) as client:
            client.linger = 0
            client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
            client.curve_serverkey = public.encode()
            client.connect(url)
            client.send(b"ping")
            assert client.poll(TIMEOUT_MS)
            assert client.recv() == b"ping"
        with context.socket(zmq.REQ) as outsider:
            outsider.linger = 0
            assert handshake_failure(outsider, url, send=[b"ping"]).startswith("HANDSHAKE_FAILED")
            assert not outsider.poll(0)
    finally:
        heartbeat.stop()


# -- the kernelspec --------------------------------------------------------------------------------


def test_the_kernelspec_declares_curve() -> None:
    metadata: Any = kernel_spec()["metadata"]
    assert metadata["supported_encryption"] == ["curve"]


def test_install_writes_the_declaration(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "threadline", "install", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "threadline" / "kernel.json").read_text())
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    assert "does not declare transport encryption" not in done.stderr


def test_without_curve_in_libzmq_nothing_is_declared_and_encryption_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from threadline.io import curve

    monkeypatch.setattr(curve, "CURVE_UNAVAILABLE_REASON", "libzmq 4.3.5 was built without CurveZMQ")
    metadata: Any = kernel_spec()["metadata"]
    assert "supported_encryption" not in metadata
    public, secret = key_pair()
    problem = curve_problem(ConnectionInfo(curve_publickey=public, curve_secretkey=secret))
    assert problem == (
        "the connection file asks for transport encryption, but libzmq 4.3.5 was built without CurveZMQ"
    )
