"""Smoke test of the benchmark (bench/): its measuring functions on tiny tables, and its report.

The numbers mean nothing at these sizes; what is pinned down is that each measuring
function runs against a real server and returns a sane structure, so a full run
(minutes) does not fail at its end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db._schema import KEY_COLUMN, KEY_INDEX
from bench import core, report
from bench._workers import BATCHFLAG, SEED
from tests.conftest import connect

TINY_PLAN = core.Plan(warmup=2, reps=8, min_reps=2, budget_s=0.5, block=3, warmup_budget_s=0.2)
ROWS = 300


@pytest.fixture
def pair(server_url: URL) -> Iterator[core.Pair]:
    """A seed/batchflag pair of databases with ROWS rows each; dropped afterwards."""
    made = core.prepare_pair(server_url, ROWS, prefix=f"bft_bench_{uuid.uuid4().hex[:8]}")
    yield made
    made.drop()


def _columns(url: URL) -> set[str]:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'batchStatus'"
            )
            return {str(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()


def _assert_sane(summary: dict[str, float]) -> None:
    assert summary["n"] >= TINY_PLAN.min_reps
    assert 0 < summary["min_ms"] <= summary["median_ms"] <= summary["p99_ms"] <= summary["max_ms"]


class TestStatistics:
    def test_percentile_is_nearest_rank(self) -> None:
        """p99 of 1..100 is 99, of 1..10 it is the maximum; p50 of 1..4 is 2."""
        assert core.percentile(list(range(1, 101)), 0.99) == 99
        assert core.percentile(list(range(1, 11)), 0.99) == 10
        assert core.percentile([1, 2, 3, 4], 0.5) == 2

    def test_summarize_converts_ns_to_ms(self) -> None:
        """Samples in nanoseconds come back in milliseconds, with their count."""
        summary = core.summarize([3_000_000, 1_000_000, 2_000_000])
        assert summary == {
            "n": 3,
            "median_ms": 2.0,
            "p99_ms": 3.0,
            "mean_ms": 2.0,
            "min_ms": 1.0,
            "max_ms": 3.0,
        }


class TestInterleave:
    def test_each_operation_runs_warmup_then_reps(self) -> None:
        """Each operation runs its warm-up unmeasured, then exactly `reps` measured times."""
        calls = {"a": 0, "b": 0}

        def op(name: str) -> Any:
            def run() -> None:
                calls[name] += 1

            return run

        plan = core.Plan(warmup=3, reps=10, min_reps=1, budget_s=60, block=4)
        samples = core.interleave({"a": op("a"), "b": op("b")}, plan)
        assert {name: len(values) for name, values in samples.items()} == {"a": 10, "b": 10}
        assert calls == {"a": 13, "b": 13}

    def test_slow_operation_stops_at_its_budget(self) -> None:
        """An operation that has spent its budget stops at min_reps; a fast one goes on to reps."""
        plan = core.Plan(warmup=0, reps=50, min_reps=2, budget_s=0.01, block=1)
        samples = core.interleave({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, plan)
        assert len(samples["slow"]) == 2
        assert len(samples["fast"]) == 50


class TestLoading:
    def test_load_rows_in_chunks_gives_ids_one_to_n(self, db_url: URL) -> None:
        """A load in several chunks yields ids exactly 1..N, none current (what 10M rows use)."""
        migrate.upgrade(db_url, core.BASELINE)
        core.load_rows(core.connect_params(db_url), 2_500, chunk=1_000)
        conn = connect(db_url)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id), SUM(currentBatch) "
                    "FROM batchStatus"
                )
                assert cur.fetchone() == (2_500, 2_500, 1, 2_500, 0)
                cur.execute("SHOW TABLES LIKE '\\_bench\\_digits'")
                assert cur.fetchall() == ()
        finally:
            conn.close()


@pytest.mark.stress  # ~15 s: three pairs of databases, migrations, caller processes
class TestBenchmarkOnTinyTables:
    def test_pair_is_the_same_table_with_and_without_the_key(self, pair: core.Pair) -> None:
        """Both sides hold the same rows, one current; only the batchflag side has the key."""
        seed_columns = _columns(pair.url(SEED))
        batchflag_columns = _columns(pair.url(BATCHFLAG))
        assert batchflag_columns - seed_columns == {KEY_COLUMN}
        contents = {}
        for side in (SEED, BATCHFLAG):
            conn = connect(pair.url(side))
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT COUNT(*), MIN(id), MAX(id), "
                        "SUM(CRC32(CONCAT_WS(',', id, batchDate, batchNumber))) FROM batchStatus"
                    )
                    contents[side] = cur.fetchone()
            finally:
                conn.close()
            assert core.current_count(pair.params(side)) == 1
        assert contents[SEED][:3] == (ROWS, 1, ROWS)
        assert contents[BATCHFLAG] == contents[SEED]

    def test_migration_is_measured_with_a_concurrent_writer(self, pair: core.Pair) -> None:
        """The migration's duration and the writer's slowest write during it are recorded."""
        m = pair.migration
        assert m["duration_s"] > 0
        assert m["writer_ops_during"] >= 1
        assert m["max_stall_ms"] >= m["writer_median_ms"] > 0
        assert any("currentBatchKey" in s["statement"] for s in m["statements"])

    def test_measure_size_and_report(self, pair: core.Pair, tmp_path: Path) -> None:
        """Every operation gets positive latencies; the report computes every target's ratio."""
        measured = core.measure_size(pair, TINY_PLAN)
        assert set(measured["ops"]) == {
            "flip", "wrapper", "floor", "seed", "seed_one_txn",
            "lookup_key", "lookup_flag", "lookup_flag_keyed",
        }  # fmt: skip
        for summary in measured["ops"].values():
            _assert_sane(summary)
        assert measured["explain"]["lookup_key"][0]["key"] == KEY_INDEX
        assert measured["explain"]["lookup_flag"][0]["key"] is None
        # The flips left exactly one current row on the batchflag side.
        assert core.current_count(pair.params(BATCHFLAG)) == 1

        params = pair.params(SEED)
        server: dict[str, Any] = {
            "version": core.server_version(params),
            "server": core.server_info(params),
            "sizes": [ROWS],
            "latency": {str(ROWS): measured},
            "migration": {str(ROWS): pair.migration},
            "concurrency": None,
        }
        assert server["server"]["version"] == server["version"]
        results = {"meta": {"command": "test"}, "kinds": {"this-server": server}}
        targets = report.evaluate(server)
        assert len(targets) == 7  # six latency targets and the migration's
        for target in targets:
            assert target["ratio"] is not None
            assert target["ratio"] > 0
            assert target["passed"] in (True, False)
        markdown = report.render_markdown(results)
        assert "| flip close to the floor |" in markdown
        assert f"| {ROWS} |" in markdown
        assert "| `this-server` |" in markdown
        assert server["version"] in markdown
        page = tmp_path / "benchmark.md"
        page.write_text(
            f"# Page\n\nbefore\n\n{report.DOCS_START}\nold\n{report.DOCS_END}\n\nafter\n"
        )
        md_path, png_path = report.write_reports(results, tmp_path / "out", docs_page=page)
        assert md_path.read_text().startswith("# batchflag-db benchmark results")
        text = page.read_text()
        assert "old" not in text
        assert text.startswith("# Page\n\nbefore\n\n")
        assert text.endswith(f"{report.DOCS_END}\n\nafter\n")
        assert "### Targets" in text
        assert f"| {ROWS} |" in text
        if png_path is not None:  # matplotlib is optional for the tables
            assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_concurrent_callers_report_throughput_and_polls(self, pair: core.Pair) -> None:
        """Caller processes flip and a reader polls; batchflag's reader never sees other than one."""
        cells = core.measure_concurrency(pair, callers=(2,), duration_s=0.5)
        by = {cell["approach"]: cell for cell in cells}
        assert set(by) == {BATCHFLAG, SEED}
        for cell in cells:
            assert cell["flips_ok"] > 0
            assert cell["flips_per_s"] > 0
            assert cell["polls"] > 0
            assert sum(cell["poll_counts"].values()) == cell["polls"]
            _assert_sane(cell["latency"])
        assert by[BATCHFLAG]["bad_polls"] == 0
        assert by[BATCHFLAG]["errors"] == {}
        assert by[BATCHFLAG]["current_rows_after"] == 1


