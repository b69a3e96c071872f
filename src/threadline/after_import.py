"""Run a function right after a given module is first imported.

Theory of operation
-------------------
A few libraries decide something once, at import, in a way threadline must
amend: ipywidgets' ``Output`` must capture per thread (``shell.widgets``),
plotly picks its default renderer and ``ipykernel.ipkernel`` replaces
``comm.create_comm`` with its own (``threadline.compat``); and standard
modules a process may never need are patched only if it imports them:
multiprocessing's (``shell.children``), the thread pool's (``routing``), pdb
and ``getpass`` (``shell.interactive``, ``kernel.kernel``). The
kernel imports none of them itself. One finder at the front of ``sys.meta_path`` finds
nothing itself; for a watched name it asks the other finders for the real spec
and wraps the loader's ``exec_module`` so the registered functions run once
the module's code has run. Imports happen on whatever thread user code runs;
the registry is written only at a process's start (the kernel's, a
spawned child's).
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

# ``typing`` only for the type checker (see ``threadline.routing``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AfterImport = Callable[[ModuleType], None]


class _AfterImportFinder:
    # A meta path finder is anything with ``find_spec``; not derived from
    # ``importlib.abc.MetaPathFinder``, whose module imports importlib.resources
    # (2-7 ms, in the kernel and in every spawned child).
    def __init__(self) -> None:
        self.watched: dict[str, list[AfterImport]] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        functions = self.watched.get(fullname)
        if not functions:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                _run_after_exec(spec.loader, functions)
                return spec
        return None


#: Watched modules whose code is running now (their functions have not run yet).
_executing: set[str] = set()


def _run_after_exec(loader: Any, functions: list[AfterImport]) -> None:
    original = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        _executing.add(module.__name__)
        try:
            original(module)
        finally:
            _executing.discard(module.__name__)
        for function in functions:
            function(module)

    loader.exec_module = exec_module


def after_import(name: str, function: AfterImport) -> None:
    """Call ``function(module)`` when ``name`` is imported (not if it already was)."""
    finder = next((f for f in sys.meta_path if isinstance(f, _AfterImportFinder)), None)
    if finder is None:
        finder = _AfterImportFinder()
        sys.meta_path.insert(0, finder)
    functions = finder.watched.setdefault(name, [])
    if function not in functions:
        functions.append(function)


def when_imported(name: str, function: AfterImport) -> None:
    """Call ``function(module)`` now if ``name`` is imported already, else once it is."""
    module = sys.modules.get(name)
    if module is not None:
        function(module)
    else:
        after_import(name, function)


def importing(name: str) -> bool:
    """Is the watched module ``name`` being imported right now (its code still running)?

    A module that imports another on its first lines is found in ``sys.modules``
    half built by the other's functions; they can wait for their own turn."""
    return name in _executing
