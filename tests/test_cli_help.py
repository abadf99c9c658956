"""The command line's help: every option says what it is, its choices and its default."""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from remediator.cli import build_parser, main
from tests.support.service_process import OPERATOR_TOKEN, ServiceProcess


def commands(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from commands(sub, f"{name} {sub_name}")
        else:
            yield name, action


def test_every_option_has_help() -> None:
    silent = [
        f"{command} {'/'.join(action.option_strings) or action.dest}"
        for command, action in commands(build_parser(), "remediator")
        if not action.help
    ]
    assert silent == []


def help_of(monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def option_line(text: str, option: str) -> str:
    [line] = [line for line in text.splitlines() if line.strip().startswith(option + " ")]
    return re.sub(r"\s+", " ", line.strip())


def test_options_say_their_choices_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    serve = help_of(monkeypatch, "serve")
    assert option_line(serve, "--mode") == (
        "--mode VALUE dry-run decides and records; live acts"
        " (one of dry-run, live; default: dry-run) [REMEDIATOR_MODE]"
    )
    assert option_line(serve, "--log-level") == (
        "--log-level VALUE log threshold (one of debug, info, warning, error; default: info)"
        " [REMEDIATOR_LOG_LEVEL]"
    )
    for command in ("alerts", "history"):
        assert "(default: sqlite:///./remediator.db) [REMEDIATOR_DATABASE_URL]" in option_line(
            help_of(monkeypatch, command), "--database-url"
        )
    pause = help_of(monkeypatch, "pause")
    assert "default: 'paused from the command line'" in option_line(pause, "--reason")
    for command in ("pause", "resume", "guards", "approvals list", "approvals approve"):
        text = help_of(monkeypatch, *command.split())
        assert "REMEDIATOR_API_TOKEN" in option_line(text, "--token-file")
    approve = help_of(monkeypatch, "approvals", "approve")
    assert "(at most 500 characters; default: none)" in option_line(approve, "--note")


async def test_the_operator_commands_take_their_token_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = await ServiceProcess.start(tmp_path)
    try:
        monkeypatch.delenv("REMEDIATOR_API_TOKEN", raising=False)
        token_file = tmp_path / "token"
        token_file.write_text(OPERATOR_TOKEN + "\n")
        url = ["--url", service.url]
        assert main(["guards", *url, "--token-file", str(token_file)]) == 0
        assert "kill switch: off" in capsys.readouterr().out
        assert main(["guards", *url]) == 1
        assert "answered 401" in capsys.readouterr().err
        token_file.write_text("")
        assert main(["guards", *url, "--token-file", str(token_file)]) == 1
        assert capsys.readouterr().err == (
            f"remediator: --token-file {token_file} is empty: expected the token on line 1\n"
        )
    finally:
        service.stop()
