"""A pooled keep-alive connection the server has closed is replaced at once, not retried.

A server closes a connection that stays idle past its keep-alive timeout;
until the client's event loop reads the FIN, the connection still looks alive
in the pool. The loop is blocked here (``time.sleep`` in a coroutine) past the
timeout so the next request is sure to take such a stale connection: each test
first shows the stale connection failing a plain aiohttp request, then that the
engine's client sends through it with no retry event.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from rlm_tui.core.lm import LMClient
from rlm_tui.scripted import Fault, ScriptedServer

MESSAGES = [{"role": "user", "content": "Say hello."}]


async def _stale_request_fails(url: str, body: dict, headers: dict[str, str], idle: float) -> BaseException:
    """The failure a plain pooled client meets on its second request after ``idle`` seconds."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.post(url, json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
        time.sleep(idle)  # blocks the loop: the server's FIN stays unread, the connection looks alive
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) as failed:
            async with session.post(url, json=body, headers=headers) as resp:
                await resp.read()
        return failed.value


async def _two_calls_with_idle_between(client: LMClient, model: str, idle: float, streamed: bool) -> list[str]:
    retries: list[str] = []
    pieces: list[str] = []
    on_text = pieces.append if streamed else None
    first = await client.complete(model, MESSAGES, on_text, on_retry=lambda n, err, wait: retries.append(err))
    time.sleep(idle)  # as above: the pooled connection is now stale
    second = await client.complete(model, MESSAGES, on_text, on_retry=lambda n, err, wait: retries.append(err))
    assert first.text and second.text
    return retries


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_scripted_server_idle_close_is_not_a_retry(streamed: bool) -> None:
    with ScriptedServer(lambda messages, model: "hello", keepalive_timeout=0.3) as server:
        url = server.url + "/chat/completions"
        await _stale_request_fails(url, {"model": "scripted", "messages": MESSAGES}, {}, idle=0.8)
        client = LMClient(api_base=server.url, retries=2, backoff=0.01)
        try:
            retries = await _two_calls_with_idle_between(client, "openai/scripted", 0.8, streamed)
        finally:
            await client.aclose()
    assert retries == []


async def test_a_dropped_request_on_a_new_connection_is_still_retried() -> None:
    """Only a reused connection is resent silently; a fresh one failing is a real failure."""
    with ScriptedServer(lambda messages, model: "hello") as server:
        server.faults.append(Fault(drop=True))
        client = LMClient(api_base=server.url, retries=2, backoff=0.01)
        retries: list[str] = []
        try:
            result = await client.complete("openai/scripted", MESSAGES,
                                           on_retry=lambda n, err, wait: retries.append(err))
        finally:
            await client.aclose()
    assert result.text == "hello"
    assert len(retries) == 1 and "ServerDisconnected" in retries[0]
