"""Jupyter kernels as the REPL: start, execute with streamed output, interrupt, restart.

Uses jupyter-client's async API. The kernel's own stdout/stderr go to a log
file so a kernel never scribbles on the terminal. A small pool keeps kernels
started and bootstrapped ahead of need, so a child RLM does not wait for one.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import os
import queue
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from jupyter_client import AsyncKernelManager

from .redaction import kernel_env

OutputHook = Callable[[str, str], None]  # (stream, text)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def kernel_source(name: str) -> str:
    """Source of a file in ``kernels/``: the source checkout, or the copy packed in the wheel."""
    here = Path(__file__).resolve().parent.parent
    for folder in (here / "_kernels", here.parent / "kernels"):
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"kernel file {name} not found next to {here}")


def expression_value(result: dict) -> str:
    """The str a ``user_expressions`` entry evaluated to (its reply carries the value's repr)."""
    return ast.literal_eval(result["data"]["text/plain"])


class KernelDied(Exception):
    """The kernel process went away."""


@dataclass
class ExecResult:
    status: str  # ok | error | interrupted | timeout | died
    duration_s: float
    user_expressions: dict = field(default_factory=dict)
    error: str = ""
    restarted: bool = False  # the kernel was replaced: its namespace is empty


class Kernel:
    """One IPython kernel process and its client."""

    _ids = itertools.count(1)

    def __init__(self, log_dir: Path) -> None:
        self.id = f"k{next(self._ids)}-{os.getpid()}"
        self.log_path = log_dir / f"{self.id}.log"
        self.km = AsyncKernelManager(kernel_name="python3")
        self.kc = None
        self._log = None

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")
        await self.km.start_kernel(stdout=self._log, stderr=self._log, env=kernel_env())
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)

    async def is_alive(self) -> bool:
        return await self.km.is_alive()

    async def execute(self, code: str, on_output: OutputHook | None = None, *,
                      timeout: float | Callable[[], float | None] | None = None,
                      user_expressions: dict[str, str] | None = None, interrupt_grace: float = 5.0) -> ExecResult:
        """Run a cell, streaming its output; interrupt it after ``timeout`` seconds.

        ``timeout`` may be a function giving the current limit (it may grow while the cell runs).
        """
        assert self.kc is not None
        started = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False,
                                 user_expressions=user_expressions or {})
        emit = on_output or (lambda stream, text: None)
        interrupted_at: float | None = None
        status = "ok"
        error = ""
        while True:
            try:
                msg = await self.kc.get_iopub_msg(timeout=0.25)
            except (queue.Empty, asyncio.TimeoutError):
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
            if kind == "stream":
                emit(content.get("name", "stdout"), content.get("text", ""))
            elif kind == "error":
                if status == "ok":
                    status = "interrupted" if content.get("ename") == "KeyboardInterrupt" else "error"
                error = content.get("ename", "Error")
                emit("error", "\n".join(content.get("traceback", [])) + "\n")
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text:
                    emit("result", text + "\n")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        reply = await self._shell_reply(msg_id)
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

    async def call(self, code: str, expression: str, timeout: float | None = None) -> str:
        """Run internal ``code`` then return the str value of ``expression``; raise on error."""
        out: list[str] = []
        result = await self.execute(code, lambda s, t: out.append(t), timeout=timeout,
                                    user_expressions={"value": expression})
        if result.status == "died":
            raise KernelDied(result.error)
        value = result.user_expressions.get("value", {})
        if result.status != "ok" or value.get("status") != "ok":
            detail = strip_ansi("".join(out)).strip().splitlines()
            raise RuntimeError(detail[-1] if detail else f"kernel call failed ({result.status})")
        return expression_value(value)

    async def interrupt(self) -> None:
        await self.km.interrupt_kernel()

    async def restart(self) -> None:
        """A fresh process in place of this one, alive or dead; the namespace is empty after."""
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


class KernelPool:
    """Kernels started and bootstrapped ahead of need.

    ``prepare`` is the per-kernel set-up (connecting it to the host's bridge);
    ``size`` kernels are kept warm in the background. Kernels are never reused
    across nodes: a child's state must not leak into another's.
    """

    def __init__(self, log_dir: Path, prepare: Callable[[Kernel], "asyncio.Future[None]"], size: int) -> None:
        self.log_dir = log_dir
        self.prepare = prepare
        self.size = size
        self._ready: asyncio.Queue[asyncio.Task[Kernel]] = asyncio.Queue()
        self._all: list[Kernel] = []
        self._closed = False

    def fill(self) -> None:
        """Top up to ``size`` kernels being started."""
        while self._ready.qsize() < self.size and not self._closed:
            self._ready.put_nowait(asyncio.ensure_future(self._start_one()))

    async def _start_one(self) -> Kernel:
        kernel = Kernel(self.log_dir)
        self._all.append(kernel)
        await kernel.start()
        await self.prepare(kernel)
        return kernel

    async def acquire(self) -> Kernel:
        """A ready kernel: a pre-started one if any, else a new one."""
        if self._ready.empty():
            self._ready.put_nowait(asyncio.ensure_future(self._start_one()))
        task = self._ready.get_nowait()
        self.fill()
        return await task

    async def release(self, kernel: Kernel) -> None:
        """Shut a used kernel down."""
        if kernel in self._all:
            self._all.remove(kernel)
        await kernel.shutdown()

    async def close(self) -> None:
        """Shut every kernel down, started or starting."""
        self._closed = True
        while not self._ready.empty():
            task = self._ready.get_nowait()
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - shutting down; a failed start is moot
                pass
        await asyncio.gather(*(k.shutdown() for k in list(self._all)), return_exceptions=True)
        self._all.clear()
