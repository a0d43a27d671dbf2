"""The paper's Table 1 with the baselines, measured: `hypercl compare` runs, `hypercl table` reads them.

    python benchmarks/table1.py --name table1-split --name table1-permuted [--runs-dir /tmp/t1]

For every cell of the named comparisons (already run, e.g.
`hypercl compare --configs split_mnist_cl1_ewc ... --seeds 3 --name table1-split`) it
writes a record per cell to benchmarks/results.json (mean, SEM, seeds, the paper's
figure and whether ours lies within --within points of it) and rewrites
benchmarks/TABLE1.md: the commands, the machine, the table as `hypercl table --paper`
prints it, and the HNET rows recorded earlier in results.json beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import RESULTS, machine, merge, record  # noqa: E402
from report import render  # noqa: E402

HERE = Path(__file__).resolve().parent
# (benchmark, scenario) rows of results.json that hold the HNET methods' figures recorded by earlier benchmarks
HNET_METHODS = ("HNET", "HNET+ENT", "HNET+TIR", "HNET+R")
COLUMNS = ("Fine-tuning", "Online EWC", "SI", "DGR+distill")  # the paper's order; other methods follow


def recorded_cells(records: list[dict]):
    """Every cell a comparison recorded (this call's and earlier ones', whose MLflow stores may be gone)."""
    from orchestrator.table import Cell, Table  # noqa: PLC0415

    class RecordedCell(Cell):
        """A cell's mean and SEM as recorded (older records keep no per-seed values)."""

        def __init__(self, r: dict):
            super().__init__(values=r.get("per_seed") or [r["value"]] * r["n"], seeds=r["seeds"],
                             note=r.get("config_note"), reported=r.get("paper"))
            self._mean, self._sem = r["value"], r["sem"]

        @property
        def mean(self) -> float:
            return self._mean

        @property
        def sem(self) -> float:
            return self._sem

    cells = [r for r in records if r["command"].startswith("hypercl compare") and r["metric"] == "final_acc"
             and "paper" in r]
    table = Table("final_acc")
    table.rows = sorted({f"{r['benchmark']} {r['scenario']}" for r in cells},
                        key=lambda row: (not row.startswith("SplitMNIST"), row))
    present = {r["method"] for r in cells}
    table.columns = [c for c in COLUMNS if c in present] + sorted(present - set(COLUMNS))
    table.cells = {(f"{r['benchmark']} {r['scenario']}", r["method"]): RecordedCell(r) for r in cells}
    commands = list(dict.fromkeys(c for r in cells for c in r["command"].split(" ; ")))
    return table, commands, sorted({r["date"] for r in cells})


def comparison(uri: str, name: str) -> tuple[list[str], int, float, list[str]]:
    """(presets, seeds, wall seconds, --set overrides) of a comparison, from its MLflow runs."""
    from orchestrator.best import open_sweep_experiment  # noqa: PLC0415
    from orchestrator.tracking import KIND, decode_params  # noqa: PLC0415

    client, experiment = open_sweep_experiment(uri, name)
    parent = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'compare'",
                                max_results=1)[0]
    params = decode_params(parent.data.params)
    # an interrupted comparison's parent has no end: its last finished trial's end stands in
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                                max_results=50_000)
    end = parent.info.end_time or max((t.info.end_time or 0 for t in trials), default=0) or parent.info.start_time
    overrides = _overrides([(t.data.tags.get("hypercl.preset"), decode_params(t.data.params)) for t in trials])
    return params["study.presets"], params["study.seeds"], (end - parent.info.start_time) / 1000, overrides


def _overrides(trials: list[tuple[str | None, dict]]) -> list[str]:
    """The `--set` a comparison ran with: the config keys on which every trial differs alike from its
    preset (the seed aside), so that the command a cell records reproduces it."""
    from hypercl_core.config import load_config  # noqa: PLC0415

    def text(value) -> str:
        return json.dumps(value) if not isinstance(value, str) else value

    common: dict[str, str] | None = None
    presets: dict[str, dict] = {}
    for preset, flat in trials:
        if preset is None:
            continue
        base = presets.setdefault(preset, load_config(preset).flat())
        differs = {k: text(v) for k, v in flat.items() if k != "seed" and k in base and text(base[k]) != text(v)}
        common = differs if common is None else {k: v for k, v in common.items() if differs.get(k) == v}
    return [f"{k}={v}" for k, v in sorted((common or {}).items())]


