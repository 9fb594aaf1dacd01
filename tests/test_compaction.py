"""A root conversation that never overflows its window: compaction, learnt windows, --max-reply-tokens.

The end-to-end runs use the scripted server's ``window``: it refuses a prompt over a fixed token count
with llama.cpp's own error reply (HTTP 400), counting tokens denser than the client's estimate.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from conftest import fence
from rlm_tui.core import events as ev
from rlm_tui.core import lm_errors
from rlm_tui.core.compaction import Compaction, compact, defined, estimate
from rlm_tui.core.config import Limits, Settings
from rlm_tui.core.engine import Engine
from rlm_tui.core.lm import LMClient, LMWindowError
from rlm_tui.core.session import load
from rlm_tui.headless import ProgressPrinter
from rlm_tui.model.run import RunModel
from rlm_tui.scripted import ScriptedServer, is_rlm_call, prompt_tokens, question_of, turn_of

SYSTEM = {"role": "system", "content": "system prompt " * 20}
FIRST = {"role": "user", "content": "Question: where is it?\n\nYour context is a dict of 3 files"}


def _turns(n: int, output_chars: int = 3000) -> list[dict[str, str]]:
    messages = [dict(SYSTEM), dict(FIRST)]
    for t in range(1, n + 1):
        messages.append({"role": "assistant", "content": f"I will look at part {t} now, carefully and at length. "
                         f"{'Some thinking. ' * 40}\n```repl\nv{t} = len(context) + {t}\nprint('o' * {output_chars})\n```"})
        messages.append({"role": "user", "content": f"Output of code block 1:\n{'o' * output_chars}\n\n"
                         f"REPL variables: {', '.join(f'v{i}' for i in range(1, t + 1))}"})
    return messages


def test_compaction_keeps_head_code_and_latest_turns() -> None:
    messages = _turns(6)
    limit = estimate(messages) // 2
    out, turns = compact(messages, limit)
    assert estimate(out) <= limit
    assert len(out) == len(messages) and [m["role"] for m in out] == [m["role"] for m in messages]
    assert out[:2] == [SYSTEM, FIRST]  # the system prompt and the question: never touched
    assert out[-4:] == messages[-4:]  # the two latest turns whole
    assert turns == [1, 2, 3, 4]
    for t in turns:  # older turns: the code that ran is kept, the prose and most of the output go
        reply, output = out[2 * t], out[2 * t + 1]
        assert f"v{t} = len(context) + {t}" in reply["content"] and "Some thinking" not in reply["content"]
        assert len(output["content"]) < 500 and "characters dropped by compaction" in output["content"]
    again, more = compact(out, limit)  # compacting what fits changes nothing
    assert again == out and more == []


def test_harder_compaction_keeps_what_old_code_defined_and_cuts_the_newest_output_last() -> None:
    messages = _turns(6, output_chars=8000)
    out, turns = compact(messages, 2500)
    assert estimate(out) <= 2500
    assert out[:2] == [SYSTEM, FIRST]
    assert "defined v1" in out[2]["content"] and "output dropped" in out[3]["content"]
    assert out[-2] == messages[-2]  # the latest reply stays whole; its 8,000-character output is cut in the middle
    assert out[-1]["content"].startswith("Output of code block 1:") and out[-1]["content"].endswith("v5, v6")
    assert turns == [1, 2, 3, 4, 5, 6]


def test_defined_names_what_a_cell_leaves_in_the_repl() -> None:
    code = "import re, os.path as p\nfrom json import loads\nx, (y, z) = 1, (2, 3)\ndef f(): pass\n" \
           "class C: pass\nfor i in range(2): pass\nn: int = 3\nprint(x)\nif x: hidden = 1"
    assert defined(code) == ["re", "p", "loads", "x", "y", "z", "f", "C", "i", "n"]
    assert defined("not python (") == []


@pytest.mark.parametrize(("message", "numbers"), [
    ("HTTP 400: request (4137 tokens) exceeds the available context size (4096 tokens), try increasing it",
     (4096, 4137)),
    ("HTTP 400: the request exceeds the available context size, try increasing it (n_prompt_tokens=5000, "
     "n_ctx=4096)", (4096, 5000)),
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 9100 tokens.",
     (8192, 9100)),
    ("maximum context length is 8192 tokens", (8192, None)),
    ("the request exceeds the available context size, try increasing it", (None, None)),
])
def test_window_numbers_from_what_servers_say(message: str, numbers: tuple[int | None, int | None]) -> None:
    assert lm_errors.window_numbers(message) == numbers


def test_a_refusal_teaches_the_window_and_the_servers_token_count() -> None:
    seen: list[dict[str, Any]] = []
    compaction = Compaction(lambda kind, node, parent, **data: seen.append(data))
    messages = _turns(6)
    assert compaction.limit("openai/unknown-model") is None and not compaction.fit("r", None, "openai/x", messages)
    tokens = prompt_tokens(messages)
    assert compaction.refused("r", None, "openai/x", messages, LMWindowError("no", 4096, tokens))
    assert compaction.window("openai/x") == 4096 and compaction.scale["openai/x"] < 4  # denser than the estimate
    assert prompt_tokens(messages) <= 4096 - 1024 and seen[0]["window"] == 4096
    assert seen[0]["turns"] and seen[0]["reason"].startswith("the server refused the request")
    assert not compaction.refused("r", None, "openai/x", messages, LMWindowError("no", 4096, None))  # nothing new


# ---- end to end: the real engine, kernel and scripted llama.cpp-like server --------------------------------

WINDOW = 4096
TURNS = 10


def _explorer(messages: list[dict[str, Any]], model: str) -> str:
    """Ten turns, each defining a variable and printing 3,000 characters; the last uses the first turn's variable."""
    if not is_rlm_call(messages):
        return "sub answer"
    turn = turn_of(messages)
    if turn < TURNS:
        return (f"Turn {turn}: I look at another slice. {'Reasoning about it. ' * 30}\n"
                f"```repl\npart{turn} = {turn} * 11\nprint(str(part{turn}) * 1500)\n```\n")
    return fence("found = f'first part was {part1}'\nprint(found)") + "\nFINAL_VAR(found)"


