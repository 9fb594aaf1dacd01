"""Sub-calls from kernel code (llm_query, rlm_query and their batches): the gate, the caps, the
child RLMs, and batching; each request arrives through the bridge from the kernel that made it."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from . import events as ev
from .bridge import Refused
from .budget import Budget
from .config import Settings
from .control import APPROVED, KILLED_RESULT, Decision, Killed, Steering
from .lm import LMError, LMFatalError
from .model_calls import ModelCalls
from .rlm_node import Rlm, context_preview
from .safe_text import one_line

RESULT_EXCERPT = 2000  # characters of a sub-call's result kept on its node_finished event
MAX_CHILD_RLMS = 4  # child RLMs running at once (each holds a kernel)


class SubCalls:
    """Answers the bridge's requests; ``run_rlm`` runs a child RLM, ``fail_run`` stops the whole run."""

    def __init__(self, settings: Settings, budget: Budget, steering: Steering, calls: ModelCalls,
                 emit: Callable[..., Any], new_id: Callable[[], str],
                 run_rlm: Callable[[Rlm], Awaitable[str | None]], fail_run: Callable[[str], None]) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.budget = budget
        self.steering = steering
        self.calls = calls
        self.emit = emit
        self.new_id = new_id
        self.run_rlm = run_rlm
        self.fail_run = fail_run
        self.owners: dict[str, Rlm] = {}  # kernel id -> the RLM whose code runs in it
        self._child_sems: dict[int, asyncio.Semaphore] = {}  # per depth: a parent never waits on its own permit

    async def handle(self, kernel_id: str, request: dict[str, Any]) -> Any:
        owner = self.owners.get(kernel_id)
        if owner is None:
            return "Error: this kernel is not part of the run"
        op = request.get("op")
        model = request.get("model") or self.settings.effective_sub_model
        if op == "llm":
            return await self._one(owner, owner.node, str(request.get("prompt", "")), None, model, rlm=False)
        if op == "rlm":
            return await self._one(owner, owner.node, str(request.get("prompt", "")), request.get("context"),
                                   model, rlm=True)
        if op in ("llm_batch", "rlm_batch"):
            prompts_ = [str(p) for p in request.get("prompts", [])]
            contexts = request.get("contexts") or [None] * len(prompts_)
            return await self._batch(owner, prompts_, contexts, model, rlm=op == "rlm_batch")
        return f"Error: unknown request {op!r}"

    async def _one(self, owner: Rlm, parent: str, prompt: str, context: dict[str, Any] | None, model: str,
                   rlm: bool, reserved: bool = False, node: str | None = None, decided: Decision | None = None) -> str:
        if (not reserved and self.budget.reserve(1) == 0) or self.budget.exhausted():
            if node is not None and decided is not None and decided.runs:  # approved while the limit was hit
                self.emit(ev.NODE_FINISHED, node, parent, status="limit", result="", error="limit reached")
            if not reserved:  # a lone call raises in the kernel: a loop of them stops at once
                raise Refused(self.budget.refusal().removeprefix("Error: "))
            return self.budget.refusal()
        if self.steering.doomed(parent):
            return KILLED_RESULT
        node = node or self.new_id()
        return await self.steering.track(node, parent, self._sub(owner.depth + 1, node, parent, prompt, context,
                                                                 model, rlm, decided))

    async def _sub(self, depth: int, node: str, parent: str, prompt: str, context: dict[str, Any] | None,
                   model: str, rlm: bool, decided: Decision | None) -> str:
        """One sub-call, once approved: a child RLM, or a plain call (also rlm_query at the depth limit)."""
        child = rlm and depth < self.limits.max_depth
        if decided is None:
            preview = context_preview(context or {"type": "text", "text": prompt}) if child else None
            decided = await self.steering.spawn_gate(node, parent, "rlm" if child else "llm", prompt, model, depth,
                                                     context=preview)
        if not decided.runs:
            return decided.result
        prompt = decided.prompt if decided.prompt is not None else prompt
        model = decided.model or model
        if child:
            # Children at each depth share a cap; one semaphore for all depths would deadlock
            # a chain deeper than the cap (each ancestor holds a permit while its child waits).
            sem = self._child_sems.setdefault(depth, asyncio.Semaphore(min(self.limits.concurrency,
                                                                           MAX_CHILD_RLMS)))
            try:
                await sem.acquire()
            except asyncio.CancelledError:
                if decided is not APPROVED:  # the tree shows it queued: say how it ended
                    self.emit(ev.NODE_FINISHED, node, parent, status="killed", result="", error="stopped while queued")
                raise
            try:
                with self.steering.holding(parent):  # the child's time is not the calling cell's
                    answer = await self.run_rlm(Rlm(node, parent, depth, prompt, model,
                                                    context or {"type": "text", "text": prompt}))
            finally:
                sem.release()
            return answer if answer is not None else "Error: the child RLM stopped without an answer"
        return await self._llm(parent, depth, prompt, model, node)

    async def _llm(self, parent: str, depth: int, prompt: str, model: str, node: str | None = None) -> str:
        node = node or self.new_id()
        self.emit(ev.NODE_STARTED, node, parent, node_kind="llm", depth=depth, model=model, prompt=prompt,
                  label=one_line(prompt))
        status, result, error = "failed", "", ""
        try:
            reply = await self.calls.call(node, parent, model, [{"role": "user", "content": prompt}], [], None,
                                          stream=False)
            status, result = "done", reply.text
            return reply.text
        except LMFatalError as exc:
            error = str(exc)
            self.fail_run(error)
            return f"Error: {error}"
        except LMError as exc:
            error = str(exc)
            return f"Error: {error}"
        except (asyncio.CancelledError, Killed):
            status = "killed"
            raise
        finally:
            self.emit(ev.NODE_FINISHED, node, parent, status=status, result=result[:RESULT_EXCERPT], error=error)

    async def _batch(self, owner: Rlm, prompts_: list[str], contexts: list[Any], model: str, rlm: bool) -> list[str]:
        """Many prompts as one node (approved as one); at most --concurrency run at once, results in order."""
        n = len(prompts_)
        if self.steering.doomed(owner.node):
            return [KILLED_RESULT] * n
        granted = self.budget.reserve(n)
        if n and (granted == 0 or self.budget.exhausted()):  # nothing can run: fail loudly, like a lone call
            self.budget.subcalls -= granted
            raise Refused(self.budget.refusal().removeprefix("Error: "))
        node = self.new_id()
        results: list[str | None] = [None] * n
        return await self.steering.track(
            node, owner.node, self._run_batch(node, owner, prompts_, contexts, model, rlm, results, granted),
            killed=lambda: [r if r is not None else KILLED_RESULT for r in results])

    async def _run_batch(self, node: str, owner: Rlm, prompts_: list[str], contexts: list[Any], model: str,
                         rlm: bool, results: list[str | None], granted: int) -> list[str | None]:
        n = len(prompts_)
        depth = owner.depth + 1
        kind = "rlm" if rlm and depth < self.limits.max_depth else "llm"

        def context_of(i: int) -> Any:
            return contexts[i] if i < len(contexts) else None

        previews = [context_preview(context_of(i) or {"type": "text", "text": p})
                    for i, p in enumerate(prompts_)] if kind == "rlm" else None
        decision = await self.steering.spawn_gate(node, owner.node, kind, prompts_[0] if prompts_ else "", model,
                                                  depth, context=previews, prompts=prompts_)
        if not decision.runs:
            results[:] = [decision.result] * n
            return results
        if decision.action == "edit":
            prompts_ = decision.prompts if decision.prompts is not None else prompts_
            model = decision.model or model
        self.emit(ev.NODE_STARTED, node, owner.node, node_kind="batch", depth=depth, model=model, n=n, item_kind=kind,
                  prompt=prompts_[0] if prompts_ else "", label=f"{'rlm' if rlm else 'llm'}_query_batched × {n}")
        status = "done"
        try:
            if granted < n:
                results[granted:] = [self.budget.refusal()] * (n - granted)
            nodes: list[str | None] = [None] * n
            decided: list[Decision | None] = [APPROVED] * n  # approved with the batch
            if decision.action == "open":  # the user decides prompt by prompt
                nodes[:granted] = [self.new_id() for _ in range(granted)]
                ask = not decision.replayed  # replayed by resume: each as recorded, or else by the policy
                decided[:granted] = await asyncio.gather(*(
                    self.steering.spawn_gate(nodes[i], node, kind, prompts_[i], model, depth, force=ask,
                                             context=previews[i] if previews else None)
                    for i in range(granted)))
            order = iter(range(granted))

            async def worker() -> None:
                for i in order:
                    results[i] = await self._one(owner, node, prompts_[i], context_of(i), model, rlm, reserved=True,
                                                 node=nodes[i], decided=decided[i])

            await asyncio.gather(*(worker() for _ in range(min(granted, self.limits.concurrency))))
        except asyncio.CancelledError:
            status = "killed"
            raise
        finally:
            failed = sum(1 for r in results if r is None or r.startswith("Error:"))
            self.emit(ev.NODE_FINISHED, node, owner.node, status=status,
                      result=f"{n - failed} of {n} answered", error=f"{failed} failed" if failed else "")
        return results
