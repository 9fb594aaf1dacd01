"""Broken replies from a server are LM errors, never an empty answer counted as success.

Each case is a status-200 body the scripted server sends as it is, through the
direct client and through litellm. One broken reply is retried and the run goes
on; a server that only ever sends it fails the run with a clear error (the root)
or gives ``llm_query`` an ``Error: ...`` string (a sub-call), never ``''``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import fence, run_script
from rlm_tui.core import events as ev
from rlm_tui.core.lm import LMClient, LMError
from rlm_tui.scripted import Fault, ScriptedServer, is_rlm_call, turn_of

pytestmark = pytest.mark.kernel

MODEL = "openai/scripted"


def _completion(content: object) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


def _sse(*chunks: object) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


BROKEN = {  # name -> (body for a plain request, SSE text for a streamed one)
    "no choices": (json.dumps({"choices": []}), _sse({"choices": []})),
    "null content": (_completion(None), _sse({"choices": [{"delta": {"content": None}}]})),
    "whitespace only": (_completion("  \n "), _sse({"choices": [{"delta": {"content": "  \n"}}]})),
    "error with status 200": (json.dumps({"error": {"message": "overloaded"}}),
                              _sse({"choices": [{"delta": {"content": "par"}}]}, {"error": {"message": "boom"}})),
    "a JSON list": ("[1, 2]", "data: [1, 2]\n\ndata: [DONE]\n\n"),
    "a JSON null": ("null", "data: null\n\ndata: [DONE]\n\n"),
    "content is a number": (_completion(5), _sse({"choices": [{"delta": {"content": 5}}]})),
}


@pytest.fixture(params=["direct", "litellm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "litellm":
        monkeypatch.setenv("RLM_TUI_LITELLM_ONLY", "1")
    return request.param


@pytest.mark.parametrize("name", list(BROKEN))
async def test_a_broken_reply_is_an_error_never_an_empty_text(name: str, path: str) -> None:
    plain, streamed = BROKEN[name]
    with ScriptedServer(lambda messages, model: "fine") as server:
        client = LMClient(api_base=server.url, api_key="sk-test-1234", retries=1, backoff=0.01)
        for body, on_text in ((plain, None), (streamed, [].append)):
            server.faults.extend([Fault(raw=body), Fault(raw=body)])  # the first try and its one retry
            with pytest.raises(LMError):
                await client.complete(MODEL, [{"role": "user", "content": "hi"}], on_text)
            server.faults.clear()
        if path == "litellm" and name == "error with status 200":
            await client.aclose()
            return  # litellm files an error body as a bad request: an error, not retried
        server.faults.append(Fault(raw=plain))  # once only: the retry gets the real reply
        retried: list[str] = []
        result = await client.complete(MODEL, [{"role": "user", "content": "hi"}],
                                       on_retry=lambda attempt, error, wait: retried.append(error))
        await client.aclose()
    assert result.text == "fine" and len(retried) == 1


async def test_content_as_a_list_of_text_parts_is_joined() -> None:
    """On the direct path (litellm itself refuses this form: an error, retried, never a crash)."""
    parts = [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]
    with ScriptedServer(lambda messages, model: "unused") as server:
        client = LMClient(api_base=server.url, api_key="sk-test-1234", retries=0)
        server.faults.append(Fault(raw=_completion(parts)))
        plain = await client.complete(MODEL, [{"role": "user", "content": "hi"}])
        server.faults.append(Fault(raw=_sse({"choices": [{"delta": {"content": parts}}]},
                                            {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})))
        streamed = await client.complete(MODEL, [{"role": "user", "content": "hi"}], [].append)
        await client.aclose()
    assert plain.text == "hello" and streamed.text == "hello"


async def test_llm_query_gets_an_error_string_not_an_empty_one(corpus: Path, tmp_path: Path) -> None:
    """A sub-model that only sends empty replies: the code sees ``Error: ...``, the run still answers."""
    def script(messages, model):
        if not is_rlm_call(messages):
            return ""  # every sub-call, and each retry of it
        if turn_of(messages) == 1:
            return fence("r = llm_query('hi')\nprint(type(r).__name__, repr(r))")
        return "FINAL(done)"

    run = await run_script(script, corpus, tmp_path, settings={"lm_retries": 2})
    assert run.result.answer == "done"
    assert "str 'Error: openai/scripted failed after 2 retries: the model sent an empty reply'" in run.cell_text()
    assert len(run.kinds(ev.LM_RETRY)) == 2


async def test_a_root_model_that_only_sends_empty_replies_fails_the_run(corpus: Path, tmp_path: Path) -> None:
    run = await run_script(lambda messages, model: " ", corpus, tmp_path, settings={"lm_retries": 1})
    assert run.result.answer is None
    assert run.result.error == "openai/scripted failed after 1 retries: the model sent an empty reply"
