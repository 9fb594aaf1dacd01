"""The local backend: IPython kernels on this host, driven by jupyter-client's async API.

The kernel's own stdout/stderr go to a log file so a kernel never scribbles on
the terminal. Kernel code reaches the host's bridge over TCP on 127.0.0.1 and
reads the input from its host path. ``JupyterKernel`` is also the sandboxed
backend's kernel (the same process, launched inside bubblewrap).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_client import AsyncKernelManager

from ..redaction import kernel_env
from .base import (ExecResult, HeldInterrupt, Kernel, KernelBackend, KernelDied, OutputHook, Timeout,
                   interrupted_without_reply, take_iopub)

if TYPE_CHECKING:
    from ..bridge import Bridge


class JupyterKernel(Kernel):
    """One IPython kernel process and its client."""

    _ids = itertools.count(1)

    def __init__(self, log_dir: Path, km: AsyncKernelManager | None = None) -> None:
        self.id = f"k{next(self._ids)}-{os.getpid()}"
        self.log_path = log_dir / f"{self.id}.log"
        self.km = km or AsyncKernelManager(kernel_name="python3")
        self.kc: Any = None
        self._log: Any = None
        self._held = HeldInterrupt()

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")
        await self.km.start_kernel(stdout=self._log, stderr=self._log, env=kernel_env())
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=60)
        except RuntimeError:  # "Kernel died before replying to kernel_info": say what it said
            raise KernelDied(f"the kernel did not start: {self._last_words()}") from None

    def _last_words(self) -> str:
        """The last line the kernel process (or the sandbox around it) wrote to its log."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1].strip() if lines else f"no output (see {self.log_path})"

    async def is_alive(self) -> bool:
        return await self.km.is_alive()

    def attach_command(self) -> str | None:
        return f"jupyter console --existing {self.km.connection_file}" if self.km.connection_file else None

    async def execute(self, code: str, on_output: OutputHook | None = None, *, timeout: Timeout = None,
                      user_expressions: dict[str, str] | None = None, interrupt_grace: float = 5.0) -> ExecResult:
        """Run a cell, streaming its output; interrupt it after ``timeout`` seconds.

        ``timeout`` may be a function giving the current limit (it may grow while the cell runs).
        """
        assert self.kc is not None
        started = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False,
                                 user_expressions=user_expressions or {})
        with self._held.cell():
            return await self._follow(msg_id, started, on_output, timeout, interrupt_grace)

    async def _follow(self, msg_id: str, started: float, on_output: OutputHook | None, timeout: Timeout,
                      interrupt_grace: float) -> ExecResult:
        """The sent cell's output and end (``execute``)."""
        assert self.kc is not None
        emit = on_output or (lambda stream, text: None)
        interrupted_at: float | None = None
        status = "ok"
        error = ""
        while True:
            try:
                msg = await self.kc.get_iopub_msg(timeout=0.25)
            except (queue.Empty, asyncio.TimeoutError):
                if self._held.due(None):
                    await self.km.interrupt_kernel()
                if not await self.km.is_alive():
                    return ExecResult("died", time.perf_counter() - started, error="the kernel died")
                elapsed = time.perf_counter() - started
                limit = timeout() if callable(timeout) else timeout
                if limit is not None and interrupted_at is None and elapsed > limit:
                    interrupted_at = elapsed
                    status = "timeout"
                    await self.km.interrupt_kernel()
                elif interrupted_at is not None and elapsed - interrupted_at > interrupt_grace:
                    await self.restart()
                    return ExecResult(status, time.perf_counter() - started,
                                      error="the cell ignored the interrupt; the kernel was restarted",
                                      restarted=True)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            content = msg["content"]
            if self._held.due(kind):
                await self.km.interrupt_kernel()
            status, error, idle = take_iopub(kind, content, emit, status, error)
            if idle:
                break
        reply = await self._shell_reply(msg_id)
        status = interrupted_without_reply(status, reply, self._held)
        return ExecResult(status, time.perf_counter() - started, reply.get("user_expressions", {}) or {}, error)

    async def _shell_reply(self, msg_id: str) -> dict:
        assert self.kc is not None
        while True:
            try:
                msg = await self.kc.get_shell_msg(timeout=10)
            except (queue.Empty, asyncio.TimeoutError):
                return {}
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg["content"]

    async def interrupt(self) -> None:
        if self._held.hold():
            await self.km.interrupt_kernel()

    async def restart(self) -> None:
        await self.km.restart_kernel(now=True)
        assert self.kc is not None
        await self.kc.wait_for_ready(timeout=60)

    async def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        try:
            if await self.km.is_alive():
                await self.km.shutdown_kernel(now=True)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class LocalBackend(KernelBackend):
    """Kernels with the user's full rights on this host (``--sandbox off``, or ``auto`` without bwrap)."""

    name = "local"

    def __init__(self, run_dir: Path, input_path: Path, why: str = "") -> None:
        super().__init__(run_dir, input_path)
        self.why = why  # why the run is not sandboxed, when it could have been
        self._port = 0  # the bridge's, once open

    @property
    def description(self) -> str:
        note = f" ({self.why})" if self.why else ""
        return f"local kernel, not sandboxed{note}"

    @property
    def warning(self) -> str:
        if not self.why:
            return ""
        return (f"the model's code runs unsandboxed, with your full rights ({self.why}); "
                "--sandbox off hides this warning, --sandbox on refuses to run")

    async def open(self, bridge: "Bridge") -> None:
        await bridge.start()
        self._port = bridge.port

    def new_kernel(self) -> Kernel:
        return JupyterKernel(self.run_dir)

    def connect_config(self, kernel: Kernel) -> dict[str, Any]:
        return {"port": self._port}
