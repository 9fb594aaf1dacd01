"""An interrupt that reaches the kernel before it begins running the cell still stops the cell.

ipykernel ignores SIGINT between requests. The UI shows a cell as running once it is sent, so Esc (or a
kill) pressed at once could land before the kernel took the request: the interrupt was lost and the cell
ran to its end (a 60 s sleep in a UI test went on, once in seven runs of the ui tier). Here the kernel
process is stopped while the cell is sent and the interrupt asked for, so the interrupt is sure to come
first, as it did by chance there. Real kernels: a local one, unsandboxed (its process is the one
signalled), and one on a real Jupyter Server (which signals it on its REST interrupt).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from procs import descendants
from rlm_tui.bench.jupyter_remote import start_server, stop_server
from rlm_tui.core.backends.base import HeldInterrupt, Kernel, interrupted_without_reply
from rlm_tui.core.backends.jupyter_api import JupyterApi
from rlm_tui.core.backends.jupyter_server import RemoteKernel
from rlm_tui.core.backends.local import JupyterKernel

pytestmark = pytest.mark.kernel

CELL = "import time\ntime.sleep(30)\nprint('ran' + ' to its end')  # the words only in the output, not the traceback"


async def interrupt_before_the_cell_begins(make: Callable[[], Kernel],
                                           pid_of: Callable[[Kernel], int]) -> tuple[str, float, str]:
    kernel = make()
    await kernel.start()
    output: list[str] = []
    try:
        pid = pid_of(kernel)
        os.kill(pid, signal.SIGSTOP)  # the kernel cannot take the request yet
        started = time.perf_counter()
        cell = asyncio.create_task(kernel.execute(CELL, lambda stream, text: output.append(text)))
        await asyncio.sleep(0.3)  # the request is sent and waits in the kernel's queue
        await kernel.interrupt()
        await asyncio.sleep(0.3)  # the signal is pending on the stopped process
        os.kill(pid, signal.SIGCONT)  # and dropped as it wakes: SIGINT is ignored between requests
        async with asyncio.timeout(25):
            result = await cell
        return result.status, time.perf_counter() - started, "".join(output)
    finally:
        await kernel.shutdown()


@pytest.mark.parametrize("where", ["local", "jupyter server"])
def test_an_interrupt_before_the_cell_begins_stops_it_as_it_begins(where: str, tmp_path: Path) -> None:
    if where == "local":
        status, took, output = asyncio.run(interrupt_before_the_cell_begins(
            lambda: JupyterKernel(tmp_path), lambda kernel: kernel.km.provisioner.pid))
    else:
        server = start_server(tmp_path / "server", tmp_path / "inputs")
        api = JupyterApi(server.url, server.token)
        try:
            status, took, output = asyncio.run(interrupt_before_the_cell_begins(
                lambda: RemoteKernel(api, no_calls), lambda kernel: kernel_process(server.process.pid)))
        finally:
            api.close()
            stop_server(server)
    assert status == "interrupted" and "KeyboardInterrupt" in output, (status, output, took)
    assert "ran to its end" not in output and took < 10


def kernel_process(server: int) -> int:
    """The server's one kernel process (its kernel spec starts it through guard.py)."""
    return next(pid for pid in descendants(server) if b"guard.py" in Path(f"/proc/{pid}/cmdline").read_bytes())


async def no_calls(owner: str, request: dict) -> str:
    raise AssertionError("no sub-call here")


class Quick(HeldInterrupt):
    BEGUN_S, HOLD_S = 0.05, 0.2


def test_a_held_interrupt_waits_for_the_cells_code_and_a_silent_kernel_only_so_long() -> None:
    """Pure: held until ``BEGUN_S`` after execute_input, or ``HOLD_S`` when that never comes; at once when
    no cell is in flight or its code runs; a request that ended with no reply after one is interrupted."""
    held = Quick()
    assert held.hold() and not held.went_out  # between cells: at once (nothing to wait for)
    with held.cell():
        assert not held.hold() and not held.due("status") and not held.due("execute_input")
        assert not held.due(None)  # the request is taken; IPython's own steps come before the code
        time.sleep(0.06)
        assert held.due(None) and held.went_out and not held.due(None)  # sent once
        assert held.hold()  # the code runs: at once
        assert interrupted_without_reply("ok", {}, held) == "interrupted"
        assert interrupted_without_reply("ok", {"status": "ok"}, held) == "ok"
    with held.cell():  # a kernel that never announces the request
        assert not held.hold() and not held.due(None)
        time.sleep(0.21)
        assert held.due(None)
    with held.cell():
        assert interrupted_without_reply("ok", {}, held) == "ok"  # no interrupt: a lost reply says nothing more
