"""Every limit stops cleanly: an event, a clean stop or an error string to the code, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import fence, run_script
from procs import alive, descendants, kernels_of
from rlm_tui.core import events as ev
from rlm_tui.scripted import is_rlm_call, turn_of

pytestmark = pytest.mark.kernel


def limits_hit(run) -> list[str]:
    return [e.get("limit") for e in run.kinds(ev.LIMIT_REACHED)]


async def test_max_iterations_asks_once_for_a_final_answer(corpus: Path, tmp_path: Path) -> None:
    asked: list[str] = []

    def script(messages, model):
        if "used all your turns" in messages[-1]["content"]:
            asked.append(messages[-1]["content"])
            return "FINAL(best guess)"
        return fence("print(len(context))")

    run = await run_script(script, corpus, tmp_path, max_iterations=2)
    assert run.result.answer == "best guess"
    assert run.result.stopped_by == "max_iterations"
    assert len(asked) == 1
    assert run.kinds(ev.FINAL_ANSWER)[0].get("source") == "forced"


async def test_max_subcalls_raises_in_the_code_and_run_continues(corpus: Path, tmp_path: Path) -> None:
    # A refused call raises (so a loop of them stops at once); the code may catch it.
    def script(messages, model):
        if not is_rlm_call(messages):
            return "ok"
        if turn_of(messages) == 1:
            return fence("r = []\ntry:\n    for i in range(8):\n        r.append(llm_query(str(i)))\n"
                         "except RuntimeError as exc:\n    print(r.count('ok'), exc)")
        return "FINAL(finished anyway)"

    run = await run_script(script, corpus, tmp_path, max_subcalls=5)
    assert "5 limit reached (max_subcalls)" in run.cell_text()
    assert run.result.answer == "finished anyway"
    assert run.result.calls == 5
    assert limits_hit(run) == ["max_subcalls"]
    assert run.result.stopped_by is None


async def test_max_tokens_stops_the_run(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        return fence("print('turn')")

    run = await run_script(script, corpus, tmp_path, max_tokens=50)
    assert run.result.answer is None
    assert run.result.stopped_by == "max_tokens"
    assert len(run.kinds(ev.TURN_STARTED)) == 1


async def test_budget_stops_the_run_for_a_priced_model(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        return fence("print('turn')")

    run = await run_script(script, corpus, tmp_path, model="openai/gpt-4o-mini", budget=1e-7)
    assert run.result.stopped_by == "budget"
    assert run.result.usage["cost_usd"] > 0


async def test_timeout_stops_a_run_stuck_in_a_cell(corpus: Path, tmp_path: Path) -> None:
    kernels: set[int] = set()

    def script(messages, model):
        kernels.update(kernels_of(descendants(os.getpid())))  # the run's kernels, while it runs
        return fence("import time\ntime.sleep(120)")

    run = await run_script(script, corpus, tmp_path, timeout=15, cell_timeout=None)
    assert run.result.stopped_by == "timeout"
    assert run.result.duration_s < 60
    (finished,) = run.kinds(ev.RUN_FINISHED)
    assert (finished.get("stopped_by"), finished.get("answer")) == ("timeout", None)
    assert kernels and not any(alive(k) for k in kernels)  # --timeout shut the kernels down


async def test_cell_timeout_interrupts_and_the_model_is_told(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if turn_of(messages) == 1:
            return fence("import time\ntime.sleep(120)")
        fed.append(messages[-1]["content"])
        return "FINAL(recovered)"

    run = await run_script(script, corpus, tmp_path, cell_timeout=1)
    assert run.result.answer == "recovered"
    assert "KeyboardInterrupt" in fed[0] and "--cell-timeout" in fed[0]
    assert run.kinds(ev.CELL_FINISHED)[0].get("status") == "timeout"


async def test_a_child_rlm_is_not_charged_to_its_parents_cell(corpus: Path, tmp_path: Path) -> None:
    """The parent's cell waits 4+ s on a child whose own cells take 2 s each, under --cell-timeout 3."""
    def script(messages, model):
        first = next(m["content"] for m in messages if m["role"] == "user")
        if "Question: child task" in first:  # the child RLM
            if turn_of(messages) == 1:
                return fence("import time\ntime.sleep(2)\nstep = 1")
            if turn_of(messages) == 2:
                return fence("import time\ntime.sleep(2)\nanswer['content'] = 'child ok'; answer['ready'] = True")
        if turn_of(messages) == 1:
            return fence("r = rlm_query('child task')\nprint('child said', r)")
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, max_depth=2, cell_timeout=3)
    assert "child said child ok" in run.cell_text()
    assert [e.get("status") for e in run.kinds(ev.CELL_FINISHED)] == ["ok", "ok", "ok"]
    assert run.result.answer == "done"


async def test_concurrency_caps_requests_in_flight(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "x"
        if turn_of(messages) == 1:
            return fence("print(len(llm_query_batched(['q'] * 40)))")
        return "FINAL(ok)"

    run = await run_script(script, corpus, tmp_path, latency=0.05, concurrency=4)
    assert "40" in run.cell_text()
    assert run.server.max_inflight == 4  # parallel up to the cap, never beyond
