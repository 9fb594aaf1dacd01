"""Kernel backends (see ``base.py``): the one place that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .base import ExecResult, Kernel, KernelBackend, KernelDied, expression_value, kernel_source, strip_ansi
from .pool import KernelPool

__all__ = ["ExecResult", "Kernel", "KernelBackend", "KernelDied", "KernelPool", "expression_value",
           "kernel_source", "make_backend", "strip_ansi"]


def make_backend(settings: Settings, run_dir: Path, input_path: Path) -> KernelBackend:
    """The backend this run's settings ask for.

    ``--sandbox auto`` falls back to the local backend when bwrap cannot work here;
    the backend then says why (``LocalBackend.why``). ``on`` was checked by preflight.
    """
    from .local import LocalBackend

    if settings.sandbox == "off":
        return LocalBackend(run_dir, input_path)
    from .sandbox import SandboxBackend, SandboxUnavailable, probe

    why = probe()
    if why is None:
        return SandboxBackend(run_dir, input_path)
    if settings.sandbox == "on":
        raise SandboxUnavailable(f"--sandbox on: no sandbox here: {why}")
    return LocalBackend(run_dir, input_path, why=f"no sandbox here: {why}")
