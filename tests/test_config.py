"""Configured like IPython: command-line options, profiles, config files, default extensions.

Every test starts a real kernel process with the options or files under test
and asks the kernel what it made of them.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.kernel_helpers import execute, start_kernel, start_kernel_logged, stop_kernel
from threadline.app import kernel_spec


def value_of(client: BlockingKernelClient, expression: str) -> Any:
    """Evaluate ``expression`` in the kernel; its repr, parsed back into a Python value."""
    run = execute(client, f"print(repr({expression}))")
    assert run.content["status"] == "ok", run.content
    return ast.literal_eval(run.stdout.strip())


@pytest.fixture
def started() -> Iterator[list[tuple[KernelManager, BlockingKernelClient]]]:
    """Kernels a test starts itself (with its own options); all stopped afterwards."""
    kernels: list[tuple[KernelManager, BlockingKernelClient]] = []
    yield kernels
    for manager, client in kernels:
        stop_kernel(manager, client)


def test_nbclient_argument_and_unknown_options_are_not_fatal(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    log_path = tmp_path / "kernel.log"
    manager, client = start_kernel_logged(
        log_path,
        "--HistoryManager.hist_file=:memory:",
        "--no-such-option",
        "--no-such-value=3",
        "--made-up",
        "word",
    )
    started.append((manager, client))
    assert value_of(client, "get_ipython().history_manager.hist_file") == ":memory:"
    assert execute(client, "1 + 1").content["status"] == "ok"
    log = log_path.read_text()
    assert "ignored unknown command-line option '--no-such-option'" in log
    assert "ignored unknown command-line option '--no-such-value=3'" in log
    assert "ignored unknown command-line option '--made-up word'" in log


def test_a_bad_value_for_a_known_setting_is_a_clear_error() -> None:
    """As in ipykernel, the kernel does not start -- but says why, in one line."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "threadline", "--InteractiveShell.autocall=notanumber"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("threadline: bad configuration: The 'autocall' trait")


def test_ipython_style_options(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    profile = tmp_path / "profile_custom"
    profile.mkdir()
    manager, client = start_kernel(
        extra_arguments=[
            f"--profile-dir={profile}",
            "--matplotlib=inline",
            "--InteractiveShell.cache_size=1234",
            "--ZMQInteractiveShell.separate_in=@@",
            "--IPKernelApp.exec_lines=['from_cli = 42']",
            "--ext=storemagic",
            "--debug",
            "--transport",
            "tcp",
            "--ip=127.0.0.1",
        ]
    )
    started.append((manager, client))
    assert value_of(client, "get_ipython().profile_dir.location") == str(profile)
    assert value_of(client, "get_ipython().cache_size") == 1234
    assert value_of(client, "get_ipython().separate_in") == "@@"
    assert value_of(client, "from_cli") == 42
    assert "inline" in value_of(client, "__import__('matplotlib').get_backend()")


def test_the_shell_answers_to_ipykernel_names(kc: BlockingKernelClient) -> None:
    assert value_of(kc, "type(get_ipython()).__name__") == "ZMQInteractiveShell"
    assert value_of(kc, "'IPKernelApp' in get_ipython().config") is True
    assert value_of(kc, "'zmqshell' in str(type(get_ipython()))") is True
    connection_file = value_of(kc, "get_ipython().config.IPKernelApp.connection_file")
    assert os.path.isabs(connection_file) and connection_file.endswith(".json")
    assert execute(kc, "%config ZMQInteractiveShell.autocall = 2").content["status"] == "ok"
    assert value_of(kc, "get_ipython().autocall") == 2
    run = execute(kc, "%config IPKernelApp")
    assert "IPKernelApp(" in run.stdout and "exec_lines" in run.stdout


def write_profile(profile: Path, extra_dir: Path) -> None:
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-first.py").write_text("order = ['startup']\n")
    (extra_dir / "helpers.py").write_text("order.append('exec_files')\nfrom_exec_file = 'yes'\n")
    (extra_dir / "my_extension.py").write_text(
        "def load_ipython_extension(ip):\n    ip.user_ns['extension_loaded'] = True\n"
    )
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShell.cache_size = 2000\nc.InteractiveShell.separate_in = 'from ipython_config'\n"
    )
    (profile / "ipython_kernel_config.py").write_text(
        f"""
import sys
sys.path.insert(0, {str(extra_dir)!r})
c.IPKernelApp.exec_lines = ["order.append('exec_lines')", "import math", "exec_line_value = math.tau"]
c.InteractiveShellApp.exec_files = [{str(extra_dir / "helpers.py")!r}]
c.IPKernelApp.extensions = ["my_extension"]
c.IPKernelApp.code_to_run = "order.append('code_to_run')"
c.ZMQInteractiveShell.separate_in = 'from ipython_kernel_config'
c.InlineBackend.figure_formats = {{'svg'}}
c.HistoryManager.hist_file = ':memory:'
"""
    )