async def _run(tmp_path: Path, corpus: Path, window: int | None, **settings: Any) -> tuple[Any, ScriptedServer]:
    events: list[ev.Event] = []
    with ScriptedServer(_explorer, window=window) as server:
        config = Settings(model="openai/scripted", api_base=server.url, limits=Limits(max_iterations=TURNS + 2),
                          session_path=tmp_path / "session.jsonl", lm_backoff=0.05, **settings)
        result = await Engine(config, "Which parts are there?", corpus, sink=events.append).run()
    return result, server


@pytest.mark.kernel
@pytest.mark.parametrize("context_window", [None, WINDOW], ids=["learnt-from-the-server", "--context-window"])
async def test_a_ten_turn_run_fits_a_small_window(context_window: int | None, corpus: Path, tmp_path: Path) -> None:
    result, server = await _run(tmp_path, corpus, WINDOW, context_window=context_window)
    assert result.error is None and result.answer == "first part was 11"
    session = load(tmp_path / "session.jsonl")
    compacted = [e for e in session.events if e.kind == ev.COMPACTED]
    root = next(e.node for e in session.events if e.kind == ev.NODE_STARTED and e.get("node_kind") == "root")
    assert compacted and all(e.node == root and e.get("chars_after") < e.get("chars_before") for e in compacted)
    assert {e.get("window") for e in compacted} == {WINDOW}
    assert 1 in compacted[0].get("turns")
    rlm_requests = [r for r in server.requests if is_rlm_call(r["messages"])]
    assert len(rlm_requests) - server.refused == TURNS  # every turn was answered
    accepted = [r for r in rlm_requests if prompt_tokens(r["messages"]) <= WINDOW]
    assert len(accepted) == TURNS and server.refused == len(rlm_requests) - len(accepted)
    if context_window is None:
        assert server.refused == 1  # learnt once: the window and the server's own count
    last = rlm_requests[-1]["messages"]
    assert last[0]["content"] == rlm_requests[0]["messages"][0]["content"]  # system prompt kept
    assert last[1]["content"] == rlm_requests[0]["messages"][1]["content"]  # question and context shape kept
    assert "part1 = 1 * 11" in last[2]["content"]  # the code of turn 1 kept: it defined part1
    printer = io.StringIO()
    progress = ProgressPrinter(printer)
    model = RunModel()
    for event in session.events:
        progress(event)
        model.apply(event)
    lines = [line for line in printer.getvalue().splitlines() if "compacted turns" in line]
    assert len(lines) == len(compacted) and f"to fit a {WINDOW:,}-token window" in lines[0]
    notes = [b for b in model.transcripts.blocks(root) if b.kind == "note" and b.data.get("about") == "compacted"]
    assert len(notes) == len(compacted) and notes[0].text.startswith("compacted turns 1")


