"""``rlm-tui resume`` reproduces what the user decided, not the model's raw replies: a cell the user
skipped at its step gate is skipped again, an edited one runs as edited, and a question that was stopped
ends the same way when replayed whole instead of asking the live model to go on with it.
Real kernels, the scripted model over HTTP, the real CLI."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from conftest import fence
from rlm_tui.cli import main
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.model.run import RunModel
from rlm_tui.ui.render import Palette, spawn
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of
from rlm_tui.core.engine import Engine
from rlm_tui.sessions.resume import ANSWER_NOT_REACHED, NO_RECORDED_END, plan
from ask_sample import ask_all
from steer_sample import FakeUI, steer_run

pytestmark = pytest.mark.kernel

KEY = "sk-test-not-a-real-key-1234"
QUESTION, NEW = "What is the answer?", "What is value now?"
USER_CELL = "user_seen = 1"
#: The marker must be able to reach the test's folder (a sandboxed kernel has a private /tmp).
UNSANDBOXED = ("--sandbox", "off")


def resume(session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], script, *args: str):
    """``rlm-tui resume SESSION ARGS --headless --json`` against a live scripted model: the exit code, the
    printed result, the new session and the live model's requests."""
    out = tmp_path / "resumed.jsonl"
    out.unlink(missing_ok=True)
    with ScriptedServer(script) as server:
        code = main(["resume", str(session), *args, "--model", "openai/live", "--api-base", server.url,
                     "--api-key", KEY, "--headless", "--json", "--session", str(out)])
        requests = [r["messages"] for r in server.requests]
    captured = capsys.readouterr()
    result = json.loads(captured.out) if code == 0 else {"stderr": captured.err}
    return code, result, out, requests


# ---- A: the user's step decisions on cells ---------------------------------------------------------


def marker_root(marker: Path):
    """Turn 1: a cell that writes ``marker`` (the user skips it); turn 2: ``value = 'original'`` (the user
    edits it); turn 3 answers with ``value``."""
    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence(f"open({str(marker)!r}, 'w').write('the skipped cell ran')")
        if turn == 2:
            return fence("value = 'original'\nprint(value)")
        return "FINAL_VAR(value)"

    return script


