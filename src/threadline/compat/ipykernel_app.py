"""ipykernel's application singleton, standing for the running threadline kernel.

Theory of operation
-------------------
``ipykernel.get_connection_file()`` and ``ipykernel.connect.get_connection_info()``
-- what the well-known "which notebook is this?" recipes match against the
server's sessions -- and code that reads ``IPKernelApp.instance()`` ask
ipykernel's own application class for its singleton. ipykernel's application
never runs under threadline; and since threadline's configuration application
is also named ``IPKernelApp`` (``compat.kernelapp``) and is the traitlets
singleton of the classes both derive from, ipykernel's class looked initialised
but answered ``instance()`` with ``MultipleInstanceError``.

So once ``ipykernel.kernelapp`` is imported (``after_import``; at once if it
already was), an instance of ipykernel's class -- constructed, never
initialised, so it starts and binds nothing -- becomes that class's singleton,
set on that class alone (the shared base classes keep threadline's app). It
carries what such code reads: the connection file and its directory, and
``kernel``, threadline's ``get_ipython().kernel``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from threadline.after_import import when_imported

if TYPE_CHECKING:
    from threadline.compat.kernel import NotebookKernel

_MODULE = "ipykernel.kernelapp"


def stand_in_for_ipykernels_app(kernel_face: NotebookKernel, connection_file: str | None) -> None:
    """Make ``ipykernel.kernelapp.IPKernelApp.instance()`` describe this kernel."""

    def register(module: ModuleType) -> None:
        cls = module.IPKernelApp
        if "_instance" in vars(cls) and isinstance(cls._instance, cls):
            return  # one of its own exists already (made by user code): leave it
        traits: dict[str, Any] = {}
        if connection_file:
            traits["connection_file"] = connection_file
            traits["connection_dir"] = os.path.dirname(connection_file)
        app = cls(**traits)
        app.kernel = kernel_face
        cls._instance = app

    when_imported(_MODULE, register)
