"""Which configs won: a ranking read from MLflow alone, and export for a rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hypercl_core.config import config_from_flat
from hypercl_core.errors import UserError
from hypercl_core.metrics import metric_mode
from orchestrator.listing import text_table
from orchestrator.tracking import KIND, decode_params, embedded_uri

KEY_PARAMS = ("hnet.hidden", "hnet.activation", "hnet.temb_dim", "hnet.cemb_dim", "hnet.chunk_dim",
              "method.beta", "train.lr")
PARENT_KINDS = ("sweep", "rerun", "robustness")  # the KIND tag of a sweep's parent run
METRIC_TAG = "hypercl.metric"  # the sweep's objective, on its parent run
MODE_TAG = "hypercl.mode"
DEFAULT_METRIC = "final_acc"


def sweep_objective(runs_dir: Path, name: str, tracking_uri: str | None) -> tuple[str, str]:
    """The (metric, mode) sweep `name` optimised: from its sweep.yaml under runs_dir/sweeps/, else
    (the folder gone with the cluster) from its MLflow parent run's tags, else from the parent's
    `best_<metric>` summary; a mode not recorded is the metric's own (hypercl_core.metrics)."""
    folder = Path(runs_dir) / "sweeps" / name
    spec_file = folder / "sweep.yaml"
    if spec_file.is_file():
        try:
            spec = yaml.safe_load(spec_file.read_text()) or {}
        except yaml.YAMLError:
            spec = {}
        if isinstance(spec, dict) and spec.get("metric"):
            return spec["metric"], spec.get("mode") or metric_mode(spec["metric"])
    if not tracking_uri and (folder / "mlflow.db").is_file():
        tracking_uri = embedded_uri(folder)
    if not tracking_uri:
        return DEFAULT_METRIC, metric_mode(DEFAULT_METRIC)
    parent = _parent_run(tracking_uri, name)
    tags = parent.data.tags if parent is not None else {}
    metric = tags.get(METRIC_TAG) or (_summarised_metric(parent.data.metrics) if parent is not None else None)
    metric = metric or DEFAULT_METRIC
    return metric, tags.get(MODE_TAG) or metric_mode(metric)


def _parent_run(tracking_uri: str, name: str):
    client, experiment = open_sweep_experiment(tracking_uri, name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` != 'trial'",
                              order_by=["attributes.start_time DESC"], max_results=100)
    return next((run for run in runs if run.data.tags.get(KIND) in PARENT_KINDS), None)


def _summarised_metric(metrics: dict[str, float]) -> str | None:
    """What a parent run written before the objective tags summarised: best_<metric>."""
    found = [key.removeprefix("best_") for key in metrics if key.startswith("best_")]
    return found[0] if len(found) == 1 else None


def open_sweep_experiment(tracking_uri: str, name: str):
    """The sweep's MLflow experiment; never creates a store that was not there."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no sweep named {name!r}: {tracking_uri} does not exist; check --name, --runs-dir "
                        "or --tracking-uri")
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise UserError(f"no sweep named {name!r} in {tracking_uri}; sweeps there: {', '.join(known) or 'none'}")
    return client, experiment


def best_runs(tracking_uri: str, name: str, metric: str, top: int, mode: str | None = None) -> list:
    client, experiment = open_sweep_experiment(tracking_uri, name)
    order = "DESC" if (mode or metric_mode(metric)) == "max" else "ASC"
    return client.search_runs(
        [experiment.experiment_id],
        # runs without the metric would sort last yet still fill the table
        filter_string=f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED' and metrics.`{metric}` > -1e300",
        order_by=[f"metrics.{metric} {order}"],
        max_results=top,
    )


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


def format_table(runs: list, metric: str) -> str:
    """The ranking as `hypercl best` prints it: the records of `best_records`, run id last."""
    header = ["rank", metric, *KEY_PARAMS, "ratio", "run_id"]
    rows = [[str(r["rank"]), "-" if r[metric] is None else f"{r[metric]:.4f}", *(_short(r[k]) for k in KEY_PARAMS),
             f"{r['compression_ratio'] if r['compression_ratio'] is not None else float('nan'):.4f}", r["run_id"]]
            for r in best_records(runs, metric)]
    return text_table([header, *rows])


def _short(value: Any) -> str:
    return "-" if value is None else (",".join(map(str, value)) or "none") if isinstance(value, list) else str(value)


def export_config(run, path: Path, metric: str) -> None:
    """The winning run's full config as a preset-style YAML that `hypercl run`/`rerun` accept."""
    cfg = config_from_flat(decode_params(run.data.params), saved=True)
    value = run.data.metrics.get(metric)
    header = f"# exported by `hypercl best` from MLflow run {run.info.run_id} ({metric} = {value})\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(cfg.model_dump(), sort_keys=False))
