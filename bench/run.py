"""Run the benchmark: batchflag-db's flip and lookup against the two-statement flip, per server.

From the repository root::

    python -m bench.run              # on each kind: 1k, 100k, 1M rows; a durable throwaway server each
    python -m bench.run --kinds mariadb-10.11,mysql-9.7   # only these kinds
    python -m bench.run --with-10m   # and 10M rows
    python -m bench.run --quick      # small sizes, few repetitions: a smoke run on every kind
    python -m bench.run --url mysql+pymysql://root:pw@host:3306/   # one server you run

For each server kind (default: every kind of :data:`batchflag_db.testing.kinds.KINDS`)
it starts a throwaway server of that kind with ``durable=True`` and runs the same
measurements on it; ``--url`` measures the one server given instead, reported under its
``SELECT VERSION()``. Writes ``bench/results.json`` (the machine's metadata under
``meta``; under ``kinds``, each server's results by kind), ``bench/results.md`` and
``bench/latency.png`` (``--out`` to put them elsewhere); ``python -m bench.report``
regenerates the last two from the JSON. With ``--url`` it creates and drops the databases
``<prefix>_seed`` and ``<prefix>_batchflag`` there (``--prefix``, default
``batchflag_bench``); it never reads a URL from the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import URL

from batchflag_db import migrate
from batchflag_db.config import normalize_url
from batchflag_db.testing.binaries import ServerNotAvailableError, binaries_for
from batchflag_db.testing.kinds import KINDS, kind_named
from batchflag_db.testing.server import ThrowawayServer
from bench import core, report

DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
TEN_MILLION = 10_000_000
DEFAULT_PLAN = core.Plan(warmup=100, reps=1000, min_reps=5, budget_s=6.0, block=20)
QUICK_PLAN = core.Plan(warmup=10, reps=60, min_reps=3, budget_s=1.0, block=10, warmup_budget_s=0.5)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def _kinds(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated server kinds")
    for name in names:
        try:
            kind_named(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark batchflag-db's flip and lookup against the seed's two statements.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--kinds",
        type=_kinds,
        default=tuple(KINDS),
        help=f"server kinds to start and measure, in turn (default: {','.join(KINDS)})",
    )
    where.add_argument(
        "--url",
        help="measure this one server instead (no database needed in the URL)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    parser.add_argument("--with-10m", action="store_true", help="also measure 10,000,000 rows")
    parser.add_argument("--sizes", type=_ints, help="table sizes, e.g. 1000,100000 (overrides)")
    parser.add_argument("--callers", type=_ints, help="concurrent callers, default 1,8,32")
    parser.add_argument(
        "--duration", type=float, help="seconds per concurrency cell (default 5; quick 1)"
    )
    parser.add_argument(
        "--concurrency-rows", type=int, default=1000, help="table size of the concurrency runs"
    )
    parser.add_argument("--reps", type=int, help="measured runs per operation, at most")
    parser.add_argument("--budget", type=float, help="seconds per operation before it stops early")
    parser.add_argument(
        "--buffer-pool",
        help="innodb_buffer_pool_size of the throwaway servers (default 1G; 4G with --with-10m)",
    )
    parser.add_argument("--prefix", default="batchflag_bench", help="database name prefix")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent), help="output directory"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _server(args: argparse.Namespace, kind: str | None) -> Iterator[tuple[URL, str]]:
    """The server to measure: the one at ``--url`` (kind None), else a throwaway of ``kind``."""
    if kind is None:
        yield normalize_url(args.url).set(database=None), "the server at --url"
        return
    pool = args.buffer_pool or ("4G" if args.with_10m else "1G")
    with ThrowawayServer(
        kind=kind, durable=True, extra_args=[f"--innodb-buffer-pool-size={pool}"]
    ) as server:
        yield normalize_url(server.url), f"a throwaway {kind} server, durable=True"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['median_ms']:.3g}/{summary['p99_ms']:.3g}"


def _print_size(rows: int, ops: dict[str, dict[str, float]]) -> None:
    _log(
        f"{rows:>10,} rows (median/p99 ms): flip {_ms(ops['flip'])}, "
        f"wrapper {_ms(ops['wrapper'])}, floor {_ms(ops['floor'])}, "
        f"seed {_ms(ops['seed'])}, seed in one txn {_ms(ops['seed_one_txn'])}; "
        f"lookup by key {_ms(ops['lookup_key'])} vs by flag {_ms(ops['lookup_flag'])} "
        f"(flag on keyed table {_ms(ops['lookup_flag_keyed'])})"
    )


def _write_json(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Setup:
    """What every server of the run is measured with."""

    args: argparse.Namespace
    sizes: tuple[int, ...]
    plan: core.Plan
    callers: tuple[int, ...]
    duration: float
    out: Path


def _measure_server(results: dict[str, Any], setup: _Setup, kind: str | None) -> None:
    """Start (or reach) one server and measure every size on it, into ``results["kinds"]``.

    The entry is keyed by the kind's name, or for ``--url`` by the server's
    ``SELECT VERSION()``; results.json is rewritten after every size, so an
    interrupted run keeps what it measured.
    """
    args, plan, callers, duration = setup.args, setup.plan, setup.callers, setup.duration
    t0 = time.monotonic()
    with _server(args, kind) as (server_url, how):
        params = core.connect_params(server_url)
        version = core.server_version(params)
        info = core.server_info(params)
        name = kind or version
        per: dict[str, Any] = {
            # for --url, the kind its version belongs to, if any
            "kind": kind or next((k.name for k in KINDS.values() if k.matches(version)), None),
            "version": version,
            "server": info,
            "server_source": how,
            "started": _now(),
            "loadavg_start": _load(),
            "sizes": list(setup.sizes),
            "latency": {},
            "migration": {},
            "concurrency": None,
        }
        results["kinds"][name] = per
        _log(f"=== {name}: {how}")
        _log(
            f"{version} ({info.get('version_comment')}); "
            f"innodb_flush_log_at_trx_commit={info.get('innodb_flush_log_at_trx_commit')}, "
            f"sync_binlog={info.get('sync_binlog')}, log_bin={info.get('log_bin')}, "
            f"innodb_doublewrite={info.get('innodb_doublewrite')}, "
            f"innodb_buffer_pool_size={info.get('innodb_buffer_pool_size')}; "
            f"CPUs: {os.cpu_count()}; load average {_load()}"
        )
        _log(f"sizes {list(setup.sizes)}, callers {list(callers)} x {duration}s, plan {plan}")

        def concurrency(pair: core.Pair) -> None:
            _log(f"concurrency at {pair.rows:,} rows, {duration}s per cell")
            per["concurrency"] = {
                "rows": pair.rows,
                "duration_s": duration,
                "poll_interval_s": core.POLL_INTERVAL_S,
                "loadavg_start": _load(),
                "results": core.measure_concurrency(pair, callers, duration, log=_log),
            }
            per["concurrency"]["loadavg_end"] = _load()

        for rows in setup.sizes:
            _log(f"preparing {rows:,} rows")
            pair = core.prepare_pair(server_url, rows, prefix=args.prefix, log=_log)
            try:
                per["migration"][str(rows)] = pair.migration
                load_before = _load()
                measured = core.measure_size(pair, plan)
                measured["loadavg"] = [load_before, _load()]
                per["latency"][str(rows)] = measured
                _print_size(rows, measured["ops"])
                if rows == args.concurrency_rows:
                    concurrency(pair)
            finally:
                if not args.keep:
                    pair.drop()
            _write_json(results, setup.out)
        if per["concurrency"] is None and callers:
            pair = core.prepare_pair(
                server_url,
                args.concurrency_rows,
                prefix=args.prefix,
                measure_migration_writer=False,
            )
            try:
                concurrency(pair)
            finally:
                if not args.keep:
                    pair.drop()
    per["loadavg_end"] = _load()
    per["duration_s"] = round(time.monotonic() - t0, 1)
    _write_json(results, setup.out)
    _log(f"{name}: {per['duration_s']}s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write results.json, results.md and latency.png."""
    args = parse_args(argv)
    if args.sizes:
        sizes = args.sizes
    else:
        sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
        if args.with_10m:
            sizes = (*sizes, TEN_MILLION)
    sizes = tuple(sorted(set(sizes)))
    base = QUICK_PLAN if args.quick else DEFAULT_PLAN
    plan = core.Plan(
        warmup=base.warmup,
        reps=args.reps or base.reps,
        min_reps=base.min_reps,
        budget_s=args.budget or base.budget_s,
        block=base.block,
        warmup_budget_s=base.warmup_budget_s,
    )
    callers = args.callers or ((1, 8) if args.quick else (1, 8, 32))
    duration = args.duration or (1.0 if args.quick else 5.0)
    out = Path(args.out)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench.run", *map(shlex.quote, given)])

    if args.url is None:  # fail now, not after the first kinds' minutes of measuring
        for name in args.kinds:
            try:
                binaries_for(kind_named(name))
            except ServerNotAvailableError as exc:
                print(f"python -m bench.run: {exc}", file=sys.stderr)
                return 2
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "started": _now(),
            "quick": args.quick,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pymysql": importlib.metadata.version(
                "PyMySQL"
            ),  # pymysql.__version__ is a fake for Django
            "revision": migrate.head_revision(),
            "loadavg_start": _load(),
            "plan": plan.__dict__,
            "sizes": list(sizes),
            "callers": list(callers),
            "note": (
                "client-side latency over TCP loopback (PyMySQL); "
                "seed = two autocommit statements, as the seed runs them"
            ),
        },
        "kinds": {},
    }
    setup = _Setup(args, sizes, plan, callers, duration, out)
    for kind in [None] if args.url else list(args.kinds):
        _measure_server(results, setup, kind)

    results["meta"]["loadavg_end"] = _load()
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    json_path = _write_json(results, out)
    md_path, png_path = report.write_reports(results, out, docs_page=report.docs_page_for(out))
    print()
    print(report.render_markdown(results))
    _log(f"wrote {json_path}, {md_path}" + (f", {png_path}" if png_path else ""))
    _log(f"total {results['meta']['duration_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
