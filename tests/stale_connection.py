"""A pooled keep-alive connection gone stale: how a plain client fails on it, and two calls with an idle gap."""

from __future__ import annotations

import time

import aiohttp
import pytest

from rlm_tui.core.lm import LMClient

MESSAGES = [{"role": "user", "content": "Say hello."}]


async def stale_request_fails(url: str, body: dict, headers: dict[str, str], idle: float) -> BaseException:
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


async def two_calls_with_idle_between(client: LMClient, model: str, idle: float, streamed: bool) -> list[str]:
    retries: list[str] = []
    pieces: list[str] = []
    on_text = pieces.append if streamed else None
    first = await client.complete(model, MESSAGES, on_text, on_retry=lambda n, err, wait: retries.append(err))
    time.sleep(idle)  # as above: the pooled connection is now stale
    second = await client.complete(model, MESSAGES, on_text, on_retry=lambda n, err, wait: retries.append(err))
    assert first.text and second.text
    return retries
