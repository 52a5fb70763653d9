"""`make bench`'s summary: one table (figure, goal, measured) from the figures the benchmark
scripts recorded (`_shared.record`, JSON lines in BENCH_FIGURES), printed and written between
the markers of bench/results/latest.md (the rest of that file, notes and before/after, is kept).

    BENCH_FIGURES=.local/bench/figures.jsonl uv run python bench/report.py [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

LATEST = Path(__file__).resolve().parent / "results" / "latest.md"
BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"


def table(figures: list[dict[str, str]]) -> str:
    rows = ["| figure | goal | measured | load (1 min) | note |", "|---|---|---|---|---|"]
    rows += [
        f"| {f['figure']} | {f['goal']} | {f['measured']} | {f['load'].removeprefix('load ')} "
        f"| {f.get('note', '')} |"
        for f in figures
    ]
    return "\n".join(rows)


def write(text: str) -> None:
    """Replace what is between the markers (or put the table first when there are none)."""
    block = f"{BEGIN}\n{text}\n{END}"
    current = LATEST.read_text(encoding="utf-8") if LATEST.exists() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        updated = head + block + rest.split(END, 1)[1]
    else:
        updated = f"{block}\n\n{current}"
    LATEST.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    path = Path(os.environ.get("BENCH_FIGURES", ".local/bench/figures.jsonl"))
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    figures = [json.loads(line) for line in lines if line.strip()]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"`make bench`, {when}, {os.cpu_count()} CPUs:\n\n{table(figures)}"
    print(text)
    if not args.no_write:
        write(text)


if __name__ == "__main__":
    main()
