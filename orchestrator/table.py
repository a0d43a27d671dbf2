"""`hypercl table`: the paper's comparison table (its Table 1), from MLflow runs alone.

Rows are benchmark x scenario, columns methods, in the order of the trials (a comparison's
order of presets), each benchmark's scenarios in order;
a cell is the mean ± SEM over seeds of the runs' objective, with n. The runs are the
finished trials of the named sweeps, reruns or comparisons, optionally only those
carrying a tag. One cell is one config over seeds: two configs of one method on one
row, or one seed twice, are refused rather than pooled. A cell whose config is not a
shipped preset as it stands gets a note saying where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypercl_core.config import ExperimentConfig, available_presets, config_from_flat, load_config
from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.errors import UserError, first_line
from hypercl_core.metrics import metric_mode
from hypercl_core.registry import METHODS
from orchestrator.best import open_sweep_experiment
from orchestrator.sweep import sem
from orchestrator.tracking import KIND, PRESET_TAG, TRIAL_ID, decode_params

IGNORED = ("seed", "device")  # keys that may differ between the runs of one cell
NOTES_SHOWN = 4  # differing keys named in a note


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    config_key: str = ""
    note: str | None = None
    reported: float | None = None  # the paper's figure

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sem(self) -> float:
        return sem(self.values)


@dataclass
class Table:
    metric: str
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    left_out: int = 0  # finished runs without the metric

    def best(self, row: str) -> str | None:
        """The column of the row's best mean (highest, or lowest for a loss)."""
        present = [(self.cells[(row, c)].mean, c) for c in self.columns if (row, c) in self.cells]
        if not present:
            return None
        pick = max if metric_mode(self.metric) == "max" else min
        return pick(present)[1]

    def notes(self) -> list[tuple[tuple[str, str], str]]:
        return [(key, cell.note) for key, cell in self.cells.items() if cell.note]


def read_table(sources: list[tuple[str, str]], metric: str, tags: dict[str, str]) -> Table:
    """sources: (tracking URI, experiment name) pairs, read in order."""
    table = Table(metric)
    for uri, name in sources:
        client, experiment = open_sweep_experiment(uri, name)
        # every run: a parent stays KILLED when its sweep was interrupted, and its tags still count
        runs = client.search_runs([experiment.experiment_id], max_results=50_000)
        runs.sort(key=lambda run: run.data.tags.get(TRIAL_ID, ""))  # trial order: a comparison's preset order
        parents = {run.info.run_id: run for run in runs if run.data.tags.get(KIND) != "trial"}
        for run in runs:
            if run.data.tags.get(KIND) != "trial" or run.info.status != "FINISHED":
                continue
            parent = parents.get(run.data.tags.get("mlflow.parentRunId", ""))
            parent_tags = parent.data.tags if parent is not None else {}
            if any(run.data.tags.get(k, parent_tags.get(k)) != v for k, v in tags.items()):
                continue
            if metric not in run.data.metrics:
                table.left_out += 1
                continue
            _add(table, run, name, parent_tags)
    # rows: benchmarks as they came, each one's scenarios in order
    benchmarks = list(dict.fromkeys(row.rsplit(" ", 1)[0] for row in table.rows))
    table.rows.sort(key=lambda row: (benchmarks.index(row.rsplit(" ", 1)[0]), row.rsplit(" ", 1)[1]))
    if not table.cells:
        selected = f" with tag {', '.join(f'{k}={v}' for k, v in tags.items())}" if tags else ""
        raise UserError(f"no finished trial with {metric} in {', '.join(n for _, n in sources)}{selected}; "
                        "check --name and --tag (list sweeps: hypercl sweeps)")
    return table


def _add(table: Table, run, sweep: str, parent_tags: dict[str, str]) -> None:
    params = decode_params(run.data.params)
    if "seed" not in params:
        raise UserError(f"run {run.info.run_id} of {sweep} has no seed param, and a table averages over seeds; "
                        "select runs that hypercl rerun, compare or sweep made")
    try:
        cfg = config_from_flat(params, saved=True)
    except UserError as exc:
        raise UserError(f"run {run.info.run_id} of {sweep}: its params are not a config here ({first_line(exc)})") from None
    row, column = cell_of(cfg)
    spec = METHODS[cfg.method.name]
    key = config_key(cfg)
    cell = table.cells.get((row, column))
    if cell is None:
        reported = spec.reported.get((cfg.benchmark.name, cfg.benchmark.num_tasks, cfg.benchmark.scenario))
        cell = table.cells[(row, column)] = Cell(config_key=key, reported=reported,
                                                 note=_origin(cfg, run.data.tags.get(PRESET_TAG), parent_tags, sweep))
        table.rows += [row] if row not in table.rows else []
        table.columns += [column] if column not in table.columns else []
    elif cell.config_key != key:
        raise UserError(f"{column} on {row} has runs of different configs (run {run.info.run_id} of {sweep} is one); "
                        "one cell is one config over seeds: select them apart with --name or --tag")
    if cfg.seed in cell.seeds:
        raise UserError(f"{column} on {row} has seed {cfg.seed} twice (run {run.info.run_id} of {sweep} is the "
                        "second); select one rerun per config with --name or --tag")
    cell.seeds.append(cfg.seed)
    cell.values.append(run.data.metrics[table.metric])


