"""One RLM's turn loop: ask the model, run its code blocks, feed the output back, until an answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from . import events as ev
from . import prompts
from .budget import Budget
from .cells import Before, Cells
from .compaction import Compaction
from .config import Limits
from .control import Steering
from .model_calls import ModelCalls
from .parsing import parse_reply
from .rlm_node import Rlm


class TurnLoop:
    def __init__(self, calls: ModelCalls, cells: Cells, steering: Steering, budget: Budget, limits: Limits,
                 emit: Callable[..., Any], compaction: Compaction) -> None:
        self.calls = calls
        self.cells = cells
        self.steering = steering
        self.budget = budget
        self.limits = limits
        self.emit = emit
        self.compaction = compaction

    async def run(self, rlm: Rlm, info: dict[str, Any]) -> str | None:
        """Turns until a final answer; None when a limit stopped it first."""
        first = rlm.intro or prompts.first_message(rlm.question, info, rlm.depth + 1, self.limits.max_depth)
        messages = [{"role": "system", "content": prompts.SYSTEM_PROMPT}, {"role": "user", "content": first}]
        sent = 0  # messages already recorded on an lm_started event
        code_ran = bool(rlm.intro)  # a follow-up's context was looked at by the questions before it
        for turn in range(1, self.limits.max_iterations + 1):
            if self.budget.exhausted():
                return None
            if rlm.parent is None:
                await self.steering.step_gate(rlm.node, rlm.parent, turn)
                await self._user_cells(rlm, messages, turn)
            started = time.perf_counter()
            self.emit(ev.TURN_STARTED, rlm.node, rlm.parent, turn=turn)
            reply = await unless_failed(self._ask(rlm, messages, sent, turn), rlm.ready)
            messages.append({"role": "assistant", "content": reply.text})
            sent = len(messages)
            parsed = parse_reply(reply.text)
            outputs: list[str] = []
            notes: list[str] = []
            final: tuple[str, str] | None = None
            ran_before = code_ran
            for code in parsed.code_blocks:
                output, state = await self.cells.run(rlm, code)
                self.steering.check(rlm.node)
                outputs.append(output)
                code_ran = True
                if state.get("final") is not None:
                    final = (state["final"], state["source"])
                    break
            if final is None and parsed.final_var:
                final = await self._final_var(rlm, parsed.final_var, notes) if code_ran else None
                if final is None and not code_ran:
                    notes.append(prompts.EARLY_FINAL_NOTE)
            if final is None and parsed.final is not None:
                if not ran_before:
                    notes.append(prompts.EARLY_FINAL_NOTE)
                elif parsed.final.strip():
                    final = (parsed.final, "FINAL")
                else:
                    notes.append("FINAL() was empty: put the answer inside the parentheses.")
            self.emit(ev.TURN_FINISHED, rlm.node, rlm.parent, turn=turn,
                      duration_s=round(time.perf_counter() - started, 3))
            if final is not None:
                self.emit(ev.FINAL_ANSWER, rlm.node, rlm.parent, answer=final[0], source=final[1])
                return final[0]
            if rlm.load_note and rlm.ready is not None and rlm.ready.done():
                notes.append(rlm.load_note)
                rlm.load_note = ""
            if parsed.unterminated:
                notes.append(prompts.UNTERMINATED_NOTE)
            elif not parsed.code_blocks and not notes:
                notes.append(prompts.NO_CODE_NOTE)
            messages.append({"role": "user", "content": prompts.feedback(outputs, rlm.variables, notes)})
        return await self._last_chance(rlm, messages, sent)

    async def _user_cells(self, rlm: Rlm, messages: list[dict[str, str]], turn: int) -> None:
        """What the user's own cells ran and printed goes into the model's next message (the last, not yet
        sent, user message). Taken after a pause ends and any user cell finishes, so none is a turn late."""
        await self.steering.checkpoint(rlm.node)
        await self.cells.replay_user(rlm, Before(rlm.cells + 1, turn))
        async with rlm.busy:
            pass
        if self.cells.user_notes:
            notes, self.cells.user_notes = self.cells.user_notes, []
            messages[-1] = {**messages[-1], "content": "\n\n".join([messages[-1]["content"], *notes])}

    async def _last_chance(self, rlm: Rlm, messages: list[dict[str, str]], sent: int) -> str | None:
        """Out of turns: ask once for the best final answer."""
        if rlm.parent is None:
            self.budget.limit("max_iterations", f"{self.limits.max_iterations} turns used without a final answer",
                              rlm.node)  # on the question's root: a session may ask several
        if self.budget.exhausted():
            return None
        messages.append({"role": "user", "content": prompts.LAST_CHANCE})
        if rlm.parent is None:
            await self.steering.step_gate(rlm.node, rlm.parent, self.limits.max_iterations + 1)
            await self._user_cells(rlm, messages, self.limits.max_iterations + 1)
        reply = await self._ask(rlm, messages, sent, self.limits.max_iterations + 1)
        parsed = parse_reply(reply.text)
        answer = parsed.final if parsed.final and parsed.final.strip() else reply.text.strip()
        self.emit(ev.FINAL_ANSWER, rlm.node, rlm.parent, answer=answer, source="forced")
        return answer

    async def _ask(self, rlm: Rlm, messages: list[dict[str, str]], sent: int, turn: int) -> Any:
        """The model's reply to ``messages``, older turns compacted (in place) when they would not fit its window."""
        added = messages[sent:]  # recorded as they were made: compaction replaces messages, never edits them
        self.compaction.fit(rlm.node, rlm.parent, rlm.model, messages)
        return await self.calls.call(
            rlm.node, rlm.parent, rlm.model, messages, added, turn, stream=True,
            refit=lambda error: self.compaction.refused(rlm.node, rlm.parent, rlm.model, messages, error))

    async def _final_var(self, rlm: Rlm, name: str, notes: list[str]) -> tuple[str, str] | None:
        if not name.isidentifier():
            notes.append(f"FINAL_VAR({name}): give the name of a variable, not an expression "
                         "(assign it first, or answer with FINAL(...)).")
            return None
        try:
            value = await (await rlm.ready_kernel()).call("", f"str({name})")
        except (RuntimeError, ValueError, SyntaxError):
            notes.append(f"FINAL_VAR({name}): there is no such variable in the REPL. Define it first.")
            return None
        return value, "FINAL_VAR"


async def unless_failed(work: Any, guard: "asyncio.Future[Any] | None") -> Any:
    """Await ``work``, unless ``guard`` (a kernel still starting) fails first: then its error, at once."""
    if guard is None or guard.done():
        return await work
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, guard}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not task.done() and guard.done() and not guard.cancelled() and guard.exception() is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        guard.result()  # raises the kernel's error
    return await task
