"""Kernels on a Jupyter Server, Kernel Gateway or Enterprise Gateway, possibly on another machine.

The server starts each kernel (``POST /api/kernels``) and relays its messages
over one websocket. Such a kernel cannot reach the host's 127.0.0.1 bridge nor
read the host's files, so both travel over a channel it already has, its stdin:

- the bootstrap (``kernels/bootstrap.py``, ``StdinBridge``) asks for work by
  calling ``input()`` with a prompt holding its new requests and the ids it
  still waits for; the host starts those requests and answers the
  ``input_request`` once a result is ready (or after ``HOLD_S``, or at once when
  the kernel publishes a tiny ``rlm_tui_wake`` on iopub because another thread
  queued a request meanwhile). Many requests are in flight at once; an
  interrupted cell cancels its calls.
- the input is read here, on the host, and shipped to the kernel in chunks the
  kernel's loader asks for (``read`` requests naming a blob by number, never a
  path), so the kernel never opens a host path.

Messages from the host to the server stay under 10 MiB, which tornado's
websocket server (under every Jupyter server) refuses: input is served
``CHUNK_BYTES`` per request and long answers go in ``REPLY_CHARS`` pieces.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..bridge import Handler, Refused
from .base import (ExecResult, HeldInterrupt, Kernel, KernelBackend, KernelDied, OutputHook, Timeout, error_status,
                   interrupted_without_reply, take_iopub)
from .jupyter_api import Channels, JupyterApi, ServerError, split_url

if TYPE_CHECKING:
    from ..bridge import Bridge

STDIN_MARK = "\x00rlm-tui "  # an input() prompt from the bootstrap; any other prompt is the model's own
HOLD_S = 0.5  # an open poll is answered after this long even with nothing ready (a lost wake costs this)
CHUNK_BYTES = 4 << 20  # bytes of the input per read request (5.6 MB as base64: under the 10 MiB cap)
REPLY_CHARS = 6 << 20  # characters of answer per input_reply (ASCII JSON; under the server's 10 MiB cap)
PROGRESS_EVERY_S = 0.5  # seconds between progress reports while the input is shipped
START_TIMEOUT = 120.0  # seconds for a kernel to answer kernel_info after the server started it
NUDGE_S = 0.5  # seconds between kernel_info requests while a new socket waits to hear the kernel
IDLE_GRACE_S = 3.0  # seconds a cell's iopub may stay silent after its shell reply before its idle counts as lost

Progress = Callable[[int, int], None]  # (bytes shipped, bytes in all)


class RemoteKernel(Kernel):
    """One kernel started by a Jupyter server, driven over its websocket."""

    _ids = itertools.count(1)

    def __init__(self, api: JupyterApi, handler: Handler) -> None:
        self.id = f"r{next(self._ids)}-{os.getpid()}"  # the host's name for it (the sub-call owner key)
        self.api = api
        self.handler = handler
        self.remote_id: str | None = None  # the server's kernel id
        self.on_progress: Progress | None = None
        self._ws: Channels | None = None
        self._reader: asyncio.Task[None] | None = None
        self._iopub: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._closed = False
        self._calls: dict[Any, asyncio.Task[None]] = {}  # sub-calls in flight, by the kernel's request id
        self._done: dict[Any, dict[str, Any]] = {}  # finished sub-calls not yet taken by the kernel
        self._changed = asyncio.Event()  # a sub-call finished or the kernel queued a new one
        self._woken = 0  # the highest count of queued requests a wake announced
        self._answer: asyncio.Task[None] | None = None  # the open poll's answer
        self._rest = ""  # what the kernel has yet to take of a long answer
        self._blobs: list[Path | bytes] = []  # what read requests may read: files of the input, shipped values
        self._shipped = 0
        self._total = 0
        self._last_progress = 0.0
        self._held = HeldInterrupt()

    # ---- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.remote_id = await self.api.start_kernel()
        await self._connect()

    async def _connect(self) -> None:
        assert self.remote_id is not None
        self._ws = await self.api.channels(self.remote_id)
        self._closed, self._woken = False, 0  # a new process counts its requests from 0
        self._reader = asyncio.ensure_future(self._read())
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Ask for kernel_info until the kernel answers on shell and its status for one of those
        requests comes back on iopub: only then does the new socket hear everything a cell publishes.

        A server relays a new websocket's iopub through a new subscription, which may reach the
        kernel after the shell does; what the kernel publishes before that is lost: a first cell's
        output and its ``idle``. Jupyter Server checks this itself ("nudge"), except for a kernel it
        thinks busy, which after restarting a kernel stuck in a cell it wrongly still does.
        """
        deadline = time.monotonic() + START_TIMEOUT
        asked: list[str] = []
        answered = heard = False
        try:
            while not (answered and heard):
                if self._closed or time.monotonic() > deadline:
                    raise KernelDied(f"kernel {self.remote_id} on {self.api.url} did not answer")
                assert self._ws is not None
                asked.append(self._ws.send("shell", "kernel_info_request", {}))
                self._expect(asked[-1])
                ask_again = time.monotonic() + NUDGE_S
                while not (answered and heard) and (left := ask_again - time.monotonic()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            msg = await self._iopub.get()
                    except TimeoutError:
                        msg = {}
                    if msg is None:
                        raise KernelDied(f"kernel {self.remote_id} on {self.api.url} did not answer")
                    heard = heard or msg.get("parent_header", {}).get("msg_id") in asked
                    answered = answered or any(msg_id not in self._replies for msg_id in asked)
        finally:
            for msg_id in asked:
                self._replies.pop(msg_id, None)

    def _expect(self, msg_id: str) -> "asyncio.Future[dict[str, Any]]":
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        return future

    async def is_alive(self) -> bool:
        if self._closed or self.remote_id is None:
            return False
        try:
            record = await self.api.kernel(self.remote_id)
        except ServerError:
            return False
        return record is not None and record.get("execution_state") != "dead"

    async def interrupt(self) -> None:
        if self._held.hold():
            await self._interrupt_now()

    async def _interrupt_now(self) -> None:
        assert self.remote_id is not None
        await self.api.interrupt(self.remote_id)

    async def _send_held(self) -> None:
        """The interrupt held until the cell began (``HeldInterrupt``); a kernel gone meanwhile: the loop finds out."""
        try:
            await self._interrupt_now()
        except ServerError:
            pass

    async def restart(self) -> None:
        """A fresh kernel process under the same id; the namespace is empty after.

        A kernel that died is being restarted by the server already (which refuses a second
        restart meanwhile); either way the new process may listen on new ports, so the websocket
        is opened anew.
        """
        assert self.remote_id is not None
        self._cancel_calls()
        try:
            try:
                await self.api.restart(self.remote_id)
            except ServerError:
                if await self.api.kernel(self.remote_id) is None:
                    raise KernelDied(f"the server at {self.api.url} lost the kernel") from None
            await self._disconnect()
            await self._connect()
        except ServerError as exc:  # the server itself is gone: no kernel to come back to
            raise KernelDied(f"the kernel's server failed: {exc}") from None

    async def _disconnect(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self._iopub = asyncio.Queue()  # what the old socket left is no one's now

    async def shutdown(self) -> None:
        self._cancel_calls()
        await self._disconnect()
        if self.remote_id is not None:
            try:
                await self.api.delete(self.remote_id)
            except ServerError:
                pass  # the server went away: nothing left to stop from here
            self.remote_id = None

    # ---- the websocket ------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            while (msg := await self._ws.receive()) is not None:
                channel = msg.get("channel")
                kind = msg.get("header", {}).get("msg_type")
                parent = msg.get("parent_header", {}).get("msg_id")
                if channel == "iopub" and kind == "rlm_tui_wake":
                    self._woken = max(self._woken, int(msg.get("content", {}).get("queued") or 0))
                    self._changed.set()
                elif channel == "iopub":
                    self._iopub.put_nowait(msg)
                elif channel == "shell" and parent in self._replies:
                    self._replies.pop(parent).set_result(msg.get("content", {}))
                elif channel == "stdin" and kind == "input_request":
                    self._poll(msg)
        finally:
            self._closed = True
            self._iopub.put_nowait(None)

    # ---- cells --------------------------------------------------------------------------

    async def execute(self, code: str, on_output: OutputHook | None = None, *, timeout: Timeout = None,
                      user_expressions: dict[str, str] | None = None, interrupt_grace: float = 5.0) -> ExecResult:
        """Run a cell, streaming its output; interrupt it after ``timeout`` seconds (see Kernel.execute)."""
        if self._ws is None or self._closed:
            return ExecResult("died", 0.0, error="the connection to the kernel's server was lost")
        started = time.perf_counter()
        msg_id = self._ws.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": False, "allow_stdin": True,
            "user_expressions": user_expressions or {}, "stop_on_error": True})
        with self._held.cell():
            return await self._follow(msg_id, started, on_output, timeout, interrupt_grace)

    async def _follow(self, msg_id: str, started: float, on_output: OutputHook | None, timeout: Timeout,
                      interrupt_grace: float) -> ExecResult:
        """The sent cell's output and end (``execute``)."""
        reply = self._expect(msg_id)
        emit = on_output or (lambda stream, text: None)
        interrupted_at: float | None = None
        replied_at: float | None = None
        status, error = "ok", ""
        while True:
            try:
                async with asyncio.timeout(0.25):
                    msg = await self._iopub.get()
            except TimeoutError:
                if self._held.due(None):
                    await self._send_held()
                elapsed = time.perf_counter() - started
                if reply.done():  # the shell says the cell is over; its idle is due on iopub
                    replied_at = elapsed if replied_at is None else replied_at
                    if elapsed - replied_at > IDLE_GRACE_S:
                        break  # lost on the way (a relay drops iopub at its high-water mark): stop waiting
                limit = timeout() if callable(timeout) else timeout
                if limit is not None and interrupted_at is None and elapsed > limit:
                    interrupted_at, status = elapsed, "timeout"
                    try:
                        await self._interrupt_now()
                    except ServerError:  # the server refuses to interrupt a kernel that died meanwhile
                        self._cancel_calls()
                        return ExecResult("died", time.perf_counter() - started, error="the kernel died")
                elif interrupted_at is not None and elapsed - interrupted_at > interrupt_grace:
                    await self.restart()
                    return ExecResult(status, time.perf_counter() - started,
                                      error="the cell ignored the interrupt; the kernel was restarted",
                                      restarted=True)
                continue
            if msg is None:
                return ExecResult("died", time.perf_counter() - started,
                                  error="the connection to the kernel's server was lost")
            kind = msg["header"]["msg_type"]
            content = msg.get("content", {})
            if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                self._cancel_calls()  # the server restarts a kernel that died; its calls are orphans
                return ExecResult("died", time.perf_counter() - started, error="the kernel died")
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if self._held.due(kind):
                await self._send_held()
            status, error, idle = take_iopub(kind, content, emit, status, error)
            if idle:
                break
        if status in ("interrupted", "timeout"):
            self._cancel_calls()  # "cancel on interrupt": the kernel may not get to say so itself
        try:
            async with asyncio.timeout(10):
                shell = await reply
        except TimeoutError:
            shell = {}
        status = interrupted_without_reply(status, shell, self._held)
        if status == "ok" and shell.get("status") == "error":  # the error's iopub message was lost too
            status, error = error_status(shell.get("ename", "")), shell.get("ename", "Error")
        return ExecResult(status, time.perf_counter() - started, shell.get("user_expressions", {}) or {}, error)

    # ---- sub-calls over stdin -----------------------------------------------------------

    def _poll(self, msg: dict[str, Any]) -> None:
        """An ``input_request``: the bootstrap's poll (start its requests, answer when one is done)."""
        prompt = str(msg.get("content", {}).get("prompt", ""))
        if not prompt.startswith(STDIN_MARK):  # not the bootstrap's (it refuses the model's input()): EOF
            self._reply(msg, "\x04")
            return
        if self._answer is not None:
            self._answer.cancel()  # a newer poll supersedes one the kernel stopped waiting for
        if prompt == STDIN_MARK + "more":  # the kernel takes the next piece of a long answer
            self._send_piece(msg)
            return
        try:
            poll = json.loads(prompt[len(STDIN_MARK):])
            sent, want, queued = list(poll["send"]), set(poll["want"]), int(poll["queued"])
        except (ValueError, KeyError, TypeError):
            self._reply(msg, "=[]")
            return
        for request in sent:
            if not isinstance(request, dict):
                continue
            rid = request.get("id")
            if request.get("op") == "cancel":
                task = self._calls.pop(rid, None)
                if task is not None:
                    task.cancel()
            elif rid not in self._calls:
                self._calls[rid] = asyncio.ensure_future(self._serve(request))
        for rid in [r for r in self._done if r not in want]:  # taken already, or given up on
            del self._done[rid]
        self._answer = asyncio.ensure_future(self._answer_when_ready(msg, want, queued))

    async def _answer_when_ready(self, msg: dict[str, Any], want: set[Any], queued: int) -> None:
        """Answer once a wanted result is ready, the kernel announced requests this poll lacks, or HOLD_S."""
        deadline = time.monotonic() + HOLD_S

        def ready_to_answer() -> bool:
            return self._woken > queued or any(rid in self._done for rid in want)

        while not ready_to_answer():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.clear()
            if ready_to_answer():
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                break
        ready = [self._done[rid] for rid in want if rid in self._done]
        self._rest = json.dumps(ready, ensure_ascii=True)
        self._send_piece(msg)

    def _send_piece(self, msg: dict[str, Any]) -> None:
        """The answer's next piece: the server refuses a message over 10 MiB, so a long one (a batch of
        long replies) goes in pieces, "+" before each but the last, "=" before that one."""
        piece, self._rest = self._rest[:REPLY_CHARS], self._rest[REPLY_CHARS:]
        self._reply(msg, ("+" if self._rest else "=") + piece)

    def _reply(self, request: dict[str, Any], value: str) -> None:
        if self._ws is not None and not self._closed:
            self._ws.send("stdin", "input_reply", {"status": "ok", "value": value}, parent=request["header"])

    async def _serve(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        answer: dict[str, Any] = {"id": rid}
        try:
            if request.get("op") == "read":
                answer["result"] = self._read_blobs(request)
            else:
                answer["result"] = await self.handler(self.id, request)
        except asyncio.CancelledError:
            return
        except Refused as exc:
            answer["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the call's error string
            answer["result"] = f"Error: {type(exc).__name__}: {exc}"
        finally:
            self._calls.pop(rid, None)
        self._done[rid] = answer
        self._changed.set()

    def _cancel_calls(self) -> None:
        for task in self._calls.values():
            task.cancel()
        self._calls.clear()
        self._done.clear()

    # ---- shipping the context -----------------------------------------------------------

    def ship(self, spec: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
        """The loader's spec for this kernel: every byte it needs served by number, no host path.

        ``spec`` is the host's (``kernels/loader.py``): a file or a directory with its manifest, a
        text, or a pickled value.
        """
        kind = spec["type"]
        self._shipped, self.on_progress, self._last_progress = 0, progress, time.monotonic()
        caps = {"max_file_bytes": spec.get("max_file_bytes"), "max_total_bytes": spec.get("max_total_bytes")}
        if kind == "path" and Path(spec["path"]).is_dir():
            # Blob 0 is the list of file names (as the manifest holds it), so the loading cell stays small
            # however many files there are; then the files, by their place in that list.
            root, listed = Path(spec["path"]), Path(spec["manifest"]).read_bytes()
            self._blobs = [listed, *(root / name for name in json.loads(listed))]
            shipped = {"type": "shipped", "as": "dir", "list_bytes": len(listed), **caps}
        elif kind == "path":
            self._blobs = [Path(spec["path"])]
            shipped = {"type": "shipped", "as": "file", **caps}
        elif kind == "text":
            self._blobs = [spec["text"].encode("utf-8", "surrogatepass")]
            shipped = {"type": "shipped", "as": "text"}
        elif kind == "pickle":  # a value from another kernel of this run: sent inline (kernels/bootstrap.py)
            self._blobs = [base64.b64decode(spec["data"])]
            shipped = {"type": "shipped", "as": "pickle"}
        else:
            raise ValueError(f"cannot ship a context of type {kind!r}")
        self._total = sum(len(b) if isinstance(b, bytes) else _size(b) for b in self._blobs)
        return dict(shipped, bytes=self._total)

    def _read_blobs(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Blob ``blob`` from ``offset``, then the blobs after it, each up to ``limit`` bytes, until
        CHUNK_BYTES are taken: [{"data": base64, "end": this blob is complete, "error": why unread}]."""
        index, offset, limit = int(request["blob"]), int(request["offset"]), int(request["limit"])
        if not 0 <= index < len(self._blobs) or offset < 0:
            raise ValueError("no such part of the input")
        pieces: list[dict[str, Any]] = []
        budget = CHUNK_BYTES
        while index < len(self._blobs) and budget > 0:
            want = min(limit - offset, budget)
            try:
                data = _read(self._blobs[index], offset, want)
            except OSError as exc:
                pieces.append({"end": True, "error": exc.strerror or type(exc).__name__})
                index, offset = index + 1, 0
                continue
            end = len(data) < want or offset + len(data) >= limit
            pieces.append({"data": base64.b64encode(data).decode("ascii"), "end": end})
            budget -= len(data)
            self._count(len(data))
            if not end:
                break
            index, offset = index + 1, 0
        return pieces

    def _count(self, n: int) -> None:
        """Progress: every PROGRESS_EVERY_S, and once when all is shipped."""
        before, self._shipped = self._shipped, self._shipped + n
        now = time.monotonic()
        finished = before < self._total <= self._shipped
        if self.on_progress is not None and n and (now - self._last_progress >= PROGRESS_EVERY_S or finished):
            self._last_progress = now
            self.on_progress(self._shipped, self._total)


def _read(blob: Path | bytes, offset: int, size: int) -> bytes:
    if isinstance(blob, bytes):
        return blob[offset:offset + size]
    with open(blob, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class JupyterServerBackend(KernelBackend):
    """Kernels started by a Jupyter Server (or Kernel Gateway, Enterprise Gateway) at ``url``."""

    name = "jupyter-server"

    def __init__(self, run_dir: Path, input_path: Path, url: str, token: str | None) -> None:
        super().__init__(run_dir, input_path)
        self.url, url_token = split_url(url)
        self.api = JupyterApi(self.url, token or url_token)
        self._handler: Handler | None = None

    @property
    def description(self) -> str:
        return f"kernels on the Jupyter server at {self.url}"

    async def open(self, bridge: "Bridge") -> None:
        self._handler = bridge.handler  # no TCP listener: sub-calls come over each kernel's stdin

    def new_kernel(self) -> Kernel:
        assert self._handler is not None
        return RemoteKernel(self.api, self._handler)

    def connect_config(self, kernel: Kernel) -> dict[str, Any]:
        return {"stdin": True}

    async def context_spec(self, kernel: Kernel, spec: dict[str, Any],
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        assert isinstance(kernel, RemoteKernel)

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(f"shipped {_mb(done)} of {_mb(total)}")

        return kernel.ship(spec, report)

    async def close(self) -> None:
        self.api.close()


def _mb(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"