def cell_of(cfg: ExperimentConfig) -> tuple[str, str]:
    """(row, column) of a config's runs: benchmark x scenario, and the method."""
    row = f"{BENCHMARKS[cfg.benchmark.name].label(cfg.benchmark.num_tasks)} {cfg.benchmark.scenario.upper()}"
    return row, METHODS[cfg.method.name].label


def _comparable(cfg: ExperimentConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.flat().items() if k not in IGNORED}


def config_key(cfg: ExperimentConfig) -> str:
    """What one cell's runs share: the whole config but the seed (and device)."""
    return json.dumps(_comparable(cfg), sort_keys=True, default=str)


def _origin(cfg: ExperimentConfig, preset: str | None, parent_tags: dict[str, str], sweep: str) -> str | None:
    """None when the config is a shipped preset as it stands; else where it came from."""
    if parent_tags.get(KIND) == "sweep":
        return f"a config sampled by sweep {sweep}"
    preset = preset or parent_tags.get(PRESET_TAG)
    if preset not in available_presets():
        return f"config from {preset or 'an unknown source'}, not a shipped preset (in {sweep})"
    shipped, ours = _comparable(load_config(preset)), _comparable(cfg)
    changed = [f"{k}={ours.get(k)}" for k in sorted(set(shipped) | set(ours)) if shipped.get(k) != ours.get(k)]
    if not changed:
        return None
    more = f" and {len(changed) - NOTES_SHOWN} more" if len(changed) > NOTES_SHOWN else ""
    return f"preset {preset} with {', '.join(changed[:NOTES_SHOWN])}{more} (in {sweep})"


# -- formats ---------------------------------------------------------------

def _marks(table: Table) -> dict[tuple[str, str], int]:
    return {key: i for i, (key, _) in enumerate(table.notes(), start=1)}


def _value(cell: Cell, paper: bool) -> str:
    text = f"{cell.mean:.2f} ± {cell.sem:.2f} (n={len(cell.values)})"
    if paper:
        text += f" [paper {cell.reported:.2f}]" if cell.reported is not None else " [paper -]"
    return text


def markdown(table: Table, paper: bool = False) -> str:
    marks = _marks(table)
    lines = [f"| {table.metric}, mean ± SEM over seeds | " + " | ".join(table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    for row in table.rows:
        best = table.best(row)
        cells = []
        for column in table.columns:
            cell = table.cells.get((row, column))
            if cell is None:
                cells.append("-")
                continue
            text = _value(cell, paper)
            text = f"**{text}**" if column == best else text
            cells.append(text + (f" ({marks[(row, column)]})" if (row, column) in marks else ""))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += _footer(table, marks, "Bold: the best of the row.", paper)
    return "\n".join(lines) + "\n"


def latex(table: Table, paper: bool = False) -> str:
    marks = _marks(table)
    lines = [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             " & ".join(["", *(_tex(c) for c in table.columns)]) + r" \\", r"\midrule"]
    for row in table.rows:
        best = table.best(row)
        cells = [_tex(row)]
        for column in table.columns:
            cell = table.cells.get((row, column))
            if cell is None:
                cells.append("--")
                continue
            value = f"{cell.mean:.2f} \\pm {cell.sem:.2f}"
            text = f"$\\mathbf{{{value}}}$" if column == best else f"${value}$"
            if paper:
                text += f" ({cell.reported:.2f})" if cell.reported is not None else " (--)"
            cells.append(text + (f"$^{{{marks[(row, column)]}}}$" if (row, column) in marks else ""))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {line}" for line in _footer(table, marks, "Bold: the best of the row" + ("; (x): the paper's figure." if paper else "."), False)
              if line]
    return "\n".join(lines) + "\n"


def csv_text(table: Table, paper: bool = False) -> str:
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "method", f"{table.metric}_mean", f"{table.metric}_sem", "n", "seeds", "best",
                     *(["paper"] if paper else []), "note"])
    for row in table.rows:
        best = table.best(row)
        for column in table.columns:
            cell = table.cells.get((row, column))
            if cell is None:
                continue
            paper_cell = [] if not paper else ["" if cell.reported is None else f"{cell.reported:.2f}"]
            writer.writerow([row, column, f"{cell.mean:.4f}", f"{cell.sem:.4f}", len(cell.values),
                             " ".join(map(str, sorted(cell.seeds))), int(column == best), *paper_cell,
                             cell.note or ""])
    return out.getvalue()


def _tex(text: str) -> str:
    return text.replace("&", r"\&").replace("_", r"\_").replace("%", r"\%")


def _footer(table: Table, marks: dict[tuple[str, str], int], best: str, paper: bool) -> list[str]:
    lines = ["", best + (" [paper x]: what the paper reports (von Oswald et al. 2020, Table 1; - where it "
                         "reports none)." if paper else "")]
    lines += [f"({i}) {table.cells[key].note}" for key, i in marks.items()]
    if table.left_out:
        lines.append(f"{table.left_out} finished run(s) without {table.metric} left out.")
    return lines


FORMATS = {"markdown": markdown, "csv": csv_text, "latex": latex}
