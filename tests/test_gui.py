"""GUI event loops (``%gui``, ``%matplotlib tk|qt``) with real Tk and Qt windows on Xvfb.

Each test starts a real kernel with ``DISPLAY`` pointing at a private Xvfb
(started here, on a display number it picks itself). Progress is proven by
messages, never by sleeping: a 10 ms toolkit timer prints when its count
reaches a mark, and the test waits for that line -- which can only come while
the kernel is idle if the toolkit's loop runs in the idle wait. Screenshots go
to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import (
    TIMEOUT,
    collect_until_idle,
    execute,
    get_reply,
    start_kernel,
    stop_kernel,
    wait_for_exit,
    wait_for_iopub,
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
#: The colour of the test windows, looked for in the screenshots.
MAGENTA = b"\xff\x00\xff"


def _has_tkinter() -> bool:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


def _has_pyside6() -> bool:
    try:
        import PySide6.QtCore  # noqa: F401
    except ImportError:
        return False
    return True


needs_tk = pytest.mark.skipif(not _has_tkinter(), reason="this Python has no tkinter (_tkinter not built)")
needs_qt = pytest.mark.skipif(not _has_pyside6(), reason="PySide6 is not installed (the test extra has it)")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb; its display name (``:N``). Xvfb picks a free N and reports it when ready."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (python3 dev.py test installs it as root on Debian)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as ready:
            number = ready.readline().strip()  # written once the server accepts connections
        if not number:
            pytest.fail(f"Xvfb did not start (exit code {server.wait(TIMEOUT)})")
        yield f":{number.decode()}"
    finally:
        server.terminate()
        server.wait(TIMEOUT)


@contextmanager
def kernel_with(display: str | None) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A kernel whose environment has ``DISPLAY=display`` (no display at all for None)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display is not None:
        env["DISPLAY"] = display
    manager, client = start_kernel(env=env)
    try:
        yield manager, client
    finally:
        stop_kernel(manager, client)


@pytest.fixture
def gui_kc(display: str) -> Iterator[BlockingKernelClient]:
    with kernel_with(display) as (_, client):
        yield client


def ok(client: BlockingKernelClient, code: str) -> str:
    """Run ``code``, require success, return its stdout."""
    run = execute(client, code)
    assert run.content["status"] == "ok", (code, run.content, run.stderr)
    return run.stdout


def last_number(stdout: str) -> int:
    """The number on the last line (timer marks may be printed before it)."""
    return int(stdout.strip().splitlines()[-1])


def wait_for_line(client: BlockingKernelClient, text: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The stream message carrying ``text`` (from whatever cell it is routed to)."""
    return wait_for_iopub(
        client, lambda m: m["msg_type"] == "stream" and text in m["content"]["text"], timeout=timeout
    )


def screenshot(display: str, name: str) -> bytes:
    """Save the whole screen under test-artifacts/; return its raw RGB bytes."""
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(
        ["import", "-display", display, "-window", "root", str(ARTIFACTS / f"{name}.png")],
        check=True,
        timeout=TIMEOUT,
    )
    raw = subprocess.run(
        ["import", "-display", display, "-window", "root", "-depth", "8", "rgb:-"],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    ).stdout
    return raw


def magenta_pixels(rgb: bytes) -> int:
    return sum(1 for i in range(0, len(rgb) - 2, 3) if rgb[i : i + 3] == MAGENTA)


# Kernel-side code: a 10 ms timer whose callback counts and announces marks.
TICKER = """
ticks = 0
def tick():
    global ticks
    ticks += 1
    if ticks in (50, 100):
        print(f"ticks reached {ticks}")
"""

TK_WINDOW = (
    TICKER
    + """
import tkinter
root = tkinter.Tk()
root.title("threadline tk test")
root.geometry("300x200+20+20")
root.configure(background="#ff00ff")
def tk_tick():
    tick()
    root.after(10, tk_tick)
root.after(10, tk_tick)
"""
)

QT_WINDOW = (
    TICKER
    + """
from PySide6 import QtCore, QtWidgets
window = QtWidgets.QLabel("threadline qt test")
window.setStyleSheet("background-color: #ff00ff")
window.setGeometry(20, 20, 300, 200)
window.show()
timer = QtCore.QTimer()
timer.timeout.connect(tick)
timer.start(10)
"""
)


