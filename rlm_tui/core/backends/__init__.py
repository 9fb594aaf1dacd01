"""Kernel backends (see ``base.py``): the one place that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .base import ExecResult, Kernel, KernelBackend, KernelDied, expression_value, kernel_source, strip_ansi
from .pool import KernelPool

__all__ = ["ExecResult", "Kernel", "KernelBackend", "KernelDied", "KernelPool", "expression_value",
           "kernel_source", "make_backend", "strip_ansi", "url_token"]


def make_backend(settings: Settings, run_dir: Path, input_path: Path) -> KernelBackend:
    """The backend this run's settings ask for."""
    if settings.jupyter_server:
        from .jupyter_server import JupyterServerBackend

        return JupyterServerBackend(run_dir, input_path, settings.jupyter_server, settings.jupyter_token)
    from .local import LocalBackend

    return LocalBackend(run_dir, input_path)


def url_token(url: str | None) -> str | None:
    """A token written into a --jupyter-server URL (``?token=...``): a secret to redact like the others."""
    if not url:
        return None
    from .jupyter_api import split_url

    return split_url(url)[1]
