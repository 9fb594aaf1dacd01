"""A pooled keep-alive connection the server has closed is replaced at once, not retried.

A server closes a connection that stays idle past its keep-alive timeout;
until the client's event loop reads the FIN, the connection still looks alive
in the pool. The loop is blocked here (``time.sleep`` in a coroutine) past the
timeout so the next request is sure to take such a stale connection: each test
first shows the stale connection failing a plain aiohttp request, then that the
engine's client sends through it with no retry event.
"""

from __future__ import annotations

import pytest

from rlm_tui.core.lm import LMClient
from rlm_tui.scripted import Fault, ScriptedServer
from stale_connection import MESSAGES, stale_request_fails, two_calls_with_idle_between


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_scripted_server_idle_close_is_not_a_retry(streamed: bool) -> None:
    with ScriptedServer(lambda messages, model: "hello", keepalive_timeout=0.3) as server:
        url = server.url + "/chat/completions"
        await stale_request_fails(url, {"model": "scripted", "messages": MESSAGES}, {}, idle=0.8)
        client = LMClient(api_base=server.url, retries=2, backoff=0.01)
        try:
            retries = await two_calls_with_idle_between(client, "openai/scripted", 0.8, streamed)
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
