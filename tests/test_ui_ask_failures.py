"""A failed question in the app leaves the session open: the first question's model fails (HTTP 500 until the
retries give up) or its kernel is killed mid-cell, the question is shown as failed with its reason, and the
follow-up typed into the box answers (in a fresh kernel, with a note, when the old one died). The real app
via its pilot, a real kernel, the scripted model over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Markdown, TextArea

from conftest import fence
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import question_of, turn_of
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.steering_screens import UserCellScreen
from rlm_tui.ui.widgets.answer import AnswerPanel
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.question_box import QuestionBox
from rlm_tui.ui.widgets.transcript_view import TranscriptView

from app_sample import SIZE, live_app, type_question
from screen import shown, tree_rows, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

def script(messages, model):
    """`broken`: the server fails (HTTP 500); `crash`: every cell after the first kills its kernel; else an answer."""
    question, turn = question_of(messages), turn_of(messages)
    if question == "broken":
        raise RuntimeError("the model server is down")
    if question == "crash":
        return fence("kept = 41") if turn == 1 else fence("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    if question == "mine":
        return fence("x = 1") if turn == 1 else "FINAL(the model's)"
    if turn == 1:
        return fence("print(type(context).__name__, 'kept' in globals())")
    return "FINAL(fine)"


async def ask_follow_up(pilot, app: RlmApp, text: str) -> None:  # type: ignore[no-untyped-def]
    """`/`, the next question, and its end (a second root in the tree)."""
    await pilot.press("slash")
    await type_question(pilot, text)
    await wait_for(pilot, lambda: app.question_box.display and len(roots(app)) == 2, "the follow-up's answer")


def roots(app: RlmApp) -> list[str]:
    view = app.query_one(CallTreeView)
    return [label.split("  ")[0] for _, node, label, _ in tree_rows(view.root) if node and label.split()[1] == "root"]


async def test_a_failed_first_question_then_a_follow_up_that_answers(corpus: Path, tmp_path: Path) -> None:
    with live_app(script, corpus, tmp_path, question=None, approve="auto") as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            box, panel = app.query_one(QuestionBox), app.query_one(AnswerPanel)
            await wait_for(pilot, lambda: box.has_focus, "the question box")
            await type_question(pilot, "broken")
            await wait_for(pilot, lambda: box.display, "the first question's end")
            assert roots(app) == ["✗ root broken"]
            assert panel.display and panel.border_title == "Question failed"
            error = panel.query_one(Markdown).source
            assert "500" in error or "server is down" in error
            assert shown(panel.query_one("#answer-totals")).startswith("failed · 0 sub-calls")
            assert not app.run_state.finished  # the session waits for the next question
            transcript = app.query_one(TranscriptView).plain_text()
            assert "retrying" in transcript and "■ failed after" in transcript
            await ask_follow_up(pilot, app, "again")
            assert roots(app) == ["✗ root broken", "✓ root again"]
            assert panel.border_title == "Final answer · question 2" and panel.query_one(Markdown).source == "fine"
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    events = load(session).events
    finished = [e for e in events if e.kind == ev.NODE_FINISHED and e.parent is None]
    assert [(e.get("status"), e.get("stopped_by")) for e in finished] == [("failed", "error"), ("done", None)]
    assert events[-1].kind == ev.RUN_FINISHED and events[-1].get("answer") == "fine"


async def test_a_question_whose_kernel_is_killed_then_a_follow_up_in_a_fresh_kernel(corpus: Path,
                                                                                   tmp_path: Path) -> None:
    with live_app(script, corpus, tmp_path, question=None, approve="auto") as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            box, panel = app.query_one(QuestionBox), app.query_one(AnswerPanel)
            await wait_for(pilot, lambda: box.has_focus, "the question box")
            await type_question(pilot, "crash")
            await wait_for(pilot, lambda: box.display, "the first question's end")
            assert roots(app) == ["✗ root crash"] and panel.border_title == "Question failed"
            assert "died 3 times in a row" in panel.query_one(Markdown).source
            assert app.run_state.kernel_summary() == "dead"
            await ask_follow_up(pilot, app, "after")
            assert roots(app) == ["✗ root crash", "✓ root after"]
            await pilot.press("r")  # the latest question's root
            transcript = app.query_one(TranscriptView).plain_text()
            assert "the root's kernel had died: a fresh kernel was started" in transcript
            assert "dict False" in transcript  # `context` is back, the first question's `kept` is gone
            assert app.run_state.kernel_summary() == "idle"
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    assert load(session).events[-1].get("answer") == "fine"


async def test_your_cell_that_sets_the_answer_answers_the_question(corpus: Path, tmp_path: Path) -> None:
    """At the step before the model's second turn, `p` runs a cell of yours that sets `answer` ready: the question
    ends at once as answered by you (the second turn never goes out) and the box waits for the next question."""
    with live_app(script, corpus, tmp_path, question=None, approve="auto", step="turn") as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            box, panel = app.query_one(QuestionBox), app.query_one(AnswerPanel)
            await wait_for(pilot, lambda: box.has_focus, "the question box")
            await type_question(pilot, "mine")

            def at_turn(turn: int):  # type: ignore[no-untyped-def]
                return lambda: any(q.kind == "turn" and q.data.get("turn") == turn
                                   for q in app.questions.items.values())

            await wait_for(pilot, at_turn(1), "the step before turn 1")
            await pilot.press("s")
            await wait_for(pilot, at_turn(2), "the step before turn 2")
            await pilot.press("p")
            assert isinstance(app.screen, UserCellScreen)
            app.screen.query_one("#code", TextArea).insert('answer["content"] = "my own"; answer["ready"] = True')
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: box.display, "the question's end")
            assert roots(app) == ["✓ root mine"] and not app.questions.items  # the waiting step went with it
            assert panel.border_title == "Final answer" and panel.query_one(Markdown).source == "my own"
            assert "Your answer (your cell set it)" in app.query_one(TranscriptView).plain_text()
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    assert [turn_of(r["messages"]) for r in server.requests] == [1]  # the model's second turn never went out
    events = load(session).events
    assert [(e.get("answer"), e.get("source")) for e in events if e.kind == ev.FINAL_ANSWER] == [("my own", "user")]
    assert events[-1].get("answer") == "my own"


async def test_the_sessions_tokens_spent_end_it_and_close_the_box(corpus: Path, tmp_path: Path) -> None:
    """Unlike a failed question, the session's --max-tokens spent ends the session: no box for a next question."""
    with live_app(script, corpus, tmp_path, question=None, approve="auto", max_tokens=50) as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            box, panel = app.query_one(QuestionBox), app.query_one(AnswerPanel)
            await wait_for(pilot, lambda: box.has_focus, "the question box")
            await type_question(pilot, "spend")
            await wait_for(pilot, lambda: app.run_state.finished, "the session's end")
            await pilot.pause(0.3)
            assert not box.display and panel.display
            assert panel.border_title == "No answer: stopped by max_tokens"
            await pilot.press("slash")
            assert not box.display
            await pilot.press("q")
