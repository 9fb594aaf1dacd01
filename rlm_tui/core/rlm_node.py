"""A running RLM (the root or a child): its node, its kernel and its context."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .backends import Kernel


@dataclass
class Rlm:
    node: str
    parent: str | None
    depth: int
    question: str
    model: str
    spec: dict[str, Any]  # the context, for kernels/loader.py
    kernel: Kernel | None = None
    ready: "asyncio.Future[dict[str, Any]] | None" = None  # the kernel started and the context loaded
    skipped: dict[str, Any] = field(default_factory=dict)  # what the host's scan left out (root only)
    load_note: str = ""  # told to the model once: the loaded context differs from the scan's estimate
    intro: str = ""  # a follow-up question's first message (earlier questions, variables), else the usual one
    cells: int = 0
    deaths: int = 0
    variables: list[str] = field(default_factory=list)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)  # held while a cell (the model's or yours) runs
    #: Why a root's question was stopped from outside its turn loop: ("timeout", detail), or ("user", answer)
    #: when the user's own cell answered it.
    stop: tuple[str, str] | None = None

    async def ready_kernel(self) -> Kernel:
        """The RLM's kernel, once its context is loaded."""
        assert self.ready is not None
        await self.ready
        assert self.kernel is not None
        return self.kernel


def context_preview(spec: dict[str, Any]) -> dict[str, Any]:
    """What a spawn's context looks like, for the tree and the approval prompt."""
    if spec.get("type") == "text":
        return {"type": "str", "chars": len(spec["text"]), "preview": spec["text"][:300]}
    if spec.get("type") == "pickle":  # a non-str value from kernel code: its summary (kernels/bootstrap.py)
        return {"type": spec.get("pytype", "object"), "items": spec.get("items"), "bytes": spec.get("bytes"),
                "preview": spec.get("preview", "")}
    return {"type": spec.get("type"), "path": spec.get("path")}
