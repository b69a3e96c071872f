"""The command line: launch a kernel, or install its kernelspec.

threadline install [--user | --sys-prefix | --prefix PATH] [--[no-]provisioner]
python -m threadline -f CONNECTION_FILE       (what the kernelspec runs)
threadline [--ip ADDRESS] [--encrypt]         (writes its own connection file)
threadline --version

The kernelspec declares CurveZMQ transport encryption (``"supported_encryption":
["curve"]``) where this pyzmq's libzmq can do it; a kernel manager then writes
the key pair into the connection file (see ``threadline.io.curve``). A kernel
about to talk in plain text beyond this host says so at start, and what to do.
"""

from __future__ import annotations

# Only what launching needs before the sockets are bound (kernel/boot.py):
# the rest is imported where it is used.
import argparse
import gc
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.compat.kernelapp import IPKernelApp
    from threadline.kernel.kernel import Kernel

from threadline import __version__

KERNEL_NAME = "threadline"
DISPLAY_NAME = "Python 3 (threadline)"


def kernel_spec(*, provisioner: bool = False) -> dict[str, object]:
    """The kernel.json of the installed kernelspec.

    ``provisioner``: name threadline's kernel provisioner (``threadline.provisioner``),
    for a kernelspec that only a Jupyter of this environment reads.
    """
    import importlib.util

    from threadline.io import curve_available

    metadata: dict[str, object] = {
        # JupyterLab enables its debugger for a kernel only when its spec says so.
        "debugger": importlib.util.find_spec("debugpy") is not None,
    }
    if curve_available():
        # jupyter_client >= 8.9 provisions CurveZMQ keys only for a kernel that
        # says it can use them (transport_encryption "auto"; "required" refuses
        # any other). Declared only where this libzmq can encrypt.
        metadata["supported_encryption"] = ["curve"]
    if provisioner:
        from threadline.provisioner import NAME

        metadata["kernel_provisioner"] = {"provisioner_name": NAME, "config": {}}
    return {
        "argv": [sys.executable, "-m", "threadline", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",
        "env": {},
        "metadata": metadata,
    }


def install(
    *,
    user: bool,
    prefix: str | None,
    name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
    provisioner: bool | None = None,
) -> str:
    """Write the kernelspec through jupyter_client; returns where it went.

    ``provisioner`` None: name threadline's provisioner where it is safe, see
    ``provisioner_by_default``.
    """
    import json
    import tempfile
    from pathlib import Path

    from jupyter_client.kernelspec import KernelSpecManager

    if provisioner is None:
        provisioner = provisioner_by_default(user=user, prefix=prefix)
    spec = kernel_spec(provisioner=provisioner)
    spec["display_name"] = display_name
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "kernel.json").write_text(json.dumps(spec, indent=2))
        destination: str = KernelSpecManager().install_kernel_spec(
            scratch, kernel_name=name, user=user, prefix=prefix
        )
    return destination


def provisioner_by_default(*, user: bool, prefix: str | None) -> bool:
    """Whether a kernelspec installed there names threadline's provisioner unless told.

    Only inside this environment (``--sys-prefix``): the Jupyter that reads it
    is this environment's, which can load the provisioner. A ``--user`` or
    system-wide kernelspec may be read by a Jupyter installed elsewhere, and
    ``jupyter_client`` does not list a kernel whose provisioner it cannot load.
    And only where the provisioner's entry point is installed (not, say, from
    a source tree on ``PYTHONPATH``).
    """
    if user or prefix is None or os.path.realpath(prefix) != os.path.realpath(sys.prefix):
        return False
    return provisioner_installed()


def provisioner_installed() -> bool:
    """This environment's ``jupyter_client`` can load threadline's provisioner (its entry point)."""
    from importlib.metadata import entry_points

    from threadline.provisioner import NAME

    return any(entry.name == NAME for entry in entry_points(group="jupyter_client.kernel_provisioners"))


def found_instead(name: str, destination: str) -> str | None:
    """Where Jupyter finds kernelspec ``name`` if not at ``destination`` (e.g. ``python3``
    installed with --user, in an environment whose own python3 spec Jupyter prefers)."""
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs().get(name)
    if found is None or os.path.realpath(found) == os.path.realpath(destination):
        return None
    return str(found)


def write_connection_file(path: Path, data: bytes) -> None:
    """Write a connection file readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def configure_logging(stream: TextIO, level: str) -> None:
    """The kernel's own log goes to the process's original stderr.

    Only the ``threadline`` logger is configured: the root logger stays the
    user's, so ``logging.warning(...)`` in a cell is shown in the cell, as in
    any Jupyter kernel.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[threadline %(levelname)s %(asctime)s %(name)s] %(message)s"))
    logger = logging.getLogger("threadline")
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False


