"""jupyter console, a real front end, drives a threadline kernel through a terminal."""

from __future__ import annotations

import os
from pathlib import Path

import pexpect

from tests.kernel_helpers import TIMEOUT

JUPYTER = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "jupyter")


def test_console_runs_code_and_exits() -> None:
    console = pexpect.spawn(
        JUPYTER,
        ["console", "--kernel", "threadline", "--simple-prompt"],
        env=dict(os.environ),  # the private JUPYTER_PATH etc. set up by conftest
        encoding="utf-8",
        timeout=TIMEOUT * 2,
        dimensions=(40, 200),
    )
    try:
        console.expect(r"threadline")  # the kernel's banner
        console.expect(r"In \[1\]: ")
        console.sendline("print(6*7)")
        console.expect(r"\r?\n42\r?\n")
        console.expect(r"In \[2\]: ")
        console.sendline("6*7 + 1")
        console.expect(r"Out\[2\]: 43")
        console.expect(r"In \[3\]: ")
        console.sendline("exit")
        console.expect(pexpect.EOF)
    finally:
        console.close(force=True)
    assert console.exitstatus == 0, console.before
