"""`./lab mutate`: run mutmut over peer/ and print the mutation score per module.

mutmut 3 copies the project into ``mutants/``, mutates it there and records one exit code per
mutant in ``mutants/<source path>.meta`` (JSON: ``exit_code_by_key``, ``durations_by_key``). The
report reads those files and classifies each code with mutmut's own table
(``mutmut.stats.status_by_exit_code``) instead of a copy of it:

========================================  ==========  ====================================
mutmut status                             column      counts for the score
========================================  ==========  ====================================
killed, caught by type check              killed      yes
timeout (the tests hung or ran away)      timeout     yes
survived                                  survived    no
no tests (no fast test reaches the code)  no tests    no
suspicious, segfault (a crash signal)     suspicious  no
not checked, skipped, interrupted         not run     left out of the denominator
========================================  ==========  ====================================

A mutant that no test can tell apart from the original is recorded in
``mutation-equivalents.toml`` at the repo root, one ``"mutant name" = "reason"`` per line. A
recorded mutant that survived (or has no tests, or is suspicious) is reported as ``equiv`` and
scores like a killed one; an entry that a test did kill, or that names no current mutant (mutmut
numbers mutants per function, so an edit can renumber them), is reported as stale.

Score = (killed + timeout + equiv) / (mutants - not run).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_DIR = ROOT / "mutants"
EQUIVALENTS_FILE = ROOT / "mutation-equivalents.toml"
RUN_LOG = "mutmut-run.log"
# mutmut's error when pytest cannot find a test it recorded (pytest exit code 4).
UNSTABLE_IDS_SIGN = "BadTestExecutionCommandsException"
UNSTABLE_IDS_HINT = (
    "[mutate] pytest refused mutmut's command (exit 4), most often because tests it had recorded "
    "were not found: mutmut collects the tests more than once in one process, and a parametrize "
    "with ids= whose generated ids hold escapes (\\n, \\xff) gets other ids the second time. "
    "Give it explicit ASCII ids, or --deselect it in [tool.mutmut] of pyproject.toml."
)

KILLED = "killed"
EQUIVALENT = "equiv"
SURVIVED = "survived"
TIMEOUT = "timeout"
SUSPICIOUS = "suspicious"
NO_TESTS = "no tests"
NOT_RUN = "not run"
COLUMNS = (KILLED, EQUIVALENT, SURVIVED, TIMEOUT, SUSPICIOUS, NO_TESTS, NOT_RUN)
DETECTED = frozenset({KILLED, TIMEOUT})
# Statuses an equivalents entry may turn into EQUIVALENT: the tests did not tell it apart.
UNDETECTED = frozenset({SURVIVED, NO_TESTS, SUSPICIOUS})

# Every status name in mutmut's table (3.8), by report column.
COLUMN_BY_STATUS: Mapping[str, str] = {
    "killed": KILLED,
    "caught by type check": KILLED,
    "timeout": TIMEOUT,
    "survived": SURVIVED,
    "no tests": NO_TESTS,
    "suspicious": SUSPICIOUS,
    "segfault": SUSPICIOUS,
    "not checked": NOT_RUN,
    "skipped": NOT_RUN,
    "check was interrupted by user": NOT_RUN,
}

_NATURAL = re.compile(r"(\d+)")


def status_of(exit_code: int | None) -> str:
    """mutmut's status for a recorded exit code; codes it does not list are "suspicious"."""
    return status_by_exit_code.get(exit_code, "suspicious")


def column_of(exit_code: int | None) -> str:
    """The report column of a recorded exit code (an unknown status is suspicious)."""
    return COLUMN_BY_STATUS.get(status_of(exit_code), SUSPICIOUS)


def natural_key(name: str) -> list[object]:
    """Sort key that puts ``f__mutmut_2`` before ``f__mutmut_10``."""
    return [int(part) if part.isdigit() else part for part in _NATURAL.split(name)]


# --------------------------------------------------------------------------- reading results


@dataclass(frozen=True)
class ModuleData:
    """What mutmut recorded for one source file."""

    module: str
    exit_codes: dict[str, int | None]
    durations: dict[str, float]