META_ONLY: dict[str, Any] = {"meta": {"command": "python -m bench.run --quick"}, "kinds": {}}


class TestDocsPage:
    """Where the report's tables go: the docs page between its markers, never README."""

    def test_tables_replace_only_the_marked_section(self, tmp_path: Path) -> None:
        """The text between the markers is replaced; the rest of the page stays as it was."""
        page = tmp_path / "benchmark.md"
        page.write_text(f"intro\n{report.DOCS_START}\nstale\n{report.DOCS_END}\noutro\n")
        assert report.update_docs_page(META_ONLY, page)
        text = page.read_text()
        assert "stale" not in text
        assert "python -m bench.run --quick" in text
        assert text.startswith(f"intro\n{report.DOCS_START}\n")
        assert text.endswith(f"{report.DOCS_END}\noutro\n")

    def test_page_without_markers_is_left_alone(self, tmp_path: Path) -> None:
        """A page without the markers is not changed, and the call says so."""
        page = tmp_path / "benchmark.md"
        page.write_text("no markers here\n")
        assert not report.update_docs_page(META_ONLY, page)
        assert page.read_text() == "no markers here\n"

    def test_target_is_the_docs_page_not_readme(self, tmp_path: Path) -> None:
        """A run written into bench/ updates docs/benchmark.md; one written elsewhere, nothing."""
        root = Path(report.__file__).resolve().parent.parent
        assert root / "docs" / "benchmark.md" == report.DOCS_PAGE
        assert report.DOCS_START in report.DOCS_PAGE.read_text()
        assert report.DOCS_START not in (root / "README.md").read_text()
        assert report.docs_page_for(root / "bench") == report.DOCS_PAGE
        assert report.docs_page_for(tmp_path) is None


