"""Importing ipykernel's kernel module must not take the comms away from threadline.

Theory of operation
-------------------
``ipykernel.ipkernel`` replaces ``comm.create_comm`` and
``comm.get_comm_manager`` with its own when it is imported -- and user code
imports it without meaning to: ``ipykernel.get_connection_file()`` imports
``ipykernel.kernelapp``, which imports it. ipykernel's comms send nothing
unless ipykernel's own kernel runs, so every widget created afterwards would
be shown as "model not found". When that module has been imported
(``after_import``), the functions the kernel installed are put back.
"""

from __future__ import annotations

from types import ModuleType

import comm

from threadline.shell.after_import import after_import

_MODULE = "ipykernel.ipkernel"


def keep_threadline_comms() -> None:
    """Keep ``comm.create_comm``/``get_comm_manager`` threadline's, even after ipykernel is imported."""
    create_comm, get_comm_manager = comm.create_comm, comm.get_comm_manager

    def put_back(module: ModuleType) -> None:
        comm.create_comm = create_comm
        comm.get_comm_manager = get_comm_manager

    after_import(_MODULE, put_back)
