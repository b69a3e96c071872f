"""Bad input and security defaults, against real kernel processes.

Garbage: 8,700 malformed messages (two bursts of 4,350, eight kinds, on shell,
control and stdin) at a kernel started with ``--max-message-size 65536``.
Afterwards the kernel answers kernel_info at once, an ``input()`` still gets
its answer over stdin, none of the garbage got any reply, the
kernel counted every drop by channel and reason, logged each (channel, reason)
on its 1st and every 1000th occurrence only, and its resident memory grew by
less than ``RSS_GROWTH_BOUND`` over both bursts and ``RSS_SECOND_BURST_BOUND``
over the second.

Security defaults: an empty key is refused unless ``--allow-empty-key``;
digests are compared with ``hmac.compare_digest``; a replayed execute_request
runs once; a connection file the kernel writes itself is mode 0600; it listens
on 127.0.0.1 only; the key never appears in a debug-level log.
"""

from __future__ import annotations

import hmac
import json
import os
import random
import re
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import KernelManager
from jupyter_client.session import DELIM

from tests.kernel_helpers import (
    TIMEOUT,
    WirePeer,
    execute,
    get_input_request,
    get_reply,
    kernel_pid,
    proc_status_kib,
    start_kernel_logged,
    stop_kernel,
    wait_for_exit,
    wait_for_iopub,
)
from threadline.protocol import Session, Signer

MAX_MESSAGE_SIZE = 64 * 1024
RSS_GROWTH_BOUND = 50 * 1024 * 1024
RSS_SECOND_BURST_BOUND = 20 * 1024 * 1024
DROP_LINE = re.compile(r"dropped an invalid message on (\w+) \((\w+): .*; (\d+) so far\)")


@pytest.fixture
def logged_kernel(tmp_path: Path) -> Iterator[tuple[KernelManager, BlockingKernelClient, Path]]:
    log = tmp_path / "kernel.log"
    manager, client = start_kernel_logged(log, "--max-message-size", str(MAX_MESSAGE_SIZE))
    try:
        yield manager, client, log
    finally:
        stop_kernel(manager, client)


def _kernel_value(kc: BlockingKernelClient, expression: str) -> Any:
    """The value of ``expression`` in the kernel (it must evaluate to JSON)."""
    run = execute(kc, f"import json as _json\nprint(_json.dumps({expression}))")
    assert run.content["status"] == "ok", run.content
    return json.loads(run.stdout)


# -- garbage at the kernel -----------------------------------------------------------------------


def _garbage(peer: WirePeer, rng: random.Random, replayable: list[bytes]) -> dict[str, list[list[bytes]]]:
    """Malformed messages of every kind, keyed by the reason the kernel should give."""
    session = peer.session

    def signed(parts: list[bytes]) -> list[bytes]:
        return [DELIM, session.sign(parts), *parts]

    def random_frames() -> list[bytes]:
        return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 8))]

    def with_signature(signature: bytes) -> list[bytes]:
        _, frames = peer.frames("execute_request", {"code": "hacked = True", "silent": False})
        index = frames.index(DELIM) + 1
        frames[index] = signature
        return frames

    def bad_json() -> list[bytes]:
        # Unique content, so no two are the same bytes (which would be a replay).
        header = json.dumps({"msg_id": "m", "msg_type": "execute_request"}).encode()
        content = json.dumps({"n": rng.random()}).encode()
        return signed([header[: rng.randrange(1, len(header))], b"{}", b"{}", content])

    def bad_header() -> list[bytes]:
        header = rng.choice([b"{}", b'{"msg_id": 1, "msg_type": "x"}', b'{"msg_id": "1", "msg_type": ""}'])
        return signed([header, b"{}", b"{}", json.dumps({"n": rng.random()}).encode()])

    def missing_frames() -> list[bytes]:
        _, frames = peer.frames("kernel_info_request")
        return frames[: frames.index(DELIM) + rng.randrange(1, 6)]

    def oversize() -> list[bytes]:
        _, frames = peer.frames("execute_request", {"code": "#" + "x" * MAX_MESSAGE_SIZE})
        return frames

    return {
        "framing": [random_frames() for _ in range(1000)] + [missing_frames() for _ in range(50)],
        "signature": [with_signature(rng.randbytes(32).hex().encode()) for _ in range(100)]
        + [with_signature(b"") for _ in range(50)],
        "json": [bad_json() for _ in range(100)],
        "header": [bad_header() for _ in range(50)],
        "replay": [replayable for _ in range(50)],
        "oversize": [oversize() for _ in range(50)],
    }