def _summary(median_ms: float, n: int = 100) -> dict[str, float]:
    return {
        "n": n,
        "median_ms": median_ms,
        "p99_ms": median_ms * 2,
        "mean_ms": median_ms,
        "min_ms": median_ms / 2,
        "max_ms": median_ms * 3,
    }


def _synthetic_server(version: str, scale: float) -> dict[str, Any]:
    """One server's results at 1,000 and 1,000,000 rows, every number times ``scale``."""
    medians = {  # ms at (1k, 1M)
        "flip": (1.0, 1.5),
        "wrapper": (1.1, 1.6),
        "floor": (0.8, 1.2),
        "seed": (1.0, 300.0),
        "seed_one_txn": (1.0, 290.0),
        "lookup_key": (0.1, 0.1),
        "lookup_flag": (0.2, 100.0),
        "lookup_flag_keyed": (0.2, 110.0),
    }
    latency = {
        str(rows): {
            "ops": {op: _summary(pair[i] * scale) for op, pair in medians.items()},
            "explain": {"lookup_key": [{"type": "const", "key": KEY_INDEX, "rows": 1}]},
        }
        for i, rows in enumerate((1_000, 1_000_000))
    }
    cells = [
        {
            "approach": approach,
            "callers": callers,
            "flips_per_s": flips / scale,
            "errors": {"1213": 3} if approach == SEED and callers == 8 else {},
            "latency": _summary(callers * scale),
            "polls": 1000,
            "bad_polls": 0 if approach == BATCHFLAG else 600,
            "bad_poll_share": 0.0 if approach == BATCHFLAG else 0.6,
            "poll_counts": {"1": 1000} if approach == BATCHFLAG else {"0": 600, "1": 400},
        }
        for callers in (1, 8)
        for approach, flips in ((BATCHFLAG, 1000.0), (SEED, 800.0))
    ]
    migration = {
        "duration_s": 0.5 * scale,
        "max_stall_ms": 9.0 * scale,
        "writer_ops_during": 100,
        "writer_median_ms": 0.3,
        "writer_p99_ms": 1.0,
        "baseline_max_ms": 2.0,
    }
    return {
        "version": version,
        "server": {"version": version, "innodb_flush_log_at_trx_commit": "1"},
        "server_source": "synthetic",
        "sizes": [1_000, 1_000_000],
        "latency": latency,
        "migration": {"1000000": migration},
        "concurrency": {"rows": 1_000, "duration_s": 5.0, "results": cells},
    }


