"""The command table that lets each call build only its own group's parser."""

from __future__ import annotations

import argparse
import importlib

import pytest

from helm.cli import GROUPS, _module_for, build_parser


@pytest.mark.parametrize("module", list(GROUPS))
def test_group_table_matches_what_each_module_registers(module: str) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == GROUPS[module]


def test_command_names_are_unique_across_groups() -> None:
    names = [n for names in GROUPS.values() for n in names]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["feed", "post", "x"], "helm.cli.store_cmds"),
        (["--home", "/tmp/h", "context", "--json"], "helm.cli.store_cmds"),
        (["--home=/tmp/h", "job", "ls"], "helm.cli.job_cmds"),
        (["promote", "3"], "helm.cli.promote_cmds"),
        ([], None),
        (["--help"], None),
        (["nonsense"], None),
    ],
)
def test_module_for(argv: list[str], module: str | None) -> None:
    assert _module_for(argv) == module


@pytest.mark.parametrize(
    "argv",
    [
        ["feed", "post", "hello", "--tag", "q", "--json"],
        ["--home", "/tmp/h", "directive", "send", "x", "--to", "a,b"],
        ["job", "run", "/tmp/d", "--gpus", "2", "--env", "A=1"],
        ["exp", "run", "-m", "try"],
        ["audit", "ls", "--json"],
    ],
)
def test_partial_parser_parses_like_the_full_one(argv: list[str]) -> None:
    full = vars(build_parser().parse_args(argv))
    part = vars(build_parser(argv).parse_args(argv))
    assert part == full


def test_unknown_command_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(["frobnicate"]).parse_args(["frobnicate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "leaderboard" in err and "promote" in err
