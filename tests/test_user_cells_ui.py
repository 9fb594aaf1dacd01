"""Your own cells from the keyboard: a pilot test pressing ``p`` in the real app on a real run
(kernel, litellm, scripted model over HTTP), checking the transcript, the session file and what the
model was sent next."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import TextArea

from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import is_rlm_call, turn_of
from rlm_tui.ui.steering_screens import UserCellScreen
from rlm_tui.ui.widgets.transcript_view import TranscriptView

from conftest import fence
from screen import wait_for
from app_sample import SIZE, footer_keys, live_app
from ask_sample import USER_CODE

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

def root(messages, model):
    turn = turn_of(messages)
    if turn == 1:
        return fence("import time\nprint('model looks', flush=True)\ntime.sleep(1.5)")
    if turn == 2:
        return fence("print('twice', df * 2)")
    return "FINAL(done)"


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def step_waiting(app, turn: int):
    return lambda: any(q.kind == "turn" and q.data.get("turn") == turn for q in app.questions.items.values())


async def test_p_runs_your_cell_in_the_root_kernel_at_a_step(corpus: Path, tmp_path: Path) -> None:
    with live_app(root, corpus, tmp_path, approve="auto", step="turn") as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, step_waiting(app, 1), "the step before turn 1")
            await pilot.press("s")
            await wait_for(pilot, lambda: app.calls.root in app.questions.cells, "the model's cell running")
            assert footer_keys(app)["p"] == "steer_user_cell"
            await pilot.press("p")  # a cell runs: refused with the reason, no editor
            assert not isinstance(app.screen, UserCellScreen)
            assert any("A cell is running in the root's kernel" in n for n in notices(app))

            await wait_for(pilot, step_waiting(app, 2), "the step before turn 2")
            await pilot.press("p")
            assert isinstance(app.screen, UserCellScreen)
            app.screen.query_one("#code", TextArea).insert("df = 41")
            await pilot.press("escape")  # cancelled: nothing runs, the text is kept for next time
            assert not isinstance(app.screen, UserCellScreen)
            await pilot.press("p")
            area = app.screen.query_one("#code", TextArea)
            assert area.text == "df = 41"
            area.insert(USER_CODE.removeprefix("df = 41"))
            await pilot.press("ctrl+s")
            assert not isinstance(app.screen, UserCellScreen)
            transcript = app.query_one(TranscriptView)
            await wait_for(pilot, lambda: "✓ cell 2 (you)" in transcript.plain_text(), "your cell's end")
            assert "42" in transcript.plain_text()
            await pilot.press("c")  # continue: out of step mode
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            shown = transcript.plain_text()
            await pilot.press("p")  # the kernel is gone: said so, no editor
            assert not isinstance(app.screen, UserCellScreen)
            assert any("There is no live root kernel: the run is over." in n for n in notices(app))
            await pilot.press("q")
    assert app.run_state.answer == "done"
    mine = shown.index("✓ cell 2 (you)")
    assert shown.index("your cell") < shown.index(USER_CODE) < mine  # your code is shown: no reply holds it
    assert shown.index("✓ cell 1 ·") < mine < shown.index("twice 84")  # the model's next cell used df
    events = load(session).events
    (user_cell,) = [e for e in events if e.kind == ev.CELL_STARTED and e.get("by") == "user"]
    assert user_cell.get("code") == USER_CODE and user_cell.get("cell") == 2 and user_cell.node == "n0"
    assert any(e.kind == ev.CELL_OUTPUT and e.get("cell") == 2 and e.get("text") == "42\n" for e in events)
    turns = [r["messages"] for r in server.requests if is_rlm_call(r["messages"])]
    told = turns[1][-1]["content"]
    assert f"The user ran this code in your REPL themselves:\n```repl\n{USER_CODE}\n```\nIt printed:\n42" in told