def recorded_hnet_rows(records: list[dict]) -> list[str]:
    rows = []
    for r in records:
        if r["benchmark"] in ("SplitMNIST", "PermutedMNIST-10") and r["method"] in HNET_METHODS \
                and r["metric"] == "final_acc" and r["scenario"] in ("CL1", "CL2", "CL3"):
            rows.append(f"| {r['benchmark']} {r['scenario']} | {r['method']} | {r['value']:.2f} | "
                        f"{','.join(map(str, r['seeds']))} | `{r['command']}` |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", action="append", required=True,
                        help="a comparison to read: its name under --runs-dir, or its sweep folder (repeatable)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--within", type=float, default=3.0, help="points from the paper's figure that count as met")
    args = parser.parse_args()
    from orchestrator.table import markdown, read_table  # noqa: PLC0415
    from orchestrator.tracking import embedded_uri  # noqa: PLC0415

    folders = [Path(n) if (Path(n) / "sweep.yaml").is_file() else args.runs_dir / "sweeps" / n for n in args.name]
    sources = [(embedded_uri(folder), folder.name) for folder in folders]
    table = read_table(sources, "final_acc", {})
    runs = {name: comparison(uri, name) for uri, name in sources}
    records = []
    for (row, column), cell in table.cells.items():
        bench, scenario = row.rsplit(" ", 1)
        met = None if cell.reported is None else abs(cell.mean - cell.reported) <= args.within
        command = " ; ".join(f"hypercl compare --configs {' '.join(p)}{''.join(f' --set {o}' for o in sets)} "
                             f"--seeds {s} --name {n}" for n, (p, s, _, sets) in runs.items())
        extra = {"sem": round(cell.sem, 4), "n": len(cell.values), "per_seed": [round(v, 4) for v in cell.values],
                 "paper": cell.reported, "within_3_points": met}
        if cell.note:
            extra["config_note"] = cell.note
        records.append(record(bench, scenario, column, "final_acc", cell.mean, sorted(cell.seeds),
                              sum(w for _, _, w, _ in runs.values()), command, **extra))
    merged = merge(records)
    (HERE / "RESULTS.md").write_text(render(merged))
    # the table of every recorded cell: this call's comparisons and the earlier ones they do not repeat
    shown, commands, dates = recorded_cells(merged)
    lines = [
        "# Table 1 with the baselines, measured",
        "",
        "Task-averaged test accuracy after the last task (`final_acc`, %), mean ± SEM over seeds, "
        "n seeds; [paper x] is von Oswald et al. (2020), Table 1 (METHODS.md section 9), whose "
        "baseline figures come from van de Ven & Tolias (2019). Regenerate with:",
        "",
        "```bash",
        *[c.replace(" --seeds", " \\\n    --seeds") for c in commands],
        f"hypercl table {' '.join(f'--name {n}' for n in runs)} --paper",
        f"python benchmarks/table1.py {' '.join(f'--name {n}' for n in runs)}   # this file and the records",
        "```",
        "",
        f"Machine: {machine()}. Wall time of the comparisons read now: "
        + ", ".join(f"{n} {w / 60:.0f} min ({len(p)} presets x {s} seeds)" for n, (p, s, w, _) in runs.items())
        + ". The other cells are as the earlier comparisons recorded them in benchmarks/results.json "
        f"(recorded {', '.join(dates)}; a comparison's MLflow store lives in its sweep folder, not in the repository).",
        "",
        markdown(shown, paper=True).rstrip(),
        "",
        f"Within {args.within:g} points of the paper: "
        + ", ".join(f"{c} {r}: {'yes' if abs(cell.mean - cell.reported) <= args.within else 'NO'}"
                    for (r, c), cell in shown.cells.items() if cell.reported is not None) + ".",
        "",
        "## The HNET rows, as recorded earlier (benchmarks/results.json)",
        "",
        "| row | method | final_acc | seeds | command |",
        "|---|---|---|---|---|",
        *recorded_hnet_rows(merged),
        "",
    ]
    (HERE / "TABLE1.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"records merged into {RESULTS} (RESULTS.md rendered); {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
