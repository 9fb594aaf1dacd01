"""What went wrong with a model request, said once for both LM paths.

The direct OpenAI-compatible client (``fastlm.py``) and the litellm path both
raise ``ProviderError`` with one of a few kinds; ``LMClient`` decides retries
and fatality from the kind alone. So the direct path never needs litellm's
exception classes (importing litellm costs seconds), and the two paths cannot
drift apart in how they treat a 401 or a 429.
"""

from __future__ import annotations

import re

AUTH = "auth"  # 401/403: the run stops
NOT_FOUND = "not_found"  # unknown model: the run stops
NO_KEY = "no_key"  # no credentials at all: the run stops
WINDOW = "window"  # the prompt does not fit: an error string for the calling code
RETRY = "retry"  # rate limits, 5xx, timeouts, broken connections and streams
OTHER = "other"  # anything else the provider refused: an error string

# The kind of each HTTP status an OpenAI-compatible server answers with.
BY_STATUS = {401: AUTH, 403: AUTH, 404: NOT_FOUND, 408: RETRY, 429: RETRY}
_WINDOW_WORDS = ("context length", "context_length", "maximum context", "context window", "too many tokens",
                 "exceeds the available context", "context size")


# What servers say about a prompt over the window: (the window, the prompt's tokens) from each form.
_WINDOW_SAYS = (
    # llama.cpp: "request (4137 tokens) exceeds the available context size (4096 tokens)"
    re.compile(r"request \((?P<prompt>\d+) tokens\) exceeds the available context size \((?P<window>\d+) tokens\)"),
    # llama.cpp's newer JSON fields, when a message carries them
    re.compile(r'"?n_prompt_tokens"?\s*[:=]\s*(?P<prompt>\d+).*?"?n_ctx"?\s*[:=]\s*(?P<window>\d+)', re.S),
    # OpenAI, vLLM: "maximum context length is 8192 tokens. However, you requested 9100 tokens"
    re.compile(r"maximum context length is (?P<window>\d+) tokens(?:.*?(?:requested|resulted in) (?P<prompt>\d+) tokens)?",
               re.S),
)


class ProviderError(Exception):
    """A failed model request: ``kind`` (above) and the provider's message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def window_numbers(message: str) -> tuple[int | None, int | None]:
    """(the model's window, the refused prompt's tokens) as the server said them, each None if it did not."""
    for pattern in _WINDOW_SAYS:
        found = pattern.search(message)
        if found:
            prompt = found.group("prompt")
            return int(found.group("window")), int(prompt) if prompt else None
    return None, None


def kind_of_status(status: int, message: str) -> str:
    """The kind of an HTTP error reply."""
    if status == 400 and any(word in message.lower() for word in _WINDOW_WORDS):
        return WINDOW
    if status >= 500:
        return RETRY
    return BY_STATUS.get(status, OTHER)


def from_litellm(exc: BaseException, errors: object) -> ProviderError | None:
    """The kind of a litellm exception (``errors`` is ``litellm.exceptions``), or None if not litellm's."""
    e = errors
    table: list[tuple[tuple[type, ...], str]] = [
        ((e.AuthenticationError, e.PermissionDeniedError), AUTH),  # type: ignore[attr-defined]
        ((e.NotFoundError,), NOT_FOUND),  # type: ignore[attr-defined]
        ((e.ContextWindowExceededError,), WINDOW),  # type: ignore[attr-defined]
        ((e.RateLimitError, e.Timeout, e.APIConnectionError, e.InternalServerError,  # type: ignore[attr-defined]
          e.ServiceUnavailableError, e.BadGatewayError, e.MidStreamFallbackError), RETRY),  # type: ignore[attr-defined]
        ((e.APIError, e.BadRequestError), OTHER),  # type: ignore[attr-defined]
    ]
    for classes, kind in table:
        if isinstance(exc, classes):
            if kind == RETRY and "Missing credentials" in str(exc):  # litellm files this under server errors
                kind = NO_KEY
            return ProviderError(kind, str(exc))
    return None
