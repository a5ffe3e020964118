"""Flip throughput with a scope column: 16 callers on one scope against 16 spread over 4.

From the repository root::

    python -m bench.scopes                       # every kind, a durable throwaway server each
    python -m bench.scopes --kinds mysql-9.7 --duration 5 --reps 3

On each server it creates ``batch_status`` (INT id, ``pipeline`` NOT NULL, ``state``,
``is_current``) with 4 pipelines of 1,000 batches, installs batchflag-db on it with one
current batch per pipeline (``batchflag upgrade --table batch_status --scope-column
pipeline ...``, the standalone path), and runs, alternately, ``--reps`` times each:

* ``one scope``: 16 caller processes all flipping batches of pipeline p0;
* ``four scopes``: 16 caller processes, caller i flipping batches of pipeline p(i mod 4).

Each caller runs ``CALL set_current_batch(id)`` on its own autocommit connection for
``--duration`` seconds. Printed per kind: the median throughput (flips/s) of each
scenario, its lock errors (1205/1213, counted and skipped), and the ratio. Written to
``bench/scopes.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/scopes.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchflag_db import migrate
from batchflag_db.config import normalize_url
from batchflag_db.installation import Installation
from batchflag_db.testing.kinds import KINDS
from batchflag_db.testing.server import ThrowawayServer
from bench import _workers, core

CALLERS = 16
SCOPES = 4
ROWS_PER_SCOPE = 1000
DATABASE = "batchflag_bench_scopes"
INSTALLATION = Installation(
    table="batch_status", flag_column="is_current", status_column="state", scope_column="pipeline"
)
_TABLE = """
CREATE TABLE batch_status (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pipeline VARCHAR(32) NOT NULL,
    state VARCHAR(16) NOT NULL DEFAULT 'Pending',
    is_current TINYINT(1) NOT NULL DEFAULT 0
) ENGINE=InnoDB
"""


def prepare(server_params: dict[str, Any], url: Any) -> dict[str, list[int]]:
    """The database, its table, the installation; return each pipeline's batch ids."""
    core.drop_database(server_params, DATABASE)
    core.create_database(server_params, DATABASE)
    params = {**server_params, "database": DATABASE}
    conn = _workers.connect(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(_TABLE)
            values = ", ".join(
                f"('p{n % SCOPES}', 'Completed')" for n in range(SCOPES * ROWS_PER_SCOPE)
            )
            cur.execute(f"INSERT INTO batch_status (pipeline, state) VALUES {values}")
        migrate.upgrade(url.set(database=DATABASE), installation=INSTALLATION)
        by_scope: dict[str, list[int]] = {}
        with conn.cursor() as cur:
            cur.execute("SELECT pipeline, id FROM batch_status ORDER BY id")
            for pipeline, row_id in cur.fetchall():
                by_scope.setdefault(str(pipeline), []).append(int(row_id))
            for ids in by_scope.values():
                cur.execute("CALL set_current_batch(%s)", (ids[0],))
                _workers.drain(cur)
        return by_scope
    finally:
        conn.close()


def run_scenario(
    params: dict[str, Any], assignment: list[list[int]], duration_s: float, seed: int
) -> dict[str, Any]:
    """Caller i flips batches of ``assignment[i]`` for ``duration_s``; return the totals."""
    ctx = core._mp_context()
    barrier = ctx.Barrier(len(assignment) + 1)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_workers.caller_process,
            args=(params, _workers.BATCHFLAG),
            kwargs={
                "max_id": 0,
                "ids": ids,
                "duration_s": duration_s,
                "seed": seed * 1000 + i,
                "barrier": barrier,
                "results": results,
            },
            daemon=True,
        )
        for i, ids in enumerate(assignment)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)
        reports = [results.get(timeout=duration_s + 120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [r["failure"] for r in reports if "failure" in r]
    if failures:
        raise RuntimeError(f"a caller failed: {failures}")
    ok = sum(r["ok"] for r in reports)
    elapsed = max(r["elapsed_s"] for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for errno, n in r["errors"].items():
            errors[str(errno)] = errors.get(str(errno), 0) + n
    return {"flips": ok, "flips_per_s": ok / elapsed, "errors": errors}


def measure_kind(kind: str, duration_s: float, reps: int) -> dict[str, Any]:
    with ThrowawayServer(kind=kind, durable=True) as server:
        url = normalize_url(server.url)
        server_params = core.connect_params(url)
        by_scope = prepare(server_params, url)
        params = {**server_params, "database": DATABASE}
        scopes = sorted(by_scope)
        scenarios = {
            "one scope": [by_scope[scopes[0]] for _ in range(CALLERS)],
            "four scopes": [by_scope[scopes[i % SCOPES]] for i in range(CALLERS)],
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        for rep in range(reps):
            for name, assignment in scenarios.items():
                runs[name].append(run_scenario(params, assignment, duration_s, seed=rep))
        conn = _workers.connect(params)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM (SELECT pipeline FROM batch_status WHERE is_current <> 0 "
                    "GROUP BY pipeline HAVING COUNT(*) > 1) AS crowded"
                )
                crowded = int(cur.fetchone()[0])
        finally:
            conn.close()
        return {
            "server": core.server_version(server_params),
            "scenarios": {
                name: {
                    "flips_per_s_median": statistics.median(r["flips_per_s"] for r in results),
                    "flips_per_s_runs": [round(r["flips_per_s"]) for r in results],
                    "errors": [r["errors"] for r in results],
                }
                for name, results in runs.items()
            },
            "scopes_with_two_current_rows_at_the_end": crowded,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scopes", description=__doc__)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per run.")
    parser.add_argument("--reps", type=int, default=3, help="Runs of each scenario.")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("scopes.json"))
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        print(
            f"[{time.strftime('%H:%M:%S')}] {kind}: {CALLERS} callers, {args.reps} runs of "
            f"{args.duration:g} s per scenario",
            flush=True,
        )
        found = measure_kind(kind, args.duration, args.reps)
        results[kind] = found
        one = found["scenarios"]["one scope"]["flips_per_s_median"]
        four = found["scenarios"]["four scopes"]["flips_per_s_median"]
        print(f"  {found['server']}")
        for name, scenario in found["scenarios"].items():
            print(
                f"  {name:<12} {scenario['flips_per_s_median']:8.0f} flips/s (median; runs "
                f"{scenario['flips_per_s_runs']}; lock errors {scenario['errors']})"
            )
        print(
            f"  four scopes / one scope: {four / one:.2f}x; scopes with two current rows "
            f"at the end: {found['scopes_with_two_current_rows_at_the_end']}",
            flush=True,
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
