"""The `./lab mutate` report (harness/mutation.py), fed fabricated mutmut meta files."""

from __future__ import annotations

import fnmatch
import io
import json
import os
from pathlib import Path

import pytest
from mutmut.stats import status_by_exit_code

from harness import mutation as mm

PLAN = "peer.transfer.plan"


def write_meta(
    mutants: Path,
    source: str,
    codes: dict[str, int | None],
    durations: dict[str, float] | None = None,
) -> None:
    """A meta file shaped like the ones mutmut 3.8 writes (mutation/data.py)."""
    meta = mutants / (source + ".meta")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(
        json.dumps(
            {
                "exit_code_by_key": codes,
                "hash_by_function_name": {},
                "type_check_error_by_key": {},
                "durations_by_key": durations or {},
                "estimated_durations_by_key": {},
            }
        )
    )


@pytest.fixture
def mutants(tmp_path: Path) -> Path:
    root = tmp_path / "mutants"
    write_meta(
        root,
        "peer/transfer/plan.py",
        {
            f"{PLAN}.x_chunks_of__mutmut_1": 1,  # killed
            f"{PLAN}.x_chunks_of__mutmut_2": 0,  # survived
            f"{PLAN}.x_chunks_of__mutmut_10": 0,  # survived, listed equivalent below
            f"{PLAN}.xǁSchedulerǁbusy__mutmut_1": -24,  # SIGXCPU: timeout
            f"{PLAN}.xǁSchedulerǁbusy__mutmut_2": 33,  # no tests
            f"{PLAN}.xǁSchedulerǁbusy__mutmut_3": None,  # not checked
            f"{PLAN}.xǁSchedulerǁbusy__mutmut_4": -11,  # segfault
        },
        {f"{PLAN}.x_chunks_of__mutmut_1": 0.25, f"{PLAN}.x_chunks_of__mutmut_2": 0.75},
    )
    write_meta(root, "peer/paths.py", {"peer.paths.x_check_game_id__mutmut_1": 1})
    write_meta(root, "peer/transfer/__init__.py", {"peer.transfer.x_helper__mutmut_1": 3})
    write_meta(root, "peer/errors.py", {})  # no functions, no mutants
    return root


def test_every_mutmut_status_has_a_column() -> None:
    """If a mutmut upgrade adds a status, this fails instead of the report guessing."""
    assert set(status_by_exit_code.values()) <= set(mm.COLUMN_BY_STATUS)
    assert set(mm.COLUMN_BY_STATUS.values()) <= set(mm.COLUMNS)


@pytest.mark.parametrize(
    ("code", "column"),
    [
        (1, mm.KILLED),
        (3, mm.KILLED),
        (37, mm.KILLED),
        (0, mm.SURVIVED),
        (5, mm.NO_TESTS),
        (33, mm.NO_TESTS),
        (36, mm.TIMEOUT),
        (-24, mm.TIMEOUT),
        (152, mm.TIMEOUT),
        (35, mm.SUSPICIOUS),
        (-9, mm.SUSPICIOUS),
        (77, mm.SUSPICIOUS),  # not in mutmut's table: its default is "suspicious"
        (None, mm.NOT_RUN),
        (34, mm.NOT_RUN),
        (2, mm.NOT_RUN),
    ],
)
def test_exit_codes_map_through_mutmuts_table(code: int | None, column: str) -> None:
    assert mm.column_of(code) == column


def test_unknown_code_does_not_grow_mutmuts_table() -> None:
    before = dict(status_by_exit_code)
    mm.status_of(12345)
    assert dict(status_by_exit_code) == before


def test_module_names_come_from_meta_paths(mutants: Path) -> None:
    results = mm.load_results(mutants)
    assert sorted(results) == ["peer.paths", "peer.transfer", PLAN]  # errors.py has no mutants
    assert results["peer.transfer"].exit_codes == {"peer.transfer.x_helper__mutmut_1": 3}


def test_counts_score_and_survivors(mutants: Path) -> None:
    report = mm.score(mm.load_results(mutants), {})
    plan = next(r for r in report.rows if r.module == PLAN)
    assert plan.total == 7
    assert dict(plan.counts) == {
        mm.KILLED: 1,
        mm.SURVIVED: 2,
        mm.TIMEOUT: 1,
        mm.NO_TESTS: 1,
        mm.NOT_RUN: 1,
        mm.SUSPICIOUS: 1,
    }
    # (killed 1 + timeout 1) / (7 mutants - 1 not run)
    assert plan.score == pytest.approx(100 * 2 / 6)
    assert [name for name, _ in plan.undetected] == [
        f"{PLAN}.x_chunks_of__mutmut_2",
        f"{PLAN}.x_chunks_of__mutmut_10",  # natural order: 2 before 10
        f"{PLAN}.xǁSchedulerǁbusy__mutmut_2",
        f"{PLAN}.xǁSchedulerǁbusy__mutmut_4",
    ]
    assert sorted(plan.durations) == [0.25, 0.75]
    assert report.total.total == 9
    assert report.total.score == pytest.approx(100 * 4 / 8)
    assert report.stale == []


