"""JupyterLab drives an encrypted threadline kernel: the demo's threads and widgets, over CurveZMQ.

The server is started with ``--MappingKernelManager.transport_encryption=required``
(jupyter_server >= 2.20 passes the policy to jupyter_client's provisioner,
which writes a Curve key pair into every kernel's connection file and refuses a
kernelspec that does not declare ``"supported_encryption": ["curve"]``). The
page then runs the same notebooks as the unencrypted tests: thread output under
the cell that started the thread, a progress bar driven by a thread, and a
button clicked in the page while a cell waits for it (a comm message from the
front end, on a subshell, through the encrypted shell socket). Each test also
reads the kernel's connection file to show that its kernel really had keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser import test_lab as lab
from tests.browser import test_widgets_lab as widgets_lab
from tests.browser.conftest import LabServer

pytestmark = pytest.mark.browser


def assert_every_kernel_was_encrypted(server: LabServer) -> None:
    kernels = server.api("/api/kernels")
    assert kernels, "no kernel is running"
    runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    for kernel in kernels:
        assert kernel["name"] == "threadline"
        info = json.loads((runtime / f"kernel-{kernel['id']}.json").read_text())
        assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40


def test_demo_notebook_in_lab_encrypted(encrypted_lab_server: LabServer, page: Any) -> None:
    lab.test_demo_notebook_in_lab(encrypted_lab_server, page)
    assert_every_kernel_was_encrypted(encrypted_lab_server)


def test_button_clicked_while_a_cell_waits_encrypted(encrypted_lab_server: LabServer, page: Any) -> None:
    widgets_lab.test_button_clicked_in_the_page_ends_the_cell_that_waits_for_it(encrypted_lab_server, page)
    assert_every_kernel_was_encrypted(encrypted_lab_server)
