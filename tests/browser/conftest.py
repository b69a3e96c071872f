"""JupyterLab in headless Chromium, for tests that assert what a person sees.

A session-wide ``jupyter lab`` server runs from this venv on a free localhost
port, with a token, in a temporary root directory, and sees the same private
Jupyter environment as every other test (``tests/conftest.py`` puts the
``threadline`` kernelspec on JUPYTER_PATH). A session-wide Chromium is driven
by Playwright's sync API; every test gets a fresh page, and its screenshot is
saved to ``test-artifacts/`` whatever the outcome.

Chromium is the system's ``/usr/bin/chromium`` (``python3 dev.py test``
installs it with apt-get as root on Debian). Playwright never downloads a
browser here. When there is no Chromium and none can be installed, the tests
skip and say why; when one could have been installed, they fail instead, so a
broken setup cannot pass as a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT = 90.0


def _can_install_chromium() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def _require_browser() -> None:
    """Skip when no browser can be had here; fail when one could, but the setup did not install it."""
    missing = [] if CHROMIUM.exists() else [str(CHROMIUM)]
    for module in ("playwright", "jupyterlab"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the {module} package")
    if not missing:
        return
    if _can_install_chromium():
        pytest.fail(f"missing {' and '.join(missing)}; `python3 dev.py test` installs them")
    pytest.skip(
        f"missing {' and '.join(missing)}, and no browser can be installed here (that needs root on Debian)"
    )


@dataclass(frozen=True)
class LabServer:
    url: str
    token: str
    root_dir: Path

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def page_url(self, notebook: str) -> str:
        """The notebook alone in a fresh workspace of its own (no tabs restored from other tests)."""
        workspace = re.sub(r"[^A-Za-z0-9]+", "-", notebook)
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ready(server: LabServer, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the HTTP API until it answers and lists the threadline kernelspec."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            specs = server.api("/api/kernelspecs")
        except (OSError, ValueError) as exc:  # not listening yet, or not answering yet
            last_error = exc
        else:
            if "threadline" not in specs["kernelspecs"]:
                raise RuntimeError(
                    f"the lab server does not see the threadline kernelspec: {sorted(specs['kernelspecs'])}"
                )
            return
        try:  # the pause between polls doubles as the check that the server is still alive
            code = process.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"jupyter lab exited with {code} while starting; see {log}")
    raise TimeoutError(f"jupyter lab did not answer within {STARTUP_TIMEOUT}s ({last_error}); see {log}")


# Package scope, not session: Playwright's sync API keeps an asyncio loop marked
# running in the main thread while it is open, which breaks asyncio.run() in every
# later test; and the JupyterLab server is not needed after these tests either.
@pytest.fixture(scope="package")
def lab_server(jupyter_environment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _run_lab(tmp_path_factory, "jupyter-lab.log")


@pytest.fixture(scope="package")
def encrypted_lab_server(
    jupyter_environment: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A second server whose kernels all get CurveZMQ keys (jupyter_server >= 2.20), or do not start."""
    yield from _run_lab(
        tmp_path_factory, "jupyter-lab-encrypted.log", "--MappingKernelManager.transport_encryption=required"
    )


def _run_lab(tmp_path_factory: pytest.TempPathFactory, log_name: str, *options: str) -> Iterator[LabServer]:
    _require_browser()
    root_dir = tmp_path_factory.mktemp("lab-root")
    settings = tmp_path_factory.mktemp("lab-settings")
    # No "would you like news?" notification over the notebook.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Render every cell, not only those in view, so tests and screenshots see them all.
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    token = secrets.token_hex(16)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path_factory.mktemp('lab-workspaces')}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        *options,
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / log_name
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, root_dir=root_dir)
    # The environment carries JUPYTER_PATH etc. from the session's jupyter_environment fixture.
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    try:
        _wait_until_ready(server, process, log)
        yield server
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its screenshot goes to test-artifacts/ whether the test passed or not."""
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
