"""Language-model access: streaming, usage, cost, retries.

OpenAI-compatible servers (``openai/...`` with an ``api_base``) are called by
the direct client in ``fastlm.py``; every other provider through litellm,
imported lazily (it costs seconds) with the local price map, so it never
reaches for the network at import. Prices and windows come from that map's
file (``pricing.py``), so a direct-path run never imports litellm. A model
with no known price costs 0 and the run is told so once. Rate limits, server errors, timeouts and broken
streams are retried with backoff; authentication errors are fatal; a prompt
over the model's window is an ordinary, reportable error.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import fastlm, lm_errors, pricing
from .fastlm import FastOpenAI
from .lm_errors import ProviderError
from .redaction import known_secrets, redact

_import_lock = threading.Lock()
_litellm: Any = None  # set once imported: later calls skip the thread hop


def litellm_module() -> Any:
    """Import litellm once, configured for offline price lookups and quiet logs."""
    global _litellm
    with _import_lock:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        _litellm = litellm
        return litellm


class LMError(Exception):
    """A model call failed after retries; the message is meant for the user and the model."""


class LMFatalError(LMError):
    """The run cannot continue (bad credentials, unknown model)."""


class LMWindowError(LMError):
    """The prompt does not fit the model's window; ``window`` and ``prompt_tokens`` as the server said them
    (None when it did not), so an RLM's history can be compacted to fit and the request sent again."""

    def __init__(self, message: str, window: int | None = None, prompt_tokens: int | None = None) -> None:
        super().__init__(message)
        self.window = window
        self.prompt_tokens = prompt_tokens


@dataclass
class LMResult:
    text: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cost_known: bool
    latency_s: float


