"""Steering a running engine: approval gates, step gates, pause, kill, interrupt.

The engine asks this object before it spawns a sub-call (``spawn_gate``),
before each root model call and each code cell in step mode (``step_gate``,
``cell_gate``) and at every checkpoint (``checkpoint``: pause and kill). The
UI, a test or any other caller steers with the public commands below.

Thread safety: every public command may be called from any thread (the UI runs
the engine in its own thread and asyncio loop). A command is posted to the
engine's loop and returns a ``concurrent.futures.Future`` that resolves to
``True`` when it applied and ``False`` when there was nothing to apply it to
(an unknown or already decided gate, a node that is not running, the run is
over). ``waiting`` and ``pending()`` may be read from any thread.

What kernel code gets (all plain strings, like every other sub-call error):
a denied call returns ``"Error: denied by user"`` (``": <reason>"`` appended
when one was given) or ``"Error: denied by policy (--approve deny)"``; a killed
call returns ``"Error: killed by user"``. In a batch each slot gets its own
string. The run continues in every case.

Every question and answer is an event, so it lands in the session file:
``spawn_requested``/``spawn_decided``, ``step_waiting``/``step_decided`` and
``steering`` (pause, resume, step mode, policy, always, kill, interrupt), each
decision with who made it (``user``, ``policy``, or ``run`` when a question was
dropped because its caller stopped) and when (``at``, UTC wall clock, plus the
event's ``t``). Spawns of a kind the policy lets through silently (``auto``,
or "always" chosen by the user, which is itself recorded) have no decision
events: the policy in ``run_started`` is their record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as _dt
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator

from . import events as ev
from .safe_text import one_line

POLICIES = ("ask", "rlm", "auto", "deny")
STEP_MODES = ("off", "turn", "cell", "all")
KINDS = ("llm", "rlm")

#: What each policy does with each kind of spawn: auto (runs), ask (waits for the user), deny.
RULES: dict[str, dict[str, str]] = {
    "auto": {"llm": "auto", "rlm": "auto"},
    "ask": {"llm": "ask", "rlm": "ask"},
    "rlm": {"llm": "auto", "rlm": "ask"},
    "deny": {"llm": "deny", "rlm": "deny"},
}

KILLED_RESULT = "Error: killed by user"
POLICY_DENIED = "Error: denied by policy (--approve deny)"
SKIPPED_OUTPUT = "[this code block did not run: the user skipped it]"
KILL_GRACE = 3.0  # seconds an interrupted cell gets to stop before its node's task is cancelled


class Killed(Exception):
    """Raised inside a node the user killed, at its next checkpoint."""


class CellRefused(Exception):
    """A user cell cannot run now; the message says why in one line (a cell runs, no live kernel)."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def edited_cell_note(code: str) -> str:
    """Prefixed to an edited cell's output, so the model knows what actually ran."""
    return f"[the user edited this code block before it ran; it ran as:\n```repl\n{code}\n```]\n"


@dataclass
class Decision:
    """The answer to a gate.

    Spawn gates: approve | edit | deny | open (a batch: decide per prompt) | kill.
    Step gates: run | edit | skip | kill.
    """

    action: str
    by: str = "user"
    prompt: str | None = None
    model: str | None = None
    prompts: list[str] | None = None
    code: str | None = None
    reason: str = ""
    replayed: bool = False  # rlm-tui resume: the user's recorded decision, applied again without asking

    @property
    def runs(self) -> bool:
        return self.action in ("approve", "edit", "open", "run")

    @property
    def result(self) -> str:
        """What the kernel code gets for a spawn that does not run."""
        if self.action == "kill":
            return KILLED_RESULT
        if self.by == "policy":
            return POLICY_DENIED
        return "Error: denied by user" + (f": {self.reason}" if self.reason else "")


APPROVED = Decision("approve", by="policy")
RUN = Decision("run", by="policy")


