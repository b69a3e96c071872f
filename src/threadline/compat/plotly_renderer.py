"""plotly's default renderer: the one it picks under ipykernel.

Theory of operation
-------------------
plotly chooses its default renderer once, when ``plotly.io._renderers`` is
first imported. It picks ``plotly_mimetype`` (the front end draws the figure
with its own plotly extension) only if the shell class is called
``ZMQInteractiveShell`` *and* is defined in a module under ``ipykernel.``;
otherwise it falls back to ``plotly_mimetype+notebook``, which also sends
plotly.js itself (3.5 MB) with the first figure. threadline's shell is not
defined in ipykernel, so a small import hook (the same device as
``threadline.shell.widgets``) waits for that module and, when plotly fell
back only because of the module name, sets the choice ipykernel gets. An
explicit choice -- ``PLOTLY_RENDERER``, or an environment plotly detected
(VS Code, Colab...) -- yields another value and is left alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_MODULE = "plotly.io._renderers"
_FALLBACK = "plotly_mimetype+notebook"
_UNDER_IPYKERNEL = "plotly_mimetype"


def _choose_like_ipykernel(module: ModuleType) -> None:
    renderers = getattr(module, "renderers", None)
    if renderers is None or os.environ.get("PLOTLY_RENDERER"):
        return
    if renderers.default == _FALLBACK:
        renderers.default = _UNDER_IPYKERNEL


class _AdjustOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of plotly's renderer module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                _adjust_after_exec(spec.loader)
                return spec
        return None


def _adjust_after_exec(loader: Any) -> None:
    original = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        original(module)
        _choose_like_ipykernel(module)

    loader.exec_module = exec_module


def install_plotly_renderer_choice() -> None:
    """Adjust plotly's default renderer when it is imported (at once if it already was). Idempotent."""
    module = sys.modules.get(_MODULE)
    if module is not None:
        return  # imported before the kernel started: its choice stands
    if not any(isinstance(finder, _AdjustOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AdjustOnImport())
