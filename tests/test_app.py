"""The command line: version, help, kernelspec installation, and bad connection files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

import threadline

TIMEOUT = 60


def threadline_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadline", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def test_version() -> None:
    done = threadline_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"threadline {threadline.__version__}"


def test_help_names_the_commands() -> None:
    done = threadline_cli("--help")
    assert done.returncode == 0
    assert "install" in done.stdout and "--connection-file" in done.stdout


def test_install_into_a_prefix(tmp_path: Path) -> None:
    done = threadline_cli("install", "--prefix", str(tmp_path))
    assert done.returncode == 0, done.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "threadline"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (threadline)"
    assert spec["argv"] == [sys.executable, "-m", "threadline", "-f", "{connection_file}"]
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "signal"
    # jupyter_client finds it there, by name.
    manager = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    assert manager.get_kernel_spec("threadline").display_name == "Python 3 (threadline)"


def test_install_for_the_user(tmp_path: Path) -> None:
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    done = threadline_cli("install", "--user", "--name", "tl-user", "--display-name", "TL", env=env)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "data" / "kernels" / "tl-user" / "kernel.json").read_text())
    assert spec["display_name"] == "TL"


def test_unreadable_connection_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = threadline_cli("-f", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read the connection file" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"shell_port": "not a port"}')
    invalid = threadline_cli("-f", str(bad))
    assert invalid.returncode == 2
    assert "shell_port must be an integer port" in invalid.stderr
