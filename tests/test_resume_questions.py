"""Resuming a session of several questions at a later question's turn, and with the user's own cells:
``rlm-tui resume FILE --at QUESTION.TURN`` and the recorded user cells run again in their place
(issue 13, parts 4 and 5). Real kernels, the scripted model over HTTP, the real CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import fence
from rlm_tui.cli import main
from rlm_tui.core import events as ev
from rlm_tui.core.cells import Before
from rlm_tui.core.session import load
from rlm_tui.scripted import ScriptedServer, question_of, turn_of
from rlm_tui.sessions.export import to_markdown
from rlm_tui.sessions.listing import summarize
from rlm_tui.sessions.recorded_cells import RecordedUserCells
from rlm_tui.sessions.transcript import SessionLog
from ask_sample import USER_CODE, ask_all, follow_up_script, root_using_df
from steer_sample import FakeUI, cell_at_turn_step, steer_run

pytestmark = pytest.mark.kernel

KEY = "sk-test-not-a-real-key-1234"
FIRST, SECOND = "Which file has the magic number?", "What is the number?"


def resume(session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], script, *args: str):
    """``rlm-tui resume SESSION ARGS --headless --json`` against a live scripted model."""
    out = tmp_path / "resumed.jsonl"
    with ScriptedServer(script) as server:
        code = main(["resume", str(session), *args, "--model", "openai/live", "--api-base", server.url,
                     "--api-key", KEY, "--headless", "--json", "--session", str(out)])
        requests = [r["messages"] for r in server.requests]
    captured = capsys.readouterr()
    result = json.loads(captured.out) | {"progress": captured.err} if code == 0 else {"stderr": captured.err}
    return code, result, out, requests


@pytest.fixture
def two_questions(corpus: Path, tmp_path: Path) -> Path:
    """A recorded session: question 1 makes `hits`; question 2 makes `number` from it (two turns each)."""
    asyncio.run(ask_all(follow_up_script, corpus, tmp_path, [FIRST, SECOND]))
    return tmp_path / "session.jsonl"


def test_resume_at_question_2_turn_2_keeps_question_1(two_questions: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def live(messages, model):
        assert question_of(messages) == SECOND and turn_of(messages) == 2, "a recorded turn reached the live model"
        return fence("again = f'{number} in {hits[0]}'\nprint(again)") + "FINAL_VAR(again)\n"

    code, result, out, requests = resume(two_questions, tmp_path, capsys, live, "--at", "2.2")
    assert code == 0, result
    # Question 2's turn 1 (`number`) and question 1 (`hits`) were rebuilt in the one kernel.
    assert result["answer"] == "7316 in src/deep/needle.txt" and result["stopped_by"] is None
    assert len(requests) == 1  # only question 2's turn 2 was asked of the live model
    assert "Q: " + FIRST in requests[0][1]["content"] and "A: src/deep/needle.txt" in requests[0][1]["content"]
    assert "7316" in requests[0][-1]["content"]  # question 2's turn 1 ran again: its real output
    assert "at question 2, turn 2: 1 recorded question and 1 recorded turn replayed" in result["progress"]
    events = load(out).events
    assert [(e.get("question"), e.get("index")) for e in events if e.kind == ev.QUESTION_ASKED] == [
        (FIRST, 1), (SECOND, 2)]
    assert [e.get("replayed") for e in events if e.kind == ev.LM_FINISHED] == [True, True, True, None]
    origin = next(e for e in events if e.kind == ev.RUN_STARTED).get("resumed_from")
    assert origin["at_question"] == 2 and origin["at_turn"] == 2
    summary = summarize(out)  # sessions, replay and export show question 1 too
    assert summary.questions == [FIRST, SECOND] and summary.resumed_from == f"{two_questions.name} turn 2.2"
    markdown = to_markdown(SessionLog.read(out))
    assert markdown.index("Question 1: " + FIRST) < markdown.index("Question 2: " + SECOND)
    assert main(["replay", str(out), "--headless"]) == 0
    printed = capsys.readouterr().out
    assert f"from {two_questions.resolve()} at turn 2.2" in printed
    assert printed.index(FIRST) < printed.index("Question 2: " + SECOND) < printed.index("7316 in src/deep")


def test_resume_at_question_1_ends_the_session_there(two_questions: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A plain TURN is question 1's: the recorded follow-up is not asked again."""
    def live(messages, model):
        assert question_of(messages) == FIRST
        return "FINAL(live answer)"

    code, result, out, requests = resume(two_questions, tmp_path, capsys, live, "--at", "2")
    assert code == 0, result
    assert result["answer"] == "live answer" and len(requests) == 1
    assert [e.get("question") for e in load(out).events if e.kind == ev.QUESTION_ASKED] == [FIRST]


