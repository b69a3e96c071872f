"""The raw pyzmq ceiling: what two Python processes can do over tcp loopback.

Theory of operation
-------------------
The benchmark process is one end; a child process (``python -m
benchmarks.raw_zmq ROLE PORT N``) is the other. Messages have the six frames
of a Jupyter iopub message (topic, delimiter, signature, header, parent,
content-ish), prebuilt, so these numbers are the transport's limit with no
serialisation at all. The signed echo adds what every real request pays at
minimum: build a header, JSON-encode (orjson), HMAC-SHA256 sign, and on the
other side verify and parse -- in both directions.

The child prints one JSON line with its own measurement and exits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import zmq

from benchmarks.harness import median, quantile

KEY = b"0123456789abcdef0123456789abcdef"


def six_frames() -> list[bytes]:
    header = orjson.dumps(
        {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "comm_msg",
            "username": "bench",
            "session": uuid.uuid4().hex,
            "date": datetime.now(UTC).isoformat(),
            "version": "5.4",
        }
    )
    content = orjson.dumps({"comm_id": uuid.uuid4().hex, "data": {"t": 1, "i": 12345}})
    return [b"comm-" + uuid.uuid4().hex.encode(), b"<IDS|MSG>", b"0" * 64, header, header, content]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.raw_zmq", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _finish(child: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, float]:
    try:
        out, _ = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def throughput(kind: str, count: int) -> float:
    """Messages per second from this process to a child: kind is 'pushpull' or 'pubsub'."""
    ctx = zmq.Context()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.PUSH if kind == "pushpull" else zmq.XPUB)
    sock.linger = 0
    sock.setsockopt(zmq.SNDHWM, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    child = _spawn("pull" if kind == "pushpull" else "sub", str(port), str(count))
    try:
        if kind == "pubsub":
            sock.recv()  # the subscription: the subscriber is connected
        frames = six_frames()
        send = sock.send_multipart
        for _ in range(count):
            send(frames)
        result = _finish(child)
    finally:
        if child.poll() is None:
            child.kill()
        ctx.destroy(linger=0)
    return result["count"] / result["seconds"]


def echo(signed: bool, count: int) -> list[float]:
    """Round trips in microseconds to an echoing child (raw bytes, or signed JSON both ways)."""
    ctx = zmq.Context()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    child = _spawn("signed-echo" if signed else "echo", str(port), str(count + count // 10))
    out: list[float] = []
    try:
        frames = six_frames()[1:]
        for i in range(count + count // 10):
            t0 = time.perf_counter()
            if signed:
                sock.send_multipart(_signed_message("execute_request", {"code": "pass"}))
                reply = sock.recv_multipart()
                _verify(reply)
            else:
                sock.send_multipart(frames)
                sock.recv_multipart()
            if i >= count // 10:  # the first tenth is warm-up
                out.append((time.perf_counter() - t0) * 1e6)
        _finish(child)
    finally:
        if child.poll() is None:
            child.kill()
        ctx.destroy(linger=0)
    return out


def _signed_message(msg_type: str, content: dict[str, object], parent: bytes = b"{}") -> list[bytes]:
    header = orjson.dumps(
        {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "bench",
            "session": "bench",
            "date": datetime.now(UTC),
            "version": "5.4",
        }
    )
    body = [header, parent, b"{}", orjson.dumps(content)]
    mac = hmac.new(KEY, digestmod=hashlib.sha256)
    for part in body:
        mac.update(part)
    return [b"<IDS|MSG>", mac.hexdigest().encode(), *body]


def _verify(frames: list[bytes]) -> tuple[bytes, dict[str, object]]:
    split = frames.index(b"<IDS|MSG>")
    signature, body = frames[split + 1], frames[split + 2 : split + 6]
    mac = hmac.new(KEY, digestmod=hashlib.sha256)
    for part in body:
        mac.update(part)
    if not hmac.compare_digest(signature, mac.hexdigest().encode()):
        raise ValueError("bad signature")
    return body[0], orjson.loads(body[3])


def ceiling(raw_msgs: int, raw_roundtrips: int) -> dict[str, float]:
    echo_raw = echo(False, raw_roundtrips)
    echo_signed = echo(True, raw_roundtrips)
    return {
        "pushpull_msg_s": throughput("pushpull", raw_msgs),
        "pubsub_msg_s": throughput("pubsub", raw_msgs),
        "echo_median_us": median(echo_raw),
        "echo_p99_us": quantile(echo_raw, 0.99),
        "signed_echo_median_us": median(echo_signed),
        "signed_echo_p99_us": quantile(echo_signed, 0.99),
    }


# -- the child's side ------------------------------------------------------------------------


def _child(role: str, port: int, count: int) -> dict[str, float]:
    ctx = zmq.Context()
    try:
        if role in ("pull", "sub"):
            sock: zmq.Socket[bytes] = ctx.socket(zmq.PULL if role == "pull" else zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 0)
            if role == "sub":
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"tcp://127.0.0.1:{port}")
            recv = sock.recv_multipart
            recv()
            t0 = time.perf_counter()
            for _ in range(count - 1):
                recv()
            return {"count": count - 1, "seconds": time.perf_counter() - t0}
        sock = ctx.socket(zmq.ROUTER)
        sock.connect(f"tcp://127.0.0.1:{port}")
        for _ in range(count):
            frames = sock.recv_multipart()
            if role == "signed-echo":
                header, _ = _verify(frames)
                sock.send_multipart([frames[0], *_signed_message("execute_reply", {"status": "ok"}, header)])
            else:
                sock.send_multipart(frames)
        return {"count": count}
    finally:
        ctx.destroy(linger=1000)


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))), flush=True)
