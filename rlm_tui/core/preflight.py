"""Can this run reach its models and its --jupyter-server (and, with ``--sandbox on``, make its sandbox)?

Checked before a session file, a context or a kernel exists.

A run that cannot reach its model used to load the whole context, start a
kernel and fail seconds later, leaving a session file for a run that never
began. These checks take milliseconds and say in one line what to set.

``import litellm`` costs 2.4-6 s, so the common providers are checked from a
small table of their key variables (the names litellm itself reads, see
``litellm.utils.validate_environment`` and ``get_llm_provider_logic``);
litellm is imported only to place a model the table does not know.

A reachable server that lists models (GET {api_base}/models) but not the one
asked for gets a warning, not an error: llama.cpp serves whatever name it is
sent, vLLM answers 404 on the first request (which the run reports as
fatal at once), and the listing alone cannot tell them apart.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from typing import Any

from .config import Settings

#: provider -> the environment variables litellm reads its key from (the first is the one to name).
#: An empty tuple: the provider needs no key (local servers).
KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_AI_TOKEN"),
    "cohere": ("COHERE_API_KEY", "CO_API_KEY"),
    "cohere_chat": ("COHERE_API_KEY", "CO_API_KEY"),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "ollama": (),
    "ollama_chat": (),
    "hosted_vllm": (),
    "lm_studio": (),
    "llamafile": (),
}
#: Where a provider's server is when no --api-base is given (checked like an --api-base).
DEFAULT_BASES = {"ollama": ("OLLAMA_API_BASE", "http://localhost:11434"),
                 "ollama_chat": ("OLLAMA_API_BASE", "http://localhost:11434")}
PROBE_TIMEOUT = 2.0  # seconds for GET {api_base}/models, DNS included


class PreflightError(Exception):
    """The run cannot reach a model; the message says what to set or fix (exit code 2)."""


def check(settings: Settings) -> list[str]:
    """Raise PreflightError when a model is unusable; returns warnings worth a line each."""
    warnings: list[str] = []
    _check_sandbox(settings)
    if settings.jupyter_server:
        _check_jupyter_server(settings.jupyter_server, settings.jupyter_token)
    probed: dict[str, list[str] | None] = {}
    for model in dict.fromkeys([settings.model, settings.effective_sub_model]):
        provider = _provider(model)
        if provider == "local":
            _check_local(model)
            continue
        _check_key(model, provider, settings)
        base = settings.api_base or _default_base(provider)
        if base is None:
            continue
        if base not in probed:
            probed[base] = _listed_models(base, "--api-base" if settings.api_base else f"{provider}'s server")
        listed = probed[base]
        name = model.split("/", 1)[1] if "/" in model else model
        if listed is not None and name not in listed and model not in listed:
            shown = ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")
            warnings.append(f"{base} does not list {name} (it lists: {shown or 'nothing'}); "
                            "some servers answer any name, others will refuse it")
    return warnings


def _check_sandbox(settings: Settings) -> None:
    """``--sandbox on`` refuses to start where bwrap cannot make a sandbox (milliseconds, once)."""
    from .backends import refusal

    refused = refusal(settings)
    if refused is not None:
        raise PreflightError(refused)


def _provider(model: str) -> str:
    """The provider litellm would use: the prefix when the table knows it, else litellm's answer."""
    prefix = model.split("/", 1)[0] if "/" in model else ""
    if prefix in KEY_VARS or prefix == "local":
        return prefix
    from .lm import litellm_module  # seconds: only for models the table cannot place

    try:
        return str(litellm_module().get_llm_provider(model=model)[1])
    except Exception:  # noqa: BLE001 - litellm raises several kinds for a model it cannot place
        where = f"unknown provider {prefix!r}" if prefix else "no provider"
        raise PreflightError(f"{where} in model {model!r}: write it as PROVIDER/NAME, e.g. openai/gpt-5-mini, "
                             "anthropic/claude-sonnet-4-5, ollama_chat/qwen3 (see litellm's provider list)") from None


def _check_local(model: str) -> None:
    from . import local_model

    try:
        local_model.check(model)
    except Exception as exc:  # noqa: BLE001 - whatever check raises, the local model cannot run here
        raise PreflightError(str(exc)) from None


