"""An encrypted kernel, end to end: jupyter_client provisions the keys, threadline uses them.

Every kernel here is started by ``KernelManager(transport_encryption="required")``
(jupyter_client >= 8.9), which refuses a kernelspec that does not declare
Curve support, writes a fresh key pair into the connection file and connects
every client socket with the kernel's public key as server key. Through it:
execute with output on iopub, ``input()`` over stdin, control requests, the
heartbeat, interrupts, subshells, the debugger, a restart (same keys) and a
shutdown -- over tcp and over ipc.

An outsider on the same host is kept out: a plain ZeroMQ socket, and a Curve
socket that guesses the server key, connect to the kernel's ports and send a
correctly signed ``execute_request`` whose code would create a file. Each
handshake fails (the socket monitor says so); the file never appears; the
same request from a socket that has the public key does create it; the real
client is answered throughout. A plain SUB on iopub receives nothing while
the kernel prints.

A connection file with half a key pair, or a public key of another pair, makes
the kernel exit at once with status 2 and a message naming the problem. A
kernel listening beyond loopback without encryption warns at start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    TIMEOUT,
    collect_until_idle,
    execute,
    get_input_request,
    get_reply,
    stop_kernel,
    wait_for_exit,
)
from tests.test_curve import handshake_failure
from tests.test_debugger import DebugClient
from tests.test_hardening import _read_until
from tests.test_interrupts import interrupt_once
from tests.test_subshells import control_request, create_subshell, execute_in
from threadline.io import curve_available

pytestmark = pytest.mark.skipif(not curve_available(), reason="this libzmq has no CurveZMQ")


def start_managed(
    transport: str = "tcp", *, encryption: str = "required", **launch: Any
) -> tuple[KernelManager, BlockingKernelClient, dict[str, Any]]:
    """A threadline kernel started by a KernelManager with this ``transport_encryption``
    (by default: manager-provisioned Curve keys), a ready client, and its connection file."""
    manager = KernelManager(kernel_name="threadline", transport_encryption=encryption, transport=transport)
    if transport == "ipc":
        # jupyter_client's default is "kernel-ipc" in the working directory; keep it short
        # (a socket path has ~100 bytes) and private.
        manager.ip = str(Path(tempfile.mkdtemp(prefix="tl-ipc-")) / "k")
    manager.start_kernel(**launch)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
    except RuntimeError:
        stop_kernel(manager, client)
        raise
    info: dict[str, Any] = json.loads(Path(manager.connection_file).read_text())
    return manager, client, info


@pytest.fixture(params=["tcp", "ipc"])
def encrypted(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[KernelManager, BlockingKernelClient, dict[str, Any]]]:
    manager, client, info = start_managed(request.param)
    try:
        yield manager, client, info
    finally:
        stop_kernel(manager, client)  # removes the ipc socket files, not their directory
        if request.param == "ipc":
            shutil.rmtree(Path(manager.ip).parent, ignore_errors=True)


def endpoint(info: dict[str, Any], channel: str) -> str:
    port = info[f"{channel}_port"]
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"tcp://{info['ip']}:{port}"


def signed_execute(manager: KernelManager, code: str) -> tuple[str, list[bytes]]:
    """A correctly signed execute_request (the HMAC key is no secret to this outsider)."""
    message = manager.session.msg("execute_request", {"code": code, "silent": False})
    return message["header"]["msg_id"], [bytes(f) for f in manager.session.serialize(message)]


# -- everything a front end does, encrypted -----------------------------------------------------


def test_the_kernel_runs_encrypted_over_tcp_and_ipc(
    encrypted: tuple[KernelManager, BlockingKernelClient, dict[str, Any]],
) -> None:
    manager, kc, info = encrypted
    assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40
    if info["transport"] == "ipc":
        assert Path(f"{info['ip']}-{info['shell_port']}").exists()

    run = execute(
        kc,
        "import threading\nt = threading.Thread(target=print, args=('from a thread',))\n"
        "t.start(); t.join()\nprint('secret output')",
    )
    assert run.content["status"] == "ok"
    assert run.stdout == "from a thread\nsecret output\n"

    msg_id = kc.execute("answer = input('password? ')\nprint(answer[::-1])", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"] == "password? "
    kc.input("hunter2")
    streams = [m["content"]["text"] for m in collect_until_idle(kc, msg_id) if m["msg_type"] == "stream"]
    assert streams == ["2retnuh\n"]
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"

    reply = control_request(kc, "kernel_info_request", {})
    assert reply["content"]["implementation"] == "threadline"

    # The heartbeat, pinged as jupyter_client's HBChannel pings it: a REQ with a
    # throw-away key pair and the kernel's public key as server key.
    with zmq.Context() as context, context.socket(zmq.REQ) as ping:
        ping.linger = 0
        ping.curve_publickey, ping.curve_secretkey = zmq.curve_keypair()
        ping.curve_serverkey = info["curve_publickey"].encode()
        ping.connect(endpoint(info, "hb"))
        ping.send(b"are you there")
        assert ping.poll(TIMEOUT * 1000)
        assert ping.recv() == b"are you there"
        with context.socket(zmq.REQ) as plain:
            plain.linger = 0
            assert handshake_failure(plain, endpoint(info, "hb"), send=[b"ping"]).startswith("HANDSHAKE")
            assert not plain.poll(0)

    kc.shutdown()
    assert wait_for_exit(manager) == 0


def test_auto_encrypts_threadline_because_its_kernelspec_says_it_can() -> None:
    manager, kc, info = start_managed("tcp", encryption="auto")
    try:
        assert len(info["curve_secretkey"]) == 40
        assert execute(kc, "print('auto')").stdout == "auto\n"
    finally:
        stop_kernel(manager, kc)


def test_the_ipc_transport_works_without_encryption_too() -> None:
    manager, kc, info = start_managed("ipc", encryption="disabled")
    try:
        assert "curve_secretkey" not in info
        assert Path(f"{info['ip']}-{info['iopub_port']}").exists()
        assert execute(kc, "print('over a unix socket')").stdout == "over a unix socket\n"
        kc.shutdown()
        assert wait_for_exit(manager) == 0
    finally:
        stop_kernel(manager, kc)
        shutil.rmtree(Path(manager.ip).parent, ignore_errors=True)


def test_interrupt_subshell_and_restart_with_the_same_keys(
    encrypted: tuple[KernelManager, BlockingKernelClient, dict[str, Any]],
) -> None:
    manager, kc, info = encrypted
    reply = interrupt_once(
        manager, kc, "import threading\nprint('waiting', flush=True)\nthreading.Event().wait()"
    )
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"

    subshell = create_subshell(kc)
    msg_id = execute_in(kc, subshell, "print('in a subshell')")
    streams = [m["content"]["text"] for m in collect_until_idle(kc, msg_id) if m["msg_type"] == "stream"]
    assert streams == ["in a subshell\n"]
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"

    execute(kc, "before_restart = 1")
    manager.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    after = json.loads(Path(manager.connection_file).read_text())
    assert (after["curve_publickey"], after["curve_secretkey"]) == (
        info["curve_publickey"],
        info["curve_secretkey"],
    )
    run = execute(kc, "print('before_restart' in globals())")
    assert run.stdout == "False\n"  # a new process, reached with the same keys


def test_connect_info_never_shows_the_curve_keys(
    encrypted: tuple[KernelManager, BlockingKernelClient, dict[str, Any]],
) -> None:
    _, kc, info = encrypted
    run = execute(kc, "%connect_info")
    assert run.content["status"] == "ok"
    assert f'"shell_port": {info["shell_port"]}' in run.stdout  # it did print the connection
    assert "Curve keys are not shown" in run.stdout
    for key in (info["curve_publickey"], info["curve_secretkey"]):
        assert key not in run.stdout and key[:12] not in run.stdout
    assert "curve_" not in run.stdout.replace("Curve keys", "")


FUNCTION_CELL = """\
def add(a, b):
    total = a + b
    return total

