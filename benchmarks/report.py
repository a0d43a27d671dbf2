"""Render benchmarks/results.json as benchmarks/RESULTS.md, next to the paper and the targets.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (benchmark, scenario, method, metric) -> (paper figure, acceptance target as text)
REFERENCE = {
    **{("1D regression", "CL1", m, f"final_mse_task{j}"): ("", "<= 0.02 on every seed")
       for m in ("HNET", "HNET (beta 0.005, Fig. 2)") for j in range(3)},
    ("SplitMNIST", "CL1", "HNET", "final_acc"): (99.79, ">= 99.6"),
    ("SplitMNIST", "CL2", "HNET+ENT", "final_acc"): (87.01, ">= 85"),
    ("SplitMNIST", "CL3", "HNET+ENT", "final_acc"): (69.48, ">= 67"),
    ("SplitMNIST", "CL3, paper_grid sweep (12 trials, ASHA) then rerun", "HNET+ENT", "final_acc"): (69.48, ">= 67"),
    ("SplitMNIST", "CL2, config swept on CL3 (split_mnist_cl3_tuned)", "HNET+ENT", "final_acc"): (87.01, ">= 85"),
    ("PermutedMNIST-10", "CL1", "HNET", "final_acc"): (97.57, ">= 97.2"),
    ("PermutedMNIST-10", "CL3", "HNET+ENT", "final_acc"): (91.75, ">= 90"),
    ("PermutedMNIST-10", "CL3 (multi-head CL1 run, task inferred)", "HNET+ENT", "final_acc_task_inferred"):
        (91.75, ">= 90"),
    ("SplitMNIST", "CL3 (multi-head CL1 run, task inferred)", "HNET+ENT", "final_acc_task_inferred"):
        (69.48, ">= 67"),
    ("SplitMNIST", "CL1", "HyperMask", "final_acc"): ("", ">= 99.5"),
    ("SplitMNIST", "CL1", "HNET+R", "final_acc"): (99.83, ">= 99.7"),
    ("SplitMNIST", "CL2", "HNET+R", "final_acc"): (98.00, ">= 97.5"),
    ("SplitMNIST", "CL3", "HNET+R", "final_acc"): (95.30, ">= 94.5"),
    ("SplitMNIST", "CL2", "HNET+TIR", "final_acc"): (94.43, ">= 93.5"),
    ("SplitMNIST", "CL3", "HNET+TIR", "final_acc"): (89.59, ">= 88.5"),
    ("PermutedMNIST-10", "CL3", "HNET+TIR", "final_acc"): (97.59, ">= 97.0"),
    ("PermutedMNIST-10", "CL1", "HyperMask", "final_acc"): ("", ">= 97.0"),
}

# (benchmark, metric) -> acceptance target, for benchmarks whose scenario names vary with their flags
METRIC_TARGETS = {
    ("Sweep chaos", "kills_survived"): "every kill",
    ("Sweep chaos", "duplicated_runs"): "0",
    ("Sweep chaos", "lost_runs"): "0",
    ("Sweep chaos", "repeated_task_logs"): "0",
    ("Sweep chaos", "study_trials_left_running"): "0",
    ("Trial faults", "kills_landed"): "every planned kill",
    ("Trial faults", "trials_finished"): "all",
    ("Trial faults", "runs_per_trial_key"): "1",
    ("Trial faults", "repeated_metric_entries"): "0",
    ("Trial faults", "exit_code"): "0",
    ("Trial faults", "runs_missing_artifacts"): "0",
    ("Trial faults", "metrics_logged_during_outage"): "> 0",
    **{("Trial faults", f"resumed_from_task_v{i:04d}"): "its last kill's task" for i in range(8)},
    ("Bad inputs", "checks_passed"): "1 (exit 2, 1 stderr line, no traceback, nothing written)",
    ("Bad inputs", "cases_passed"): "every case",
}


# Every record has these; anything else is shown next to the value.
STANDARD_KEYS = {"benchmark", "scenario", "method", "metric", "value", "seeds", "wall_s", "command", "machine", "date",
                 "note"}


def render(records: list[dict]) -> str:
    lines = ["# Benchmark results", "",
             "Generated from `benchmarks/results.json` by `python benchmarks/report.py`. Every figure is a measured",
             "run (or the mean over the listed seeds); `command` reproduces it. Paper: von Oswald et al. 2020.", ""]
    for bench in sorted({r["benchmark"] for r in records}):
        lines += [f"## {bench}", "",
                  "| scenario | method | metric | value | paper | target | seeds | wall s | machine | date |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in records if r["benchmark"] == bench):
            paper, target = REFERENCE.get((r["benchmark"], r["scenario"], r["method"], r["metric"]),
                                          ("", METRIC_TARGETS.get((r["benchmark"], r["metric"]), "")))
            value = r["value"]
            extras = {k: v for k, v in r.items() if k not in STANDARD_KEYS}
            if extras:
                value = f"{value} ({'; '.join(f'{k.replace(chr(95), chr(32))}: {v}' for k, v in extras.items())})"
            if "note" in r:
                value = f"{value} [{r['note']}]"
            lines.append(f"| {r['scenario']} | {r['method']} | {r['metric']} | {value} | {paper} | {target} | "
                         f"{r['seeds']} | {r['wall_s']} | {r['machine']} | {r['date']} |")
        commands = sorted({r["command"] for r in records if r["benchmark"] == bench})
        lines += ["", "Commands:", "", *[f"- `{c}`" for c in commands], ""]
    return "\n".join(lines)


def main() -> None:
    records = json.loads((HERE / "results.json").read_text())
    (HERE / "RESULTS.md").write_text(render(records))


if __name__ == "__main__":
    main()
