"""benchmarks/results.json: one record per measured figure, merged by key.

Each record says what was measured (benchmark, scenario, method, metric), the
value, the seeds, the wall time and the exact command, plus the machine and
date, so every figure in the docs can be traced to a run.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"
KEY = ("benchmark", "scenario", "method", "metric")


def machine() -> str:
    import torch  # noqa: PLC0415

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return f"{platform.machine()} {os.cpu_count()} cores, {device}, torch {torch.__version__}"


def record(benchmark: str, scenario: str, method: str, metric: str, value: float, seeds: list[int],
           wall_s: float, command: str, **extra) -> dict:
    return {"benchmark": benchmark, "scenario": scenario, "method": method, "metric": metric,
            "value": round(float(value), 4), "seeds": seeds, "wall_s": round(float(wall_s), 1),
            "command": command, "machine": machine(), "date": dt.date.today().isoformat(), **extra}


def add_record_args(parser) -> None:
    """--results / --results-md: where a benchmark merges its records (a trial run can write elsewhere)."""
    parser.add_argument("--results", type=Path, default=RESULTS, help="records file (default benchmarks/results.json)")
    parser.add_argument("--results-md", type=Path, default=RESULTS.with_name("RESULTS.md"),
                        help="rendered from --results after merging (default benchmarks/RESULTS.md)")


def merge(new: list[dict], path: Path = RESULTS) -> list[dict]:
    """Replace records with the same key, keep the rest, write back sorted.

    A replaced record's `note` (a person's remark on that figure) carries over
    unless the new record brings its own. Locked, so benchmark scripts running
    side by side do not lose each other's records.
    """
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else []
        notes = {_key(r): r["note"] for r in old if "note" in r}
        new = [r if "note" in r or _key(r) not in notes else {**r, "note": notes[_key(r)]} for r in new]
        keys = {_key(r) for r in new}
        merged = [r for r in old if _key(r) not in keys] + new
        merged.sort(key=lambda r: tuple(str(r[k]) for k in KEY))
        path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def _key(r: dict) -> tuple:
    return tuple(r[k] for k in KEY)
