"""What a person sees in JupyterLab: thread output under the cell that started the thread.

Every wait is on the DOM (Playwright's ``expect`` with a timeout); nothing sleeps.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.browser.conftest import LabServer

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KERNEL_START_MS = 90_000
RUN_MS = 60_000

TICKER = """\
import threading

release = threading.Event()


def ticker():
    for i in range(1, 6):
        print(f"tick {i}", flush=True)
        if i == 2:
            release.wait(timeout=120)  # ticks 3-5 come while the next cell runs


ticker_thread = threading.Thread(target=ticker, name="ticker")
ticker_thread.start()
print("cell 1 started the ticker")"""

RELEASE = """\
release.set()
ticker_thread.join()
print("cell 2 waited for the ticker")"""

PLAIN = 'print("a plain print from cell 3")'


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported only once the fixtures have checked that it is there."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def write_notebook(path: Path, *sources: str) -> None:
    notebook = new_notebook(
        cells=[new_code_cell(source) for source in sources],
        metadata={
            "kernelspec": {
                "name": "threadline",
                "display_name": "Python 3 (threadline)",
                "language": "python",
            }
        },
    )
    nbformat.write(notebook, path)


def open_and_run_all(page: Any, server: LabServer, name: str) -> Any:
    """Open ``name``, wait for its threadline kernel to be idle, and click Run > Run All Cells."""
    page.goto(server.page_url(name))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(panel.locator(".jp-KernelName")).to_have_text("Python 3 (threadline)", timeout=KERNEL_START_MS)
    expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_START_MS
    )
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    return panel.locator(".jp-Notebook .jp-CodeCell")


def output_lines(cell: Any) -> list[str]:
    return [line for line in cell.locator(".jp-OutputArea").inner_text().splitlines() if line.strip()]


def test_thread_lines_appear_under_the_cell_that_started_the_thread(lab_server: LabServer, page: Any) -> None:
    write_notebook(lab_server.root_dir / "ticker.ipynb", TICKER, RELEASE, PLAIN)
    cells = open_and_run_all(page, lab_server, "ticker.ipynb")
    expect(cells).to_have_count(3)
    expect(cells.nth(2).locator(".jp-InputPrompt")).to_have_text("[3]:", timeout=RUN_MS)
    expect(cells.nth(2).locator(".jp-OutputArea")).to_have_text("a plain print from cell 3", timeout=RUN_MS)
    expect(cells.nth(1).locator(".jp-OutputArea")).to_have_text("cell 2 waited for the ticker")
    expect(cells.nth(0).locator(".jp-OutputArea")).to_contain_text("tick 5")

    first = output_lines(cells.nth(0))
    assert [line for line in first if line.startswith("tick")] == [f"tick {i}" for i in range(1, 6)]
    assert sorted(first) == sorted(["cell 1 started the ticker"] + [f"tick {i}" for i in range(1, 6)])
    assert output_lines(cells.nth(1)) == ["cell 2 waited for the ticker"]


def test_demo_notebook_in_lab(lab_server: LabServer, page: Any) -> None:
    shutil.copy(EXAMPLES / "demo.ipynb", lab_server.root_dir / "demo.ipynb")
    cells = open_and_run_all(page, lab_server, "demo.ipynb")
    expect(cells).to_have_count(8)
    summary = cells.nth(7)
    expect(summary.locator(".jp-OutputArea")).to_contain_text(
        "total: 17 lines from 5 threads", timeout=RUN_MS
    )

    workers = output_lines(cells.nth(1))
    assert len(workers) == 13
    for k in (1, 2, 3):
        assert [line for line in workers if line.startswith(f"[worker-{k}]")] == [
            f"[worker-{k}] line {i} of 4" for i in range(1, 5)
        ]
    assert output_lines(cells.nth(2)) == [
        "[MainThread] all workers finished -- their lines are in the cell above"
    ]
    expect(cells.nth(3).locator(".jp-OutputArea")).to_have_text("'lift-off'")
    progress = cells.nth(4).locator(".widget-hprogress")
    expect(progress).to_be_visible()
    expect(progress.locator(".widget-label")).to_have_text("40/40")
    expect(progress.locator(".progress-bar-success")).to_be_visible()
    assert output_lines(cells.nth(6)) == [
        "[service] 'where does this go' has 18 letters",
        "[service] 'here' has 4 letters",
    ]
