"""Follow-up questions in one session: the root kernel and its variables live on (issue 13, part 1)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import fence
from rlm_tui.core import events as ev
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import Engine
from rlm_tui.core.session import load
from rlm_tui.model.run import RunModel
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of
from ask_sample import ask_all, follow_up_script

pytestmark = pytest.mark.kernel


async def test_a_follow_up_uses_a_variable_made_by_the_first_question(corpus: Path, tmp_path: Path) -> None:
    result, answers, events, requests = await ask_all(
        follow_up_script, corpus, tmp_path, ["Which file has the magic number?", "What is the number?"])
    assert answers == ["src/deep/needle.txt", "7316"]
    assert result.answer == "7316" and result.stopped_by is None and result.error is None
    asked = [e for e in events if e.kind == ev.QUESTION_ASKED]
    assert [(e.get("question"), e.get("index")) for e in asked] == [
        ("Which file has the magic number?", 1), ("What is the number?", 2)]
    roots = [e for e in events if e.kind == ev.NODE_STARTED and e.parent is None]
    assert [e.get("node_kind") for e in roots] == ["root", "root"] and roots[0].node != roots[1].node
    kinds = [e.kind for e in events]
    assert kinds.index(ev.QUESTION_ASKED) < kinds.index(ev.NODE_STARTED)  # asked before its root starts
    assert kinds.count(ev.RUN_STARTED) == 1 and kinds[-1] == ev.RUN_FINISHED and kinds.count(ev.RUN_FINISHED) == 1
    assert sum(1 for e in events if e.kind == ev.KERNEL and e.get("state") == "starting") == 1  # one kernel,
    assert len({e.node for e in events if e.kind == ev.CONTEXT_LOADED}) == 1  # loaded once
    # The follow-up's first message: the earlier question and answer, the variables, the new question.
    intro = next(r["messages"][1]["content"] for r in requests
                 if is_rlm_call(r["messages"]) and question_of(r["messages"]) == "What is the number?")
    assert "Which file has the magic number?" in intro and "A: src/deep/needle.txt" in intro
    assert "hits: list" in intro and "New question: What is the number?" in intro
    assert "Your context is a dict of 17,5" in intro  # its shape: this conversation starts afresh
    # The model: two top-level entries with their own totals; the run's add up across them.
    model = RunModel()
    model.extend(events)
    first, second = (model.tree.nodes[n] for n in model.tree.roots)
    assert model.tree.root == second.id and model.run.asked == ("Which file has the magic number?",
                                                                "What is the number?")
    assert first.subtree.lm_calls == 2 and second.subtree.lm_calls == 2
    from rlm_tui.model.state import run_totals
    usage, _ = run_totals(model.tree)
    assert usage.total_tokens == result.usage["total_tokens"] == first.subtree.total_tokens + second.subtree.total_tokens
    assert model.answer == "7316"
    before_end = RunModel()
    before_end.extend(events[:-1])  # between questions (and before run_finished) the root's kernel is idle
    assert before_end.run.kernel_summary() == "idle" and model.run.kernel_summary() == "off"


async def test_an_answer_set_ready_by_the_first_question_does_not_answer_the_second(corpus: Path,
                                                                                   tmp_path: Path) -> None:
    def script(messages, model):
        question, turn = question_of(messages), turn_of(messages)
        if question == "first":
            return fence('answer["content"] = "one"; answer["ready"] = True')
        if turn == 1:
            return fence("x = 2\nprint(x)")
        return "FINAL(two)"

    result, answers, events, _ = await ask_all(script, corpus, tmp_path, ["first", "second"])
    assert answers == ["one", "two"]


async def test_max_iterations_applies_per_question(corpus: Path, tmp_path: Path) -> None:
    """The first question runs out of turns; the second still gets its own turns and answers."""
    def script(messages, model):
        if question_of(messages) == "endless":
            return fence("print('still looking')") if "all your turns" not in messages[-1]["content"] else "no idea"
        return fence("print(1)") if turn_of(messages) == 1 else "FINAL(found)"

    result, answers, events, _ = await ask_all(script, corpus, tmp_path, ["endless", "easy"], max_iterations=2)
    assert answers == ["no idea", "found"]
    assert result.answer == "found" and result.stopped_by is None
    limits = [(e.get("limit"), e.node) for e in events if e.kind == ev.LIMIT_REACHED]
    first_root = next(e.node for e in events if e.kind == ev.NODE_STARTED and e.parent is None)
    assert limits == [("max_iterations", first_root)]  # on the question it stopped, not run-wide


async def test_a_killed_question_leaves_the_session_open_for_the_next(corpus: Path, tmp_path: Path) -> None:
    events: list[ev.Event] = []
    answers: list[str | None] = []
    engine: Engine | None = None

    def script(messages, model):
        if question_of(messages) == "slow":
            return fence("import time\ntime.sleep(30)")
        return fence("print(1)") if turn_of(messages) == 1 else "FINAL(fast)"

    async def next_question(answer: str | None) -> str | None:
        answers.append(answer)
        return "quick" if len(answers) == 1 else None

    def sink(event: ev.Event) -> None:
        events.append(event)
        if event.kind == ev.CELL_STARTED and engine is not None and len(answers) == 0:
            engine.steering.kill(event.node)

    with ScriptedServer(script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            limits=Limits(), session_path=tmp_path / "session.jsonl")
        engine = Engine(settings, "slow", corpus, sink=sink, next_question=next_question)
        result = await asyncio.wait_for(engine.run(), 60)
    assert answers == [None, "fast"]
    assert result.answer == "fast" and result.stopped_by is None


async def test_timeout_is_per_question_and_a_timed_out_cell_does_not_block_the_next(corpus: Path,
                                                                                     tmp_path: Path) -> None:
    """--timeout stops the first question inside a long cell; the kernel is interrupted, so the follow-up's
    cells run at once in the same kernel, and its own clock starts afresh."""
    def script(messages, model):
        if question_of(messages) == "slow":
            return fence("kept = 41\nimport time\ntime.sleep(60)")
        return fence("print(kept + 1)") if turn_of(messages) == 1 else "FINAL(fine)"

    started = asyncio.get_running_loop().time()
    result, answers, events, requests = await ask_all(script, corpus, tmp_path, ["slow", "quick"], timeout=6)
    assert answers == [None, "fine"]
    assert "42" in "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT)
    assert result.stopped_by is None and asyncio.get_running_loop().time() - started < 30
    assert [e.get("limit") for e in events if e.kind == ev.LIMIT_REACHED] == ["timeout"]
    roots = [e.node for e in events if e.kind == ev.NODE_STARTED and e.parent is None]
    assert [e.node for e in events if e.kind == ev.LIMIT_REACHED] == roots[:1]  # on the question it stopped


def resume_ask(session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], question: str, script):
    """``rlm-tui resume SESSION --ask QUESTION --headless --json`` against a live scripted model."""
    from rlm_tui.cli import main

    out = tmp_path / "asked.jsonl"
    with ScriptedServer(script) as server:
        code = main(["resume", str(session), "--ask", question, "--model", "openai/live", "--api-base", server.url,
                     "--api-key", "sk-test-not-a-real-key-1234", "--headless", "--json", "--session", str(out)])
        requests = list(server.requests)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) | {"progress": captured.err} if code == 0 else captured.err), out, requests


def test_resume_ask_answers_a_follow_up_from_the_recorded_runs_state(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two recorded questions (the second uses the first's `hits`), replayed from their recorded replies;
    the new question's code uses `number`, made by the second: only the new question reaches the live model."""
    asyncio.run(ask_all(follow_up_script, corpus, tmp_path,
                        ["Which file has the magic number?", "What is the number?"]))

    def live(messages, model):
        assert question_of(messages) == "Twice the number?", "a recorded question reached the live model"
        if turn_of(messages) == 1:
            return fence("twice = int(number) * 2\nprint(twice, len(hits))")
        return "FINAL_VAR(twice)"

    code, result, out, requests = resume_ask(tmp_path / "session.jsonl", tmp_path, capsys, "Twice the number?", live)
    assert code == 0, result
    assert result["answer"] == "14632" and result["stopped_by"] is None
    assert "question 2: What is the number?" in result["progress"]  # the replayed follow-up, in the progress
    assert "question 3: Twice the number?" in result["progress"]
    assert len(requests) == 2  # the new question's two turns; the four recorded ones cost nothing
    assert "What is the number?" in requests[0]["messages"][1]["content"]  # told the earlier questions
    events = load(out).events
    assert [e.get("question") for e in events if e.kind == ev.QUESTION_ASKED] == [
        "Which file has the magic number?", "What is the number?", "Twice the number?"]
    started = next(e for e in events if e.kind == ev.RUN_STARTED)
    assert started.get("resumed_from")["questions"] == 2
    replayed = [e.get("replayed") for e in events if e.kind == ev.LM_FINISHED]
    assert replayed == [True, True, True, True, None, None]


