"""The random-architecture robustness study: plan it, and turn its MLflow runs into a CSV and a plot.

A study is a fixed-list run (one trial per sampled architecture) whose
parent run is tagged `robustness` and records the request (ratio range,
bins, scale, seed). Everything the CSV and the plot show is read back from
MLflow, so `--plot-only` redraws them from the tracking store alone, on any
machine that can reach it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hypercl_core.accounting import count_params
from hypercl_core.config import (
    ExperimentConfig,
    build_config,
    config_from_flat,
    load_config,
)
from hypercl_core.errors import UserError
from hypercl_core.metrics import chance_accuracy, score_name
from hypercl_core.schedule import budget
from orchestrator.sweep import LAYOUT, SweepSpec
from orchestrator.tracking import ERROR_TAG, KIND, PRESET_TAG, decode_params
from search_spaces.architectures import (
    ARCH_KEYS,
    BinScale,
    all_architectures,
    bin_edges,
    bin_index,
    check_study_request,
    stratified_sample,
)

STUDY_CSV = "study.csv"
BINS_CSV = "study_bins.csv"
STUDY_PNG = "study.png"
STUDY_YAML = "study.yaml"  # the request and the shared config: the folder redraws without MLflow


def plan_robustness(preset: str, overrides: list[str], n_archs: int, ratio_range: tuple[float, float],
                    bins: int, bin_scale: BinScale = "log", seed: int = 0, **options: Any) -> SweepSpec:
    """Sample the architectures (exact ratios, stratified) before any folder or run exists."""
    from orchestrator.trial import metric_for

    check_study_request(n_archs, ratio_range, bins)
    fixed = [o.partition("=")[0].strip() for o in overrides if o.partition("=")[0].strip() in ARCH_KEYS]
    if fixed:
        raise UserError(f"--set {fixed[0]} conflicts with the study, which samples {', '.join(ARCH_KEYS)}; drop it")
    base = load_config(preset, overrides)
    if base.hnet.chunk_dim is None:
        raise UserError(f"preset {preset} has no chunked hypernetwork; the study varies the chunk (output) size, "
                        "so pick a preset with hnet.chunk_dim set")
    archs = stratified_sample(all_architectures(base), n_archs, ratio_range, bins, seed, bin_scale)
    metric, mode = metric_for(base)
    name = options.pop("name", None) or f"robustness-{Path(preset).stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    study = {"ratio_lo": ratio_range[0], "ratio_hi": ratio_range[1], "bins": bins, "bin_scale": bin_scale,
             "seed": seed, "n_archs": n_archs}
    return SweepSpec(kind="robustness", name=name, base_config=base.model_dump(), metric=metric, mode=mode,
                     variants=[a.overrides() for a in archs], study=study, preset=preset, layout=LAYOUT,
                     **options)


@dataclass(frozen=True)
class Study:
    """A study as MLflow holds it: the request, the config every architecture shares (its hnet
    varies) and one row per architecture that started."""

    name: str
    preset: str
    config: ExperimentConfig
    request: dict[str, Any]  # ratio_lo, ratio_hi, bins, bin_scale, seed, n_archs (plan_robustness)
    rows: list[dict[str, Any]]

    @property
    def edges(self) -> list[float]:
        r = self.request
        return bin_edges(float(r["ratio_lo"]), float(r["ratio_hi"]), int(r["bins"]), r["bin_scale"])

    @property
    def scale(self) -> BinScale:
        return self.request["bin_scale"]

    @property
    def score(self) -> str:  # acc | mse
        return score_name(self.config)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "FAILED"]

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r[f"final_{self.score}"] is not None]


def read_study(tracking_uri: str, name: str) -> Study:
    from orchestrator.best import open_sweep_experiment

    client, experiment = open_sweep_experiment(tracking_uri, name)
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'robustness'",
                                 max_results=1)
    if not parents:
        raise UserError(f"sweep {name!r} is not a robustness study; plot a study started with `hypercl robustness`")
    params = decode_params(parents[0].data.params)
    base = config_from_flat({k: v for k, v in params.items() if not k.startswith("study.")}, saved=True)
    request = {k.removeprefix("study."): v for k, v in params.items() if k.startswith("study.")}
    score = score_name(base)
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                                max_results=50_000)
    rows = sorted((_row(run, score) for run in trials), key=lambda r: (r["ratio"], r["run_id"]))
    return Study(name, parents[0].data.tags.get(PRESET_TAG, name), base, request, rows)


def _row(run, score: str) -> dict[str, Any]:
    cfg = config_from_flat(decode_params(run.data.params), saved=True)
    metrics = run.data.metrics
    status = run.info.status
    return {
        "run_id": run.info.run_id,
        "status": status,
        "hidden_layers": len(cfg.hnet.hidden),
        "hidden": ",".join(map(str, cfg.hnet.hidden)),
        "cemb_dim": cfg.hnet.cemb_dim,
        "output_size": cfg.hnet.chunk_dim,
        "ratio": count_params(cfg).compression_ratio,
        "trained_ratio": metrics.get("trained_compression_ratio"),
        f"during_{score}": metrics.get(f"during_{score}") if status == "FINISHED" else None,
        f"final_{score}": metrics.get(f"final_{score}") if status == "FINISHED" else None,
        "wall_s": metrics.get("wall_s"),
        "seed": cfg.seed,
        "error": run.data.tags.get(ERROR_TAG, "") if status == "FAILED" else "",
    }


_TEXT_COLUMNS = ("run_id", "status", "hidden", "error")
_INT_COLUMNS = ("hidden_layers", "cemb_dim", "output_size", "seed")


def load_study(folder: Path) -> Study:
    """A study from the files `write_study` left (study.yaml + study.csv), without MLflow: what
    redraws a study whose tracking store is gone, such as the ones under docs/robustness/."""
    folder = Path(folder)
    meta_file, rows_file = folder / STUDY_YAML, folder / STUDY_CSV
    for needed in (meta_file, rows_file):
        if not needed.is_file():
            raise UserError(f"{needed} is missing; redraw a folder that `hypercl robustness` wrote, or redraw "
                            "from MLflow with `hypercl robustness --plot-only --name NAME`")
    meta = yaml.safe_load(meta_file.read_text())
    rows = [{key: _parsed(key, text) for key, text in row.items()}
            for row in csv.DictReader(io.StringIO(rows_file.read_text()))]
    return Study(meta["name"], meta["preset"], build_config(meta["config"], str(meta_file), saved=True), meta["request"], rows)


def _parsed(key: str, text: str) -> Any:
    """A study.csv cell back as `_row` made it: text columns stay text, empty is None."""
    if key in _TEXT_COLUMNS:
        return text
    if text == "":
        return None
    return int(text) if key in _INT_COLUMNS else float(text)


def _quartiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """First quartile, median, third quartile (linear interpolation); None for an empty bin."""
    if not values:
        return None, None, None
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(median), float(q3)


def bin_stats(study: Study) -> list[dict[str, Any]]:
    """Median and interquartile range per ratio bin over the finished architectures: the
    statistic the plot draws and the README quotes. A bin holds a few architectures that never
    learned within the budget next to many that did; a mean ± std smears those few over the
    whole bin (and past 100 %), the median and quartiles show both. An empty bin keeps its
    row, with n = 0 and no statistics."""
    out = []
    edges = study.edges
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        members = [r for r in study.finished if bin_index(r["ratio"], edges) == i]
        row: dict[str, Any] = {"bin": i, "ratio_lo": lo, "ratio_hi": hi,
                               "center": math.sqrt(lo * hi) if study.scale == "log" else (lo + hi) / 2,
                               "n": len(members)}
        for key in (f"final_{study.score}", f"during_{study.score}"):
            q1, median, q3 = _quartiles([r[key] for r in members])
            row.update({f"{key}_median": median, f"{key}_q1": q1, f"{key}_q3": q3})
        out.append(row)
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


def study_title(study: Study) -> str:
    """Preset, size and budget: what a reader needs to judge the curve (not the timestamped name)."""
    failed = len(study.failed)
    return (f"{study.preset}: {len(study.finished)} architectures, {budget(study.config.train)}"
            + (f", {failed} failed" if failed else ""))


def study_figure(study: Study):
    """Score vs compression ratio like the paper's Fig. A7: every finished architecture as a
    faint dot; per bin the median and interquartile range of final and during; n per bin in a
    row above the axes, where nothing else is drawn; empty bins hatched; chance level (for an
    accuracy) and ratio 1; the legend outside the axes, over no data."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator

    key = study.score
    stats = bin_stats(study)
    filled = [b for b in stats if b["n"]]
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for b in stats:
        ax.axvline(b["ratio_lo"], color="0.9", lw=0.8, zorder=0)
        if not b["n"]:
            ax.axvspan(b["ratio_lo"], b["ratio_hi"], facecolor="0.97", edgecolor="0.8", hatch="//", lw=0, zorder=0)
        ax.text(b["center"], 1.01, f"n={b['n']}" if b["n"] else "empty", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, color="0.3" if b["n"] else "0.55")
    done = study.finished
    ax.scatter([r["ratio"] for r in done], [r[f"final_{key}"] for r in done], s=12, alpha=0.3, lw=0,
               color="tab:blue", label="final, each architecture")
    shift = 1.03 if study.scale == "log" else 1.0  # final just left of the bin's center, during just right
    for which, color, factor in (("final", "tab:blue", 1 / shift), ("during", "tab:orange", shift)):
        medians = [b[f"{which}_{key}_median"] for b in filled]
        spread = [[m - b[f"{which}_{key}_q1"] for m, b in zip(medians, filled)],
                  [b[f"{which}_{key}_q3"] - m for m, b in zip(medians, filled)]]
        ax.errorbar([b["center"] * factor for b in filled], medians, yerr=spread, fmt="o-", ms=4, lw=1.2,
                    color=color, capsize=3, label=f"{which}: median and interquartile range per bin")
    chance = chance_accuracy(study.config)
    if chance is not None:
        ax.axhline(chance, color="0.3", ls=":", lw=1,
                   label=f"chance: {chance:.3g} % (1 of {round(100 / chance)} classes)")
    if study.edges[0] < 1.0 < study.edges[-1]:
        ax.axvline(1.0, color="0.5", ls="--", lw=0.8, label="ratio 1: as many weights as the target")
    lo, hi = study.edges[0], study.edges[-1]
    if study.scale == "log":
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.set_xlim(lo / 1.05, hi * 1.05)
    else:
        ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    if key == "acc":  # from just below chance or the worst architecture, whichever is lower, to 100 %
        floor = min([chance or 0.0, *(r[f"final_{key}"] for r in done), *(r[f"during_{key}"] for r in done)])
        ax.set_ylim(max(0.0, floor - 5.0), 101)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("compression ratio  |θ_h ∪ {e}| / |θ_trgt|")
    ax.set_ylabel("task-averaged test accuracy (%)" if key == "acc" else "task-averaged test MSE")
    ax.set_title(study_title(study), fontsize=9, pad=18)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_study(study: Study, path: Path) -> None:
    study_figure(study).savefig(path, dpi=120)