TWO_SERVERS: dict[str, Any] = {
    "meta": {"command": "python -m bench.run --kinds mariadb-10.11,mysql-9.7"},
    "kinds": {
        "mariadb-10.11": _synthetic_server("10.11.19-MariaDB", 1.0),
        "mysql-9.7": _synthetic_server("9.7.0", 2.0),
    },
}


class TestReportPerServer:
    """A run of several servers is reported side by side: a column per server in every table."""

    def test_every_table_has_a_column_per_server(self) -> None:
        """Each table's header names both kinds, in run order; each server has its own section rows."""
        markdown = report.render_markdown(TWO_SERVERS)
        headers = [
            line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line
        ]
        tables = [line for line in markdown.splitlines() if line.startswith("|") and "---" in line]
        assert len(tables) >= 15  # servers, ratios, targets, 8 latency, 4 concurrency, migration
        column_headers = [h for h in headers if "`mariadb-10.11`" in h]
        assert len(column_headers) == len(tables)
        for header in column_headers:
            assert header.index("`mariadb-10.11`") < header.index("`mysql-9.7`")
        assert "| `SELECT VERSION()` | 10.11.19-MariaDB | 9.7.0 |" in markdown

    def test_each_server_column_holds_its_own_numbers(self) -> None:
        """The second server's numbers (twice the first's) land in its own column."""
        markdown = report.render_markdown(TWO_SERVERS)
        assert "| 1,000,000 | 1.5 / 3 (100) | 3 / 6 (100) |" in markdown  # flip latency
        assert "| 8 | two statements | 800 (errors 1213: 3) | 400 (errors 1213: 3) |" in markdown
        assert (
            "| 1,000,000 | 0.50 s; 9.0 ms (2.0); 100 writes | 1.00 s; 18.0 ms (2.0); 100 writes |"
            in markdown
        )

    def test_key_ratios_are_per_server(self) -> None:
        """Each key ratio is computed from that server's medians, one cell per server."""
        markdown = report.render_markdown(TWO_SERVERS)
        assert "| two statements / flip at 1,000,000 rows | 200x | 200x |" in markdown
        assert "| two statements / flip at 1,000 rows | 1x | 1x |" in markdown
        assert "| flip / floor at 1,000,000 rows | 1.25x | 1.25x |" in markdown
        assert "| flip at 1,000,000 rows / flip at 1,000 rows | 1.5x | 1.5x |" in markdown
        assert "| lookup by flag / lookup by key at 1,000,000 rows | 1,000x | 1,000x |" in markdown
        assert (
            "| flips/s, 8 callers: batchflag / two statements (1,000 rows) "
            "| 1000 / 800 (1.25x) | 500 / 400 (1.25x) |" in markdown
        )

    def test_docs_page_gets_the_per_server_tables(self, tmp_path: Path) -> None:
        """The docs page's section holds every server's column, headings under the page's."""
        page = tmp_path / "benchmark.md"
        page.write_text(f"# Page\n\n## Last run\n\n{report.DOCS_START}\n{report.DOCS_END}\n")
        assert report.update_docs_page(TWO_SERVERS, page)
        text = page.read_text()
        assert "### Key ratios" in text
        assert "#### flip: `CALL set_current_batch`" in text
        assert "`mysql-9.7`" in text
        assert "\n## " not in text.split(report.DOCS_START)[1]

    def test_results_without_kinds_are_refused(self) -> None:
        """A results.json from before the per-server runs is refused with what to do."""
        with pytest.raises(ValueError, match=r"re-run `python -m bench\.run`"):
            report.render_markdown({"meta": {}, "latency": {}})
