#!/usr/bin/env python3
"""The developer's front door: two commands, on a machine with only Python.

    python3 dev.py demo             run examples/demo.ipynb in the kernel, print it
    python3 dev.py test [ARGS...]   lint, type-check, then pytest ARGS

Both first make sure of ``.venv``: create it, ``pip install -e`` the project
with the extras the command needs, and install the ``threadline`` kernelspec
into it. That step is skipped while a stamp file in ``.venv`` still matches
pyproject.toml's hash, the extras and the Python version. ``test`` also makes
sure a browser is there for the browser tests: as root on Debian it installs
the ``chromium`` package with apt-get when ``/usr/bin/chromium`` is missing;
likewise Xvfb and Qt's X libraries for the GUI tests.

The top level imports only the standard library, so any python3 >= 3.11 can run
it. Everything else runs with the venv's Python; ``_notebook`` is the one part
of this file that runs *inside* the venv (it imports nbclient), and the
notebook tests reuse it, so that the demo you see and the demo that is tested
are executed the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
VENV_PYTHON = VENV_BIN / "python"
STAMP = VENV / ".threadline-dev-stamp.json"
CHROMIUM = Path("/usr/bin/chromium")
LINT_PATHS = ("src", "tests", "benchmarks", "dev.py")
DEMO = ROOT / "examples" / "demo.ipynb"


# -- running things ---------------------------------------------------------------------


def stage(title: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}==> {title}{plain}", flush=True)


def venv_env() -> dict[str, str]:
    """The environment with the venv activated (its ``bin`` first on PATH)."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_ROOT_USER_ACTION"] = "ignore"
    return env


