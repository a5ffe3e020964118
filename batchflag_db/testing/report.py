"""Sum the JUnit XML reports of several pytest runs (one per server kind) into one line.

``scripts/test.sh`` runs the suite once per server kind; this prints a table of the
runs and the closing line ``total: N passed, N failed, N skipped``. It exits 1 when
any run failed or errored, or when no test ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["main", "summarize"]


def summarize(path: Path) -> dict[str, int]:
    """Counts of one report: tests, failed (failures + errors), skipped, passed."""
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {
        "tests": tests,
        "failed": failed,
        "skipped": skipped,
        "passed": tests - failed - skipped,
    }


def main(argv: list[str] | None = None) -> int:
    """Print one line per report and the total; exit 1 on any failure or no test at all."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv) if Path(p).is_file()]
    total = {"tests": 0, "failed": 0, "skipped": 0, "passed": 0}
    for path in paths:
        counts = summarize(path)
        for key, value in counts.items():
            total[key] += value
        print(
            f"{path.stem:>14}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped"
        )
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if total["failed"] or not total["tests"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
