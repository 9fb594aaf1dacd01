"""A direct path to OpenAI-compatible chat endpoints (``openai/...`` models with an ``api_base``).

Measured on 2 cores against the scripted loopback server (python -m rlm_tui.bench):
litellm costs ~4 ms of event-loop CPU per plain call and ~18 ms per streamed
call, so a batch of 256 prompts at 250 ms latency took 2.8-4.8 s through
``LMClient`` alone at concurrency 32, against an ideal of 2.0 s. This client
posts the same request with aiohttp (already installed with litellm) and
parses the JSON or the SSE stream itself. Failures are raised as
``ProviderError`` kinds (``lm_errors.py``), the same the litellm path reports,
so retries and fatal errors behave alike and this path never imports litellm.
Set ``RLM_TUI_LITELLM_ONLY=1`` to send everything through litellm
(``local/...`` models excepted: only this client reaches them).

Servers close idle keep-alive connections (llama.cpp's after 5 s) and a pooled
connection can be dead before the client has noticed: a request that fails on a
reused connection before the response head arrives is re-sent at once (see
``_send``), so a stale connection is never a retry event.
"""

from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace
from typing import Any, Callable

from .lm_errors import RETRY, ProviderError, kind_of_status

PREFIX = "openai/"


def applies(model: str, api_base: str | None) -> bool:
    """True when ``model`` goes to an OpenAI-compatible endpoint this client can serve."""
    return bool(api_base) and model.startswith(PREFIX) and os.environ.get("RLM_TUI_LITELLM_ONLY") != "1"


class FastOpenAI:
    """One aiohttp session per event loop; a request per call, streamed or not."""

    def __init__(self, api_base: str, api_key: str | None, timeout: float, idle: float | None = None,
                 max_reply_tokens: int | None = None) -> None:
        self.url = api_base.rstrip("/") + "/chat/completions"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
        self.idle = idle  # seconds a stream may go silent once it has begun
        self.max_reply_tokens = max_reply_tokens  # sent as max_tokens; None: the server's default
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_now(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # The engine's semaphore caps concurrency; the connector must not add a lower cap.
            reuse = aiohttp.TraceConfig()
            reuse.on_connection_reuseconn.append(_mark_reused)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  trace_configs=[reuse])
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # its loop is gone
                pass
        self._session = None

    async def _send(self, data: bytes) -> Any:
        """POST ``data``; the response once its head has arrived.

        A failure on a reused pooled connection before the response head means the
        server had closed that idle connection: aiohttp drops it and the request goes
        again at once, on another connection. A failure on a new connection is raised.
        This ends: each pass drops one pooled connection, and only answered requests
        put connections back.
        """
        import aiohttp

        while True:
            request = SimpleNamespace(reused=False)
            try:
                return await self._session_now().post(self.url, data=data, headers=self.headers,
                                                      trace_request_ctx=request)
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                if not request.reused:
                    raise

    async def call(self, model: str, messages: list[dict[str, str]],
                   on_text: Callable[[str], None] | None) -> tuple[str, tuple[int, int]]:
        import aiohttp

        body: dict[str, Any] = {"model": model.split("/", 1)[-1], "messages": messages}
        if self.max_reply_tokens:
            body["max_tokens"] = self.max_reply_tokens
        if on_text is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        data = json.dumps(body).encode()
        try:
            async with await self._send(data) as resp:
                if resp.status >= 400:
                    raise _status_error(resp.status, await resp.text())
                if on_text is None:
                    return _read_reply(await resp.json(content_type=None))
                return await _read_stream(resp, on_text, self.idle)
        except asyncio.TimeoutError:
            raise ProviderError(RETRY, f"no reply within {self.timeout:g} s") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise ProviderError(RETRY, f"{type(exc).__name__}: {exc}") from None


def _read_reply(reply: Any) -> tuple[str, tuple[int, int]]:
    """A whole chat completion, checked: anything but a reply with text is a ProviderError."""
    if not isinstance(reply, dict):
        raise ProviderError(RETRY, f"malformed reply: a JSON {type(reply).__name__}, not an object")
    _raise_error(reply)
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderError(RETRY, "malformed reply: no choices")
    message = choices[0].get("message")
    text = content_text(message.get("content") if isinstance(message, dict) else None)
    return text, _usage(reply.get("usage"))


async def _mark_reused(session: Any, trace: Any, params: Any) -> None:
    """aiohttp trace hook: this request was given a pooled connection."""
    trace.trace_request_ctx.reused = True


async def _read_stream(resp: Any, on_text: Callable[[str], None],
                       idle: float | None) -> tuple[str, tuple[int, int]]:
    parts: list[str] = []
    usage = None
    begun = False  # before the first line, the wait is the model thinking: only the request timeout applies
    while True:
        try:
            async with asyncio.timeout(idle if begun else None):
                raw = await resp.content.readline()
        except TimeoutError:
            raise ProviderError(RETRY, f"the stream stalled: nothing for {idle:g} s") from None
        if not raw:
            break
        begun = True
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return "".join(parts), _usage(usage)
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            raise ProviderError(RETRY, f"malformed stream: a JSON {type(chunk).__name__}, not an object")
        _raise_error(chunk)
        if chunk.get("usage"):
            usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            piece = content_text(delta.get("content") if isinstance(delta, dict) else None, partial=True)
            if piece:
                parts.append(piece)
                on_text(piece)
    raise ProviderError(RETRY, "the stream ended before [DONE]")


def content_text(content: Any, partial: bool = False) -> str:
    """A message's content as text: a string, or a list of text parts (an OpenAI-compatible form).

    ``None`` is no text (a stream's delta may carry none); other types are malformed.
    """
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        pieces = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in content]
        if all(isinstance(p, str) for p in pieces):
            return "".join(pieces)  # type: ignore[arg-type]
    where = "stream" if partial else "reply"
    raise ProviderError(RETRY, f"malformed {where}: content is a {type(content).__name__}, not text")


def _raise_error(body: dict[str, Any]) -> None:
    """An error object sent with status 200 (in a body or mid-stream) is a failure, not a reply."""
    error = body.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ProviderError(RETRY, f"the server sent an error: {str(message)[:300]}")


def _usage(usage: Any) -> tuple[int, int]:
    usage = usage if isinstance(usage, dict) else {}
    try:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return 0, 0


def _status_error(status: int, text: str) -> ProviderError:
    """The server's error reply as a ProviderError, with its own message when it gave one."""
    try:
        detail = json.loads(text).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
        if isinstance(detail, dict) and "n_ctx" in detail and "n_prompt_tokens" in detail:  # llama.cpp's numbers
            message = f"{message} (n_prompt_tokens={detail['n_prompt_tokens']}, n_ctx={detail['n_ctx']})"
    except (ValueError, AttributeError):
        message = None
    message = message or text[:300] or f"HTTP {status}"
    return ProviderError(kind_of_status(status, message), f"HTTP {status}: {message}")
