"""A stop (Ctrl+C, SIGTERM, SIGHUP) that lands in the same event-loop step as something finishing is not lost.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result and drops a cancellation that arrives
while that result is being handed over. A signal during a spare kernel's start-up once hung a run for
good this way: the bridge's close cancelled the handler of a kernel whose hello was just being read;
the handler went on reading that kernel's connection, and the kernel, still alive, never closed it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import ROOT, fed_root, fence
from rlm_tui.core import events as ev
from rlm_tui.core.bridge import Bridge
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import Engine, RunResult
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer

STEPS = 12  # event-loop steps after the hello is sent; the hand-over lies within the first few


async def _close_as_hello_arrives(steps: int) -> bool:
    """Send a valid hello, let the loop run ``steps`` steps, close the bridge while the client
    (a live kernel) keeps its connection open; True if the close finished."""
    async def handler(kernel: str, request: dict) -> str:
        return "unused"

    bridge = Bridge(handler)
    await bridge.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    try:
        writer.write(json.dumps({"op": "hello", "secret": bridge.secret, "kernel": "k1"}).encode() + b"\n")
        for _ in range(steps):
            await asyncio.sleep(0)
        close = asyncio.ensure_future(bridge.close())
        done, _ = await asyncio.wait({close}, timeout=5)  # it takes milliseconds; a lost cancel: forever
        close.cancel()
        return bool(done)
    finally:
        writer.close()
        await asyncio.gather(close, return_exceptions=True)


async def test_bridge_closes_whatever_step_a_kernel_hello_is_at() -> None:
    closed = [await _close_as_hello_arrives(steps) for steps in range(STEPS)]
    assert all(closed), f"the bridge's close hung when it came {closed.index(False)} loop steps after a hello"


@pytest.mark.kernel
async def test_a_stop_as_the_root_answers_still_interrupts_the_run(corpus: Path, tmp_path: Path) -> None:
    """The stop is queued in the very step the root's task ends with its answer (its node_finished is
    emitted last in that step): the run must still end as interrupted, not as answered."""
    session = tmp_path / "s.jsonl"
    run: list[asyncio.Task[RunResult]] = []

    def stop_as_root_finishes(event: ev.Event) -> None:
        if event.kind == ev.NODE_FINISHED and event.parent is None and event.get("status") == "done":
            asyncio.get_running_loop().call_soon(run[0].cancel)

    with ScriptedServer(fed_root(fence("x = 42"), [])) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-races",
                            limits=Limits(), session_path=session)
        run.append(asyncio.ensure_future(Engine(settings, "q", corpus, sink=stop_as_root_finishes).run()))
        with pytest.raises(asyncio.CancelledError):
            await run[0]
    last = load(session).events[-1]
    assert last.kind == ev.RUN_FINISHED and last.get("stopped_by") == "interrupted"


def test_the_package_never_uses_wait_for() -> None:
    """Every timed wait is ``async with asyncio.timeout(...)``: a wait_for left anywhere (a model stream,
    a remote kernel's messages) could drop a stop the same way. Six were swept after the two above."""
    import ast

    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted((ROOT / "rlm_tui").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr == "wait_for"]
    assert found == []
