"""A kernel whose launcher dies shuts itself down instead of living on forever."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

import pytest

TIMEOUT = 30.0

LAUNCHER = """
import os, subprocess, sys
kernel = subprocess.Popen(
    [sys.executable, "-m", "threadline", "--ip", "127.0.0.1"],
    env={**os.environ, "JPY_PARENT_PID": str(os.getpid())},
    stdout=subprocess.DEVNULL, text=True,
    # Only read when needed: a kernel writing into the pipe of a dead launcher
    # would die of the broken pipe, not of being orphaned.
    stderr=subprocess.PIPE if sys.argv[1] == "after-start" else subprocess.DEVNULL,
)
if sys.argv[1] == "after-start":
    kernel.stderr.readline()  # "threadline: connect with --existing ...": it is up
print(kernel.pid, flush=True)
sys.stdin.read()  # until the test kills us
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
@pytest.mark.parametrize("when", ["while-starting", "after-start"])
def test_kernel_exits_when_its_launcher_is_killed(when: str) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, when], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert launcher.stdout is not None
    kernel_pid = int(launcher.stdout.readline())
    watch = os.pidfd_open(kernel_pid)
    try:
        # Alive while its launcher lives: the pidfd is not readable yet. Killed
        # "while-starting", the kernel is orphaned before it starts watching; it
        # must notice that too.
        assert select.select([watch], [], [], 0)[0] == []
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(TIMEOUT)
        # The kernel notices it is orphaned and exits by itself.
        readable, _, _ = select.select([watch], [], [], TIMEOUT)
        assert readable == [watch], "the orphaned kernel did not exit"
    finally:
        os.close(watch)
        if launcher.stdin is not None:
            launcher.stdin.close()
        if launcher.stdout is not None:
            launcher.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(kernel_pid, signal.SIGKILL)
