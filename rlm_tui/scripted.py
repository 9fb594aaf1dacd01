"""A scripted OpenAI-compatible chat server on 127.0.0.1.

Tests, the demo and the benchmark drive the real engine and real litellm
against it: no network, no API keys. ``script(messages, model) -> str`` decides
each reply; ``latency`` delays every reply. Faults can be queued for the next
requests (HTTP status codes, a stream that breaks mid-reply, or a connection
closed with no reply). ``keepalive_timeout`` closes connections idle that long,
as llama.cpp's server does after 5 s. ``window`` refuses a prompt of more tokens
than that (``prompt_tokens``) with llama.cpp's error reply, as its server does
when a request does not fit a slot.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .core.prompts import SYSTEM_MARKER

Script = Callable[[list[dict[str, Any]], str], str]


def tokens_of(text: str) -> int:
    """The server's token count: about four characters a token."""
    return max(1, len(text) // 4)


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt's tokens as the ``window`` check counts them: three characters a token (real tokenizers
    count code and punctuation denser than the client's four-a-token estimate) and 5 per message (the template)."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 3 + 5 * len(messages)


def window_refusal(tokens: int, window: int) -> dict[str, Any]:
    """llama.cpp's server's reply (HTTP 400) to a prompt over its context size."""
    return {"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": tokens, "n_ctx": window,
                      "message": f"request ({tokens} tokens) exceeds the available context size ({window} tokens), "
                                 "try increasing it"}}


def is_rlm_call(messages: list[dict[str, Any]]) -> bool:
    """True for an RLM turn (root or child), False for a plain llm_query."""
    return bool(messages) and messages[0].get("role") == "system" and SYSTEM_MARKER in messages[0]["content"]


def turn_of(messages: list[dict[str, Any]]) -> int:
    """Which turn of an RLM this request is (1-based)."""
    return 1 + sum(1 for m in messages if m.get("role") == "assistant")


def question_of(messages: list[dict[str, Any]]) -> str:
    """The question an RLM was given (first user message, up to the context description)."""
    first = next((m["content"] for m in messages if m.get("role") == "user"), "")
    if "\n\nNew question: " in first:  # a follow-up in a session (prompts.follow_up_message)
        return first.split("\n\nNew question: ", 1)[1].split("\n\n", 1)[0]
    return first.split("\n\nYour context is", 1)[0].removeprefix("Question: ")


@dataclass
class Fault:
    """What to do instead of answering: an HTTP ``status``, ``break_stream`` after some text, or
    ``raw``: a status-200 body sent as it is (a malformed reply; for a streamed request, the SSE text),
    or ``drop`` the connection without a byte of reply.

    ``delay`` seconds pass first (longer than the client's timeout: a timeout).
    """

    status: int = 0
    break_stream: bool = False
    drop: bool = False
    body: str = ""
    delay: float = 0.0
    raw: str | None = None
    stall: float = 0.0  # a streamed reply goes silent this long after its first chunk


@dataclass
class ScriptedServer:
    script: Script
    latency: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    keep_requests: int = 10_000
    keepalive_timeout: float | None = None  # seconds an idle connection stays open; None: until the client closes it
    window: int | None = None  # prompts over this many tokens (prompt_tokens) are refused as llama.cpp does

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.inflight = 0
        self.max_inflight = 0  # the most requests that were being answered at once
        self.refused = 0  # requests refused as over ``window``

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "ScriptedServer":
        server = self

        class Handler(_Handler):
            owner = server
            timeout = server.keepalive_timeout  # http.server closes a connection whose next request is late

        self._httpd = _Server((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.hang_up()
            self._httpd = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            if len(self.requests) < self.keep_requests:
                self.requests.append(body)

    def track(self, delta: int) -> None:
        with self._lock:
            self.inflight += delta
            self.max_inflight = max(self.max_inflight, self.inflight)


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 32 new connections
    # (a batch's first wave) overflowed it and the dropped SYNs were resent 1 s later.
    request_queue_size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def hang_up(self) -> None:
        """End every kept-alive connection, so no handler thread outlives the server waiting for a request
        that a client's pool, closed much later, would end with a reset."""
        with self._open_lock:
            open_now = list(self._open)
        for request in open_now:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client closed it first

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (reset, broken pipe) is not the server's error; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the client's
    # delayed ACK adds ~40 ms to every reply.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logs
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.owner
        owner.record(body)
        owner.track(+1)
        try:
            self._respond(owner, body)
        finally:
            owner.track(-1)

    def _respond(self, owner: ScriptedServer, body: dict[str, Any]) -> None:
        if owner.latency:
            time.sleep(owner.latency)
        fault = owner.next_fault()
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.raw is not None:
            self._raw(fault.raw, stream=bool(body.get("stream")))
            return
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        if fault is not None and fault.status:
            self._json(fault.status, {"error": {"message": fault.body or f"scripted fault {fault.status}",
                                                "type": "scripted", "code": fault.status}})
            return
        messages = body.get("messages", [])
        model = body.get("model", "")
        if owner.window is not None and prompt_tokens(messages) > owner.window:
            with owner._lock:
                owner.refused += 1
            self._json(400, window_refusal(prompt_tokens(messages), owner.window))
            return
        try:
            text = owner.script(messages, model)
        except Exception as exc:  # noqa: BLE001 - a broken script is a 500, visible to the client
            self._json(500, {"error": {"message": f"script failed: {exc!r}", "type": "scripted"}})
            return
        prompt_text = "".join(str(m.get("content", "")) for m in messages)
        usage = {"prompt_tokens": tokens_of(prompt_text), "completion_tokens": tokens_of(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            self._stream(model, text, usage, broken=bool(fault and fault.break_stream),
                         stall=fault.stall if fault else 0.0)
        else:
            self._json(200, {"id": "scripted", "object": "chat.completion", "created": int(time.time()),
                             "model": model, "usage": usage,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}]})

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, text: str, stream: bool) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, text: str, usage: dict[str, int], broken: bool, stall: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = [text[i:i + 24] for i in range(0, len(text), 24)] or [""]
        if broken:
            pieces = pieces[: max(1, len(pieces) // 2)]
        base = {"id": "scripted", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        for i, piece in enumerate(pieces):
            self._chunk(dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
            if i == 0 and stall:
                time.sleep(stall)
        if broken:
            self.wfile.write(b"5\r\ndata:\r\n")  # a torn chunk, then the connection drops
            self.wfile.flush()
            self.close_connection = True
            return
        self._chunk(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        self._chunk(dict(base, choices=[], usage=usage))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _chunk(self, obj: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
