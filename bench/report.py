"""Turn ``bench/results.json`` into ``results.md`` (tables, targets) and ``latency.png``.

``python -m bench.report [results.json] [--out DIR]`` regenerates both from a saved run;
``bench.run`` calls :func:`write_reports` at the end of every run. A run written into
``bench/`` itself (the default) also replaces the tables of the docs page
``docs/benchmark.md`` between its markers; README is never written.

A run measures several servers (``kinds`` in the JSON: kind -> that server's results);
every table has a column per server, so the same number on each server sits side by
side. :func:`evaluate` judges one server's results against the targets.

"seed" in the JSON is the two-statement flip the library replaces (two autocommit
UPDATEs on a table at revision 0001); the report calls it that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ONE_MILLION = 1_000_000

LATENCY_COLUMNS = (
    ("flip", "flip: `CALL set_current_batch`"),
    ("wrapper", "flip: Python wrapper"),
    ("floor", "floor: 2-row txn"),
    ("seed", "two statements: 2 autocommit stmts"),
    ("seed_one_txn", "two statements: same, 1 txn"),
    ("lookup_key", "lookup by key"),
    ("lookup_flag", "lookup by flag (plain table)"),
    ("lookup_flag_keyed", "lookup by flag (keyed table)"),
)


def _sizes(results: dict[str, Any]) -> list[int]:
    return sorted(int(size) for size in results.get("latency", {}))


def _median(results: dict[str, Any], rows: int, op: str) -> float:
    return float(results["latency"][str(rows)]["ops"][op]["median_ms"])


def _target(
    name: str,
    *,
    rule: str,
    measured: str,
    ratio: float | None,
    limit: float,
    at_most: bool,
) -> dict[str, Any]:
    passed = None if ratio is None else (ratio <= limit if at_most else ratio >= limit)
    return {
        "target": name,
        "rule": rule,
        "measured": measured,
        "ratio": ratio,
        "limit": limit,
        "at_most": at_most,
        "passed": passed,
    }


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Check each benchmark target against one server's results; ratios are of medians.

    The targets are stated at 1M rows; a run without 1M rows (``--quick``) is judged
    at its largest size, and each rule says which size it used.
    """
    sizes = _sizes(results)
    if not sizes:
        return []
    big = ONE_MILLION if ONE_MILLION in sizes else sizes[-1]
    small = sizes[0]
    at = f"{big:,} rows"

    def med(op: str, rows: int = big) -> float:
        return _median(results, rows, op)

    flip, floor = med("flip"), med("floor")
    targets = [
        _target(
            "flip close to the floor",
            rule=f"flip / floor <= 1.3 at {at}",
            measured=f"{flip:.3f} ms vs {floor:.3f} ms",
            ratio=flip / floor,
            limit=1.3,
            at_most=True,
        ),
        _target(
            "flip beats the two statements",
            rule=f"two statements / flip >= 400 at {at}",
            measured=f"{med('seed'):.3f} ms vs {flip:.3f} ms",
            ratio=med("seed") / flip,
            limit=400,
            at_most=False,
        ),
        _target(
            "lookup beats the scan",
            rule=f"lookup by flag / lookup by key >= 500 at {at}",
            measured=f"{med('lookup_flag'):.3f} ms vs {med('lookup_key'):.3f} ms",
            ratio=med("lookup_flag") / med("lookup_key"),
            limit=500,
            at_most=False,
        ),
        _target(
            "the user's Verification query is indexed",
            rule=f"Verification query, plain table / migrated table >= 300 at {at}",
            measured=f"{med('lookup_flag'):.3f} ms vs {med('lookup_flag_keyed'):.3f} ms",
            ratio=med("lookup_flag") / med("lookup_flag_keyed"),
            limit=300,
            at_most=False,
        ),
        _target(
            "flip flat in table size",
            rule=f"flip at {at} / flip at {small:,} rows <= 1.3",
            measured=f"{flip:.3f} ms vs {med('flip', small):.3f} ms",
            ratio=flip / med("flip", small),
            limit=1.3,
            at_most=True,
        ),
        _target(
            "wrapper close to a bare CALL",
            rule=f"wrapper / bare CALL <= 1.2 at {at}",
            measured=f"{med('wrapper'):.3f} ms vs {flip:.3f} ms",
            ratio=med("wrapper") / flip,
            limit=1.2,
            at_most=True,
        ),
    ]
    concurrency = results.get("concurrency")
    if concurrency and concurrency.get("results"):
        cells = concurrency["results"]
        most = max(cell["callers"] for cell in cells)
        by = {cell["approach"]: cell for cell in cells if cell["callers"] == most}
        ours, seed = by.get("batchflag"), by.get("seed")
        where = f"{most} callers, {concurrency['rows']:,} rows"
        if ours and seed:
            targets.append(
                _target(
                    "throughput under concurrency",
                    rule=f"batchflag flips/s / two-statement flips/s >= 1 ({where})",
                    measured=f"{ours['flips_per_s']:.0f}/s vs {seed['flips_per_s']:.0f}/s",
                    ratio=ours["flips_per_s"] / seed["flips_per_s"]
                    if seed["flips_per_s"]
                    else None,
                    limit=1.0,
                    at_most=False,
                )
            )
        if ours:
            share = ours["bad_poll_share"]
            seed_share = seed["bad_poll_share"] if seed else None
            targets.append(
                _target(
                    "a reader always sees exactly one current",
                    rule=f"share of polls not exactly one = 0 ({where})",
                    measured=f"{ours['bad_polls']}/{ours['polls']} polls"
                    + (f" (two statements: {seed_share:.0%})" if seed_share is not None else ""),
                    ratio=share,
                    limit=0.0,
                    at_most=True,
                )
            )
    migration = results.get("migration", {})
    mig_rows = ONE_MILLION if str(ONE_MILLION) in migration else None
    if mig_rows is None and migration:
        mig_rows = max(int(r) for r in migration if migration[r])
    if mig_rows is not None and migration.get(str(mig_rows)):
        m = migration[str(mig_rows)]
        targets.append(
            _target(
                "online migration",
                rule=f"longest concurrent write during 0001->0002 <= 1 s ({mig_rows:,} rows)",
                measured=f"{m['max_stall_ms']:.1f} ms (migration took {m['duration_s']:.2f} s)",
                ratio=m["max_stall_ms"] / 1000.0,
                limit=1.0,
                at_most=True,
            )
        )
    return targets


