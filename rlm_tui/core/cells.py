"""Code cells in an RLM's kernel: bootstrap, context loading, one cell with its limits and output,
and a kernel's revival when it dies or ignores an interrupt."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import events as ev
from . import prompts
from .backends import Kernel, KernelBackend, KernelDied, expression_value, kernel_source
from .safe_text import strip_ansi
from .config import Limits
from .control import SKIPPED_OUTPUT, CellRefused, Steering, edited_cell_note
from .errors import SetupError
from .redaction import redact
from .rlm_node import Rlm

MAX_KERNEL_DEATHS = 3  # a node stops after this many kernel deaths in a row


@dataclass(frozen=True)
class Before:
    """Where a root is when rlm-tui resume's recorded user cells are asked for: its next cell gets number
    ``next_cell``; before the model call for ``turn`` (else before a model cell), or with the model's cell
    numbered just before it ``waiting`` at its step gate."""

    next_cell: int
    turn: int | None = None
    waiting: bool = False


#: rlm-tui resume: where the latest question's root is -> the code of the user's recorded cells due there,
#: in their recorded order.
RecordedCells = Callable[[Before], list[str]]

class Cells:
    def __init__(self, backend: KernelBackend, emit: Callable[..., Any], steering: Steering, limits: Limits,
                 secret: str, secrets: list[str], run_dir: Path, input_path: Path,
                 recorded: RecordedCells | None = None,
                 answered: Callable[[Rlm, str], None] | None = None) -> None:
        self.backend = backend
        self.emit = emit
        self.steering = steering
        self.limits = limits
        self.secret = secret  # the bridge's: each kernel's hello carries it
        self.secrets = secrets  # redacted from every output
        self.run_dir = run_dir
        self.input_path = input_path
        #: What the user's own cells ran and printed, for the root model's next message (turns.py takes them).
        self.user_notes: list[str] = []
        self.recorded = recorded
        #: Called when a cell of the user's (run now or replayed by resume) sets the answer: the engine ends
        #: the running question with it, as answered by the user.
        self.answered = answered

    async def prepare_kernel(self, kernel: Kernel) -> None:
        """Install the RLM helpers (kernels/bootstrap.py) and connect the kernel to the bridge."""
        cfg = {"connect": self.backend.connect_config(kernel), "secret": self.secret, "kernel": kernel.id,
               "output_chars": self.limits.output_chars, "tmp": str(self.run_dir)}
        code = (kernel_source("loader.py") + "\n" + kernel_source("bootstrap.py")
                + f"\n__rlm_install({cfg!r})\ndel __rlm_install\n")
        await kernel.call(code, "'ok'", timeout=60)

    async def load_context(self, rlm: Rlm) -> dict[str, Any]:
        assert rlm.kernel is not None
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="loading context")
        try:
            spec = await self.backend.context_spec(rlm.kernel, rlm.spec, lambda detail: self.emit(
                ev.KERNEL, rlm.node, rlm.parent, state="loading context", detail=detail))
            info = json.loads(await rlm.kernel.call(f"__rlm_info = __rlm_load({spec!r})", "__rlm_info"))
        except RuntimeError as exc:
            if rlm.parent is None:
                raise SetupError(f"cannot load {self.input_path}: {exc}") from None
            raise
        if rlm.skipped:  # what the host's scan left out (shape.py), with the kernel's own skips
            info["skipped"] = merge_skips(rlm.skipped, info.get("skipped") or {})
        info["description"] = prompts.describe_context(info)
        self.emit(ev.CONTEXT_LOADED, rlm.node, rlm.parent, info=info)
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="idle")
        return info

    async def run(self, rlm: Rlm, code: str) -> tuple[str, dict[str, Any]]:
        """Run one block; returns the output for the model and the kernel's RLM state."""
        await rlm.ready_kernel()
        assert rlm.kernel is not None
        await self.steering.checkpoint(rlm.node)
        await self.replay_user(rlm, Before(rlm.cells + 1))
        rlm.cells += 1
        cell = rlm.cells
        step = await self.steering.cell_gate(rlm.node, rlm.parent, cell, code)
        if step.action == "skip":
            return SKIPPED_OUTPUT, {}
        await self.replay_user(rlm, Before(rlm.cells + 1, waiting=True))  # one run while this cell waited
        edited = ""
        if step.code is not None and step.code != code:
            code, edited = step.code, edited_cell_note(step.code)
        async with rlm.busy:  # a user cell started while this one waited at its gate finishes first
            output, state = await self._execute(rlm, cell, code)
        return edited + output, state

    async def run_user(self, rlm: Rlm, code: str) -> None:
        """Run the user's own cell in ``rlm``'s kernel now (no pause or step gate: the user is the one
        waiting); the model is told what ran and what it printed with its next message. An answer the cell
        gives (``answer["ready"] = True``, ``FINAL``) goes to ``answered`` (the next question's first step
        clears ``answer``)."""
        if rlm.busy.locked():
            raise CellRefused("a cell is running in the root's kernel: wait for it, or press esc to interrupt it")
        await self._run_user(rlm, code)

    async def replay_user(self, rlm: Rlm, before: Before) -> None:
        """rlm-tui resume: run the user's recorded cells due ``before`` the root's next cell or model call again,
        so they keep their numbers and their place among the model's cells. One that fails again is recorded
        with its error and the run goes on, as it did when the user ran it."""
        if self.recorded is None or rlm.parent is not None:
            return
        due = self.recorded(before)
        if due:
            await rlm.ready_kernel()
        for code in due:
            await self._run_user(rlm, code)
        if due:  # one that answered the question cancelled this task: the cancel lands here, before the
            await asyncio.sleep(0)  # question goes on (its recording may end at the next model call)

    async def _run_user(self, rlm: Rlm, code: str) -> None:
        async with rlm.busy:
            rlm.cells += 1
            output, state = await self._execute(rlm, rlm.cells, code, by="user")
        self.user_notes.append(prompts.user_cell_note(code, output, rlm.variables))
        if state.get("final") is not None and self.answered is not None:
            self.answered(rlm, state["final"])

    async def _execute(self, rlm: Rlm, cell: int, code: str, by: str | None = None) -> tuple[str, dict[str, Any]]:
        """One cell in the kernel, recorded as events; its output for the model (capped) and the RLM state."""
        assert rlm.kernel is not None
        cap = self.limits.output_chars
        kept: list[str] = []
        total = 0

        def on_output(stream: str, text: str) -> None:
            nonlocal total
            room = cap - total
            total += len(text)
            if room > 0:
                piece = redact(text[:room], self.secrets)  # the model and the UI never see a key
                kept.append(piece)
                self.emit(ev.CELL_OUTPUT, rlm.node, rlm.parent, cell=cell, stream=stream, text=piece)

        self.emit(ev.CELL_STARTED, rlm.node, rlm.parent, cell=cell, code=code, **({"by": by} if by else {}))
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="busy")
        limit, held = self.limits.cell_timeout, self.steering.held(rlm.node)
        self.steering.cell(rlm.node, rlm.kernel, True)
        try:
            # Time spent waiting for the user (a sub-call awaiting approval, a pause) does not count.
            result = await rlm.kernel.execute(
                code, on_output, user_expressions={"state": "__rlm_state()"},
                timeout=None if limit is None else (lambda: limit + self.steering.held(rlm.node) - held))
        finally:
            self.steering.cell(rlm.node, rlm.kernel, False)
        notes: list[str] = []
        if result.status == "died":
            try:
                notes.append(await self._revive(rlm))
            except KernelDied as exc:
                self.emit(ev.CELL_OUTPUT, rlm.node, rlm.parent, cell=cell, stream="error", text=f"[{exc}]\n")
                self.emit(ev.CELL_FINISHED, rlm.node, rlm.parent, cell=cell, status="died",
                          duration_s=round(result.duration_s, 3), output_chars=total, truncated_chars=0)
                raise
        elif result.status == "timeout":
            notes.append(f"[the cell was stopped after {self.limits.cell_timeout:g} s (--cell-timeout)]")
            if result.restarted:
                notes.append(f"[{result.error}; the REPL state was lost and the context reloaded]")
                await self.reload(rlm)
        else:
            rlm.deaths = 0
        for note in notes:  # the transcript shows what the model is told
            self.emit(ev.CELL_OUTPUT, rlm.node, rlm.parent, cell=cell, stream="error", text=note + "\n")
        state = await self._state(rlm, result.user_expressions.get("state"))
        total += int(state.get("dropped") or 0)  # output the kernel counted but never sent
        self.emit(ev.CELL_FINISHED, rlm.node, rlm.parent, cell=cell, status=result.status,
                  duration_s=round(result.duration_s, 3), output_chars=total, truncated_chars=max(0, total - cap))
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="idle")
        rlm.variables = state.get("vars", [])
        output = strip_ansi("".join(kept))
        if total > cap:
            output += f"\n[... {total - cap:,} more characters]"
        return "\n".join([output, *notes]) if notes else output, state

    async def _state(self, rlm: Rlm, expr_result: dict[str, Any] | None) -> dict[str, Any]:
        """The kernel's final-answer state and variables (re-asked when the cell failed)."""
        assert rlm.kernel is not None
        try:
            if expr_result and expr_result.get("status") == "ok":
                return json.loads(expression_value(expr_result))
            return json.loads(await rlm.kernel.call("", "__rlm_state()", timeout=30))
        except (RuntimeError, KernelDied, ValueError, KeyError):
            return {}

    async def _revive(self, rlm: Rlm) -> str:
        """The kernel died mid-cell: restart it with the context reloaded, or give up."""
        rlm.deaths += 1
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="dead")
        if rlm.deaths >= MAX_KERNEL_DEATHS:
            raise KernelDied(f"the kernel died {rlm.deaths} times in a row; stopping this RLM")
        await self.reload(rlm)
        return ("[the kernel died while running this cell; a fresh kernel was started and `context` "
                "reloaded, but your other variables are gone]")

    async def reload(self, rlm: Rlm) -> dict[str, Any]:
        """A fresh kernel in place of ``rlm``'s (dead or stuck) one, the context loaded again; returns its info."""
        assert rlm.kernel is not None
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="restarting")
        await rlm.kernel.restart()
        await self.prepare_kernel(rlm.kernel)
        return await self.load_context(rlm)


def merge_skips(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Skipped files by reason from the host's scan and the kernel's reading, counted together."""
    merged = {reason: {"count": v["count"], "examples": list(v["examples"])} for reason, v in first.items()}
    for reason, v in second.items():
        entry = merged.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += v["count"]
        entry["examples"] = (entry["examples"] + v["examples"])[:5]
    return merged
