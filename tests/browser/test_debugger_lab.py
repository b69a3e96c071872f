"""JupyterLab's debugger panel on a threadline kernel: a breakpoint set in the gutter stops the cell.

The front end computes the cell's file name itself (Murmur2 of the code, with the
seed and prefix from ``debugInfo``), so this checks that the kernel compiles cells
under the same name. Every wait is on the DOM; nothing sleeps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.browser.conftest import LabServer
from tests.browser.test_lab import KERNEL_START_MS, RUN_MS, expect, write_notebook

pytestmark = pytest.mark.browser

CODE = "def add(a, b):\n    total = a + b\n    return total\n\n\nprint('result', add(10, 5))"


# Not reliable yet, so opt-in (issue #8 allows that, with a note): in roughly one
# full CI run in two, and once in a targeted run, JupyterLab's debugger sidebar
# opened but no debug session ever accepted a gutter click within 120 s, with
# nothing in the kernel's log; every other run passed in ~13 s. The DAP protocol
# itself is covered by tests/test_debugger.py (a full session via jupyter_client).
pytestmark = pytest.mark.skipif(
    os.environ.get("THREADLINE_DEBUGGER_BROWSER_TEST") != "1",
    reason="flaky JupyterLab debugger-panel test; set THREADLINE_DEBUGGER_BROWSER_TEST=1 to run it",
)


def warm_debugpy() -> None:
    """Read debugpy's files once before the page needs them.

    The kernel's first debug session starts debugpy's adapter in a process of
    its own; on a fresh machine (a new venv, a cold file cache) reading its
    hundreds of modules can outlast the page's patience, so the first click in
    the gutter would find no session yet.
    """
    subprocess.run(
        [sys.executable, "-c", "import debugpy, debugpy.adapter, debugpy.server.api"],
        check=True,
        timeout=120,
    )


def test_debugger_panel_stops_at_a_gutter_breakpoint(lab_server: LabServer, page: Any) -> None:
    warm_debugpy()
    write_notebook(lab_server.root_dir / "debug.ipynb", CODE)
    page.goto(lab_server.page_url("debug.ipynb"))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(panel.locator(".jp-KernelName")).to_have_text("Python 3 (threadline)", timeout=KERNEL_START_MS)
    expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_START_MS
    )
    bug = panel.locator("button.jp-DebuggerBugButton, .jp-DebuggerBugButton button").first
    expect(bug).to_be_enabled(timeout=RUN_MS)
    bug.click()
    expect(bug).to_have_attribute("aria-pressed", "true", timeout=RUN_MS)

    cell = panel.locator(".jp-CodeCell").first
    line_two = cell.locator(".cm-gutter.cm-breakpoint-gutter .cm-gutterElement").nth(2)
    breakpoints = page.locator(".jp-DebuggerBreakpoint")
    # The gutter ignores clicks until the debug session has started, which the
    # page does not show: click again (bounded) until the breakpoint is listed.
    # Each click gets 10 s to show up: a click that did register but is listed
    # late must not be toggled off again by the next one (seen under load).
    for _ in range(12):
        line_two.dispatch_event("mousedown")
        try:
            expect(breakpoints).to_have_count(1, timeout=10_000)
            break
        except AssertionError:
            continue
    expect(breakpoints).to_have_count(1)

    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-DebuggerCallstackFrame-name").first).to_have_text("add", timeout=RUN_MS)
    variables = page.locator(".jp-DebuggerVariables-body:not(.lm-mod-hidden)")
    expect(variables).to_contain_text(re.compile(r"\ba\W*10\b"), timeout=RUN_MS)
    expect(variables).to_contain_text(re.compile(r"\bb\W*5\b"), timeout=RUN_MS)

    page.locator("button[title^='Continue']").first.click()
    expect(cell.locator(".jp-OutputArea")).to_have_text("result 15", timeout=RUN_MS)
