"""Malformed model replies: each is handled and fed back, and the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core import prompts
from rlm_tui.scripted import turn_of

pytestmark = pytest.mark.kernel

BAD_REPLIES = {
    "no code": ("I think the answer is in the files somewhere.", prompts.NO_CODE_NOTE),
    "two-backtick fence": ("``repl\nprint(1)\n``", prompts.NO_CODE_NOTE),
    "unterminated block": ("```repl\nprint('half a cell')\n", prompts.UNTERMINATED_NOTE),
    "mismatched fences": ("```repl\nprint(1)\n~~~\n", prompts.UNTERMINATED_NOTE),
    "syntax error": (fence("def broken(:\n    pass"), "SyntaxError"),
    "empty FINAL": (fence("x = 1") + "\nFINAL()", "FINAL() was empty"),
    "unclosed FINAL": (fence("x = 1") + "\nFINAL(", "FINAL() was empty"),
    "FINAL_VAR of undefined name": (fence("x = 1") + "\nFINAL_VAR(nope)", "FINAL_VAR(nope): there is no such variable"),
    "FINAL_VAR of an expression": (fence("x = [1]") + "\nFINAL_VAR(x[0])", "FINAL_VAR(x[0]): give the name of a variable"),
    "FINAL_VAR in code, undefined": (fence("FINAL_VAR('ghost')"), "no variable named 'ghost'"),
    "only whitespace code": ("```repl\n   \n```", prompts.NO_CODE_NOTE),
}


@pytest.mark.parametrize("name", list(BAD_REPLIES))
async def test_bad_reply_is_fed_back_and_run_continues(name: str, corpus: Path, tmp_path: Path) -> None:
    reply, expected = BAD_REPLIES[name]
    fed: list[str] = []

    def script(messages, model):
        turn = turn_of(messages)
        if turn == 1:
            return fence("seen = len(context)")  # code has run, so a later FINAL may be accepted
        if turn == 2:
            return reply
        fed.append(messages[-1]["content"])
        return "FINAL(recovered)"

    run = await run_script(script, corpus, tmp_path)
    assert run.result.answer == "recovered" and run.result.error is None
    assert expected in fed[0], fed[0]
    assert len(run.kinds(ev.FINAL_ANSWER)) == 1
