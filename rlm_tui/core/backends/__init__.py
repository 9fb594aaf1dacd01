"""Kernel backends (see ``base.py``): the one place that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .base import ExecResult, Kernel, KernelBackend, KernelDied, expression_value, kernel_source
from .pool import KernelPool

__all__ = ["ExecResult", "Kernel", "KernelBackend", "KernelDied", "KernelPool", "expression_value",
           "kernel_source", "make_backend", "refusal"]


def refusal(settings: Settings) -> str | None:
    """Why this run must not start with these settings (``--sandbox on`` without a sandbox), or None.

    Checked by the preflight and again by ``Engine.open_session``, before anything is made.
    """
    if settings.sandbox != "on":
        return None
    from .sandbox import probe

    why = probe()
    return None if why is None else f"--sandbox on, but no sandbox can be made here: {why}"


def make_backend(settings: Settings, run_dir: Path, input_path: Path) -> KernelBackend:
    """The backend this run's settings ask for (``refusal`` has said it may start).

    ``--sandbox auto`` falls back to the local backend when bwrap cannot work here;
    the backend then says why (``LocalBackend.why``).
    """
    from .local import LocalBackend

    if settings.sandbox == "off":
        return LocalBackend(run_dir, input_path)
    from .sandbox import SandboxBackend, probe

    why = probe()
    if why is None:
        return SandboxBackend(run_dir, input_path)
    return LocalBackend(run_dir, input_path, why=f"no sandbox here: {why}")
