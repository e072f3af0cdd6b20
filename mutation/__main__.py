"""`python -m mutation [all | python | sql] [NAME ...] [--report-only]`: run the mutants, report.

python: mutmut over the modules of [tool.mutmut] in pyproject.toml, at most two processes (NAME:
mutmut's mutant names or globs, e.g. 'ledger.money*'). sql: each mutant of mutation/sql_mutants.py
in turn (NAME: their names), in a copy of the repository whose definitions carry that one change.
Both use the fast tiers against LEDGER_TEST_DATABASE_URL's server. Mutants listed in
mutation/equivalent.toml are left out of the kill rate; the report names them.
Exit status: 0 when the kill rate is at least 90%, 1 below it, 2 when a mutant could not be run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mutation.sql_mutants import SQL_MUTANTS, SqlMutant

REPO_ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = REPO_ROOT / "mutation" / "equivalent.toml"
SQL_RESULTS_FILE = REPO_ROOT / "mutants" / "sql-mutants.json"  # beside mutmut's own results
KILL_RATE_MIN = 0.90
MAX_CHILDREN = 2  # the machines' two cores are shared
# A mutant that hangs a test (a lock never released, a loop that never ends) is stopped here and
# counted as a timeout; the slowest SQL mutant's tests take about two minutes.
SQL_TIMEOUT_S = 600
# pytest's exit statuses: 0 all passed, 1 some failed. Anything else (interrupted, internal
# error, a wrong command line, no test collected) says nothing about the mutant.
PYTEST_PASSED, PYTEST_FAILED = 0, 1
# mutmut's statuses that count as the tests noticing the mutant.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
# mutmut's status of a mutant not run yet (a run limited to some names, or stopped).
NOT_CHECKED = "not checked"


@dataclass
class Tally:
    """The outcome of one kind of mutant: status by mutant name."""

    kind: str
    status_by_name: dict[str, str] = field(default_factory=dict)
    equivalent: dict[str, str] = field(default_factory=dict)  # name: why
    seconds: float = 0.0

    def counted(self) -> dict[str, str]:
        """The mutants that count: run, and not equivalent."""
        return {
            name: status
            for name, status in self.status_by_name.items()
            if name not in self.equivalent and status != NOT_CHECKED
        }

    def detected(self) -> int:
        return sum(status in DETECTED for status in self.counted().values())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("all", "python", "sql"), default="all")
    parser.add_argument("names", nargs="*", help="only these mutants (mutmut's names or globs; SQL names)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the results the last runs left in mutants/",
    )
    args = parser.parse_args()
    if not args.report_only and not os.environ.get("LEDGER_TEST_DATABASE_URL"):
        sys.exit(
            "LEDGER_TEST_DATABASE_URL is not set: each mutant's test run would start an embedded "
            "PostgreSQL of its own. Point it at a server, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
        )
    equivalent = tomllib.loads(EQUIVALENT_FILE.read_text(encoding="utf-8"))
    tallies = []
    if args.what in ("all", "python"):
        tallies.append(run_python(args.names, equivalent.get("python", {}), args.report_only))
    if args.what in ("all", "sql"):
        sql = (
            last_sql_run(equivalent.get("sql", {}))
            if args.report_only
            else run_sql(args.names, equivalent.get("sql", {}))
        )
        tallies.append(sql)
    sys.exit(report(tallies))


# Python: mutmut -----------------------------------------------------------------------------


def run_python(names: list[str], equivalent: dict[str, str], report_only: bool = False) -> Tally:
    """Run mutmut and read its results. It keeps them in mutants/: without names, a second run
    runs only what it has no result for; named mutants run again."""
    started = time.monotonic()
    mutmut = [sys.executable, "-m", "mutmut"]
    if not report_only:
        subprocess.run(
            [*mutmut, "run", "--max-children", str(MAX_CHILDREN), *names], cwd=REPO_ROOT, check=True
        )
    listed = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout
    tally = Tally("python", seconds=time.monotonic() - started)
    for line in listed.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            tally.status_by_name[name] = status
    tally.equivalent = {name: why for name, why in equivalent.items() if name in tally.status_by_name}
    return tally


# SQL: the hand-written mutants --------------------------------------------------------------


def run_sql(names: list[str], equivalent: dict[str, str]) -> Tally:
    """Run each SQL mutant's tests in a copy of the repository whose definitions carry it."""
    mutants = [mutant for mutant in SQL_MUTANTS if not names or mutant.name in names]
    unknown = set(names) - {mutant.name for mutant in SQL_MUTANTS}
    if names and len(unknown) == len(names):
        unknown = set()  # the names were mutmut's, given to `all`
    stale = [f"{mutant.name}: {problem}" for mutant in mutants if (problem := stale_because(mutant))]
    if unknown or stale:
        sys.exit("SQL mutants that cannot run:\n  " + "\n  ".join(sorted(unknown) + stale))
    started = time.monotonic()
    tally = Tally("sql", equivalent={name: why for name, why in equivalent.items()})
    with tempfile.TemporaryDirectory(prefix="ledger-sql-mutants-") as temp:
        copy = Path(temp)
        copy_repository(copy)
        # The unchanged definitions must pass every test a mutant names, or a kill proves nothing.
        baseline = sorted({test for mutant in mutants for test in mutant.tests})
        if baseline and (outcome := run_tests(copy, baseline, show_failures=True)) != "survived":
            sys.exit(
                f"the SQL mutants' tests on the unchanged definitions: {outcome}, not passed. Fix that first"
            )
        for mutant in mutants:
            definitions = copy / "sql" / "definitions" / mutant.file
            original = definitions.read_text(encoding="utf-8")
            definitions.write_text(original.replace(mutant.original, mutant.replacement), encoding="utf-8")
            try:
                tally.status_by_name[mutant.name] = run_tests(copy, list(mutant.tests))
            finally:
                definitions.write_text(original, encoding="utf-8")
            print(f"sql mutant {mutant.name}: {tally.status_by_name[mutant.name]}", flush=True)
    tally.equivalent = {name: why for name, why in tally.equivalent.items() if name in tally.status_by_name}
    tally.seconds = time.monotonic() - started
    SQL_RESULTS_FILE.parent.mkdir(exist_ok=True)
    SQL_RESULTS_FILE.write_text(
        json.dumps({"seconds": tally.seconds, "status_by_name": tally.status_by_name})
    )
    return tally