def check_loop_runs_while_idle(client: BlockingKernelClient, display: str, name: str, is_shown: str) -> None:
    """The timer ticks while the kernel is idle, cells run between, the window is on screen."""
    wait_for_line(client, "ticks reached 50")
    # Cells run between the ticks, and the ticks go on after them.
    counts = [last_number(ok(client, "print(ticks)")) for _ in range(3)]
    assert counts == sorted(counts) and counts[0] >= 50
    wait_for_line(client, "ticks reached 100")
    assert ok(client, f"print({is_shown})").strip().endswith("True")
    assert magenta_pixels(screenshot(display, name)) > 10_000  # of 60,000 (300 x 200)


@needs_tk
def test_tk_timer_ticks_and_window_shows_while_idle(gui_kc: BlockingKernelClient, display: str) -> None:
    ok(gui_kc, "%gui tk")
    ok(gui_kc, TK_WINDOW)
    check_loop_runs_while_idle(gui_kc, display, "gui-tk", "bool(root.winfo_viewable())")


@needs_qt
def test_qt_timer_ticks_and_window_shows_while_idle(gui_kc: BlockingKernelClient, display: str) -> None:
    ok(gui_kc, "%gui qt")
    ok(gui_kc, QT_WINDOW)
    check_loop_runs_while_idle(
        gui_kc, display, "gui-qt", "window.isVisible() and window.windowHandle().isExposed()"
    )


@needs_tk
def test_gui_off_stops_the_loop_and_awaiting_cells_keep_it(gui_kc: BlockingKernelClient) -> None:
    """While a cell awaits, the toolkit runs too (the wait is the loop's); ``%gui`` stops it."""
    ok(gui_kc, "%gui tk")
    ok(gui_kc, TK_WINDOW)
    wait_for_line(gui_kc, "ticks reached 50")
    grew = ok(
        gui_kc,
        "import asyncio\nbefore = ticks\nawait asyncio.sleep(0.3)  # noqa: sleep-ok\nprint(ticks - before)",
    )
    assert last_number(grew) > 0
    ok(gui_kc, "%gui")
    assert ok(gui_kc, "import threadline.gui\nprint(threadline.gui.active())").strip() == "None"
    still = ok(gui_kc, "before = ticks\nawait asyncio.sleep(0.3)  # noqa: sleep-ok\nprint(ticks - before)")
    assert last_number(still) == 0
    ok(gui_kc, "%gui tk")  # and on again
    grew = ok(gui_kc, "before = ticks\nawait asyncio.sleep(0.3)  # noqa: sleep-ok\nprint(ticks - before)")
    assert last_number(grew) > 0


@needs_tk
def test_thread_output_still_lands_in_its_cell(gui_kc: BlockingKernelClient) -> None:
    ok(gui_kc, "%gui tk")
    started = execute(
        gui_kc,
        "import threading\ngo = threading.Event()\n"
        "threading.Thread(target=lambda: (go.wait(), print('from the thread'))).start()",
    )
    ok(gui_kc, TK_WINDOW)
    wait_for_line(gui_kc, "ticks reached 50")
    ok(gui_kc, "go.set()")
    line = wait_for_line(gui_kc, "from the thread")
    assert line["parent_header"]["msg_id"] == started.reply["parent_header"]["msg_id"]


@needs_tk
def test_tk_callback_errors_and_tasks(gui_kc: BlockingKernelClient) -> None:
    """A Tk callback's traceback is shown (in the latest cell); a task it creates runs at once."""
    ok(gui_kc, "%gui tk")
    ok(gui_kc, "import asyncio, tkinter\nroot = tkinter.Tk()")
    cell = execute(gui_kc, "root.after(20, lambda: 1 / 0)")
    error = wait_for_line(gui_kc, "ZeroDivisionError")
    assert error["content"]["name"] == "stderr"
    assert error["parent_header"]["msg_id"] == cell.reply["parent_header"]["msg_id"]
    # No timer ticks here: only the task's own wake-up can get it run before the next request.
    ok(
        gui_kc,
        "async def job():\n    print('task from a Tk callback ran')\n"
        "root.after(20, lambda: asyncio.ensure_future(job()))",
    )
    wait_for_line(gui_kc, "task from a Tk callback ran")