def write_study(study: Study, folder: Path) -> list[Path]:
    """study.csv, study_bins.csv, study.png and study.yaml (what `load_study` redraws them from)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"name": study.name, "preset": study.preset, "request": study.request, "config": study.config.model_dump()}
    (folder / STUDY_YAML).write_text(yaml.safe_dump(meta, sort_keys=False))
    (folder / STUDY_CSV).write_text(to_csv(study.rows))
    (folder / BINS_CSV).write_text(to_csv(bin_stats(study)))
    plot_study(study, folder / STUDY_PNG)
    return [folder / STUDY_CSV, folder / BINS_CSV, folder / STUDY_PNG, folder / STUDY_YAML]


def log_study(tracking_uri: str, parent_run_id: str, files: list[Path]) -> None:
    """The CSVs and the plot also go on the study's parent run, so the MLflow UI shows them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in files:
        client.log_artifact(parent_run_id, str(path))


def summary_lines(study: Study) -> list[str]:
    """The per-bin table printed after a study: the median [q1, q3] of study_bins.csv and the plot."""
    key = study.score
    lines = [f"{'ratio bin':>17}  {'n':>3}  {f'final_{key} median [IQR]':>27}  {f'during_{key} median [IQR]':>27}"]
    for b in bin_stats(study):
        bounds = f"{b['ratio_lo']:7.3g}-{b['ratio_hi']:<8.3g}  {b['n']:3d}"
        if not b["n"]:
            lines.append(f"{bounds}  empty: no finished architecture in this bin")
            continue
        cells = [f"{b[f'{w}_{key}_median']:8.3f} [{b[f'{w}_{key}_q1']:7.3f}, {b[f'{w}_{key}_q3']:7.3f}]"
                 for w in ("final", "during")]
        lines.append(f"{bounds}  {cells[0]:>27}  {cells[1]:>27}")
    for r in study.failed:
        lines.append(f"FAILED hidden={r['hidden']} cemb={r['cemb_dim']} output={r['output_size']} "
                     f"ratio={r['ratio']:.4g}: {r['error'] or 'no error recorded'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.robustness FOLDER...`: redraw study folders from their files alone
    (`hypercl robustness --plot-only` redraws from MLflow)."""
    import sys

    folders = sys.argv[1:] if argv is None else argv
    if not folders:
        print("usage: python -m orchestrator.robustness STUDY_FOLDER...", file=sys.stderr)
        return 2
    try:
        for folder in folders:
            study = load_study(Path(folder))
            files = write_study(study, Path(folder))
            print("\n".join(summary_lines(study)))
            print(f"wrote {', '.join(str(f) for f in files)}")
    except UserError as exc:
        print(f"hypercl: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
