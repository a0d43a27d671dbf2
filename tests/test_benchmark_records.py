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


def test_table1_commands_carry_the_overrides_every_trial_shares():
    """A cell's command must rerun the comparison: a `--set` every trial ran with is named, a key
    that only some trials (or only the seed) change is not."""
    from hypercl_core.config import load_config
    from table1 import _overrides

    def trial(preset, seed, **changes):
        return preset, {**load_config(preset).flat(), "seed": seed, **changes}

    trials = [trial("split_mnist_cl3_ewc", 0, **{"method.keep_optimizer": True, "train.iters_per_task": 50}),
              trial("split_mnist_cl3_ewc", 1, **{"method.keep_optimizer": True, "train.iters_per_task": 50}),
              trial("split_mnist_cl3_si", 0, **{"method.keep_optimizer": True, "train.iters_per_task": 50,
                                                 "method.c": 7.0})]
    assert _overrides(trials) == ["method.keep_optimizer=true", "train.iters_per_task=50"]
    assert _overrides([trial("split_mnist_cl3_si", 2)]) == []
