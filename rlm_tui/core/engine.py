"""One session of an RLM: the wiring of its parts, its lifecycle, and each RLM's life in the tree.

One ``Engine`` is one session: a first question and, when ``next_question`` is
given, follow-ups asked after each answer, stop or failure (a model that fails
after its retries, a kernel that keeps dying), each a new root node sharing
the first root's kernel (its variables live on; a dead one is restarted first). It emits every happening as an event (``recorder.py``:
to the session file and an optional sink) and never asks its consumers for
anything. The parts, one job each: ``budget.py`` (limits shared by the whole
tree), ``model_calls.py`` (LM calls), ``turns.py`` (an RLM's turn loop),
``cells.py`` (code cells, context loading, kernel revival), ``subcalls.py``
(requests from kernel code), and a kernel backend (``backends/``) chosen by
the settings.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import events as ev
from . import pricing, prompts, shape
from .backends import KernelBackend, KernelDied, KernelPool, make_backend, refusal, url_token
from .bridge import Bridge
from .budget import Budget
from .cells import Cells, RecordedCells
from .compaction import Compaction
from .config import Settings
from .control import KILLED_RESULT, CellRefused, Killed, RecordedDecisions, Steering
from .errors import SetupError
from .lm import LMClient, LMError, LMFatalError, litellm_module
from .model_calls import ModelCalls, Recorded, RecordingEnded
from .recorder import Recorder, SessionUnusable
from .redaction import known_secrets, redact
from .rlm_node import Rlm, context_preview
from .session import new_session_path
from .subcalls import RESULT_EXCERPT, SubCalls
from .safe_text import one_line
from .turns import TurnLoop

__all__ = ["Engine", "NextQuestion", "RunResult", "SetupError"]


@dataclass
class RunResult:
    answer: str | None
    stopped_by: str | None
    usage: dict[str, Any]
    calls: int
    session: Path | None
    duration_s: float
    error: str | None = None


#: Asked after each question ends (its answer, None when stopped): the next question, or None to end the session.
NextQuestion = Callable[[str | None], Awaitable[str | None]]

#: What stops one question, not the session (tokens, budget and sub-calls are the session's).
PER_QUESTION = ("max_iterations", "timeout", "killed", "kernel_deaths")

#: Shown when a follow-up finds the root's kernel dead (told to the model in its first message too).
RESTARTED_NOTE = ("the root's kernel had died: a fresh kernel was started and `context` reloaded; "
                  "the variables made by earlier questions are gone")

#: A question's failures that leave the session open for the next question (a bad key or model does not).
QUESTION_FAILURES = (LMError, KernelDied, RuntimeError)


@dataclass
class Asked:
    """One question of the session and how it ended (told to the model with the next one)."""

    question: str
    answer: str | None
    stopped_by: str | None
    error: str | None = None
    by_user: bool = False  # the user's own cell gave the answer


class Engine:
    """A session of an RLM over ``path`` (a file or a directory): ``question``, then any follow-ups."""

    def __init__(self, settings: Settings, question: str, path: Path | str,
                 sink: ev.Sink | None = None, steering: Steering | None = None,
                 next_question: NextQuestion | None = None) -> None:
        self.settings = settings
        #: Approve/edit/deny spawns, kill, pause, step: safe to call from any thread (see control.py).
        self.steering = steering or Steering(settings.approve, settings.step)
        self.limits = settings.limits
        self.question = question
        self.path = Path(path)
        self.session_path = settings.session_path or new_session_path()
        self.recorder = Recorder(sink)
        self.emit = self.recorder.emit
        self.budget = Budget(self.limits, self.emit)
        self.fatal: str | None = None
        self._ids = 0
        self._root_task: asyncio.Task[Any] | None = None
        self._tmp: Path | None = None  # the run's private folder (kernel logs, sockets): run() makes and removes it
        self.lm = LMClient(api_base=settings.api_base, api_key=settings.api_key, timeout=settings.lm_timeout,
                           idle=settings.stream_idle, max_reply_tokens=settings.max_reply_tokens,
                           retries=settings.lm_retries, backoff=settings.lm_backoff,
                           on_unpriced=self._unpriced)
        self.calls = ModelCalls(self.lm, self.steering, self.budget, self.emit, self.limits.concurrency)
        self.subcalls = SubCalls(settings, self.budget, self.steering, self.calls, self.emit, self._new_id,
                                 self._run_rlm, self._fail_run)
        self.bridge = Bridge(self.subcalls.handle)
        self.secrets = known_secrets([settings.api_key, self.bridge.secret, settings.jupyter_token,
                                      url_token(settings.jupyter_server)])  # redacted wherever shown
        self._background: list[asyncio.Future[Any]] = []  # work started ahead of need (litellm's import)
        self._shape: shape.Shape | None = None  # the input's scan (scan_input)
        self.backend: KernelBackend | None = None  # these three are made in run(), with the run's folder
        self.pool: KernelPool | None = None
        self.cells: Cells | None = None
        self.turns: TurnLoop | None = None
        self.root: Rlm | None = None  # the latest question's root
        self.next_question = next_question
        self.asked: list[Asked] = []  # the questions answered or stopped so far
        #: extra run_started fields (rlm-tui resume says what it resumed from)
        self.run_info: dict[str, Any] = {}
        #: rlm-tui resume: the user's recorded cells, run again in their place among the model's (cells.py)
        self.recorded_cells: RecordedCells | None = None
        #: rlm-tui resume: the user's recorded decisions at gates (steps, sub-calls), applied again while the
        #: recording replays
        self.recorded_decisions: RecordedDecisions | None = None

    @property
    def recorded(self) -> Recorded | None:
        """rlm-tui resume: recorded replies handed out before the live model is asked."""
        return self.calls.recorded

    @recorded.setter
    def recorded(self, value: Recorded | None) -> None:
        self.calls.recorded = value

    def attach_command(self) -> str | None:
        """The command that attaches a console to the root's kernel, while it runs (any thread)."""
        kernel = self.root.kernel if self.root is not None else None
        return kernel.attach_command() if kernel is not None else None

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
        refused = refusal(self.settings)
        if refused is not None:
            raise SetupError(refused)
        try:
            self.session_path = self.recorder.open(self.session_path, self.secrets,
                                                   unique=self.settings.session_path is None,
                                                   overwrite=self.settings.overwrite_session)
        except SessionUnusable as exc:
            raise SetupError(str(exc)) from None

    async def run(self) -> RunResult:
        """Run each question to an answer, a limit, or an error, until no next question comes (or the
        session's tokens or budget are spent, or a bad key or model would fail every question); returns the
        last question's end. Always shuts kernels down."""
        if not self.recorder.is_open:
            self.open_session()
        self.recorder.restart_clock()
        self._tmp = Path(tempfile.mkdtemp(prefix="rlm-tui-"))  # here: a run refused earlier leaves nothing
        self.backend = make_backend(self.settings, self._tmp, self.path.resolve())
        settings = dict(self.settings.public(), session_path=str(self.session_path))
        self.emit(ev.RUN_STARTED, question=self.question, path=str(self.path), settings=settings,
                  kernel_backend=self.backend.info(), **self.run_info)
        if self.backend.warning:
            self.emit(ev.WARNING, message=self.backend.warning)
        self.steering.bind(self.emit)
        self.steering.recorded = self.recorded_decisions
        self.steering.on_user_cell(self.run_user_cell)
        self.cells = Cells(self.backend, self.emit, self.steering, self.limits, self.bridge.secret, self.secrets,
                           self._tmp, self.path, self.recorded_cells, self._answered_by_user)
        self.turns = TurnLoop(self.calls, self.cells, self.steering, self.budget, self.limits, self.emit,
                              Compaction(self.emit, self.settings.context_window, self.settings.max_reply_tokens))
        warm = 0 if self.limits.max_depth <= 1 else min(self.limits.concurrency, 2)
        self.pool = KernelPool(self.backend.new_kernel, self.cells.prepare_kernel, warm)
        answer: str | None = None
        error: str | None = None
        setup_error: SetupError | None = None
        interrupted = False
        try:
            await self.backend.open(self.bridge)
            question: str | None = self.question
            while question is not None:
                asked, interrupted = await self._question(question)
                answer, error = asked.answer, asked.error  # the session reports its last question's end
                # A question that failed or was stopped leaves the session open; quitting, a bad key or model,
                # or the session's own tokens or budget spent end it.
                if (interrupted or self.fatal is not None or self.next_question is None
                        or self.budget.exhausted()):
                    break
                try:
                    question = await self.next_question(answer)
                except asyncio.CancelledError:
                    break  # quitting while no question runs is how a session ends: not an interruption
        except SetupError as exc:
            setup_error = exc
            error = str(exc)
        except asyncio.CancelledError:  # cancelled again while the first cancel was being handled
            interrupted = True
            self.budget.stopped_by = self.budget.stopped_by or "interrupted"
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
                    self.budget.stopped_by = self.budget.stopped_by or "interrupted"
        error = error or self.fatal
        answer = redact(answer, self.secrets) if answer is not None else None
        error = redact(error, self.secrets) if error is not None else None
        budget = self.budget
        result = RunResult(answer, budget.stopped_by, budget.totals.as_dict(), budget.subcalls, self.session_path,
                           time.perf_counter() - self.recorder.t0, error)
        self.emit(ev.RUN_FINISHED, answer=answer, stopped_by=budget.stopped_by, usage=result.usage,
                  calls=budget.subcalls, duration_s=round(result.duration_s, 3), error=error,
                  questions=[asked.question for asked in self.asked], outcomes=[self._outcome(a) for a in self.asked])
        self.recorder.close()
        if setup_error is not None:
            raise setup_error
        if interrupted:
            raise asyncio.CancelledError
        return result

    async def run_user_cell(self, code: str) -> None:
        """Run the user's own ``code`` in the root's kernel, as the latest root node's next cell; raises
        ``CellRefused`` (one line, why) unless that kernel is alive and idle. The engine's loop only:
        other threads go through ``steering.run_cell``."""
        root = self.root
        if root is None or self.cells is None or root.ready is None:
            raise CellRefused("the root's kernel has not started yet")
        if not root.ready.done():
            raise CellRefused("the root's kernel is still starting: try again in a moment")
        if root.ready.cancelled() or root.ready.exception() is not None or root.kernel is None:
            raise CellRefused("the root has no live kernel (the run is over)")
        await self.cells.run_user(root, code)

    def _answered_by_user(self, root: Rlm, answer: str) -> None:
        """The user's cell set ``answer`` ready (or called FINAL): it answers the running question, which ends
        at once as answered by the user. Between questions there is nothing to answer: a note says so."""
        task = self._root_task
        if root is not self.root or task is None or task.done() or root.stop is not None:
            self.emit(ev.WARNING, root.node, root.parent,
                      message="your cell set an answer, but no question is running: it answers nothing "
                              "(ask a question with /)")
            return
        root.stop = ("user", answer)
        task.cancel()

    def _outcome(self, asked: Asked) -> dict[str, str | None]:
        """How one question ended, for run_finished (what ``sessions`` lists), secrets redacted."""
        def clean(text: str | None) -> str | None:
            return redact(text, self.secrets) if text is not None else None
        return {"answer": clean(asked.answer), "stopped_by": asked.stopped_by, "error": clean(asked.error)}

    async def _question(self, question: str) -> tuple[Asked, bool]:
        """One question as its own root node, under the per-question --timeout; returns how it ended (its
        answer, or what stopped it, or its error) and whether the session was cancelled from outside."""
        index = len(self.asked) + 1
        if index > 1:
            self.budget.new_question(PER_QUESTION)
        self.emit(ev.QUESTION_ASKED, question=question, index=index)
        spec = {"type": "path", "path": str(self.path.resolve()), "max_file_bytes": self.limits.max_file_bytes,
                "max_total_bytes": self.limits.max_context_bytes}
        earlier = self.root
        if earlier is not None and earlier.ready is not None and not earlier.ready.done():
            await asyncio.wait({earlier.ready})  # the kernel a question that failed early left loading
        self.root = root = Rlm(self._new_id(), None, 0, question, self.settings.model, spec)
        if earlier is not None and _loaded(earlier.ready):  # a follow-up: the kernel and its variables live on
            root.spec, root.kernel, root.ready, root.skipped = earlier.spec, earlier.kernel, earlier.ready, earlier.skipped
        elif earlier is not None and earlier.kernel is not None:  # its kernel failed to load: start afresh
            kernel, earlier.kernel = earlier.kernel, None
            self.subcalls.owners.pop(kernel.id, None)
            assert self.pool is not None
            await self.pool.release(kernel)
        self._root_task = asyncio.ensure_future(self._run_rlm(root))
        self.steering.register(root.node, None, self._root_task)
        answer: str | None = None
        error: str | None = None
        interrupted = False
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a stop (Ctrl+C, a signal, the app
            # quitting) that comes in the step the root answers, and the session would go on.
            async with asyncio.timeout(self.limits.timeout):
                answer = await asyncio.shield(self._root_task)
        except TimeoutError:
            root.stop = ("timeout", f"the question took longer than {self.limits.timeout:g} s")
            self.budget.limit("timeout", root.stop[1], root.node)  # on the question it stopped
            self._root_task.cancel()
            await asyncio.gather(self._root_task, return_exceptions=True)
        except asyncio.CancelledError:
            if root.stop is not None and root.stop[0] == "user" and not _cancelling():
                answer = root.stop[1]  # the user's own cell answered it
            elif self.steering.is_killed(root.node) and not _cancelling():
                pass  # the user killed the root: a clean stop
            elif self.fatal is None:  # cancelled from outside: Ctrl+C, SIGTERM, the UI quitting
                interrupted = True
                self.budget.stopped_by = self.budget.stopped_by or "interrupted"
                self._root_task.cancel()
                await asyncio.gather(self._root_task, return_exceptions=True)
        except RecordingEnded as end:  # rlm-tui resume: a question replayed whole ended as recorded
            error = end.question_error
        except QUESTION_FAILURES as exc:  # the question failed; the session goes on (run() decides)
            error = str(exc)
            if isinstance(exc, KernelDied):
                self.budget.stopped_by = self.budget.stopped_by or "kernel_deaths"
            elif isinstance(exc, LMFatalError):
                self.fatal = self.fatal or error  # a bad key or an unknown model fails every question alike
        if answer is None and self.steering.is_killed(root.node):
            self.budget.stopped_by = self.budget.stopped_by or "killed"
        by_user = answer is not None and root.stop is not None and root.stop[0] == "user"
        asked = Asked(question, answer, self.budget.stopped_by, error, by_user)
        self.asked.append(asked)
        return asked, interrupted

    async def _stop_question(self, root: Rlm) -> None:
        """A question stopped (limit, kill, error) in the kernel that lives on for the next one: interrupt
        a cell it may have left running, and drop the sub-calls its code was waiting on."""
        assert root.kernel is not None
        try:
            await root.kernel.interrupt()  # an idle kernel ignores it
        except Exception:  # noqa: BLE001 - a dead kernel has no cell left running
            pass
        await self.steering.stop_below(root.node)

    async def _follow_up_intro(self, rlm: Rlm, info: dict[str, Any], restarted: bool) -> str:
        """The first message of a follow-up: earlier questions and answers (or why there was none), the
        context's shape, the variables, and whether the REPL was restarted. Clears the kernel's ``answer``
        (an earlier question may have set it ready)."""
        kernel = await rlm.ready_kernel()
        try:
            state = json.loads(await kernel.call('answer = {"content": "", "ready": False}', "__rlm_state()",
                                                 timeout=30))
            rlm.variables = state.get("vars", [])
        except (RuntimeError, ValueError, KernelDied):
            rlm.variables = []
        earlier = [(a.question, a.answer, f"an error ({one_line(a.error)[:300]})" if a.error else a.stopped_by,
                    a.by_user) for a in self.asked]
        return prompts.follow_up_message(rlm.question, earlier, prompts.describe_context(info), rlm.variables,
                                         restarted)

    async def _shutdown(self) -> None:
        if self.root is not None:
            self.root.kernel = None  # the session is over: no user cell, no attach from here on
            if self.root.ready is not None and not self.root.ready.done():  # a question failed while it loaded
                self.root.ready.cancel()
                await asyncio.gather(self.root.ready, return_exceptions=True)
        await self.bridge.close()
        await self.lm.aclose()
        if self.pool is not None:
            await self.pool.close()
        if self.backend is not None:
            await self.backend.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        await asyncio.gather(*self._background, return_exceptions=True)  # a thread cannot be cancelled

    # ---- one RLM ------------------------------------------------------------------------

    async def _run_rlm(self, rlm: Rlm) -> str | None:
        """The loop of one RLM; returns its answer (None when stopped without one)."""
        assert self.pool is not None and self.cells is not None and self.turns is not None
        status, answer, error, failure = "failed", None, "", "error"
        recorded: RecordingEnded | None = None  # rlm-tui resume: the question ends as its recording does
        self.emit(ev.NODE_STARTED, rlm.node, rlm.parent, node_kind="root" if rlm.parent is None else "rlm",
                  depth=rlm.depth, model=rlm.model, prompt=rlm.question, label=one_line(rlm.question),
                  context=context_preview(rlm.spec))
        try:
            if rlm.parent is None and rlm.ready is not None:  # a follow-up in the shared kernel
                assert rlm.kernel is not None
                self.subcalls.owners[rlm.kernel.id] = rlm  # its sub-calls are this question's
                restarted = await self._revive_root(rlm)
                if not restarted:
                    self.emit(ev.KERNEL, rlm.node, rlm.parent, state="idle")
                info = dict(rlm.ready.result())
                rlm.intro = await self._follow_up_intro(rlm, info, restarted)
            elif rlm.parent is None:
                self.emit(ev.KERNEL, rlm.node, rlm.parent, state="starting")
                info = await self._start_root(rlm)
            else:
                self.emit(ev.KERNEL, rlm.node, rlm.parent, state="starting")
                rlm.kernel = await self.pool.acquire()
                self.subcalls.owners[rlm.kernel.id] = rlm
                info = await self.cells.load_context(rlm)
                rlm.ready = asyncio.get_running_loop().create_future()
                rlm.ready.set_result(info)
            answer = await self.turns.run(rlm, info)
            status = "done" if answer is not None else "limit"
            return answer
        except asyncio.CancelledError:
            status = "killed"
            if rlm.stop is not None and rlm.stop[0] == "user":  # the user's own cell answered (see run_user_cell)
                status, answer = "done", rlm.stop[1]
                self.emit(ev.FINAL_ANSWER, rlm.node, rlm.parent, answer=answer, source="user")
            elif rlm.stop is not None:  # a limit of the question (its --timeout)
                status, error = "limit", f"{rlm.stop[0]}: {rlm.stop[1]}"
            raise
        except Killed:
            status, error = "killed", "killed by user"
            return None
        except RecordingEnded as end:
            recorded, status, error = end, end.status, end.error
            if rlm.parent is not None:  # a child RLM replayed: its caller's code gets what it got when recorded
                if status == "killed":  # recorded as cancelled (no error) or as Killed: the caller got this
                    error = KILLED_RESULT.removeprefix("Error: ")
                return f"Error: {error}"
            self._ended_as_recorded(rlm, end)
            raise
        except (LMError, KernelDied, RuntimeError) as exc:
            error = str(exc)
            failure = "kernel_deaths" if isinstance(exc, KernelDied) else "error"
            if rlm.parent is None:
                raise
            return f"Error: {error}"
        finally:
            if rlm.ready is not None and not rlm.ready.done() and (rlm.parent is not None or self.next_question is None):
                rlm.ready.cancel()  # stopped before its kernel was ready (a session's root kernel loads on: the
                await asyncio.gather(rlm.ready, return_exceptions=True)  # next question uses it)
            if rlm.parent is None and status != "done" and _loaded(rlm.ready) and rlm.kernel is not None:
                await asyncio.shield(self._stop_question(rlm))
            ended: dict[str, Any] = {}
            if rlm.parent is None and status != "done":  # why the question has no answer, for the session file
                ended["stopped_by"] = recorded.stopped_by if recorded else self._stopped_by(rlm, status, failure)
                if status == "limit" and not error:
                    error = f"{ended['stopped_by']}: {self.budget.details.get(ended['stopped_by'], '')}"
            self.emit(ev.NODE_FINISHED, rlm.node, rlm.parent, status=status,
                      result=(answer or "")[:RESULT_EXCERPT], error=error, **ended)
            if rlm.kernel is not None and rlm.parent is not None:  # the root's kernel lives until the session ends
                kernel, rlm.kernel = rlm.kernel, None  # gone for user cells and attach from here on
                self.subcalls.owners.pop(kernel.id, None)
                await asyncio.shield(self.pool.release(kernel))

    def _ended_as_recorded(self, rlm: Rlm, end: RecordingEnded) -> None:
        """The session's state after a question replayed whole stopped as recorded: a limit is reached again
        (``limit_reached`` on its root), a kill or the kernel's deaths is what stopped it; an error is the
        question's own (``_question`` takes it)."""
        if end.status == "limit":
            self.budget.limit(end.stopped_by, end.error.removeprefix(f"{end.stopped_by}: "), rlm.node)
        elif end.status == "killed" or end.stopped_by == "kernel_deaths":
            self.budget.stopped_by = self.budget.stopped_by or end.stopped_by

    def _stopped_by(self, rlm: Rlm, status: str, failure: str) -> str:
        """What ended a question without an answer: a limit's name, ``killed``, ``kernel_deaths`` or ``error``."""
        if status == "limit":
            return rlm.stop[0] if rlm.stop is not None else self.budget.stopped_by or "limit"
        return "killed" if status == "killed" else failure

    async def _revive_root(self, rlm: Rlm) -> bool:
        """Before a follow-up: a root kernel that died (in an earlier question, or between questions) is
        restarted and ``context`` reloaded; True when it was (the earlier questions' variables are gone)."""
        assert rlm.kernel is not None and self.cells is not None
        try:
            alive = await rlm.kernel.is_alive()
        except Exception:  # noqa: BLE001 - a kernel that cannot say is treated as dead
            alive = False
        if alive:
            return False
        self.emit(ev.KERNEL, rlm.node, rlm.parent, state="dead")
        self.emit(ev.WARNING, rlm.node, rlm.parent, message=RESTARTED_NOTE)
        info = await self.cells.reload(rlm)
        rlm.ready = asyncio.get_running_loop().create_future()
        rlm.ready.set_result(info)
        return True

    async def _start_root(self, rlm: Rlm) -> dict[str, Any]:
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

    async def _root_kernel(self, rlm: Rlm) -> dict[str, Any]:
        """Start the root's kernel and load the context in it (while its first request is out)."""
        assert self.pool is not None and self.cells is not None
        rlm.kernel = await self.pool.acquire()
        self.subcalls.owners[rlm.kernel.id] = rlm
        info = await self.cells.load_context(rlm)
        if info.get("files") == 0:
            raise SetupError(_empty_reason(self.path, info))
        kernel_skips = set(info.get("skipped") or {}) - set(rlm.skipped)
        if kernel_skips:  # binary or unreadable files the scan could not know about
            rlm.load_note = "Note: the context as loaded differs from the first description. " + info["description"]
        return info

    def _fail_run(self, error: str) -> None:
        """A fatal error in a sub-call (bad credentials) stops the whole run."""
        if self.fatal is None:
            self.fatal = error
            if self._root_task is not None:
                self._root_task.cancel()


def _loaded(ready: "asyncio.Future[Any] | None") -> bool:
    """True when a root's kernel started and loaded the context (a question stopped early may have neither)."""
    return ready is not None and ready.done() and not ready.cancelled() and ready.exception() is None


def _cancelling() -> int:
    """How many cancellations of the current task are pending (0: it was not cancelled itself)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _empty_reason(path: Path, info: dict[str, Any]) -> str:
    skipped = info.get("skipped") or {}
    detail = ", ".join(f"{v['count']} {reason}" for reason, v in skipped.items())
    return f"no text files to read in {path}" + (f" (skipped: {detail})" if detail else " (it is empty)")
