"""The RLM loop: root and child RLMs on Jupyter kernels, sub-calls, limits, events.

One ``Engine`` is one run. It emits every happening as an event (to the session
file and to an optional sink: the headless printer or the UI) and never asks
its consumers for anything. Limits are shared by the whole tree.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import events as ev
from . import pricing, prompts, shape
from .config import Settings
from .bridge import Bridge, Refused
from .control import APPROVED, KILLED_RESULT, SKIPPED_OUTPUT, Decision, Killed, Steering, edited_cell_note
from .backends import (Kernel, KernelBackend, KernelDied, KernelPool, expression_value, kernel_source, make_backend,
                       strip_ansi, url_token)
from .lm import LMClient, LMError, LMFatalError, LMResult, litellm_module
from .parsing import parse_reply
from .redaction import known_secrets, redact
from .session import SessionExists, SessionWriter, new_session_path
from .tree import one_line

CHUNK_INTERVAL = 0.05  # seconds: streamed text is coalesced into events at most this often
RESULT_EXCERPT = 2000  # characters of a sub-call's result kept on its node_finished event
MAX_KERNEL_DEATHS = 3  # a node stops after this many kernel deaths in a row
MAX_CHILD_RLMS = 4  # child RLMs running at once (each holds a kernel)


class SetupError(Exception):
    """The run cannot start: bad input or an unusable session path. Exit code 2."""


@dataclass
class RunResult:
    answer: str | None
    stopped_by: str | None
    usage: dict[str, Any]
    calls: int
    session: Path | None
    duration_s: float
    error: str | None = None


@dataclass
class _Rlm:
    """A running RLM (the root or a child): its node, kernel and context."""

    node: str
    parent: str | None
    depth: int
    question: str
    model: str
    spec: dict[str, Any]
    kernel: Kernel | None = None
    ready: "asyncio.Future[dict[str, Any]] | None" = None  # the kernel started and the context loaded
    skipped: dict[str, Any] = field(default_factory=dict)  # what the host's scan left out (root only)
    load_note: str = ""  # told to the model once: the loaded context differs from the scan's estimate
    cells: int = 0
    deaths: int = 0
    variables: list[str] = field(default_factory=list)


@dataclass
class _Totals:
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


class Engine:
    """One run of an RLM over ``path`` (a file or a directory) answering ``question``."""

    def __init__(self, settings: Settings, question: str, path: Path | str,
                 sink: ev.Sink | None = None, steering: Steering | None = None) -> None:
        self.settings = settings
        #: Approve/edit/deny spawns, kill, pause, step: safe to call from any thread (see control.py).
        self.steering = steering or Steering(settings.approve, settings.step)
        self.limits = settings.limits
        self.question = question
        self.path = Path(path)
        self.sink = sink
        self.session_path = settings.session_path or new_session_path()
        self.totals = _Totals()
        self.subcalls = 0
        self.stopped_by: str | None = None
        self.fatal: str | None = None
        self._seq = 0
        self._ids = 0
        self._t0 = time.perf_counter()
        self._limits_said: set[str] = set()
        self._kernel_owner: dict[str, _Rlm] = {}
        self._root_task: asyncio.Task[Any] | None = None
        self._writer: SessionWriter | None = None
        self._tmp: Path | None = None  # the run's private temporary folder (kernel logs): run() makes and removes it
        self.bridge = Bridge(self._handle)
        self.secrets = known_secrets([settings.api_key, self.bridge.secret, settings.jupyter_token,
                                      url_token(settings.jupyter_server)])  # redacted wherever shown
        self.lm = LMClient(api_base=settings.api_base, api_key=settings.api_key, timeout=settings.lm_timeout,
                           idle=settings.stream_idle,
                           retries=settings.lm_retries, backoff=settings.lm_backoff,
                           on_unpriced=self._unpriced)
        self._sem: asyncio.Semaphore | None = None
        self._background: list[asyncio.Future[Any]] = []  # work started ahead of need (litellm's import)
        self._shape: shape.Shape | None = None  # the input's scan (scan_input)
        self._child_sems: dict[int, asyncio.Semaphore] = {}  # per depth: a parent never waits on its own permit
        self.pool: KernelPool | None = None
        self.backend: KernelBackend | None = None  # made in run(), with the run's folder
        # rlm-tui resume: recorded replies handed out before the live model is asked
        # (node, parent, model, turn, messages) -> LMResult or None; and extra run_started fields.
        self.recorded: Callable[[str, str | None, str, int | None, list[dict[str, str]]], LMResult | None] | None = None
        self.run_info: dict[str, Any] = {}

    # ---- events -------------------------------------------------------------------------

    def emit(self, kind: str, node: str | None = None, parent: str | None = None, **data: Any) -> ev.Event:
        self._seq += 1
        event = ev.Event(kind, node, parent, data, self._seq, time.perf_counter() - self._t0)
        if self._writer is not None:
            self._writer.write(event)
            if self._writer.error:
                error, self._writer = self._writer.error, None
                self.emit(ev.WARNING, node, message=error)
        if self.sink is not None:
            self.sink(event)
        return event

    def _new_id(self) -> str:
        node = f"n{self._ids}"
        self._ids += 1
        return node

    def _unpriced(self, model: str) -> None:
        self.emit(ev.WARNING, message=f"no known price for {model}: its calls are counted as $0")

    # ---- the run ------------------------------------------------------------------------

    def scan_input(self) -> shape.Shape:
        """The input's shape from file metadata (once); raises SetupError when there is nothing to read."""
        if self._shape is None:
            if not self.path.exists():
                raise SetupError(f"no such file or directory: {self.path}")
            limits = self.limits
            try:
                self._shape = shape.scan(self.path, limits.max_file_bytes, limits.max_context_bytes)
            except shape.EmptyInput as exc:
                raise SetupError(str(exc)) from None
            except OSError as exc:
                raise SetupError(f"cannot load {self.path}: {exc.strerror or exc}") from None
        return self._shape

    def open_session(self) -> None:
        """Create the session file, once the input is known to be usable (no file for a run that
        cannot start); raises SetupError when either fails."""
        self.scan_input()
        secrets = self.secrets
        where = f"cannot write the session file {self.session_path}"
        try:
            self._writer = SessionWriter(self.session_path, secrets, unique=self.settings.session_path is None,
                                         overwrite=self.settings.overwrite_session)
        except SessionExists as exc:
            raise SetupError(str(exc)) from None
        except (FileExistsError, NotADirectoryError):  # a file where a folder should be
            blocker = next((p for p in self.session_path.parents if p.exists() and not p.is_dir()), None)
            raise SetupError(f"{where}: {blocker or 'a part of the path'} is not a directory") from None
        except OSError as exc:
            raise SetupError(f"{where}: {exc.strerror or exc}") from None
        self.session_path = self._writer.path  # the default name may have had a suffix added
        self._writer.write(self._writer.header())
        if self._writer.error:  # disk full or a device that refuses writes: say so before the run
            error, self._writer = self._writer.error.rsplit(": ", 1)[-1], None
            raise SetupError(f"{where}: {error}")

    async def run(self) -> RunResult:
        """Run to an answer, a limit, or an error; always shuts kernels down."""
        if self._writer is None:
            self.open_session()
        self._t0 = time.perf_counter()
        self._tmp = Path(tempfile.mkdtemp(prefix="rlm-tui-"))  # here: a run refused earlier leaves nothing
        self.backend = make_backend(self.settings, self._tmp, self.path.resolve())
        settings = dict(self.settings.public(), session_path=str(self.session_path))
        self.emit(ev.RUN_STARTED, question=self.question, path=str(self.path), settings=settings,
                  kernel_backend=self.backend.info(), **self.run_info)
        if self.backend.warning:
            self.emit(ev.WARNING, message=self.backend.warning)
        self.steering.bind(self.emit)
        self._sem = asyncio.Semaphore(self.limits.concurrency)
        warm = 0 if self.limits.max_depth <= 1 else min(self.limits.concurrency, 2)
        self.pool = KernelPool(self.backend.new_kernel, self._prepare_kernel, warm)
        answer: str | None = None
        error: str | None = None
        setup_error: SetupError | None = None
        interrupted = False
        try:
            await self.backend.open(self.bridge)
            root = _Rlm(self._new_id(), None, 0, self.question, self.settings.model,
                        {"type": "path", "path": str(self.path.resolve()),
                         "max_file_bytes": self.limits.max_file_bytes,
                         "max_total_bytes": self.limits.max_context_bytes})
            self._root_task = asyncio.ensure_future(self._run_rlm(root))
            self.steering.register(root.node, None, self._root_task)
            try:
                answer = await asyncio.wait_for(asyncio.shield(self._root_task), self.limits.timeout)
            except asyncio.TimeoutError:
                self._limit("timeout", f"the run took longer than {self.limits.timeout:g} s")
                self._root_task.cancel()
                await asyncio.gather(self._root_task, return_exceptions=True)
            except asyncio.CancelledError:
                if self.steering.is_killed(root.node) and not _cancelling():
                    pass  # the user killed the root: a clean stop
                elif self.fatal is None:  # cancelled from outside: Ctrl+C, SIGTERM, the UI quitting
                    interrupted = True
                    self.stopped_by = self.stopped_by or "interrupted"
                    self._root_task.cancel()
                    await asyncio.gather(self._root_task, return_exceptions=True)
        except SetupError as exc:
            setup_error = exc
            error = str(exc)
        except LMError as exc:
            error = str(exc)
        except KernelDied as exc:
            self.stopped_by = self.stopped_by or "kernel_deaths"
            error = str(exc)
        except asyncio.CancelledError:  # cancelled again while the first cancel was being handled
            interrupted = True
            self.stopped_by = self.stopped_by or "interrupted"
        except Exception as exc:  # noqa: BLE001 - reported as the run's error, not a traceback
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.steering.close()
            shutdown = asyncio.ensure_future(self._shutdown())
            while not shutdown.done():  # a second cancel (Ctrl+C twice, two quit paths) must not skip
                try:                    # the rest: kernels down, then run_finished recorded
                    await asyncio.shield(shutdown)
                except asyncio.CancelledError:
                    interrupted = True
                    self.stopped_by = self.stopped_by or "interrupted"
        if answer is None and self.steering.root is not None and self.steering.is_killed(self.steering.root):
            self.stopped_by = self.stopped_by or "killed"
        error = error or self.fatal
        answer = redact(answer, self.secrets) if answer is not None else None
        error = redact(error, self.secrets) if error is not None else None
        result = RunResult(answer, self.stopped_by, self.totals.as_dict(), self.subcalls, self.session_path,
                           time.perf_counter() - self._t0, error)
        self.emit(ev.RUN_FINISHED, answer=answer, stopped_by=self.stopped_by, usage=result.usage,
                  calls=self.subcalls, duration_s=round(result.duration_s, 3), error=error)
        if self._writer is not None:
            self._writer.close()
        if setup_error is not None:
            raise setup_error
        if interrupted:
            raise asyncio.CancelledError
        return result

    async def _shutdown(self) -> None:
        await self.bridge.close()
        await self.lm.aclose()
        if self.pool is not None:
            await self.pool.close()
        if self.backend is not None:
            await self.backend.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        await asyncio.gather(*self._background, return_exceptions=True)  # a thread cannot be cancelled

    async def _prepare_kernel(self, kernel: Kernel) -> None:
        assert self.backend is not None
        cfg = {"connect": self.backend.connect_config(kernel), "secret": self.bridge.secret, "kernel": kernel.id,
               "output_chars": self.limits.output_chars, "tmp": str(self._tmp)}
        code = kernel_source("loader.py") + "\n" + kernel_source("bootstrap.py") + f"\n__rlm_install({cfg!r})\ndel __rlm_install\n"
        await kernel.call(code, "'ok'", timeout=60)

    # ---- one RLM ------------------------------------------------------------------------

    async def _run_rlm(self, rlm: _Rlm) -> str | None:
        """The loop of one RLM; returns its answer (None when stopped without one)."""
        assert self.pool is not None
        status, answer, error = "failed", None, ""
        self.emit(ev.NODE_STARTED, rlm.node, rlm.parent, node_kind="root" if rlm.parent is None else "rlm",
                  depth=rlm.depth, model=rlm.model, prompt=rlm.question, label=one_line(rlm.question),
                  context=_context_preview(rlm.spec))
        try:
            self.emit(ev.KERNEL, rlm.node, rlm.parent, state="starting")
            if rlm.parent is None:
                info = await self._start_root(rlm)
            else:
                rlm.kernel = await self.pool.acquire()
                self._kernel_owner[rlm.kernel.id] = rlm
                info = await self._load_context(rlm)
                rlm.ready = asyncio.get_running_loop().create_future()
                rlm.ready.set_result(info)
            answer = await self._loop(rlm, info)
            status = "done" if answer is not None else "limit"
            return answer
        except asyncio.CancelledError:
            status = "killed"
            raise
        except Killed:
            status, error = "killed", "killed by user"
            return None
        except (LMError, KernelDied, RuntimeError) as exc:
            error = str(exc)
            if rlm.parent is None:
                raise
            return f"Error: {error}"
        finally:
            if rlm.ready is not None and not rlm.ready.done():  # stopped before its kernel was ready
                rlm.ready.cancel()
                await asyncio.gather(rlm.ready, return_exceptions=True)
            self.emit(ev.NODE_FINISHED, rlm.node, rlm.parent, status=status,
                      result=(answer or "")[:RESULT_EXCERPT], error=error)
            if rlm.kernel is not None:
                self._kernel_owner.pop(rlm.kernel.id, None)
                await asyncio.shield(self.pool.release(rlm.kernel))

    async def _start_root(self, rlm: _Rlm) -> dict[str, Any]:
        """The input's shape from the host's scan; the kernel starts and loads it in ``rlm.ready``.

        The first model request needs only the question and the shape, so it
        goes out while the kernel starts (~1 s) and while litellm is imported
        (seconds), if a model needs it at all.
        """
        # Both litellm and the kernel start reach pygments.lexers; imported here first, it is never
        # seen half-initialised by another thread ("cannot import name 'PythonLexer'").
        import pygments.lexers  # noqa: F401

        if self.lm.needs_litellm(self.settings.model) or self.lm.needs_litellm(self.settings.effective_sub_model):
            self._background.append(asyncio.ensure_future(asyncio.to_thread(litellm_module)))
        found = self.scan_input()  # done before the session file was opened
        await asyncio.to_thread(pricing.preload)  # the first request's window check reads it
        if found.files:
            assert self._tmp is not None
            manifest = self._tmp / "files.json"
            manifest.write_text(json.dumps(found.files), encoding="utf-8")
            rlm.spec["manifest"] = str(manifest)
        rlm.skipped = found.info.get("skipped") or {}
        rlm.ready = asyncio.ensure_future(self._root_kernel(rlm))
        return dict(found.info, description=prompts.describe_context(found.info))

    async def _root_kernel(self, rlm: _Rlm) -> dict[str, Any]:
        """Start the root's kernel and load the context in it (while its first request is out)."""
        assert self.pool is not None
        rlm.kernel = await self.pool.acquire()
        self._kernel_owner[rlm.kernel.id] = rlm
        info = await self._load_context(rlm)
        if info.get("files") == 0:
            raise SetupError(_empty_reason(self.path, info))
        kernel_skips = set(info.get("skipped") or {}) - set(rlm.skipped)
        if kernel_skips:  # binary or unreadable files the scan could not know about
            rlm.load_note = "Note: the context as loaded differs from the first description. " + info["description"]
        return info

    async def _ready(self, rlm: _Rlm) -> Kernel:
        """The RLM's kernel, once its context is loaded."""
        assert rlm.ready is not None
        await rlm.ready
        assert rlm.kernel is not None
        return rlm.kernel

    async def _load_context(self, rlm: _Rlm) -> dict[str, Any]:
        assert rlm.kernel is not None
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="loading context")
        try:
            assert self.backend is not None
            spec = await self.backend.context_spec(rlm.kernel, rlm.spec, lambda detail: self.emit(
                ev.KERNEL, rlm.node, rlm.parent, state="loading context", detail=detail))
            info = json.loads(await rlm.kernel.call(f"__rlm_info = __rlm_load({spec!r})", "__rlm_info"))
        except RuntimeError as exc:
            if rlm.parent is None:
                raise SetupError(f"cannot load {self.path}: {exc}") from None
            raise
        if rlm.skipped:  # what the host's scan left out (shape.py), with the kernel's own skips
            info["skipped"] = _merge_skips(rlm.skipped, info.get("skipped") or {})
        info["description"] = prompts.describe_context(info)
        self.emit(ev.CONTEXT_LOADED, rlm.node, rlm.parent, info=info)
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="idle")
        return info

    async def _loop(self, rlm: _Rlm, info: dict[str, Any]) -> str | None:
        messages = [{"role": "system", "content": prompts.SYSTEM_PROMPT},
                    {"role": "user", "content": prompts.first_message(rlm.question, info, rlm.depth + 1,
                                                                      self.limits.max_depth)}]
        sent = 0  # messages already recorded on an lm_started event
        code_ran = False
        for turn in range(1, self.limits.max_iterations + 1):
            if self._exhausted():
                return None
            if rlm.parent is None:
                await self.steering.step_gate(rlm.node, rlm.parent, turn)
            started = time.perf_counter()
            self.emit(ev.TURN_STARTED, rlm.node, rlm.parent, turn=turn)
            reply = await _unless_failed(
                self._lm_call(rlm.node, rlm.parent, rlm.model, messages, messages[sent:], turn, stream=True), rlm.ready)
            messages.append({"role": "assistant", "content": reply.text})
            sent = len(messages)
            parsed = parse_reply(reply.text)
            outputs: list[str] = []
            notes: list[str] = []
            final: tuple[str, str] | None = None
            ran_before = code_ran
            for code in parsed.code_blocks:
                output, state = await self._run_cell(rlm, code)
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

    async def _last_chance(self, rlm: _Rlm, messages: list[dict[str, str]], sent: int) -> str | None:
        """Out of turns: ask once for the best final answer."""
        if rlm.parent is None:
            self._limit("max_iterations", f"{self.limits.max_iterations} turns used without a final answer")
        if self._exhausted():
            return None
        messages.append({"role": "user", "content": prompts.LAST_CHANCE})
        if rlm.parent is None:
            await self.steering.step_gate(rlm.node, rlm.parent, self.limits.max_iterations + 1)
        reply = await self._lm_call(rlm.node, rlm.parent, rlm.model, messages, messages[sent:],
                                    self.limits.max_iterations + 1, stream=True)
        parsed = parse_reply(reply.text)
        answer = parsed.final if parsed.final and parsed.final.strip() else reply.text.strip()
        self.emit(ev.FINAL_ANSWER, rlm.node, rlm.parent, answer=answer, source="forced")
        return answer

    async def _final_var(self, rlm: _Rlm, name: str, notes: list[str]) -> tuple[str, str] | None:
        if not name.isidentifier():
            notes.append(f"FINAL_VAR({name}): give the name of a variable, not an expression "
                         "(assign it first, or answer with FINAL(...)).")
            return None
        try:
            value = await (await self._ready(rlm)).call("", f"str({name})")
        except (RuntimeError, ValueError, SyntaxError):
            notes.append(f"FINAL_VAR({name}): there is no such variable in the REPL. Define it first.")
            return None
        return value, "FINAL_VAR"

    # ---- cells --------------------------------------------------------------------------

    async def _run_cell(self, rlm: _Rlm, code: str) -> tuple[str, dict[str, Any]]:
        """Run one block; returns the output for the model and the kernel's RLM state."""
        await self._ready(rlm)
        assert rlm.kernel is not None
        rlm.cells += 1
        cell = rlm.cells
        await self.steering.checkpoint(rlm.node)
        step = await self.steering.cell_gate(rlm.node, rlm.parent, cell, code)
        if step.action == "skip":
            return SKIPPED_OUTPUT, {}
        edited = ""
        if step.code is not None and step.code != code:
            code, edited = step.code, edited_cell_note(step.code)
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

        self.emit(ev.CELL_STARTED, rlm.node, rlm.parent, cell=cell, code=code)
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
                await self._reload(rlm)
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
        output = edited + strip_ansi("".join(kept))
        if total > cap:
            output += f"\n[... {total - cap:,} more characters]"
        return "\n".join([output, *notes]) if notes else output, state

    async def _state(self, rlm: _Rlm, expr_result: dict[str, Any] | None) -> dict[str, Any]:
        """The kernel's final-answer state and variables (re-asked when the cell failed)."""
        assert rlm.kernel is not None
        try:
            if expr_result and expr_result.get("status") == "ok":
                return json.loads(expression_value(expr_result))
            return json.loads(await rlm.kernel.call("", "__rlm_state()", timeout=30))
        except (RuntimeError, KernelDied, ValueError, KeyError):
            return {}

    async def _revive(self, rlm: _Rlm) -> str:
        """The kernel died mid-cell: restart it with the context reloaded, or give up."""
        rlm.deaths += 1
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="dead")
        if rlm.deaths >= MAX_KERNEL_DEATHS:
            raise KernelDied(f"the kernel died {rlm.deaths} times in a row; stopping this RLM")
        await self._reload(rlm)
        return ("[the kernel died while running this cell; a fresh kernel was started and `context` "
                "reloaded, but your other variables are gone]")

    async def _reload(self, rlm: _Rlm) -> None:
        assert rlm.kernel is not None
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="restarting")
        await rlm.kernel.restart()
        await self._prepare_kernel(rlm.kernel)
        await self._load_context(rlm)

    # ---- LM calls -----------------------------------------------------------------------

    async def _lm_call(self, node: str, parent: str | None, model: str, messages: list[dict[str, str]],
                       added: list[dict[str, str]], turn: int | None, stream: bool) -> LMResult:
        await self.steering.checkpoint(node)
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

        assert self._sem is not None
        recorded = self.recorded(node, parent, model, turn, messages) if self.recorded is not None else None
        if recorded is not None:
            if stream:
                on_text(recorded.text)
            result = recorded
        else:
            async with self._sem:
                result = await self.lm.complete(model, messages, on_text if stream else None, on_retry=on_retry)
        flush()
        self.totals.add(model, result)
        self.emit(ev.LM_FINISHED, node, parent, model=model, text=result.text, tokens_in=result.tokens_in,
                  tokens_out=result.tokens_out, cost_usd=result.cost_usd, cost_known=result.cost_known,
                  latency_s=round(result.latency_s, 4), **({"replayed": True} if recorded is not None else {}))
        return result

    # ---- limits -------------------------------------------------------------------------

    def _limit(self, name: str, detail: str, node: str | None = None) -> None:
        """Record a limit once per run; the first one reached is what stopped the run."""
        if name in self._limits_said:
            return
        self._limits_said.add(name)
        if name != "max_subcalls" and self.stopped_by is None:
            self.stopped_by = name
        self.emit(ev.LIMIT_REACHED, node, limit=name, detail=detail)

    def _exhausted(self) -> str | None:
        """The name of a run-wide limit that forbids more model calls, if any."""
        limits = self.limits
        tokens = self.totals.tokens_in + self.totals.tokens_out
        if limits.max_tokens is not None and tokens >= limits.max_tokens:
            self._limit("max_tokens", f"{tokens:,} tokens used (limit {limits.max_tokens:,})")
            return "max_tokens"
        if limits.budget is not None and self.totals.cost_usd >= limits.budget:
            self._limit("budget", f"${self.totals.cost_usd:.4f} spent (budget ${limits.budget:.2f})")
            return "budget"
        return None

    def _reserve(self, wanted: int) -> int:
        """Grant up to ``wanted`` sub-calls under --max-subcalls."""
        granted = max(0, min(wanted, self.limits.max_subcalls - self.subcalls))
        self.subcalls += granted
        if granted < wanted:
            self._limit("max_subcalls", f"{self.limits.max_subcalls} sub-calls allowed in this run")
        return granted

    def _refusal(self) -> str:
        reason = self._exhausted() or "max_subcalls"
        return f"Error: limit reached ({reason}); no more sub-calls in this run"

    # ---- sub-calls from kernel code -----------------------------------------------------

    async def _handle(self, kernel_id: str, request: dict[str, Any]) -> Any:
        owner = self._kernel_owner.get(kernel_id)
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

    async def _one(self, owner: _Rlm, parent: str, prompt: str, context: dict[str, Any] | None, model: str,
                   rlm: bool, reserved: bool = False, node: str | None = None, decided: Decision | None = None) -> str:
        if (not reserved and self._reserve(1) == 0) or self._exhausted():
            if node is not None and decided is not None and decided.runs:  # approved while the limit was hit
                self.emit(ev.NODE_FINISHED, node, parent, status="limit", result="", error="limit reached")
            if not reserved:  # a lone call raises in the kernel: a loop of them stops at once
                raise Refused(self._refusal().removeprefix("Error: "))
            return self._refusal()
        if self.steering.doomed(parent):
            return KILLED_RESULT
        node = node or self._new_id()
        return await self.steering.track(node, parent, self._sub(owner.depth + 1, node, parent, prompt, context,
                                                                 model, rlm, decided))

    async def _sub(self, depth: int, node: str, parent: str, prompt: str, context: dict[str, Any] | None,
                   model: str, rlm: bool, decided: Decision | None) -> str:
        """One sub-call, once approved: a child RLM, or a plain call (also rlm_query at the depth limit)."""
        child = rlm and depth < self.limits.max_depth
        if decided is None:
            preview = _context_preview(context or {"type": "text", "text": prompt}) if child else None
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
                    answer = await self._run_rlm(_Rlm(node, parent, depth, prompt, model,
                                                      context or {"type": "text", "text": prompt}))
            finally:
                sem.release()
            return answer if answer is not None else "Error: the child RLM stopped without an answer"
        return await self._llm(parent, depth, prompt, model, node)

    async def _llm(self, parent: str, depth: int, prompt: str, model: str, node: str | None = None) -> str:
        node = node or self._new_id()
        self.emit(ev.NODE_STARTED, node, parent, node_kind="llm", depth=depth, model=model, prompt=prompt,
                  label=one_line(prompt))
        status, result, error = "failed", "", ""
        try:
            reply = await self._lm_call(node, parent, model, [{"role": "user", "content": prompt}], [], None,
                                        stream=False)
            status, result = "done", reply.text
            return reply.text
        except LMFatalError as exc:
            error = str(exc)
            self._fail_run(error)
            return f"Error: {error}"
        except LMError as exc:
            error = str(exc)
            return f"Error: {error}"
        except (asyncio.CancelledError, Killed):
            status = "killed"
            raise
        finally:
            self.emit(ev.NODE_FINISHED, node, parent, status=status, result=result[:RESULT_EXCERPT], error=error)

    async def _batch(self, owner: _Rlm, prompts_: list[str], contexts: list[Any], model: str, rlm: bool) -> list[str]:
        """Many prompts as one node (approved as one); at most --concurrency run at once, results in order."""
        n = len(prompts_)
        if self.steering.doomed(owner.node):
            return [KILLED_RESULT] * n
        granted = self._reserve(n)
        if n and (granted == 0 or self._exhausted()):  # nothing can run: fail loudly, like a lone call
            self.subcalls -= granted
            raise Refused(self._refusal().removeprefix("Error: "))
        node = self._new_id()
        results: list[str | None] = [None] * n
        return await self.steering.track(
            node, owner.node, self._run_batch(node, owner, prompts_, contexts, model, rlm, results, granted),
            killed=lambda: [r if r is not None else KILLED_RESULT for r in results])

    async def _run_batch(self, node: str, owner: _Rlm, prompts_: list[str], contexts: list[Any], model: str,
                         rlm: bool, results: list[str | None], granted: int) -> list[str | None]:
        n = len(prompts_)
        depth = owner.depth + 1
        kind = "rlm" if rlm and depth < self.limits.max_depth else "llm"

        def context_of(i: int) -> Any:
            return contexts[i] if i < len(contexts) else None

        previews = [_context_preview(context_of(i) or {"type": "text", "text": p})
                    for i, p in enumerate(prompts_)] if kind == "rlm" else None
        decision = await self.steering.spawn_gate(node, owner.node, kind, prompts_[0] if prompts_ else "", model,
                                                  depth, context=previews, prompts=prompts_)
        if not decision.runs:
            results[:] = [decision.result] * n
            return results
        if decision.action == "edit":
            prompts_ = decision.prompts if decision.prompts is not None else prompts_
            model = decision.model or model
        self.emit(ev.NODE_STARTED, node, owner.node, node_kind="batch", depth=depth, model=model, n=n,
                  prompt=prompts_[0] if prompts_ else "", label=f"{'rlm' if rlm else 'llm'}_query_batched × {n}")
        status = "done"
        try:
            if granted < n:
                results[granted:] = [self._refusal()] * (n - granted)
            nodes: list[str | None] = [None] * n
            decided: list[Decision | None] = [APPROVED] * n  # approved with the batch
            if decision.action == "open":  # the user decides prompt by prompt
                nodes[:granted] = [self._new_id() for _ in range(granted)]
                decided[:granted] = await asyncio.gather(*(
                    self.steering.spawn_gate(nodes[i], node, kind, prompts_[i], model, depth, force=True,
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

    def _fail_run(self, error: str) -> None:
        """A fatal error in a sub-call (bad credentials) stops the whole run."""
        if self.fatal is None:
            self.fatal = error
            if self._root_task is not None:
                self._root_task.cancel()


def _context_preview(spec: dict[str, Any]) -> dict[str, Any]:
    """What a spawn's context looks like, for the tree and the approval prompt."""
    if spec.get("type") == "text":
        return {"type": "str", "chars": len(spec["text"]), "preview": spec["text"][:300]}
    if spec.get("type") == "pickle":  # a non-str value from kernel code: its summary (kernels/bootstrap.py)
        return {"type": spec.get("pytype", "object"), "items": spec.get("items"), "bytes": spec.get("bytes"),
                "preview": spec.get("preview", "")}
    return {"type": spec.get("type"), "path": spec.get("path")}


async def _unless_failed(work: Any, guard: "asyncio.Future[Any] | None") -> Any:
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


def _cancelling() -> int:
    """How many cancellations of the current task are pending (0: it was not cancelled itself)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _merge_skips(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Skipped files by reason from the host's scan and the kernel's reading, counted together."""
    merged = {reason: {"count": v["count"], "examples": list(v["examples"])} for reason, v in first.items()}
    for reason, v in second.items():
        entry = merged.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += v["count"]
        entry["examples"] = (entry["examples"] + v["examples"])[:5]
    return merged


def _empty_reason(path: Path, info: dict[str, Any]) -> str:
    skipped = info.get("skipped") or {}
    detail = ", ".join(f"{v['count']} {reason}" for reason, v in skipped.items())
    return f"no text files to read in {path}" + (f" (skipped: {detail})" if detail else " (it is empty)")
