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
# The edge of the house: the HTTP layer, the uvicorn glue and the command line. Only they may
# import HTTP_ONLY's libraries or one another.
EDGE = ("http/", "server/", "cli.py")
EDGE_MODULES = ("ledger.http", "ledger.server", "ledger.cli")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def edge_imports_below_the_edge(package: Path) -> list[str]:
    """Return "<module> imports <name>" for each import of HTTP_ONLY or of the edge by a module of
    package that is not at the edge (`__main__.py` only calls the command line)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(EDGE) or relative == "__main__.py":
            continue
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in HTTP_ONLY or module.startswith(EDGE_MODULES):
                found.append(f"{relative} imports {module}")
    return found


def test_only_the_http_layer_the_server_and_the_cli_import_falcon_jwt_or_uvicorn() -> None:
    assert edge_imports_below_the_edge(PACKAGE) == []


def test_the_import_rule_sees_falcon_imported_below_http(tmp_path: Path) -> None:
    for relative, source in {
        "commands.py": "import falcon\n",
        "projections/accounts.py": "from ledger.server import workers\n",
        "http/app.py": "import falcon.asgi\n",
        "server/workers.py": "import uvicorn\n",
        "cli.py": "from ledger.server import workers\n",
    }.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(source)
    assert edge_imports_below_the_edge(tmp_path) == [
        "commands.py imports falcon",
        "projections/accounts.py imports ledger.server",
    ]


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