def test_resume_at_a_question_or_turn_that_does_not_exist(two_questions: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    single = tmp_path / "single"
    single.mkdir()
    asyncio.run(ask_all(follow_up_script, tmp_path / "corpus", single, [FIRST]))
    damaged = tmp_path / "damaged.jsonl"  # question 1's turn-1 reply lost
    lines = two_questions.read_text().splitlines(keepends=True)
    lost = next(i for i, line in enumerate(lines) if '"kind": "lm_finished"' in line)
    damaged.write_text("".join(lines[:lost] + lines[lost + 1:]))
    for session, at, message in [
        (damaged, "2.1", "question 1 turn 1's reply is not in the session (the file is damaged there); "
                         "resume at a turn up to 1.1"),
        (two_questions, "3.1", "--at 3.1: the session has 2 questions; resume at one of 1.1-1.3, 2.1-2.3"),
        (two_questions, "0.1", "--at 0.1: the session has 2 questions; resume at one of 1.1-1.3, 2.1-2.3"),
        (two_questions, "2.4", "--at must be between 2.1 and 2.3: question 2 has 2 recorded root turns"),
        (two_questions, "2.0", "--at must be between 2.1 and 2.3"),
        (two_questions, "two", "--at takes TURN or QUESTION.TURN (like 3 or 2.3), not 'two'"),
        (two_questions, "2.x", "--at takes TURN or QUESTION.TURN"),
        (single / "session.jsonl", "2.1", "--at 2.1: the session has one question; give --at TURN"),
        (single / "session.jsonl", "4", "--at must be between 1 and 3: the session has 2 recorded root turns"),
    ]:
        assert main(["resume", str(session), "--at", at, "--headless"]) == 2, at
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0, (at, err)


# ---- the user's own cells ----------------------------------------------------------------------------


@pytest.fixture
def with_user_cell(corpus: Path, tmp_path: Path) -> Path:
    """A recorded run: turn 1 the model's cell 1; at the step before turn 2 the user runs cell 2 (``df``);
    turn 2's model cell 3 uses ``df``; turn 3 answers."""
    react = cell_at_turn_step(USER_CODE)

    run = asyncio.run(steer_run(root_using_df, corpus, tmp_path, react, approve="ask", step="turn"))
    assert [(e.get("cell"), e.get("by")) for e in run.kinds(ev.CELL_STARTED)] == [(1, None), (2, "user"), (3, None)]
    return tmp_path / "session.jsonl"  # recorded in step mode, approving by hand: nobody does either headless


def cells_of(path: Path) -> list[tuple[int, str | None, str]]:
    """(cell, by, status) of every cell of a session, in order, with what it printed."""
    events = load(path).events
    printed: dict[tuple[str | None, int], str] = {}
    by: dict[tuple[str | None, int], str | None] = {}
    for e in events:
        if e.kind == ev.CELL_OUTPUT:
            printed[e.node, e.get("cell")] = printed.get((e.node, e.get("cell")), "") + e.get("text", "")
        elif e.kind == ev.CELL_STARTED:
            by[e.node, e.get("cell")] = e.get("by")
    return [(e.get("cell"), by.get((e.node, e.get("cell"))), e.get("status"), printed.get((e.node, e.get("cell")), ""))
            for e in events if e.kind == ev.CELL_FINISHED]


def test_resume_reruns_the_users_cell_before_the_model_cell_that_uses_it(with_user_cell: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def live(messages, model):
        if turn_of(messages) == 3:
            return fence("print('thrice', df * 3)")
        return "FINAL(thrice done)"

    code, result, out, requests = resume(with_user_cell, tmp_path, capsys, live, "--at", "3")
    assert code == 0, result
    assert result["answer"] == "thrice done"
    assert "(with 1 cell you ran yourself)" in result["progress"]
    assert cells_of(out) == [(1, None, "ok", "model 1\n"), (2, "user", "ok", "42\n"), (3, None, "ok", "twice 84\n"),
                             (4, None, "ok", "thrice 126\n")]
    mine = next(e for e in load(out).events if e.kind == ev.CELL_STARTED and e.get("by") == "user")
    assert mine.get("code") == USER_CODE
    settings = next(e for e in load(out).events if e.kind == ev.RUN_STARTED).get("settings")
    assert (settings["step"], settings["approve"]) == ("off", "auto")
    assert "The user ran this code" not in requests[0][-1]["content"]  # told in turn 2's message, replayed


def test_resume_ask_uses_a_variable_the_user_defined(with_user_cell: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def live(messages, model):
        if turn_of(messages) == 1:
            return fence("half = df // 2\nprint('half', half)")
        return "FINAL_VAR(half)"

    code, result, out, requests = resume(with_user_cell, tmp_path, capsys, live, "--ask", "Half of df?")
    assert code == 0, result
    assert result["answer"] == "21" and len(requests) == 2
    assert "df: int" in requests[0][1]["content"]  # the follow-up's intro lists the user's variable
    # The recorded question's cells (yours second), then the new question's root numbers its own from 1.
    assert [c[:3] for c in cells_of(out)] == [(1, None, "ok"), (2, "user", "ok"), (3, None, "ok"), (1, None, "ok")]


def test_a_user_cell_run_at_a_model_cells_gate_runs_before_that_cell_again(corpus: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Recorded in cell-step mode: the model's cell 1 waited at its gate while the user's cell 2 ran (and made
    ``df``); resumed, cell 2 runs before cell 1 again, and turn 2's cell 3 finds ``df``."""
    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING and event.get("what") == "cell" and "mine" not in ui.seen:
            ui.seen["mine"] = ui.steering.run_cell("print('mine')\ndf = 42")
        elif event.kind == ev.CELL_FINISHED and event.get("cell") == 2:
            assert ui.do(ui.steering.set_step("off"))

    asyncio.run(steer_run(root_using_df, corpus, tmp_path, react, approve="auto", step="cell"))
    started = [(e.get("cell"), e.get("by")) for e in load(tmp_path / "session.jsonl").events
               if e.kind == ev.CELL_STARTED]
    assert started == [(2, "user"), (1, None), (3, None)]

    code, result, out, _ = resume(tmp_path / "session.jsonl", tmp_path, capsys, lambda m, model: "FINAL(again)",
                                  "--at", "3")
    assert code == 0, result
    assert [c[:3] for c in cells_of(out)] == [(2, "user", "ok"), (1, None, "ok"), (3, None, "ok")]
    assert cells_of(out)[2][3] == "twice 84\n"


def test_a_user_cell_between_questions_and_one_that_fails_again(corpus: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """After question 1's answer the user runs a failing cell, then one that defines ``table``; then
    asks question 2, whose code uses it. Resumed at question 2's turn 2: both run again before
    question 2 starts, the failing one is recorded with its error again, and the run goes on."""
    from rlm_tui.core.config import Limits, Settings
    from rlm_tui.core.engine import Engine

    def script(messages, model):
        question, turn = question_of(messages), turn_of(messages)
        if question == "first":
            return fence("seen = len(context)\nprint(seen)") if turn == 1 else "FINAL(one)"
        if turn == 1:
            return fence("print('table', table['k'])")
        return "FINAL(recorded two)"

    engine: Engine | None = None

    async def next_question(answer: str | None) -> str | None:
        assert engine is not None
        if answer != "one":
            return None
        await engine.run_user_cell("raise ValueError('mine failed')")
        await engine.run_user_cell("table = {'k': seen + 1}")
        return "second"

    async def record() -> None:
        nonlocal engine
        with ScriptedServer(script) as server:
            settings = Settings(model="openai/scripted", api_base=server.url, api_key=KEY, limits=Limits(),
                                session_path=tmp_path / "session.jsonl")
            engine = Engine(settings, "first", corpus, next_question=next_question)
            assert (await engine.run()).answer == "recorded two"

    asyncio.run(record())
    recorded = cells_of(tmp_path / "session.jsonl")
    assert [c[:3] for c in recorded] == [(1, None, "ok"), (2, "user", "error"), (3, "user", "ok"), (1, None, "ok")]

    def live(messages, model):
        assert question_of(messages) == "second" and turn_of(messages) == 2
        return fence("print('live', table['k'] * 2)") + "FINAL(live two)\n"

    code, result, out, _ = resume(tmp_path / "session.jsonl", tmp_path, capsys, live, "--at", "2.2")
    assert code == 0, result
    assert result["answer"] == "live two" and result["error"] is None
    resumed = cells_of(out)
    assert [c[:3] for c in resumed] == [(1, None, "ok"), (2, "user", "error"), (3, "user", "ok"), (1, None, "ok"),
                                        (2, None, "ok")]
    assert "ValueError\x1b[0m: mine failed" in resumed[1][3]  # its traceback, recorded again
    assert resumed[3][3] == recorded[3][3] == "table 23\n" and resumed[4][3] == "live 46\n"  # 22 files + 1
    events = load(out).events
    kinds = [(e.kind, e.get("by")) for e in events]  # run after question 1's answer, as recorded; question 1's
    assert kinds.index((ev.FINAL_ANSWER, None)) < kinds.index((ev.CELL_STARTED, "user"))
    assert kinds.index((ev.CELL_STARTED, "user")) < [i for i, k in enumerate(kinds) if k[0] == ev.QUESTION_ASKED][1]


def test_recorded_user_cells_are_due_in_their_place_and_stop_where_the_live_model_takes_over() -> None:
    def E(kind, node, **data):  # noqa: N802 - reads like the event it makes
        return ev.Event(kind, node, None, data)

    events = [
        E(ev.NODE_STARTED, "n0", node_kind="root"),
        E(ev.LM_STARTED, "n0", turn=1), E(ev.CELL_STARTED, "n0", cell=1, code="a = 1"),
        E(ev.CELL_STARTED, "n0", cell=2, code="mine = 1", by="user"),
        E(ev.LM_STARTED, "n0", turn=2),
        E(ev.CELL_STARTED, "n0", cell=3, code="later = 1", by="user"),  # while turn 2's reply was written
        E(ev.CELL_STARTED, "n0", cell=4, code="b = 1"),
        E(ev.CELL_STARTED, "n0", cell=5, code="after = 1", by="user"),  # after the answer
        E(ev.NODE_STARTED, "n9", node_kind="root"),
        E(ev.LM_STARTED, "n9", turn=1),
        E(ev.CELL_STARTED, "n9", cell=2, code="at the gate", by="user"),  # while model cell 1 waited at its gate
        E(ev.CELL_STARTED, "n9", cell=1, code="c = 1"),
    ]
    whole = RecordedUserCells.from_events(events)
    assert len(whole) == 4
    assert whole.due(0, Before(1, turn=1)) == [] and whole.due(0, Before(1)) == []
    assert whole.due(0, Before(2, waiting=True)) == []  # it ran after model cell 1, not at its gate
    assert whole.due(0, Before(2, turn=2)) == ["mine = 1"]
    assert whole.due(0, Before(3, turn=2)) == []  # it ran while turn 2's reply was written: before the cell
    assert whole.due(0, Before(3)) == ["later = 1"]
    assert whole.due(0, Before(5, turn=3)) == []  # there was no turn 3 after it: it ran after the last turn
    assert whole.rest(0) == ["after = 1"] and whole.rest(0) == []
    assert whole.due(1, Before(1, turn=1)) == [] and whole.due(1, Before(1)) == []
    assert whole.due(1, Before(2, waiting=True)) == ["at the gate"]
    at_turn_2 = RecordedUserCells.from_events(events, until=(0, 2))
    assert [cell.code for cell in at_turn_2.questions[0]] == ["mine = 1"] and len(at_turn_2.questions) == 1
    assert len(RecordedUserCells.from_events(events, until=(1, 1))) == 3
    assert RecordedUserCells.from_events(events).due(5, Before(99)) == []  # a question not recorded: nothing
    skipped = RecordedUserCells.from_events(events)
    assert skipped.due(0, Before(4)) == ["mine = 1", "later = 1"]  # passed by (a replay that ran differently)


def test_a_recorded_user_cell_that_answered_answers_again_on_resume(corpus: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """At the step before turn 2 the user's cell set the answer: question 1 ended as answered by the user.
    Resumed with --ask, the replayed cell ends question 1 the same way (the model's turn 2 never goes out,
    live or recorded) and the new question runs live in the same kernel."""
    react = cell_at_turn_step('answer["content"] = f"mine {x}"; answer["ready"] = True', step_taken=False)
    run = asyncio.run(steer_run(root_using_df, corpus, tmp_path, react, approve="auto", step="turn"))
    assert run.result.answer == "mine 1"

    def live(messages, model):
        assert question_of(messages) == "And x?", "question 1 went on past the user's answer"
        return "FINAL_VAR(x)"

    code, result, out, requests = resume(tmp_path / "session.jsonl", tmp_path, capsys, live, "--ask", "And x?")
    assert code == 0, result
    assert result["answer"] == "1" and len(requests) == 1
    finals = [(e.get("answer"), e.get("source")) for e in load(out).events if e.kind == ev.FINAL_ANSWER]
    assert finals[0] == ("mine 1", "user")
