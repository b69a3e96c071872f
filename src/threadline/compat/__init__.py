"""Every name threadline answers to because other code looks for it.

Theory of operation
-------------------
Libraries decide "am I in a notebook kernel?" by names, and configuration is
addressed by names. threadline's core is named for what it does; this package
holds the ipykernel/IPython names, each with the reader that needs it:

===========================================  ======================================================
name                                         read by
===========================================  ======================================================
``ZMQInteractiveShell`` (``zmqshell``)       rich, plotly, ``is_notebook()`` helpers,
                                             ``c.ZMQInteractiveShell.*``, ``%config``
``ipykernel.zmqshell`` in ``sys.modules``    tqdm.auto (>= 4.67.2)
``IPKernelApp`` section in the config        polars, tqdm < 4.67.2; ``c.IPKernelApp.*`` files
``get_ipython().kernel``: ``session``,       ipykernel.comm, ipywidgets' Output widget, bokeh,
``iopub_socket``, ``comm_manager``,          old ipywidgets, notebook extensions
``get_parent``, ``_parent_ident``...
shell ``get_parent``/``set_parent``/         ipywidgets' Output widget
``parent_header``
``%connect_info`` ``%autosave`` ``%edit``    users and front ends used to ipykernel
``%less`` ``%man`` ``%clear`` ``%qtconsole``
plotly's default renderer                    plotly (it also checks the shell's module)
``comm.create_comm`` kept threadline's       every comm user, after ``ipykernel.ipkernel`` is imported
``ipykernel.comm.Comm`` sends                bokeh's ``push_notebook`` handles, old comm code
ipykernel's ``IPKernelApp.instance()``       ``ipykernel.get_connection_file()``, notebook-name recipes
===========================================  ======================================================

The dependency points one way: this package calls into the core (routing,
the outbox, the kernel); nothing in the core imports it. ``threadline.app``
wires it in with ``attach``.
"""

from __future__ import annotations

from threadline.compat.ipykernel_app import stand_in_for_ipykernels_app
from threadline.compat.ipykernel_comms import keep_threadline_comms
from threadline.compat.kernel import NotebookKernel
from threadline.compat.kernelapp import IPKernelApp, configure
from threadline.compat.plotly_renderer import install_plotly_renderer_choice
from threadline.compat.zmqshell import ZMQInteractiveShell, alias_ipykernel_zmqshell
from threadline.kernel.kernel import Kernel

__all__ = ["IPKernelApp", "NotebookKernel", "ZMQInteractiveShell", "attach", "configure"]


def attach(kernel: Kernel, connection_file: str | None) -> NotebookKernel:
    """Give ``kernel`` its ipykernel-compatible face: ``get_ipython().kernel`` and the module names."""
    face = NotebookKernel(kernel, connection_file)
    kernel.shell.kernel = face
    alias_ipykernel_zmqshell()
    install_plotly_renderer_choice()
    keep_threadline_comms()
    stand_in_for_ipykernels_app(face, connection_file)
    return face
