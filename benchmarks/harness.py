"""Launching kernels and talking to them fast, for the benchmarks.

Theory of operation
-------------------
Each kernel under test is a real process started by ``jupyter_client``'s
``KernelManager`` from a kernelspec written into a private temporary Jupyter
data directory (``isolate_jupyter_dirs``), so nothing touches the user's own
runtime, data, config or IPython directories. Each peer kernel runs from its
own virtual environment (``benchmarks.peers``); threadline from this one.

The client is deliberately thin: raw pyzmq sockets (DEALER for shell and
control, SUB for iopub) and a ``jupyter_client.session.Session`` to sign what
we send and, *after* the timed part, to decode and verify what we received.
While a measurement runs, the client only receives frames and looks at them
with cheap substring tests (``is this a comm_msg?``, ``is this the idle of my
request?``), so that the client is not the bottleneck that the numbers measure.
Every wait is bounded: a kernel that drops a message (ipykernel's iopub is a
PUB socket with a high-water mark) ends a measurement by a quiet period, never
by a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from benchmarks.peers import Installed

DELIMITER = b"<IDS|MSG>"

#: The kernels whose kernelspec declares CurveZMQ support (ipykernel >= 7.3 does),
#: so that a handle with ``encrypted=True`` can ask the manager for keys.
ENCRYPTING = frozenset({"threadline", "ipykernel"})


def isolate_jupyter_dirs(kernels: Sequence[Installed]) -> Path:
    """Point Jupyter and IPython at a fresh temp dir and write each kernel's kernelspec there.

    Each kernelspec is named ``bench-<peer>`` and launches the kernel with the
    interpreter of its own environment (see ``benchmarks.peers``).
    """
    root = Path(tempfile.mkdtemp(prefix="threadline-bench-"))
    for var, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("IPYTHONDIR", "ipython"),
    ):
        path = root / sub
        path.mkdir()
        os.environ[var] = str(path)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    for installed in kernels:
        spec_dir = root / "data" / "kernels" / kernelspec_name(installed.peer.name)
        spec_dir.mkdir(parents=True)
        spec: dict[str, Any] = {
            "argv": installed.kernel_argv(),
            "display_name": f"bench {installed.peer.name}",
            "language": "python",
            "interrupt_mode": installed.peer.interrupt_mode,
            "env": installed.peer.env,
        }
        if installed.peer.name in ENCRYPTING:
            spec["metadata"] = {"supported_encryption": ["curve"]}
        if installed.peer.name == "threadline":
            # The metadata `threadline install --sys-prefix` writes into this
            # environment (the curve declaration, its kernel provisioner).
            from threadline.app import kernel_spec, provisioner_installed

            spec["metadata"] = kernel_spec(provisioner=provisioner_installed())["metadata"]
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def kernelspec_name(kind: str) -> str:
    return f"bench-{kind}"


# -- reading raw frames cheaply ---------------------------------------------------------


def parts(frames: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """(header, parent_header, content) frames of a raw message, undecoded."""
    split = frames.index(DELIMITER)
    return frames[split + 2], frames[split + 3], frames[split + 5]


def is_idle_for(frames: list[bytes], msg_id: bytes) -> bool:
    header, parent, content = parts(frames)
    return b"status" in header and b"idle" in content and msg_id in parent


@dataclass
class Received:
    """Raw iopub messages with their arrival times (``time.perf_counter``)."""

    frames: list[list[bytes]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


# -- a kernel process and a thin client ------------------------------------------------


class KernelHandle:
    """One running kernel and a raw-socket client connected to it.

    ``encrypted``: the manager provisions CurveZMQ keys (jupyter_client's
    ``transport_encryption="required"``) and the client's sockets are Curve
    clients with the kernel's public key as server key.
    """

    def __init__(self, kind: str, *, encrypted: bool = False) -> None:
        self.kind = kind
        self.encrypted = encrypted
        runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR", tempfile.gettempdir()))
        self.km = KernelManager(
            kernel_name=kernelspec_name(kind),
            connection_file=str(runtime / f"kernel-{kind}-{time.monotonic_ns()}.json"),
            transport_encryption="required" if encrypted else "disabled",
        )
        self.session: Session = self.km.session
        self.context = zmq.Context()
        self.pid: int | None = None
        self.started_at = 0.0
        self._idle: set[bytes] = set()

    def _socket(self, kind: int, port: int, rcvhwm: int | None = None) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        sock.linger = 0
        sock.setsockopt(zmq.RECONNECT_IVL, 2)  # do not quantise startup to 100 ms
        if rcvhwm is not None:
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if self.km.curve_publickey is not None:
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = self.km.curve_publickey
        sock.connect(f"tcp://{self.km.ip}:{port}")
        return sock

    shell: zmq.Socket[bytes]
    control: zmq.Socket[bytes]
    iopub: zmq.Socket[bytes]

    def start(self) -> None:
        log_dir = Path(os.environ.get("JUPYTER_RUNTIME_DIR", tempfile.gettempdir()))
        self.log_path = log_dir / f"{self.kind}-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.started_at = time.perf_counter()
            self.km.start_kernel(stdout=log, stderr=log)
        # The provisioner picks the ports while launching: connect only now
        # (the kernel binds later still; ZeroMQ queues until it does).
        self.shell = self._socket(zmq.DEALER, self.km.shell_port)
        self.control = self._socket(zmq.DEALER, self.km.control_port)
        self.iopub = self._socket(zmq.SUB, self.km.iopub_port, rcvhwm=0)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        provisioner = self.km.provisioner
        process = getattr(provisioner, "process", None)
        self.pid = getattr(process, "pid", None) or getattr(provisioner, "pid", None)

    def close(self) -> None:
        """Stop the kernel (hard) and close the client. Safe to call twice."""
        try:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        except Exception:
            pass
        if self.pid is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        with suppress(Exception):
            self.km.cleanup_resources()
        self.context.destroy(linger=0)

    # -- messages ---------------------------------------------------------------------

    def request_frames(self, msg_type: str, content: dict[str, Any]) -> tuple[bytes, list[bytes]]:
        """A signed request, serialised ahead of time; returns (msg_id, frames)."""
        msg = self.session.msg(msg_type, content)
        frames = self.session.serialize(msg)
        return msg["header"]["msg_id"].encode(), frames

    def execute_frames(self, code: str, *, store_history: bool = False) -> tuple[bytes, list[bytes]]:
        return self.request_frames(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": store_history,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    def wait_reply(self, sock: zmq.Socket[bytes], msg_id: bytes, timeout: float) -> list[bytes] | None:
        """Wait for the reply to ``msg_id`` on ``sock``, draining iopub meanwhile."""
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.iopub, zmq.POLLIN)
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            events = dict(poller.poll(max(1, int(left * 1000))))
            if self.iopub in events:
                self.drain_iopub()
            if sock in events:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if msg_id in parts(frames)[1]:
                        return frames
        return None

    def drain_iopub(self, keep: Callable[[list[bytes]], None] | None = None) -> int:
        """Read all that iopub holds now; remembers which requests went idle."""
        count = 0
        while True:
            try:
                frames = self.iopub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return count
            count += 1
            header, parent, content = parts(frames)
            if b"status" in header and b"idle" in content:
                self._idle.add(json.loads(parent).get("msg_id", "").encode())
            if keep is not None:
                keep(frames)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until kernel_info replies and iopub delivers. Returns seconds to the first reply.

        iopub is live once any message reached it (the status of a kernel_info,
        a JEP 65 welcome); kernel_info is asked again until one does. Not every
        kernel publishes a status for every kernel_info (async-kernel does for
        the first ones only), so any message counts, whenever it came.
        """
        msg_id, frames = self.request_frames("kernel_info_request", {})
        self.shell.send_multipart(frames)
        seen = 0
        poller = zmq.Poller()
        poller.register(self.shell, zmq.POLLIN)
        poller.register(self.iopub, zmq.POLLIN)
        deadline = time.perf_counter() + timeout
        first: float | None = None
        while (left := deadline - time.perf_counter()) > 0:
            events = dict(poller.poll(max(1, int(min(left, 0.3) * 1000))))
            if self.iopub in events:
                seen += self.drain_iopub()
            if self.shell in events:
                with suppress(zmq.Again):
                    while True:
                        reply = self.shell.recv_multipart(zmq.NOBLOCK)
                        if first is None and msg_id in parts(reply)[1]:
                            first = time.perf_counter() - self.started_at
            if first is not None and seen:
                time.sleep(0.05)
                self.drain_iopub()
                return first
            if first is not None and not events:
                # Answered, but iopub has not delivered yet: ask again.
                _, frames = self.request_frames("kernel_info_request", {})
                self.shell.send_multipart(frames)
        if first is None:
            raise RuntimeError(f"{self.kind}: no kernel_info_reply within {timeout:.0f}s")
        raise RuntimeError(f"{self.kind}: iopub never delivered a message")

    def execute(self, code: str, timeout: float = 60.0) -> None:
        """Run ``code`` and wait for its reply and idle (bounded); for setup, not timing."""
        msg_id, frames = self.execute_frames(code)
        self.shell.send_multipart(frames)
        reply = self.wait_reply(self.shell, msg_id, timeout)
        if reply is None:
            raise RuntimeError(f"{self.kind}: no execute_reply for setup code")
        content = json.loads(parts(reply)[2])
        if content.get("status") != "ok":
            raise RuntimeError(f"{self.kind}: setup code failed: {content.get('evalue')}")
        self.wait_idle(msg_id, 2.0)

    def wait_idle(self, msg_id: bytes, timeout: float) -> bool:
        """Until the idle status for ``msg_id`` arrives (or was already drained)."""
        deadline = time.perf_counter() + timeout
        while msg_id not in self._idle:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.iopub.poll(max(1, int(left * 1000))):
                return False
            self.drain_iopub()
        self._idle.discard(msg_id)
        return True

    def decode(self, frames: list[bytes]) -> dict[str, Any]:
        """Decode and verify (HMAC) one received message with jupyter_client's Session."""
        _, msg_list = self.session.feed_identities(frames)
        message: dict[str, Any] = self.session.deserialize(msg_list, content=True)
        return message

    def rss_status(self) -> dict[str, int]:
        """VmRSS and VmHWM of the kernel process, in kB."""
        out: dict[str, int] = {}
        if self.pid is None:
            return out
        with suppress(OSError), open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
        return out


