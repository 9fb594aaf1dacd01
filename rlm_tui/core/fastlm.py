"""A direct path to OpenAI-compatible chat endpoints (``openai/...`` models with an ``api_base``).

Measured on 2 cores against the scripted loopback server (python -m rlm_tui.bench):
litellm costs ~4 ms of event-loop CPU per plain call and ~18 ms per streamed
call, so a batch of 256 prompts at 250 ms latency took 2.8-4.8 s through
``LMClient`` alone at concurrency 32, against an ideal of 2.0 s. This client
posts the same request with aiohttp (already installed with litellm) and
parses the JSON or the SSE stream itself. Failures are raised as the litellm
exceptions litellm would raise, so ``LMClient``'s retry and error handling is
unchanged. Set ``RLM_TUI_LITELLM_ONLY=1`` to send everything through litellm
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

PREFIX = "openai/"
_WINDOW_WORDS = ("context length", "context_length", "maximum context", "context window", "too many tokens",
                 "context size")


def applies(model: str, api_base: str | None) -> bool:
    """True when ``model`` goes to an OpenAI-compatible endpoint this client can serve."""
    return bool(api_base) and model.startswith(PREFIX) and os.environ.get("RLM_TUI_LITELLM_ONLY") != "1"


class FastOpenAI:
    """One aiohttp session per event loop; a request per call, streamed or not."""

    def __init__(self, api_base: str, api_key: str | None, timeout: float) -> None:
        self.url = api_base.rstrip("/") + "/chat/completions"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
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

    async def call(self, litellm: Any, model: str, messages: list[dict[str, str]],
                   on_text: Callable[[str], None] | None) -> tuple[str, tuple[int, int]]:
        import aiohttp

        errors = litellm.exceptions
        body: dict[str, Any] = {"model": model.split("/", 1)[-1], "messages": messages}
        if on_text is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        data = json.dumps(body).encode()
        try:
            async with await self._send(data) as resp:
                if resp.status >= 400:
                    raise _status_error(errors, resp.status, await resp.text(), model, self.url)
                if on_text is None:
                    reply = await resp.json(content_type=None)
                    message = (reply.get("choices") or [{}])[0].get("message") or {}
                    return message.get("content") or "", _usage(reply.get("usage"))
                return await _read_stream(errors, resp, model, on_text)
        except asyncio.TimeoutError:
            raise errors.Timeout(f"no reply within {self.timeout:g} s", model=model,
                                 llm_provider="openai") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise errors.APIConnectionError(f"{type(exc).__name__}: {exc}", llm_provider="openai",
                                            model=model) from None


async def _mark_reused(session: Any, trace: Any, params: Any) -> None:
    """aiohttp trace hook: this request was given a pooled connection."""
    trace.trace_request_ctx.reused = True


async def _read_stream(errors: Any, resp: Any, model: str,
                       on_text: Callable[[str], None]) -> tuple[str, tuple[int, int]]:
    parts: list[str] = []
    usage = None
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return "".join(parts), _usage(usage)
        chunk = json.loads(payload)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                parts.append(delta)
                on_text(delta)
    raise errors.APIConnectionError("the stream ended before [DONE]", llm_provider="openai", model=model)


def _usage(usage: dict[str, Any] | None) -> tuple[int, int]:
    usage = usage or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _status_error(errors: Any, status: int, text: str, model: str, url: str) -> Exception:
    import httpx

    try:
        detail = json.loads(text).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = None
    message = f"OpenAIException - {message or text[:300] or f'HTTP {status}'}"
    response = httpx.Response(status, request=httpx.Request("POST", url))
    kw = {"message": message, "model": model, "llm_provider": "openai"}
    if status == 400 and any(w in message.lower() for w in _WINDOW_WORDS):
        return errors.ContextWindowExceededError(**kw, response=response)
    if status == 408:
        return errors.Timeout(**kw)
    name = _BY_STATUS.get(status) or ("InternalServerError" if status >= 500 else None)
    if name is None:
        return errors.APIError(status_code=status, **kw)
    return getattr(errors, name)(**kw, response=response)


# The litellm exception litellm raises for each HTTP status of an OpenAI-compatible server.
_BY_STATUS = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
              404: "NotFoundError", 429: "RateLimitError", 502: "BadGatewayError", 503: "ServiceUnavailableError"}
