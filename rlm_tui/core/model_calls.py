"""Model calls for the tree: one event pair per call, streamed text coalesced, usage counted,
at most --concurrency in flight, and recorded replies (rlm-tui resume) served first."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from . import events as ev
from .budget import Budget
from .control import Steering
from .lm import LMClient, LMResult, LMWindowError

REFITS = 3  # a request refused as over the window is compacted and sent again at most this often
CHUNK_INTERVAL = 0.05  # seconds: streamed text is coalesced into events at most this often

#: (node, parent, model, turn, messages) -> the recorded reply, or None to ask the live model; raises
#: ``RecordingEnded`` where a question replayed whole stops because its recording stops.
Recorded = Callable[[str, str | None, str, int | None, list[dict[str, str]]], LMResult | None]


class RecordingEnded(Exception):
    """rlm-tui resume: a recorded question replayed whole has no more recorded turns, so it ends here the
    way it ended when recorded (a timeout, a kill, an error...) instead of asking the live model to go on
    with an old question: that would spend money and change the kernel before the question that is meant
    to run live. ``status`` and ``stopped_by`` are its root's recorded ``node_finished`` fields. A child RLM
    replayed while the recording replays ends the same way (its caller gets the recorded error)."""

    def __init__(self, status: str, stopped_by: str, error: str) -> None:
        super().__init__(error)
        self.status = status  # limit | killed | failed
        self.stopped_by = stopped_by  # timeout, max_iterations, killed, kernel_deaths, error...
        self.error = error

    @property
    def question_error(self) -> str | None:
        """The question's own error, as the engine records a failed question (a limit or a kill has none)."""
        return self.error if self.status == "failed" else None


class ModelCalls:
    def __init__(self, lm: LMClient, steering: Steering, budget: Budget, emit: Callable[..., Any],
                 concurrency: int) -> None:
        self.lm = lm
        self.steering = steering
        self.budget = budget
        self.emit = emit
        self.recorded: Recorded | None = None
        self._sem = asyncio.Semaphore(concurrency)

    async def call(self, node: str, parent: str | None, model: str, messages: list[dict[str, str]],
                   added: list[dict[str, str]], turn: int | None, stream: bool,
                   refit: Callable[[LMWindowError], bool] | None = None) -> LMResult:
        """One model call. ``refit(error)``, when given, may shorten ``messages`` in place after the server
        refused them as over its window (True: send them again at once, as the same call)."""
        await self.steering.checkpoint(node)
        # Asked before the call is recorded as started: a recording that ends here ends its question now.
        recorded = self.recorded(node, parent, model, turn, messages) if self.recorded is not None else None
        self.emit(ev.LM_STARTED, node, parent, turn=turn, model=model, messages=added)
        buffer: list[str] = []
        last = time.perf_counter()

        def flush() -> None:
            nonlocal last
            if buffer:
                self.emit(ev.LM_CHUNK, node, parent, text="".join(buffer))
                buffer.clear()
            last = time.perf_counter()

        def on_text(text: str) -> None:
            buffer.append(text)
            if time.perf_counter() - last >= CHUNK_INTERVAL:
                flush()

        def on_retry(attempt: int, error: str, wait: float) -> None:
            buffer.clear()
            self.emit(ev.LM_RETRY, node, parent, attempt=attempt, error=error, wait_s=round(wait, 2))

        if recorded is not None:
            if stream:
                on_text(recorded.text)
            result = recorded
        else:
            async with self._sem:
                result = await self._complete(model, messages, on_text if stream else None, on_retry, refit)
        flush()
        self.budget.totals.add(model, result)
        self.emit(ev.LM_FINISHED, node, parent, model=model, text=result.text, tokens_in=result.tokens_in,
                  tokens_out=result.tokens_out, cost_usd=result.cost_usd, cost_known=result.cost_known,
                  latency_s=round(result.latency_s, 4), **({"replayed": True} if recorded is not None else {}))
        return result

    async def _complete(self, model: str, messages: list[dict[str, str]], on_text: Callable[[str], None] | None,
                        on_retry: Callable[[int, str, float], None], refit: Callable[[LMWindowError], bool] | None,
                        ) -> LMResult:
        for _ in range(REFITS):
            try:
                return await self.lm.complete(model, messages, on_text, on_retry=on_retry)
            except LMWindowError as exc:
                if refit is None or not refit(exc):
                    raise
        return await self.lm.complete(model, messages, on_text, on_retry=on_retry)
