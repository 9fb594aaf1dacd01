"""Smoke test of the benchmark (python -m rlm_tui.bench --quick): tiny sizes, no timing assertions."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env
from rlm_tui.bench.__main__ import Row, render
from rlm_tui.bench.script import classify, question, reply

HAVE_RLMS = importlib.util.find_spec("rlm") is not None


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rlm_tui.bench", "--quick", *args], cwd=ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=900)


def table_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[0] and cells[0][0].isdigit():
            rows[cells[0]] = cells
    return rows


def test_rlm_tui_rows_run_and_print_a_table() -> None:
    proc = bench("--systems", "rlm-tui")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    assert set(rows) == {"1", "2a", "2b", "2c", "3", "4", "5a", "5b", "5c", "5d", "6", "7", "8", "9", "10a",
                         "10b"}, proc.stdout
    for key, cells in rows.items():
        if key.startswith("10"):  # the sandbox's cost: with and without it, side by side
            assert re.fullmatch(r"[\d.]+ · [\d.]+ \([+-][\d.]+\)", cells[2]), cells
        else:
            float(cells[2])  # every rlm-tui cell holds a number (row 6: the UI's first frame)
    assert "failures" not in proc.stdout


@pytest.mark.skipif(not HAVE_RLMS, reason="rlms is not installed (pip install --no-deps rlms==0.1.3)")
def test_rlms_rows_run_for_both_environments() -> None:
    proc = bench("--systems", "rlms-ipython,rlms-local", "--rows", "1,5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    for key in ("1", "5a", "5b", "5c", "5d"):
        float(rows[key][2]), float(rows[key][3])  # rlms ipython, rlms local


def test_script_tells_the_harnesses_requests_apart() -> None:
    q = question("e2e")
    tui_root = [{"role": "system", "content": "You are a Recursive Language Model"},
                {"role": "user", "content": f"Question: {q}\n\nYour context is a dict"}]
    rlms_root = [{"role": "system", "content": "You are tasked with answering"},
                 {"role": "user", "content": f"Answer the following: {q}\n\nYour context is a str"},
                 {"role": "assistant", "content": "..."}, {"role": "user", "content": "Turn 2/30:"}]
    rlms_child = [{"role": "system", "content": "You are tasked"},
                  {"role": "user", "content": "Your context is a str of 7 total characters."}]
    assert classify([{"role": "user", "content": "p1"}]) == ("llm", 0, None)
    assert classify(tui_root) == ("root", 1, {"s": "e2e"})
    assert classify(rlms_root) == ("root", 2, {"s": "e2e"})
    assert classify(rlms_child)[:2] == ("child", 1)
    assert "llm_query_batched" in reply(rlms_root, "m") and "```repl" in reply(rlms_root, "m")
    assert reply([{"role": "user", "content": "p1"}], "m") == "pong p1"


def test_table_shows_ratios_and_missing_values() -> None:
    rows = [Row("1", "overhead", {"rlm-tui": 0.2, "rlms-ipython": 0.4}, target="≤ 0.5", met=True),
            Row("6", "first frame", text="n/a (no UI yet)")]
    out = render(rows, ["rlm-tui", "rlms-ipython", "rlms-local"])
    line = next(l for l in out.splitlines() if l.startswith("1 "))
    assert "0.50" in line and "—" in line and "yes" in line
    assert "n/a (no UI yet)" in out
