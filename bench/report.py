"""Turn ``bench/results.json`` into ``results.md`` (tables, targets) and ``latency.png``.

``python -m bench.report [results.json] [--out DIR]`` regenerates both from a saved run;
``bench.run`` calls :func:`write_reports` at the end of every run. A run written into
``bench/`` itself (the default) also replaces the tables of the docs page
``docs/benchmark.md`` between its markers; README is never written.

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
    """Check each benchmark target against a run; ratios are of medians.

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


def render_markdown(results: dict[str, Any]) -> str:
    """The Markdown report: settings, targets, latency, concurrency, migration."""
    meta = results.get("meta", {})
    server = meta.get("server", {})
    lines = [
        "# batchflag-db benchmark results",
        "",
        "<!-- generated by bench/report.py from bench/results.json: do not edit by hand -->",
        "",
        f"Command: `{meta.get('command', '?')}`, started {meta.get('started', '?')}, "
        f"took {meta.get('duration_s', '?')} s; batchflag-db schema at revision "
        f"{meta.get('revision', '?')}.",
        "",
        f"Server: {server.get('version', '?')} ({meta.get('server_source', '?')}); "
        f"`innodb_flush_log_at_trx_commit={server.get('innodb_flush_log_at_trx_commit', '?')}`, "
        f"`sync_binlog={server.get('sync_binlog', '?')}`, `log_bin={server.get('log_bin', '?')}`, "
        f"`innodb_doublewrite={server.get('innodb_doublewrite', '?')}`, "
        f"`innodb_buffer_pool_size={server.get('innodb_buffer_pool_size', '?')}`. "
        f"Client: Python {meta.get('python', '?')}, PyMySQL {meta.get('pymysql', '?')}, "
        f"over TCP loopback. CPUs: {meta.get('cpu_count', '?')}; load average "
        f"{meta.get('loadavg_start', '?')} at start, {meta.get('loadavg_end', '?')} at end.",
        "",
    ]
    targets = evaluate(results)
    if targets:
        lines += [
            "## Targets",
            "",
            "| target | rule | measured | ratio | result |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['target']} | {t['rule']} | {t['measured']} | {_ratio(t['ratio'])} "
            f"| {_verdict(t)} |"
            for t in targets
        ]
        lines.append("")

    sizes = _sizes(results)
    if sizes:
        lines += [
            "## Latency by table size",
            "",
            "Milliseconds, client-side: median / p99 (samples). The two-statement flip runs "
            'as two autocommit statements, as the code it replaces did; "1 txn" wraps them '
            "in one transaction.",
            "",
            "| rows | " + " | ".join(title for _, title in LATENCY_COLUMNS) + " |",
            "|---:|" + "---|" * len(LATENCY_COLUMNS),
        ]
        for rows in sizes:
            ops = results["latency"][str(rows)]["ops"]
            lines.append(
                f"| {rows:,} | "
                + " | ".join(_cell(ops.get(op)) for op, _ in LATENCY_COLUMNS)
                + " |"
            )
        lines.append("")

    concurrency = results.get("concurrency")
    if concurrency and concurrency.get("results"):
        lines += [
            f"## Concurrent callers ({concurrency['rows']:,} rows, "
            f"{concurrency['duration_s']:g} s per cell)",
            "",
            "Each caller is a process with its own connection, flipping random batches "
            "back to back; one more process polls "
            "`SELECT COUNT(*) FROM batchStatus WHERE currentBatch <> 0` at a fixed pace "
            "throughout. batchflag callers run a bare `CALL set_current_batch(id)`; "
            "two-statement callers run the two autocommit statements.",
            "",
            "| callers | approach | flips/s | latency median / p99 ms | errors "
            "| reader polls | not exactly one | counts seen |",
            "|---:|---|---:|---|---|---:|---:|---|",
        ]
        for cell in concurrency["results"]:
            latency = cell.get("latency")
            lat = f"{latency['median_ms']:.3g} / {latency['p99_ms']:.3g}" if latency else "-"
            share = cell["bad_poll_share"]
            errors = ", ".join(f"{k}: {v}" for k, v in cell["errors"].items()) or "0"
            counts = ", ".join(f"{k}: {v}" for k, v in cell["poll_counts"].items())
            lines.append(
                f"| {cell['callers']} | {_approach(cell['approach'])} | {cell['flips_per_s']:.0f} | {lat} "
                f"| {errors} | {cell['polls']} | {cell['bad_polls']}"
                + (f" ({share:.1%})" if share is not None else "")
                + f" | {counts} |"
            )
        lines.append("")

    migration = results.get("migration") or {}
    if any(migration.values()):
        lines += [
            "## Invariant migration (0001 -> 0002) with a concurrent writer",
            "",
            "One thread INSERTs and UPDATEs single rows of `batchStatus` in a loop while "
            'the migration runs; "longest write" is the slowest of its writes that '
            "overlapped the migration.",
            "",
            "| rows | migration s | writes during it | longest write ms | writer median / p99 ms "
            "| longest write before ms |",
            "|---:|---:|---:|---:|---|---:|",
        ]
        for rows in sorted(int(r) for r in migration if migration[r]):
            m = migration[str(rows)]
            before = m.get("baseline_max_ms")
            lines.append(
                f"| {rows:,} | {m['duration_s']:.2f} | {m['writer_ops_during']} "
                f"| {m['max_stall_ms']:.1f} | {m['writer_median_ms']:.3g} / {m['writer_p99_ms']:.3g} "
                f"| {before:.1f} |"
                if before is not None
                else f"| {rows:,} | {m['duration_s']:.2f} | {m['writer_ops_during']} "
                f"| {m['max_stall_ms']:.1f} | {m['writer_median_ms']:.3g} / {m['writer_p99_ms']:.3g} "
                "| - |"
            )
        lines.append("")
    return "\n".join(lines)


PLOT_SERIES = (
    ("flip", "flip: batchflag CALL", "tab:blue", "o", "-"),
    ("floor", "floor: 2-row transaction", "tab:gray", "", ":"),
    ("seed", "flip: two statements", "tab:red", "s", "-"),
    ("lookup_key", "lookup: batchflag (by key)", "tab:blue", "^", "--"),
    ("lookup_flag", "lookup: plain table (by flag, scan)", "tab:red", "v", "--"),
)


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Draw median latency (p99 as the bar's top) against table size, log-log.

    Returns the PNG's path, or None when matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: PLC0415 - optional: only the plot needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot", file=sys.stderr)
        return None
    sizes = _sizes(results)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for op, label, color, marker, style in PLOT_SERIES:
        points = [
            (rows, results["latency"][str(rows)]["ops"][op])
            for rows in sizes
            if op in results["latency"][str(rows)]["ops"]
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
            label=label,
            color=color,
            marker=marker or None,
            linestyle=style,
            capsize=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows in batchStatus")
    ax.set_ylabel("latency, ms (median; bar up to p99)")
    server = results.get("meta", {}).get("server", {})
    ax.set_title(
        f"batchflag-db vs two statements: {server.get('version', '?')}, "
        f"flush_log_at_trx_commit={server.get('innodb_flush_log_at_trx_commit', '?')}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
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
    kept = ["#" + line if line.startswith("## ") else line for line in kept]
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