@needs_qt
def test_qt_slot_error_shows_its_traceback(gui_kc: BlockingKernelClient) -> None:
    ok(gui_kc, "%gui qt")
    cell = execute(
        gui_kc,
        "from PySide6 import QtCore\ndef boom():\n    raise ValueError('boom in a slot')\n"
        "QtCore.QTimer.singleShot(20, boom)",
    )
    error = wait_for_line(gui_kc, "ValueError: boom in a slot")
    assert error["parent_header"]["msg_id"] == cell.reply["parent_header"]["msg_id"]
    assert ok(gui_kc, "print(1 + 1)").strip() == "2"


MATPLOTLIB_FIGURE = (
    TICKER
    + """
import matplotlib
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
fig.patch.set_facecolor("#ff00ff")
ax.plot([1, 3, 2])
plt.show(block=False)
mpl_timer = fig.canvas.new_timer(interval=10)
mpl_timer.add_callback(tick)
mpl_timer.start()
print(matplotlib.get_backend().lower())
"""
)


@needs_tk
def test_matplotlib_tk(gui_kc: BlockingKernelClient, display: str) -> None:
    assert ok(gui_kc, "%matplotlib tk\n" + MATPLOTLIB_FIGURE).strip() == "tkagg"
    shown = ok(
        gui_kc, "import threadline.gui\nprint(threadline.gui.active(), get_ipython().active_eventloop)"
    )
    assert shown.split() == ["tk", "tk"]
    check_loop_runs_while_idle(
        gui_kc, display, "gui-matplotlib-tk", "bool(fig.canvas.manager.window.winfo_viewable())"
    )


@needs_qt
def test_matplotlib_qt(gui_kc: BlockingKernelClient, display: str) -> None:
    assert ok(gui_kc, "%matplotlib qt\n" + MATPLOTLIB_FIGURE).strip() == "qtagg"
    assert ok(gui_kc, "import threadline.gui\nprint(threadline.gui.active())").strip() == "qt"
    check_loop_runs_while_idle(gui_kc, display, "gui-matplotlib-qt", "fig.canvas.manager.window.isVisible()")


@needs_tk
def test_interrupt_and_shutdown_with_a_gui_on(display: str) -> None:
    with kernel_with(display) as (manager, client):
        ok(client, "%gui tk")
        ok(client, TK_WINDOW)
        wait_for_line(client, "ticks reached 50")
        for code in (
            "import asyncio\nawait asyncio.sleep(60)",  # cell code, in the kernel (noqa: sleep-ok)
            "import time\ntime.sleep(60)",  # cell code, in the kernel (noqa: sleep-ok)
        ):
            msg_id = client.execute(code)
            wait_for_iopub(
                client,
                lambda m, msg_id=msg_id: (
                    m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == msg_id
                ),
            )
            manager.interrupt_kernel()
            reply = get_reply(client, msg_id)
            assert reply["content"]["ename"] == "KeyboardInterrupt", code
        wait_for_line(client, "ticks reached 100")
        client.shutdown()
        assert wait_for_exit(manager) == 0


@needs_tk
def test_subshell_runs_while_the_gui_loop_is_on(gui_kc: BlockingKernelClient) -> None:
    from tests.test_subshells import create_subshell, execute_in

    ok(gui_kc, "%gui tk")
    ok(gui_kc, TK_WINDOW)
    subshell = create_subshell(gui_kc)
    msg_id = execute_in(gui_kc, subshell, "print('from the subshell', ticks >= 0)")
    messages = collect_until_idle(gui_kc, msg_id)
    assert "from the subshell True" in "".join(m["content"].get("text", "") for m in messages)
    assert get_reply(gui_kc, msg_id)["content"]["status"] == "ok"
    # Toolkits belong to the main thread: a subshell cannot switch them.
    msg_id = execute_in(gui_kc, subshell, "%gui qt")
    refusal = "".join(m["content"].get("text", "") for m in collect_until_idle(gui_kc, msg_id))
    assert "only be enabled from the main thread" in refusal
    assert ok(gui_kc, "import threadline.gui\nprint(threadline.gui.active())").strip() == "tk"


