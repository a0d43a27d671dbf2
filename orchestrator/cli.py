"""The `hypercl` command.

User mistakes (`UserError`) end as one line on stderr and exit status 2.
Ray and MLflow are imported only by the subcommands that need them, so
`hypercl run` starts fast and works without a cluster.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path


os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run one continual-learning experiment in this process")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="preset name (see `hypercl presets`) or a YAML file")
    src.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run at its next task")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method.beta=0 (repeatable)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of run folders (default: runs/)")
    p.add_argument("--name", help="run folder name (default: <preset>-<timestamp>)")
    p.add_argument("--data-root", help="folder holding MNIST/raw/ (default: $HYPERCL_DATA, ../shared/data, ./data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from hypercl_core.config import load_config, parse_override  # noqa: PLC0415
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from hypercl_core.experiment import resume_run, start_run  # noqa: PLC0415
    from hypercl_core.metrics import score_name  # noqa: PLC0415

    if args.resume:
        moved = dict(parse_override(item) for item in args.overrides)
        if set(moved) - {"device"}:
            raise UserError("--set can change only the device of a run being resumed (e.g. --set device=cpu); "
                            "start a new run with --config to change anything else")
        exp = resume_run(args.resume, device=moved.get("device"), data_root=args.data_root)
        print(f"resuming {args.resume} after task {exp.tasks_done}/{exp.cfg.benchmark.num_tasks}", file=sys.stderr)
    else:
        cfg = load_config(args.config, args.overrides)
        name = args.name or f"{Path(args.config).stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        exp = start_run(cfg, Path(args.runs_dir) / name, data_root=args.data_root)
        print(f"run folder: {exp.run_dir}", file=sys.stderr)
    results = exp.run(show_progress=not args.no_progress)
    key = score_name(exp.cfg)
    s = results["summary"]
    print(
        f"{exp.cfg.benchmark.name} {exp.cfg.benchmark.scenario}: during_{key} {s[f'during_{key}']:.4f}  "
        f"final_{key} {s[f'final_{key}']:.4f}  forgetting {s['forgetting']:.4f}  "
        f"ratio {s['compression_ratio']:.4f}  {s['steps_per_s']:.1f} steps/s  wall {s['wall_s']:.1f}s"
    )
    print(f"results: {exp.run_dir / 'results.json'}")
    return 0


def _add_samples(sub) -> None:
    p = sub.add_parser("samples", help="sample grid of a replay model's run: after each task vs after all tasks")
    p.add_argument("run_dir", help="a run folder with a replay model: class_mnist_vae/gan, HNET+R or HNET+TIR")
    p.add_argument("--out", help="PNG path (default: <run_dir>/samples.png)")
    p.add_argument("--data-root")
    p.set_defaults(func=cmd_samples)


def cmd_samples(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from hypercl_core.experiment import resume_run  # noqa: PLC0415
    from hypercl_core.replay.grid import plot_sample_grid  # noqa: PLC0415

    import torch  # noqa: PLC0415

    exp = resume_run(args.run_dir, data_root=args.data_root)
    # A replay run is the model itself; HNET+R and HNET+TIR runs carry one as a subsystem.
    model = getattr(exp.learner, "replay", exp.learner)
    if not hasattr(model, "kept_samples"):
        raise UserError(f"{args.run_dir} is a {exp.cfg.method.name} run without a replay model; "
                        "samples needs a replay run (e.g. --config class_mnist_vae)")
    if exp.tasks_done == 0:
        raise UserError(f"{args.run_dir} has not finished a task yet; resume it with hypercl run --resume {args.run_dir}")
    tasks = list(range(exp.tasks_done))
    after_learning = torch.stack([model.samples_after_learning[t] for t in tasks])
    after_all = model.kept_samples(tasks).cpu()
    digits = exp.cfg.benchmark.name == "class_mnist"
    labels = [f"digit {model.bench.tasks[t].class_offset}" if digits else f"task {t}" for t in tasks]
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.png"
    title = f"{exp.cfg.benchmark.name}, {exp.cfg.method.name}: {exp.tasks_done} tasks learned"
    plot_sample_grid(after_learning, after_all, labels, title, out)
    print(f"wrote {out}")
    return 0


def _add_presets(sub) -> None:
    p = sub.add_parser("presets", help="list the experiment presets")
    p.set_defaults(func=cmd_presets)


def cmd_presets(args: argparse.Namespace) -> int:
    from hypercl_core.config import available_presets  # noqa: PLC0415

    print("\n".join(available_presets()))
    return 0


def _add_tracking(p) -> None:
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="MLflow URI (default: $MLFLOW_TRACKING_URI, else SQLite inside the sweep folder)")
    p.add_argument("--runs-dir", default="runs", help="parent of sweeps/ (default: runs/)")


def _add_cluster(p) -> None:
    """Where and how wide the trials run: shared by sweep, rerun and robustness."""
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster: auto or ray://host:10001 (default: $RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--gpus-per-subsystem", type=float, default=None, metavar="G",
                   help="GPUs per subsystem actor: 1, a fraction (0.25 puts four one-subsystem trials on each GPU) "
                        "or 0 for CPUs (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-subsystem", type=float, default=0.75,
                   help="CPUs per subsystem actor without GPUs (default 0.75: one CPU per one-subsystem trial)")
    p.add_argument("--data-root", help="MNIST root on every node (default: resolved per node)")
    p.add_argument("--storage", help="where trial checkpoints and Tune logs go, seen by every node: s3://bucket/prefix "
                                     "or a shared folder; needed with --address (default: the sweep folder)")



def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="Ray Tune + Optuna sweep of a search space over a benchmark preset")
    p.add_argument("--space", help="search space name (search_spaces/*.yaml) or YAML file")
    p.add_argument("--preset", help="benchmark preset or config YAML the space is applied to")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the preset for every trial (repeatable)")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo")
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna TPE sampler")
    p.add_argument("--name", help="sweep name (default: <preset>-<space>-<timestamp>)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="finish an interrupted sweep")
    p.add_argument("--top", type=int, default=5, help="rows of the best-config table printed at the end")
    p.add_argument("--study-storage", metavar="URL",
                   help="database of the Optuna study, e.g. postgresql://user:pw@host:5432/db, so it outlives the "
                        "cluster (default: optuna.db in the sweep folder)")
    _add_cluster(p)
    _add_tracking(p)
    p.set_defaults(func=cmd_sweep)


def _check_counts(args: argparse.Namespace) -> None:
    """Counts and sizes that Ray or Tune would otherwise reject with a traceback (or ignore)."""
    from hypercl_core.errors import UserError  # noqa: PLC0415

    for flag in ("num_samples", "max_concurrent", "top", "seeds", "n_archs", "bins"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    cpus = getattr(args, "cpus_per_subsystem", None)
    if cpus is not None and cpus <= 0:
        raise UserError(f"--cpus-per-subsystem must be positive, got {cpus}")
    gpus = getattr(args, "gpus_per_subsystem", None)
    if gpus is not None and not 0 <= gpus <= 1:
        raise UserError(f"--gpus-per-subsystem must be 0, 1 or a fraction in between (0.25 puts four subsystems on "
                        f"one GPU), got {gpus:g}")


def _cluster_options(args: argparse.Namespace) -> dict:
    """What sweep, rerun and robustness ask of the cluster and the tracking store, alike."""
    storage = args.storage
    if storage and "://" not in storage:  # a shared folder; Tune reads a relative path as a URI
        storage = str(Path(storage).resolve())
    return {"name": args.name, "max_concurrent": args.max_concurrent, "tracking_uri": args.tracking_uri or "",
            "gpus_per_subsystem": args.gpus_per_subsystem, "cpus_per_subsystem": args.cpus_per_subsystem,
            "data_root": args.data_root, "storage": storage,
            **({"study_storage": args.study_storage} if getattr(args, "study_storage", None) else {})}


def _new_folder(spec, args: argparse.Namespace) -> Path:
    """The folder, once the request passed the checks that need none (cluster, tracking server)."""
    from orchestrator import sweep  # noqa: PLC0415
    from orchestrator.tracking import check_tracking_uri  # noqa: PLC0415

    sweep.check_cluster_request(spec, args.address)
    if spec.tracking_uri:
        check_tracking_uri(spec.tracking_uri)
    if spec.study_storage:
        sweep.check_study_storage(spec.study_storage)
    return sweep.new_sweep_folder(Path(args.runs_dir), spec)


def _resumed(args: argparse.Namespace, kind: str):
    """The saved request of the folder to resume, which must be of this command's kind."""
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    folder = Path(args.resume)
    spec = sweep.SweepSpec.load(folder)
    if spec.kind != kind:
        raise UserError(f"{folder} holds a {spec.kind}, not a {kind}; resume it with hypercl {spec.kind} --resume {folder}")
    sweep.check_cluster_request(spec, args.address)
    return spec, folder


