"""A question that ends badly does not end the session (issue 13's last gap): a model that fails after its
retries, a root kernel that dies, a --timeout; and a user's cell that sets the answer. Real kernels, the
scripted model over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import fence
from rlm_tui.core import events as ev
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import RESTARTED_NOTE, Engine, RunResult
from rlm_tui.core.session import load
from rlm_tui.model.run import RunModel
from rlm_tui.model.state import run_totals
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of

pytestmark = pytest.mark.kernel

SELF_KILL = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


async def session(script, path: Path, tmp_path: Path, questions: list[str], *,
                  on_event: Callable[[Engine, ev.Event], None] | None = None,
                  between: Callable[[Engine, int], Any] | None = None,
                  **limits: Any) -> tuple[RunResult, list[str | None], list[ev.Event], list[dict[str, Any]]]:
    """A session of ``questions``, each asked as the one before ends (``between(engine, i)`` runs first)."""
    events: list[ev.Event] = []
    answers: list[str | None] = []
    rest = list(questions[1:])
    engine: Engine | None = None

    def sink(event: ev.Event) -> None:
        events.append(event)
        if on_event is not None and engine is not None:
            on_event(engine, event)

    async def next_question(answer: str | None) -> str | None:
        answers.append(answer)
        if between is not None:
            assert engine is not None
            await between(engine, len(answers))
        return rest.pop(0) if rest else None

    with ScriptedServer(script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            limits=Limits(**limits), session_path=tmp_path / "session.jsonl", lm_backoff=0.05)
        engine = Engine(settings, questions[0], path, sink=sink, next_question=next_question)
        result = await asyncio.wait_for(engine.run(), 240)
        requests = list(server.requests)
    return result, answers, events, requests


def roots_finished(events: list[ev.Event]) -> list[ev.Event]:
    return [e for e in events if e.kind == ev.NODE_FINISHED and e.parent is None]


def intro_of(requests: list[dict[str, Any]], question: str) -> str:
    """The first message a question's root model got."""
    return next(r["messages"][1]["content"] for r in requests
                if is_rlm_call(r["messages"]) and question_of(r["messages"]) == question)


def easy(messages, model):
    """Any follow-up: look at the REPL, then answer."""
    if turn_of(messages) == 1:
        return fence("print(type(context).__name__, 'kept' in globals())")
    return "FINAL(fine)"


async def test_a_question_whose_model_calls_fail_leaves_the_session_open(corpus: Path, tmp_path: Path) -> None:
    """The first question's every request is an HTTP 500 until the retries give up; the follow-up answers in
    the kernel the first question started, and is told how the first one ended."""
    def script(messages, model):
        if question_of(messages) == "broken":
            raise RuntimeError("the model server is down")  # the scripted server answers HTTP 500
        return easy(messages, model)

    result, answers, events, requests = await session(script, corpus, tmp_path, ["broken", "again"])
    assert answers == [None, "fine"]
    assert result.answer == "fine" and result.error is None and result.stopped_by is None
    assert sum(question_of(r["messages"]) == "broken" for r in requests) == 5  # the first try and 4 retries
    first, second = roots_finished(events)
    assert first.get("status") == "failed" and first.get("stopped_by") == "error"
    assert "HTTP 500" in first.get("error") or "server is down" in first.get("error")
    assert second.get("status") == "done" and second.get("stopped_by") is None
    intro = intro_of(requests, "again")
    assert "1. Q: broken\n   A: (no answer: stopped by an error (" in intro
    starts = [e for e in events if e.kind == ev.KERNEL and e.get("state") == "starting"]
    assert len(starts) == 1 and len([e for e in events if e.kind == ev.CONTEXT_LOADED]) == 1  # one kernel
    assert "dict False" in "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT)
    saved = load(tmp_path / "session.jsonl").events
    model = RunModel()
    model.extend(saved)
    assert [model.tree.nodes[n].status for n in model.tree.roots] == ["failed", "done"]
    usage, _ = run_totals(model.tree)
    assert usage.total_tokens == result.usage["total_tokens"] > 0  # the failed question cost nothing
    assert saved[-1].kind == ev.RUN_FINISHED and saved[-1].get("answer") == "fine"


async def test_a_question_whose_kernel_dies_then_a_follow_up_answers_in_a_fresh_kernel(corpus: Path,
                                                                                       tmp_path: Path) -> None:
    """The first question's kernel is killed mid-cell (SIGKILL) until it gives up (3 deaths); the follow-up
    gets a fresh kernel with `context` reloaded, a note says the earlier variables are gone, and it answers."""
    def script(messages, model):
        if question_of(messages) == "crash":
            return fence("kept = 41\nprint(kept)") if turn_of(messages) == 1 else fence(SELF_KILL)
        return easy(messages, model)

    result, answers, events, requests = await session(script, corpus, tmp_path, ["crash", "after"])
    assert answers == [None, "fine"]
    assert result.answer == "fine" and result.error is None and result.stopped_by is None
    first, second = roots_finished(events)
    assert first.get("status") == "failed" and first.get("stopped_by") == "kernel_deaths"
    assert "died 3 times in a row" in first.get("error")
    assert second.get("status") == "done"
    notes = [e for e in events if e.kind == ev.WARNING and e.node == second.node]
    assert [e.get("message") for e in notes] == [RESTARTED_NOTE]
    states = [e.get("state") for e in events if e.kind == ev.KERNEL and e.node == second.node]
    assert states[:2] == ["dead", "restarting"] and states[-1] == "idle"
    intro = intro_of(requests, "after")
    assert "kernel died and was restarted" in intro and "stopped by an error (the kernel died 3 times" in intro
    outputs = "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT and e.node == second.node)
    assert "dict False" in outputs  # `context` is back, `kept` is gone
    model = RunModel()
    model.extend(events[:-1])  # between the dead kernel's question and the end
    assert [model.tree.nodes[n].status for n in model.tree.roots] == ["failed", "done"]