def launch(args: argparse.Namespace, ipython_options: list[str]) -> int:
    """Start the kernel: the sockets first, IPython after (see kernel/boot.py).

    ``ipython_options`` are the IPython-style options (``--Class.trait=value``,
    ``--profile``...), applied with the profile's config files by
    ``threadline.compat`` once IPython is imported.

    Python's cyclic garbage collector waits while the kernel is built. The
    start-up makes little garbage (under a thousand objects, of ~50,000 it
    leaves tracked), but with the collector on, each young collection examines
    the last ones' survivors again: 64-66 collections and 7.5-9.5 ms of ``import
    threadline.kernel.kernel`` alone, 77 collections to a served kernel;
    paused, the kernel serves ~10 ms sooner (measured, 12 starts each). Then
    ``gc.freeze()`` and ``gc.unfreeze()`` file everything built so far in the
    oldest generation, where those collections would have moved it one pass
    at a time, without examining an object (two list splices); the first full
    collection examines it, as in any kernel. Not left frozen: a frozen object
    is in no generation, so ``gc.get_referrers`` and ``gc.get_objects`` miss
    it -- the user namespace among them. The user's start-up code
    (``exec_lines``, startup files) runs after, with the collector on.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        started = _build(args, ipython_options)
    finally:
        gc.freeze()
        gc.unfreeze()
        if collecting:
            gc.enable()
    if isinstance(started, int):
        return started
    kernel, config = started
    config.run_startup(kernel.shell)
    return kernel.run()


def _build(args: argparse.Namespace, ipython_options: list[str]) -> tuple[Kernel, IPKernelApp] | int:
    """The kernel, serving, and its configuration; or the exit status if it cannot start."""
    entered = time.perf_counter()
    # First of all, before pyzmq is even imported: the client's connections
    # are accepted from here on (io/listening.py says why this matters).
    from threadline.io.listening import listen_early

    listeners = listen_early(args.connection_file)
    listening = time.perf_counter()
    from pathlib import Path

    from threadline.kernel.boot import Boot, KernelConfigError
    from threadline.protocol import ConnectionInfo, LocalProtocolError

    if args.connection_file:
        path = Path(args.connection_file)
        try:
            connection = ConnectionInfo.from_json(path.read_bytes())
        except OSError as exc:
            print(f"threadline: cannot read the connection file: {exc}", file=sys.stderr)
            return 2
        except LocalProtocolError as exc:
            print(f"threadline: {path}: {exc}", file=sys.stderr)
            return 2
        if args.encrypt and not connection.encrypted:
            print(
                "threadline: --encrypt is for a kernel that writes its own connection file; with -f "
                "the keys come from the file (a kernel manager's transport_encryption). Ignored.",
                file=sys.stderr,
            )
    else:
        import secrets

        from jupyter_core.paths import jupyter_runtime_dir

        public_key = secret_key = None
        if args.encrypt:
            from threadline.io.curve import CURVE_UNAVAILABLE_REASON, new_key_pair

            if CURVE_UNAVAILABLE_REASON is not None:
                print(f"threadline: cannot --encrypt: {CURVE_UNAVAILABLE_REASON}", file=sys.stderr)
                return 2
            public_key, secret_key = new_key_pair()
        connection = ConnectionInfo(
            ip=args.ip,
            transport=args.transport,
            key=secrets.token_hex(32),
            kernel_name=KERNEL_NAME,
            curve_publickey=public_key,
            curve_secretkey=secret_key,
        ).with_ports({channel: getattr(args, channel) for channel in CHANNEL_OPTIONS})
        path = Path(jupyter_runtime_dir(), f"kernel-threadline-{os.getpid()}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        boot = Boot(
            connection,
            allow_empty_key=args.allow_empty_key,
            max_message_size=args.max_message_size,
            listeners=listeners,
        )
    except KernelConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return 2
    boot.mark("main", entered)
    if listeners:
        boot.mark("listening", listening)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(BOOT_SWITCH_INTERVAL)
    boot.start()  # from here on, the IO thread answers kernel_info and holds the rest

    # IPython: the slow part of the start-up
    from traitlets import TraitError

    from threadline import compat
    from threadline.kernel.kernel import Kernel

    config, notes = compat.configure(ipython_options, connection_file=str(path.resolve()))
    boot.mark("imports_done")
    try:
        kernel = Kernel(
            connection,
            capture_fd=not args.no_capture_fd and config.capture_fd_output,
            comm_handling=args.comm_handling,
            boot=boot,
            shell_class=compat.ZMQInteractiveShell,
            shell_options=config.shell_options(),
        )
    except TraitError as exc:
        print(f"threadline: bad configuration: {exc}", file=sys.stderr)
        return 2
    compat.attach(kernel, str(path.resolve()))
    bound = kernel.start()
    configure_logging(kernel.log_stream, args.log_level)
    log = logging.getLogger("threadline.app")
    exposure = bound.exposure_warning()
    if exposure is not None:
        log.warning("%s", exposure)
    if bound.encrypted:
        log.info("transport encryption: every socket is a CurveZMQ server")
    for note in notes:
        logging.getLogger("threadline.config").warning("%s", note)
    if not args.connection_file:
        write_connection_file(path, bound.to_json())
        print(f"threadline: connect with --existing {path}", file=kernel.log_stream)
    sys.setswitchinterval(switch_interval)
    return kernel, config


#: While the main thread imports IPython, the GIL goes to the IO thread within
#: this many seconds of its asking (Python's default: 5 ms), so that answering
#: the client's first kernel_info does not wait 5 ms at every hand-back.
BOOT_SWITCH_INTERVAL = 0.0002

#: ipykernel's port options (used when no connection file is given): option -> channel.
CHANNEL_OPTIONS = ("shell", "iopub", "stdin", "control", "hb")


def build_parser(*, with_commands: bool = True) -> argparse.ArgumentParser:
    """The command line. Without ``with_commands``: only the kernel's own options (for
    ``parse_known_args``: every other word is an IPython-style option, see threadline.compat)."""
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="A Jupyter kernel for Python in which every thread can print, display, "
        "read input and drive widgets. IPython-style options (--Class.trait=value, --profile, "
        "--matplotlib...) are accepted too; unknown ones are logged and ignored.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"threadline {__version__}")
    parser.add_argument("-f", "--connection-file", help="the connection file written by the Jupyter client")
    parser.add_argument("--ip", default="127.0.0.1", help="address to bind when no connection file is given")
    parser.add_argument(
        "--encrypt",
        action="store_true",
        help="when no connection file is given: make a CurveZMQ key pair, encrypt every socket "
        "with it, and write it into the connection file (for clients with jupyter_client >= 8.9)",
    )
    parser.add_argument(
        "--transport", default="tcp", type=str.lower, choices=["tcp", "ipc"], help="without a connection file"
    )
    for channel in CHANNEL_OPTIONS:
        parser.add_argument(f"--{channel}", type=int, default=0, help=f"{channel} port (no connection file)")
    parser.add_argument(
        "--allow-empty-key", action="store_true", help="accept a connection file without a signing key"
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=256 * 1024 * 1024,
        help="largest incoming message in bytes; larger ones are dropped before parsing",
    )
    parser.add_argument(
        "--no-capture-fd",
        action="store_true",
        help="leave file descriptors 1 and 2 alone (C-level output then goes to the kernel's log)",
    )
    parser.add_argument(
        "--comm-handling",
        choices=["concurrent", "serial"],
        default="concurrent",
        help="handle comm messages as they arrive, even while a cell runs (concurrent), "
        "or only between cells (serial)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        type=str.lower,
        choices=["debug", "info", "warning", "error", "critical"],
    )
    if not with_commands:
        return parser
    sub = parser.add_subparsers(dest="command")
    installer = sub.add_parser("install", help="install the 'threadline' kernelspec")
    where = installer.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="into sys.prefix (this environment)")
    where.add_argument("--prefix", help="into PREFIX/share/jupyter/kernels")
    installer.add_argument("--name", default=KERNEL_NAME)
    installer.add_argument("--display-name", default=DISPLAY_NAME)
    installer.add_argument(
        "--provisioner",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="name threadline's kernel provisioner, whose clients reach the kernel without a "
        "reconnect wait (default: with --sys-prefix only; a Jupyter that cannot load it does "
        "not list the kernel)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] != ["install"] and not {"-h", "--help", "--version"} & set(words):
        # Launching a kernel: what is not ours goes to the IPython-style parser.
        args, ipython_options = build_parser(with_commands=False).parse_known_args(words)
        return launch(args, ipython_options)
    args = build_parser().parse_args(words)
    if args.command == "install":
        prefix = sys.prefix if args.sys_prefix else args.prefix
        if args.provisioner and not provisioner_installed():
            print(
                "threadline: --provisioner: this environment has no entry point for it "
                "(install the package, e.g. pip install -e .); the kernelspec names none.",
                file=sys.stderr,
            )
            args.provisioner = False
        destination = install(
            user=args.user,
            prefix=prefix,
            name=args.name,
            display_name=args.display_name,
            provisioner=args.provisioner,
        )
        print(f"Installed kernelspec {args.name} in {destination}")
        shadow = found_instead(args.name, destination)
        if shadow is not None:
            print(
                f"Note: Jupyter finds another {args.name!r} kernelspec first, in {shadow}; "
                "this one is not used. Inside an environment, install with --sys-prefix.",
                file=sys.stderr,
            )
        from threadline.io.curve import CURVE_UNAVAILABLE_REASON

        if CURVE_UNAVAILABLE_REASON is not None:
            print(
                "The kernelspec does not declare transport encryption (supported_encryption): "
                f"{CURVE_UNAVAILABLE_REASON}. A manager with transport_encryption='required' will "
                "refuse to start it.",
                file=sys.stderr,
            )
        return 0
    return launch(args, [])
