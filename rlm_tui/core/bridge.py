"""The channel from kernel code back to the host (``llm_query`` and friends).

A TCP server on 127.0.0.1, or a Unix socket for kernels without a network (the
sandbox bind-mounts the socket's folder). Each kernel holds one persistent connection,
opened with a hello that must carry the session secret; anything else is
dropped. Requests are newline-delimited JSON with an id; each runs as its own
task, so many are in flight at once, and a ``cancel`` (sent when the kernel
cell is interrupted) or a dropped connection cancels them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]  # (kernel id, request) -> result

MAX_LINE = 1 << 30  # a prompt may be large; a line is one request (only after the hello)
HELLO_BYTES = 4096  # a hello is {"op", "secret", "kernel"}: anything longer is not one
HELLO_TIMEOUT_S = 2.0  # a kernel sends its hello at once; a silent or slow client is dropped


class Refused(Exception):
    """Raised by the handler for a call that must fail loudly in the kernel (a hard limit).

    The kernel-side call raises RuntimeError with this message instead of
    returning a string, so a runaway loop of sub-calls stops at once.
    """


class Bridge:
    """Serves kernel requests through ``handler``; ``secret`` authenticates kernels."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.secret = secrets.token_hex(32)
        self.port = 0
        self.unix_path: Path | None = None
        self.rejected = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, unix_path: Path | None = None) -> None:
        """Listen on a free port of 127.0.0.1, or on the Unix socket ``unix_path`` (owner-only)."""
        if unix_path is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HELLO_BYTES)
            self.port = self._server.sockets[0].getsockname()[1]
            return
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(unix_path), limit=HELLO_BYTES)
        finally:
            os.umask(old)
        self.unix_path = unix_path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = asyncio.current_task()
        if conn is not None:
            self._tasks.add(conn)
        inflight: dict[int, asyncio.Task[None]] = {}
        try:
            kernel = await self._hello(reader, writer)
            if kernel is None:
                self.rejected += 1
                return
            # Authenticated: requests may be large now. StreamReader has no public setter; its limit
            # bounds both a line and what it buffers before pausing the socket.
            reader._limit = MAX_LINE  # type: ignore[attr-defined]
            while line := await reader.readline():
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request must be a JSON object")
                rid = request.get("id")
                if request.get("op") == "cancel":
                    task = inflight.pop(rid, None)
                    if task is not None:
                        task.cancel()
                    continue
                inflight[rid] = asyncio.ensure_future(self._answer(kernel, request, writer, inflight))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, RecursionError,
                asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Closing the bridge: end normally. Python 3.11's stream callback calls
            # task.exception() and would log a traceback for a cancelled handler task.
            pass
        finally:
            for task in inflight.values():
                task.cancel()
            writer.close()
            if conn is not None:
                self._tasks.discard(conn)

    async def _hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        """The client's kernel id once its hello carries the secret, else None.

        Before that nothing is trusted: at most HELLO_BYTES are buffered (the stream's limit
        until then) and HELLO_TIMEOUT_S waited, so a client sending a never-ending line or
        nothing costs no memory and no task for long; a hello nested deep is just refused.
        """
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel (the bridge closing)
            # that comes as the line arrives, and the handler would then wait on a live kernel for good.
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                line = await reader.readline()
            hello = json.loads(line)
        except (TimeoutError, ValueError, RecursionError, asyncio.LimitOverrunError):
            return None
        if not isinstance(hello, dict):
            return None
        given = str(hello.get("secret", ""))
        if hello.get("op") != "hello" or not hmac.compare_digest(given.encode(), self.secret.encode()):
            return None
        writer.write(b'{"ok": true}\n')
        await writer.drain()
        return str(hello.get("kernel", ""))

    async def _answer(self, kernel: str, request: dict[str, Any], writer: asyncio.StreamWriter,
                      inflight: dict[int, asyncio.Task[None]]) -> None:
        rid = request.get("id")
        reply: dict[str, Any] = {"id": rid}
        try:
            reply["result"] = await self.handler(kernel, request)
        except asyncio.CancelledError:
            return
        except Refused as exc:
            reply["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the call's error string
            reply["result"] = f"Error: {type(exc).__name__}: {exc}"
        finally:
            inflight.pop(rid, None)
        writer.write((json.dumps(reply, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass"))
        await writer.drain()
