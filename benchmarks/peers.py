"""The kernels under test, each in its own virtual environment built from PyPI.

Theory of operation
-------------------
threadline runs from the environment the benchmark runs in (the project's
``.venv``). Every peer -- ipykernel, xeus-python, async-kernel -- gets a
virtual environment of its own, created with the same base interpreter (so
every kernel runs the same Python) and filled by ``pip install`` from PyPI
with the peer's pinned requirement plus what the example notebooks import
(ipywidgets, distributed), so that a scenario runs the same code everywhere.

The environments live in a cache directory (``~/.cache/threadline/bench-peers``
unless ``--peers-dir`` says otherwise) and are reused while their stamp file
matches the requirements and the interpreter; building one takes a minute or
two, reusing it nothing. A peer whose environment cannot be built (no wheel for
this platform, no network) is reported with pip's last lines and left out of
the run: it is never fatal to the others.

Each kernel is launched the way its own kernelspec launches it (the argv of
the kernel.json its wheel installs), with the interpreter of its environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: What the example notebooks import, installed beside each peer kernel.
NOTEBOOK_REQUIREMENTS = ("ipywidgets>=8.1", "distributed>=2024.1")


@dataclass(frozen=True)
class Peer:
    """A kernel to measure: how to install it and how its kernelspec launches it."""

    name: str
    #: pip requirements; empty for threadline (the environment the benchmark runs in).
    requirements: tuple[str, ...]
    #: The kernelspec's argv after the interpreter.
    argv: tuple[str, ...]
    #: The module the kernel is, for the "imports" figure of the start-up breakdown.
    module: str
    #: The distribution whose version the report names.
    distribution: str
    interrupt_mode: str = "signal"
    env: dict[str, str] = field(default_factory=dict)


THREADLINE = Peer(
    "threadline",
    (),
    ("-m", "threadline", "-f", "{connection_file}"),
    module="threadline.kernel.kernel",
    distribution="threadline",
)

PEERS: tuple[Peer, ...] = (
    THREADLINE,
    Peer(
        "ipykernel",
        ("ipykernel==7.4.*", *NOTEBOOK_REQUIREMENTS),
        ("-m", "ipykernel_launcher", "-f", "{connection_file}"),
        module="ipykernel.kernelapp",
        distribution="ipykernel",
    ),
    Peer(
        "xeus-python",
        ("xeus-python==0.19.*", *NOTEBOOK_REQUIREMENTS),
        ("-m", "xpython_launcher", "-f", "{connection_file}"),
        # ``xpython`` itself imports only the C++ extension; launching it imports
        # IPython through xeus-python's shell, which is the comparable figure.
        module="xpython, xeus_python_shell.shell",
        distribution="xeus-python",
    ),
    Peer(
        "async-kernel",
        ("async-kernel==0.23.*", *NOTEBOOK_REQUIREMENTS),
        ("-m", "async_kernel", "start", "--connection_file={connection_file}", "--name=async"),
        module="async_kernel",
        distribution="async-kernel",
        interrupt_mode="message",
    ),
)

PEER_NAMES = tuple(peer.name for peer in PEERS)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "threadline" / "bench-peers"


def base_python() -> str:
    """The interpreter every environment is made from: the one under our own venv."""
    return str(getattr(sys, "_base_executable", None) or sys.executable)


@dataclass
class Installed:
    """A peer ready to launch (``python`` set) or not installable (``error`` set)."""

    peer: Peer
    python: str | None = None
    version: str = ""
    error: str = ""

    def kernel_argv(self) -> list[str]:
        assert self.python is not None
        return [self.python, *self.peer.argv]


def _stamp(peer: Peer) -> dict[str, object]:
    return {"requirements": list(peer.requirements), "python": base_python(), "hexversion": sys.hexversion}


def ensure(peer: Peer, cache: Path, *, log: bool = True) -> Installed:
    """The peer's environment, built (or reused) now; never raises for a failed install."""
    if not peer.requirements:
        return Installed(peer, sys.executable, _version(sys.executable, peer.distribution))
    where = cache / peer.name
    python = where / "bin" / "python"
    stamp_file = where / ".bench-peer.json"
    try:
        if stamp_file.exists() and json.loads(stamp_file.read_text()) == _stamp(peer) and python.exists():
            return Installed(peer, str(python), _version(str(python), peer.distribution))
    except (OSError, ValueError):
        pass
    if log:
        wanted = " ".join(peer.requirements)
        print(f"building the {peer.name} environment in {where} ({wanted}) ...", flush=True)
    shutil.rmtree(where, ignore_errors=True)
    where.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [base_python(), "-m", "venv", str(where)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *peer.requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
            error = f"`{' '.join(step[2:5])} ...` failed ({done.returncode}): " + " | ".join(tail)
            shutil.rmtree(where, ignore_errors=True)
            return Installed(peer, error=error)
    stamp_file.write_text(json.dumps(_stamp(peer)))
    return Installed(peer, str(python), _version(str(python), peer.distribution))


def _version(python: str, distribution: str) -> str:
    done = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def select(names: list[str] | None) -> tuple[Peer, ...]:
    """The peers named (threadline always first), or all of them."""
    if not names:
        return PEERS
    unknown = set(names) - set(PEER_NAMES)
    if unknown:
        raise SystemExit(f"unknown peer(s): {', '.join(sorted(unknown))}; known: {', '.join(PEER_NAMES)}")
    return tuple(peer for peer in PEERS if peer is THREADLINE or peer.name in names)


def main() -> int:
    """``python -m benchmarks.peers``: build (or check) every peer's environment."""
    cache = default_cache()
    for peer in PEERS:
        installed = ensure(peer, cache)
        state = installed.python if installed.python else f"NOT INSTALLED: {installed.error}"
        print(f"{peer.name:14} {installed.version:10} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
