"""One definition per flag: ``rlm-tui resume`` takes the run's settings with the run's checks and messages."""

from __future__ import annotations

import pytest

from rlm_tui.cli import main
from rlm_tui.core.config import OPTIONS, Option

#: A value each kind of setting refuses, and what both commands say about it.
BAD = {str: ("", "must be a non-empty string"), int: ("0", "must be at least 1"),
       float: ("0", "must be greater than 0")}
RESUMED = [option for option in OPTIONS if option.group not in ("steering", "output")]


@pytest.mark.parametrize("option", RESUMED, ids=[option.name for option in RESUMED])
def test_resume_refuses_a_setting_as_the_run_does(option: Option, capsys: pytest.CaptureFixture[str]) -> None:
    value, message = BAD[option.kind]
    if option.choices:
        value, message = "nonsense", f"must be one of {', '.join(option.choices)} (got 'nonsense')"
    for argv in (["resume", "run.jsonl", "--at", "1", option.flag, value], ["./notes", "q", option.flag, value]):
        try:
            code = main(argv)  # resume returns its exit code
        except SystemExit as stopped:  # the run command's parser exits, as argparse does
            code = stopped.code
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert f"argument {option.flag}: {message}" in err, (argv, err)


def test_resume_leaves_the_apps_settings_to_the_app(capsys: pytest.CaptureFixture[str]) -> None:
    """Steering and the theme are the app's preferences, not the recorded run's: resume has no such flags."""
    assert main(["resume", "--help"]) == 0
    shown = capsys.readouterr().out
    for option in OPTIONS:
        assert (option.flag in shown) == (option in RESUMED), option.flag