@contextmanager
def running_kernel(kind: str, *, encrypted: bool = False) -> Iterator[KernelHandle]:
    handle = KernelHandle(kind, encrypted=encrypted)
    try:
        handle.start()
        handle.wait_ready()
        yield handle
    finally:
        handle.close()


def collect_run(
    handle: KernelHandle,
    code: str,
    *,
    is_interesting: Callable[[list[bytes]], bool],
    enough: Callable[[], bool],
    on_message: Callable[[list[bytes], float], None] | None = None,
    quiet: float = 3.0,
    timeout: float = 300.0,
    silence: float = 60.0,
) -> dict[str, float | bool | None]:
    """Send ``code`` and read iopub as fast as possible until done; times are perf_counter.

    Done means: the execute_reply arrived and either ``enough()`` is true and the
    idle arrived, or nothing interesting arrived for ``quiet`` seconds (a kernel
    that dropped messages, or its idle). Given up: after ``timeout`` seconds, or
    after ``silence`` seconds in which nothing at all arrived (a wedged kernel).
    Nothing is decoded here.
    """
    msg_id, frames = handle.execute_frames(code)
    poller = zmq.Poller()
    poller.register(handle.iopub, zmq.POLLIN)
    poller.register(handle.shell, zmq.POLLIN)
    iopub, shell = handle.iopub, handle.shell
    reply_at: float | None = None
    idle_at: float | None = None
    last_at: float | None = None
    reply_ok = True
    reply_error = ""
    t0 = time.perf_counter()
    heard_at = t0
    shell.send_multipart(frames)
    while True:
        now = time.perf_counter()
        if reply_at is not None and idle_at is not None and enough():
            break
        if reply_at is not None and now - max(last_at or 0.0, idle_at or 0.0, reply_at) > quiet:
            break
        if now - t0 > timeout or now - heard_at > silence:
            break
        events = dict(poller.poll(50))
        if events:
            heard_at = time.perf_counter()
        if iopub in events:
            while True:
                try:
                    message = iopub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.perf_counter()
                if is_interesting(message):
                    last_at = now
                    if on_message is not None:
                        on_message(message, now)
                elif idle_at is None and is_idle_for(message, msg_id):
                    idle_at = now
        if shell in events:
            with suppress(zmq.Again):
                reply = shell.recv_multipart(zmq.NOBLOCK)
                if msg_id in parts(reply)[1]:
                    reply_at = time.perf_counter()
                    reply_ok = b'"ok"' in parts(reply)[2]
                    reply_error = parts(reply)[2][:300].decode(errors="replace")
    if reply_at is not None and not reply_ok:
        raise RuntimeError(f"{handle.kind}: the benchmark cell failed: {reply_error}")
    if reply_at is None and last_at is None:
        # A kernel that answers nothing at all has no figure to give (async-kernel,
        # once a flood of thread output has wedged it).
        waited = time.perf_counter() - t0
        raise RuntimeError(f"{handle.kind}: no reply and no output in {waited:.0f} s")
    return {
        "sent": t0,
        "reply": reply_at,
        "idle": idle_at,
        "last": last_at,
        "reply_ok": reply_ok,
        "timed_out": time.perf_counter() - t0 > timeout,
    }


