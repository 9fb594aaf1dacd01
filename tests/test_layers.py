"""The layers stay put: import-linter's contracts (pyproject.toml) hold, and each one catches a bad import.

The contracts read the static import graph. The run-time half is checked here too: importing the
engine, the sessions library or the command line loads no Textual (a deferred import really defers).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, cli_env

LINT = [PYTHON, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.argv[0] = 'lint-imports'; lint_imports_command()", "--no-cache"]
CONTRACTS = {
    "layers": "Layers: cli > ui > sessions > model > core",
    "circles": "No import circles",
    "textual": "run without Textual",
    "printing": "Printing progress (headless.py) is the command line's",
    "tools": "A run never depends on the demo",
    "kernels": "The host never imports the code that runs inside a kernel",
}


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the tree at ``root`` (its pyproject.toml, its rlm_tui package)."""
    return subprocess.run(LINT, cwd=root, capture_output=True, text=True, timeout=120, env=cli_env())


def verdicts(output: str) -> dict[str, str]:
    """Contract key -> KEPT or BROKEN, from lint-imports' summary lines."""
    found = {}
    for key, name in CONTRACTS.items():
        line = next((line for line in output.splitlines() if name in line and ("KEPT" in line or "BROKEN" in line)),
                    "")
        found[key] = "BROKEN" if "BROKEN" in line else "KEPT" if "KEPT" in line else "missing"
    return found


def test_every_contract_holds_on_the_package() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(verdicts(proc.stdout).values()) == {"KEPT"}, proc.stdout


# (module to edit, line appended to it, the contract it must break)
BAD_IMPORTS = [
    ("rlm_tui/core/parsing.py", "from ..ui import fmt", "layers"),
    ("rlm_tui/sessions/listing.py", "from ..cli import main", "layers"),
    ("rlm_tui/ui/fmt.py", "from ..cli import common", "layers"),
    ("rlm_tui/ui/steering_screens.py", "from .steering import Question as _Q", "circles"),
    ("rlm_tui/core/config.py", "from . import engine", "circles"),
    ("rlm_tui/core/parsing.py", "import textual", "textual"),
    ("rlm_tui/sessions/follow.py", "from textual.app import App", "textual"),
    ("rlm_tui/sessions/listing.py", "from ..headless import ProgressPrinter", "printing"),
    ("rlm_tui/core/engine.py", "from ..scripted import ScriptedServer", "tools"),
    ("rlm_tui/cli/run.py", "from ..demo import start_demo", "tools"),
    ("rlm_tui/core/engine.py", "import kernels.bootstrap", "kernels"),
    ("rlm_tui/model/run.py", "from ..sessions import index", "layers"),
    ("rlm_tui/model/tree.py", "from textual.widget import Widget", "textual"),
    ("rlm_tui/core/events.py", "from ..model import run", "layers"),
]


@pytest.mark.parametrize("module, line, contract", BAD_IMPORTS, ids=[f"{c}:{m.split('/', 1)[1]}"
                                                                     for m, _, c in BAD_IMPORTS])
def test_a_bad_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    """The same tree with one import added (inside a function, where a deferral would hide it): lint fails."""
    shutil.copytree(ROOT / "rlm_tui", tmp_path / "rlm_tui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n\ndef _added_by_the_test() -> None:\n    {line}  # noqa\n")
    proc = lint(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdicts(proc.stdout)[contract] == "BROKEN", proc.stdout


#: Every module of these packages is imported in turn; none may load Textual or kernels/.
BELOW_THE_UI = ("rlm_tui.core", "rlm_tui.model", "rlm_tui.sessions", "rlm_tui.headless", "rlm_tui.cli")
WALK = f"""
import importlib, pkgutil, sys
names = []
for package in {BELOW_THE_UI!r}:
    module = importlib.import_module(package)
    names.append(package)
    names += [info.name for info in pkgutil.walk_packages(getattr(module, "__path__", []), package + ".")]
for name in names:
    importlib.import_module(name)
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"textual", "kernels"}})
    if loaded:
        print(f"import {{name}} loaded {{loaded}}")
        break
print(len(names), "modules")
"""


def test_importing_below_the_ui_loads_no_textual() -> None:
    """At run time, not only in the static graph: an import deferred into a function must stay deferred."""
    proc = subprocess.run([PYTHON, "-c", WALK], cwd=ROOT, capture_output=True, text=True, timeout=120, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("modules") and "loaded" not in proc.stdout, proc.stdout


def test_the_command_line_loads_only_what_its_command_needs() -> None:
    """``rlm-tui --help`` and a usage error answer without importing the UI, litellm or a kernel client."""
    code = ("import sys\nfrom rlm_tui.cli import main\nfor argv in (['--help'], ['export', '--help'], "
            "['resume', 'x']):\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'litellm', 'jupyter_client'}), "
            "file=sys.stderr)\n")
    proc = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=cli_env())
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr


def test_no_test_module_imports_another() -> None:
    """Shared test helpers live in conftest or plain modules (README: Tests): importing a test module
    runs its module-level code and collects its tests twice over."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0].startswith("test_")]
    assert offenders == []
