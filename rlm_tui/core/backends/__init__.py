"""Kernel backends (see ``base.py``): the one place that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .base import ExecResult, Kernel, KernelBackend, KernelDied, expression_value, kernel_source, strip_ansi
from .pool import KernelPool

__all__ = ["ExecResult", "Kernel", "KernelBackend", "KernelDied", "KernelPool", "expression_value",
           "kernel_source", "make_backend", "strip_ansi"]


def make_backend(settings: Settings, run_dir: Path, input_path: Path) -> KernelBackend:
    """The backend this run's settings ask for."""
    from .local import LocalBackend

    return LocalBackend(run_dir, input_path)