def last_sql_run(equivalent: dict[str, str]) -> Tally:
    """Return the results the last SQL run left in mutants/."""
    if not SQL_RESULTS_FILE.is_file():
        sys.exit(f"no SQL run has left results in {SQL_RESULTS_FILE.relative_to(REPO_ROOT)}")
    last = json.loads(SQL_RESULTS_FILE.read_text())
    tally = Tally("sql", last["status_by_name"], seconds=last["seconds"])
    tally.equivalent = {name: why for name, why in equivalent.items() if name in tally.status_by_name}
    return tally


def stale_because(mutant: SqlMutant) -> str | None:
    """Return why the mutant no longer applies to its file, or None when it does."""
    path = REPO_ROOT / "sql" / "definitions" / mutant.file
    if not path.is_file():
        return f"no file {path.relative_to(REPO_ROOT)}"
    occurrences = path.read_text(encoding="utf-8").count(mutant.original)
    if occurrences != 1:
        return f"its original text occurs {occurrences} times in {mutant.file}, not once"
    if mutant.original == mutant.replacement:
        return "its replacement is its original"
    if not mutant.tests:
        return "it names no tests"
    return None


def copy_repository(target: Path) -> None:
    """Copy what the tests read (the package, the tests, sql/ and the files of also_copy)."""
    also_copy = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["also_copy"]
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis")
    for name in ("ledger", "tests", "pyproject.toml", *also_copy):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    # `python -m pytest` puts its working directory first on sys.path: the copy's package is the
    # one imported, not the editable install's. Checked, since every result depends on it.
    found = subprocess.run(
        [sys.executable, "-c", "import ledger.config; print(ledger.config.REPO_ROOT)"],
        cwd=target,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if Path(found).resolve() != target.resolve():
        sys.exit(f"the copy in {target} imports the package from {found}")


def run_tests(copy: Path, tests: list[str], show_failures: bool = False) -> str:
    """Run tests in the copy: 'killed' if one fails, 'survived' if all pass, 'timeout'."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    with subprocess.Popen(
        command, cwd=copy, start_new_session=True, stdout=subprocess.PIPE, text=True
    ) as run:
        try:
            output, _ = run.communicate(timeout=SQL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
            return "timeout"
    if run.returncode == PYTEST_PASSED:
        return "survived"
    if run.returncode == PYTEST_FAILED:
        if show_failures:
            print(output)
        return "killed"
    print(output)
    sys.exit(f"pytest ended with status {run.returncode} on {' '.join(tests)}: the mutant was not tested")


# The report ---------------------------------------------------------------------------------


def report(tallies: list[Tally]) -> int:
    """Print what each kind of mutant did and the kill rate; return the exit status."""
    detected = counted = 0
    for tally in tallies:
        statuses = Counter(tally.status_by_name.values())
        print(f"\n== {tally.kind} mutants: {len(tally.status_by_name)} in {tally.seconds / 60:.1f} min")
        print("   " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
        run_equivalent = [name for name in tally.equivalent if tally.status_by_name[name] != NOT_CHECKED]
        print(f"   equivalent, of those run (listed in mutation/equivalent.toml): {len(run_equivalent)}")
        if statuses[NOT_CHECKED]:
            print(f"   not run, so not counted below: {statuses[NOT_CHECKED]}")
        killed_equivalent = [n for n in tally.equivalent if tally.status_by_name[n] in DETECTED]
        for name in killed_equivalent:
            print(f"   listed as equivalent but killed, remove it from the list: {name}")
        if tally.kind == "sql":
            for name, status in tally.status_by_name.items():
                print(f"   {name}: {status}{' (equivalent)' if name in tally.equivalent else ''}")
        survivors = [name for name, status in tally.counted().items() if status not in DETECTED]
        for name in survivors:
            print(f"   not killed: {name} ({tally.status_by_name[name]})")
        print(f"   killed {tally.detected()} of {len(tally.counted())} non-equivalent mutants run")
        detected += tally.detected()
        counted += len(tally.counted())
    if not counted:
        print("\nno mutant was run")
        return 2
    rate = detected / counted
    print(f"\nkill rate: {detected}/{counted} non-equivalent mutants = {rate:.1%} (timeouts count as killed)")
    return 0 if rate >= KILL_RATE_MIN else 1


if __name__ == "__main__":
    main()
