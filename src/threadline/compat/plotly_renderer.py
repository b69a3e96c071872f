"""plotly's default renderer: the one it picks under ipykernel.

Theory of operation
-------------------
plotly chooses its default renderer once, when ``plotly.io._renderers`` is
first imported. It picks ``plotly_mimetype`` (the front end draws the figure
with its own plotly extension) only if the shell class is called
``ZMQInteractiveShell`` *and* is defined in a module under ``ipykernel.``;
otherwise it falls back to ``plotly_mimetype+notebook``, which also sends
plotly.js itself (3.5 MB) with the first figure. threadline's shell is not
defined in ipykernel, so when that module has been imported
(``after_import``) and plotly fell back only because of the module name, the
choice ipykernel gets is set. An explicit choice -- ``PLOTLY_RENDERER``, or an
environment plotly detected (VS Code, Colab...) -- yields another value and is
left alone. A plotly imported before the kernel started keeps its choice.
"""

from __future__ import annotations

import os
from types import ModuleType

from threadline.after_import import after_import

_MODULE = "plotly.io._renderers"
_FALLBACK = "plotly_mimetype+notebook"
_UNDER_IPYKERNEL = "plotly_mimetype"


def _choose_like_ipykernel(module: ModuleType) -> None:
    renderers = getattr(module, "renderers", None)
    if renderers is None or os.environ.get("PLOTLY_RENDERER"):
        return
    if renderers.default == _FALLBACK:
        renderers.default = _UNDER_IPYKERNEL


def install_plotly_renderer_choice() -> None:
    """Adjust plotly's default renderer when it is imported. Idempotent."""
    after_import(_MODULE, _choose_like_ipykernel)