def _approach(name: str) -> str:
    return "two statements" if name == "seed" else name


def _verdict(target: dict[str, Any]) -> str:
    if target["passed"] is None:
        return "n/a"
    return "pass" if target["passed"] else "**MISS**"


def _ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.3g}x" if value >= 0.01 else f"{value:.2e}"


def _cell(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['median_ms']:.3g} / {summary['p99_ms']:.3g} ({summary['n']:.0f})"


def servers(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each measured server's results, by kind (or by ``VERSION()`` for ``--url``), in run order.

    Raises:
        ValueError: The results have no ``kinds`` mapping (a results.json from before
            the benchmark ran per server): re-run ``python -m bench.run``.
    """
    kinds = results.get("kinds")
    if not isinstance(kinds, dict):
        raise ValueError(
            "results have no 'kinds' mapping (written before the benchmark ran per server): "
            "re-run `python -m bench.run`"
        )
    return kinds


def _table(header: list[str], rows: list[list[str]], *, numeric: int = 0) -> list[str]:
    """A Markdown table; the first ``numeric`` columns are right-aligned."""
    align = ["---:" if i < numeric else "---" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _union_sizes(per_server: dict[str, dict[str, Any]]) -> list[int]:
    return sorted({size for result in per_server.values() for size in _sizes(result)})


def _largest(result: dict[str, Any]) -> int | None:
    sizes = _sizes(result)
    if not sizes:
        return None
    return ONE_MILLION if ONE_MILLION in sizes else sizes[-1]


def _op_median(result: dict[str, Any], rows: int | None, op: str) -> float | None:
    try:
        return float(result["latency"][str(rows)]["ops"][op]["median_ms"])
    except (KeyError, TypeError):
        return None


def _quotient(top: float | None, bottom: float | None) -> float | None:
    return None if top is None or not bottom else top / bottom


def _cells_by_callers(result: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    concurrency = result.get("concurrency") or {}
    return {(c["callers"], c["approach"]): c for c in concurrency.get("results") or []}


def key_ratios(result: dict[str, Any], sizes: list[int], callers: list[int]) -> list[str]:
    """One server's key ratios, one cell per row of :func:`key_ratio_labels` (ratios of medians)."""
    big, small = _largest(result), ([*_sizes(result), None])[0]
    flip_big = _op_median(result, big, "flip")
    cells = [
        _ratio(_quotient(_op_median(result, rows, "seed"), _op_median(result, rows, "flip")))
        for rows in sizes
    ]
    cells += [
        _ratio(_quotient(flip_big, _op_median(result, big, "floor"))),
        _ratio(_quotient(flip_big, _op_median(result, small, "flip"))),
        _ratio(_quotient(_op_median(result, big, "wrapper"), flip_big)),
        _ratio(
            _quotient(_op_median(result, big, "lookup_flag"), _op_median(result, big, "lookup_key"))
        ),
        _ratio(
            _quotient(
                _op_median(result, big, "lookup_flag"), _op_median(result, big, "lookup_flag_keyed")
            )
        ),
    ]
    by = _cells_by_callers(result)
    for count in callers:
        ours, seed = by.get((count, "batchflag")), by.get((count, "seed"))
        if ours is None or seed is None:
            cells.append("-")
            continue
        ratio = _quotient(ours["flips_per_s"], seed["flips_per_s"])
        cells.append(f"{ours['flips_per_s']:.0f} / {seed['flips_per_s']:.0f} ({_ratio(ratio)})")
    return cells


def key_ratio_labels(
    per_server: dict[str, dict[str, Any]], sizes: list[int], callers: list[int]
) -> list[str]:
    """The rows of the key-ratio table; the largest and smallest sizes are each server's own."""
    bigs = {_largest(r) for r in per_server.values()} - {None}
    smalls = {([*_sizes(r), None])[0] for r in per_server.values()} - {None}
    big = f"{bigs.pop():,} rows" if len(bigs) == 1 else "the largest size"
    small = f"{smalls.pop():,} rows" if len(smalls) == 1 else "the smallest size"
    rows = concurrency_rows(per_server)
    where = f" ({rows:,} rows)" if rows else ""
    return [
        *(f"two statements / flip at {rows:,} rows" for rows in sizes),
        f"flip / floor at {big}",
        f"flip at {big} / flip at {small}",
        f"wrapper / bare CALL at {big}",
        f"lookup by flag / lookup by key at {big}",
        f"the Verification query, plain table / migrated table at {big}",
        *(
            f"flips/s, {count} caller{'s' if count != 1 else ''}: batchflag / two statements{where}"
            for count in callers
        ),
    ]


def concurrency_rows(per_server: dict[str, dict[str, Any]]) -> int | None:
    """The table size of the concurrency runs (the same on every server of one run)."""
    for result in per_server.values():
        if result.get("concurrency"):
            return int(result["concurrency"]["rows"])
    return None


def _callers(per_server: dict[str, dict[str, Any]]) -> list[int]:
    return sorted({count for r in per_server.values() for count, _ in _cells_by_callers(r)})


def _server_rows(results: dict[str, Any], names: list[str]) -> list[list[str]]:
    per_server = servers(results)
    settings = (
        "innodb_flush_log_at_trx_commit",
        "sync_binlog",
        "log_bin",
        "innodb_doublewrite",
        "innodb_buffer_pool_size",
    )
    rows = [
        ["`SELECT VERSION()`", *(str(per_server[n].get("version", "?")) for n in names)],
        ["started as", *(str(per_server[n].get("server_source", "?")) for n in names)],
    ]
    rows += [
        [f"`{name}`", *(str(per_server[n].get("server", {}).get(name, "?")) for n in names)]
        for name in settings
    ]
    rows.append(
        [
            "load average at start / end",
            *(
                f"{per_server[n].get('loadavg_start', '?')} / {per_server[n].get('loadavg_end', '?')}"
                for n in names
            ),
        ]
    )
    rows.append(["took, s", *(str(per_server[n].get("duration_s", "?")) for n in names)])
    return rows


def _explain_cell(plan: list[dict[str, Any]] | None) -> str:
    if not plan:
        return "-"
    row = plan[0]
    key = f"`{row.get('key')}`" if row.get("key") else "no index"
    return f"{row.get('type')}, {key}, rows {row.get('rows')}"


def render_markdown(results: dict[str, Any]) -> str:
    """The Markdown report: for every measured server side by side, one column each.

    Sections: the servers, key ratios, targets, latency (a table per operation),
    concurrent callers, the invariant migration and the lookups' EXPLAIN.

    Raises:
        ValueError: The results have no ``kinds`` mapping (see :func:`servers`).
    """
    meta = results.get("meta", {})
    per_server = servers(results)
    names = list(per_server)
    lines = [
        "# batchflag-db benchmark results",
        "",
        "<!-- generated by bench/report.py from bench/results.json: do not edit by hand -->",
        "",
        f"Command: `{meta.get('command', '?')}`, started {meta.get('started', '?')}, "
        f"took {meta.get('duration_s', '?')} s; batchflag-db schema at revision "
        f"{meta.get('revision', '?')}; servers measured one after another: "
        + (", ".join(f"`{n}`" for n in names) or "none")
        + ".",
        "",
        f"Client: Python {meta.get('python', '?')}, PyMySQL {meta.get('pymysql', '?')}, "
        f"over TCP loopback. CPUs: {meta.get('cpu_count', '?')}; load average "
        f"{meta.get('loadavg_start', '?')} at start, {meta.get('loadavg_end', '?')} at end.",
        "",
    ]
    if not names:
        return "\n".join(lines)
    header = ["", *(f"`{n}`" for n in names)]
    lines += ["## Servers", "", *_table(header, _server_rows(results, names))]

    sizes = _union_sizes(per_server)
    callers = _callers(per_server)
    columns = [key_ratios(per_server[n], sizes, callers) for n in names]
    labels = key_ratio_labels(per_server, sizes, callers)
    lines += [
        "## Key ratios",
        "",
        "Ratios of medians, each server's own numbers.",
        "",
        *_table(
            ["ratio", *header[1:]],
            [[label, *(column[i] for column in columns)] for i, label in enumerate(labels)],
        ),
    ]

    evaluated = {n: {t["target"]: t for t in evaluate(per_server[n])} for n in names}
    target_names = list(dict.fromkeys(t for n in names for t in evaluated[n]))
    if target_names:
        rows = []
        for target in target_names:
            rule = next(evaluated[n][target]["rule"] for n in names if target in evaluated[n])
            cells = [
                f"{_ratio(t['ratio'])} {_verdict(t)}" if (t := evaluated[n].get(target)) else "-"
                for n in names
            ]
            rows.append([target, rule, *cells])
        lines += ["## Targets", "", *_table(["target", "rule", *header[1:]], rows)]

    if sizes:
        lines += [
            "## Latency by table size",
            "",
            "Milliseconds, client-side: median / p99 (samples), one table per operation. The "
            "two-statement flip runs as two autocommit statements, as the code it replaces "
            'did; "1 txn" wraps them in one transaction.',
            "",
        ]
        for op, title in LATENCY_COLUMNS:
            rows = [
                [
                    f"{rows:,}",
                    *(
                        _cell(per_server[n]["latency"].get(str(rows), {}).get("ops", {}).get(op))
                        for n in names
                    ),
                ]
                for rows in sizes
            ]
            lines += [f"### {title}", "", *_table(["rows", *header[1:]], rows, numeric=1)]

    lines += _concurrency_section(per_server, names, header[1:], callers)
    lines += _migration_section(per_server, names, header[1:])

    explained = [n for n in names if _largest(per_server[n]) is not None]
    if explained:
        rows = []
        for query in ("lookup_key", "lookup_flag", "lookup_flag_keyed", "seed_clear_all"):
            cells = []
            for n in names:
                big = _largest(per_server[n])
                plans = per_server[n]["latency"].get(str(big), {}).get("explain", {})
                cells.append(_explain_cell(plans.get(query)))
            rows.append([f"`{query}`", *cells])
        lines += [
            "## EXPLAIN at the largest size",
            "",
            "The first row of each plan (tabular form on every server): access type, index, "
            "estimated rows. `seed_clear_all` is the two statements' full-table UPDATE.",
            "",
            *_table(["query", *header[1:]], rows),
        ]
    return "\n".join(lines).rstrip("\n")


def _concurrency_section(
    per_server: dict[str, dict[str, Any]], names: list[str], header: list[str], callers: list[int]
) -> list[str]:
    rows_measured = concurrency_rows(per_server)
    if rows_measured is None:
        return []
    durations = {
        r["concurrency"]["duration_s"] for r in per_server.values() if r.get("concurrency")
    }
    lines = [
        f"## Concurrent callers ({rows_measured:,} rows, "
        + "/".join(f"{d:g}" for d in sorted(durations))
        + " s per cell)",
        "",
        "Each caller is a process with its own connection, flipping random batches "
        "back to back; one more process polls "
        "`SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0` at a fixed pace "
        "throughout. batchflag callers run a bare `CALL set_current_batch(id)`; "
        "two-statement callers run the two autocommit statements. Errors (by errno) "
        "follow the throughput when there were any.",
        "",
    ]
    cells = {n: _cells_by_callers(per_server[n]) for n in names}
    keys = [(count, approach) for count in callers for approach in ("batchflag", "seed")]

    def table(title: str, render: Any) -> list[str]:
        rows = [
            [
                str(count),
                _approach(approach),
                *(render(c) if (c := cells[n].get((count, approach))) else "-" for n in names),
            ]
            for count, approach in keys
        ]
        return [f"### {title}", "", *_table(["callers", "approach", *header], rows, numeric=1)]

    def throughput(cell: dict[str, Any]) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in cell["errors"].items())
        return f"{cell['flips_per_s']:.0f}" + (f" (errors {errors})" if errors else "")

    def latency(cell: dict[str, Any]) -> str:
        lat = cell.get("latency")
        return f"{lat['median_ms']:.3g} / {lat['p99_ms']:.3g}" if lat else "-"

    def bad(cell: dict[str, Any]) -> str:
        share = cell["bad_poll_share"]
        return f"{cell['bad_polls']}/{cell['polls']}" + (
            f" ({share:.1%})" if share is not None else ""
        )

    def counts(cell: dict[str, Any]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in cell["poll_counts"].items())

    lines += table("Flips per second", throughput)
    lines += table("Flip latency under load, median / p99 ms", latency)
    lines += table("Reader polls that did not see exactly one current row", bad)
    lines += table("Counts the reader saw (count: polls)", counts)
    return lines