def test_resume_ask_without_a_question_is_a_usage_error(tmp_path: Path, corpus: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(ask_all(follow_up_script, corpus, tmp_path, ["Which file has the magic number?"]))
    code, err, _, requests = resume_ask(tmp_path / "session.jsonl", tmp_path, capsys, "  ", follow_up_script)
    assert code == 2 and err.strip() == "rlm-tui resume: --ask needs a question" and not requests


async def test_sessions_list_export_and_replay_show_every_question_in_order(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlm_tui.cli import main
    from rlm_tui.sessions.export import to_markdown, to_notebook
    from rlm_tui.sessions.listing import format_table, summarize
    from rlm_tui.sessions.transcript import SessionLog

    await ask_all(follow_up_script, corpus, tmp_path, ["Which file has the magic number?", "What is the number?"])
    session = tmp_path / "session.jsonl"
    summary = summarize(session)
    assert summary.as_dict()["questions"] == ["Which file has the magic number?", "What is the number?"]
    assert summary.answer == "7316" and summary.outcome == "answered"
    assert summary.outcomes == ["src/deep/needle.txt", "7316"]  # each question's own answer
    table = format_table([summary]).splitlines()
    assert "Which file has the magic number?" in table[1] and "src/deep/needle.txt" in table[1]
    assert table[2].split() == ["2.", "What", "is", "the", "number?", "7316"]
    log = SessionLog.read(session)
    markdown = to_markdown(log)
    first, second = markdown.index("Question 1: Which file"), markdown.index("Question 2: What is the number?")
    assert first < markdown.index("hits = [k for k", first) < second < markdown.index("number = re.search", second)
    assert markdown.count("root n") >= 2  # both questions in the call tree
    notebook = to_notebook(log)
    sources = [cell.source for cell in notebook.cells]
    codes = [s for cell, s in zip(notebook.cells, sources) if cell.cell_type == "code"]
    assert len(codes) == 2 and codes[0].startswith("hits") and codes[1].startswith("import re")
    assert notebook.metadata["rlm_tui"]["questions"] == ["Which file has the magic number?", "What is the number?"]
    from rlm_tui.sessions.replay import Replayer

    replayer = Replayer.open(session)  # turn by turn through both questions, from either root
    try:
        first_root, second_root = replayer.roots
        stops = replayer.turn_stops()
        assert len(stops) == 4 and stops == replayer.turn_stops(second_root)
        assert replayer.events(stops[2] - 1, stops[2])[0].node == second_root
    finally:
        replayer.close()
    assert await asyncio.to_thread(main, ["replay", str(session), "--headless"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("Which file has the magic number?") < printed.index("Question 2: What is the number?")