@pytest.mark.parametrize("toolkit", ["tk", "qt"])
def test_without_a_display_gui_says_so_and_the_kernel_lives(toolkit: str) -> None:
    with kernel_with(None) as (_, client):
        run = execute(client, f"%gui {toolkit}")
        assert "no display" in run.stderr and "$DISPLAY" in run.stderr, run.stderr
        assert ok(client, "import threadline.gui\nprint(threadline.gui.active())").strip() == "None"
        failed = execute(client, f"%matplotlib {toolkit}")
        assert failed.content["status"] == "error"
        assert ok(client, "print(1 + 1)").strip() == "2"


@needs_tk
def test_a_bound_callback_reports_in_its_own_cell(gui_kc: BlockingKernelClient) -> None:
    """Unbound callbacks report in the latest cell; ``threadline.bind`` pins one to its cell."""
    ok(gui_kc, "%gui tk")
    ok(gui_kc, "import threadline, tkinter\nroot = tkinter.Tk()")
    setup = execute(gui_kc, "pinned = threadline.bind(lambda: print('pinned to its cell'))")
    later = execute(gui_kc, "root.after(20, pinned)\nroot.after(20, lambda: print('in the latest cell'))")
    pinned = wait_for_line(gui_kc, "pinned to its cell")
    assert pinned["parent_header"]["msg_id"] == setup.reply["parent_header"]["msg_id"]
    latest = wait_for_line(gui_kc, "in the latest cell")
    assert latest["parent_header"]["msg_id"] == later.reply["parent_header"]["msg_id"]


PLAIN_SELECT_TOOLKIT = """
import asyncio, select
import threadline.gui

waits = 0
def plain_select(context):
    global waits
    waits += 1
    select.select([context.fileno()], [], [], context.timeout)

threadline.gui.register("plainselect", plain_select, needs_display=False)
"""


def test_a_registered_toolkit_runs_in_the_idle_wait(kc: BlockingKernelClient) -> None:
    """``threadline.gui.register``: a toolkit threadline does not know, enabled with ``%gui``."""
    ok(kc, PLAIN_SELECT_TOOLKIT)
    ok(kc, "%gui plainselect")
    assert ok(kc, "print(threadline.gui.active())").strip() == "plainselect"
    # Requests wake it (these cells are answered), and so do asyncio timers (the timeout).
    ok(kc, "await asyncio.sleep(0.05)  # noqa: sleep-ok")
    assert last_number(ok(kc, "print(waits)")) >= 2
    ok(kc, "%gui")
    before = last_number(ok(kc, "print(waits)"))
    assert last_number(ok(kc, "print(waits)")) == before


def test_a_failing_hook_is_turned_off_and_shown(kc: BlockingKernelClient) -> None:
    ok(
        kc,
        "import threadline.gui\n"
        "def broken(context):\n    raise RuntimeError('the hook broke')\n"
        "threadline.gui.register('broken', broken, needs_display=False)\n"
        "def refuse():\n    raise threadline.gui.GuiUnavailable('not on this machine')\n"
        "threadline.gui.register('refused', broken, prepare=refuse, needs_display=False)",
    )
    refused = execute(kc, "%gui refused")
    assert "not on this machine" in refused.stderr
    assert ok(kc, "print(threadline.gui.active())").strip() == "None"
    cell = execute(kc, "%gui broken")
    report = wait_for_line(kc, "RuntimeError: the hook broke")  # the traceback, after the notice
    assert report["parent_header"]["msg_id"] == cell.reply["parent_header"]["msg_id"]
    assert "the broken event loop failed and is off" in report["content"]["text"]
    assert ok(kc, "print(threadline.gui.active())").strip() == "None"