def module_of_meta(meta: Path, mutants_dir: Path) -> str:
    """``mutants/peer/transfer/plan.py.meta`` -> ``peer.transfer.plan`` (a package's own
    ``__init__.py`` gives the package name, as in mutmut's mutant names)."""
    parts = list(meta.relative_to(mutants_dir).with_suffix("").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_results(mutants_dir: Path) -> dict[str, ModuleData]:
    """Every module mutmut generated mutants for, by dotted name (modules with none are left
    out)."""
    results: dict[str, ModuleData] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        raw = json.loads(meta.read_text("utf-8"))
        exit_codes = dict(raw.get("exit_code_by_key", {}))
        if not exit_codes:
            continue
        module = module_of_meta(meta, mutants_dir)
        durations = {k: float(v) for k, v in raw.get("durations_by_key", {}).items()}
        results[module] = ModuleData(module, exit_codes, durations)
    return results


def load_equivalents(path: Path) -> dict[str, str]:
    """The recorded equivalent mutants, name -> reason; a missing file records none."""
    if not path.exists():
        return {}
    raw = tomllib.loads(path.read_text("utf-8"))
    bad = [k for k, v in raw.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{path.name}: every entry needs a reason string; not so for {bad}")
    return {k: str(v) for k, v in raw.items()}


# --------------------------------------------------------------------------- selection


def normalise_glob(arg: str) -> str:
    """A MODULE_GLOB as a dotted pattern: ``peer/transfer/plan.py``, ``peer/transfer/`` and
    ``peer.transfer.plan`` all work; fnmatch wildcards are kept."""
    glob = arg.strip().removesuffix(".py").strip("/").replace("/", ".")
    glob = glob.removesuffix(".__init__")
    if not glob:
        raise ValueError(f"empty module glob {arg!r}")
    return glob


def selected(module: str, globs: Sequence[str]) -> bool:
    """Does a module match a glob, as itself or as part of a matching package?"""
    if not globs:
        return True
    return any(
        fnmatch.fnmatchcase(module, g) or fnmatch.fnmatchcase(module, g + ".*") for g in globs
    )


def mutmut_patterns(globs: Sequence[str]) -> list[str]:
    """``mutmut run`` arguments for the globs. Mutant names are
    ``<module>.<function>__mutmut_<n>``, matched with fnmatch, so ``<glob>.*`` picks a module
    and its submodules."""
    return [g + ".*" for g in globs]


def source_modules(source_paths: Iterable[Path], root: Path) -> list[str]:
    """Dotted names of the Python modules under the source paths (for checking globs)."""
    modules = []
    for base in source_paths:
        for path in sorted((root / base).rglob("*.py")):
            modules.append(normalise_glob(str(path.relative_to(root))))
    return modules


# --------------------------------------------------------------------------- scoring


@dataclass
class ModuleScore:
    """One row of the table."""

    module: str
    counts: Counter[str] = field(default_factory=Counter)
    undetected: list[tuple[str, str]] = field(default_factory=list)  # (name, column)
    equivalents: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float | None:
        """Percentage of the run mutants that were killed or recorded equivalent."""
        judged = self.total - self.counts[NOT_RUN]
        if judged == 0:
            return None
        good = sum(self.counts[c] for c in DETECTED) + self.counts[EQUIVALENT]
        return 100.0 * good / judged

    def add(self, other: ModuleScore) -> None:
        self.counts.update(other.counts)
        self.durations.extend(other.durations)


@dataclass
class Report:
    rows: list[ModuleScore]
    total: ModuleScore
    stale: list[str]  # problems with mutation-equivalents.toml entries


def score(
    results: Mapping[str, ModuleData], equivalents: Mapping[str, str], globs: Sequence[str] = ()
) -> Report:
    """Count each selected module's mutants by column, equivalents applied."""
    rows: list[ModuleScore] = []
    total = ModuleScore("total")
    for module in sorted(results):
        if not selected(module, globs):
            continue
        data = results[module]
        row = ModuleScore(module)
        for name in sorted(data.exit_codes, key=natural_key):
            column = column_of(data.exit_codes[name])
            if name in equivalents and column in UNDETECTED:
                row.equivalents.append(name)
                column = EQUIVALENT
            elif column in UNDETECTED:
                row.undetected.append((name, column))
            row.counts[column] += 1
        # mutmut times each mutant's child when it forks from its own process (the default);
        # with process_isolation = "forkserver" it records 0.0.
        row.durations = [d for d in data.durations.values() if d > 0]
        rows.append(row)
        total.add(row)
    known = {name: data.exit_codes[name] for data in results.values() for name in data.exit_codes}
    stale = []
    for name in sorted(equivalents, key=natural_key):
        if name not in known:
            stale.append(f"{name}: no such mutant (gone, or renumbered by an edit)")
        elif column_of(known[name]) in DETECTED:
            stale.append(f"{name}: a test kills it, so it is not equivalent; drop the entry")
    return Report(rows, total, stale)


# --------------------------------------------------------------------------- rendering


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def render(
    report: Report, equivalents: Mapping[str, str], show: int = 20, equivalents_name: str = ""
) -> str:
    """The table, then the mutants that count against the score (at most `show` per module),
    then the recorded equivalents and any stale entries."""
    if not report.rows:
        return "no mutation results for these modules (run ./lab mutate first)\n"
    headers = ("module", "mutants", *COLUMNS, "score")
    table = [
        [r.module, str(r.total), *(str(r.counts[c]) for c in COLUMNS), _pct(r.score)]
        for r in [*report.rows, report.total]
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in table[:-1]]
    out += [line(["-" * w for w in widths]), line(table[-1])]

    with_survivors = [r for r in report.rows if r.undetected]
    if with_survivors:
        out += [
            "",
            f"not killed (first {show} per module; `.venv/bin/mutmut show NAME` diffs one):",
        ]
        for r in with_survivors:
            out.append(f"  {r.module} ({len(r.undetected)})")
            for name, column in r.undetected[:show]:
                out.append(f"    {name}" + ("" if column == SURVIVED else f"  [{column}]"))
            if len(r.undetected) > show:
                out.append(f"    ... and {len(r.undetected) - show} more")
    recorded = [name for r in report.rows for name in r.equivalents]
    if recorded:
        out += ["", f"recorded equivalent ({equivalents_name or 'equivalents file'}):"]
        out += [f"  {name}: {equivalents[name]}" for name in recorded]
    if report.stale:
        out += ["", f"stale entries in {equivalents_name or 'the equivalents file'}:"]
        out += [f"  {problem}" for problem in report.stale]
    durations = report.total.durations
    if durations:
        mean = sum(durations) / len(durations)
        out += [
            "",
            f"one mutant's test run: {mean:.3f} s on average, {max(durations):.3f} s at most "
            f"({len(durations)} timed)",
        ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- running mutmut


def _stream(source: int, log: IO[bytes], echo: Callable[[str], None]) -> None:
    """Copy mutmut's output (file descriptor `source`) to the log, echoing it up to its list
    of every selected mutant's result, which the report replaces."""
    mark = "Mutant results"
    tail = ""
    muted = False
    while chunk := os.read(source, 4096):
        log.write(chunk)
        if muted:
            continue
        text = tail + chunk.decode("utf-8", "replace")
        cut = text.find(mark)
        if cut >= 0:
            echo(text[len(tail) : max(cut, len(tail))])
            muted = True
        else:
            echo(text[len(tail) :])
            tail = text[-len(mark) :]


def run_mutmut(patterns: Sequence[str], max_children: int) -> tuple[int, float]:
    """`mutmut run` in the repo root (it works in ./mutants); returns its exit code and wall
    seconds. Its whole output also goes to mutants/mutmut-run.log."""
    mutmut = Path(sys.executable).with_name("mutmut")
    argv = [str(mutmut), "run", "--max-children", str(max_children), *patterns]
    print(f"[mutate] mutmut {' '.join(argv[1:])}", flush=True)
    MUTANTS_DIR.mkdir(exist_ok=True)
    started = time.monotonic()
    with (
        open(MUTANTS_DIR / RUN_LOG, "wb") as log,
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc,
    ):
        assert proc.stdout is not None

        def echo(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        try:
            _stream(proc.stdout.fileno(), log, echo)
            code = proc.wait()
        except KeyboardInterrupt:  # mutmut got the SIGINT too: let it save and stop
            code = proc.wait()
    return code, time.monotonic() - started


def _source_paths() -> list[Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return [Path(p) for p in config.get("tool", {}).get("mutmut", {}).get("source_paths", [])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.mutation",
        description="Mutation testing of peer/ with mutmut: run it, or report the last run.",
    )
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE_GLOB",
        help="modules to mutate/report, dotted or as paths, fnmatch wildcards allowed; a package "
        "includes its submodules (default: all of peer/)",
    )
    parser.add_argument(
        "--max-children",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="mutants tested at once (default: one per CPU)",
    )
    parser.add_argument("--show", type=int, default=20, help="survivors listed per module")
    parser.add_argument(
        "--mutants-dir",
        type=Path,
        default=MUTANTS_DIR,
        help="read results from here (report only: mutmut run always uses ./mutants)",
    )
    parser.add_argument("--equivalents", type=Path, default=EQUIVALENTS_FILE)
    args = parser.parse_intermixed_args(argv)
    try:
        globs = [normalise_glob(m) for m in args.modules]
        equivalents = load_equivalents(args.equivalents)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        parser.error(str(exc))

    wall = None
    if args.command == "run":
        if args.mutants_dir != MUTANTS_DIR:
            parser.error("--mutants-dir is for report: mutmut run always uses ./mutants")
        known = source_modules(_source_paths(), ROOT)
        unknown = [g for g in globs if not any(selected(m, [g]) for m in known)]
        if unknown:
            parser.error(f"no module under the mutated sources matches {unknown}")
        code, wall = run_mutmut(mutmut_patterns(globs), args.max_children)
        if code != 0:
            print(
                f"\n[mutate] mutmut run failed (exit {code}); its output is in "
                f"{args.mutants_dir / RUN_LOG}",
                file=sys.stderr,
            )
            if UNSTABLE_IDS_SIGN in (args.mutants_dir / RUN_LOG).read_text("utf-8", "replace"):
                print(UNSTABLE_IDS_HINT, file=sys.stderr)
            return code

    report = score(load_results(args.mutants_dir), equivalents, globs)
    print()
    print(render(report, equivalents, args.show, args.equivalents.name), end="")
    if wall is not None:
        print(
            f"mutmut run: {wall:.1f} s wall, {args.max_children} at a time; "
            f"full output in {args.mutants_dir / RUN_LOG}"
        )
    return 0 if report.rows else 1


if __name__ == "__main__":
    sys.exit(main())
