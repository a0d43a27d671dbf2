"""`hypercl best` for programs: the ranking as JSON or CSV records.

One record per ranked run, with the same fields in both formats: rank, the
metric's value, the run id, the key params of the table (orchestrator.best)
and the compression ratio. Params are decoded as `best --export` decodes
them, so a list (hnet.hidden) stays a list in JSON; in CSV it is written as
JSON text, so it reads back unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from orchestrator.best import KEY_PARAMS
from orchestrator.tracking import decode_params


def fields(metric: str) -> list[str]:
    """The keys of a record, in order: the CSV header."""
    return ["rank", metric, "run_id", *KEY_PARAMS, "compression_ratio"]


def best_records(runs: list, metric: str) -> list[dict[str, Any]]:
    records = []
    for rank, run in enumerate(runs, start=1):
        params = decode_params(run.data.params)
        values = [rank, run.data.metrics.get(metric), run.info.run_id, *(params.get(key) for key in KEY_PARAMS),
                  run.data.metrics.get("compression_ratio")]
        records.append(dict(zip(fields(metric), values)))
    return records


def best_json(records: list[dict[str, Any]], sweep: str, metric: str, mode: str | None) -> str:
    return json.dumps({"sweep": sweep, "metric": metric, "mode": mode, "runs": records}, indent=2) + "\n"


def best_csv(records: list[dict[str, Any]], metric: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields(metric))
    for record in records:
        writer.writerow([_cell(record[key]) for key in fields(metric)])
    return out.getvalue()


def _cell(value: Any) -> str:
    """Empty for a value the run lacks; lists and dicts as JSON; the rest as Python prints it."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