@pytest.fixture
def stepped(corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A recorded run in step mode: the user skips the marker cell (cell 1), runs a cell of their own at the
    step before turn 2 (cell 2), and edits the model's turn-2 cell (cell 3) to ``value = 'edited'``."""
    marker = tmp_path / "marker.txt"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind != ev.STEP_WAITING:
            return
        gate, code = event.get("gate"), event.get("code") or ""
        if event.get("what") == "turn" and event.get("turn") == 2:
            assert ui.do(ui.steering.run_cell(USER_CELL))
        if str(marker) in code:
            assert ui.do(ui.steering.deny(gate))  # skip: it is destructive
        elif "original" in code:
            assert ui.do(ui.steering.edit(gate, code="value = 'edited'\nprint(value)"))
        else:
            assert ui.do(ui.steering.step(gate))

    run = asyncio.run(steer_run(marker_root(marker), corpus, tmp_path, react, approve="auto", step="all"))
    assert run.result.answer == "edited" and not marker.exists()
    assert [(e.get("cell"), e.get("by")) for e in run.kinds(ev.CELL_STARTED)] == [(2, "user"), (3, None)]
    return tmp_path / "session.jsonl", marker


def no_live_turn_of_the_recording(asked: list[str]):
    """The live model: answers the new question (or turn 3) with ``value``; notes what it was asked."""
    def script(messages, model):
        asked.append(f"{question_of(messages)} turn {turn_of(messages)}")
        return "FINAL_VAR(value)"

    return script


@pytest.mark.parametrize("args, live", [(["--ask", NEW], f"{NEW} turn 1"), (["--at", "3"], f"{QUESTION} turn 3")],
                         ids=["ask", "at"])
def test_resume_skips_the_cell_the_user_skipped_and_runs_the_edited_code(
        stepped: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        live: str) -> None:
    session, marker = stepped
    asked: list[str] = []
    code, result, out, _ = resume(session, tmp_path, capsys, no_live_turn_of_the_recording(asked), *args,
                                  *UNSANDBOXED)
    assert code == 0, result
    assert not marker.exists(), "the cell the user skipped ran again"
    assert result["answer"] == "edited" and asked == [live]  # the edited code ran, not the model's
    events = load(out).events
    started = [(e.get("cell"), e.get("by"), e.get("code")) for e in events if e.kind == ev.CELL_STARTED]
    assert started == [(2, "user", USER_CELL), (3, None, "value = 'edited'\nprint(value)")]
    decided = {e.get("gate"): e for e in events if e.kind == ev.STEP_DECIDED}
    assert decided["n0/cell1"].get("decision") == "skip" and decided["n0/cell1"].get("replayed") is True
    assert decided["n0/cell3"].get("decision") == "edit" and "original" in decided["n0/cell3"].get("original_code")
    waited = [e.get("gate") for e in events if e.kind == ev.STEP_WAITING]
    replayed = ["n0/turn1", "n0/cell1", "n0/turn2", "n0/cell3"] + (["n0/turn3"] if "--ask" in args else [])
    assert waited == replayed  # recorded as the gates were (turn 3 of --at 3 is live: no gate headless)
    assert all(decided[gate].get("replayed") is True for gate in replayed)  # nobody was asked
    turn_2 = next(e for e in events if e.kind == ev.LM_STARTED and e.node == "n0" and e.get("turn") == 2)
    assert "did not run: the user skipped it" in turn_2.get("messages")[-1]["content"]  # told as when recorded


def test_without_the_recorded_decisions_the_skipped_cell_runs(stepped: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The attack the recorded decisions stop: the same session without its ``step_decided`` lines runs the
    destructive cell the recorded reply still holds, and the model's code instead of the user's edit."""
    session, marker = stepped
    code, result, _, _ = resume(without_decisions(session, tmp_path), tmp_path, capsys,
                                no_live_turn_of_the_recording([]), "--ask", NEW, *UNSANDBOXED)
    assert code == 0, result
    assert marker.read_text() == "the skipped cell ran" and result["answer"] == "original"


def test_a_child_rlms_skipped_cell_is_skipped_again(corpus: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A child RLM's cell is found by the child's first message and its number, as its turns are."""
    marker = tmp_path / "marker.txt"

    def script(messages, model):
        if question_of(messages).startswith("child task"):
            if turn_of(messages) == 1:
                return fence(f"open({str(marker)!r}, 'w').write('the skipped cell ran')")
            return "FINAL(child ok)"
        return fence("print(rlm_query('child task'))") if turn_of(messages) == 1 else "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING:
            skip = str(marker) in (event.get("code") or "")
            assert ui.do(ui.steering.deny(event.get("gate")) if skip else ui.steering.step(event.get("gate")))

    run = asyncio.run(steer_run(script, corpus, tmp_path, react, approve="auto", step="cell", max_depth=2))
    assert run.result.answer == "done"
    session = tmp_path / "session.jsonl"
    for source in (session, without_decisions(session, tmp_path)):
        code, result, out, requests = resume(source, tmp_path, capsys, lambda m, model: "FINAL(live)",
                                             "--ask", NEW, *UNSANDBOXED)
        assert code == 0 and result["answer"] == "live" and len(requests) == 1, result
        if source is session:
            assert not marker.exists(), "the child's cell the user skipped ran again"
            child = next(e for e in load(out).events if e.kind == ev.STEP_DECIDED and e.parent == "n0")
            assert child.get("decision") == "skip" and child.get("replayed") is True
    assert marker.read_text() == "the skipped cell ran"  # without the recorded decision it runs


@pytest.mark.parametrize("bare", [False, True], ids=["as recorded", "recorded as cancelled"])
def test_a_child_rlm_the_user_killed_ends_killed_again_without_asking_the_live_model(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bare: bool) -> None:
    """The user killed a child RLM while its first cell ran: replayed, the child's recorded turns run out
    there, and it ends as recorded (its caller's code gets the same error) instead of the live model writing
    its turn 2 (before: it did, and the child went on to answer). A kill that landed as a cancel records no
    error (``bare``, which timing decides): the caller still got the kill's error, and gets it again."""
    def script(messages, model):
        if question_of(messages).startswith("child task"):
            return fence("import time; time.sleep(2)") if turn_of(messages) == 1 else "FINAL(child went on)"
        return fence("print('child said', rlm_query('child task'))") if turn_of(messages) == 1 else "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.CELL_STARTED and event.parent == "n0" and "killed" not in ui.seen:
            ui.seen["killed"] = ui.do(ui.steering.kill(event.node))

    run = asyncio.run(steer_run(script, corpus, tmp_path, react, approve="auto", max_depth=2))
    assert run.result.answer == "done" and "child said Error: killed by user" in run.cell_text("n0")
    asked: list[str] = []

    def live(messages, model):
        asked.append(f"{question_of(messages)} turn {turn_of(messages)}")
        return "FINAL(child went on)" if question_of(messages).startswith("child task") else "FINAL(live)"

    session = tmp_path / "session.jsonl"
    if bare:
        session.write_text("".join(line.replace('"error": "killed by user"', '"error": ""')
                                   if '"node_finished"' in line else line
                                   for line in session.read_text().splitlines(keepends=True)))
    code, result, out, _ = resume(session, tmp_path, capsys, live, "--ask", NEW)
    assert code == 0 and result["answer"] == "live", result
    assert asked == [f"{NEW} turn 1"], "the live model was asked to go on with the child the user killed"
    events = load(out).events
    child = next(e for e in events if e.kind == ev.NODE_FINISHED and e.parent == "n0")
    assert (child.get("status"), child.get("error")) == ("killed", "killed by user")
    output = "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT and e.node == "n0")
    assert "child said Error: killed by user" in output


@pytest.mark.parametrize("args, live", [(["--ask", NEW], [f"{NEW} turn 1"]), (["--at", "2"], [f"{QUESTION} turn 2"])],
                         ids=["ask", "at"])
def test_a_kill_at_a_cells_step_gate_is_not_run_again(corpus: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], args: list[str],
                                                     live: list[str]) -> None:
    """The user killed the run at the marker cell's gate: replayed whole, the question ends killed there
    (--ask); in the question --at goes live in, the cell does not run and the live model goes on."""
    marker = tmp_path / "marker.txt"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING and str(marker) in (event.get("code") or ""):
            assert ui.do(ui.steering.kill("n0"))

    run = asyncio.run(steer_run(marker_root(marker), corpus, tmp_path, react, approve="auto", step="cell"))
    assert run.result.answer is None and run.result.stopped_by == "killed"
    asked: list[str] = []

    def script(messages, model):
        asked.append(f"{question_of(messages)} turn {turn_of(messages)}")
        return "FINAL(live)"

    code, result, out, _ = resume(tmp_path / "session.jsonl", tmp_path, capsys, script, *args, *UNSANDBOXED)
    assert code == 0 and result["answer"] == "live", result
    assert not marker.exists(), "the cell the user killed the run at ran"
    assert asked == live
    events = load(out).events
    first = next(e for e in events if e.kind == ev.NODE_FINISHED and e.node == "n0")
    if args[0] == "--ask":
        recorded = next(e for e in run.session if e.kind == ev.NODE_FINISHED and e.node == "n0")
        ended = [(e.get("status"), e.get("stopped_by"), e.get("error")) for e in (first, recorded)]
        assert ended[0] == ended[1] and ended[0][:2] == ("killed", "killed")
        assert next(e for e in events if e.kind == ev.RUN_FINISHED).get("outcomes")[0]["stopped_by"] == "killed"


def test_in_step_mode_only_the_live_turn_waits(stepped: tuple[Path, Path], tmp_path: Path) -> None:
    """A run recorded in step mode resumes in step mode (as the app does): the replayed turns and cells take
    their recorded decisions without waiting, and the first gate the user is asked at is the live turn's."""
    session, marker = stepped
    taken: list[str] = []

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.STEP_WAITING and ui.do(ui.steering.step(event.get("gate"))):
            taken.append(event.get("gate"))

    ui = FakeUI(react)
    with ScriptedServer(lambda messages, model: "FINAL_VAR(value)") as server:
        resumed = plan(session, 3, overrides={"model": "openai/live", "api_base": server.url, "api_key": KEY,
                                              "sandbox": "off", "session_path": tmp_path / "resumed.jsonl"})
        assert resumed.settings.step == "all"
        engine = Engine(resumed.settings, resumed.question, resumed.path, sink=ui)
        resumed.prepare(engine)
        ui.steering = engine.steering
        ui.start()
        try:
            result = asyncio.run(engine.run())
        finally:
            ui.stop()
    assert not ui.errors, ui.errors
    assert result.answer == "edited" and not marker.exists()
    assert taken == ["n0/turn3"], "a replayed step waited for the user again"


def without_decisions(session: Path, tmp_path: Path, kind: str = "step_decided") -> Path:
    """A copy of ``session`` without its ``kind`` lines: the recorded replies as they were, nothing else."""
    bare = tmp_path / "no-decisions.jsonl"
    bare.write_text("".join(line for line in session.read_text().splitlines(keepends=True)
                            if f'"kind": "{kind}"' not in line))
    return bare


# ---- C: the user's decisions on sub-calls -----------------------------------------------------------


SECRET, EDITED = "send the secret plan", "summarise, as edited"
PLAIN = Palette(True, "monokai", *["white"] * 9)  # the transcript's lines as text


def test_a_sub_call_the_user_denied_is_denied_again_and_an_edited_one_runs_as_edited(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Recorded with --approve ask: the user denied one llm_query and edited another's prompt. Replayed, the
    denied prompt is not sent (headless resume approves by policy, and nothing recorded answers it: the
    live model would be paid for it) and the edited one gets its recorded reply. Without the recorded
    decisions (the attack) both go to the live model."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return f"reply to {messages[-1]['content']}"
        if turn_of(messages) == 1:
            return fence(f"print(llm_query({SECRET!r}))\nprint(llm_query('summarise'))")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            gate, prompt = event.node, event.get("prompt")
            assert ui.do(ui.steering.deny(gate, "no secrets") if prompt == SECRET
                         else ui.steering.edit(gate, prompt=EDITED))

    run = asyncio.run(steer_run(script, corpus, tmp_path, react, approve="ask"))
    assert run.result.answer == "done" and f"reply to {EDITED}" in run.cell_text()
    session = tmp_path / "session.jsonl"
    for source in (session, without_decisions(session, tmp_path, "spawn_decided")):
        asked: list[str] = []

        def live(messages, model):
            asked.append(messages[-1]["content"] if not is_rlm_call(messages) else question_of(messages))
            return "live reply" if not is_rlm_call(messages) else "FINAL(live)"

        code, result, out, _ = resume(source, tmp_path, capsys, live, "--ask", NEW, *UNSANDBOXED)
        assert code == 0 and result["answer"] == "live", result
        if source is session:
            assert asked == [NEW], "a sub-call the user decided on went to the live model"
            events = load(out).events
            output = "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT)
            assert "denied by user: no secrets" in output and f"reply to {EDITED}" in output
            decided = [(e.get("decision"), e.get("replayed")) for e in events if e.kind == ev.SPAWN_DECIDED]
            assert decided == [("deny", True), ("edit", True)]
            model = RunModel()
            model.extend(events)
            lines = [spawn(b, PLAIN).plain for b in model.transcripts.blocks("n0")
                     if b.kind == "spawn" and b.data["phase"] == "decided"]
            assert lines == ["  ⊘ denied by user (as recorded): no secrets",
                             "  ✓ edited and approved by user (as recorded)"]
        else:
            assert sorted(asked) == sorted([SECRET, "summarise", NEW])  # the attack: both sent live



@pytest.mark.parametrize("lost", [False, True], ids=["as recorded", "a prompt's decision lost"])
def test_a_batch_the_user_opened_is_decided_prompt_by_prompt_again(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], lost: bool) -> None:
    """Recorded: the user opened a batch and denied one of its prompts. Replayed headless, each prompt gets
    its recorded decision without anyone asked; a prompt whose decision is not in the file (damaged) is
    decided by the policy, as if the batch had not been opened (before: it waited for a user who is not
    there, until --timeout stopped the question)."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return f"reply to {messages[-1]['content']}"
        if turn_of(messages) == 1:
            return fence("print(llm_query_batched(['keep this', 'drop this']))")
        return "FINAL(done)"

    def react(ui: FakeUI, event: ev.Event) -> None:
        if event.kind == ev.SPAWN_REQUESTED:
            gate = event.node
            if event.get("node_kind") == "batch":
                assert ui.do(ui.steering.open_batch(gate))
            else:
                assert ui.do(ui.steering.deny(gate) if event.get("prompt") == "drop this" else ui.steering.approve(gate))

    run = asyncio.run(steer_run(script, corpus, tmp_path, react, approve="ask"))
    assert run.result.answer == "done" and "Error: denied by user" in run.cell_text()
    session = tmp_path / "session.jsonl"
    if lost:  # the denial of 'drop this' is not in the file
        lines = session.read_text().splitlines(keepends=True)
        gone = next(i for i, line in enumerate(lines) if '"kind": "spawn_decided"' in line and '"deny"' in line)
        session.write_text("".join(lines[:gone] + lines[gone + 1:]))
    asked: list[str] = []

    def live(messages, model):
        asked.append(messages[-1]["content"] if not is_rlm_call(messages) else question_of(messages))
        return "live reply" if not is_rlm_call(messages) else "FINAL(live)"

    code, result, out, _ = resume(session, tmp_path, capsys, live, "--ask", NEW, "--timeout", "60", *UNSANDBOXED)
    assert code == 0 and result["answer"] == "live", result
    assert asked == (["drop this", NEW] if lost else [NEW])  # lost: the policy (auto) lets it go to the live model
    decided = [(e.get("decision"), e.get("replayed")) for e in load(out).events if e.kind == ev.SPAWN_DECIDED]
    assert decided == [("open", True), ("approve", True)] + ([] if lost else [("deny", True)])


# ---- B: a question that was stopped ends the same way when replayed whole ------------------------


FIRST, SECOND, THIRD = "Which file has the magic number?", "What is the number?", "And the file again?"
TIMEOUT = 12  # question 1's --timeout: room for a kernel's start on a busy machine, so it stops in turn 2


@pytest.fixture
def timed_out_first(corpus: Path, tmp_path: Path) -> Path:
    """A recorded session: question 1 runs a cell in turn 1, then times out while its turn-2 request is out;
    question 2 is answered."""
    release = threading.Event()

    def script(messages, model):
        if not is_rlm_call(messages):
            return "sub"
        question, turn = question_of(messages), turn_of(messages)
        if question == FIRST:
            if turn == 1:
                return fence("hits = [k for k, v in context.items() if 'magic number' in v]\nprint(hits)")
            release.wait(60)  # the model never answers in time: --timeout stops the question
            return "FINAL(too late)"
        return "FINAL(7316)"

    try:
        result, answers, events, _ = asyncio.run(ask_all(script, corpus, tmp_path, [FIRST, SECOND], timeout=TIMEOUT))
    finally:
        release.set()
    assert answers == [None, "7316"] and result.answer == "7316"
    first_root = next(e for e in events if e.kind == ev.NODE_FINISHED and e.node == "n0")
    assert (first_root.get("status"), first_root.get("stopped_by")) == ("limit", "timeout")
    return tmp_path / "session.jsonl"


@pytest.mark.parametrize("args, live", [(["--ask", THIRD], [THIRD]), (["--at", "2.1"], [SECOND])],
                         ids=["ask", "at"])
def test_a_question_that_timed_out_ends_the_same_way_without_asking_the_live_model(
        timed_out_first: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        live: list[str]) -> None:
    asked: list[str] = []
    told: list[str] = []

    def script(messages, model):
        asked.append(question_of(messages))
        told.append(next(m["content"] for m in messages if m.get("role") == "user"))
        return "FINAL(live)"

    code, result, out, _ = resume(timed_out_first, tmp_path, capsys, script, *args)
    assert code == 0, result
    assert asked == live, "the live model was asked to go on with the question that timed out"
    assert "A: (no answer: stopped by timeout)" in told[0]  # the next question is told how it ended
    events = load(out).events
    roots = [e for e in events if e.kind == ev.NODE_FINISHED and e.parent is None]
    assert (roots[0].get("status"), roots[0].get("stopped_by")) == ("limit", "timeout")
    assert roots[0].get("error").startswith(f"timeout: the question took longer than {TIMEOUT} s")
    assert [e.get("limit") for e in events if e.kind == ev.LIMIT_REACHED and e.node == roots[0].node] == ["timeout"]
    finished = next(e for e in events if e.kind == ev.RUN_FINISHED)
    assert finished.get("outcomes")[0] == {"answer": None, "stopped_by": "timeout", "error": None}
    assert finished.get("outcomes")[-1]["answer"] == "live"
    assert [e.get("turn") for e in events if e.kind == ev.LM_STARTED and e.node == roots[0].node] == [1]


@pytest.mark.parametrize("damage, question, error", [
    ("cut", 0, NO_RECORDED_END), ("no answer", 1, ANSWER_NOT_REACHED)], ids=["no end recorded", "answer not reached"])
def test_a_question_whose_recording_ends_otherwise_ends_with_an_error(
        timed_out_first: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, question: int,
        error: str) -> None:
    """Cut: the recording process was killed while question 1's turn-2 request was out (no end recorded).
    No answer: question 2's recorded answer is not reached when replayed (its reply was changed)."""
    lines = timed_out_first.read_text().splitlines(keepends=True)
    if damage == "cut":
        lines = lines[:next(i for i, line in enumerate(lines) if '"kind": "limit_reached"' in line)]
    else:
        lines = [line.replace('"text": "FINAL(7316)"', '"text": "still looking"') for line in lines]
    source = tmp_path / "changed.jsonl"
    source.write_text("".join(lines))
    asked: list[str] = []

    def script(messages, model):
        asked.append(question_of(messages))
        return "FINAL(live)"

    code, result, out, _ = resume(source, tmp_path, capsys, script, "--ask", THIRD)
    assert code == 0 and result["answer"] == "live", result
    assert asked == [THIRD]
    roots = [e for e in load(out).events if e.kind == ev.NODE_FINISHED and e.parent is None]
    assert (roots[question].get("status"), roots[question].get("stopped_by"), roots[question].get("error")) == (
        "failed", "error", error)