y = add(10, 5)
"""


def test_the_debugger_works_encrypted() -> None:
    manager, kc, _ = start_managed("tcp")
    try:
        dbg = DebugClient(kc)
        assert dbg.ok("debugInfo")["isStarted"] is False
        dbg.start()
        dbg.set_breakpoints(FUNCTION_CELL, 2)
        dbg.ok("configurationDone")
        msg_id = kc.execute(FUNCTION_CELL)
        thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]
        assert dbg.locals_of(dbg.top_frame(thread_id)["id"]) == {"a": "10", "b": "5"}
        dbg.ok("continue", {"threadId": thread_id})
        assert get_reply(kc, msg_id)["content"]["status"] == "ok"
        dbg.ok("disconnect", {"restart": False, "terminateDebuggee": True})
    finally:
        stop_kernel(manager, kc)


# -- outsiders on the same host --------------------------------------------------------------


def outsider(context: zmq.Context[Any], kind: int, guessed_key: bool) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = context.socket(kind)
    sock.linger = 0
    if guessed_key:  # a Curve client that does not know the kernel's public key
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = zmq.curve_keypair()[0]
    return sock


@pytest.mark.parametrize("guessed_key", [False, True], ids=["plain", "guessed-key"])
def test_an_outsider_cannot_have_code_run(
    encrypted: tuple[KernelManager, BlockingKernelClient, dict[str, Any]],
    context: zmq.Context[Any],
    tmp_path: Path,
    guessed_key: bool,
) -> None:
    manager, kc, info = encrypted
    target = tmp_path / "written-by-the-outsider"
    code = f"open({str(target)!r}, 'w').close()"

    intruder = outsider(context, zmq.DEALER, guessed_key)
    _, frames = signed_execute(manager, code)
    assert handshake_failure(intruder, endpoint(info, "shell"), send=frames).startswith("HANDSHAKE_FAILED")

    # The real client is answered, and its request (queued after the outsider's) ran without it.
    run = execute(kc, f"import os\nprint(os.path.exists({str(target)!r}))")
    assert run.stdout == "False\n"
    assert not intruder.poll(0)
    assert not target.exists()

    # The same signed request from a socket that has the public key runs: the test could fail.
    with context.socket(zmq.DEALER) as insider:
        insider.linger = 0
        insider.curve_publickey, insider.curve_secretkey = zmq.curve_keypair()
        insider.curve_serverkey = info["curve_publickey"].encode()
        insider.connect(endpoint(info, "shell"))
        msg_id, frames = signed_execute(manager, code)
        insider.send_multipart(frames)
        assert insider.poll(TIMEOUT * 1000)
        reply = manager.session.deserialize(manager.session.feed_identities(insider.recv_multipart())[1])
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
    assert target.exists()
    assert execute(kc, "print('still here')").stdout == "still here\n"
    intruder.close(linger=0)


@pytest.mark.parametrize("guessed_key", [False, True], ids=["plain", "guessed-key"])
def test_an_outsider_on_iopub_hears_nothing(
    encrypted: tuple[KernelManager, BlockingKernelClient, dict[str, Any]],
    context: zmq.Context[Any],
    guessed_key: bool,
) -> None:
    _, kc, info = encrypted
    listener = outsider(context, zmq.SUB, guessed_key)
    try:
        listener.setsockopt(zmq.SUBSCRIBE, b"")
        assert handshake_failure(listener, endpoint(info, "iopub")).startswith("HANDSHAKE_FAILED")
        run = execute(kc, "for i in range(100):\n    print('the kernel talks', i)")
        assert run.stdout.count("the kernel talks") == 100  # the real client heard all of it
        assert not listener.poll(0)  # the outsider heard none of it
    finally:
        listener.close(linger=0)


# -- refusals and warnings at start ------------------------------------------------------------


def run_kernel_with(tmp_path: Path, *arguments: str, **fields: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "connection.json"
    path.write_bytes(orjson.dumps({"key": "k" * 32, "ip": "127.0.0.1", "transport": "tcp", **fields}))
    return subprocess.run(
        [sys.executable, "-m", "threadline", "-f", str(path), *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )


@pytest.mark.parametrize("present", ["curve_publickey", "curve_secretkey"])
def test_half_a_key_pair_exits_at_once_naming_it(tmp_path: Path, present: str) -> None:
    public, secret = (k.decode() for k in zmq.curve_keypair())
    value = public if present == "curve_publickey" else secret
    done = run_kernel_with(tmp_path, **{present: value})
    missing = "curve_secretkey" if present == "curve_publickey" else "curve_publickey"
    assert done.returncode == 2
    assert f"has {present} but no {missing}" in done.stderr
    assert value not in done.stderr + done.stdout


def test_a_public_key_of_another_pair_exits_at_once(tmp_path: Path) -> None:
    _, secret = (k.decode() for k in zmq.curve_keypair())
    other_public, _ = (k.decode() for k in zmq.curve_keypair())
    done = run_kernel_with(tmp_path, curve_publickey=other_public, curve_secretkey=secret)
    assert done.returncode == 2
    assert "curve_publickey is not the public key of curve_secretkey" in done.stderr
    assert secret not in done.stderr and other_public not in done.stderr


def test_encrypt_with_a_connection_file_says_the_file_decides(tmp_path: Path) -> None:
    # An empty key stops the kernel right after the note, so nothing has to be shut down.
    done = run_kernel_with(tmp_path, "--encrypt", key="")
    assert "--encrypt is for a kernel that writes its own connection file" in done.stderr
    assert "the connection file has an empty key" in done.stderr
    assert done.returncode == 2


def self_launched(tmp_path: Path, *arguments: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``python -m threadline ARGS`` writing its own connection file; what it said up to
    "connect with --existing FILE", and FILE."""
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    process = subprocess.Popen(
        [sys.executable, "-m", "threadline", *arguments], stderr=subprocess.PIPE, bufsize=0, env=env
    )
    assert process.stderr is not None
    match = _read_until(process.stderr.fileno(), r"(?s)(.*)--existing (\S+)\n", timeout=60)
    return process, match[1], Path(match[2])


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # an orderly shutdown
    try:
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_plain_text_on_all_interfaces_is_warned_about(tmp_path: Path) -> None:
    process, said, _ = self_launched(tmp_path, "--ip", "0.0.0.0")
    try:
        assert "listening on 0.0.0.0 over TCP without encryption" in said
        assert "transport_encryption = 'required'" in said
    finally:
        end(process)


