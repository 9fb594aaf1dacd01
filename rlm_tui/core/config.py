"""Run settings: models, limits and where to record. Shared by CLI, UI and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Limits:
    """Caps shared by the whole tree (one budget, one sub-call count)."""

    max_depth: int = 1  # RLM levels; 1 = only the root is an RLM (the paper's setting)
    max_iterations: int = 30  # root-model turns per RLM
    max_subcalls: int = 1000  # llm/rlm sub-calls over the whole run
    concurrency: int = 32  # sub-calls in flight at once
    max_tokens: int | None = 5_000_000  # tokens in+out over the whole run
    budget: float | None = 10.0  # US dollars over the whole run (models with a known price)
    timeout: float | None = 3600.0  # wall seconds for the whole run
    cell_timeout: float | None = 300.0  # seconds one code cell may run
    output_chars: int = 20_000  # a cell's output fed back to the model is cut to this
    max_file_bytes: int = 10_000_000  # larger files in a directory are skipped (and reported)
    max_context_bytes: int = 512_000_000  # the input is cut here (and the cut reported)


@dataclass
class Settings:
    """Everything a run needs besides the question and the context."""

    model: str = "openai/gpt-5-mini"
    sub_model: str | None = None  # llm_query and child RLMs; None = the root model
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    session_path: Path | None = None  # None = a new file in the sessions folder
    overwrite_session: bool = False  # replace an existing session_path (else the run refuses to start)
    approve: str = "auto"  # spawn policy: auto | ask | rlm | deny (see control.py)
    step: str = "off"  # step mode: off | turn (before each root model call) | cell (before each cell) | all
    lm_timeout: float = 600.0  # seconds for one LM request
    stream_idle: float = 30.0  # seconds a streamed reply may go silent once it has begun (a stalled stream)
    lm_retries: int = 4  # retries on rate limits, 5xx, timeouts and broken streams
    lm_backoff: float = 1.0  # seconds before the first retry; doubles each time

    @property
    def effective_sub_model(self) -> str:
        return self.sub_model or self.model

    def public(self) -> dict[str, Any]:
        """Settings as recorded in the session file: never the API key."""
        data = asdict(self)
        data.pop("api_key", None)
        data["sub_model"] = self.effective_sub_model
        data["session_path"] = str(self.session_path) if self.session_path else None
        data["api_key_set"] = bool(self.api_key)
        return data
