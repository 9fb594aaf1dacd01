"""A real Jupyter Server on 127.0.0.1 for the remote-kernel tests and benchmark, and a kernel that is not on the host.

The server runs in its own folder (its cwd, HOME and Jupyter dirs), with a
random port and token. Its one kernelspec starts ipykernel through
``GUARD`` so that the kernel behaves as one on another machine would:

- nothing named ``rlm_tui`` can be imported (it is not installed there);
- opening any path under ``RLM_TEST_FORBIDDEN`` raises PermissionError (the
  host's input is not on that machine), and every such attempt is logged to
  ``RLM_TEST_OPEN_LOG`` so a test can see whether the loader tried.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

KERNEL_NAME = "rlm-elsewhere"

GUARD = r'''
import os, sys

forbidden = os.environ.get("RLM_TEST_FORBIDDEN", "")
open_log = os.environ.get("RLM_TEST_OPEN_LOG", "")


class NoRlmTui:
    """rlm-tui is not installed where this kernel runs."""

    def find_spec(self, name, path=None, target=None):
        if name == "rlm_tui" or name.startswith("rlm_tui."):
            raise ImportError("rlm_tui is not installed in this kernel's environment")
        return None


sys.meta_path.insert(0, NoRlmTui())


def audit(event, args):
    if event == "open" and forbidden and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.abspath(path).startswith(forbidden):
            with open(open_log, "a") as log:
                log.write(path + "\n")
            raise PermissionError(13, "not on this machine", path)


if forbidden:
    sys.addaudithook(audit)

from ipykernel import kernelapp

kernelapp.launch_new_instance()
'''


@dataclass
class Server:
    url: str
    token: str
    root: Path  # the server's cwd, where its kernels start
    log: Path
    open_log: Path  # paths under the forbidden prefix that a kernel tried to open
    process: subprocess.Popen[bytes]

    def kernels(self) -> list[dict]:
        """The server's own list of running kernels."""
        request = urllib.request.Request(self.url + "/api/kernels", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def opened(self) -> list[str]:
        """Paths under the forbidden folder that a kernel of this server tried to open."""
        return self.open_log.read_text().splitlines() if self.open_log.exists() else []

    def started_kernel_ids(self) -> list[str]:
        """Ids of every kernel the server's log says it started."""
        text = self.log.read_text(errors="replace")
        return [line.split("Kernel started: ", 1)[1].split()[0].strip(",")
                for line in text.splitlines() if "Kernel started: " in line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(base: Path, forbidden: Path, kind: str = "jupyter-server") -> Server:
    """A Jupyter Server (or, ``kind="kernel-gateway"``, a Kernel Gateway) in ``base`` whose kernels
    cannot open anything under ``forbidden``."""
    root, home, spec_dir = base / "root", base / "home", base / "share" / "kernels" / KERNEL_NAME
    for folder in (root, home, spec_dir):
        folder.mkdir(parents=True)
    (spec_dir.parent.parent / "guard.py").write_text(GUARD)
    open_log = base / "opened.log"
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-I", str(spec_dir.parent.parent / "guard.py"), "-f", "{connection_file}"],
        "display_name": "a kernel elsewhere", "language": "python",
        "env": {"RLM_TEST_FORBIDDEN": str(forbidden), "RLM_TEST_OPEN_LOG": str(open_log)}}))
    token = secrets.token_hex(24)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_TOKEN")}
    env.update(HOME=str(home), JUPYTER_PATH=str(base / "share"), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_RUNTIME_DIR=str(base / "runtime"))
    log = base / "server.log"
    if kind == "kernel-gateway":  # kernels/ listing is off by default there; the tests read it
        argv = ["kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
                "--KernelGatewayApp.port_retries=0", f"--KernelGatewayApp.auth_token={token}",
                f"--KernelGatewayApp.default_kernel_name={KERNEL_NAME}", "--JupyterWebsocketPersonality.list_kernels=True"]
    else:
        argv = ["jupyter_server", "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}", f"--MultiKernelManager.default_kernel_name={KERNEL_NAME}"]
    process = subprocess.Popen([sys.executable, "-m", *argv], cwd=root, env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", token, root, log, open_log, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.kernels()
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_server(server)
                raise RuntimeError("jupyter server did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