# -- the host ---------------------------------------------------------------------------


def _fixed_work() -> None:
    """The same pure Python every time: dict inserts, a repr, a hash; no I/O, no allocation
    that outlives it."""
    table: dict[str, int] = {}
    for i in range(2000):
        table[str(i)] = i * 2
    hashlib.sha256(repr(table).encode()).hexdigest()


def host_speed(tries: int = 9) -> float:
    """Microseconds ``_fixed_work`` takes on this machine now: the median of ``tries``.

    This project's 2-core VM ran the same Python at two speeds, 2.2x apart, for
    half a second to several seconds at a time, with no steal in ``/proc/stat``
    (benchmarks/README.md, the eighteenth round): a slow spell that the steal
    figure cannot show. Sampled before each round of a scenario (5-11 ms), it
    shows which rounds ran in one.
    """
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        _fixed_work()
        times.append(time.perf_counter() - started)
    return median(times) * 1e6


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far, from ``/proc/stat``; None elsewhere.

    ``steal`` is time the hypervisor ran something else while this VM had work:
    on a shared 2-core VM it comes in bursts that slow every kernel measured then.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor took between two ``cpu_ticks``."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


# -- statistics -----------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@contextmanager
def profiled(pid: int | None, output: Path | None, rate: int = 200, *, gil: bool = False) -> Iterator[None]:
    """Sample ``pid`` with py-spy (folded stacks, one line per stack) while the block runs.

    ``gil``: only the thread holding the GIL is sampled (py-spy ``--gil``).
    """
    spy = py_spy()
    if pid is None or output is None or spy is None:
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    command += ["--threads", "--nonblocking", "--output", str(output)]
    if gil:
        command.append("--gil")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # let it attach
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def py_spy() -> str | None:
    """The py-spy executable ``--profile`` samples with, if it is installed."""
    return shutil.which("py-spy", path=_scripts_path())


def _scripts_path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
