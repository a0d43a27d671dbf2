"""`hypercl best` for programs: the ranking as JSON or CSV records.

One record per ranked run, with the same fields in both formats: rank, the
metric's value, the run id, the key params of the table (orchestrator.best.best_records)
and the compression ratio. Params are decoded as `best --export` decodes
them, so a list (hnet.hidden) stays a list in JSON; in CSV it is written as
JSON text, so it reads back unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from orchestrator.best import fields


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
