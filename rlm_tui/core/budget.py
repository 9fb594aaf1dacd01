"""The run's limits, shared by the whole tree: tokens, dollars, sub-calls; and what stopped the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import events as ev
from .config import Limits
from .lm import LMResult


@dataclass
class Totals:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, model: str, result: LMResult) -> None:
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out
        self.cost_usd += result.cost_usd
        entry = self.per_model.setdefault(model, {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "calls": 0})
        entry["tokens_in"] += result.tokens_in
        entry["tokens_out"] += result.tokens_out
        entry["cost_usd"] += result.cost_usd
        entry["calls"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"total_tokens": self.tokens_in + self.tokens_out, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": round(self.cost_usd, 9), "per_model": self.per_model}


class Budget:
    """Counts what the run used against ``limits``; records each limit reached once."""

    def __init__(self, limits: Limits, emit: Callable[..., Any]) -> None:
        self.limits = limits
        self.emit = emit
        self.totals = Totals()
        self.subcalls = 0
        self.stopped_by: str | None = None
        self.details: dict[str, str] = {}  # each limit reached: what it said (a stopped question's reason)
        self._said: set[str] = set()

    def limit(self, name: str, detail: str, node: str | None = None) -> None:
        """Record a limit once per run; the first one reached is what stopped the run."""
        if name in self._said:
            return
        self._said.add(name)
        self.details[name] = detail
        if name != "max_subcalls" and self.stopped_by is None:
            self.stopped_by = name
        self.emit(ev.LIMIT_REACHED, node, limit=name, detail=detail)

    def new_question(self, per_question: tuple[str, ...]) -> None:
        """A follow-up starts: the limits that stopped one question may stop the next one afresh."""
        self._said.difference_update(per_question)
        if self.stopped_by in per_question:
            self.stopped_by = None

    def exhausted(self) -> str | None:
        """The name of a run-wide limit that forbids more model calls, if any."""
        limits = self.limits
        tokens = self.totals.tokens_in + self.totals.tokens_out
        if limits.max_tokens is not None and tokens >= limits.max_tokens:
            self.limit("max_tokens", f"{tokens:,} tokens used (limit {limits.max_tokens:,})")
            return "max_tokens"
        if limits.budget is not None and self.totals.cost_usd >= limits.budget:
            self.limit("budget", f"${self.totals.cost_usd:.4f} spent (budget ${limits.budget:.2f})")
            return "budget"
        return None

    def reserve(self, wanted: int) -> int:
        """Grant up to ``wanted`` sub-calls under --max-subcalls."""
        granted = max(0, min(wanted, self.limits.max_subcalls - self.subcalls))
        self.subcalls += granted
        if granted < wanted:
            self.limit("max_subcalls", f"{self.limits.max_subcalls} sub-calls allowed in this run")
        return granted

    def refusal(self) -> str:
        reason = self.exhausted() or "max_subcalls"
        return f"Error: limit reached ({reason}); no more sub-calls in this run"
