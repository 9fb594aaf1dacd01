"""Steering from the keyboard: pilot tests pressing the keys on real runs (kernels, litellm, scripted model).

Each test waits for the app to show a question (or a running cell), presses
keys as a user would, and checks what the engine did: the cell output the
model's code saw, the session file's decisions. Waiting is bounded by a number
of pilot pauses, a guard against hanging rather than a timing assertion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from rlm_tui.core import events as ev
from rlm_tui.core.control import KILLED_RESULT
from rlm_tui.core.session import load
from rlm_tui.scripted import is_rlm_call, question_of, turn_of
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.help import HelpScreen
from rlm_tui.ui.steering import STEERING_BINDINGS
from rlm_tui.ui.steering_screens import DenyScreen, EditCellScreen, EditSpawnScreen
from rlm_tui.ui.widgets.approval import ApprovalPanel
from rlm_tui.ui.widgets.transcript_view import TranscriptView

from app_sample import SIZE, footer_keys, live_app
from conftest import fed_root, fence
from screen import shown, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

MAX_PAUSES = 1200

def waiting_prompt(app: RlmApp, prompt: str):
    return lambda: any(q.data.get("prompt") == prompt for q in app.questions.items.values())


def panel_text(app: RlmApp) -> str:
    """The approval panel's title, body and key hints as drawn."""
    panel = app.query_one(ApprovalPanel)
    return f"{panel.border_title}\n{shown(panel.query_one('#approval-body'))}\n{panel.border_subtitle}"


def cell_text(session: Path, node: str | None = None) -> str:
    return "".join(e.get("text", "") for e in load(session).events
                   if e.kind == ev.CELL_OUTPUT and (node is None or e.node == node))


def sub_echo(root):
    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub says " + messages[-1]["content"]
        return root(messages, model)
    return script


def one_cell(code: str):
    return sub_echo(lambda messages, model: fence(code) if turn_of(messages) == 1 else "FINAL(done)")


async def test_y_approves_e_edits_n_denies_with_a_reason(corpus: Path, tmp_path: Path) -> None:
    code = ("a = llm_query('first question')\nb = llm_query('second question')\n"
            "c = llm_query('third question')\nprint(a, '|', b, '|', c)")
    with live_app(one_cell(code), corpus, tmp_path) as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, waiting_prompt(app, "first question"), "the first call waiting")
            panel = app.query_one(ApprovalPanel)
            assert panel.display and "first question" in panel_text(app)
            assert "Waiting for approval: llm_query" in str(panel.border_title)
            keys = footer_keys(app)
            assert keys["y"] == "steer_approve" and keys["a"] == "steer_approve_all" and keys["e"] == "steer_edit"
            await pilot.press("y")

            await wait_for(pilot, waiting_prompt(app, "second question"), "the second call waiting")
            await pilot.press("e")
            assert isinstance(app.screen, EditSpawnScreen)
            area = app.screen.query_one("#prompt", TextArea)
            area.move_cursor(area.document.end)
            await pilot.press(*" edited", "ctrl+s")
            assert not isinstance(app.screen, EditSpawnScreen)

            await wait_for(pilot, waiting_prompt(app, "third question"), "the third call waiting")
            await pilot.press("n")
            assert isinstance(app.screen, DenyScreen)
            await pilot.press(*"not needed", "enter")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            assert not panel.display and "y" not in footer_keys(app)
            root_transcript = app.query_one(TranscriptView).plain_text()
            await pilot.press("q")
    for line in ("✓ approved by user", "✓ edited and approved by user", "⊘ denied by user: not needed"):
        assert line in root_transcript  # each waiting line is followed by what was decided
    assert "sub says first question | sub says second question edited | Error: denied by user: not needed" \
        in cell_text(session)
    decided = [e for e in load(session).events if e.kind == ev.SPAWN_DECIDED]
    assert [(e.get("decision"), e.get("by")) for e in decided] == [("approve", "user"), ("edit", "user"),
                                                                     ("deny", "user")]
    assert decided[1].get("original_prompt") == "second question"
    assert decided[1].get("prompt") == "second question edited"
    assert decided[2].get("reason") == "not needed"
    subs = [r["messages"][-1]["content"] for r in server.requests if not is_rlm_call(r["messages"])]
    assert subs == ["first question", "second question edited"]


