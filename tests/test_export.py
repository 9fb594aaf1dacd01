"""Exporting a recorded run as Markdown and as a Jupyter notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from rlm_tui.cli import main
from rlm_tui.core import events as ev
from rlm_tui.sessions.export import to_markdown, to_notebook
from rlm_tui.sessions.transcript import SessionLog
from sessions_sample import ANSWER, QUESTION, Sample, copy_sample, recorded_sample

pytestmark = pytest.mark.kernel


@pytest.fixture
def sample() -> Sample:
    return recorded_sample()


def test_markdown_report(sample: Sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_sample(tmp_path / "run.jsonl")
    assert main(["export", str(path), "--to", "md"]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {tmp_path / 'run.md'}"
    text = (tmp_path / "run.md").read_text()
    assert text.startswith("# rlm-tui session")
    assert f"| **question** | {QUESTION} |" in text
    for turn in (1, 2, 3):
        assert f"### root n0 · turn {turn}" in text
    assert "> ```repl\n> found = len(context)" in text  # the reply, quoted
    assert "```\nfiles 22\nsummary: summarise part 1\n```" in text  # a cell's output
    assert "<details><summary>↳ batch" in text and "<details><summary>↳ rlm" in text
    assert text.count("<details>") == text.count("</details>")
    assert "## Call tree" in text and "root n0 [done]" in text
    assert text.rstrip().endswith(ANSWER)
    assert main(["export", str(path), "--to", "md", "-o", "-"]) == 0
    assert capsys.readouterr().out == text


def test_notebook_of_the_root_cells(sample: Sample, tmp_path: Path) -> None:
    path = copy_sample(tmp_path / "run.jsonl")
    out = tmp_path / "nb" / "out.ipynb"
    out.parent.mkdir()
    assert main(["export", str(path), "--to", "ipynb", "-o", str(out)]) == 0
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    root_cells = [e for e in sample.run.events if e.kind == ev.CELL_STARTED and e.node == "n0"]
    assert [c.source for c in code] == [e.get("code").rstrip("\n") for e in root_cells]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    first = code[0].outputs
    assert first[0].output_type == "stream" and first[0].name == "stdout"
    assert first[0].text == "files 22\nsummary: summarise part 1\n"
    error = code[2].outputs[-1]
    assert error.output_type == "error" and error.ename == "ZeroDivisionError"
    assert error.evalue == "division by zero" and any("\x1b[" in line for line in error.traceback)
    assert code[2].metadata["rlm_tui"]["status"] == "error"
    assert nb.metadata["rlm_tui"]["answer"] == ANSWER and nb.metadata["kernelspec"]["name"] == "python3"
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].startswith(f"# {QUESTION}")
    assert any(m.startswith("### Turn 2") and "Two steps." in m and "```" not in m for m in markdown)
    assert any("Sub-calls of this cell" in m and "batch" in m for m in markdown)
    assert markdown[-1] == f"## Answer (FINAL_VAR)\n\n{ANSWER}"


def test_export_of_a_cut_off_run(sample: Sample, tmp_path: Path) -> None:
    """A run killed mid-cell still exports: the open cell has no status, there is no answer."""
    path = copy_sample(tmp_path / "cut.jsonl")
    lines = path.read_bytes().split(b"\n")
    cut = next(i for i, line in enumerate(lines) if b'"cell_finished"' in line)
    path.write_bytes(b"\n".join(lines[:cut]) + b"\n" + lines[cut][:25])
    log = SessionLog.read(path)
    assert log.bad_lines and log.answer is None
    assert log.outcome().startswith("unfinished")
    nb = to_notebook(log)
    nbformat.validate(nb)
    assert nb.cells[-1].source.startswith("## No answer")
    text = to_markdown(log)
    assert "did not finish" in text and "cut off" in text and "(none)" in text