def test_profile_config_files_are_loaded(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    profile = tmp_path / "profile_work"
    write_profile(profile, tmp_path)
    manager, client = start_kernel(extra_arguments=[f"--profile-dir={profile}"])
    started.append((manager, client))
    assert value_of(client, "order") == ["startup", "exec_lines", "exec_files", "code_to_run"]
    assert value_of(client, "exec_line_value") > 6.28
    assert value_of(client, "from_exec_file") == "yes"
    assert value_of(client, "extension_loaded") is True
    # ipython_config.py is read, and ipython_kernel_config.py wins where both set a value.
    assert value_of(client, "get_ipython().cache_size") == 2000
    assert value_of(client, "get_ipython().separate_in") == "from ipython_kernel_config"
    # Variables from startup code are hidden from %who, as in IPython.
    assert "exec_line_value" not in execute(client, "%who").stdout
    # InlineBackend settings reach %matplotlib inline.
    plot = execute(
        client, "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"
    )
    images = [m["content"]["data"] for m in plot.of_type("display_data")]
    assert images and "image/svg+xml" in images[0] and "image/png" not in images[0]


def test_profile_by_name_and_a_missing_profile(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    ipython_dir = Path(os.environ["IPYTHONDIR"])
    named = ipython_dir / "profile_named_for_test"
    named.mkdir(parents=True, exist_ok=True)
    (named / "ipython_kernel_config.py").write_text("c.IPKernelApp.exec_lines = ['which = \"named\"']\n")
    manager, client = start_kernel(extra_arguments=["--profile=named_for_test"])
    started.append((manager, client))
    assert value_of(client, "which") == "named"
    log_path = tmp_path / "kernel.log"
    manager, client = start_kernel_logged(log_path, "--profile=does_not_exist")
    started.append((manager, client))
    assert value_of(client, "get_ipython().profile") == "default"
    assert "profile 'does_not_exist' not found" in log_path.read_text()


def test_storemagic_is_loaded(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    profile = tmp_path / "profile_store"
    profile.mkdir()
    for _ in range(2):  # %store keeps the value in the profile, across kernels
        manager, client = start_kernel(extra_arguments=[f"--profile-dir={profile}"])
        started.append((manager, client))
        if _ == 0:
            assert execute(client, "kept = [1, 2, 3]\n%store kept").content["status"] == "ok"
        else:
            assert execute(client, "%store -r kept").content["status"] == "ok"
            assert value_of(client, "kept") == [1, 2, 3]


def test_startup_errors_go_to_the_log_not_to_the_first_cell(
    tmp_path: Path, started: list[tuple[KernelManager, BlockingKernelClient]]
) -> None:
    profile = tmp_path / "profile_broken"
    profile.mkdir()
    (profile / "ipython_kernel_config.py").write_text(
        "c.IPKernelApp.exec_lines = ['1/0', 'after_error = True']\n"
    )
    log_path = tmp_path / "kernel.log"
    manager, client = start_kernel_logged(log_path, f"--profile-dir={profile}")
    started.append((manager, client))
    first = execute(client, "after_error")
    assert first.content["status"] == "ok"
    assert "ZeroDivisionError" in log_path.read_text()


def test_nbclient_runs_a_notebook_with_threadline_as_python3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nbclient passes --HistoryManager.hist_file=:memory: to any kernel named python3."""
    data = tmp_path / "data"
    (data / "kernels" / "python3").mkdir(parents=True)
    (data / "kernels" / "python3" / "kernel.json").write_text(json.dumps(kernel_spec()))
    monkeypatch.setenv("JUPYTER_PATH", f"{data}{os.pathsep}{os.environ['JUPYTER_PATH']}")
    assert KernelManager(kernel_name="python3").ipykernel  # what makes nbclient add its argument
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("print(type(get_ipython()).__name__)"),
        nbformat.v4.new_code_cell("print(get_ipython().history_manager.hist_file)"),
    ]
    NotebookClient(notebook, kernel_name="python3", timeout=60).execute()
    outputs = [cell.outputs[0]["text"].strip() for cell in notebook.cells]
    assert outputs == ["ZMQInteractiveShell", ":memory:"]


def test_install_as_python3(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "threadline", "install", "--prefix", str(tmp_path), "--name", "python3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "python3"
    spec = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]).get_kernel_spec("python3")
    assert spec.argv[1:3] == ["-m", "threadline"]


@pytest.mark.parametrize(
    ("argv", "known", "unknown"),
    [
        (["--HistoryManager.hist_file=:memory:"], [["--HistoryManager.hist_file=:memory:"]], []),
        (["--InteractiveShell.colors", "nocolor"], [["--InteractiveShell.colors", "nocolor"]], []),
        (["--matplotlib"], [["--matplotlib"]], []),
        (["--matplotlib", "inline", "--pdb"], [["--matplotlib", "inline"], ["--pdb"]], []),
        (["--profile-dir", "/p", "-c", "x = 1"], [["--profile-dir", "/p"], ["-c", "x = 1"]], []),
        (["--nope", "value", "--no-pdb"], [["--no-pdb"]], ["--nope value"]),
        (["--nope=1", "stray", "--.odd=2"], [], ["--nope=1", "stray", "--.odd=2"]),
    ],
)
def test_options_ipython_knows_are_told_apart_from_the_rest(
    argv: list[str], known: list[list[str]], unknown: list[str]
) -> None:
    from threadline.compat.kernelapp import split_options

    assert split_options(argv) == (known, unknown)


def test_install_says_when_another_python3_is_found_first(tmp_path: Path) -> None:
    import subprocess

    first = tmp_path / "first"
    (first / "kernels" / "python3").mkdir(parents=True)
    spec = {"argv": ["python", "-m", "ipykernel_launcher"], "display_name": "ipykernel", "language": "python"}
    (first / "kernels" / "python3" / "kernel.json").write_text(json.dumps(spec))
    env = {**os.environ, "JUPYTER_PATH": str(first), "JUPYTER_DATA_DIR": str(tmp_path / "user")}
    done = subprocess.run(
        [sys.executable, "-m", "threadline", "install", "--user", "--name", "python3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"Jupyter finds another 'python3' kernelspec first, in {first / 'kernels' / 'python3'}" in (
        done.stderr
    )
