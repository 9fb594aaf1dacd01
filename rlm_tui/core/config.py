"""Run settings: models, limits and where to record; the user's settings from flags and config.toml."""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Limits:
    """Caps shared by the whole tree (one budget, one sub-call count)."""

    max_depth: int = 1  # RLM levels; 1 = only the root is an RLM (the paper's setting)
    max_iterations: int = 30  # root-model turns per RLM
    max_subcalls: int = 1000  # llm/rlm sub-calls over the whole run
    concurrency: int = 32  # sub-calls in flight at once
    max_tokens: int | None = 5_000_000  # tokens in+out over the whole run
    budget: float | None = 10.0  # US dollars over the whole run (models with a known price)
    timeout: float | None = 3600.0  # wall seconds for one question (each question of a session has its own)
    cell_timeout: float | None = 300.0  # seconds one code cell may run
    output_chars: int = 20_000  # a cell's output fed back to the model is cut to this
    max_file_bytes: int = 10_000_000  # larger files in a directory are skipped (and reported)
    max_context_bytes: int = 512_000_000  # the input is cut here (and the cut reported)


@dataclass
class Settings:
    """Everything a run needs besides the question and the context."""

    model: str = "openai/gpt-5-mini"
    sub_model: str | None = None  # llm_query and child RLMs; None = the root model
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    session_path: Path | None = None  # None = a new file in the sessions folder
    overwrite_session: bool = False  # replace an existing session_path (else the run refuses to start)
    approve: str = "auto"  # spawn policy: auto | ask | rlm | deny (see control.py)
    step: str = "off"  # step mode: off | turn (before each root model call) | cell (before each cell) | all
    lm_timeout: float = 600.0  # seconds for one LM request
    stream_idle: float = 30.0  # seconds a streamed reply may go silent once it has begun (a stalled stream)
    lm_retries: int = 4  # retries on rate limits, 5xx, timeouts and broken streams
    lm_backoff: float = 1.0  # seconds before the first retry; doubles each time
    sandbox: str = "auto"  # kernels in bubblewrap: auto (when it works here) | on (or refuse to run) | off
    jupyter_server: str | None = None  # run kernels on this Jupyter Server / Kernel Gateway (core/backends/jupyter_server.py)
    jupyter_token: str | None = field(default=None, repr=False)  # its token: a secret, like api_key
    context_window: int | None = None  # tokens a model accepts; None: litellm's map, or what the server says
    max_reply_tokens: int | None = None  # max_tokens for one reply; None: the provider's default

    @property
    def effective_sub_model(self) -> str:
        return self.sub_model or self.model

    def public(self) -> dict[str, Any]:
        """Settings as recorded in the session file: never the API key."""
        data = asdict(self)
        data.pop("api_key", None)
        data.pop("jupyter_token", None)
        data["sub_model"] = self.effective_sub_model
        data["session_path"] = str(self.session_path) if self.session_path else None
        data["api_key_set"] = bool(self.api_key)
        data["jupyter_token_set"] = bool(self.jupyter_token)
        return data


# ---- settings a user may give: flags and config.toml share one definition -------------------

_WHOLE = "a whole number of at least 1"
_POSITIVE = "a number greater than 0"


@dataclass(frozen=True)
class Option:
    """One user setting: the flag ``--name-with-dashes`` and the config-file key ``name``."""

    name: str
    kind: type  # str, int or float
    group: str  # models | limits (a Limits field) | steering | kernels | output: where --help lists it
    help: str
    choices: tuple[str, ...] = ()
    text_metavar: str = "MODEL"  # shown in --help for a string flag
    secret: bool = False  # a credential: a flag or the environment only, never read from config.toml

    @property
    def metavar(self) -> str:
        return self.text_metavar if self.kind is str else "N"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any) -> Any:
        """The value if it is valid for this setting; ValueError with the reason otherwise.

        Flags arrive as text (converted here); config values arrive typed by TOML.
        """
        if self.kind is str:
            if not isinstance(value, str) or not value.strip():
                raise ValueError("must be a non-empty string")
            if self.choices and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)} (got {value!r})")
            return value
        expected = f"must be {_WHOLE if self.kind is int else _POSITIVE} (got {value!r})"
        if isinstance(value, str):
            try:
                value = self.kind(value)
            except ValueError:
                raise ValueError(expected) from None
        accepted = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise ValueError(expected)
        if self.kind is int and value < 1:
            raise ValueError("must be at least 1")
        if self.kind is float and not value > 0:
            raise ValueError("must be greater than 0")
        return self.kind(value)


