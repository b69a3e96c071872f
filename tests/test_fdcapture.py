"""C-level output reaches the cell that wrote it, found without giving up the GIL.

``FdCapture.sync`` runs before every reply; it flushes C's ``stdout`` only when
glibc's buffer holds text (``c_stdio_pending``) and reads the pipe only when
``poll`` says it is readable (``has_input``). These tests show that the cheap
looks do not miss anything: text C left in its stdio buffer, and text written
straight to the descriptor, are both in the cell's output before its idle.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from typing import cast

import pytest
from jupyter_client.blocking import BlockingKernelClient

from tests.kernel_helpers import execute
from threadline.shell.fdcapture import FdCapture
from threadline.shell.peek import c_stdio_pending, flush_c_stdio, has_input
from threadline.shell.streams import OutStream

GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

#: Makes C's stdout fully buffered (PYTHONUNBUFFERED, set in some environments,
#: makes it unbuffered), so that printf's text waits in the buffer.
FULLY_BUFFERED = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None)\n"
    "c_stdout = ctypes.c_void_p.in_dll(libc, 'stdout')\n"
    "libc.fflush(None)\n"
    "c_buffer = ctypes.create_string_buffer(4096)\n"  # glibc keeps a 1-byte buffer if given none
    "libc.setvbuf(c_stdout, c_buffer, 0, 4096)\n"  # 0: _IOFBF
)


@pytest.mark.skipif(not GLIBC, reason="the stdio buffer is read through glibc's FILE layout")
def test_c_stdio_pending_sees_what_printf_left_in_the_buffer() -> None:
    scope: dict[str, object] = {}  # keeps the buffer alive
    exec(FULLY_BUFFERED, scope)
    libc = ctypes.CDLL(None)
    assert not c_stdio_pending()
    libc.printf(b"%s", b"")  # nothing buffered yet
    assert not c_stdio_pending()
    libc.printf(b"%s", b"left in C's buffer, no newline")
    assert c_stdio_pending()
    flush_c_stdio()
    assert not c_stdio_pending()
    scope["libc"].setvbuf(scope["c_stdout"], None, 2, 0)  # type: ignore[attr-defined]  # 2: _IONBF


def test_has_input_answers_for_a_pipe() -> None:
    read_end, write_end = os.pipe()
    try:
        assert not has_input(read_end)
        os.write(write_end, b"x")
        assert has_input(read_end)
        assert os.read(read_end, 1) == b"x"
        assert not has_input(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_c_output_is_in_its_cell_before_the_idle(kc: BlockingKernelClient) -> None:
    run = execute(
        kc,
        FULLY_BUFFERED + "import os\n"
        "libc.printf(b'%s', b'buffered by C stdio\\n')\n"  # waits in C's buffer
        "os.write(1, b'straight to fd 1\\n')\n"
        "None",
    )
    assert "buffered by C stdio\n" in run.stdout
    assert "straight to fd 1\n" in run.stdout


class _Text:
    """Where the capture's text goes, in place of an ``OutStream`` (which needs a kernel)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)


def test_close_delivers_the_pipe_without_waiting_for_a_process_that_outlives_the_kernel() -> None:
    """A child that holds the pipe's write end past the kernel's end (multiprocessing's
    resource tracker holds stderr until its parent exits) does not hold up ``close``:
    what it wrote before is delivered, and ``close`` returns while it still runs."""
    fd = os.dup(2)  # a descriptor of the test's own to capture; fd 2 stays as it is
    text = _Text()
    capture = FdCapture(fd, cast(OutStream, text))
    code = f"import os, sys; os.write({fd}, b'before close\\n'); print(flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        pass_fds=(fd,),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    closed = threading.Event()
    try:
        assert child.stdout.readline() == b"\n"  # it has written, and lives on
        threading.Thread(target=lambda: (capture.close(timeout=60), closed.set()), daemon=True).start()
        assert closed.wait(10), "close waited for a process that still holds the pipe"
        assert child.poll() is None
        assert text.text == "before close\n"
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
        capture.original.close()
        os.close(fd)