@dataclass
class Gate:
    """A question waiting for the user: a spawn to approve, or a step to take."""

    id: str
    kind: str  # spawn | turn | cell
    node: str
    parent: str | None
    item_kind: str = ""  # spawn: llm | rlm (for a batch, the kind of its prompts)
    batch: bool = False
    prompt: str = ""
    model: str = ""
    prompts: list[str] | None = None
    context: Any = None
    code: str = ""
    turn: int | None = None
    cell: int | None = None
    asked: float = 0.0  # perf_counter when asked
    future: asyncio.Future[Decision] | None = field(default=None, repr=False)
    chain: list[str] = field(default_factory=list, repr=False)  # RLM ancestors held while this waits

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "node": self.node, "parent": self.parent,
                "item_kind": self.item_kind, "batch": self.batch, "prompt": self.prompt, "model": self.model,
                "prompts": list(self.prompts) if self.prompts is not None else None, "context": self.context,
                "code": self.code, "turn": self.turn, "cell": self.cell}


#: rlm-tui resume: the user's recorded decision at this gate, applied again without asking while the recording
#: replays (a sub-call the user denied is denied again, a cell they skipped is skipped, a step they took is taken),
#: or None: the gate works as usual. May raise ``RecordingEnded`` (a question replayed whole whose root was
#: killed at this gate ends here).
RecordedDecisions = Callable[[Gate], Decision | None]


@dataclass
class _Live:
    """A running node: its task, its parent, and (an RLM in a cell) its kernel."""

    parent: str | None
    task: asyncio.Future[Any]
    kernel: Any = None
    in_cell: bool = False


