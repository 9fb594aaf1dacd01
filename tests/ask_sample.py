"""Scripted models and a session runner shared by the follow-up question and user-cell tests."""

from __future__ import annotations

from pathlib import Path

from conftest import fence
from rlm_tui.core import events as ev
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import Engine
from rlm_tui.scripted import ScriptedServer, is_rlm_call, question_of, turn_of


def follow_up_script(messages, model):
    """Q1 makes `hits` in the kernel; Q2's code only works if `hits` is still there."""
    if not is_rlm_call(messages):
        return "sub"
    question, turn = question_of(messages), turn_of(messages)
    if question.startswith("Which file"):
        if turn == 1:
            return fence("hits = [k for k, v in context.items() if 'magic number' in v]\nprint(hits)")
        return "FINAL(src/deep/needle.txt)"
    if turn == 1:
        return fence("import re\nnumber = re.search(r'magic number is (\\d+)', context[hits[0]]).group(1)\n"
                     "print(number)")
    return "FINAL_VAR(number)"


async def ask_all(script, path: Path, tmp_path: Path, questions: list[str], **limits) -> tuple:
    """A session: the first question, then each follow-up as the previous one ends."""
    events: list[ev.Event] = []
    answers: list[str | None] = []
    rest = list(questions[1:])

    async def next_question(answer: str | None) -> str | None:
        answers.append(answer)
        return rest.pop(0) if rest else None

    with ScriptedServer(script) as server:
        settings = Settings(model="openai/scripted", api_base=server.url, api_key="sk-test-not-a-real-key-1234",
                            limits=Limits(**limits), session_path=tmp_path / "session.jsonl")
        result = await Engine(settings, questions[0], path, sink=events.append, next_question=next_question).run()
        requests = list(server.requests)
    return result, answers, events, requests


USER_CODE = "df = 41 + 1; print(df)"


def root_using_df(messages, model):
    """Turn 1 makes a variable; turn 2 uses the user's ``df``; turn 3 answers."""
    turn = turn_of(messages)
    if turn == 1:
        return fence("x = 1\nprint('model', x)")
    if turn == 2:
        return fence("print('twice', df * 2)")
    return "FINAL(done)"
