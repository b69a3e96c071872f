"""threadline's kernel provisioner: the kernel's ports listen before its process exists.

The central test sends a request, a subscription and a heartbeat ping from
clients that connected *before the kernel process was spawned*, with an hour
between reconnect attempts (so only their first connection can work): the
kernel must answer all three, on the very sockets the provisioner opened
(checked by their inode in the kernel's ``/proc/PID/fd``). Then: the client
keeps no descriptor, a restart listens again, the kernel's children do not
see the handed-over variable, a bad hand-over falls back to the kernel's own
listeners, and ``threadline install`` names the provisioner only where
Jupyter can load it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session as JupyterSession

from tests.kernel_helpers import TIMEOUT, execute
from tests.test_listening import free_ports
from threadline.app import kernel_spec, provisioner_by_default, provisioner_installed
from threadline.io.listening import CHANNELS, INHERITED, listen_early, listen_for
from threadline.provisioner import NAME, ThreadlineProvisioner

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="the hand-over is POSIX only (elsewhere the kernel binds)"),
    pytest.mark.skipif(not provisioner_installed(), reason="threadline's entry point is not installed here"),
]

#: The inode checks read /proc/PID/fd (Linux).
needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (open descriptors)")


@pytest.fixture
def provisioned_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that names the provisioner, in a data dir of its own."""
    spec_dir = tmp_path / "kernels" / "tl-provisioned"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_spec(provisioner=True)))
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path}{os.pathsep}{os.environ.get('JUPYTER_PATH', '')}")
    return "tl-provisioned"


@pytest.fixture
def manager(provisioned_spec: str) -> Iterator[KernelManager]:
    km = KernelManager(kernel_name=provisioned_spec)
    yield km
    if km.has_kernel:
        km.shutdown_kernel(now=True)
    km.cleanup_resources()


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target)
    return found


def inode(fd: int) -> str:
    return f"socket:[{os.fstat(fd).st_ino}]"


@needs_proc
def test_clients_that_connected_before_the_kernel_existed_are_answered(
    manager: KernelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = zmq.Context()
    clients: list[zmq.Socket[bytes]] = []
    handed_over: dict[str, str] = {}
    sent: dict[str, str] = {}
    sessions: list[JupyterSession] = []
    launch = ThreadlineProvisioner.launch_kernel

    async def connect_first(self: ThreadlineProvisioner, cmd: list[str], **kwargs: Any) -> Any:
        # The ports listen; the kernel's process does not exist yet.
        handed_over.update({channel: inode(fd) for channel, fd in self._listeners.items()})
        info = self.connection_info

        def client(kind: int, channel: str) -> zmq.Socket[bytes]:
            sock: zmq.Socket[bytes] = context.socket(kind)
            sock.linger = 0
            sock.setsockopt(zmq.RECONNECT_IVL, 3_600_000)  # only the first connection can work
            sock.connect(f"tcp://{info['ip']}:{info[f'{channel}_port']}")
            clients.append(sock)
            return sock

        shell, iopub, ping = client(zmq.DEALER, "shell"), client(zmq.SUB, "iopub"), client(zmq.REQ, "hb")
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        key = info["key"]
        session = JupyterSession(key=key if isinstance(key, bytes) else key.encode(), username="test")
        sent["msg_id"] = session.send(shell, "kernel_info_request", {})["header"]["msg_id"]
        ping.send(b"ping")
        sessions.append(session)
        return await launch(self, cmd, **kwargs)

    monkeypatch.setattr(ThreadlineProvisioner, "launch_kernel", connect_first)
    try:
        manager.start_kernel()
        assert isinstance(manager.provisioner, ThreadlineProvisioner)
        assert sorted(handed_over) == sorted(CHANNELS)
        shell, iopub, ping = clients
        assert shell.poll(TIMEOUT * 1000), "no kernel_info_reply on the first connection"
        _, reply = sessions[0].recv(shell)
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["parent_header"]["msg_id"] == sent["msg_id"]
        assert ping.poll(TIMEOUT * 1000), "the heartbeat did not echo the first ping"
        assert ping.recv() == b"ping"
        assert iopub.poll(TIMEOUT * 1000), "nothing on iopub for the first subscriber"
        # The kernel took over the very sockets the provisioner opened.
        pid = manager.provisioner.pid
        assert set(handed_over.values()) <= socket_inodes(pid)
        # And the client keeps none of them.
        assert manager.provisioner._listeners == {}
        assert not set(handed_over.values()) & socket_inodes(os.getpid())
    finally:
        for sock in clients:
            sock.close(linger=0)
        context.term()


def test_a_restarted_kernel_listens_again_and_children_do_not_inherit(manager: KernelManager) -> None:
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=TIMEOUT)
        first = manager.provisioner.pid
        manager.restart_kernel(now=True)
        client.wait_for_ready(timeout=TIMEOUT)
        assert manager.provisioner.pid != first
        assert manager.provisioner._listeners == {}
        probe = (
            "import os, subprocess, sys\n"
            f"name = {INHERITED!r}\n"
            "print(os.environ.get(name))\n"
            "child = 'import os, sys; print(os.environ.get(sys.argv[1]))'\n"
            "done = subprocess.run([sys.executable, '-c', child, name], capture_output=True, text=True)\n"
            "print(done.stdout)"
        )
        result = execute(client, probe)
        assert result.reply["content"]["status"] == "ok"
        assert result.stdout.split() == ["None", "None"]
    finally:
        client.stop_channels()


