"""ipykernel's kernel magics, with the payloads and outputs ipykernel 7.4 sends.

The expected values were taken from ipykernel 7.4 on the wire, running the same
cells (see docs/compatibility.md for the two deliberate differences).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import execute


def test_autosave(kc: BlockingKernelClient) -> None:
    run = execute(kc, "%autosave 60")
    assert run.content["status"] == "ok"
    shown = run.of_type("display_data")
    assert [m["content"]["data"] for m in shown] == [
        {"application/javascript": "IPython.notebook.set_autosave_interval(60000)"}
    ]
    assert run.stdout == "Autosaving every 60 seconds\n"
    assert execute(kc, "%autosave 0").stdout == "Autosave disabled\n"
    bad = execute(kc, "%autosave soon")
    assert (bad.content["ename"], bad.content["evalue"]) == (
        "UsageError",
        "%autosave requires an integer, got 'soon'",
    )


def test_less_and_more_page_a_file(kc: BlockingKernelClient, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\nworld\n")
    run = execute(kc, f"%less {text_file}")
    assert run.content["payload"] == [
        {"source": "page", "data": {"text/plain": "hello\nworld\n"}, "start": 0}
    ]
    python_file = tmp_path / "module.py"
    python_file.write_text("def g():\n    return 1\n")
    paged = execute(kc, f"%more {python_file}").content["payload"][0]["data"]["text/plain"]
    assert "\x1b[" in paged and "return" in paged  # syntax-highlighted
    missing = execute(kc, "%less")
    assert (missing.content["ename"], missing.content["evalue"]) == ("UsageError", "Missing filename.")


@pytest.mark.skipif(shutil.which("man") is None, reason="no man command on this machine")
def test_man_pages_the_manual(kc: BlockingKernelClient) -> None:
    run = execute(kc, "%man ls")
    payload = run.content["payload"]
    assert payload and payload[0]["source"] == "page"
    # col -b removes the overstrike formatting, as in ipykernel
    assert "\x08" not in payload[0]["data"]["text/plain"]


def test_clear_sends_the_terminal_sequence(kc: BlockingKernelClient) -> None:
    if shutil.which("clear") is None:
        pytest.skip("no clear command on this machine")
    run = execute(kc, "%clear")
    assert run.content["status"] == "ok"
    assert run.stdout.startswith("\x1b[H\x1b[2J")


def test_edit_sends_an_edit_payload(kc: BlockingKernelClient, tmp_path: Path) -> None:
    target = tmp_path / "module.py"
    target.write_text("a = 1\nb = 2\n")
    run = execute(kc, f"%edit {target}")
    assert run.content["payload"] == [
        {"source": "edit_magic", "filename": str(target.resolve()), "line_number": None}
    ]
    # -n is passed on as given (a string), and %ed is an alias, as in ipykernel.
    at_line = execute(kc, f"%ed -n 2 {target}").content["payload"]
    assert at_line == [{"source": "edit_magic", "filename": str(target.resolve()), "line_number": "2"}]
    # An object defined in a cell: its cell's file, at its line.
    defined = execute(kc, "x = 0\ndef h():\n    pass\n%edit h").content["payload"][0]
    assert defined["source"] == "edit_magic" and defined["line_number"] == 2
    assert Path(defined["filename"]).is_absolute()


def test_connect_info_shows_the_connection_file(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    manager, client = kernel
    run = execute(client, "%connect_info")
    assert run.content["status"] == "ok"
    shown, _, instructions = run.stdout.partition("\n\n")
    info = json.loads(shown)
    assert info["key"] == manager.session.key.decode()  # a second client needs it
    assert info["shell_port"] == manager.shell_port
    # the file's name alone when it is in the runtime directory, as ipykernel prints it
    path = Path(manager.connection_file)
    in_runtime_dir = str(path.parent) == os.environ["JUPYTER_RUNTIME_DIR"]
    assert f"--existing {path.name if in_runtime_dir else path}\n" in instructions
    assert "if this is the most recent Jupyter kernel you have started." in instructions


def test_connect_info_never_shows_curve_keys(kc: BlockingKernelClient, tmp_path: Path) -> None:
    connection_file = tmp_path / "kernel-curve.json"
    connection_file.write_text(
        json.dumps(
            {
                "shell_port": 1,
                "key": "k",
                "curve_publickey": "PUBLIC-Z85-KEY",
                "curve_secretkey": "SECRET-Z85-KEY",
            }
        )
    )
    run = execute(
        kc,
        f"get_ipython().kernel.connection_file = {str(connection_file)!r}\n%connect_info",
    )
    assert run.content["status"] == "ok"
    assert "SECRET-Z85-KEY" not in run.stdout and "PUBLIC-Z85-KEY" not in run.stdout
    assert "curve" not in run.stdout.partition("\n\n")[0]
    assert f"Curve keys are not shown; connect with the file itself: --existing {connection_file}" in (
        run.stdout
    )


def test_qtconsole_without_qtconsole_says_so(kc: BlockingKernelClient) -> None:
    import importlib.util

    if importlib.util.find_spec("qtconsole") is not None:
        pytest.skip("qtconsole is installed here")
    run = execute(kc, "%qtconsole")
    assert run.content["ename"] == "UsageError"
    assert "pip install qtconsole" in run.content["evalue"]