@dataclass
class LMClient:
    """One client per run; ``on_retry`` and ``on_unpriced`` report to the run's event stream."""

    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 600.0
    retries: int = 4
    backoff: float = 1.0
    idle: float | None = None  # seconds a streamed reply may go silent once it has begun
    max_reply_tokens: int | None = None  # sent as max_tokens (--max-reply-tokens); None: the provider's default
    on_unpriced: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._unpriced: set[str] = set()
        self._secrets = known_secrets([self.api_key])  # a provider may echo a key in its error text
        self._fast = (FastOpenAI(self.api_base, self.api_key, self.timeout, self.idle, self.max_reply_tokens)
                      if self.api_base else None)
        self._local: dict[str, FastOpenAI] = {}  # local/<name> -> a client of its in-process server

    def needs_litellm(self, model: str) -> bool:
        """True when calls to ``model`` go through litellm (not the direct OpenAI-compatible client)."""
        return not (fastlm.applies(model, self.api_base) or model.startswith("local/"))

    async def aclose(self) -> None:
        for client in [self._fast, *self._local.values()]:
            if client is not None:
                await client.aclose()

    async def complete(self, model: str, messages: list[dict[str, str]],
                       on_text: Callable[[str], None] | None = None,
                       on_retry: Callable[[int, str, float], None] | None = None) -> LMResult:
        """One chat completion; streams text to ``on_text`` when given.

        ``on_retry(attempt, error, wait_s)`` is told before each retry; text
        streamed before a retry is void (the reply starts again).
        """
        self._check_window(model, messages)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                text, usage = await self._call(model, messages, on_text)
                if not text.strip():  # nothing to use: never counted as an answer
                    raise ProviderError(lm_errors.RETRY, "the model sent an empty reply")
                break
            except ProviderError as exc:
                if exc.kind == lm_errors.AUTH:
                    raise LMFatalError(f"authentication failed for {model}: check the API key "
                                       f"({self._say(exc)})") from None
                if exc.kind == lm_errors.NOT_FOUND:
                    raise LMFatalError(f"model {model} not found: {self._say(exc)}") from None
                if exc.kind == lm_errors.NO_KEY:
                    raise LMFatalError(f"no API key for {model}: pass --api-key or set the provider's "
                                       "environment variable") from None
                if exc.kind == lm_errors.WINDOW:
                    raise LMWindowError(f"the prompt is larger than {model}'s context window ({self._say(exc)})",
                                        *lm_errors.window_numbers(str(exc))) from None
                if exc.kind != lm_errors.RETRY:
                    raise LMError(f"{model} error: {self._say(exc)}") from None
                attempt += 1
                if attempt > self.retries:
                    raise LMError(f"{model} failed after {self.retries} retries: {self._say(exc)}") from None
                wait = min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
                if on_retry:
                    on_retry(attempt, self._say(exc), wait)
                await asyncio.sleep(wait)
        tokens_in, tokens_out = usage
        if tokens_in == 0 and tokens_out == 0:  # the provider gave no usage: ~4 characters a token
            tokens_in = sum(len(m.get("content") or "") for m in messages) // 4 + 1
            tokens_out = len(text) // 4 + 1
        cost, known = self._cost(model, tokens_in, tokens_out)
        return LMResult(text, tokens_in, tokens_out, cost, known, time.perf_counter() - started)

    async def _call(self, model: str, messages: list[dict[str, str]],
                    on_text: Callable[[str], None] | None) -> tuple[str, tuple[int, int]]:
        if model.startswith("local/"):
            from .local_model import LocalModelMissing, prepare

            try:
                running = await prepare(model)
            except LocalModelMissing as exc:
                raise LMFatalError(str(exc)) from None
            if model not in self._local:
                self._local[model] = FastOpenAI(running.url, running.key, self.timeout, self.idle,
                                                self.max_reply_tokens)
            return await self._local[model].call(model, messages, on_text)
        if self._fast is not None and fastlm.applies(model, self.api_base):
            return await self._fast.call(model, messages, on_text)
        litellm = _litellm or await asyncio.to_thread(litellm_module)
        try:
            return await self._litellm_call(litellm, model, messages, on_text)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - litellm's own kinds become ProviderError kinds
            failure = lm_errors.from_litellm(exc, litellm.exceptions)
            if failure is None:
                raise
            raise failure from None

    async def _litellm_call(self, litellm: Any, model: str, messages: list[dict[str, str]],
                            on_text: Callable[[str], None] | None) -> tuple[str, tuple[int, int]]:
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "timeout": self.timeout,
                                  "num_retries": 0}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.max_reply_tokens:
            kwargs["max_tokens"] = self.max_reply_tokens
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            # A local OpenAI-compatible server (vLLM, llama.cpp, Ollama) needs no key, but the
            # OpenAI client refuses to send a request without one.
            kwargs["api_key"] = "no-key-needed"
        if on_text is None:
            response = await litellm.acompletion(**kwargs)
            usage = getattr(response, "usage", None)
            if not response.choices:
                raise ProviderError(lm_errors.RETRY, "malformed reply: no choices")
            text = fastlm.content_text(response.choices[0].message.content)
            return text, (_tok(usage, "prompt_tokens"), _tok(usage, "completion_tokens"))
        stream = await litellm.acompletion(stream=True, stream_options={"include_usage": True}, **kwargs)
        parts: list[str] = []
        usage = None
        chunks = stream.__aiter__()
        while True:
            try:  # the first chunk may take the model's thinking time; later ones must keep coming
                async with asyncio.timeout(self.idle if parts or usage else None):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ProviderError(lm_errors.RETRY, f"the stream stalled: nothing for {self.idle:g} s") from None
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            if chunk.choices:
                delta = fastlm.content_text(chunk.choices[0].delta.content, partial=True)
                if delta:
                    parts.append(delta)
                    on_text(delta)
        return "".join(parts), (_tok(usage, "prompt_tokens"), _tok(usage, "completion_tokens"))

    def _say(self, exc: BaseException) -> str:
        """The error for users and the model: secrets redacted first, then cut short."""
        return _short(redact(str(exc), self._secrets))

    def _cost(self, model: str, tokens_in: int, tokens_out: int) -> tuple[float, bool]:
        if model.startswith("local/"):  # runs on this machine
            return 0.0, True
        cost = pricing.cost(model, tokens_in, tokens_out)
        if cost is not None:
            return cost, True
        if model not in self._unpriced:
            self._unpriced.add(model)
            if self.on_unpriced:
                self.on_unpriced(model)
        return 0.0, False

    def _check_window(self, model: str, messages: list[dict[str, str]]) -> None:
        """Refuse a prompt that clearly cannot fit, before paying for the request."""
        window = pricing.window(model)
        chars = sum(len(m.get("content") or "") for m in messages)
        if window and chars // 4 > window:  # ~4 characters a token; only the clear cases
            raise LMWindowError(f"the prompt (~{chars // 4:,} tokens) is larger than {model}'s context "
                                f"window ({window:,} tokens); send a smaller piece", window)


def _tok(usage: Any, name: str) -> int:
    value = getattr(usage, name, None) if usage is not None else None
    return int(value or 0)


def _short(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