def _check_key(model: str, provider: str, settings: Settings) -> None:
    if settings.api_key or (provider == "openai" and settings.api_base):
        return  # a key given, or an OpenAI-compatible server of one's own (vLLM, llama.cpp) that needs none
    if provider in KEY_VARS:
        names = KEY_VARS[provider]
        if names and not any(os.environ.get(name) for name in names):
            raise PreflightError(f"no API key for {model}: set {names[0]} or pass --api-key")
        return
    from .lm import litellm_module  # a provider outside the table: ask litellm which variables it reads

    missing = litellm_module().validate_environment(model=model).get("missing_keys") or []
    if missing:
        raise PreflightError(f"no credentials for {model}: set {', '.join(missing)} or pass --api-key")


def _default_base(provider: str) -> str | None:
    if provider not in DEFAULT_BASES:
        return None
    variable, fallback = DEFAULT_BASES[provider]
    return os.environ.get(variable) or fallback


def _listed_models(base: str, what: str) -> list[str] | None:
    """GET {base}/models: the model ids it lists, or None when it lists none we can read.

    Any HTTP answer means the server is there (a 404 or 401 included); no answer within
    PROBE_TIMEOUT (refused, unknown host, silent) is a PreflightError naming the URL.
    """
    if not base.startswith(("http://", "https://")):
        raise PreflightError(f"{what} must start with http:// or https://: {base}")
    url = base.rstrip("/") + "/models"
    outcome: dict[str, Any] = {}

    def probe() -> None:  # in a thread: urllib's timeout does not cover DNS
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the model client: no proxy
        try:
            with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}),
                             timeout=PROBE_TIMEOUT) as response:
                outcome["body"] = response.read(1 << 20)
        except urllib.error.HTTPError:
            outcome["body"] = b""
        except (OSError, ValueError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=probe, name="rlm-preflight", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT + 0.1)
    if worker.is_alive() or "error" in outcome:
        hint = "" if what == "--api-base" else " (start it, or pass --api-base)"
        raise PreflightError(f"cannot reach {what} at {base}: {_why(outcome.get('error'))}{hint}")
    try:
        data = json.loads(outcome["body"])["data"]
        return [str(item["id"]) for item in data]
    except (ValueError, KeyError, TypeError):
        return None


def _check_jupyter_server(url: str, token: str | None) -> None:
    """GET {url}/api/kernelspecs with the token within PROBE_TIMEOUT: the server is there and lets us in.

    (Not /api/kernels: Kernel Gateway and Enterprise Gateway refuse to list kernels by default.)"""
    from .backends.jupyter_api import split_url

    base, url_token = split_url(url)
    token = token or url_token
    if not base.startswith(("http://", "https://")):
        raise PreflightError(f"--jupyter-server must start with http:// or https://: {base}")
    headers = {"Accept": "application/json", **({"Authorization": f"token {token}"} if token else {})}
    outcome: dict[str, Any] = {}

    def probe() -> None:  # in a thread: urllib's timeout does not cover DNS
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(urllib.request.Request(base + "/api/kernelspecs", headers=headers),
                             timeout=PROBE_TIMEOUT) as response:
                outcome["body"] = response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            outcome["status"] = exc.code
        except (OSError, ValueError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=probe, name="rlm-preflight-jupyter", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT + 0.1)
    if worker.is_alive() or "error" in outcome:
        raise PreflightError(f"cannot reach --jupyter-server at {base}: {_why(outcome.get('error'))}")
    status = outcome.get("status")
    if status in (401, 403):
        given = "its token was refused" if token else "it needs a token"
        raise PreflightError(f"--jupyter-server at {base}: {given} (HTTP {status}); pass --jupyter-token or set "
                             "JUPYTER_TOKEN")
    if status is not None:
        raise PreflightError(f"--jupyter-server at {base} answered GET /api/kernelspecs with HTTP {status}: "
                             "is it a Jupyter Server, Kernel Gateway or Enterprise Gateway?")
    try:
        if not isinstance(json.loads(outcome["body"]).get("kernelspecs"), dict):
            raise ValueError
    except (ValueError, AttributeError):
        raise PreflightError(f"--jupyter-server at {base} did not answer GET /api/kernelspecs with its kernel "
                             "specs: is it a Jupyter Server, Kernel Gateway or Enterprise Gateway?") from None


def _why(exc: BaseException | None) -> str:
    if exc is None:
        return f"no answer within {PROBE_TIMEOUT:g} s"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"no answer within {PROBE_TIMEOUT:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    text = getattr(reason, "strerror", None) or str(reason)
    return " ".join(str(text).split()) or type(reason).__name__