class Steering:
    """The approval/step/kill interface between a running engine and its user."""

    def __init__(self, policy: str = "auto", step: str = "off") -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown approval policy {policy!r} (choose from {', '.join(POLICIES)})")
        if step not in STEP_MODES:
            raise ValueError(f"unknown step mode {step!r} (choose from {', '.join(STEP_MODES)})")
        self.policy = policy
        self.rules = dict(RULES[policy])
        self.step_turns = step in ("turn", "all")
        self.step_cells = step in ("cell", "all")
        self.paused = False
        self.killed: set[str] = set()
        self.root: str | None = None
        self._emit: Callable[..., Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._gates: dict[str, Gate] = {}
        self._live: dict[str, _Live] = {}
        self._resumed: asyncio.Event | None = None
        self._holds: dict[str, list[float]] = {}  # node -> [open gates, since, total seconds]
        self._pause_total = 0.0
        self._paused_since = 0.0
        self._closed = False
        self._ids = itertools.count(1)
        self._user_cell: Callable[[str], Awaitable[Any]] | None = None
        self.recorded: RecordedDecisions | None = None

    # ---- state anyone may read --------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Questions waiting for the user (spawns to approve and steps to take)."""
        return len(self._gates)

    def pending(self) -> list[dict[str, Any]]:
        """The waiting questions, oldest first (copies; safe from any thread)."""
        with self._lock:
            return [gate.snapshot() for gate in self._gates.values()]

    def is_killed(self, node: str) -> bool:
        return node in self.killed

    # ---- commands (any thread) ----------------------------------------------------------------

    def approve(self, gate: str) -> concurrent.futures.Future[bool]:
        """Let one waiting spawn run as asked (a whole batch), or take one step."""
        return self._post(self._decide, gate, None)

    def approve_all(self) -> concurrent.futures.Future[bool]:
        """Approve every spawn waiting now (not steps)."""
        return self._post(self._approve_all)

    def always(self, kind: str) -> concurrent.futures.Future[bool]:
        """Approve ``kind`` (llm | rlm, or the kind of a waiting gate's id) for the rest of the run."""
        return self._post(self._always, kind)

    def edit(self, gate: str, *, prompt: str | None = None, model: str | None = None,
             prompts: list[str] | None = None, code: str | None = None) -> concurrent.futures.Future[bool]:
        """Run a spawn with an edited prompt/model (a batch: ``prompts``, same length), or an edited cell."""
        return self._post(self._decide, gate, Decision("edit", prompt=prompt, model=model,
                                                       prompts=list(prompts) if prompts is not None else None,
                                                       code=code))

    def deny(self, gate: str, reason: str = "") -> concurrent.futures.Future[bool]:
        """Refuse a spawn (the code gets an error string with the reason), or skip a cell."""
        return self._post(self._decide, gate, Decision("deny", reason=reason.strip()))

    def open_batch(self, gate: str) -> concurrent.futures.Future[bool]:
        """Decide a waiting batch prompt by prompt: each becomes its own waiting spawn."""
        return self._post(self._decide, gate, Decision("open"))

    def step(self, gate: str | None = None) -> concurrent.futures.Future[bool]:
        """Take one step: let the given (or the oldest) waiting turn/cell go ahead unchanged."""
        return self._post(self._step, gate)

    def set_step(self, mode: str) -> concurrent.futures.Future[bool]:
        """Step mode off | turn | cell | all; switching a kind off lets its waiting steps go."""
        if mode not in STEP_MODES:
            raise ValueError(f"unknown step mode {mode!r}")
        return self._post(self._set_step, mode)

    def set_policy(self, policy: str) -> concurrent.futures.Future[bool]:
        """Change the approval policy; waiting spawns follow the new rules (ask leaves them waiting)."""
        if policy not in POLICIES:
            raise ValueError(f"unknown approval policy {policy!r}")
        return self._post(self._set_policy, policy)

    def pause(self) -> concurrent.futures.Future[bool]:
        """Hold the whole run: nothing new starts (model calls, cells, spawns); running work finishes."""
        return self._post(self._pause, True)

    def resume(self) -> concurrent.futures.Future[bool]:
        return self._post(self._pause, False)

    def toggle_pause(self) -> concurrent.futures.Future[bool]:
        return self._post(lambda: self._pause(not self.paused))

    def kill(self, node: str) -> concurrent.futures.Future[bool]:
        """Stop a node and its whole subtree; its caller gets ``"Error: killed by user"``. The root ends the run."""
        return self._post(self._kill, node)

    def interrupt(self, node: str | None = None) -> concurrent.futures.Future[bool]:
        """Interrupt the cell running in ``node`` (default: the root); the model sees the KeyboardInterrupt."""
        return self._post(self._interrupt, node)

    def run_cell(self, code: str) -> concurrent.futures.Future[bool]:
        """Run the user's ``code`` in the root's kernel when no cell runs there (paused, at a step, between
        turns); True once it ran. The future raises ``CellRefused`` with the reason when it cannot run now."""
        return self._post(self._run_cell, code)

    def _post(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[bool]:
        result: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def run() -> None:
            try:
                value = fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                result.set_exception(exc)
                return
            if asyncio.iscoroutine(value):
                task = asyncio.ensure_future(value)
                task.add_done_callback(lambda t: result.set_result(False) if t.cancelled() else
                                       result.set_exception(t.exception()) if t.exception() else
                                       result.set_result(bool(t.result())))
            else:
                result.set_result(bool(value))

        with self._lock:
            loop, closed = self._loop, self._closed
        if closed:
            result.set_result(False)
        elif loop is None:
            # Before the run: settings only (policy, step mode, pause); there is nothing to decide yet.
            value = fn(*args)
            if asyncio.iscoroutine(value):
                value.close()
                value = False
            result.set_result(bool(value))
        else:
            try:
                loop.call_soon_threadsafe(run)
            except RuntimeError:  # the loop is closed: the run is over
                result.set_result(False)
        return result

    # ---- the engine's side (its loop only) --------------------------------------------------

    def bind(self, emit: Callable[..., Any]) -> None:
        """Called by the engine in its loop when the run starts."""
        self._emit = emit
        self._resumed = asyncio.Event()
        if not self.paused:
            self._resumed.set()
        else:
            self._paused_since = time.perf_counter()
            self._record("pause")
        with self._lock:
            self._loop = asyncio.get_running_loop()

    def on_user_cell(self, run: Callable[[str], Awaitable[Any]]) -> None:
        """The engine's way to run a user cell (``Engine.run_user_cell``), called by ``run_cell``."""
        self._user_cell = run

    def close(self) -> None:
        """The run is over: later commands return False."""
        with self._lock:
            self._closed = True
            self._loop = None
        for gate in list(self._gates.values()):
            self._resolve(gate, Decision("kill", by="run", reason="the run stopped"))

    def register(self, node: str, parent: str | None, task: asyncio.Future[Any]) -> None:
        """A node's task (the engine registers the root this way; sub-calls go through ``track``)."""
        if parent is None:
            self.root = node
        self._live[node] = _Live(parent, task)

    async def stop_below(self, node: str) -> None:
        """Cancel every call still under way below ``node`` (a question stopped while its code waited on
        them, in a kernel that lives on): a waiting one is decided "kill" by the run, "its caller stopped"."""
        tasks = [live.task for below, live in list(self._live.items())
                 if below != node and not live.task.done() and self._below(below, node)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def doomed(self, node: str | None) -> bool:
        """True when ``node`` or one of its ancestors was killed: nothing new may start under it."""
        while node is not None:
            if node in self.killed:
                return True
            live = self._live.get(node)
            node = live.parent if live is not None else None
        return False

    async def track(self, node: str, parent: str | None, work: Awaitable[Any],
                    killed: Callable[[], Any] = lambda: KILLED_RESULT) -> Any:
        """Run a sub-call's work as its own task so it can be killed; a kill returns ``killed()``."""
        task = asyncio.ensure_future(work)
        self._live[node] = _Live(parent, task)
        try:
            result = await task
        except (asyncio.CancelledError, Killed):
            current = asyncio.current_task()
            if node in self.killed and (current is None or not current.cancelling()):
                return killed()
            raise
        finally:
            self._live.pop(node, None)
        return killed() if node in self.killed else result

    def cell(self, node: str, kernel: Any, running: bool) -> None:
        """The engine says a cell started/finished in ``node``'s kernel (for kill and interrupt)."""
        live = self._live.get(node)
        if live is not None:
            live.kernel, live.in_cell = kernel, running

    def check(self, node: str) -> None:
        if node in self.killed:
            raise Killed(node)

    async def checkpoint(self, node: str) -> None:
        """Before anything starts: raise Killed for a killed node; wait while the run is paused."""
        if node in self.killed:
            raise Killed(node)
        if self.paused and self._resumed is not None:
            await self._resumed.wait()
            if node in self.killed:
                raise Killed(node)

    def held(self, node: str) -> float:
        """Seconds ``node`` has spent waiting for the user (its descendants' gates, pauses) or on a
        child RLM it started.

        The engine adds this to a cell's timeout, so a cell does not time out
        while a sub-call it made waits for approval, nor while a child RLM (which
        has its own cells and limits) works for it.
        """
        now = time.perf_counter()
        total = self._pause_total + (now - self._paused_since if self.paused else 0.0)
        hold = self._holds.get(node)
        if hold is not None:
            total += hold[2] + (now - hold[1] if hold[0] > 0 else 0.0)
        return total

    @contextlib.contextmanager
    def holding(self, node: str) -> Iterator[None]:
        """``node`` and its RLM ancestors are held (their cell clocks stop) while this block runs."""
        chain = self._chain(node)
        self._hold(chain, +1)
        try:
            yield
        finally:
            self._hold(chain, -1)

    async def spawn_gate(self, node: str, parent: str | None, kind: str, prompt: str, model: str, depth: int,
                         context: Any = None, prompts: list[str] | None = None, force: bool = False) -> Decision:
        """Ask (or apply the policy) before a sub-call runs. ``prompts``: a batch, decided as one."""
        rule = "ask" if force else self.rules.get(kind, "ask")
        if rule == "auto" and self.recorded is None:
            return APPROVED
        batch = prompts is not None
        gate = Gate(node, "spawn", node, parent, item_kind=kind, batch=batch, prompt=prompt, model=model,
                    prompts=prompts, context=context)
        fields: dict[str, Any] = {"node_kind": "batch" if batch else kind, "depth": depth, "model": model,
                                  "prompt": prompt}
        if batch:
            assert prompts is not None
            fields.update(item_kind=kind, n=len(prompts), prompts=prompts,
                          label=f"{kind}_query_batched × {len(prompts)}")
        else:
            fields["label"] = one_line(prompt)
        if context is not None:
            fields["context"] = context
        replayed = self.recorded(gate) if self.recorded is not None else None
        if replayed is not None:
            self._emit_(ev.SPAWN_REQUESTED, node, parent, **fields, waiting=self.waiting + 1)
            self._spawn_decided(gate, replayed, 0.0)
            return replayed
        if rule == "auto":
            return APPROVED
        if rule == "deny":
            self._emit_(ev.SPAWN_REQUESTED, node, parent, **fields, waiting=self.waiting)
            decision = Decision("deny", by="policy", reason="--approve deny")
            self._spawn_decided(gate, decision, 0.0)
            return decision
        return await self._ask(gate, ev.SPAWN_REQUESTED, fields)

    async def step_gate(self, node: str, parent: str | None, turn: int) -> None:
        """In turn-step mode: wait before the root's model call for ``turn``."""
        if not self.step_turns and self.recorded is None:
            return
        gate = Gate(f"{node}/turn{turn}", "turn", node, parent, turn=turn)
        fields = {"what": "turn", "turn": turn}
        decision = self._replayed_step(gate, fields)
        if decision is None:
            if not self.step_turns:
                return
            decision = await self._ask(gate, ev.STEP_WAITING, fields)
        if decision.action == "kill":
            raise Killed(node)

    async def cell_gate(self, node: str, parent: str | None, cell: int, code: str) -> Decision:
        """In cell-step mode: wait before a cell runs; the decision may carry edited code, or skip."""
        if not self.step_cells and self.recorded is None:
            return RUN
        gate = Gate(f"{node}/cell{cell}", "cell", node, parent, cell=cell, code=code)
        fields = {"what": "cell", "cell": cell, "code": code}
        decision = self._replayed_step(gate, fields)
        if decision is None:
            if not self.step_cells:
                return RUN
            decision = await self._ask(gate, ev.STEP_WAITING, fields)
        if decision.action == "kill":
            raise Killed(node)
        return decision

    def _replayed_step(self, gate: Gate, fields: dict[str, Any]) -> Decision | None:
        """rlm-tui resume: the user's recorded decision at this step gate, applied again without asking (it
        was the user's answer to this very turn or cell). Recorded as that gate was, the decision marked
        ``replayed``, so the new session shows the cell skipped or edited as the recorded one does."""
        decision = self.recorded(gate) if self.recorded is not None else None
        if decision is not None:
            self._emit_(ev.STEP_WAITING, gate.node, gate.parent, gate=gate.id, **fields, waiting=self.waiting + 1)
            self._emit_(ev.STEP_DECIDED, gate.node, gate.parent, **self._step_data(gate, decision, 0.0),
                        waiting=self.waiting)
        return decision

    # ---- internals (the engine's loop) ------------------------------------------------------

    def _emit_(self, kind: str, node: str | None, parent: str | None = None, **data: Any) -> None:
        if self._emit is not None:
            self._emit(kind, node, parent, **data)

    def _record(self, action: str, node: str | None = None, **data: Any) -> None:
        self._emit_(ev.STEERING, node, None, action=action, by="user", at=now_iso(), **data)

    async def _ask(self, gate: Gate, kind: str, fields: dict[str, Any]) -> Decision:
        if self._closed:  # the run is over: nobody is left to answer
            return Decision("kill", by="run", reason="the run stopped")
        gate.future = asyncio.get_running_loop().create_future()
        gate.asked = time.perf_counter()
        gate.chain = self._chain(gate.parent if gate.kind == "spawn" else self._parent(gate.node))
        self._hold(gate.chain, +1)
        with self._lock:
            self._gates[gate.id] = gate
        if gate.kind == "spawn":
            self._emit_(kind, gate.node, gate.parent, **fields, waiting=self.waiting)
        else:
            self._emit_(kind, gate.node, gate.parent, gate=gate.id, **fields, waiting=self.waiting)
        try:
            decision = await gate.future
        except asyncio.CancelledError:
            decision = Decision("kill", by="user" if self.doomed(gate.node) else "run",
                                reason="killed by user" if self.doomed(gate.node) else "its caller stopped")
            self._settle(gate, decision)
            raise
        return decision

    def _settle(self, gate: Gate, decision: Decision) -> None:
        """Record a decision and forget the gate (once)."""
        with self._lock:
            if self._gates.get(gate.id) is not gate:
                return
            del self._gates[gate.id]
        self._hold(gate.chain, -1)
        waited = time.perf_counter() - gate.asked
        if gate.kind == "spawn":
            self._spawn_decided(gate, decision, waited)
        else:
            self._emit_(ev.STEP_DECIDED, gate.node, gate.parent, **self._step_data(gate, decision, waited),
                        waiting=self.waiting)

    def _step_data(self, gate: Gate, decision: Decision, waited: float) -> dict[str, Any]:
        """A step decision's fields for ``step_decided``."""
        data: dict[str, Any] = {"gate": gate.id, "what": gate.kind, "decision": decision.action,
                                "by": decision.by, "at": now_iso(), "waited_s": round(waited, 3)}
        if gate.kind == "cell":
            data["code"] = decision.code if decision.action == "edit" else gate.code
            if decision.action == "edit":
                data["original_code"] = gate.code
        if decision.reason:
            data["reason"] = decision.reason
        if decision.replayed:
            data["replayed"] = True
        return data

    def _spawn_decided(self, gate: Gate, decision: Decision, waited: float) -> None:
        data: dict[str, Any] = {"decision": decision.action, "by": decision.by, "at": now_iso(),
                                "waited_s": round(waited, 3),
                                "prompt": decision.prompt if decision.prompt is not None else gate.prompt,
                                "model": decision.model or gate.model}
        if decision.prompt is not None and decision.prompt != gate.prompt:
            data["original_prompt"] = gate.prompt
        if decision.model and decision.model != gate.model:
            data["original_model"] = gate.model
        if decision.prompts is not None:
            data["prompts"] = decision.prompts
            data["original_prompts"] = gate.prompts
            data["prompt"] = decision.prompts[0] if decision.prompts else gate.prompt
        if decision.reason:
            data["reason"] = decision.reason
        if decision.replayed:
            data["replayed"] = True
        self._emit_(ev.SPAWN_DECIDED, gate.node, gate.parent, **data, waiting=self.waiting)
        if not decision.runs:
            self._emit_(ev.NODE_FINISHED, gate.node, gate.parent,
                        status="killed" if decision.action == "kill" else "denied", result="",
                        error=decision.result.removeprefix("Error: "))

    def _resolve(self, gate: Gate, decision: Decision) -> bool:
        if gate.future is None or gate.future.done():
            return False
        self._settle(gate, decision)
        gate.future.set_result(decision)
        return True

    def _decide(self, gate_id: str, decision: Decision | None) -> bool:
        gate = self._gates.get(gate_id)
        if gate is None:
            return False
        if decision is None:
            decision = Decision("approve" if gate.kind == "spawn" else "run")
        elif gate.kind != "spawn":
            # Step gates: edit = run this code instead, deny = skip the cell (a turn cannot be skipped).
            if decision.action == "edit":
                if gate.kind != "cell" or decision.code is None:
                    return False
            elif decision.action == "deny":
                if gate.kind != "cell":
                    return False
                decision = Decision("skip", reason=decision.reason)
            elif decision.action != "run":
                return False
        elif decision.action == "open" and not gate.batch:
            return False
        elif decision.action == "edit":
            if decision.code is not None:
                return False
            if gate.batch:
                if decision.prompt is not None or (decision.prompts is not None
                                                   and len(decision.prompts) != len(gate.prompts or [])):
                    return False
            elif decision.prompts is not None:
                return False
        return self._resolve(gate, decision)

    def _approve_all(self) -> bool:
        gates = [g for g in self._gates.values() if g.kind == "spawn"]
        for gate in gates:
            self._resolve(gate, Decision("approve"))
        return bool(gates)

    def _always(self, kind: str) -> bool:
        gate = self._gates.get(kind)
        if gate is not None:
            kind = gate.item_kind
        if kind not in KINDS:
            return False
        self.rules[kind] = "auto"
        self._record("always", spawn_kind=kind)
        for gate in [g for g in self._gates.values() if g.kind == "spawn" and g.item_kind == kind]:
            self._resolve(gate, Decision("approve"))
        return True

    def _set_policy(self, policy: str) -> bool:
        self.policy = policy
        self.rules = dict(RULES[policy])
        if self._emit is not None:
            self._record("policy", policy=policy)
        for gate in [g for g in self._gates.values() if g.kind == "spawn"]:
            rule = self.rules.get(gate.item_kind, "ask")
            if rule == "auto":
                self._resolve(gate, Decision("approve", by="policy"))
            elif rule == "deny":
                self._resolve(gate, Decision("deny", by="policy", reason="--approve deny"))
        return True

    def _set_step(self, mode: str) -> bool:
        self.step_turns = mode in ("turn", "all")
        self.step_cells = mode in ("cell", "all")
        if self._emit is not None:
            self._record("step", mode=mode)
        for gate in list(self._gates.values()):
            if (gate.kind == "turn" and not self.step_turns) or (gate.kind == "cell" and not self.step_cells):
                self._resolve(gate, Decision("run"))
        return True

    def _step(self, gate_id: str | None) -> bool:
        steps = [g for g in self._gates.values() if g.kind != "spawn" and (gate_id is None or g.id == gate_id)]
        return self._resolve(steps[0], Decision("run")) if steps else False

    def _pause(self, paused: bool) -> bool:
        if paused == self.paused:
            return False
        self.paused = paused
        if self._resumed is None:  # before the run: recorded when it starts
            return True
        now = time.perf_counter()
        if paused:
            self._paused_since = now
            self._resumed.clear()
        else:
            self._pause_total += now - self._paused_since
            self._resumed.set()
        self._record("pause" if paused else "resume")
        return True

    async def _kill(self, node: str) -> bool:
        gate_nodes = {g.node for g in self._gates.values()}
        if node not in self._live and node not in gate_nodes:
            return False
        victims = [n for n in list(self._live) + list(gate_nodes) if n == node or self._below(n, node)]
        victims = list(dict.fromkeys(victims))
        self.killed.update(victims)
        self._record("kill", node, nodes=victims)
        for gate in [g for g in self._gates.values() if g.node in self.killed]:
            self._resolve(gate, Decision("kill", reason="killed by user"))
        loop = asyncio.get_running_loop()
        for victim in victims:
            live = self._live.get(victim)
            if live is None or live.task.done():
                continue
            if live.in_cell and live.kernel is not None:
                # Interrupt the cell so the kernel stops cleanly; the node stops at its next
                # checkpoint. If the cell ignores the interrupt, the task is cancelled after a grace.
                task = live.task
                loop.call_later(KILL_GRACE, lambda t=task: t.done() or t.cancel())
                try:
                    await live.kernel.interrupt()
                except Exception:  # noqa: BLE001 - a dead kernel: cancelling is all that is left
                    task.cancel()
            else:
                live.task.cancel()
        return True

    async def _run_cell(self, code: str) -> bool:
        if self._user_cell is None:
            raise CellRefused("there is no live run to run your cell in")
        await self._user_cell(code)
        return True

    async def _interrupt(self, node: str | None) -> bool:
        node = node or self.root
        live = self._live.get(node or "")
        if live is None or not live.in_cell or live.kernel is None:
            return False
        self._record("interrupt", node)
        await live.kernel.interrupt()
        return True

    def _parent(self, node: str) -> str | None:
        live = self._live.get(node)
        return live.parent if live is not None else None

    def _below(self, node: str, ancestor: str) -> bool:
        gate = self._gates.get(node)
        parent = self._parent(node) if node in self._live else gate.parent if gate is not None else None
        while parent is not None:
            if parent == ancestor:
                return True
            parent = self._parent(parent)
        return False

    def _chain(self, node: str | None) -> list[str]:
        chain: list[str] = []
        while node is not None and node in self._live and node not in chain:
            chain.append(node)
            node = self._live[node].parent
        return chain

    def _hold(self, chain: list[str], delta: int) -> None:
        now = time.perf_counter()
        for node in chain:
            hold = self._holds.setdefault(node, [0, 0.0, 0.0])
            if delta > 0 and hold[0] == 0:
                hold[1] = now
            hold[0] += delta
            if delta < 0 and hold[0] == 0:
                hold[2] += now - hold[1]
