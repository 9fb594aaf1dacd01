"""A small client for the kernel API that Jupyter Server, Kernel Gateway and Enterprise Gateway share.

REST for the kernels' lives (``POST /api/kernels``, ``DELETE``, ``.../interrupt``,
``.../restart``) and one websocket per kernel (``/api/kernels/{id}/channels``)
carrying the Jupyter messages of every channel as JSON text, each tagged with
its ``channel``. Built on tornado, which jupyter-client already brings, so the
remote backend adds no package to install.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

PROTOCOL_VERSION = "5.3"
REQUEST_TIMEOUT = 60.0  # seconds for one REST call (a kernel start on a busy cluster takes a while)
MAX_MESSAGE = 1 << 30  # bytes: a websocket message (a large reply or output) the client accepts


class ServerError(Exception):
    """The server refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal; None when there was no answer


class JupyterApi:
    """One Jupyter-protocol server at ``url`` (``http(s)://host:port[/base]``), authenticated by ``token``."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = AsyncHTTPClient(force_instance=True)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        return headers

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      timeout: float = REQUEST_TIMEOUT) -> Any:
        """One REST call; its JSON answer (None when empty). Raises ServerError."""
        payload = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = HTTPRequest(self.url + path, method=method, headers=self._headers(), body=payload,
                          connect_timeout=timeout, request_timeout=timeout, allow_nonstandard_methods=True)
        try:
            response = await self._http.fetch(req)
        except HTTPClientError as exc:
            if exc.code == 599:  # tornado's code for a timeout
                raise ServerError(f"no answer from {self.url} within {timeout:g} s") from None
            raise ServerError(f"{method} {path}: HTTP {exc.code} {_reason(exc)}", exc.code) from None
        except OSError as exc:
            raise ServerError(f"cannot reach {self.url}: {exc.strerror or exc}") from None
        return json.loads(response.body) if response.body else None

    async def start_kernel(self) -> str:
        """Start a kernel of the server's default kernelspec; its id."""
        answer = await self.request("POST", "/api/kernels", {})
        return str(answer["id"])

    async def kernel(self, kernel_id: str) -> dict[str, Any] | None:
        """The server's record of a kernel (``execution_state`` ...), or None once it is gone."""
        try:
            return await self.request("GET", f"/api/kernels/{quote(kernel_id)}", timeout=10)
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise

    async def interrupt(self, kernel_id: str) -> None:
        await self.request("POST", f"/api/kernels/{quote(kernel_id)}/interrupt")

    async def restart(self, kernel_id: str) -> None:
        await self.request("POST", f"/api/kernels/{quote(kernel_id)}/restart")

    async def delete(self, kernel_id: str) -> None:
        try:
            await self.request("DELETE", f"/api/kernels/{quote(kernel_id)}", timeout=10)
        except ServerError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    async def channels(self, kernel_id: str) -> "Channels":
        """The kernel's websocket, connected."""
        scheme, netloc, path, _, _ = urlsplit(self.url)
        session = uuid.uuid4().hex
        ws_url = urlunsplit(("wss" if scheme == "https" else "ws", netloc,
                             f"{path}/api/kernels/{quote(kernel_id)}/channels", f"session_id={session}", ""))
        req = HTTPRequest(ws_url, headers=self._headers(), connect_timeout=REQUEST_TIMEOUT,
                          request_timeout=REQUEST_TIMEOUT)
        try:
            conn = await websocket_connect(req, max_message_size=MAX_MESSAGE)
        except HTTPClientError as exc:
            raise ServerError(f"websocket for kernel {kernel_id}: HTTP {exc.code} {_reason(exc)}") from None
        except OSError as exc:
            raise ServerError(f"cannot reach {self.url}: {exc.strerror or exc}") from None
        return Channels(conn, session)

    def close(self) -> None:
        self._http.close()


class Channels:
    """A kernel's websocket: send a message on a channel, read the messages of all channels in order."""

    def __init__(self, conn: WebSocketClientConnection, session: str) -> None:
        self.conn = conn
        self.session = session

    def send(self, channel: str, msg_type: str, content: dict[str, Any],
             parent: dict[str, Any] | None = None) -> str:
        """Send one message; its msg_id."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "rlm-tui", "session": self.session,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": PROTOCOL_VERSION}
        message = {"header": header, "parent_header": parent or {}, "metadata": {}, "content": content,
                   "channel": channel, "buffers": []}
        self.conn.write_message(json.dumps(message, ensure_ascii=False))
        return msg_id

    async def receive(self) -> dict[str, Any] | None:
        """The next message (with its ``channel``), or None once the socket is closed."""
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                return None
            if isinstance(raw, bytes):  # the binary v1 protocol is only used when asked for
                continue
            return json.loads(raw)

    def close(self) -> None:
        self.conn.close()


def _reason(exc: HTTPClientError) -> str:
    """The server's own explanation when it gives one (Jupyter Server answers {"message": ...})."""
    body = exc.response.body if exc.response is not None else b""
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    text = message or exc.message or ""
    return " ".join(str(text).split())[:200]


def split_url(url: str) -> tuple[str, str | None]:
    """``url`` without a ``?token=...`` (the form Jupyter prints at start-up), and that token."""
    scheme, netloc, path, query, _ = urlsplit(url.strip())
    params = parse_qsl(query, keep_blank_values=True)
    token = next((value for key, value in params if key == "token"), None) or None
    rest = urlencode([(key, value) for key, value in params if key != "token"])
    return urlunsplit((scheme, netloc, path.rstrip("/"), rest, "")), token