def cmd_sweep(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    _check_counts(args)

    if args.resume:
        spec, folder = _resumed(args, "sweep")
    else:
        if not (args.space and args.preset):
            raise UserError("hypercl sweep needs --space and --preset (or --resume SWEEP_DIR)")
        spec = sweep.plan_sweep(args.space, args.preset, args.overrides, num_samples=args.num_samples,
                                scheduler=args.scheduler, seed=args.seed, **_cluster_options(args))
        folder = _new_folder(spec, args)
    print(f"sweep folder: {folder}  (resume if interrupted: hypercl sweep --resume {folder})", file=sys.stderr)
    outcome = sweep.start(spec, folder, args.address)
    if outcome.finished_trials:
        _print_best(spec.tracking_uri, spec.name, spec.metric, args.top, spec.mode)
        _print_ui_hint(spec.tracking_uri)
    return _exit_status(outcome, f"hypercl sweep --resume {folder}", folder)


def _exit_status(outcome, resume_command: str, folder: Path) -> int:
    """0 when trials finished; 130 after Ctrl-C (resumable); 1 when every trial failed."""
    if outcome.interrupted:
        print(f"hypercl: interrupted; continue with: {resume_command}", file=sys.stderr)
        return 130
    if outcome.finished_trials == 0:
        print(f"hypercl: error: no trial finished ({outcome.errors} failed); their errors are under "
              f"{outcome.logs}", file=sys.stderr)
        return 1
    return 0


def _add_best(sub) -> None:
    p = sub.add_parser("best", help="rank a sweep's trials from MLflow and export the winner")
    p.add_argument("--name", help="sweep name (default: the newest sweep under --runs-dir)")
    p.add_argument("--metric", help="default: the sweep's objective (final_acc, or final_mse for regression)")
    p.add_argument("--mode", choices=["max", "min"], help="default: the sweep's recorded mode (with --metric: that metric's own)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--export", metavar="YAML", help="write the best config here (for `hypercl rerun`)")
    _add_tracking(p)
    p.set_defaults(func=cmd_best)


def _sweep_uri(args: argparse.Namespace) -> tuple[str, str]:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator.tracking import embedded_uri  # noqa: PLC0415

    sweeps = Path(args.runs_dir) / "sweeps"
    name = args.name
    if name is None:
        found = sorted((p for p in sweeps.glob("*/sweep.yaml")), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserError(f"no sweeps under {sweeps}; pass --name (and --tracking-uri for a server)")
        name = found[-1].parent.name
    if args.tracking_uri:  # a server that is down fails here, not after minutes of client retries
        from orchestrator.tracking import check_tracking_uri  # noqa: PLC0415

        check_tracking_uri(args.tracking_uri)
    return args.tracking_uri or embedded_uri(sweeps / name), name


def cmd_best(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator.best import best_runs, export_config, sweep_objective  # noqa: PLC0415

    _check_counts(args)
    uri, name = _sweep_uri(args)
    if args.metric is None:  # the objective and direction the sweep recorded
        args.metric, recorded_mode = sweep_objective(Path(args.runs_dir), name, args.tracking_uri)
        args.mode = args.mode or recorded_mode
    runs = best_runs(uri, name, args.metric, args.top, args.mode)
    if not runs:
        raise UserError(f"sweep {name!r} has no finished trial with metric {args.metric!r} yet")
    _print_best(uri, name, args.metric, args.top, args.mode, runs)
    if args.export:
        export_config(runs[0], Path(args.export), args.metric)
        print(f"exported the best config to {args.export}; rerun it with: hypercl rerun {args.export} --seeds 5")
    return 0


def _print_best(uri: str, name: str, metric: str, top: int, mode: str | None = None, runs=None) -> None:
    from orchestrator.best import best_runs, format_table  # noqa: PLC0415

    runs = runs if runs is not None else best_runs(uri, name, metric, top, mode)
    print(f"\nbest {len(runs)} of sweep {name} by {metric}:")
    print(format_table(runs, metric))


def _print_ui_hint(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        print(f"open the MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000  (then http://127.0.0.1:5000)")
    else:
        print(f"open the MLflow UI at {uri}")


def _add_rerun(sub) -> None:
    p = sub.add_parser("rerun", help="rerun one config over seeds in parallel; logs mean ± SEM")
    p.add_argument("config", nargs="?", help="config YAML (e.g. from `hypercl best --export`) or preset")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--name", help="name (default: rerun-<config>-<timestamp>)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="finish an interrupted rerun")
    _add_cluster(p)
    _add_tracking(p)
    p.set_defaults(func=cmd_rerun)


def cmd_rerun(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    _check_counts(args)

    if args.resume:
        spec, folder = _resumed(args, "rerun")
    else:
        if not args.config:
            raise UserError("hypercl rerun needs a config (YAML or preset) or --resume SWEEP_DIR")
        spec = sweep.plan_rerun(args.config, args.seeds, **_cluster_options(args))
        folder = _new_folder(spec, args)
    print(f"rerun folder: {folder}  (resume if interrupted: hypercl rerun --resume {folder})", file=sys.stderr)
    outcome = sweep.start(spec, folder, args.address)
    if outcome.interrupted or not outcome.finished_trials:
        return _exit_status(outcome, f"hypercl rerun --resume {folder}", folder)
    from orchestrator.best import best_runs  # noqa: PLC0415

    runs = best_runs(spec.tracking_uri, spec.name, spec.metric, spec.total_trials, spec.mode)
    values = [r.data.metrics[spec.metric] for r in runs]
    if values:
        mean = sum(values) / len(values)
        print(f"{spec.metric}: {mean:.4f} ± {sweep.sem(values):.4f} (SEM over {len(values)} of "
              f"{spec.total_trials} seeds)")
    _print_ui_hint(spec.tracking_uri)
    return 0


def _add_robustness(sub) -> None:
    p = sub.add_parser("robustness", help="accuracy vs compression ratio over random hnet architectures (Fig. A7)")
    p.add_argument("--preset", help="benchmark preset or config YAML (its hnet must be chunked)")
    p.add_argument("--n-archs", type=int, default=100, help="architectures to train (default 100)")
    p.add_argument("--ratio-range", type=float, nargs=2, default=(0.01, 2.0), metavar=("LO", "HI"),
                   help="compression ratios to keep (default 0.01 2.0)")
    p.add_argument("--bins", type=int, default=10, help="ratio bins filled evenly (default 10)")
    p.add_argument("--bin-scale", choices=["log", "linear"], default="log",
                   help="bin spacing over the ratio range (default log: the range spans two decades)")
    p.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset key for every architecture, e.g. train.iters_per_task=500")
    p.add_argument("--name", help="study name (default: robustness-<preset>-<timestamp>)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="finish an interrupted study")
    p.add_argument("--plot-only", action="store_true", help="redraw the CSV and plot of --name from MLflow alone")
    _add_cluster(p)
    _add_tracking(p)
    p.set_defaults(func=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import robustness, sweep  # noqa: PLC0415

    _check_counts(args)
    if args.plot_only:
        if not args.name:
            raise UserError("--plot-only needs --name (the study to redraw)")
        uri, name = _sweep_uri(args)
        return _report_study(uri, name, Path(args.runs_dir) / "sweeps" / name)
    if args.resume:
        spec, folder = _resumed(args, "robustness")
    else:
        if not args.preset:
            raise UserError("hypercl robustness needs --preset (or --resume SWEEP_DIR, or --plot-only --name NAME)")
        spec = robustness.plan_robustness(
            args.preset, args.overrides, args.n_archs, tuple(args.ratio_range), args.bins, args.bin_scale, args.seed,
            **_cluster_options(args))
        folder = _new_folder(spec, args)
    ratios = [_ratio_of(spec, v) for v in spec.variants]
    print(f"study folder: {folder}  ({len(spec.variants)} architectures, ratios {min(ratios):.4g}-{max(ratios):.4g}; "
          f"resume if interrupted: hypercl robustness --resume {folder})", file=sys.stderr)
    outcome = sweep.start(spec, folder, args.address)
    status = _report_study(spec.tracking_uri, spec.name, folder, parent_run_id=spec.parent_run_id)
    return _exit_status(outcome, f"hypercl robustness --resume {folder}", folder) or status


def _ratio_of(spec, variant: dict) -> float:
    from hypercl_core.accounting import count_params  # noqa: PLC0415
    from hypercl_core.config import config_from_flat  # noqa: PLC0415

    return count_params(config_from_flat(variant, spec.config)).compression_ratio


def _report_study(uri: str, name: str, folder: Path, parent_run_id: str | None = None) -> int:
    """Write (and with a parent run id, log) the study's CSV and plot; print the per-bin table."""
    from orchestrator import robustness  # noqa: PLC0415

    study = robustness.read_study(uri, name)
    files = robustness.write_study(study, folder)
    if parent_run_id is not None:
        robustness.log_study(uri, parent_run_id, files)
    print("\n".join(robustness.summary_lines(study)))
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypercl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_samples(sub)
    _add_presets(sub)
    _add_sweep(sub)
    _add_best(sub)
    _add_rerun(sub)
    _add_robustness(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415

    from orchestrator.interrupts import sigterm_like_ctrl_c  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    sigterm_like_ctrl_c()
    try:
        return args.func(args)
    except UserError as exc:
        print(f"hypercl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hypercl: interrupted; continue with the --resume command printed above (a run or sweep continues "
              "after its last finished task)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
