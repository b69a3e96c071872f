"""Interrupts land in the user's code, never inside the kernel's own critical sections."""

from __future__ import annotations

import ast
import os
import re
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    HOLD_UNTIL_INTERRUPTED,
    TIMEOUT,
    execute,
    get_reply_reading_iopub,
    wait_for_iopub,
)

ROUNDS = 25
#: Sleeps in the kernel, to show a poke's EINTR does not cut a sleep short.
SLEEPING_CELL = "import time\nfor _ in range(20):\n    time.sleep(0.005)  # noqa: sleep-ok\nprint('done')"
FLUSHING_FOREVER = "print('go', flush=True)\nwhile True:\n    print('x', end='', flush=True)"


def interrupt_once(manager: KernelManager, kc: BlockingKernelClient, code: str) -> dict[str, Any]:
    """Run ``code`` (which prints first), interrupt it once it has printed; its reply."""
    msg_id = kc.execute(code)
    wait_for_iopub(kc, lambda m: m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id)
    manager.interrupt_kernel()
    return get_reply_reading_iopub(kc, msg_id, timeout=TIMEOUT)


#: Prints without end; on the interrupt, records the frames it passed through
#: (before IPython formats the traceback) and raises it on.
FLUSHING_UNTIL_INTERRUPTED = """
import traceback
try:
    print('go', flush=True)
    while True:
        print('x', end='', flush=True)
except KeyboardInterrupt as interrupt:
    raw_frames = [(f.filename, f.name) for f in traceback.extract_tb(interrupt.__traceback__)]
    raise
"""