@needs_tk
def test_the_example_notebook_opens_its_windows(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/gui_windows.ipynb with a display (tests/test_examples.py runs it without one)."""
    from dev import execute_notebook

    monkeypatch.setenv("DISPLAY", display)
    notebook, _ = execute_notebook(ROOT / "examples" / "gui_windows.ipynb", timeout=60)
    cells = {cell.id: cell for cell in notebook.cells}

    def stdout(cell_id: str) -> str:
        return "".join(o.get("text", "") for o in cells[cell_id].outputs)

    assert stdout("display") == f"display: {display}\n"
    assert "window still there: True" in stdout("tk-wait")
    assert "backend: tkagg\nfigure window open: True\n" in stdout("mpl")
    assert stdout("off") == "GUI loop now: None\n"


@needs_tk
@pytest.mark.parametrize("handling", ["concurrent", "serial"])
def test_widgets_answer_with_a_gui_on(gui_kc: BlockingKernelClient, handling: str) -> None:
    """A widget update from the front end reaches the kernel (serial: through the main loop's wait)."""
    from tests.test_widgets import send_comm_msg

    ok(gui_kc, "%gui tk")
    ok(gui_kc, TK_WINDOW)
    slider_id = ok(
        gui_kc,
        f"import ipywidgets, threadline\nthreadline.set_comm_handling({handling!r})\n"
        "slider = ipywidgets.IntSlider()\n"
        "slider.observe(lambda change: print('slider moved to', change['new']), 'value')\n"
        "print(slider.model_id)",
    ).strip()
    wait_for_line(gui_kc, "ticks reached 50")
    send_comm_msg(gui_kc, slider_id, {"method": "update", "state": {"value": 7}, "buffer_paths": []})
    wait_for_line(gui_kc, "slider moved to 7")
    shown = ok(gui_kc, "print(slider.value, ticks >= 50)")
    assert shown.strip().endswith("7 True"), shown


def test_matplotlib_widget_needs_no_desktop_loop(kc: BlockingKernelClient) -> None:
    """``%matplotlib widget`` (ipympl) draws through comms: no toolkit loop, no display needed."""
    shown = ok(
        kc,
        "%matplotlib widget\nimport matplotlib, threadline.gui\n"
        "print(matplotlib.get_backend(), threadline.gui.active())",
    )
    assert shown.split() == ["widget", "None"], shown  # matplotlib names the ipympl backend "widget"


@needs_tk
def test_gui_from_the_command_line(display: str) -> None:
    """``--gui tk`` (ipykernel's option) turns the loop on at start."""
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env["DISPLAY"] = display
    manager, client = start_kernel(env=env, extra_arguments=["--gui=tk"])
    try:
        assert ok(client, "import threadline.gui\nprint(threadline.gui.active())").strip() == "tk"
    finally:
        stop_kernel(manager, client)


CALLBACK_CELL = """\
def on_timer():
    answer = 6 * 7
    print('callback done', answer)

root.after(20, on_timer)
"""


@needs_tk
def test_debugger_stops_in_a_toolkit_callback(gui_kc: BlockingKernelClient) -> None:
    """A breakpoint in a Tk callback stops the main thread in the idle wait; continuing resumes it."""
    from tests.test_debugger import DebugClient

    ok(gui_kc, "%gui tk")
    ok(gui_kc, "import tkinter\nroot = tkinter.Tk()")
    dbg = DebugClient(gui_kc)
    dbg.start()
    path = dbg.set_breakpoints(CALLBACK_CELL, 2)
    dbg.ok("configurationDone")
    ok(gui_kc, CALLBACK_CELL)  # the cell ends; the callback runs 20 ms later, while idle
    thread_id = dbg.event("stopped", reason="breakpoint")["body"]["threadId"]
    frame = dbg.top_frame(thread_id)
    assert (frame["name"], frame["line"], frame["source"]["path"]) == ("on_timer", 2, path)
    dbg.ok("continue", {"threadId": thread_id})
    wait_for_line(gui_kc, "callback done 42")
    assert ok(gui_kc, "print(1 + 1)").strip() == "2"


@needs_qt
def test_qt_with_a_display_where_no_server_answers_says_so() -> None:
    """Qt aborts the process when it cannot connect; ``%gui qt`` refuses first."""
    number = next(n for n in range(990, 1100) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    with kernel_with(f":{number}") as (_, client):
        run = execute(client, "%gui qt")
        assert f"no X server answers at DISPLAY=:{number}" in run.stderr, run.stderr
        assert ok(client, "import threadline.gui\nprint(threadline.gui.active())").strip() == "None"
