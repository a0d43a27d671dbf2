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

from hypercl_core.accounting import count_params
from hypercl_core.config import config_from_flat, load_config
from hypercl_core.errors import UserError
from hypercl_core.metrics import score_name
from orchestrator.sweep import LAYOUT, SweepSpec
from orchestrator.tracking import ERROR_TAG, KIND, decode_params
from search_spaces.architectures import (ARCH_KEYS, BinScale, all_architectures, bin_edges, bin_index,
                                         check_study_request, stratified_sample)

STUDY_CSV = "study.csv"
BINS_CSV = "study_bins.csv"
STUDY_PNG = "study.png"


def plan_robustness(preset: str, overrides: list[str], n_archs: int, ratio_range: tuple[float, float],
                    bins: int, bin_scale: BinScale = "log", seed: int = 0, **options: Any) -> SweepSpec:
    """Sample the architectures (exact ratios, stratified) before any folder or run exists."""
    from orchestrator.trial import metric_for  # noqa: PLC0415

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
    """A study as MLflow holds it: the request and one row per architecture that started."""

    name: str
    edges: list[float]
    scale: BinScale
    score: str  # acc | mse
    rows: list[dict[str, Any]]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "FAILED"]


def read_study(tracking_uri: str, name: str) -> Study:
    from orchestrator.best import open_sweep_experiment  # noqa: PLC0415

    client, experiment = open_sweep_experiment(tracking_uri, name)
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'robustness'",
                                 max_results=1)
    if not parents:
        raise UserError(f"sweep {name!r} is not a robustness study; plot a study started with `hypercl robustness`")
    request = decode_params(parents[0].data.params)
    base = config_from_flat({k: v for k, v in request.items() if not k.startswith("study.")})
    score = score_name(base)
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                                max_results=50_000)
    rows = sorted((_row(run, score) for run in trials), key=lambda r: (r["ratio"], r["run_id"]))
    edges = bin_edges(float(request["study.ratio_lo"]), float(request["study.ratio_hi"]),
                      int(request["study.bins"]), request["study.bin_scale"])
    return Study(name, edges, request["study.bin_scale"], score, rows)


def _row(run, score: str) -> dict[str, Any]:
    cfg = config_from_flat(decode_params(run.data.params))
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


def bin_stats(study: Study) -> list[dict[str, Any]]:
    """Mean ± std (population std over architectures) per ratio bin, finished architectures only."""
    out = []
    for i in range(len(study.edges) - 1):
        lo, hi = study.edges[i], study.edges[i + 1]
        members = [r for r in study.rows if bin_index(r["ratio"], study.edges) == i and r[f"final_{study.score}"] is not None]
        row: dict[str, Any] = {"bin": i, "ratio_lo": lo, "ratio_hi": hi,
                               "center": math.sqrt(lo * hi) if study.scale == "log" else (lo + hi) / 2,
                               "n": len(members)}
        for key in (f"final_{study.score}", f"during_{study.score}"):
            values = [r[key] for r in members]
            mean = sum(values) / len(values) if values else None
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else None
            row.update({f"{key}_mean": mean, f"{key}_std": std})
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


def plot_study(study: Study, path: Path) -> None:
    """Accuracy vs compression ratio like the paper's Fig. A7: every architecture as a dot,
    mean ± std per bin for final and during, n per bin above."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    key = study.score
    stats = [b for b in bin_stats(study) if b["n"]]
    done = [r for r in study.rows if r[f"final_{key}"] is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.scatter([r["ratio"] for r in done], [r[f"final_{key}"] for r in done], s=9, alpha=0.35, color="tab:blue",
               label="final, each architecture")
    for which, color, shift in (("final", "tab:blue", 1.0), ("during", "tab:orange", 1.04)):
        ax.errorbar([b["center"] * shift for b in stats], [b[f"{which}_{key}_mean"] for b in stats],
                    yerr=[b[f"{which}_{key}_std"] for b in stats], fmt="o-", color=color, capsize=3,
                    label=f"{which}: mean ± std per bin")
    for b in stats:
        ax.annotate(f"n={b['n']}", (b["center"], b[f"final_{key}_mean"]), textcoords="offset points",
                    xytext=(0, 10), ha="center", fontsize=7)
    for edge in study.edges:
        ax.axvline(edge, color="0.9", lw=0.8, zorder=0)
    if study.scale == "log":
        ax.set_xscale("log")
    ax.axvline(1.0, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("compression ratio  |θ_h ∪ {e}| / |θ_trgt|")
    ax.set_ylabel("task-averaged test accuracy (%)" if key == "acc" else "task-averaged test MSE")
    failed = len(study.failed)
    ax.set_title(f"{study.name}: {len(done)} architectures" + (f", {failed} failed" if failed else ""), fontsize=9)
    ax.legend(fontsize=7, loc="lower right" if key == "acc" else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_study(study: Study, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STUDY_CSV).write_text(to_csv(study.rows))
    (folder / BINS_CSV).write_text(to_csv(bin_stats(study)))
    plot_study(study, folder / STUDY_PNG)
    return [folder / STUDY_CSV, folder / BINS_CSV, folder / STUDY_PNG]


def log_study(tracking_uri: str, parent_run_id: str, files: list[Path]) -> None:
    """The CSVs and the plot also go on the study's parent run, so the MLflow UI shows them."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(tracking_uri)
    for path in files:
        client.log_artifact(parent_run_id, str(path))


def summary_lines(study: Study) -> list[str]:
    key = study.score
    lines = [f"{'ratio bin':>17}  {'n':>3}  {f'final_{key}':>17}  {f'during_{key}':>17}"]
    for b in bin_stats(study):
        if b["n"]:
            lines.append(f"{b['ratio_lo']:7.3g}-{b['ratio_hi']:<8.3g}  {b['n']:3d}  "
                         f"{b[f'final_{key}_mean']:8.3f} ± {b[f'final_{key}_std']:6.3f}  "
                         f"{b[f'during_{key}_mean']:8.3f} ± {b[f'during_{key}_std']:6.3f}")
    for r in study.failed:
        lines.append(f"FAILED hidden={r['hidden']} cemb={r['cemb_dim']} output={r['output_size']} "
                     f"ratio={r['ratio']:.4g}: {r['error'] or 'no error recorded'}")
    return lines
