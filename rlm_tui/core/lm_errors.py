"""What went wrong with a model request, said once for both LM paths.

The direct OpenAI-compatible client (``fastlm.py``) and the litellm path both
raise ``ProviderError`` with one of a few kinds; ``LMClient`` decides retries
and fatality from the kind alone. So the direct path never needs litellm's
exception classes (importing litellm costs seconds), and the two paths cannot
drift apart in how they treat a 401 or a 429.
"""

from __future__ import annotations

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


class ProviderError(Exception):
    """A failed model request: ``kind`` (above) and the provider's message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


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
