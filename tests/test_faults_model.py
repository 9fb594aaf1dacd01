"""Model-server faults: rate limits, 5xx, timeouts, broken streams, bad keys, oversized prompts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, cli_env, fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.session import load
from rlm_tui.scripted import Fault, ScriptedServer, is_rlm_call, turn_of

pytestmark = pytest.mark.kernel


def _two_turns(messages, model):
    if not is_rlm_call(messages):
        return "sub answer"
    return fence("print(len(context))") if turn_of(messages) == 1 else "FINAL(ok)"


@pytest.mark.parametrize("faults", [
    [Fault(status=429), Fault(status=429)],
    [Fault(status=500), Fault(status=503)],
    [Fault(delay=3.0)],
    [Fault(break_stream=True)],
], ids=["rate-limited", "server-errors", "timeout", "broken-stream"])
async def test_transient_faults_are_retried(faults: list[Fault], corpus: Path, tmp_path: Path) -> None:
    run = await run_script(_two_turns, corpus, tmp_path, faults=faults, settings={"lm_timeout": 1.0})
    assert run.result.answer == "ok" and run.result.error is None
    retries = run.kinds(ev.LM_RETRY)
    assert len(retries) == len(faults)
    assert [e.get("attempt") for e in retries] == list(range(1, len(faults) + 1))
    for e in retries:  # exponential: lm_backoff (0.05 s) doubled each attempt, with ±25 % jitter
        base = 0.05 * 2 ** (e.get("attempt") - 1)
        assert base * 0.75 - 0.005 <= e.get("wait_s") <= base * 1.25 + 0.005, (e.get("attempt"), e.get("wait_s"))


async def test_default_is_four_retries_with_exponential_backoff(corpus: Path, tmp_path: Path) -> None:
    """Settings' defaults (4 retries, the wait doubling each time), only the first wait scaled down."""
    run = await run_script(_two_turns, corpus, tmp_path, faults=[Fault(status=503)] * 5,
                           settings={"lm_backoff": 0.02})
    assert run.result.answer is None
    assert run.result.error.startswith("openai/scripted failed after 4 retries")
    waits = [e.get("wait_s") for e in run.kinds(ev.LM_RETRY)]
    assert len(waits) == 4
    for attempt, wait in enumerate(waits, 1):
        base = 0.02 * 2 ** (attempt - 1)
        assert base * 0.75 - 0.005 <= wait <= base * 1.25 + 0.005, (attempt, waits)


