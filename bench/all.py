"""Run every benchmark with sizes that fit in about ten minutes on two CPUs.

Each part runs in its own process, in turn, with the sizes below (each
script's own defaults are larger: run a part alone for firmer figures). Every
part prints its table with its baseline beside it; this script adds how long
each took and writes bench/results/<YYYY-MM-DD>-summary.md, gathering the
Markdown tables the parts wrote and the tail of what the others printed.

    .venv/bin/python bench/all.py              # what `make bench` runs
    .venv/bin/python bench/all.py ingest peer  # only some parts
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# part -> arguments sized for the whole run to stay near ten minutes
PARTS: dict[str, list[str]] = {
    "mqtt_clients": ["--messages", "20000", "--rounds", "1"],
    "encode": ["--points", "20000", "--rounds", "3"],
    "quality": ["--devices", "100", "--readings", "50", "--rounds", "3"],
    "decode": ["--messages", "5000", "--rounds", "3"],
    "ingest": ["--messages", "30000", "--rounds", "3"],
    "peer": ["--messages", "20000", "--rounds", "1"],
    "cctv": ["--cameras", "6", "--naive-cameras", "1", "--seconds", "20"],
    "provision": ["--devices", "1000", "--rounds", "3"],
}
PRINTED_TAIL_LINES = 14


def main() -> int:
    chosen = sys.argv[1:] or list(PARTS)
    unknown = [name for name in chosen if name not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
        return 2
    today = datetime.date.today().isoformat()
    sections = []
    failed = []
    started_all = time.monotonic()
    for name in chosen:
        command = [sys.executable, str(BENCH / f"{name}.py"), *PARTS[name]]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        print(done.stdout[-6000:], end="", flush=True)
        if done.returncode:
            failed.append(name)
            print(done.stderr[-3000:], flush=True)
        table = RESULTS / f"{today}-{name.replace('_', '-')}.md"
        body = (
            table.read_text()
            if table.exists() and table.stat().st_mtime >= time.time() - seconds - 5
            else "```\n"
            + "\n".join(done.stdout.rstrip().splitlines()[-PRINTED_TAIL_LINES:])
            + "\n```\n"
        )
        status = "failed" if done.returncode else "ok"
        sections.append(f"## {name} ({status}, {seconds:.0f} s)\n\n{body}")
    total_s = time.monotonic() - started_all
    summary = RESULTS / f"{today}-summary.md"
    summary.write_text(
        f"# Benchmarks, {today}\n\n{len(chosen)} parts in {total_s / 60:.1f} min "
        "on this machine; sizes from bench/all.py.\n\n" + "\n".join(sections)
    )
    print(f"\n{len(chosen)} parts in {total_s / 60:.1f} min; wrote {summary}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
