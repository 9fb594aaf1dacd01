"""Keeping credentials out of kernels and out of everything a run writes or prints.

Model-written code runs in the kernel with the user's rights. It reaches
models only through the bridge, so it needs no API keys: the kernel is
started without any environment variable that looks like a credential. What
the host knows to be secret (the API key, the bridge secret, credential-like
variables of its own environment) is replaced by ``[REDACTED]`` in session
files, cell output shown to the model, error messages and the final answer.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") are settings, not secrets, and would redact noise
MIN_ENV_SECRET_CHARS = 16  # from the environment only values that look like keys: long, no spaces, no paths

_CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION_ID", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """True for environment variable names that usually hold credentials (OPENAI_API_KEY, GITHUB_TOKEN...)."""
    return bool(_CREDENTIAL_NAME.search(name))


def kernel_env() -> dict[str, str]:
    """The environment for a kernel: the host's, without credential-like variables."""
    return {name: value for name, value in os.environ.items() if not looks_secret(name)}


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Values to redact: ``extra`` (API key, bridge secret) and credential-like environment values.

    Longest first, so a secret that contains another is replaced whole.
    """
    found = {value for value in extra if value and len(value) >= MIN_SECRET_CHARS}
    found.update(value for name, value in os.environ.items()
                 if looks_secret(name) and len(value) >= MIN_ENV_SECRET_CHARS
                 and not value.startswith("/") and " " not in value)
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
