"""benchmarks/records.py: re-measuring a figure replaces it and keeps a person's note on it."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from records import merge, record  # noqa: E402


def test_merge_replaces_by_key_and_carries_notes_over(tmp_path):
    path = tmp_path / "results.json"
    first = record("B", "S", "M", "acc", 1.0, [0], 1.0, "cmd")
    other = record("B", "S", "M", "loss", 2.0, [0], 1.0, "cmd")
    merge([{**first, "note": "why this figure is low"}, other], path)

    merge([record("B", "S", "M", "acc", 3.0, [0], 1.0, "cmd")], path)
    by_metric = {r["metric"]: r for r in json.loads(path.read_text())}
    assert by_metric["acc"]["value"] == 3.0 and by_metric["acc"]["note"] == "why this figure is low"
    assert by_metric["loss"]["value"] == 2.0 and "note" not in by_metric["loss"]

    merge([{**record("B", "S", "M", "acc", 4.0, [0], 1.0, "cmd"), "note": "fixed"}], path)
    assert {r["metric"]: r.get("note") for r in json.loads(path.read_text())}["acc"] == "fixed"