def _migration_section(
    per_server: dict[str, dict[str, Any]], names: list[str], header: list[str]
) -> list[str]:
    sizes = sorted(
        {int(r) for n in names for r, m in (per_server[n].get("migration") or {}).items() if m}
    )
    if not sizes:
        return []

    def cell(m: dict[str, Any] | None) -> str:
        if not m:
            return "-"
        before = m.get("baseline_max_ms")
        return (
            f"{m['duration_s']:.2f} s; {m['max_stall_ms']:.1f} ms"
            + (f" ({before:.1f})" if before is not None else "")
            + f"; {m['writer_ops_during']} writes"
        )

    rows = [
        [f"{rows:,}", *(cell((per_server[n].get("migration") or {}).get(str(rows))) for n in names)]
        for rows in sizes
    ]
    return [
        "## Invariant migration (0001 -> 0002) with a concurrent writer",
        "",
        "One thread INSERTs and UPDATEs single rows of `batchStatus` in a loop while the "
        "migration runs. Each cell: the migration's duration; the longest write that "
        "overlapped it (in parentheses, the longest write in the 0.5 s before); the writes "
        "completed during it.",
        "",
        *_table(["rows", *header], rows, numeric=1),
    ]


PLOT_FLIPS = (
    ("flip", "flip: batchflag CALL", "o", "-"),
    ("floor", "floor: 2-row transaction", "", ":"),
    ("seed", "flip: two statements", "s", "--"),
)
PLOT_LOOKUPS = (
    ("lookup_key", "lookup by key (batchflag)", "^", "-"),
    ("lookup_flag", "lookup by flag (plain table, scan)", "v", "--"),
)
PLOT_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Draw median latency (p99 as the bar's top) against table size, log-log, a line per server.

    Two panels: the flips (batchflag, the two-row floor, the two statements) and the
    lookups; a colour per server, a line style per operation. Returns the PNG's path,
    or None when matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: PLC0415 - optional: only the plot needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot", file=sys.stderr)
        return None
    per_server = servers(results)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), dpi=110)
    for ax, series, title in (
        (axes[0], PLOT_FLIPS, "flip"),
        (axes[1], PLOT_LOOKUPS, "lookup of the current batch"),
    ):
        for i, (name, result) in enumerate(per_server.items()):
            color = PLOT_COLORS[i % len(PLOT_COLORS)]
            for op, label, marker, style in series:
                points = [
                    (rows, result["latency"][str(rows)]["ops"][op])
                    for rows in _sizes(result)
                    if op in result["latency"][str(rows)]["ops"]
                ]
                if not points:
                    continue
                xs = [rows for rows, _ in points]
                medians = [s["median_ms"] for _, s in points]
                upper = [max(0.0, s["p99_ms"] - s["median_ms"]) for _, s in points]
                ax.errorbar(
                    xs,
                    medians,
                    yerr=[[0.0] * len(xs), upper],
                    label=f"{name}: {label}",
                    color=color,
                    marker=marker or None,
                    linestyle=style,
                    capsize=3,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows in batchStatus")
        ax.set_ylabel("latency, ms (median; bar up to p99)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("batchflag-db vs two statements, per server (durable throwaway servers)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


HERE = Path(__file__).resolve().parent
DOCS_PAGE = HERE.parent / "docs" / "benchmark.md"
DOCS_START = "<!-- bench:start (generated by bench/report.py from bench/results.json) -->"
DOCS_END = "<!-- bench:end -->"


def update_docs_page(results: dict[str, Any], page: Path) -> bool:
    """Replace the docs page's generated section (between the markers) with these results.

    Returns False, changing nothing, when the page is missing or has no markers.
    """
    if not page.is_file():
        return False
    text = page.read_text()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        return False
    body = render_markdown(results).split("\n")
    # Drop the page title and the generated-file note; demote headings under the page's section.
    kept = [line for line in body[1:] if not line.startswith("<!--")]
    kept = ["#" + line if line.startswith("##") else line for line in kept]
    section = DOCS_START + "\n" + "\n".join(kept).strip() + "\n" + DOCS_END
    page.write_text(text[:start] + section + text[end + len(DOCS_END) :])
    return True


def write_reports(
    results: dict[str, Any], out: Path, *, docs_page: Path | None = None
) -> tuple[Path, Path | None]:
    """Write ``results.md`` and ``latency.png`` into ``out``; return their paths.

    With ``docs_page`` (``DOCS_PAGE`` for the committed run), also replace that page's
    generated tables.
    """
    out.mkdir(parents=True, exist_ok=True)
    md_path = out / "results.md"
    md_path.write_text(render_markdown(results) + "\n")
    if docs_page is not None:
        update_docs_page(results, docs_page)
    return md_path, plot(results, out / "latency.png")


def docs_page_for(out: Path) -> Path | None:
    """The docs page a run written into ``out`` updates: only a run written into ``bench/``."""
    return DOCS_PAGE if out.resolve() == HERE else None


def main(argv: list[str] | None = None) -> int:
    """Regenerate results.md and latency.png (and the docs page's tables) from a results.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", nargs="?", default=str(HERE / "results.json"))
    parser.add_argument("--out", help="output directory (default: beside the JSON)")
    args = parser.parse_args(argv)
    source = Path(args.results)
    results = json.loads(source.read_text())
    out = Path(args.out) if args.out else source.parent
    md_path, png_path = write_reports(results, out, docs_page=docs_page_for(out))
    print(f"wrote {md_path}" + (f" and {png_path}" if png_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
