"""Rules about the code itself: imports run one way, every error has a status."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from ledger import errors
from ledger.config import REPO_ROOT
from ledger.http.errors import STATUS_OF

PACKAGE = REPO_ROOT / "ledger"
HTTP_ONLY = ("falcon", "jwt", "uvicorn")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_only_the_http_layer_and_the_entry_point_import_falcon_jwt_or_uvicorn() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("http/") or relative == "__main__.py":
            continue
        for module in imported_modules(path):
            assert module.split(".")[0] not in HTTP_ONLY, f"{relative} imports {module}"
            assert not module.startswith("ledger.http"), f"{relative} imports {module}"


def test_event_types_import_neither_the_database_nor_http() -> None:
    for module in imported_modules(PACKAGE / "events" / "types.py"):
        assert module.split(".")[0] not in ("psycopg", "psycopg_pool", *HTTP_ONLY)


def test_projections_and_events_do_not_import_commands() -> None:
    for folder in ("events", "projections"):
        for path in (PACKAGE / folder).rglob("*.py"):
            assert "ledger.commands" not in imported_modules(path), path


def test_every_ledger_error_has_an_http_status() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.LedgerError) and cls is not errors.LedgerError
    }
    assert defined == set(STATUS_OF)
    assert all(400 <= status < 500 for status in STATUS_OF.values())
    codes = [cls.code for cls in defined]
    assert len(codes) == len(set(codes)), "error codes must be unique"


def readme_command(number: int) -> str:
    """Return the shell command under '# <number>.' in the README's first code block."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith(f"# {number}."))
    return lines[marker + 1].strip()


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    command = readme_command(2)
    assert "pytest" in command
    assert command in (REPO_ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_start_command_serves() -> None:
    assert readme_command(1).endswith("ledger serve")
