"""Resuming a recorded run at a turn: recorded replies first, then a different live model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import fence
from rlm_tui.cli import main
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of
from rlm_tui.sessions.listing import summarize
from rlm_tui.sessions.resume import RecordedReplies
from sessions_sample import Sample, recorded_sample

pytestmark = pytest.mark.kernel

KEY = "sk-test-not-a-real-key-5678"


@pytest.fixture
def sample() -> Sample:
    return recorded_sample()


class Live:
    """The 'other' model: answers from the turn it is asked for; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict]]] = []

    def __call__(self, messages, model):  # type: ignore[no-untyped-def]
        self.calls.append((model, messages))
        if not is_rlm_call(messages):
            return "LIVE sub-call"
        if question_of(messages).startswith("child task"):
            return "FINAL(live child)"
        return fence("result = f'resumed: {found} files, note {note!r}'\nprint(result)") + "FINAL_VAR(result)\n"


def resume(sample: Sample, tmp_path: Path, capsys: pytest.CaptureFixture[str],
           *extra: str) -> tuple[int, dict, Path, Live]:
    live = Live()
    out = tmp_path / "resumed.jsonl"
    with ScriptedServer(live) as server:
        code = main(["resume", str(sample.path), *extra, "--model", "openai/other-model", "--api-base", server.url,
                     "--api-key", KEY, "--headless", "--json", "--session", str(out)])
    captured = capsys.readouterr()
    result = json.loads(captured.out) if code == 0 else {"stderr": captured.err}
    return code, result, out, live


def recorded_root_reply(sample: Sample, turn: int) -> str:
    started = [e for e in sample.run.events if e.kind == ev.LM_STARTED and e.node == "n0"]
    finished = [e for e in sample.run.events if e.kind == ev.LM_FINISHED and e.node == "n0"]
    assert started[turn - 1].get("turn") == turn
    return finished[turn - 1].get("text")


