"""IPython-style configuration: options, profiles and config files, under ipykernel's names.

Theory of operation
-------------------
``IPKernelApp`` is a traitlets application named as ipykernel's is, because
the name *is* the interface: configuration files say ``c.IPKernelApp.x``,
libraries test ``"IPKernelApp" in get_ipython().config`` (polars, older tqdm),
and traitlets matches sections by class name. It is IPython's own
``BaseIPythonApplication`` (profile directory, ``ipython_config.py`` and
``ipython_kernel_config.py`` found in the profile, in ``sys.prefix/etc/ipython``
and ``/etc/ipython``, exactly as ipykernel finds them) plus
``InteractiveShellApp`` (``exec_lines``, ``exec_files``, ``code_to_run``,
``extensions``, ``--matplotlib``, startup files, the default extension
``storemagic``). It does not run the kernel: ``threadline.app`` builds the
kernel with this app as the shell's configuration parent, then calls
``run_startup`` on the main thread before the first request is served.

The command line is tolerant, as a kernel started by someone else's tool must
be: ``configure`` keeps the options IPython knows (``--Class.trait=value``,
the aliases and flags of ipykernel) and returns the others as notes to log.
A known setting with a value of the wrong type (``--InteractiveShell.autocall=x``)
stops the kernel with a one-line error, as in ipykernel: it is detected only when
the shell applies it, and a kernel half-configured would be worse.

Thread safety: everything here runs on the main thread, before the kernel
serves its first request.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from IPython.core.application import BaseIPythonApplication, base_aliases, base_flags
from IPython.core.profiledir import ProfileDir
from IPython.core.shellapp import InteractiveShellApp, shell_aliases, shell_flags
from traitlets import Bool, CaselessStrEnum, Dict, Integer, Unicode
from traitlets.config.loader import KVArgParseConfigLoader

from threadline.compat.zmqshell import ZMQInteractiveShell

log = logging.getLogger("threadline.config")

#: ipykernel's own aliases (``--ip``, ports, ``-f``, ``--transport``)
KERNEL_ALIASES: dict[str, str] = {
    "ip": "IPKernelApp.ip",
    "hb": "IPKernelApp.hb_port",
    "shell": "IPKernelApp.shell_port",
    "iopub": "IPKernelApp.iopub_port",
    "stdin": "IPKernelApp.stdin_port",
    "control": "IPKernelApp.control_port",
    "f": "IPKernelApp.connection_file",
    "transport": "IPKernelApp.transport",
    # jupyter_client's Session options: accepted; the key comes from the connection file
    "ident": "Session.session",
    "user": "Session.username",
    "keyfile": "Session.keyfile",
}

KERNEL_FLAGS: dict[str, tuple[dict[str, Any], str]] = {
    "no-stdout": ({"IPKernelApp": {"no_stdout": True}}, "redirect stdout to the null device"),
    "no-stderr": ({"IPKernelApp": {"no_stderr": True}}, "redirect stderr to the null device"),
    "pylab": ({"IPKernelApp": {"pylab": "auto"}}, "pre-load matplotlib and numpy"),
    "trio-loop": ({"IPKernelApp": {"trio_loop": True}}, "accepted; trio is %autoawait trio in threadline"),
    "secure": ({}, "accepted for ipykernel compatibility; the connection file's key is used"),
    "no-secure": ({}, "accepted for ipykernel compatibility; the connection file's key is used"),
}

ALIASES: dict[str, str] = {**base_aliases, **KERNEL_ALIASES, **shell_aliases}
FLAGS: dict[str, Any] = {**base_flags, **KERNEL_FLAGS, **shell_flags}

#: IPKernelApp settings ipykernel has that threadline accepts and does not act on. Where to
#: listen is the connection file's business (or, without one, threadline's own --ip,
#: --transport and port options, which the command line reads before IPython is imported).
WITHOUT_EFFECT = (
    "ip",
    "transport",
    "hb_port",
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "no_stdout",
    "no_stderr",
    "trio_loop",
    "kernel_class",
    "outstream_class",
    "displayhook_class",
)


class IPKernelApp(BaseIPythonApplication, InteractiveShellApp):  # type: ignore[misc]
    """threadline's configuration, named as ipykernel's application (config files, polars, tqdm)."""

    name = "ipython-kernel"  # so the profile's config file is ipython_kernel_config.py
    description = "threadline, configured like IPython's kernel"
    aliases = Dict(ALIASES)
    flags = Dict(FLAGS)
    classes = [ZMQInteractiveShell, ProfileDir]

    # As ipykernel's -f sets it (threadline's own -f does; "IPKernelApp" in config is then true).
    connection_file = Unicode("", help="the JSON connection file").tag(config=True)
    # Honoured: False is threadline's --no-capture-fd.
    capture_fd_output = Bool(True, help="capture output written to file descriptors 1 and 2").tag(config=True)
    # Accepted for ipykernel compatibility (see WITHOUT_EFFECT).
    ip = Unicode("").tag(config=True)
    transport = CaselessStrEnum(["tcp", "ipc"], default_value="tcp").tag(config=True)
    hb_port = Integer(0).tag(config=True)
    shell_port = Integer(0).tag(config=True)
    iopub_port = Integer(0).tag(config=True)
    stdin_port = Integer(0).tag(config=True)
    control_port = Integer(0).tag(config=True)
    no_stdout = Bool(False).tag(config=True)
    no_stderr = Bool(False).tag(config=True)
    trio_loop = Bool(False).tag(config=True)
    quiet = Bool(True).tag(config=True)
    kernel_class = Unicode("").tag(config=True)
    outstream_class = Unicode("").tag(config=True)
    displayhook_class = Unicode("").tag(config=True)
    parent_handle = Integer(0).tag(config=True)
    interrupt = Integer(0).tag(config=True)

    def init_crash_handler(self) -> None:
        """Keep Python's excepthook: the kernel reports its own failures to its log."""

    def init_profile_dir(self) -> None:
        """IPython's, except that a profile that does not exist is logged and the default one used
        (ipykernel stops)."""
        try:
            super().init_profile_dir()
        except SystemExit:
            location = self.config.ProfileDir.pop("location", None)
            missing: str = f"directory {location!r}" if location else repr(self.profile)  # type: ignore[has-type]
            log.error("profile %s not found; using the default profile", missing)
            self.profile = "default"
            super().init_profile_dir()

    def shell_options(self) -> dict[str, Any]:
        """Keyword arguments for the shell, so it is configured from this app, as ipykernel's is."""
        return {"parent": self, "profile_dir": self.profile_dir}

    def run_startup(self, shell: ZMQInteractiveShell) -> None:
        """Main thread, after the kernel started: matplotlib, extensions, startup code.

        In ipykernel's order: ``--matplotlib``/``--pylab``/``--gui``, then the
        extensions (``storemagic`` first), then startup files, ``exec_lines``,
        ``exec_files``, ``code_to_run``/``module_to_run``. Output has no cell
        yet and goes to the kernel's log; so do tracebacks.
        """
        self.shell = shell
        shell.configurables.append(self)
        with _tracebacks_to_stderr(shell):
            self.init_gui_pylab()
            self.init_extensions()
            self.init_code()

    def unused_settings(self) -> list[str]:
        """Settings given that threadline accepts but does not act on (for the log)."""
        section = self.config.get("IPKernelApp", {})
        return [f"IPKernelApp.{name}" for name in WITHOUT_EFFECT if name in section]


