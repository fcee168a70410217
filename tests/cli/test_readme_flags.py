"""The README and the command line agree (issue 21): every flag of every `exray` command is documented in
the README, and every `exray` command line in the README's shell blocks uses only flags that exist."""

import argparse
import re
from pathlib import Path

import pytest

from exray.cli import build_parser, main

README = (Path(__file__).parents[2] / "README.md").read_text()
COMMANDS = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long options of a parser and of its own subcommands (``exray trojai infer``)."""
    flags = set()
    for action in parser._actions:
        flags.update(o for o in action.option_strings if o.startswith("--") and o != "--help")
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _flags(sub)
    return flags


def _readme_command_lines() -> list[tuple[str, str]]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found = re.match(r"\s*(?:\.venv/bin/)?exray ([\w-]+)(.*)", line)
            if found:
                lines.append((found.group(1), found.group(2).split("#")[0]))
    return lines


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_is_documented_in_the_readme(command):
    undocumented = sorted(flag for flag in _flags(COMMANDS[command]) if flag not in README)
    assert not undocumented, f"exray {command}: {undocumented} are not in the README"


def test_the_readmes_command_lines_use_existing_commands_and_flags():
    lines = _readme_command_lines()
    assert len(lines) > 10
    wrong = []
    for command, rest in lines:
        if command not in COMMANDS:
            wrong.append((command, "no such command"))
            continue
        known = _flags(COMMANDS[command])
        wrong += [
            (command, flag) for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest) if flag not in known
        ]
    assert not wrong


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: exray " + command)
