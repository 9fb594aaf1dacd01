"""Asking again in the app: start with no question, type one, get the answer, type a follow-up whose code
uses a variable the first made, and get that answer (issue 13's "Done when", with a real kernel and the
scripted model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Markdown

from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.ui.widgets.answer import AnswerPanel
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.question_box import QuestionBox
from rlm_tui.ui.widgets.status import StatusBar

from screen import shown, tree_rows, wait_for
from app_sample import SIZE, live_app, type_question
from ask_sample import follow_up_script

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

async def test_ask_a_question_then_a_follow_up_that_uses_its_variable(corpus: Path, tmp_path: Path) -> None:
    with live_app(follow_up_script, corpus, tmp_path, question=None, approve="auto") as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            box = app.query_one(QuestionBox)
            await pilot.pause()
            assert box.display and box.has_focus, "the app opens with the question box focused"
            assert "waiting for your question" in shown(app.query_one(StatusBar))
            assert not server.requests  # nothing runs before a question is asked
            await type_question(pilot, "Which file has the magic number?")
            assert not box.display
            await wait_for(pilot, lambda: box.display, "the first answer")
            panel = app.query_one(AnswerPanel)
            assert panel.display and panel.query_one(Markdown).source == "src/deep/needle.txt"
            assert not box.has_focus and not app.run_state.finished  # the answer is read first: q quits
            await pilot.press("a")  # the answer panel hides and shows again between questions
            assert not panel.display
            await pilot.press("a")
            assert panel.display
            await pilot.press("slash")
            assert box.has_focus
            await type_question(pilot, "What is the number?")
            await wait_for(pilot, lambda: box.display, "the follow-up's answer")
            assert panel.query_one(Markdown).source == "7316"
            assert "question 2" in str(panel.border_title)
            assert "question 2" in shown(app.query_one(StatusBar))
            view = app.query_one(CallTreeView)
            rows = [(depth, label.split("  ")[0]) for depth, node, label, _ in tree_rows(view.root) if node]
            assert [row for row in rows if row[1].split()[1] == "root"] == [
                (1, "✓ root Which file has the magic number?"), (1, "✓ root What is the number?")]
            drawn = [line.removeprefix("│ ").split("   ")[0].strip() for line in shown(view).splitlines()]
            print("\n".join(drawn))
            tops = [line for line in drawn if line.startswith(("▼ ✓ root", "▶ ✓ root"))]  # at the left edge
            assert tops == ["▼ ✓ root Which file has the magic number?", "▼ ✓ root What is the number?"]
            await pilot.press("q")  # the box is not focused after an answer: q quits, ending the session
            await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    events = load(session).events
    assert [e.get("question") for e in events if e.kind == ev.QUESTION_ASKED] == [
        "Which file has the magic number?", "What is the number?"]
    last = events[-1]
    assert last.kind == ev.RUN_FINISHED and last.get("answer") == "7316" and last.get("stopped_by") is None