async def test_two_waiting_at_once_are_both_shown_and_a_approves_all(corpus: Path, tmp_path: Path) -> None:
    code = """
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(2) as pool:
    one, two = pool.submit(llm_query, 'one'), pool.submit(llm_query, 'two')
print(one.result(), '|', two.result())
"""
    with live_app(one_cell(code), corpus, tmp_path) as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.questions.items) == 2, "two calls waiting")
            panel = app.query_one(ApprovalPanel)
            assert "· 2 waiting" in str(panel.border_title) and "a approve all" in str(panel.border_subtitle)
            rows = [str(node.label) for node in app.tree_view.root.children]
            assert len(rows) == 2 and all("waiting for approval" in row for row in rows)
            second = list(app.questions.items)[1]
            app.tree_view.move_to(second)  # the panel shows the question under the cursor
            await pilot.pause()
            assert f"llm_query {second}" in str(panel.border_title)
            await pilot.press("a")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            await pilot.press("q")
    assert "sub says one | sub says two" in cell_text(session)


async def test_o_opens_a_batch_then_n_and_always(corpus: Path, tmp_path: Path) -> None:
    code = "r = llm_query_batched(['p0', 'p1'])\nprint(r, llm_query('after'))"
    with live_app(one_cell(code), corpus, tmp_path) as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: any(q.is_batch for q in app.questions.items.values()), "the batch")
            assert "o one by one" in str(app.query_one(ApprovalPanel).border_subtitle)
            await pilot.press("o")
            await wait_for(pilot, lambda: len(app.questions.items) == 2, "its two prompts waiting")
            batch = next(n for n in app.calls.nodes.values() if n.kind == "batch")
            assert app.tree_view.cursor_node.data == batch.id and app.tree_view.cursor_node.is_expanded
            app.tree_view.move_to(batch.children[1])
            await pilot.pause()
            assert "p1" in panel_text(app)
            await pilot.press("n", "enter")  # deny p1, no reason
            await wait_for(pilot, lambda: len(app.questions.items) == 1, "p0 left")
            await pilot.press("A")  # p0, and every llm_query after it, without asking
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            await pilot.press("q")
    assert "['sub says p0', 'Error: denied by user'] sub says after" in cell_text(session)
    events = load(session).events
    assert len([e for e in events if e.kind == ev.SPAWN_REQUESTED]) == 3  # the batch and its two prompts
    assert [e.get("spawn_kind") for e in events if e.kind == ev.STEERING] == ["llm"]


async def test_k_kills_the_running_child_and_the_parent_goes_on(corpus: Path, tmp_path: Path) -> None:
    def root(messages, model):
        if question_of(messages).startswith("slow child"):
            return fence("print('child working', flush=True)\nimport time\ntime.sleep(60)")
        if turn_of(messages) == 1:
            return fence("print('parent got:', rlm_query('slow child'))")
        return "FINAL(the parent went on)"

    with live_app(sub_echo(root), corpus, tmp_path, approve="auto", max_depth=2) as (app, server, session):
        async with app.run_test(size=SIZE) as pilot:
            def child_in_cell() -> str | None:
                return next((n for n in app.questions.cells if app.calls.nodes[n].kind == "rlm"), None)

            await wait_for(pilot, lambda: child_in_cell() is not None, "the child running its cell")
            child = child_in_cell()
            app.tree_view.move_to(child)
            await pilot.pause()
            await pilot.press("k")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            assert app.calls.nodes[child].status == "killed"
            assert app.run_state.answer == "the parent went on"
            await pilot.press("q")
    events = load(session).events
    assert f"parent got: {KILLED_RESULT}" in cell_text(session, "n0")
    assert [e.get("status") for e in events if e.kind == ev.CELL_FINISHED and e.node == child] == ["interrupted"]
    assert "KeyboardInterrupt" in cell_text(session, child)
    assert [(e.get("action"), e.node) for e in events if e.kind == ev.STEERING] == [("kill", child)]


