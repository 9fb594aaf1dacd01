"""Language-model access through litellm: streaming, usage, cost, retries.

litellm is imported lazily (it costs seconds) with the local price map, so it
never reaches for the network at import. A model with no known price costs 0
and the run is told so once. Rate limits, server errors, timeouts and broken
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

from . import fastlm
from .fastlm import FastOpenAI
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
    on_unpriced: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._unpriced: set[str] = set()
        self._windows: dict[str, int | None] = {}
        self._secrets = known_secrets([self.api_key])  # a provider may echo a key in its error text
        self._fast = FastOpenAI(self.api_base, self.api_key, self.timeout) if self.api_base else None
        self._local: dict[str, FastOpenAI] = {}  # local/<name> -> a client of its in-process server

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
        litellm = _litellm or await asyncio.to_thread(litellm_module)
        errors = litellm.exceptions
        retryable = (errors.RateLimitError, errors.Timeout, errors.APIConnectionError,
                     errors.InternalServerError, errors.ServiceUnavailableError, errors.BadGatewayError,
                     errors.MidStreamFallbackError)
        if model.startswith("local/"):
            self._use_local(model)
        self._check_window(litellm, model, messages)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                text, usage = await self._call(litellm, model, messages, on_text)
                break
            except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
                raise LMFatalError(f"authentication failed for {model}: check the API key "
                                   f"({self._say(exc)})") from None
            except errors.NotFoundError as exc:
                raise LMFatalError(f"model {model} not found: {self._say(exc)}") from None
            except errors.ContextWindowExceededError as exc:
                raise LMError(f"the prompt is larger than {model}'s context window ({self._say(exc)})") from None
            except retryable as exc:
                if "Missing credentials" in str(exc):  # litellm files this under server errors
                    raise LMFatalError(f"no API key for {model}: pass --api-key or set the provider's "
                                       "environment variable") from None
                attempt += 1
                if attempt > self.retries:
                    raise LMError(f"{model} failed after {self.retries} retries: {self._say(exc)}") from None
                wait = min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
                if on_retry:
                    on_retry(attempt, self._say(exc), wait)
                await asyncio.sleep(wait)
            except errors.APIError as exc:
                raise LMError(f"{model} error: {self._say(exc)}") from None
        tokens_in, tokens_out = usage
        if tokens_in == 0 and tokens_out == 0:
            tokens_in = litellm.token_counter(model=model, messages=messages)
            tokens_out = litellm.token_counter(model=model, text=text)
        cost, known = self._cost(litellm, model, tokens_in, tokens_out)
        return LMResult(text, tokens_in, tokens_out, cost, known, time.perf_counter() - started)

    async def _call(self, litellm: Any, model: str, messages: list[dict[str, str]],
                    on_text: Callable[[str], None] | None) -> tuple[str, tuple[int, int]]:
        if model.startswith("local/"):
            from .local_model import LocalModelMissing, prepare

            try:
                running, messages = await prepare(model, messages)
            except LocalModelMissing as exc:
                raise LMFatalError(str(exc)) from None
            if model not in self._local:
                self._local[model] = FastOpenAI(running.url, running.key, self.timeout)
            return await self._local[model].call(litellm, model, messages, on_text)
        if self._fast is not None and fastlm.applies(model, self.api_base):
            return await self._fast.call(litellm, model, messages, on_text)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "timeout": self.timeout,
                                  "num_retries": 0}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            # A local OpenAI-compatible server (vLLM, llama.cpp, Ollama) needs no key, but the
            # OpenAI client refuses to send a request without one.
            kwargs["api_key"] = "no-key-needed"
        if on_text is None:
            response = await litellm.acompletion(**kwargs)
            usage = getattr(response, "usage", None)
            text = response.choices[0].message.content or ""
            return text, (_tok(usage, "prompt_tokens"), _tok(usage, "completion_tokens"))
        stream = await litellm.acompletion(stream=True, stream_options={"include_usage": True}, **kwargs)
        parts: list[str] = []
        usage = None
        async for chunk in stream:
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            if chunk.choices:
                delta = chunk.choices[0].delta.content
                if delta:
                    parts.append(delta)
                    on_text(delta)
        return "".join(parts), (_tok(usage, "prompt_tokens"), _tok(usage, "completion_tokens"))

    def _say(self, exc: BaseException) -> str:
        """The error for users and the model: secrets redacted first, then cut short."""
        return _short(redact(str(exc), self._secrets))

    @staticmethod
    def _use_local(model: str) -> None:
        """``local/<name>``: the offline model of the ``local`` extra (see local_model.py)."""
        from .local_model import LocalModelMissing, check

        try:
            check(model)
        except LocalModelMissing as exc:
            raise LMFatalError(str(exc)) from None

    def _cost(self, litellm: Any, model: str, tokens_in: int, tokens_out: int) -> tuple[float, bool]:
        if model.startswith("local/"):  # runs on this machine
            return 0.0, True
        if model in self._unpriced:  # litellm's failed lookup costs ~0.4 ms a call
            return 0.0, False
        try:
            cost_in, cost_out = litellm.cost_per_token(model=model, prompt_tokens=tokens_in,
                                                       completion_tokens=tokens_out)
            return float(cost_in + cost_out), True
        except Exception:  # noqa: BLE001 - litellm raises several kinds for unknown models
            if model not in self._unpriced:
                self._unpriced.add(model)
                if self.on_unpriced:
                    self.on_unpriced(model)
            return 0.0, False

    def _check_window(self, litellm: Any, model: str, messages: list[dict[str, str]]) -> None:
        """Refuse a prompt that clearly cannot fit, before paying for the request."""
        if model not in self._windows:
            try:
                self._windows[model] = litellm.get_model_info(model).get("max_input_tokens")
            except Exception:  # noqa: BLE001 - unknown model: the provider will say
                self._windows[model] = None
        window = self._windows[model]
        chars = sum(len(m.get("content") or "") for m in messages)
        if window and chars // 4 > window:  # ~4 characters a token; only the clear cases
            raise LMError(f"the prompt (~{chars // 4:,} tokens) is larger than {model}'s context "
                          f"window ({window:,} tokens); send a smaller piece")


def _tok(usage: Any, name: str) -> int:
    value = getattr(usage, name, None) if usage is not None else None
    return int(value or 0)


def _short(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
