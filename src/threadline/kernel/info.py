"""What the kernel says about itself: kernel_info, connect and unknown-subshell replies.

The content does not depend on the shell, so it can be answered before the
shell exists (``kernel.boot``), and it does not change while the kernel runs,
so it is built once. Building it must not import IPython: it is answered
while the main thread is still importing it. IPython's version (for the
banner) comes from the module when it is loaded, otherwise from its
installed ``.dist-info`` directory's name, found on ``sys.path`` -- which is
where the import that is running at that moment finds it too.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from threadline import __version__
from threadline.protocol import CHANNELS, PROTOCOL_VERSION, ConnectionInfo, error_content

#: The features kernel_info declares (JEP 91). Declared here, where the early
#: answer given while the kernel boots sees them too.
SUPPORTED_FEATURES: tuple[str, ...] = ("kernel subshells",)

HELP_LINKS = [
    {"text": "Python Reference", "url": "https://docs.python.org/3/"},
    {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
    {"text": "threadline", "url": "https://pypi.org/project/threadline/"},
]


def debugpy_available() -> bool:
    """Whether debugpy can be imported (it is an optional dependency)."""
    return importlib.util.find_spec("debugpy") is not None


def kernel_info(supported_features: list[str] | tuple[str, ...] = SUPPORTED_FEATURES) -> dict[str, Any]:
    """The kernel_info_reply content, built once per feature list (debugpy's
    look-up alone costs ~30 us)."""
    key = tuple(supported_features)
    cached = _KERNEL_INFO.get(key)
    if cached is None:
        cached = _KERNEL_INFO[key] = _build(key)
    return cached


_KERNEL_INFO: dict[tuple[str, ...], dict[str, Any]] = {}


def _build(supported_features: tuple[str, ...]) -> dict[str, Any]:
    version = ".".join(str(part) for part in sys.version_info[:3])
    debugger = debugpy_available()
    features = list(supported_features)
    if debugger and "debugger" not in features:
        # The visual debugger, declared both ways: the old flag and the JEP 92
        # feature list, where JupyterLab 4.x looks too (as ipykernel 7 does).
        features.append("debugger")
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "threadline",
        "implementation_version": __version__,
        "language_info": {
            "name": "python",
            "version": version,
            "mimetype": "text/x-python",
            "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
            "pygments_lexer": "ipython3",
            "nbconvert_exporter": "python",
            "file_extension": ".py",
        },
        "banner": (
            f"Python {sys.version.split()[0]} -- threadline {__version__} (IPython {ipython_version()})"
        ),
        "help_links": HELP_LINKS,
        "debugger": debugger,
        "supported_features": features,
    }


def ipython_version() -> str:
    """IPython's version, without importing IPython if it is not imported yet."""
    loaded = getattr(sys.modules.get("IPython"), "__version__", None)
    if isinstance(loaded, str):
        return loaded
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("ipython-") and name.endswith(".dist-info"):
                return name[len("ipython-") : -len(".dist-info")]
    import IPython  # not installed as a distribution: ask the module itself

    return str(IPython.__version__)


def connect(connection: ConnectionInfo) -> dict[str, Any]:
    """The connect_reply content: the ports the kernel listens on (deprecated
    in the protocol, still answered by ipykernel)."""
    return {"status": "ok", **{f"{channel}_port": connection.port(channel) for channel in CHANNELS}}


def unknown_subshell(subshell_id: object) -> dict[str, Any]:
    """The error reply to a request for a subshell that does not exist, named as ipykernel names it."""
    return error_content("UnknownSubshellError", f"Unknown subshell_id {subshell_id!r}")