def test_encrypt_makes_and_writes_its_own_key_pair(tmp_path: Path) -> None:
    process, said, path = self_launched(tmp_path, "--ip", "0.0.0.0", "--encrypt")
    try:
        assert "without encryption" not in said
        info = json.loads(path.read_text())
        assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40
        assert info["curve_secretkey"] not in said and info["key"] not in said
        info["ip"] = "127.0.0.1"  # bound on every interface; reached here through loopback
        client = BlockingKernelClient()
        client.load_connection_info(info)
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            assert execute(client, "print('encrypted, self-launched')").stdout == "encrypted, self-launched\n"
        finally:
            client.stop_channels()
    finally:
        end(process)


def test_keys_never_appear_in_a_debug_log(tmp_path: Path, context: zmq.Context[Any]) -> None:
    log = tmp_path / "kernel.log"
    with log.open("wb") as log_file:
        manager, kc, info = start_managed("tcp", extra_arguments=["--log-level", "debug"], stderr=log_file)
    try:
        intruder = outsider(context, zmq.DEALER, guessed_key=False)
        handshake_failure(intruder, endpoint(info, "shell"))
        intruder.close(linger=0)
        assert execute(kc, "print(1)").stdout == "1\n"
        kc.shutdown()
        assert wait_for_exit(manager) == 0
    finally:
        stop_kernel(manager, kc)
    text = log.read_text()
    assert "transport encryption: every socket is a CurveZMQ server" in text  # the log was on
    for secret in (info["curve_publickey"], info["curve_secretkey"], info["key"]):
        assert secret not in text
        assert secret[:12] not in text and secret[-12:] not in text