async def test_a_timed_out_question_is_recorded_as_stopped_by_its_timeout(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if question_of(messages) == "slow":
            return fence("import time\ntime.sleep(60)")
        return easy(messages, model)

    result, answers, events, _ = await session(script, corpus, tmp_path, ["slow", "quick"], timeout=4)
    assert answers == [None, "fine"] and result.answer == "fine"
    first = roots_finished(events)[0]
    assert first.get("status") == "limit" and first.get("stopped_by") == "timeout"
    assert first.get("error") == "timeout: the question took longer than 4 s"


async def test_a_users_cell_that_sets_the_answer_answers_the_running_question(corpus: Path,
                                                                              tmp_path: Path) -> None:
    """While the model thinks about its second turn, the user's cell sets ``answer``: the question ends at once
    as answered by the user (the model's reply is not waited for). Between questions a cell's answer answers
    nothing, and neither leaks into the next question's REPL as a ready answer."""
    def script(messages, model):
        question, turn = question_of(messages), turn_of(messages)
        if question == "first":
            if turn == 2:
                time.sleep(20)  # the model is slow: the user answers meanwhile
                return "FINAL(the model's)"
            return fence("x = 1\nprint(x)")
        if turn == 1:
            return fence("print(answer)")
        return "FINAL(two)"

    asked: list[Any] = []

    def on_event(engine: Engine, event: ev.Event) -> None:
        if event.kind == ev.LM_STARTED and event.get("turn") == 2 and not asked:
            asked.append(engine.steering.run_cell('answer["content"] = "mine"\nanswer["ready"] = True'))

    async def between(engine: Engine, index: int) -> None:
        if index == 1:
            await engine.run_user_cell('FINAL("late")')

    started = time.monotonic()
    result, answers, events, requests = await session(script, corpus, tmp_path, ["first", "second"],
                                                      on_event=on_event, between=between)
    assert time.monotonic() - started < 20  # the slow reply was not waited for
    assert answers == ["mine", "two"] and result.answer == "two"
    finals = [(e.get("answer"), e.get("source")) for e in events if e.kind == ev.FINAL_ANSWER]
    assert finals == [("mine", "user"), ("two", "FINAL")]
    first, second = roots_finished(events)
    assert first.get("status") == "done" and first.get("result") == "mine"
    users = [e for e in events if e.kind == ev.CELL_STARTED and e.get("by") == "user"]
    assert len(users) == 2
    late = [e for e in events if e.kind == ev.WARNING and "answers nothing" in e.get("message", "")]
    assert len(late) == 1 and late[0].node == first.node
    outputs = "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT and e.node == second.node)
    assert "'ready': False" in outputs  # the user's answer did not stay ready for the model's cells
    assert "A: (the user answered it with their own code) mine" in intro_of(requests, "second")


async def test_the_sessions_token_budget_spent_ends_the_session(corpus: Path, tmp_path: Path) -> None:
    """Unlike a question's own limits, --max-tokens is the session's: once spent, no next question is asked."""
    result, answers, events, _ = await session(easy, corpus, tmp_path, ["first", "second"], max_tokens=50)
    assert answers == []  # the session did not wait for a next question
    assert result.stopped_by == "max_tokens" and result.answer is None
    assert roots_finished(events)[0].get("stopped_by") == "max_tokens"


async def test_a_kernel_killed_between_questions_is_restarted_for_the_next(corpus: Path, tmp_path: Path) -> None:
    """The root's kernel process is killed from outside (as the OOM killer would) while the session waits for
    its next question: the follow-up starts in a fresh kernel, with the note, before its model is asked."""
    def script(messages, model):
        if question_of(messages) == "first":
            return fence("kept = 41\nprint(kept)") if turn_of(messages) == 1 else "FINAL(41)"
        return easy(messages, model)

    async def between(engine: Engine, index: int) -> None:
        kernel = engine.root.kernel  # type: ignore[union-attr]
        os.kill(kernel.km.provisioner.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        for _ in range(100):
            if not await kernel.is_alive():
                return
            await asyncio.sleep(0.05)

    result, answers, events, requests = await session(script, corpus, tmp_path, ["first", "after"], between=between)
    assert answers == ["41", "fine"] and result.answer == "fine"
    second = roots_finished(events)[1]
    notes = [e.get("message") for e in events if e.kind == ev.WARNING and e.node == second.node]
    assert notes == [RESTARTED_NOTE]
    assert "kernel died and was restarted" in intro_of(requests, "after")
    died = [e for e in events if e.kind == ev.CELL_FINISHED and e.get("status") == "died"]
    assert died == []  # restarted before the follow-up's first cell, not found dead by it
    outputs = "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT and e.node == second.node)
    assert "dict False" in outputs
