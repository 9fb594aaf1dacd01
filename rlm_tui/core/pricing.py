"""Prices and context windows from litellm's price map file, without importing litellm.

``import litellm`` costs 2.4-6 s on these machines; a run whose models are
reached by the direct OpenAI-compatible client (``fastlm.py``) never needs it,
except for the price and window of a model. litellm ships its price map as a
JSON file in its package; this module reads that file (tens of milliseconds)
and answers the two questions the engine asks: what did a call cost, and how
many input tokens fit. A model not in the map is unpriced ($0, said once by
the caller) and has no known window.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

MAP_FILE = "model_prices_and_context_window_backup.json"

_lock = threading.Lock()
_map: dict[str, dict[str, Any]] | None = None


def _load() -> dict[str, dict[str, Any]]:
    global _map
    with _lock:
        if _map is None:
            _map = {}
            spec = importlib.util.find_spec("litellm")  # finds the package without importing it
            for folder in (spec.submodule_search_locations or []) if spec else []:
                path = Path(folder) / MAP_FILE
                if path.is_file():
                    data = json.loads(path.read_text(encoding="utf-8"))
                    _map = {k: v for k, v in data.items() if isinstance(v, dict)}
                    break
        return _map


def preload() -> None:
    """Read the map now (a worker thread at run start), so the first request does not wait for it."""
    _load()


def entry(model: str) -> dict[str, Any] | None:
    """The map's entry for a litellm model string: ``provider/name`` as given, else ``name`` under that provider."""
    table = _load()
    if model in table:
        return table[model]
    provider, _, name = model.partition("/")
    found = table.get(name) if name else None
    if found is not None and str(found.get("litellm_provider", "")).split("-")[0] == provider:
        return found
    return None


def cost(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """US dollars for one call, or None when the model has no known price."""
    item = entry(model)
    if item is None or "input_cost_per_token" not in item:
        return None
    return tokens_in * float(item["input_cost_per_token"]) + tokens_out * float(item.get("output_cost_per_token", 0))


def window(model: str) -> int | None:
    """Input tokens the model accepts, when the map knows."""
    item = entry(model) or {}
    value = item.get("max_input_tokens") or item.get("max_tokens")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None