def _assert_answers_first(peer: WirePeer, timeout: float) -> float:
    """The next (and so the first) message on ``peer`` answers a fresh kernel_info. Returns seconds taken.

    ZeroMQ keeps one connection's messages in order and the kernel decodes them in
    order, so a reply to any of the garbage sent before would arrive first.
    """
    start = time.monotonic()
    msg_id = peer.request("kernel_info_request")
    reply = peer.receive(timeout)
    assert reply["msg_type"] == "kernel_info_reply", reply
    assert reply["parent_header"]["msg_id"] == msg_id, "a reply to garbage came first"
    return time.monotonic() - start


def test_thousands_of_malformed_messages_are_dropped_silently(
    logged_kernel: tuple[KernelManager, BlockingKernelClient, Path], context: zmq.Context[Any]
) -> None:
    """2 bursts x 4,350 malformed messages: no reply, every drop counted, logs rate-limited, RSS bounded."""
    manager, kc, log = logged_kernel
    pid = kernel_pid(manager)
    rng = random.Random(20240611)
    peers = {channel: WirePeer(context, manager, channel) for channel in ("shell", "control", "stdin")}
    answering = [peers["shell"], peers["control"]]  # stdin answers nothing; see below
    try:
        replayable = {}
        for channel, peer in peers.items():
            msg_id, frames = peer.frames("kernel_info_request")
            peer.send(frames)
            if peer in answering:
                assert peer.receive()["parent_header"]["msg_id"] == msg_id
            replayable[channel] = frames  # accepted once: any resend is a replay
        execute(kc, "pass")  # warm the shell up before measuring
        rss_before = proc_status_kib(pid, "VmRSS") * 1024

        expected: Counter[str] = Counter()
        rss_after_first = 0
        for burst in range(2):
            for channel, peer in peers.items():
                for reason, messages in _garbage(peer, rng, replayable[channel]).items():
                    for frames in messages:
                        peer.send(frames)
                    expected[f"{channel}:{reason}"] += len(messages)
            for peer in answering:
                seconds = _assert_answers_first(peer, timeout=TIMEOUT)
                print(
                    f"burst {burst}: kernel_info answered {seconds:.3f}s after the garbage on {peer.channel}"
                )
            if burst == 0:
                rss_after_first = proc_status_kib(pid, "VmRSS") * 1024
        rss_after = proc_status_kib(pid, "VmRSS") * 1024

        # Nothing else is waiting on either socket: no late reply to any garbage.
        for peer in peers.values():
            assert peer.receive_frames(timeout=0.5) is None
    finally:
        for peer in peers.values():
            peer.close()

    assert sum(expected.values()) == 8700
    # The stdin channel still works: an input() in a cell gets its answer.
    msg_id = kc.execute("print('got', input('? '))", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"] == "? "
    kc.input("forty-two")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    dropped = _kernel_value(kc, "dict(get_ipython().kernel.io.dropped)")
    assert dropped == dict(expected)

    logged = Counter(f"{m[1]}:{m[2]}" for m in DROP_LINE.finditer(log.read_text()))
    # Each (channel, reason) is logged on its 1st drop and on every 1000th.
    assert logged == {key: 1 + count // 1000 for key, count in expected.items()}
    assert logged["shell:framing"] == 3  # 2,100 framing drops: lines for the 1st, 1000th, 2000th
    assert logged["stdin:signature"] == 1

    print(
        f"dropped {sum(expected.values())} ({dict(expected)}); log lines {sum(logged.values())}; "
        f"VmRSS {rss_before / 2**20:.1f} -> {rss_after_first / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    assert rss_after - rss_before < RSS_GROWTH_BOUND
    assert rss_after - rss_after_first < RSS_SECOND_BURST_BOUND


# -- security defaults ---------------------------------------------------------------------------


def _connection_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "connection.json"
    write_connection_file(str(path), ip="127.0.0.1", key=key.encode(), kernel_name="threadline")
    return path


def test_empty_key_is_refused(tmp_path: Path) -> None:
    """A connection file with key "" makes the kernel exit 2 with a message naming --allow-empty-key."""
    path = _connection_file(tmp_path, key="")
    assert json.loads(path.read_text())["key"] == ""
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert "empty key" in result.stderr and "--allow-empty-key" in result.stderr


def test_empty_key_is_accepted_with_the_flag(tmp_path: Path) -> None:
    """With --allow-empty-key the same file gives a kernel that answers unsigned requests."""
    path = _connection_file(tmp_path, key="")
    process = subprocess.Popen([sys.executable, "-m", "threadline", "-f", str(path), "--allow-empty-key"])
    client = BlockingKernelClient(connection_file=str(path))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        assert client.session.key == b""
        msg_id = client.shutdown()
        reply = client.get_control_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        client.stop_channels()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_digests_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signer.verify (and so Session.decode) compares with hmac.compare_digest, good or bad."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    signer = Signer(b"secret")
    parts = [b"{}", b"{}", b"{}", b"{}"]
    good = signer.sign(parts)
    assert signer.verify(good, parts)
    assert not signer.verify(b"0" * len(good), parts)
    assert calls == [(good, good), (b"0" * len(good), good)]

    calls.clear()
    session = Session(b"secret")
    frames = [bytes(f) for f in session.encode("kernel_info_request", {})]
    session.decode(frames)
    assert len(calls) == 1


def test_replayed_execute_request_runs_once(
    kernel: tuple[KernelManager, BlockingKernelClient], context: zmq.Context[Any]
) -> None:
    """The same signed execute_request frames sent twice: one execution, one reply, one replay drop."""
    manager, kc = kernel
    peer = WirePeer(context, manager, "shell")
    try:
        code = "_replay_runs = globals().get('_replay_runs', 0) + 1"
        msg_id, frames = peer.frames("execute_request", {"code": code, "silent": False})
        peer.send(frames)
        peer.send(list(frames))  # the exact same bytes
        info_id = peer.request("kernel_info_request")
        replies = [peer.receive(), peer.receive()]
        assert [r["parent_header"]["msg_id"] for r in replies] == [msg_id, info_id]
        assert replies[0]["content"]["status"] == "ok"
        assert peer.receive_frames(timeout=0.5) is None
    finally:
        peer.close()
    assert _kernel_value(kc, "_replay_runs") == 1
    assert _kernel_value(kc, "get_ipython().kernel.io.dropped['shell:replay']") == 1


def _listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp*) listening on ``port``, IPv4 and IPv6."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def _read_until(fd: int, pattern: str, timeout: float) -> re.Match[str]:
    """Read a pipe until what it carried matches ``pattern`` (unbuffered, so select tells the truth)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while (match := re.search(pattern, seen.decode(errors="replace"))) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no {pattern!r} within {timeout}s; got {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"the kernel exited before printing {pattern!r}; got {seen!r}")
        seen += chunk
    return match


def test_self_written_connection_file_is_private_and_binds_localhost(tmp_path: Path) -> None:
    """``python -m threadline`` (no -f), umask 0: connection file 0600; five ports on 127.0.0.1 only."""
    runtime = tmp_path / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    process = subprocess.Popen(
        [sys.executable, "-m", "threadline"],
        stderr=subprocess.PIPE,
        bufsize=0,
        env=env,
        umask=0,
    )
    try:
        assert process.stderr is not None
        path = Path(_read_until(process.stderr.fileno(), r"--existing (\S+)\n", timeout=60)[1])
        assert path.parent == runtime
        assert path.stat().st_mode & 0o777 == 0o600
        info = json.loads(path.read_text())
        assert info["ip"] == "127.0.0.1" and info["transport"] == "tcp"
        assert len(info["key"]) >= 32
        for channel in ("shell", "iopub", "stdin", "control", "hb"):
            port = info[f"{channel}_port"]
            # 0100007F is 127.0.0.1 in /proc's little-endian hex.
            assert _listening_addresses(port) == {"0100007F"}, (channel, port)
        process.terminate()  # SIGTERM: an orderly shutdown
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_key_never_appears_in_a_debug_log(tmp_path: Path, context: zmq.Context[Any]) -> None:
    """--log-level debug; executes, output, bad signatures, a replay, a shutdown: the key is not in stderr."""
    log = tmp_path / "kernel.log"
    manager, kc = start_kernel_logged(log, "--log-level", "debug")
    key = manager.session.key.decode()
    try:
        assert len(key) >= 32
        run = execute(kc, "import sys\nprint('out'); print('err', file=sys.stderr)\n1/0")
        assert run.content["status"] == "error"
        peer = WirePeer(context, manager, "shell")
        try:
            _, frames = peer.frames("execute_request", {"code": "1"})
            peer.send(frames)
            peer.receive()
            peer.send(frames)  # replay
            index = frames.index(DELIM) + 1
            forged = [*frames[:index], b"0" * 64, *frames[index + 1 :]]
            peer.send(forged)
            _assert_answers_first(peer, TIMEOUT)
            # A client that leaves before its reply: the reply is unroutable (a DEBUG line).
            # The peer goes once its request runs (kc sees its execute_input), so kc's
            # execute below is queued behind it on the one shell: the unroutable reply
            # is attempted first. The cell's pause gives ZeroMQ time to see the peer go.
            pause = "import time; time.sleep(1)"  # in the kernel (noqa: sleep-ok)
            pause_id = peer.request("execute_request", {"code": pause})
            wait_for_iopub(
                kc,
                lambda m: m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == pause_id,
            )
        finally:
            peer.close()
        execute(kc, "pass")
        kc.shutdown()
        assert wait_for_exit(manager) == 0
    finally:
        stop_kernel(manager, kc)
    text = log.read_text()
    assert "dropped a shell message for a client that is gone" in text  # DEBUG level is on
    assert "dropped an invalid message on shell (replay" in text
    assert "dropped an invalid message on shell (signature" in text
    assert key not in text
    assert key[:16] not in text and key[-16:] not in text
