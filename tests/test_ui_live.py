"""The app driving real runs: the engine in its thread, real kernels, litellm against the scripted server.

The scripted scenario is the bundled demo (``rlm_tui/demo.py``) at full speed.
"""

from __future__ import annotations

import os
import pty
import signal
import threading
import time

import pytest
from textual.widgets import Markdown

from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.demo import BADGE, QUESTION, ROOT_TURNS, start_demo
from rlm_tui.ui.app import RlmApp
from rlm_tui.ui.runner import EngineSource
from rlm_tui.ui.widgets.answer import AnswerPanel
from rlm_tui.ui.widgets.call_tree import CallTreeView
from rlm_tui.ui.widgets.status import RunHeader, StatusBar
from rlm_tui.ui.widgets.transcript_view import TranscriptView

from conftest import PYTHON, ROOT
from procs import alive, descendants, drain, kernels_of
from screen import MAX_PAUSES, shown, tree_rows, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.kernel, pytest.mark.usefixtures("isolated_dirs")]

SIZE = (160, 45)
FINAL_ANSWER = ROOT_TURNS[-1].split("FINAL(", 1)[1].removesuffix(")")


def demo_source(pace: float) -> EngineSource:
    settings, folder, stack = start_demo(pace)
    return EngineSource(settings, QUESTION, folder, badge=BADGE, on_finish=stack.close)


async def test_demo_run_shows_tree_transcript_and_answer() -> None:
    source = demo_source(pace=0.0)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        assert "starting the engine" in shown(app.query_one(StatusBar)), "the UI is up before the engine"
        assert "SCRIPTED DEMO" in shown(app.query_one(RunHeader))
        await pilot.press("question_mark")  # the run goes on, and is drawn, under the help screen
        await wait_for(pilot, lambda: app.run_state.finished)
        await pilot.press("escape")
        app.query_one(CallTreeView).root.expand_all()  # a collapsed batch's prompts are labelled when shown
        await pilot.pause()
        rows = [(depth, label.split("  ")[0]) for depth, _, label, _ in tree_rows(app.query_one(CallTreeView).root)]
        assert rows[0][1].startswith("✓ root When is the")
        kinds = [(depth, label.split()[1]) for depth, label in rows]
        assert kinds == [(0, "root"), (1, "batch"), (2, "llm"), (2, "llm"), (2, "llm"), (1, "rlm"), (2, "llm")]
        assert all(label.startswith("✓") for _, label in rows)
        text = app.query_one(TranscriptView).plain_text()
        for expected in ("turn 1 ·", "2024-03-12-review.md: 275 chars", "✗ cell 3 error",
                         "IndexError", "↲ ✓ rlm done", "FINAL answer"):
            assert expected in text, expected
        panel = app.query_one(AnswerPanel)
        assert panel.display and "2024-05-16" in panel.query_one(Markdown).source
        assert "kernel off" in shown(app.query_one(StatusBar))
        session = load(source.settings.session_path)
        assert session.events[-1].kind == ev.RUN_FINISHED
        assert session.events[-1].get("answer") == FINAL_ANSWER
        await pilot.press("q")
    assert not app.is_running


async def test_child_transcript_is_its_own_story() -> None:
    source = demo_source(pace=0.0)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_state.finished)
        child = next(n for n in app.calls.nodes.values() if n.kind == "rlm")
        tree = app.query_one(CallTreeView)
        tree.focus()
        line = next(i for i in range(tree.last_line + 1) if tree.get_node_at_line(i).data == child.id)
        tree.cursor_line = line
        await pilot.pause()
        text = app.query_one(TranscriptView).plain_text()
        assert "child RLM  depth 1" in text and "FINAL_VAR(reason)" in text
        assert "1 paragraph(s) mention an objection" in text and "↳ llm Who objects in this paragraph" in text
        assert "IndexError" not in text


async def test_quitting_mid_run_stops_the_engine_and_its_kernels() -> None:
    source = demo_source(pace=1.0)
    app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(n.turns >= 1 for n in app.calls.nodes.values()))
        kernels = kernels_of(descendants(os.getpid()))
        assert kernels
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert source._thread is not None and not source._thread.is_alive()
    assert not any(alive(k) for k in kernels)
    last = load(source.settings.session_path).events[-1]
    assert last.kind == ev.RUN_FINISHED and last.get("stopped_by") == "interrupted"


def test_sigterm_quits_the_app_like_q(tmp_path) -> None:
    """`rlm-tui demo` in a terminal (a pty), killed with SIGTERM mid-run: kernels gone, session closed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command, in a real (pseudo) terminal
        os.environ.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
                          TERM="xterm-256color", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
        os.execv(PYTHON, [PYTHON, "-m", "rlm_tui", "demo"])
    drained = threading.Thread(target=drain, args=(fd,), daemon=True)  # a terminal nobody reads blocks
    drained.start()
    try:
        for _ in range(MAX_PAUSES):
            kernels = kernels_of(descendants(pid))
            if kernels:
                break
            time.sleep(0.05)
        assert kernels, "the demo never started a kernel"
        os.kill(pid, signal.SIGTERM)
        status = _wait_exit(pid, within=120)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not any(alive(k) for k in kernels)
    sessions = list((tmp_path / "data" / "rlm-tui" / "sessions").glob("*.jsonl"))
    last = load(sessions[0]).events[-1]
    assert last.kind == ev.RUN_FINISHED and last.get("stopped_by") == "interrupted"


def _wait_exit(pid: int, within: float) -> int:
    """The child's wait status; fails (instead of hanging) if it has not exited in time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.1)
    raise AssertionError(f"the app did not exit within {within:g} s of SIGTERM")
