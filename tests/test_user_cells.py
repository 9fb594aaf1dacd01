"""Your own cells in the root's REPL, without the app: run through the same command interface the app
uses (``Steering.run_cell``), on a real run (kernel, scripted model over HTTP).

Each test reacts to events on a thread of its own (``steer_sample.FakeUI``), as the app would.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import nbformat
import pytest

from rlm_tui.core import events as ev
from rlm_tui.core.config import Settings
from rlm_tui.core.control import CellRefused
from rlm_tui.core.engine import Engine
from rlm_tui.scripted import ScriptedServer, is_rlm_call, turn_of
from rlm_tui.sessions.export import to_markdown, to_notebook
from rlm_tui.sessions.transcript import SessionLog, render_text
from ask_sample import USER_CODE, root_using_df
from steer_sample import FakeUI, cell_at_turn_step, steer_run

from conftest import fence

pytestmark = pytest.mark.kernel

def root_requests(run) -> list[list[dict]]:
    return [r["messages"] for r in run.server.requests if is_rlm_call(r["messages"])]


async def test_a_user_cell_at_a_step_runs_in_the_root_kernel_and_the_model_is_told(corpus: Path,
                                                                                   tmp_path: Path) -> None:
    react = cell_at_turn_step(USER_CODE)

    run = await steer_run(root_using_df, corpus, tmp_path, react, approve="auto", step="turn")
    assert run.result.answer == "done" and run.ui.seen["ran"] is True
    started = run.kinds(ev.CELL_STARTED)
    assert [(e.get("cell"), e.get("by")) for e in started] == [(1, None), (2, "user"), (3, None)]
    assert started[1].node == "n0" and started[1].get("code") == USER_CODE
    outputs = {e.get("cell"): e.get("text") for e in run.kinds(ev.CELL_OUTPUT)}
    assert outputs[2] == "42\n" and outputs[3] == "twice 84\n"  # the model's next cell used df
    recorded = [e for e in run.session if e.kind == ev.CELL_STARTED and e.get("by") == "user"]
    assert len(recorded) == 1 and recorded[0].get("code") == USER_CODE
    second = root_requests(run)[1][-1]["content"]  # the model's next message after the user's cell
    assert second.startswith("Output of code block 1:\nmodel 1")
    assert f"The user ran this code in your REPL themselves:\n```repl\n{USER_CODE}\n```\nIt printed:\n42" in second
    assert "df: int" in second  # the variables listed include it
    third = root_requests(run)[2][-1]["content"]
    assert "The user ran" not in third  # told once

    log = SessionLog.read(tmp_path / "session.jsonl")  # replay --headless and the exports mark it as yours
    text = io.StringIO()
    render_text(log, text)
    assert "cell 2 (you) · ok" in text.getvalue() and USER_CODE in text.getvalue()
    assert "cell 1 · ok" in text.getvalue() and "cell 3 · ok" in text.getvalue()
    assert "cell 2 (you) · ok" in to_markdown(log)
    notebook = to_notebook(log)
    nbformat.validate(notebook)
    (mine,) = [c for c in notebook.cells if c.cell_type == "code" and c.metadata["rlm_tui"].get("by") == "user"]
    assert mine.source == USER_CODE and mine.execution_count == 2


async def test_a_user_cell_is_refused_while_a_cell_runs_and_after_the_run(corpus: Path, tmp_path: Path) -> None:
    def root(messages, model):
        if turn_of(messages) == 1:
            return fence("import time\nprint('busy', flush=True)\ntime.sleep(1)")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.CELL_OUTPUT and "busy" in event.get("text", ""):
            with pytest.raises(CellRefused, match="a cell is running in the root's kernel"):
                ui.do(ui.steering.run_cell("print('mine')"))
            ui.seen["refused"] = True

    run = await steer_run(root, corpus, tmp_path, react, approve="auto")
    assert run.result.answer == "done" and run.ui.seen["refused"]
    assert [e.get("by") for e in run.kinds(ev.CELL_STARTED)] == [None]
    assert run.ui.steering.run_cell("print('late')").result(timeout=5) is False  # the run is over


async def test_a_user_cell_before_the_kernel_is_ready_is_refused_with_a_reason(corpus: Path,
                                                                              tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.NODE_STARTED and event.parent is None:
            with pytest.raises(CellRefused, match="kernel"):
                ui.do(ui.steering.run_cell("print('too soon')"))
            ui.seen["refused"] = True
            assert ui.do(ui.steering.resume())

    run = await steer_run(root_using_df, corpus, tmp_path, react, approve="auto",
                          before=lambda steering: steering.pause())
    assert run.ui.seen["refused"]
    assert all(e.get("by") is None for e in run.kinds(ev.CELL_STARTED))


async def test_a_user_cell_while_paused_is_in_the_very_next_request(corpus: Path, tmp_path: Path) -> None:
    """Paused before the first model call: the note joins the first message, not one turn late."""
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.KERNEL and event.parent is None and event.get("state") == "idle" and "ran" not in ui.seen:
            ui.seen["ran"] = ui.do(ui.steering.run_cell(USER_CODE))
            assert ui.do(ui.steering.resume())

    def root(messages, model):
        return fence("print('twice', df * 2)") if turn_of(messages) == 1 else "FINAL(done)"

    run = await steer_run(root, corpus, tmp_path, react, approve="auto", before=lambda steering: steering.pause())
    assert run.ui.seen["ran"] and run.result.answer == "done"
    first = root_requests(run)[0]
    assert first[-1]["content"].startswith("Question: What is the answer?")
    assert "The user ran this code in your REPL themselves" in first[-1]["content"]
    assert [(e.get("cell"), e.get("by")) for e in run.kinds(ev.CELL_STARTED)] == [(1, "user"), (2, None)]
    assert "twice 84" in run.cell_text()


async def test_the_models_cell_waits_for_a_user_cell_started_at_its_gate(corpus: Path, tmp_path: Path) -> None:
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING and event.get("what") == "cell":
            ui.seen["gate"] = event.get("gate")
            ui.seen["mine"] = ui.steering.run_cell("import time\nprint('mine', flush=True)\ntime.sleep(1)\ndf = 42")
        elif event.kind == ev.CELL_OUTPUT and event.get("text") == "mine\n":
            assert ui.do(ui.steering.set_step("off"))  # lets the model's cell go while yours runs

    run = await steer_run(root_using_df, corpus, tmp_path, react, approve="auto", step="cell")
    assert run.ui.seen["mine"].result(timeout=30) is True
    order = [(e.kind, e.get("cell")) for e in run.events if e.kind in (ev.CELL_STARTED, ev.CELL_FINISHED)]
    assert order[:4] == [(ev.CELL_STARTED, 2), (ev.CELL_FINISHED, 2), (ev.CELL_STARTED, 1), (ev.CELL_FINISHED, 1)]
    assert "twice 84" in run.cell_text()


async def test_the_engine_refuses_once_the_root_kernel_is_gone(corpus: Path, tmp_path: Path) -> None:
    with ScriptedServer(root_using_df) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            session_path=tmp_path / "session.jsonl", lm_backoff=0.05)
        engine = Engine(settings, "What is the answer?", corpus)
        assert (await engine.run()).answer == "done"
        with pytest.raises(CellRefused, match="no live kernel"):
            await engine.run_user_cell("print('after')")


async def test_the_next_request_waits_for_a_user_cell_still_running(corpus: Path, tmp_path: Path) -> None:
    """Started while the model writes a reply with no code, your cell outlasts that reply: the next
    request goes out after it, with its note, rather than one turn late."""
    def root(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("x = 1")
        if turn == 2:
            time.sleep(0.5)  # your cell starts while this reply is written
            return "Let me think."
        if turn == 3:
            return fence("print('twice', df * 2)")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.LM_STARTED and event.get("turn") == 2:
            ui.seen["mine"] = ui.steering.run_cell("import time\ntime.sleep(1.5)\ndf = 42\nprint('set')")

    run = await steer_run(root, corpus, tmp_path, react, approve="auto")
    assert run.ui.seen["mine"].result(timeout=30) is True
    requests = root_requests(run)
    assert "The user ran this code" in requests[2][-1]["content"]
    assert "twice 84" in run.cell_text()