@pytest.mark.kernel
async def test_without_compaction_the_same_run_overflows(corpus: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenario above really needs compaction: with it off the server refuses the run's 4th-or-so turn."""
    monkeypatch.setattr(Compaction, "fit", lambda self, *args, **kwargs: False)
    monkeypatch.setattr(Compaction, "refused", lambda self, *args, **kwargs: False)
    result, server = await _run(tmp_path, corpus, WINDOW)
    assert result.answer is None and "exceeds the available context size (4096 tokens)" in (result.error or "")
    assert server.refused == 1
    turns = [e.get("turn") for e in load(tmp_path / "session.jsonl").events if e.kind == ev.TURN_STARTED]
    assert turns == [1, 2, 3, 4]


@pytest.mark.kernel
async def test_a_child_rlm_is_compacted_too(corpus: Path, tmp_path: Path) -> None:
    def script(messages: list[dict[str, Any]], model: str) -> str:
        if is_rlm_call(messages) and question_of(messages) == "explore":
            return _explorer(messages, model)
        if is_rlm_call(messages):
            return fence("r = rlm_query('explore')\nprint(r)") if turn_of(messages) == 1 else "FINAL(child said it)"
        return "sub answer"

    events: list[ev.Event] = []
    with ScriptedServer(script, window=WINDOW) as server:
        config = Settings(model="openai/scripted", api_base=server.url, session_path=tmp_path / "session.jsonl",
                          limits=Limits(max_depth=2, max_iterations=TURNS + 2), lm_backoff=0.05)
        result = await Engine(config, "Ask a child", corpus, sink=events.append).run()
    assert result.error is None and result.answer == "child said it"
    child = next(e.node for e in events if e.kind == ev.NODE_STARTED and e.get("node_kind") == "rlm")
    assert [e for e in events if e.kind == ev.COMPACTED] and {e.node for e in events if e.kind == ev.COMPACTED} == {child}
    assert "first part was 11" in "".join(e.get("text", "") for e in events if e.kind == ev.CELL_OUTPUT)


# ---- --max-reply-tokens reaches the request, on both clients --------------------------------------------------

@pytest.mark.parametrize("lm_path", ["direct", "litellm"])
@pytest.mark.parametrize("cap", [None, 77])
async def test_max_reply_tokens_is_sent_as_max_tokens(lm_path: str, cap: int | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if lm_path == "litellm":
        monkeypatch.setenv("RLM_TUI_LITELLM_ONLY", "1")
    with ScriptedServer(lambda messages, model: "hello") as server:
        client = LMClient(api_base=server.url, api_key="sk-test", retries=0, max_reply_tokens=cap)
        for stream in (None, lambda text: None):
            result = await client.complete("openai/scripted", [{"role": "user", "content": "hi"}], stream)
            assert result.text == "hello"
        await client.aclose()
    assert [r.get("max_tokens") for r in server.requests] == [cap, cap]


def test_the_flags_reach_the_settings() -> None:
    from rlm_tui.cli.run import build_parser, settings_from

    args = build_parser().parse_args(["x", "q", "--context-window", "4096", "--max-reply-tokens", "512"])
    settings = settings_from(args, {})
    assert (settings.context_window, settings.max_reply_tokens) == (4096, 512)
    assert settings_from(build_parser().parse_args(["x", "q"]), {"context_window": 8192}).context_window == 8192
