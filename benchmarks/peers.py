"""The kernels under test, each in its own virtual environment built from PyPI.

Theory of operation
-------------------
Every kernel -- threadline, ipykernel, xeus-python, async-kernel -- runs from
a virtual environment of its own, created with the same base interpreter (so
every kernel runs the same Python) and filled by ``pip install`` with the
kernel plus what the example notebooks import (ipywidgets, distributed), so
that a scenario runs the same code everywhere and no kernel carries another's
packages. The peers come from PyPI, pinned; threadline is built from this
checkout (a regular, non-editable install). Its environment is not the
project's development ``.venv``: that one holds some 340 distributions (test,
lint, GUI and browser tooling) and an editable install, and what scans them --
the interpreter's start, ``importlib.metadata.entry_points()`` in the dask
workers the example notebook starts -- made threadline pay for its tooling.

The environments live in a cache directory (``~/.cache/threadline/bench-peers``
unless ``--peers-dir`` says otherwise) and are reused while their stamp file
matches the requirements and the interpreter; building one takes a minute or
two, reusing it nothing. When threadline's sources change (a digest of
``pyproject.toml`` and ``src/``), only threadline is reinstalled, a few
seconds. A peer whose environment cannot be built (no wheel for this platform,
no network) is reported with pip's last lines and left out of the run: it is
never fatal to the others. If threadline's own cannot be built, the run falls
back to the development environment and says so (``Installed.note``, kept in
the results).

Each kernel is launched the way its own kernelspec launches it (the argv of
the kernel.json its wheel installs), with the interpreter of its environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

#: What the example notebooks import, installed beside each kernel.
NOTEBOOK_REQUIREMENTS = ("ipywidgets>=8.1", "distributed>=2024.1")

#: The checkout threadline's benchmark environment is built from.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Peer:
    """A kernel to measure: how to install it and how its kernelspec launches it."""

    name: str
    #: pip requirements (from PyPI).
    requirements: tuple[str, ...]
    #: The kernelspec's argv after the interpreter.
    argv: tuple[str, ...]
    #: The module the kernel is, for the "imports" figure of the start-up breakdown.
    module: str
    #: The distribution whose version the report names.
    distribution: str
    interrupt_mode: str = "signal"
    #: Whether the launcher imports ``module`` with Python's cyclic collector
    #: paused (threadline: ``app.launch``); the "imports" figure does as it does.
    collector_paused: bool = False
    env: dict[str, str] = field(default_factory=dict)
    #: A source tree installed into the environment as well (threadline: this checkout).
    source: Path | None = None


THREADLINE = Peer(
    "threadline",
    NOTEBOOK_REQUIREMENTS,
    ("-m", "threadline", "-f", "{connection_file}"),
    module="threadline.kernel.kernel",
    distribution="threadline",
    collector_paused=True,
    source=PROJECT_ROOT,
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
    #: How this differs from the usual environment, if it does (reported with the results).
    note: str = ""

    def kernel_argv(self) -> list[str]:
        assert self.python is not None
        return [self.python, *self.peer.argv]


def _stamp(peer: Peer) -> dict[str, object]:
    return {"requirements": list(peer.requirements), "python": base_python(), "hexversion": sys.hexversion}


def _source_files(root: Path) -> list[Path]:
    """What a source tree's install is made of: pyproject.toml, README.md and src/ (no build leftovers)."""
    skip = ("__pycache__", ".egg-info")
    tree = (p for p in (root / "src").rglob("*") if p.is_file())
    kept = sorted(p for p in tree if not any(part.endswith(skip) for part in p.relative_to(root).parts))
    return [root / "pyproject.toml", root / "README.md", *kept]


def source_digest(root: Path) -> str:
    """Identifies a source tree's installable content (``_source_files``)."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def _clean_copy(root: Path) -> Iterator[str]:
    """The source tree's ``_source_files`` copied to a temporary directory.

    Built in place, setuptools would reuse the checkout's ``build/`` directory,
    where a module deleted from ``src/`` survives and would be installed.
    """
    with tempfile.TemporaryDirectory(prefix="bench-source-") as copy:
        for path in _source_files(root):
            target = Path(copy) / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        yield copy


def _pip(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]


def _run_steps(steps: list[list[str]]) -> str:
    """Run each command in turn; the first failure as a one-line report ("" if none)."""
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
            return f"`{' '.join(step[2:5])} ...` failed ({done.returncode}): " + " | ".join(tail)
    return ""


def ensure(peer: Peer, cache: Path, *, log: bool = True) -> Installed:
    """The peer's environment, built (or reused) now; never raises for a failed install."""
    where = cache / peer.name
    python = where / "bin" / "python"
    stamp_file = where / ".bench-peer.json"
    wanted = _stamp(peer)
    source = source_digest(peer.source) if peer.source is not None else None
    try:
        stamp = json.loads(stamp_file.read_text()) if stamp_file.exists() else None
    except (OSError, ValueError):
        stamp = None
    error = ""
    if stamp is not None and python.exists() and {k: stamp.get(k) for k in wanted} == wanted:
        if stamp.get("source") == source:
            return Installed(peer, str(python), _version(str(python), peer.distribution))
        # The same requirements, newer sources: reinstall the kernel alone.
        assert peer.source is not None
        if log:
            print(f"reinstalling {peer.name} from {peer.source} into {where} ...", flush=True)
        with _clean_copy(peer.source) as copy:
            error = _run_steps([_pip(python, "--no-deps", "--force-reinstall", copy)])
    else:
        if log:
            what = " ".join([*peer.requirements, *([str(peer.source)] if peer.source else [])])
            print(f"building the {peer.name} environment in {where} ({what}) ...", flush=True)
        shutil.rmtree(where, ignore_errors=True)
        where.parent.mkdir(parents=True, exist_ok=True)
        with _clean_copy(peer.source) if peer.source is not None else nullcontext("") as copy:
            sources = [copy] if copy else []
            error = _run_steps(
                [[base_python(), "-m", "venv", str(where)], _pip(python, *peer.requirements, *sources)]
            )
    if error:
        shutil.rmtree(where, ignore_errors=True)
        if peer is THREADLINE:
            if log:
                print(f"threadline's environment could not be built ({error}); using {sys.executable}")
            return development(note=f"the development environment ({sys.executable}): {error}")
        return Installed(peer, error=error)
    stamp_file.write_text(json.dumps({**wanted, "source": source}))
    return Installed(peer, str(python), _version(str(python), peer.distribution))


def development(note: str = "") -> Installed:
    """threadline as the development environment has it (``benchmarks.gui``: Qt lives only there)."""
    return Installed(THREADLINE, sys.executable, _version(sys.executable, THREADLINE.distribution), note=note)


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
