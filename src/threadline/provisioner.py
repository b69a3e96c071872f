"""The client's side of starting a kernel: its ports listen before the kernel exists.

Theory of operation
-------------------
A Jupyter client (JupyterLab's server, nbclient, ``jupyter_client`` itself)
starts a kernel by spawning its process and connecting to the five ports of
the connection file at once, a few milliseconds later. No Python process can
be listening by then, so every first connection is refused, and ZeroMQ
retries each socket after 100 to 200 ms (``ZMQ_RECONNECT_IVL`` plus a random
jitter): the user waits for that retry at every kernel start, however fast the
kernel is (``threadline.io.listening`` has the measurements). The kernel can
only listen sooner; this provisioner removes the wait.

``jupyter_client`` lets a kernelspec name the *kernel provisioner* that
launches it (``metadata.kernel_provisioner``; provisioners are found through
the ``jupyter_client.kernel_provisioners`` entry point). This one is
``jupyter_client``'s local provisioner plus one step: once the connection file
is written, it opens a plain listening TCP socket on each of its ports, in the
client's process, and hands the descriptors to the kernel it spawns
(``pass_fds``, and ``THREADLINE_LISTENERS`` naming them). The operating system
accepts the client's first connections straight away and queues what they
send; the kernel's ZeroMQ sockets take those descriptors over when they are
built (``ZMQ_USE_FD``), exactly as for the kernel's own early listeners. The
client keeps no copy: its descriptors are closed as soon as the process is
spawned (or failed to be). The ports are also held from just after the
connection file is written, so no other program can take one between then and
the kernel's start (``jupyter_client`` picks free ports by binding and
releasing them).

Anything that stops the listening (the ipc transport, an address that is not
IPv4, a port already taken, another operating system) leaves the launch
exactly as the local provisioner does it; the kernel then listens itself.

The kernelspec names this provisioner only where the Jupyter reading it can
load it: ``threadline install`` writes it into a kernelspec installed in this
environment (``--sys-prefix``), where ``jupyter_client`` finds this package;
a ``--user`` kernelspec may be read by a Jupyter of another environment,
which would refuse a kernel whose provisioner it cannot load, so it names
none unless asked (``--provisioner``).

The child process gets only its standard streams and these descriptors:
``pass_fds`` implies ``close_fds``, where ``jupyter_client`` otherwise lets a
kernel inherit every inheritable descriptor of the client (Python makes new
descriptors non-inheritable, so in practice that was the same set).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from threadline.io.listening import INHERITED, close_all, listen_for

#: The entry point's name (pyproject.toml), as a kernelspec names it.
NAME = "threadline-provisioner"


class ThreadlineProvisioner(LocalProvisioner):  # type: ignore[misc]
    """``LocalProvisioner``, with the kernel's ports listening before it is spawned."""

    _listeners: dict[str, int]

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        launch: dict[str, Any] = await super().pre_launch(**kwargs)
        self._close_listeners()  # a launch that never happened (start_kernel raised after this)
        self._listeners = listen_for(dict(self.connection_info))
        if self._listeners:
            env = dict(launch.get("env") or os.environ)
            env[INHERITED] = ",".join(f"{channel}={fd}" for channel, fd in self._listeners.items())
            launch["env"] = env
            launch["pass_fds"] = tuple(self._listeners.values())
        return launch

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                # jupyter_client asks for close_fds=False; pass_fds needs it on.
                warnings.filterwarnings("ignore", "pass_fds overriding close_fds", RuntimeWarning)
                return await super().launch_kernel(cmd, **kwargs)
        finally:
            self._close_listeners()  # the kernel has its own copies now

    async def cleanup(self, restart: bool = False) -> None:
        self._close_listeners()
        await super().cleanup(restart=restart)

    def _close_listeners(self) -> None:
        close_all(getattr(self, "_listeners", {}))