def test_equivalents_score_as_killed_and_stale_entries_are_named(mutants: Path) -> None:
    equivalents = {
        f"{PLAN}.x_chunks_of__mutmut_10": "min() with equal arguments",
        f"{PLAN}.xǁSchedulerǁbusy__mutmut_2": "only reached through a subprocess",
        f"{PLAN}.x_chunks_of__mutmut_1": "wrongly listed: a test kills it",
        "peer.gone.x_f__mutmut_1": "its function was deleted",
    }
    report = mm.score(mm.load_results(mutants), equivalents)
    plan = next(r for r in report.rows if r.module == PLAN)
    assert plan.counts[mm.EQUIVALENT] == 2
    assert plan.counts[mm.SURVIVED] == 1 and plan.counts[mm.NO_TESTS] == 0
    assert plan.counts[mm.KILLED] == 1  # a listed but killed mutant stays killed
    assert plan.score == pytest.approx(100 * 4 / 6)
    assert plan.equivalents == [
        f"{PLAN}.x_chunks_of__mutmut_10",
        f"{PLAN}.xǁSchedulerǁbusy__mutmut_2",
    ]
    assert [s.split(":")[0] for s in report.stale] == [
        "peer.gone.x_f__mutmut_1",
        f"{PLAN}.x_chunks_of__mutmut_1",
    ]


def test_equivalents_file(tmp_path: Path) -> None:
    path = tmp_path / "mutation-equivalents.toml"
    assert mm.load_equivalents(path) == {}
    path.write_text('"peer.paths.x_check_game_id__mutmut_7" = "same regex match"\n')
    assert mm.load_equivalents(path) == {"peer.paths.x_check_game_id__mutmut_7": "same regex match"}
    path.write_text('"peer.paths.x_check_game_id__mutmut_7" = " "\n')
    with pytest.raises(ValueError, match="reason"):
        mm.load_equivalents(path)


@pytest.mark.parametrize(
    ("arg", "glob"),
    [
        ("peer/transfer/plan.py", PLAN),
        ("peer/transfer/", "peer.transfer"),
        ("peer/transfer/__init__.py", "peer.transfer"),
        ("peer.paths", "peer.paths"),
        ("peer/transfer/*.py", "peer.transfer.*"),
    ],
)
def test_module_globs_accept_paths_and_dotted_names(arg: str, glob: str) -> None:
    assert mm.normalise_glob(arg) == glob


def test_selection_includes_submodules_and_matches_mutmuts_names() -> None:
    modules = ["peer.paths", "peer.transfer", PLAN, "peer.transport"]
    assert [m for m in modules if mm.selected(m, ["peer.transfer"])] == ["peer.transfer", PLAN]
    assert [m for m in modules if mm.selected(m, ["peer.tr*"])] == modules[1:]
    assert [m for m in modules if mm.selected(m, [])] == modules
    # mutmut matches the patterns against mutant names with fnmatch
    patterns = mm.mutmut_patterns(["peer.transfer", "peer.paths"])
    names = [
        f"{PLAN}.xǁSchedulerǁbusy__mutmut_1",
        "peer.transfer.x_helper__mutmut_1",
        "peer.paths.x_check_game_id__mutmut_1",
        "peer.transport.x_send__mutmut_1",
    ]
    assert [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)] == names[:3]


def test_report_is_filtered_by_module(mutants: Path) -> None:
    report = mm.score(mm.load_results(mutants), {}, ["peer.paths"])
    assert [r.module for r in report.rows] == ["peer.paths"]
    assert report.total.score == 100.0


def test_render_table_survivor_cap_and_equivalents(mutants: Path) -> None:
    equivalents = {f"{PLAN}.x_chunks_of__mutmut_10": "min() with equal arguments"}
    report = mm.score(mm.load_results(mutants), equivalents)
    text = mm.render(report, equivalents, show=2, equivalents_name="mutation-equivalents.toml")
    lines = text.splitlines()
    assert lines[0].split() == [
        "module",
        "mutants",
        "killed",
        "equiv",
        "survived",
        "timeout",
        "suspicious",
        "no",
        "tests",
        "not",
        "run",
        "score",
    ]
    rows = [line.split() for line in lines[2:5]]
    assert [r[0] for r in rows] == ["peer.paths", "peer.transfer", PLAN]  # sorted
    assert rows[2] == [PLAN, "7", "1", "1", "1", "1", "1", "1", "1", "50.0%"]
    assert lines[6].split() == ["total", "9", "3", "1", "1", "1", "1", "1", "1", "62.5%"]
    assert f"    {PLAN}.x_chunks_of__mutmut_2" in lines
    assert f"    {PLAN}.xǁSchedulerǁbusy__mutmut_2  [no tests]" in lines
    assert "    ... and 1 more" in lines
    assert "mutmut show NAME" in text
    assert f"  {PLAN}.x_chunks_of__mutmut_10: min() with equal arguments" in lines
    assert "one mutant's test run: 0.500 s on average, 0.750 s at most (2 timed)" in text


def test_render_without_results() -> None:
    assert "no mutation results" in mm.render(mm.Report([], mm.ModuleScore("total"), []), {})


def test_stream_echoes_until_mutmuts_per_mutant_list(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"progress\r99/99\n2.0 mutations/second\n\nMutant results\n--\nx\n")
    log = io.BytesIO()
    echoed: list[str] = []
    fd = os.open(out, os.O_RDONLY)
    try:
        mm._stream(fd, log, echoed.append)
    finally:
        os.close(fd)
    assert log.getvalue() == out.read_bytes()
    assert "".join(echoed) == "progress\r99/99\n2.0 mutations/second\n\n"


def test_main_report(mutants: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = mutants.parent / "none.toml"
    argv = ["report", "peer/paths.py", "--mutants-dir", str(mutants), "--equivalents", str(missing)]
    assert mm.main(argv) == 0
    out = capsys.readouterr().out
    assert "peer.paths" in out and PLAN not in out
    assert mm.main(["report", "--mutants-dir", str(mutants.parent / "empty")]) == 1
