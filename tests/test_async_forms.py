"""``await llm_query(...)`` and friends in the REPL: real kernel, real bridge, scripted model on 127.0.0.1.

In a cell that uses ``await`` (and in an ``async def``) the helpers return coroutines (sent when they
start, so ``gather`` runs them concurrently); plain cells and ordinary functions still get the ``str``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.scripted import is_rlm_call, question_of, turn_of

pytestmark = pytest.mark.kernel


def sub_calls(run, status: str | None = None) -> list:
    """The llm_query nodes' finish events (optionally only those with ``status``)."""
    llm = {e.node for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == "llm"}
    return [e for e in run.kinds(ev.NODE_FINISHED) if e.node in llm and status in (None, e.get("status"))]


async def test_awaited_llm_forms_return_the_strings_and_plain_forms_stay_str(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "echo:" + messages[-1]["content"]
        if turn_of(messages) == 1:
            return fence("""
import asyncio
one = await llm_query('a')
many = await asyncio.gather(*(llm_query(p) for p in ['b', 'c']))
listed = await asyncio.gather(*[llm_query(p) for p in ['d', 'e']])
batch = await llm_query_batched(['f', 'g'])
limited = await asyncio.wait_for(llm_query('h'), timeout=30)
tasks = [llm_query(p) for p in ['l', 'm']]  # no await in this statement, but in its cell: coroutines
kind = type(tasks[0]).__name__
started = await asyncio.gather(*tasks)
created = [await t for t in [asyncio.create_task(llm_query(p)) for p in ['n', 'o']]]

async def stream(ps):
    for p in ps:
        yield await llm_query(p)

streamed = [r async for r in stream(['v', 'w'])]

async def shout(p):
    return (await llm_query(p)).upper()

shouted = await asyncio.gather(shout('i'), shout('j'))

def plain(p):  # a sync function called from an async cell still gets a str
    return llm_query(p)

print('async', one, many, listed, batch, limited, shouted, type(plain('k')).__name__, plain('k'), kind, started, created, streamed)
""") + fence("""
x = llm_query('q')
print('sync', isinstance(x, str), x.upper(), llm_query_batched(['r', 's']), [llm_query(p) for p in 'tu'])
""")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path)
    text = run.cell_text()
    assert ("async echo:a ['echo:b', 'echo:c'] ['echo:d', 'echo:e'] ['echo:f', 'echo:g'] echo:h "
            "['ECHO:I', 'ECHO:J'] str echo:k coroutine ['echo:l', 'echo:m'] "
            "['echo:n', 'echo:o'] ['echo:v', 'echo:w']") in text, text
    assert "sync True ECHO:Q ['echo:r', 'echo:s'] ['echo:t', 'echo:u']" in text, text
    assert run.result.answer == "ok"


async def test_awaited_rlm_forms_start_child_rlms(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        question = question_of(messages)
        if question.startswith("child"):
            if turn_of(messages) == 1:
                return fence("print(context)")
            return f"FINAL(answer of {question})"
        if turn_of(messages) == 1:
            return fence("""
import asyncio
one = await rlm_query('child 1', context='c1')
two = await asyncio.gather(*(rlm_query(p) for p in ['child 2', 'child 3']))
three = await rlm_query_batched(['child 4', 'child 5'])
print('got', one, two, three)
""")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, max_depth=2)
    assert ("got answer of child 1 ['answer of child 2', 'answer of child 3'] "
            "['answer of child 4', 'answer of child 5']") in run.cell_text()
    children = [e for e in run.kinds(ev.NODE_STARTED) if e.get("node_kind") == "rlm"]
    assert len(children) == 5


async def test_gather_runs_the_calls_concurrently(corpus: Path, tmp_path: Path) -> None:
    """8 calls at 0.5 s: about 0.5 s under gather, 4 s one after another (which proves the difference)."""
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(0.5)
            return "echo:" + messages[-1]["content"]
        if turn_of(messages) == 1:
            return fence("""
import asyncio, time
started = time.perf_counter()
together = await asyncio.gather(*(llm_query(f'p{i}') for i in range(8)))
print(f'gather {time.perf_counter() - started:.3f}', together == [f'echo:p{i}' for i in range(8)])
""") + fence("""
started = time.perf_counter()
one_by_one = [llm_query(f'p{i}') for i in range(8)]
print(f'loop {time.perf_counter() - started:.3f}', one_by_one == together)
""")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path)
    text = run.cell_text()
    gather = re.search(r"gather (\d+\.\d+) True", text)
    loop = re.search(r"loop (\d+\.\d+) True", text)
    assert gather and loop, text
    assert float(gather.group(1)) < 2.0, text
    assert float(loop.group(1)) > 3.5, text
    assert len(sub_calls(run, "done")) == 16


async def test_gather_stays_under_the_concurrency_cap(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(0.3)
            return "fine"
        if turn_of(messages) == 1:
            return fence("import asyncio\nprint(await asyncio.gather(*(llm_query(str(i)) for i in range(6))))")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, concurrency=2)
    assert "['fine', 'fine', 'fine', 'fine', 'fine', 'fine']" in run.cell_text()
    assert run.server.max_inflight == 2


async def test_interrupting_an_awaited_gather_cancels_the_host_requests(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(6)
            return "late"
        if turn_of(messages) == 1:
            return fence("import asyncio\nprint(await asyncio.gather(*(llm_query(str(i)) for i in range(8))))")
        time.sleep(7)  # the run goes on past the calls' 6 s: they must have been cancelled, not answered
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, cell_timeout=1.5)
    assert [e.get("status") for e in run.kinds(ev.CELL_FINISHED)] == ["timeout"]
    assert "late" not in run.cell_text()
    finished = sub_calls(run)
    assert len(finished) == 8 and {e.get("status") for e in finished} == {"killed"}, finished
    cell_end = run.kinds(ev.CELL_FINISHED)[0].t
    assert all(e.t < cell_end + 1.0 for e in finished), (cell_end, finished)


async def test_a_timed_out_await_cancels_its_host_request_at_once(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(3)
            return "late"
        if turn_of(messages) == 1:
            return fence("""
import asyncio
try:
    await asyncio.wait_for(llm_query('slow'), timeout=0.5)
except asyncio.TimeoutError:
    print('timed out')
await asyncio.sleep(5)  # the cell goes on; the host must not still be waiting for the model
print('went on')
""")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path)
    assert "timed out" in run.cell_text() and "went on" in run.cell_text()
    assert [e.get("status") for e in sub_calls(run)] == ["killed"]


async def test_hard_limit_raises_and_the_rest_of_the_gather_is_cancelled(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            time.sleep(4)
            return "late"
        if turn_of(messages) == 1:
            return fence("""
import asyncio
try:
    await asyncio.gather(*(llm_query(str(i)) for i in range(6)))
except RuntimeError as exc:
    print('raised:', exc)
""") + fence("import time\ntime.sleep(6)\nprint('waited')")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, max_subcalls=3)
    assert "raised: limit reached (max_subcalls)" in run.cell_text(), run.cell_text()
    finished = sub_calls(run)
    assert len(finished) == 3 and {e.get("status") for e in finished} == {"killed"}, finished