def test_resume_at_turn_2_with_another_model(sample: Sample, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, result, out, live = resume(sample, tmp_path, capsys, "--at", "2")
    assert code == 0, result
    # Turn 1's code ran again for real (found), its llm_query got the recorded reply (note).
    assert result["answer"] == "resumed: 22 files, note 'summary: summarise part 1'"
    assert result["session"] == str(out)
    # The live model was asked exactly once: the root's turn 2, after the recorded turn 1.
    assert len(live.calls) == 1
    model, messages = live.calls[0]
    assert model == "other-model" and turn_of(messages) == 2
    assert messages[2] == {"role": "assistant", "content": recorded_root_reply(sample, 1)}
    assert "files 22" in messages[3]["content"]  # the re-executed cell's real output
    events = load(out).events
    started = next(e for e in events if e.kind == ev.RUN_STARTED)
    assert started.get("resumed_from")["path"] == str(sample.path.resolve())
    assert started.get("resumed_from")["at_turn"] == 2
    assert started.get("settings")["model"] == "openai/other-model"
    assert started.get("settings")["limits"]["max_depth"] == 2  # the recorded limits
    root_calls = [e for e in events if e.kind == ev.LM_FINISHED and e.node == "n0"]
    assert [bool(e.get("replayed")) for e in root_calls] == [True, False]
    assert root_calls[0].get("tokens_in") == 0 and root_calls[0].get("cost_usd") == 0.0
    summary = summarize(out)
    assert summary.outcome == "answered" and summary.resumed_from == f"{sample.path.name} turn 2"


def test_resume_at_turn_3_replays_batches_and_child_rlms(sample: Sample, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, result, out, live = resume(sample, tmp_path, capsys, "--at", "3")
    assert code == 0, result
    assert [turn_of(m) for _, m in live.calls] == [3]  # batch, child RLM and its llm_query all replayed
    feedback = live.calls[0][1][-1]["content"]
    assert "['summary: a', 'summary: b', 'summary: c']" in feedback and "child done" in feedback
    assert "ZeroDivisionError" in feedback
    tree_kinds = sorted(e.get("node_kind") for e in load(out).events if e.kind == ev.NODE_STARTED)
    assert tree_kinds == sorted(e.get("node_kind") for e in sample.run.events if e.kind == ev.NODE_STARTED)


def test_resume_with_live_subcalls(sample: Sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _, live = resume(sample, tmp_path, capsys, "--at", "2", "--live-subcalls")
    assert code == 0, result
    assert result["answer"] == "resumed: 22 files, note 'LIVE sub-call'"
    assert [is_rlm_call(m) for _, m in live.calls] == [False, True]


def test_resume_usage_errors(sample: Sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["resume", str(sample.path), "--at", "0"], "--at must be between 1 and 4"),
        (["resume", str(sample.path), "--at", "5"], "the session has 3 recorded root turns"),
        (["resume", str(sample.path)], "--at"),
        (["resume", str(tmp_path / "missing.jsonl"), "--at", "1"], "no such file"),
        (["resume", str(sample.path), "--at", "1", "--max-depth", "0"], "must be at least 1"),
        (["resume", str(sample.path), "--at", "1", "--budget", "0"], "must be greater than 0"),
        (["resume", str(sample.path), "--at", "1", "--path", str(tmp_path / "gone")], "give it with --path"),
        (["resume", str(sample.path), "--at", "1", "--json"], "--json needs --headless"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0, (argv, err)


def test_recorded_replies_hand_out_in_order_then_go_live() -> None:
    events = [
        ev.Event(ev.NODE_STARTED, "n0", None, {"node_kind": "root"}),
        ev.Event(ev.LM_STARTED, "n0", None, {"turn": 1, "messages": [{"role": "user", "content": "q"}]}),
        ev.Event(ev.LM_FINISHED, "n0", None, {"text": "one"}),
        ev.Event(ev.NODE_STARTED, "n1", "n0", {"node_kind": "llm", "prompt": "p"}),
        ev.Event(ev.LM_FINISHED, "n1", "n0", {"text": "first p", "model": "m"}),
        ev.Event(ev.NODE_STARTED, "n2", "n0", {"node_kind": "llm", "prompt": "p"}),
        ev.Event(ev.LM_FINISHED, "n2", "n0", {"text": "second p", "model": "m"}),
        ev.Event(ev.LM_STARTED, "n0", None, {"turn": 2, "messages": []}),
        ev.Event(ev.LM_FINISHED, "n0", None, {"text": "two"}),
    ]
    replies = RecordedReplies.from_events(events, at=2)
    assert replies.recorded_turns == 2
    assert replies("n0", None, "m", 1, []).text == "one"
    user = [{"role": "user", "content": "p"}]
    assert [replies("x", "n0", "m", None, user).text for _ in range(2)] == ["first p", "second p"]
    assert replies("x", "n0", "m", None, user) is None  # no more recorded: live
    assert replies("x", "n0", "other", None, user) is None  # another model: live
    assert replies("n0", None, "m", 2, []) is None and replies.live  # turn 2 is the live model's
    assert replies("x", "n0", "m", None, user) is None


@pytest.fixture
def resumed_plan(sample: Sample, tmp_path: Path):  # type: ignore[no-untyped-def]
    from rlm_tui.sessions.resume import plan

    return plan(sample.path, 2, overrides={"model": "openai/other-model", "api_key": KEY,
                                           "session_path": tmp_path / "in-app.jsonl"})


@pytest.mark.ui
async def test_resume_in_the_app(resumed_plan, tmp_path: Path,  # type: ignore[no-untyped-def]
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The app runs a resumed session like a live one: turn 1 replayed, then the live model."""
    from rlm_tui.ui.app import RlmApp
    from rlm_tui.ui.runner import EngineSource

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # never the real config folders
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    live = Live()
    with ScriptedServer(live) as server:
        resumed_plan.settings.api_base = server.url
        source = EngineSource(resumed_plan.settings, resumed_plan.question, resumed_plan.path,
                              prepare=resumed_plan.prepare)
        app = RlmApp(source, theme="rlm-midnight", remember_theme=False)
        async with app.run_test(size=(160, 45)) as pilot:
            for _ in range(1200):
                if app.run_state.finished:
                    break
                await pilot.pause(0.05)
            assert app.run_state.answer == "resumed: 22 files, note 'summary: summarise part 1'"
            await pilot.press("q")
    assert [turn_of(m) for _, m in live.calls] == [2]
    started = next(e for e in load(tmp_path / "in-app.jsonl").events if e.kind == ev.RUN_STARTED)
    assert started.get("resumed_from")["at_turn"] == 2
