"""What a person sees in JupyterLab when threads drive ipywidgets.

Each test writes a small notebook, runs it in JupyterLab with the threadline
kernel, and reads the rendered widgets: a progress bar's width, a label's text,
a button clicked in the page while a cell waits for it, the lines inside
``Output`` widgets. Threads are joined or stepped with barriers in the kernel;
the test waits only on the DOM (Playwright's ``expect``, timeouts as safety
nets). Nothing sleeps.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import LabServer
from tests.browser.test_lab import RUN_MS, expect, open_and_run_all, output_lines, write_notebook

pytestmark = pytest.mark.browser

BARS, STEPS = 4, 50

PROGRESS = f"""\
import threading

import ipywidgets as widgets
from IPython.display import display

BARS, STEPS = {BARS}, {STEPS}
bars = [
    widgets.IntProgress(value=0, min=0, max=STEPS, description=f"bar {{k}}: 0/{{STEPS}}",
                        style={{"description_width": "initial"}})
    for k in range(BARS)
]
for bar in bars:
    display(bar)
all_ready = threading.Barrier(BARS)


def drive(k):
    bar = bars[k]
    all_ready.wait(timeout=60)  # every thread updates its bar at the same time as the others
    for _ in range(STEPS):
        bar.value += 1
        bar.description = f"bar {{k}}: {{bar.value}}/{{STEPS}}"


threads = [threading.Thread(target=drive, args=(k,), name=f"bar-{{k}}") for k in range(BARS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("kernel values:", [bar.value for bar in bars])"""

LABEL = """\
import threading

import ipywidgets as widgets
from IPython.display import display

status = widgets.Label("not started")
display(status)


def narrate():
    for i in range(1, 21):
        status.value = f"step {i}"
    status.value = "finished from a thread"


narrator = threading.Thread(target=narrate, name="narrator")
narrator.start()
narrator.join()
print("narrator joined")"""

BUTTON = """\
import time

import ipywidgets as widgets
from IPython.display import display

clicked = []
button = widgets.Button(description="Go")
button.on_click(lambda b: clicked.append(True))
display(button)"""

WAIT_FOR_CLICK = """\
print("waiting for the button", flush=True)
while not clicked:
    time.sleep(0.01)  # code run in the kernel, not a test wait (noqa: sleep-ok)
print("clicked!")"""

OUTPUTS = """\
import threading

import ipywidgets as widgets
from IPython.display import display

outs = {name: widgets.Output(layout={"border": "1px solid gray"}) for name in ("left", "right")}
for out in outs.values():
    display(out)
in_step = threading.Barrier(2)


def write_into(name):
    with outs[name]:
        for i in range(1, 6):
            in_step.wait(timeout=60)  # both captures are open; the threads print line by line together
            print(f"{name} line {i}")


writers = [threading.Thread(target=write_into, args=(name,), name=name) for name in outs]
for w in writers:
    w.start()
for w in writers:
    w.join()
print("both captures done")"""


def text_lines(element: Any) -> list[str]:
    return [line for line in element.inner_text().splitlines() if line.strip()]


def test_progress_bars_each_driven_by_a_thread_show_their_final_value(
    lab_server: LabServer, page: Any
) -> None:
    write_notebook(lab_server.root_dir / "progress.ipynb", PROGRESS)
    cells = open_and_run_all(page, lab_server, "progress.ipynb")
    expect(cells).to_have_count(1)
    cell = cells.nth(0)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=RUN_MS)
    expect(cell.locator(".jp-OutputArea")).to_contain_text(f"kernel values: {[STEPS] * BARS}")

    bars = cell.locator(".widget-hprogress")
    expect(bars).to_have_count(BARS)
    for k in range(BARS):
        expect(bars.nth(k).locator(".widget-label")).to_have_text(f"bar {k}: {STEPS}/{STEPS}")
        # ipywidgets 8 draws value/max as the bar's inline width, in percent.
        expect(bars.nth(k).locator(".progress-bar")).to_have_attribute(
            "style", re.compile(r"(^|;)\s*width:\s*100%")
        )


def test_label_set_from_a_thread_shows_its_final_text(lab_server: LabServer, page: Any) -> None:
    write_notebook(lab_server.root_dir / "label.ipynb", LABEL)
    cells = open_and_run_all(page, lab_server, "label.ipynb")
    expect(cells).to_have_count(1)
    cell = cells.nth(0)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=RUN_MS)
    expect(cell.locator(".jp-OutputArea")).to_contain_text("narrator joined")

    label = cell.locator(".widget-label")
    expect(label).to_have_count(1)
    expect(label).to_have_text("finished from a thread")


def test_button_clicked_in_the_page_ends_the_cell_that_waits_for_it(lab_server: LabServer, page: Any) -> None:
    write_notebook(lab_server.root_dir / "button.ipynb", BUTTON, WAIT_FOR_CLICK)
    cells = open_and_run_all(page, lab_server, "button.ipynb")
    expect(cells).to_have_count(2)
    shows_button, waits = cells.nth(0), cells.nth(1)
    expect(shows_button.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=RUN_MS)
    button = shows_button.locator("button.widget-button", has_text="Go")
    expect(button).to_be_visible()
    # The waiting cell has started (its first line is shown) and is still running.
    expect(waits.locator(".jp-OutputArea")).to_have_text("waiting for the button", timeout=RUN_MS)
    expect(waits.locator(".jp-InputPrompt")).to_have_text("[*]:")

    # JupyterLab 4.4+ sends the click's comm_msg on a subshell of its own, which runs beside the busy cell.
    button.click()
    expect(waits.locator(".jp-InputPrompt")).to_have_text("[2]:", timeout=RUN_MS)
    expect(waits.locator(".jp-OutputArea")).to_contain_text("clicked!")
    assert output_lines(waits) == ["waiting for the button", "clicked!"]


def test_two_threads_capture_into_two_output_widgets(lab_server: LabServer, page: Any) -> None:
    write_notebook(lab_server.root_dir / "outputs.ipynb", OUTPUTS)
    cells = open_and_run_all(page, lab_server, "outputs.ipynb")
    expect(cells).to_have_count(1)
    cell = cells.nth(0)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=RUN_MS)
    everything = cell.locator(".jp-Cell-outputArea")  # holds the widgets' own output areas too
    expect(everything).to_contain_text("both captures done")

    widgets = cell.locator(".widget-output")
    expect(widgets).to_have_count(2)
    for k, name in enumerate(("left", "right")):
        expect(widgets.nth(k)).to_contain_text(f"{name} line 5")
        assert text_lines(widgets.nth(k)) == [f"{name} line {i}" for i in range(1, 6)]
    # Each line is shown once: inside its own widget, not also in the cell's output.
    assert sorted(text_lines(everything)) == sorted(
        [f"{name} line {i}" for name in ("left", "right") for i in range(1, 6)] + ["both captures done"]
    )