@contextlib.contextmanager
def _tracebacks_to_stderr(shell: ZMQInteractiveShell) -> Iterator[None]:
    """Before the first request a traceback has no cell: print it to stderr, the kernel's log.

    ipykernel does so for the ``--matplotlib`` set-up; its other startup tracebacks
    go to IOPub with no parent, where no front end shows them.
    """

    def print_traceback(etype: Any, evalue: Any, stb: list[str]) -> None:
        print(shell.InteractiveTB.stb2text(stb), file=sys.stderr)

    shell._showtraceback = print_traceback  # type: ignore[method-assign]
    try:
        yield
    finally:
        del shell._showtraceback


def split_options(argv: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """Group ``argv`` into options IPython knows (each with its value) and the rest.

    Known: ``--Class.trait[=value]`` and ipykernel's aliases and flags, with one
    or two dashes; an alias's value may follow as the next word.
    """
    known: list[list[str]] = []
    unknown: list[str] = []
    words = list(argv)
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        name, has_value, _ = word.lstrip("-").partition("=")
        takes_value = name in ALIASES or ("." in name and not name.startswith("."))
        next_is_value = index < len(words) and not words[index].startswith("-")
        if not word.startswith("-") or not name or not (takes_value or name in FLAGS):
            if word.startswith("-") and not has_value and next_is_value:
                word = f"{word} {words[index]}"
                index += 1
            unknown.append(word)
            continue
        group = [word]
        if takes_value and not has_value and next_is_value:
            group.append(words[index])
            index += 1
        known.append(group)
    return known, unknown


def _parses(group: list[str]) -> bool:
    """Whether traitlets accepts this one option (argparse complains on stderr; keep that quiet)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            KVArgParseConfigLoader(group, ALIASES, FLAGS, log=log).load_config()
    except (SystemExit, Exception):
        return False
    return True


def configure(argv: Sequence[str], *, connection_file: str) -> tuple[IPKernelApp, list[str]]:
    """The kernel's IPython configuration from ``argv``, profile and config files.

    Returns the app and notes for the log (options ignored, settings without effect).
    """
    known, unknown = split_options(argv)
    accepted: list[str] = []
    notes = [f"ignored unknown command-line option {word!r}" for word in unknown]
    for group in known:
        if _parses(group):
            accepted += group
        else:
            notes.append(f"ignored malformed command-line option {' '.join(group)!r}")
    app = IPKernelApp.instance(log=log)
    app.initialize(accepted)
    # As ipykernel's -f alias does; it is also what makes "IPKernelApp" in config true.
    app.connection_file = app.config.IPKernelApp.connection_file = os.path.abspath(connection_file)
    notes += [f"{name} is accepted but has no effect in threadline" for name in app.unused_settings()]
    return app, notes
