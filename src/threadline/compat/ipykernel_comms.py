"""ipykernel's comm names, under threadline: its kernel module must not take the comms
away, and its deprecated ``Comm`` class must send.

Theory of operation
-------------------
``ipykernel.ipkernel`` replaces ``comm.create_comm`` and
``comm.get_comm_manager`` with its own when it is imported -- and user code
imports it without meaning to: ``ipykernel.get_connection_file()`` imports
``ipykernel.kernelapp``, which imports it. ipykernel's comms send nothing
unless ipykernel's own kernel runs, so every widget created afterwards would
be shown as "model not found". When that module has been imported
(``after_import``), the functions the kernel installed are put back.

``ipykernel.comm.Comm`` (deprecated, but what bokeh's ``push_notebook``
handles are made of: ``bokeh.io.notebook.get_comms``) registers with the
``comm`` package's manager -- threadline's -- and publishes through its own
``publish_msg``, which sends only when ipykernel's ``Kernel`` singleton exists.
Under ipykernel that is always so; under threadline never, so the comm would
open and send nothing at all. Its ``publish_msg`` is therefore threadline's
(``threadline.kernel.comms.Comm.publish_msg``: the same content, sent through
the outbox with the cell the calling thread belongs to), set on the class in
``ipykernel.comm.comm`` that defines it, once that module is imported.
"""

from __future__ import annotations

from types import ModuleType

import comm

from threadline.after_import import after_import, when_imported
from threadline.kernel.comms import Comm

_KERNEL_MODULE = "ipykernel.ipkernel"
_COMM_MODULE = "ipykernel.comm.comm"


def keep_threadline_comms() -> None:
    """Keep ``comm.create_comm``/``get_comm_manager`` threadline's, even after ipykernel is
    imported, and make ``ipykernel.comm.Comm`` send through threadline."""
    create_comm, get_comm_manager = comm.create_comm, comm.get_comm_manager

    def put_back(module: ModuleType) -> None:
        comm.create_comm = create_comm
        comm.get_comm_manager = get_comm_manager

    after_import(_KERNEL_MODULE, put_back)
    when_imported(_COMM_MODULE, _publish_through_threadline)


def _publish_through_threadline(module: ModuleType) -> None:
    for name in ("BaseComm", "Comm"):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and "publish_msg" in vars(cls):
            cls.publish_msg = Comm.publish_msg  # type: ignore[attr-defined]