def connection_file(tmp_path: Path) -> Path:
    ports = dict(zip((f"{channel}_port" for channel in CHANNELS), free_ports(len(CHANNELS)), strict=True))
    path = tmp_path / "kernel.json"
    path.write_text(json.dumps({**ports, "ip": "127.0.0.1", "transport": "tcp", "key": "k"}))
    return path


@needs_proc
@pytest.mark.parametrize("case", ["one-missing", "other-ports", "not-descriptors"])
def test_a_bad_hand_over_is_closed_and_the_kernel_listens_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    path = connection_file(tmp_path)
    ports = json.loads(path.read_text())
    (tmp_path / "other").mkdir()
    if case == "not-descriptors":
        handed: dict[str, int] = {}
        named = "shell=999999,iopub=x"
    else:
        # Listeners on the file's own ports, one of them not named; or all on other ports.
        source = path if case == "one-missing" else connection_file(tmp_path / "other")
        handed = listen_for(json.loads(source.read_text()))
        if case == "one-missing":
            os.close(handed.pop("hb"))
        named = ",".join(f"{channel}={fd}" for channel, fd in handed.items())
    handed_inodes = {inode(fd) for fd in handed.values()}
    monkeypatch.setenv(INHERITED, named)
    listeners = listen_early(str(path))
    try:
        assert INHERITED not in os.environ
        assert not handed_inodes & socket_inodes(os.getpid())  # closed, every one it was told of
        # Its own listeners on the file's ports instead.
        assert sorted(listeners) == sorted(CHANNELS)
        for channel, fd in listeners.items():
            with socket.socket(fileno=os.dup(fd)) as sock:
                assert sock.getsockname() == ("127.0.0.1", ports[f"{channel}_port"])
    finally:
        for fd in listeners.values():
            os.close(fd)


def test_a_right_hand_over_is_taken_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = connection_file(tmp_path)
    handed = listen_for(json.loads(path.read_text()))
    for fd in handed.values():
        os.set_inheritable(fd, True)  # as a spawned process has them
        os.set_blocking(fd, True)
    monkeypatch.setenv(INHERITED, ",".join(f"{c}={fd}" for c, fd in handed.items()))
    listeners = listen_early(str(path))
    try:
        assert listeners == handed
        for fd in listeners.values():
            assert not os.get_inheritable(fd) and not os.get_blocking(fd)
    finally:
        for fd in listeners.values():
            os.close(fd)


def test_install_names_the_provisioner_only_inside_this_environment(tmp_path: Path) -> None:
    assert provisioner_by_default(user=False, prefix=sys.prefix)
    assert not provisioner_by_default(user=True, prefix=None)
    assert not provisioner_by_default(user=False, prefix=str(tmp_path))
    assert not provisioner_by_default(user=False, prefix=None)  # system-wide

    def installed(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "threadline", "install", "--prefix", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        spec: dict[str, Any] = json.loads(
            (tmp_path / "share" / "jupyter" / "kernels" / "threadline" / "kernel.json").read_text()
        )
        return spec["metadata"]

    assert "kernel_provisioner" not in installed()
    assert installed("--provisioner")["kernel_provisioner"] == {"provisioner_name": NAME, "config": {}}
    assert "kernel_provisioner" not in installed("--no-provisioner")


def test_a_wrong_hand_over_closes_only_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = connection_file(tmp_path)
    read_end, write_end = os.pipe()
    try:
        monkeypatch.setenv(INHERITED, f"shell={read_end}")
        listeners = listen_early(str(path))
        assert sorted(listeners) == sorted(CHANNELS)  # its own
        os.fstat(read_end)  # the pipe it was wrongly told of is left open
        for fd in listeners.values():
            os.close(fd)
    finally:
        os.close(read_end)
        os.close(write_end)
