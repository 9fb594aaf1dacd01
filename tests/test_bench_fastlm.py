"""The direct OpenAI-compatible path (added for the benchmark's batch row) fails and retries like litellm."""

from __future__ import annotations

import pytest

from rlm_tui.core import fastlm
from rlm_tui.core.lm import LMClient, LMError, LMFatalError
from rlm_tui.scripted import Fault, ScriptedServer

MODEL = "openai/scripted"


def echo(messages, model):
    return f"model={model} said:" + messages[-1]["content"]


@pytest.fixture(params=["direct", "litellm"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each behaviour is checked on the direct path and through litellm itself."""
    if request.param == "litellm":
        monkeypatch.setenv("RLM_TUI_LITELLM_ONLY", "1")
    return request.param


async def _client(server: ScriptedServer) -> LMClient:
    return LMClient(api_base=server.url, api_key="sk-test-1234", retries=2, backoff=0.01)


def test_applies_only_to_openai_models_with_a_base(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fastlm.applies("openai/x", "http://127.0.0.1:1/v1")
    assert not fastlm.applies("openai/x", None)
    assert not fastlm.applies("anthropic/claude", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("RLM_TUI_LITELLM_ONLY", "1")
    assert not fastlm.applies("openai/x", "http://127.0.0.1:1/v1")


async def test_plain_and_streamed_replies_with_usage(path: str) -> None:
    with ScriptedServer(echo) as server:
        client = await _client(server)
        plain = await client.complete(MODEL, [{"role": "user", "content": "hi"}])
        chunks: list[str] = []
        streamed = await client.complete(MODEL, [{"role": "user", "content": "x" * 100}], chunks.append)
        await client.aclose()
    assert plain.text == "model=scripted said:hi"  # the provider prefix is not sent
    assert plain.tokens_in > 0 and plain.tokens_out > 0
    assert streamed.text == "model=scripted said:" + "x" * 100 and len(chunks) > 1
    assert "".join(chunks) == streamed.text


async def test_rate_limit_and_server_errors_are_retried(path: str) -> None:
    with ScriptedServer(echo) as server:
        server.faults.extend([Fault(status=429), Fault(status=500)])
        client = await _client(server)
        retries: list[int] = []
        result = await client.complete(MODEL, [{"role": "user", "content": "a"}],
                                       on_retry=lambda attempt, error, wait: retries.append(attempt))
        await client.aclose()
    assert result.text.endswith("said:a") and retries == [1, 2]


async def test_broken_stream_is_retried_from_the_start(path: str) -> None:
    with ScriptedServer(echo) as server:
        server.faults.append(Fault(break_stream=True))
        client = await _client(server)
        chunks: list[str] = []
        retried: list[str] = []
        result = await client.complete(MODEL, [{"role": "user", "content": "y" * 200}], chunks.append,
                                       on_retry=lambda attempt, error, wait: retried.append(error))
        await client.aclose()
    assert result.text.endswith("y" * 200) and len(retried) == 1


async def test_auth_failure_is_fatal_and_missing_model_too(path: str) -> None:
    with ScriptedServer(echo) as server:
        client = await _client(server)
        server.faults.append(Fault(status=401, body="bad key"))
        with pytest.raises(LMFatalError, match="authentication failed"):
            await client.complete(MODEL, [{"role": "user", "content": "a"}])
        server.faults.append(Fault(status=404, body="no such model"))
        with pytest.raises(LMFatalError, match="not found"):
            await client.complete(MODEL, [{"role": "user", "content": "a"}])
        await client.aclose()


async def test_context_window_and_exhausted_retries_are_plain_errors(path: str) -> None:
    with ScriptedServer(echo) as server:
        client = await _client(server)
        server.faults.append(Fault(status=400, body="This model's maximum context length is 8192 tokens"))
        with pytest.raises(LMError, match="context window") as info:
            await client.complete(MODEL, [{"role": "user", "content": "a"}])
        assert not isinstance(info.value, LMFatalError)
        server.faults.extend([Fault(status=503)] * 3)
        with pytest.raises(LMError, match="after 2 retries"):
            await client.complete(MODEL, [{"role": "user", "content": "a"}])
        await client.aclose()


async def test_unreachable_server_is_a_connection_error(path: str) -> None:
    client = LMClient(api_base="http://127.0.0.1:9/v1", api_key="sk-test-1234", retries=0)
    with pytest.raises(LMError, match="failed after 0 retries"):
        await client.complete(MODEL, [{"role": "user", "content": "a"}])
    await client.aclose()