def test_interrupting_a_cell_that_lives_in_kernel_code(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """25 interrupts of a cell that spends most of its time flushing streams.

    Each interrupt ends its cell with KeyboardInterrupt (raised in the cell's own
    frame, not in kernel code), and the kernel answers the next cell: no lock is
    ever left held by an interrupt that landed in a critical section. What the
    user sees ends in the cell: the handler's own frame is not shown.
    """
    manager, kc = kernel
    for _ in range(ROUNDS):
        reply = interrupt_once(manager, kc, FLUSHING_UNTIL_INTERRUPTED)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # Where the interrupt landed (the frame before the SIGINT handler's own)
        # is the cell's code or a lock-free wait, never kernel code.
        raw = execute(kc, "import threadline; print(repr((raw_frames[-2:], threadline.__file__)))").stdout
        (landed, handler), kernel_init = ast.literal_eval(raw)
        assert handler[1] == "on_sigint", raw
        assert not landed[0].startswith(os.path.dirname(kernel_init)), raw
        # The traceback shown ends in the cell (which re-raised it).
        frames = [re.sub(r"\x1b\[[0-9;]*m", "", entry) for entry in reply["content"]["traceback"]]
        frames = [entry for entry in frames if entry.lstrip().startswith(("File ", "Cell "))]
        assert len(frames) == 1 and frames[0].startswith("Cell In["), frames
        assert execute(kc, "print('alive')").stdout == "alive\n"


def test_an_interrupts_traceback_ends_in_the_users_code(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """As under ipykernel: the last frame is the user's line, also for %debug and %tb."""
    manager, kc = kernel
    code = (
        "import time\ndef wait():\n    print('go', flush=True)\n    time.sleep(60)  # noqa: sleep-ok\nwait()"
    )
    reply = interrupt_once(manager, kc, code)
    frames = [re.sub(r"\x1b\[[0-9;]*m", "", entry) for entry in reply["content"]["traceback"]]
    frames = [entry for entry in frames if entry.lstrip().startswith(("File ", "Cell "))]
    assert [frame.splitlines()[0] for frame in frames] == [
        "Cell In[1], line 5",
        "Cell In[1], line 4, in wait()",
    ]
    # The stored traceback (what %tb shows and %debug opens) ends there too.
    stored = execute(kc, "import sys, traceback\nprint(traceback.extract_tb(sys.last_traceback)[-1].name)")
    assert stored.stdout == "wait\n"


BLOCKED_MAIN = """
import signal, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
try:
    print("waiting", flush=True)
    threading.Event().wait()
finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
"""


def test_a_sigint_taken_by_another_thread_still_interrupts_the_main_thread(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """The main thread blocks SIGINT and waits; jupyter_client's process-directed
    SIGINT must then be taken by some other thread, whose C-level handler only
    marks it pending -- nothing wakes the main thread's wait. The kernel's
    watch sees the signal on its wake-up fd and pokes the main thread, whose
    Python handler then raises KeyboardInterrupt in the cell.

    The same watch covers the rarer race it was built for (a SIGINT landing on
    the main thread just before it blocks); this test makes the loss certain
    instead of rare: without the watch it times out every time.
    """
    manager, kc = kernel
    for _ in range(3):
        assert interrupt_once(manager, kc, BLOCKED_MAIN)["content"]["ename"] == "KeyboardInterrupt"
    # The pokes interrupted nothing else: the next cells run to the end.
    assert execute(kc, SLEEPING_CELL).stdout == "done\n"
    assert execute(kc, "print('alive')").stdout == "alive\n"


#: Blocks SIGINT, then spends its time in the kernel's own code (a stream flush),
#: where the SIGINT handler does not raise but has SIGINT sent again.
BLOCKED_MAIN_IN_KERNEL_CODE = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
try:
    print("waiting", flush=True)
    while True:
        sys.stdout.flush()
finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
"""


def test_an_interrupt_delivered_again_reaches_a_main_thread_that_blocks_sigint(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """The handler, poked while the main thread runs the kernel's code, asks for the
    interrupt again; sent as SIGINT to the main thread alone, which blocks it, it
    stayed pending for good and the cell ran on (seen once in CI as a timeout of the
    test above; certain with this cell). It goes to the process now (as the kernel's
    own signal: another thread takes it if the main thread blocks that one too,
    and the watch pokes), until the handler lands in the cell's own line."""
    manager, kc = kernel
    for _ in range(3):
        reply = interrupt_once(manager, kc, BLOCKED_MAIN_IN_KERNEL_CODE)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert execute(kc, "print('alive')").stdout == "alive\n"


def test_an_interrupt_before_the_cell_starts_interrupts_it(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """A SIGINT after a cell's execute_input, before its first line: the cell
    fails with KeyboardInterrupt and none of it runs -- a plain cell, an
    awaiting one. (Such a SIGINT used to count as "between cells" and the cell
    then ran to its end.) The interrupt is not kept for later: the next cells
    run normally. The same under ``%autoawait trio``."""
    manager, kc = kernel
    assert execute(kc, HOLD_UNTIL_INTERRUPTED).reply["content"]["status"] == "ok"
    held_cells = (
        "# hold\nran = True",
        "# hold\nimport asyncio\nran = True\nawait asyncio.sleep(60)",  # in the kernel (noqa: sleep-ok)
    )
    for code in held_cells:
        reply = interrupt_once(manager, kc, code)
        assert reply["content"]["ename"] == "KeyboardInterrupt", code
        after = execute(kc, "print('ran' in globals())")
        assert after.stdout == "False\n", code
        # It took its number (the one its execute_input showed), like any failed cell.
        assert after.reply["content"]["execution_count"] == reply["content"]["execution_count"] + 1
    assert execute(kc, "print('alive')").stdout == "alive\n"
    assert execute(kc, SLEEPING_CELL).stdout == "done\n"
    # Under %autoawait trio, an awaiting cell runs under trio.run.
    assert execute(kc, "%autoawait trio").content["status"] == "ok"
    trio_cell = "# hold\nimport trio\nran = True\nawait trio.sleep(60)"  # in the kernel (noqa: sleep-ok)
    reply = interrupt_once(manager, kc, trio_cell)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert execute(kc, "print('ran' in globals())").stdout == "False\n"
