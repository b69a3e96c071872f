"""JupyterLab drives an encrypted threadline kernel: the demo's threads and widgets, over CurveZMQ.

The server is started with ``--MappingKernelManager.transport_encryption=required``
(jupyter_server >= 2.20 passes the policy to jupyter_client's provisioner,
which writes a Curve key pair into every kernel's connection file and refuses a
kernelspec that does not declare ``"supported_encryption": ["curve"]``). The
page then runs the same notebooks as the unencrypted tests: thread output under
the cell that started the thread, a progress bar driven by a thread, and a
button clicked in the page while a cell waits for it (a comm message from the
front end, on a subshell, through the encrypted shell socket); and Kernel >
Restart Kernel, after which a new process answers with the same keys. Each test
also reads the kernel's connection file to show that its kernel really had keys.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import test_lab as lab
from tests.browser import test_widgets_lab as widgets_lab
from tests.browser.conftest import LabServer
from tests.browser.test_lab import RUN_MS, expect, open_and_run_all, write_notebook

pytestmark = pytest.mark.browser


def assert_every_kernel_was_encrypted(server: LabServer) -> dict[str, tuple[str, str]]:
    """Each running kernel's id -> its (public, secret) Curve keys, read from its connection file."""
    kernels = server.api("/api/kernels")
    assert kernels, "no kernel is running"
    runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    keys = {}
    for kernel in kernels:
        assert kernel["name"] == "threadline"
        info = json.loads((runtime / f"kernel-{kernel['id']}.json").read_text())
        assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40
        keys[kernel["id"]] = (info["curve_publickey"], info["curve_secretkey"])
    return keys


def test_demo_notebook_in_lab_encrypted(encrypted_lab_server: LabServer, page: Any) -> None:
    lab.test_demo_notebook_in_lab(encrypted_lab_server, page)
    assert_every_kernel_was_encrypted(encrypted_lab_server)


def test_button_clicked_while_a_cell_waits_encrypted(encrypted_lab_server: LabServer, page: Any) -> None:
    widgets_lab.test_button_clicked_in_the_page_ends_the_cell_that_waits_for_it(encrypted_lab_server, page)
    assert_every_kernel_was_encrypted(encrypted_lab_server)


PID_CELL = "import os\nprint('kernel process', os.getpid())"


def test_restart_keeps_the_keys_and_the_kernel_answers(encrypted_lab_server: LabServer, page: Any) -> None:
    write_notebook(encrypted_lab_server.root_dir / "restart.ipynb", PID_CELL)
    cells = open_and_run_all(page, encrypted_lab_server, "restart.ipynb")
    output = cells.nth(0).locator(".jp-OutputArea")
    expect(output).to_contain_text("kernel process", timeout=RUN_MS)
    first_pid = output.inner_text().split()[-1]
    before = assert_every_kernel_was_encrypted(encrypted_lab_server)

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel")).first.click()
    page.locator(".jp-Dialog-button.jp-mod-accept", has_text="Restart").click()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    # Passes only once a process other than the first one has printed its pid.
    expect(output).to_have_text(re.compile(rf"kernel process (?!{first_pid}\b)\d+"), timeout=RUN_MS)

    after = assert_every_kernel_was_encrypted(encrypted_lab_server)
    for kernel_id, pair in before.items():
        assert after[kernel_id] == pair  # restarted with the same keys