@pytest.mark.parametrize("lm_path", ["direct", "litellm"])
async def test_a_stalled_stream_is_noticed_between_chunks_and_retried(lm_path: str, corpus: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that sends one chunk and then nothing: noticed after --stream-idle, not the request timeout."""
    if lm_path == "litellm":
        monkeypatch.setenv("RLM_TUI_LITELLM_ONLY", "1")
    run = await run_script(_two_turns, corpus, tmp_path, faults=[Fault(stall=60.0)],
                           settings={"lm_timeout": 600.0, "stream_idle": 0.5})
    assert run.result.answer == "ok"
    retries = run.kinds(ev.LM_RETRY)
    assert len(retries) == 1 and "the stream stalled: nothing for 0.5 s" in retries[0].get("error")
    assert run.result.duration_s < 40  # not the 60 s stall


async def test_rate_limit_that_never_ends_is_reported(corpus: Path, tmp_path: Path) -> None:
    run = await run_script(_two_turns, corpus, tmp_path, faults=[Fault(status=429)] * 3,
                           settings={"lm_retries": 2})
    assert run.result.answer is None
    assert "failed after 2 retries" in run.result.error and "429" in run.result.error
    assert len(run.kinds(ev.LM_RETRY)) == 2
    assert load(tmp_path / "session.jsonl").events[-1].get("error") == run.result.error


async def test_sub_call_failure_is_an_error_string_for_the_code(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if not is_rlm_call(messages):
            return "fine"
        if turn_of(messages) == 1:
            return fence("r = llm_query('hello')\nprint('got:', r[:60])")
        fed.append(messages[-1]["content"])
        return "FINAL(ok)"

    # The root's first call takes no fault; the sub-call gets three 500s with two retries allowed.
    run = await run_script(script, corpus, tmp_path, settings={"lm_retries": 2},
                           faults=[Fault(), Fault(status=500), Fault(status=500), Fault(status=500)])
    assert run.result.answer == "ok"
    assert "got: Error: openai/scripted failed after 2 retries" in fed[0]
    llm = [e for e in run.kinds(ev.NODE_FINISHED) if e.node != "n0"][0]
    assert llm.get("status") == "failed" and "500" in llm.get("error")


@pytest.mark.parametrize("status", [401, 403])
async def test_401_on_root_stops_with_a_clear_message(status: int, corpus: Path, tmp_path: Path) -> None:
    run = await run_script(_two_turns, corpus, tmp_path, faults=[Fault(status=status, body="invalid api key")])
    assert run.result.answer is None
    assert run.result.error.startswith("authentication failed for openai/scripted: check the API key")
    assert run.kinds(ev.LM_RETRY) == []  # never retried


async def test_401_in_a_sub_call_stops_the_whole_run(corpus: Path, tmp_path: Path) -> None:
    def script(messages, model):
        if not is_rlm_call(messages):
            return "never"
        return fence("r = llm_query('x')\nprint(r)\nimport time\ntime.sleep(60)")

    run = await run_script(script, corpus, tmp_path, faults=[Fault(), Fault(status=401)])
    assert run.result.answer is None and "authentication failed" in run.result.error
    assert run.result.duration_s < 50  # the sleeping cell was not waited for
    assert load(tmp_path / "session.jsonl").events[-1].kind == ev.RUN_FINISHED


@pytest.mark.parametrize("status", [401, 403])
def test_401_in_the_cli_is_one_line_and_exit_1(status: int, corpus: Path, tmp_path: Path) -> None:
    with ScriptedServer(_two_turns) as server:
        server.faults.append(Fault(status=status))
        proc = subprocess.run([PYTHON, "-m", "rlm_tui", str(corpus), "q", "--headless", "--model",
                               "openai/scripted", "--api-base", server.url, "--session",
                               str(tmp_path / "s.jsonl")], capture_output=True, text=True, timeout=300,
                              env=cli_env(OPENAI_API_KEY="sk-wrong-key-000"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rlm-tui: authentication failed for openai/scripted: check the API key")


async def test_prompt_over_the_sub_models_window_is_an_error_string(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if not is_rlm_call(messages):
            return "small ok"
        if turn_of(messages) == 1:
            return fence("big = llm_query('word ' * 200_000)\nsmall = llm_query('hi')\nprint(big[:200]); print(small)")
        fed.append(messages[-1]["content"])
        return "FINAL(ok)"

    # gpt-4o-mini has a known 128k-token window: a ~250k-token prompt is refused before it is sent.
    run = await run_script(script, corpus, tmp_path, settings={"sub_model": "openai/gpt-4o-mini"})
    assert run.result.answer == "ok"
    assert "Error: the prompt (~250,000 tokens) is larger than openai/gpt-4o-mini's context window" in fed[0]
    assert "small ok" in fed[0]
    assert not any(len(str(r["messages"])) > 1_000_000 for r in run.server.requests)


async def test_provider_context_window_error_is_an_error_string(corpus: Path, tmp_path: Path) -> None:
    fed: list[str] = []

    def script(messages, model):
        if not is_rlm_call(messages):
            return "unused"
        if turn_of(messages) == 1:
            return fence("print(llm_query('too long for the provider'))")
        fed.append(messages[-1]["content"])
        return "FINAL(ok)"

    body = "This model's maximum context length is 8192 tokens. (context_length_exceeded)"
    run = await run_script(script, corpus, tmp_path, faults=[Fault(), Fault(status=400, body=body)])
    assert run.result.answer == "ok"
    assert "Error: the prompt is larger than openai/scripted's context window" in fed[0]