async def test_k_on_the_root_needs_a_second_press_and_ends_the_run(corpus: Path, tmp_path: Path) -> None:
    with live_app(one_cell("import time\ntime.sleep(60)"), corpus, tmp_path, approve="auto") as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "n0" in app.questions.cells, "the root's cell running")
            app.action_show_root()
            await pilot.press("k")
            await pilot.pause(0.3)
            assert not app.run_state.finished and app.calls.nodes["n0"].status == "running"
            await pilot.press("k")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            assert app.run_state.stopped_by == "killed"
            await pilot.press("q")
    assert load(session).events[-1].kind == ev.RUN_FINISHED


async def test_step_mode_shows_the_cell_and_e_runs_the_edited_code(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []
    root = fed_root(fence("print('as written')"), fed)

    with live_app(sub_echo(root), corpus, tmp_path, approve="auto", step="cell") as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: any(q.kind == "cell" for q in app.questions.items.values()),
                           "the first cell waiting")
            panel = app.query_one(ApprovalPanel)
            assert "before cell 1 of the root" in str(panel.border_title) and "as written" in panel_text(app)
            await pilot.press("e")
            assert isinstance(app.screen, EditCellScreen)
            area = app.screen.query_one("#code", TextArea)
            area.move_cursor(area.document.end)
            await pilot.press("enter", *"print(6 * 7)", "ctrl+s")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            await pilot.press("q")
    started = [e for e in load(session).events if e.kind == ev.CELL_STARTED]
    assert [e.get("code") for e in started] == ["print('as written')\nprint(6 * 7)"]
    assert "as written\n42" in cell_text(session) and "the user edited this code block" in fed[0]


async def test_space_pauses_and_resumes_and_escape_interrupts_the_cell(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []
    root = fed_root(fence("print('started', flush=True)\nimport time\ntime.sleep(60)"), fed)

    with live_app(sub_echo(root), corpus, tmp_path, approve="auto") as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "n0" in app.questions.cells, "the root's cell running")
            assert footer_keys(app)["escape"] == "steer_interrupt"
            await pilot.press("space")
            await wait_for(pilot, lambda: app.questions.paused, "the pause")
            assert footer_keys(app)["space"] == "steer_resume"
            assert str(app.query_one(ApprovalPanel).border_title) == "⏸ Paused"
            await pilot.press("space")
            await wait_for(pilot, lambda: not app.questions.paused, "the resume")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            await pilot.press("q")
    actions = [e.get("action") for e in load(session).events if e.kind == ev.STEERING]
    assert actions == ["pause", "resume", "interrupt"]
    assert "KeyboardInterrupt" in fed[0]


async def test_without_a_live_run_steering_keys_are_hidden_and_help_lists_them() -> None:
    app = RlmApp(theme="rlm-midnight", remember_theme=False)  # no source: like a replay
    async with app.run_test(size=SIZE) as pilot:
        app.feed([ev.Event(ev.RUN_STARTED, data={"question": "q", "settings": {"approve": "ask"}}),
                  ev.Event(ev.NODE_STARTED, "n0", data={"node_kind": "root", "prompt": "q"}),
                  ev.Event(ev.SPAWN_REQUESTED, "n1", "n0", data={"node_kind": "llm", "prompt": "p", "waiting": 1})])
        await pilot.pause()
        assert app.questions.items and not app.query_one(ApprovalPanel).display
        keys = footer_keys(app)
        assert keys.get("a") == "toggle_answer" and "y" not in keys and "k" not in keys
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        (steer,) = [bindings for title, bindings in app.screen.sections if title.startswith("Steering")]
        assert {b.action for b in steer} == {b.action for b in STEERING_BINDINGS}
        await pilot.press("escape")


async def test_deny_modal_cancel_leaves_the_call_waiting(corpus: Path, tmp_path: Path) -> None:
    with live_app(one_cell("print(llm_query('maybe'))"), corpus, tmp_path) as (app, _, session):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, waiting_prompt(app, "maybe"), "the call waiting")
            await pilot.press("n")
            assert isinstance(app.screen, DenyScreen) and app.screen.query_one(Input).has_focus
            await pilot.press("escape")
            assert not isinstance(app.screen, DenyScreen)
            await pilot.pause(0.2)
            assert waiting_prompt(app, "maybe")()  # still waiting: nothing was decided
            await pilot.press("y")
            await wait_for(pilot, lambda: app.run_state.finished, "the end of the run")
            await pilot.press("q")
    assert "sub says maybe" in cell_text(session)
