"""Fixtures shared by all tests.

Every test run gets a private Jupyter environment: the ``threadline``
kernelspec installed into a temporary data directory, and private IPython and
runtime directories, so tests never read or write the user's own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from tests.kernel_helpers import start_kernel, stop_kernel
from threadline.app import kernel_spec, provisioner_installed


@pytest.fixture(scope="session", autouse=True)
def jupyter_environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "data" / "kernels" / "threadline"
    spec_dir.mkdir(parents=True)
    # As `threadline install --sys-prefix` writes it: with the provisioner, where installed.
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_spec(provisioner=provisioner_installed())))
    os.environ["JUPYTER_PATH"] = str(root / "data")
    os.environ["JUPYTER_DATA_DIR"] = str(root / "data")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    os.environ["JUPYTER_CONFIG_DIR"] = str(root / "config")
    os.environ["IPYTHONDIR"] = str(root / "ipython")
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    return root


@pytest.fixture
def kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A fresh threadline kernel process and a connected, ready client."""
    manager, client = start_kernel()
    try:
        yield manager, client
    finally:
        stop_kernel(manager, client)


@pytest.fixture
def kc(kernel: tuple[KernelManager, BlockingKernelClient]) -> BlockingKernelClient:
    return kernel[1]


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context for a test's own sockets, destroyed with linger 0 afterwards."""
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)