#: What ``rlm-tui`` accepts as a flag and in config.toml, in --help order. Defaults come from
#: Settings and Limits; precedence is flag > environment (RLM_TUI_MODEL) > config file > default.
OPTIONS: tuple[Option, ...] = (
    Option("model", str, "models", "root model, any litellm model string"),
    Option("sub_model", str, "models", "model for llm_query and child RLMs (default: the root model)"),
    Option("api_base", str, "models", "base URL of an OpenAI-compatible or provider endpoint", text_metavar="URL"),
    Option("stream_idle", float, "models", "seconds a streamed reply may go silent once it has begun; then it "
           "is retried (the first chunk may take as long as the model thinks)"),
    Option("context_window", int, "models", "tokens the models' window holds (default: litellm's price map's, "
           "else learnt from the server's first refusal); an RLM's older turns are compacted to fit"),
    Option("max_reply_tokens", int, "models", "cap one model reply at N tokens (sent as max_tokens; default: the "
           "provider's)"),
    Option("max_depth", int, "limits", "RLM levels; 1 = only the root is an RLM"),
    Option("max_iterations", int, "limits", "model turns per RLM"),
    Option("max_subcalls", int, "limits", "sub-calls over the whole run"),
    Option("concurrency", int, "limits", "sub-calls in flight at once"),
    Option("max_tokens", int, "limits", "tokens in+out over the whole run"),
    Option("budget", float, "limits", "US dollars over the whole run"),
    Option("timeout", float, "limits", "wall seconds for a question (each question of a session has its own)"),
    Option("cell_timeout", float, "limits", "seconds one code cell may run"),
    Option("output_chars", int, "limits", "a cell's output shown to the model is cut to this"),
    Option("approve", str, "steering", "which sub-calls wait for your approval: ask = every llm_query/rlm_query, "
           "rlm = only child RLMs, auto = none, deny = refuse all (the code gets an error string). Default: rlm in "
           "the UI, auto with --headless (which allows only auto or deny)", ("ask", "rlm", "auto", "deny")),
    Option("step", str, "steering", "start in step mode: pause before each root model call (turn), before each "
           "code cell with the code editable (cell), or both (all) (default: off; UI only)",
           ("off", "turn", "cell", "all")),
    Option("sandbox", str, "kernels", "run the model's code in a bubblewrap sandbox (input read-only, no network, "
           "no home; see README: Security): auto = when it works here, else unsandboxed with a warning; on = "
           "refuse to run without it; off = never (default: auto)", ("auto", "on", "off")),
    Option("jupyter_server", str, "kernels", "run the kernels on this Jupyter Server, Kernel Gateway or Enterprise "
           "Gateway (http(s)://host:port[/base]); the input is shipped to them (README: Kernels elsewhere)",
           text_metavar="URL"),
    Option("jupyter_token", str, "kernels", "the --jupyter-server's token (default: env JUPYTER_TOKEN; never read "
           "from the config file)", text_metavar="TOKEN", secret=True),
    Option("theme", str, "output", "UI colour theme (default: the last one chosen, else rlm-midnight); themes are "
           "files in ~/.config/rlm-tui/themes/ too", text_metavar="NAME"),
)
OPTION = {option.name: option for option in OPTIONS}


class ConfigError(Exception):
    """config.toml cannot be used; the message names the file and the key (exit code 2)."""


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/rlm-tui``, else ``~/.config/rlm-tui``: config.toml and themes/."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rlm-tui"


def config_path() -> Path:
    return config_dir() / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    """The settings config.toml gives, validated like their flags; {} when there is no file."""
    path = path or config_path()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "api_key":
            raise ConfigError(f"{path}: api_key is not read from a config file: API keys stay in the environment "
                              "(e.g. OPENAI_API_KEY) or --api-key")
        option = OPTION.get(key)
        if option is not None and option.secret:
            raise ConfigError(f"{path}: {key} is not read from a config file: it is a secret; give it as "
                              f"{option.flag} or in the environment")
        if option is None:
            close = difflib.get_close_matches(key.replace("-", "_"), OPTION, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(OPTION)}"
            raise ConfigError(f"{path}: unknown key {key!r} ({hint})")
        try:
            values[key] = option.validate(value)
        except ValueError as exc:
            raise ConfigError(f"{path}: {key} {exc}") from None
    return values