def run(
    command: Sequence[str | os.PathLike[str]], *, quiet: bool = False, env: dict[str, str] | None = None
) -> int:
    """Run ``command`` from the repository root; when ``quiet``, show its output only if it fails."""
    argv = [str(part) for part in command]
    if not quiet:
        return subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False).returncode
    done = subprocess.run(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(f"FAILED ({done.returncode}): {' '.join(argv)}", file=sys.stderr)
        sys.stderr.write(done.stdout[-20000:])
        sys.stderr.write(done.stderr[-20000:])
    return done.returncode


class SetupError(Exception):
    """A setup step failed; its output has been shown."""


def must(returncode: int, what: str) -> None:
    if returncode != 0:
        raise SetupError(what)


# -- setup ------------------------------------------------------------------------------


def can_use_apt() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def apt_install(*packages: str) -> int:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if run(["apt-get", "update", "-qq"], quiet=True, env=env) != 0:
        return 1
    return run(["apt-get", "install", "-y", "-qq", *packages], quiet=True, env=env)


def ensure_venv() -> None:
    if VENV_PYTHON.exists():
        return
    stage(f"creating {VENV.relative_to(ROOT)} with {sys.executable} (Python {sys.version.split()[0]})")
    if run([sys.executable, "-m", "venv", VENV], quiet=True) == 0:
        return
    # Debian's python3 ships venv's ensurepip in a separate package.
    if can_use_apt():
        shutil.rmtree(VENV, ignore_errors=True)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
        print(f"installing {version} with apt-get and trying again")
        must(apt_install(version), f"apt-get install {version}")
        must(run([sys.executable, "-m", "venv", VENV], quiet=True), "python3 -m venv .venv")
        return
    raise SetupError("python3 -m venv .venv (on Debian: apt-get install python3-venv)")


def stamp_for(extras: Sequence[str]) -> dict[str, Any]:
    return {
        "pyproject": hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest(),
        "python": os.path.realpath(VENV_PYTHON),
        "extras": sorted(extras),
    }


def is_up_to_date(extras: Sequence[str]) -> bool:
    try:
        stamped = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    wanted = stamp_for(extras)
    kernel_json = VENV / "share" / "jupyter" / "kernels" / "threadline" / "kernel.json"
    return (
        stamped.get("pyproject") == wanted["pyproject"]
        and stamped.get("python") == wanted["python"]
        and set(extras) <= set(stamped.get("extras", ()))
        and kernel_json.exists()
    )


def ensure_installed(extras: Sequence[str]) -> None:
    """The venv, the project with ``extras``, and the kernelspec; skipped when already done."""
    ensure_venv()
    if is_up_to_date(extras):
        print(f"setup: .venv is up to date (extras: {', '.join(extras)})")
        return
    STAMP.unlink(missing_ok=True)
    env = venv_env()
    stage(f"installing threadline into .venv (extras: {', '.join(extras)}) -- this takes a minute")
    must(
        run([VENV_PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip"], quiet=True, env=env),
        "pip upgrade",
    )
    spec = f".[{','.join(extras)}]"
    must(
        run([VENV_PYTHON, "-m", "pip", "install", "-q", "-e", spec], quiet=True, env=env),
        f"pip install -e {spec}",
    )
    stage("installing the threadline kernelspec into .venv")
    must(run([VENV_PYTHON, "-m", "threadline", "install", "--sys-prefix"], env=env), "threadline install")
    STAMP.write_text(json.dumps(stamp_for(extras)))


def ensure_browser() -> None:
    """Chromium for the browser tests: apt-get it as root on Debian, else say why they will skip."""
    if CHROMIUM.exists():
        return
    if not can_use_apt():
        print(f"note: {CHROMIUM} is missing and cannot be installed here (needs root on Debian);")
        print("      the browser tests will be skipped")
        return
    stage("installing chromium with apt-get (for the browser tests)")
    must(apt_install("chromium"), "apt-get install chromium")
    if not CHROMIUM.exists():
        raise SetupError(f"apt-get installed chromium but {CHROMIUM} is still missing")


#: For the GUI tests (tests/test_gui.py): a virtual X server, the screenshot tool, and
#: the X libraries Qt's xcb platform plugin loads (the PySide6 wheel bundles Qt itself).
DISPLAY_PACKAGES = (
    "xvfb",
    "xauth",
    "imagemagick",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-shape0",
    "libxcb-render-util0",
    "libxcb-image0",
    "libxkbcommon-x11-0",
    "libegl1",
    "libgl1",
    "libfontconfig1",
    "libdbus-1-3",
)


def ensure_display_server() -> None:
    """Xvfb and Qt's X libraries for the GUI tests: apt-get them as root on Debian, else say why."""
    if shutil.which("dpkg-query"):
        listed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *DISPLAY_PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if listed.count("installed") == len(DISPLAY_PACKAGES):
            return
    elif shutil.which("Xvfb"):
        return
    if not can_use_apt():
        print("note: Xvfb (or Qt's X libraries) is missing and cannot be installed here (needs root on")
        print("      Debian); the GUI tests will be skipped")
        return
    stage("installing Xvfb and the X libraries Qt needs with apt-get (for the GUI tests)")
    must(apt_install(*DISPLAY_PACKAGES), "apt-get install " + " ".join(DISPLAY_PACKAGES))


# -- commands ---------------------------------------------------------------------------


def command_demo() -> int:
    ensure_installed(["test"])
    stage(f"running {DEMO.relative_to(ROOT)} in the threadline kernel")
    return run([VENV_PYTHON, Path(__file__).resolve(), "_show", DEMO], env=venv_env())


def command_test(pytest_args: Sequence[str]) -> int:
    ensure_installed(["test", "browser"])
    ensure_browser()
    ensure_display_server()
    env = venv_env()
    lint_paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    stages = [
        ("ruff check", [VENV_BIN / "ruff", "check", *lint_paths]),
        ("ruff format --check", [VENV_BIN / "ruff", "format", "--check", *lint_paths]),
        ("mypy (strict, configured in pyproject.toml)", [VENV_BIN / "mypy"]),
        ("pytest " + " ".join(pytest_args), [VENV_PYTHON, "-m", "pytest", *pytest_args]),
    ]
    failed = []
    for title, command in stages:
        stage(title)
        if run(command, env=env) != 0:
            failed.append(title)
    print()
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    print("all stages passed: " + "; ".join(title for title, _ in stages))
    return 0


def main(argv: Sequence[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 -- dev.py may be run by any python3
        print(f"dev.py needs Python >= 3.11; this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    command, *rest = argv or ["help"]
    try:
        if command == "demo" and not rest:
            return command_demo()
        if command == "test":
            return command_test(rest)
        if command == "_show" and len(rest) == 1:
            return show_notebook(Path(rest[0]))
    except SetupError as exc:
        print(f"\nsetup failed: {exc}", file=sys.stderr)
        return 1
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 0 if command in {"help", "-h", "--help"} else 2


# -- running a notebook (inside the venv) ------------------------------------------------


def execute_notebook(path: Path, *, timeout: int = 120) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Execute the notebook at ``path`` in the threadline kernel.

    Returns the executed notebook and the widget states (model id -> state).
    Output is filed under the cell whose request it answers -- also when it
    arrives after that cell has finished -- the way JupyterLab shows it (plain
    nbclient drops such output).
    """
    import nbformat
    from jupyter_core.utils import ensure_async
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete

    class RoutingNotebookClient(NotebookClient):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.cell_of_request: dict[str, int] = {}

        async def _async_poll_output_msg(self, parent_msg_id: str, cell: Any, cell_index: int) -> None:
            self.cell_of_request[parent_msg_id] = cell_index
            while True:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
                msg_id = msg["parent_header"].get("msg_id")
                if msg_id == parent_msg_id:
                    try:
                        self.process_message(msg, cell, cell_index)
                    except CellExecutionComplete:
                        return
                elif msg_id in self.cell_of_request and msg["msg_type"] != "status":
                    earlier = self.cell_of_request[msg_id]
                    self.process_message(msg, self.nb.cells[earlier], earlier)

    notebook = nbformat.read(path, as_version=4)
    client = RoutingNotebookClient(
        notebook,
        kernel_name="threadline",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook, client.widget_state


def output_text(output: dict[str, Any], widgets: dict[str, dict[str, Any]]) -> str:
    """One output as a person would read it in a terminal."""
    kind = output["output_type"]
    if kind == "stream":
        text: str = output["text"]
        return text
    if kind == "error":
        return "\n".join(output.get("traceback") or [f"{output['ename']}: {output['evalue']}"]) + "\n"
    data = output.get("data", {})
    view = data.get("application/vnd.jupyter.widget-view+json")
    if view is not None:
        state = widgets.get(view.get("model_id"), {})
        shown = ", ".join(
            f"{key}={state[key]!r}"
            for key in ("value", "min", "max", "description", "bar_style")
            if key in state
        )
        return f"[{state.get('_model_name', 'widget').removesuffix('Model')} widget: {shown}]\n"
    plain = data.get("text/plain")
    if plain is None:
        return f"[{', '.join(sorted(data))}]\n"
    prefix = f"Out[{output['execution_count']}]: " if kind == "execute_result" else ""
    return f"{prefix}{plain}\n"


def show_notebook(path: Path) -> int:
    notebook, widgets = execute_notebook(path)
    dim, plain = ("\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "")
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            print(f"\n{dim}{cell.source.strip()}{plain}")
            continue
        if cell.cell_type != "code":
            continue
        print(f"\n{dim}In [{cell.execution_count}]:{plain}")
        print("    " + cell.source.strip().replace("\n", "\n    "))
        text = "".join(output_text(output, widgets) for output in cell.outputs)
        if text:
            print(f"{dim}Out:{plain}")
            print("  | " + text.rstrip("\n").replace("\n", "\n  | "))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
