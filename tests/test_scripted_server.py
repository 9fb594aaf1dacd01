"""The scripted server stays quiet about clients that hang up, and leaves no connection behind when stopped.

CI saw a traceback ("Exception occurred during processing of request") land in another test's captured
stderr: a handler thread of an earlier test's server, still waiting on a kept-alive connection, got a
reset when that client's socket was finally closed. Each test here makes that happen on purpose.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from rlm_tui.scripted import ScriptedServer


def _request(sock: socket.socket) -> None:
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    reply = b""
    while not reply.endswith(b"0\r\n\r\n"):
        reply += sock.recv(65536)


def _handlers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_client_that_resets_its_kept_alive_connection_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    before = set(_handlers())
    with ScriptedServer(lambda messages, model: "a reply") as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        _request(sock)
        sock.send(b"P")  # unread by the server: closing now resets the connection instead of ending it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        _wait_for(lambda: not set(_handlers()) - before)
    assert capsys.readouterr().err == ""


def test_stopping_the_server_ends_the_connections_it_kept_alive() -> None:
    before = set(_handlers())
    server = ScriptedServer(lambda messages, model: "a reply").start()
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        _request(sock)
        assert set(_handlers()) - before, "the handler waits for the connection's next request"
        server.stop()
        _wait_for(lambda: not set(_handlers()) - before)
        assert sock.recv(1) == b""  # the client sees the connection end
    finally:
        sock.close()
