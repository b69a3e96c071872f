"""ipykernel's kernel magics, sending what ipykernel sends.

Theory of operation
-------------------
These magics exist because a kernel has no terminal: an editor, a pager and a
screen belong to the front end. Each one sends what ipykernel 7 sends, so
front ends treat them alike: ``%edit`` an ``edit_magic`` payload with an
absolute path, ``%less``/``%man`` a ``page`` payload (through IPython's pager
hook, which the shell turns into the payload), ``%autosave`` the classic
notebook's JavaScript call plus a line of text, ``%clear`` the terminal's
clear sequence, ``%connect_info`` the connection file with instructions.

Deliberate differences (docs/compatibility.md): ``%connect_info`` never shows
Curve keys, and ``%qtconsole`` says so when qtconsole is not installed
(ipykernel starts a process that fails unseen).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from IPython.core import page
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magics import CodeMagics, MacroToEdit
from IPython.display import Javascript, display
from IPython.utils import openpy
from IPython.utils.process import arg_split

#: Connection-file fields %connect_info never prints: Curve keys stay in the file.
SECRET_FIELDS = frozenset({"curve_secretkey", "curve_publickey", "curve_serverkey"})


def connection_file_of(shell: Any) -> str | None:
    path: str | None = getattr(getattr(shell, "kernel", None), "connection_file", None)
    return path


@magics_class
class KernelMagics(Magics):  # type: ignore[misc]
    """The magics ipykernel adds to IPython's."""

    @line_magic  # type: ignore[untyped-decorator]
    def edit(self, parameter_s: str = "", last_call: list[str] | None = None) -> None:
        """Open a file (or the source of an object, or history lines) in the front end's editor.

        Usage: ``%edit [-n LINE] [-p] [-r] [target]`` -- as IPython's ``%edit``,
        except that the front end opens the editor; the edited file is not run.
        """
        opts, args = self.parse_options(parameter_s, "prn:")
        try:
            filename, line_number, _ = CodeMagics._find_edit_target(
                self.shell, args, opts, last_call or ["", ""]
            )
        except MacroToEdit:
            print("Macro editing not yet implemented in 2-process model.")
            return
        if filename is None:
            return
        payload = {
            "source": "edit_magic",
            # absolute: the front end's working directory may differ from the kernel's
            "filename": str(Path(filename).resolve()),
            "line_number": line_number,
        }
        self.shell.payload_manager.write_payload(payload)

    @line_magic  # type: ignore[untyped-decorator]
    def clear(self, arg_s: str) -> None:
        """Clear the terminal (sends the terminal's clear sequence, as ipykernel does)."""
        self.shell.system("cls" if os.name == "nt" else "clear")

    @line_magic  # type: ignore[untyped-decorator]
    def less(self, arg_s: str) -> None:
        """Show a file in the pager; ``.py`` files are syntax-highlighted."""
        if not arg_s:
            raise UsageError("Missing filename.")
        if arg_s.endswith(".py"):
            text = self.shell.pycolorize(openpy.read_py_file(arg_s, skip_encoding_cookie=False))
        else:
            with open(arg_s) as handle:
                text = handle.read()
        page.page(text)

    @line_magic  # type: ignore[untyped-decorator]
    def more(self, arg_s: str) -> None:
        """Show a file in the pager (same as ``%less``)."""
        self.less(arg_s)

    @line_magic  # type: ignore[untyped-decorator]
    def man(self, arg_s: str) -> None:
        """Show the man page of a command in the pager."""
        page.page(self.shell.getoutput(f"man {arg_s} | col -b", split=False))

    @line_magic  # type: ignore[untyped-decorator]
    def connect_info(self, arg_s: str) -> None:
        """Print how to connect another client (``jupyter console --existing``) to this kernel.

        Shows the connection file as ipykernel does, including its signing key
        (a client needs it), but never Curve keys: those stay in the file.
        """
        from jupyter_core.paths import jupyter_runtime_dir  # here: it is slow to import

        path = connection_file_of(self.shell)
        if not path:
            raise UsageError("this kernel was started without a connection file")
        try:
            with open(path) as handle:
                info = json.load(handle)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the connection file {path}: {exc}") from None
        hidden = sorted(SECRET_FIELDS & info.keys())
        for field in hidden:
            del info[field]
        shown = path
        if str(Path(path).parent) == jupyter_runtime_dir():
            shown = Path(path).name
        print(json.dumps(info, indent=2) + "\n")
        if hidden:
            print(f"(Curve keys are not shown; connect with the file itself: --existing {path})\n")
        print(
            "Paste the above JSON into a file, and connect with:\n"
            "    $> jupyter <app> --existing <file>\n"
            "or, if you are local, you can connect with just:\n"
            f"    $> jupyter <app> --existing {shown}\n"
            "or even just:\n"
            "    $> jupyter <app> --existing\n"
            "if this is the most recent Jupyter kernel you have started."
        )

    @line_magic  # type: ignore[untyped-decorator]
    def qtconsole(self, arg_s: str) -> None:
        """Open a Qt console connected to this kernel (needs the qtconsole package)."""
        if importlib.util.find_spec("qtconsole") is None:
            raise UsageError(
                "%qtconsole needs the qtconsole package, which is not installed here (pip install qtconsole)."
            )
        path = connection_file_of(self.shell)
        if not path:
            raise UsageError("this kernel was started without a connection file")
        command = "from qtconsole import qtconsoleapp; qtconsoleapp.main()"
        subprocess.Popen(
            [sys.executable, "-c", command, "--existing", path, *arg_split(arg_s, os.name == "posix")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @line_magic  # type: ignore[untyped-decorator]
    def autosave(self, arg_s: str) -> None:
        """Set the notebook's autosave interval in seconds (``%autosave 0`` disables it).

        Only the classic notebook acts on this; JupyterLab and Notebook 7 ignore it.
        """
        try:
            interval = int(arg_s)
        except ValueError:
            raise UsageError(f"%autosave requires an integer, got {arg_s!r}") from None
        display(
            Javascript(f"IPython.notebook.set_autosave_interval({1000 * interval})"),
            include=["application/javascript"],
        )
        print(f"Autosaving every {interval} seconds" if interval else "Autosave disabled")
