"""Kernels started and bootstrapped ahead of need, from any backend."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from .base import Kernel


class KernelPool:
    """Kernels started and bootstrapped ahead of need.

    ``new_kernel`` makes one (``KernelBackend.new_kernel``); ``prepare`` is the
    per-kernel set-up (connecting it to the host's bridge); ``size`` kernels are
    kept warm in the background. Kernels are never reused across nodes: a
    child's state must not leak into another's.
    """

    def __init__(self, new_kernel: Callable[[], Kernel], prepare: Callable[[Kernel], Awaitable[None]],
                 size: int) -> None:
        self.new_kernel = new_kernel
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
        kernel = self.new_kernel()
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
