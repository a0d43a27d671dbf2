# PYTHON_ARGCOMPLETE_OK
"""The `hypercl` command.

User mistakes (`UserError`) end as one line on stderr and exit status 2.
Ray and MLflow are imported only by the subcommands that need them, so
`hypercl run`, the listings and tab completion start fast and work without
a cluster. Results go to stdout; hints and progress go through
orchestrator.console to stderr, so `-q` leaves results and errors only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

import argcomplete

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from hypercl import __version__  # noqa: E402
from orchestrator.console import note, quiet, set_verbosity  # noqa: E402

log = logging.getLogger("hypercl.cli")

DESCRIPTION = """\
Continual learning with hypernetworks (HNET, HNET+R, HNET+TIR, HyperMask) and the baselines they are
compared with (fine-tuning, from scratch, joint, online EWC, SI, DGR+distill) on MNIST and CIFAR benchmarks:
one experiment in this process, or Ray Tune + Optuna sweeps with every trial tracked in MLflow,
resumable after any interruption."""
BEST_FORMATS = ("table", "json", "csv")

EPILOG = """\
main workflows:
  1. launch a sweep of a search space over a preset (Optuna samples, Ray runs, MLflow records):
       hypercl sweep --space smoke --config split_mnist_cl1 --num-samples 8 --max-concurrent 2
  2. query MLflow for the best configs, export the winner, rerun it over seeds, compare:
       hypercl best --top 5 --export best.yaml     (the newest sweep; --name NAME for another)
       hypercl best --format csv > trials.csv      (or --format json, for scripts)
       hypercl rerun --config best.yaml --seeds 5  (mean +- SEM over seeds 0-4)
       hypercl sweeps                              (status and best value of every sweep and rerun)
       hypercl compare --configs split_mnist_cl2_ewc split_mnist_cl2_si --seeds 3 --name cl2
       hypercl table --name cl2 --paper            (methods side by side; --format latex or csv)
  3. accuracy vs compression ratio over random hnet architectures (the paper's Fig. A7):
       hypercl robustness --config split_mnist_cl1 --n-archs 100 --bins 10

one experiment in this process: hypercl run --config split_mnist_cl1 (--print-config shows it, runs nothing)
what there is to pick: hypercl presets, hypercl spaces; help on a command: hypercl COMMAND -h
tab completion (bash, zsh): eval "$(register-python-argcomplete hypercl)"
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and appends an option's default to its help, unless the help says it
    already or there is none worth saying (None, an empty list, a flag that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default is None or action.default == [] or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other hypercl error: one line, with where to read more, exit 2
    (argparse's own form is the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"hypercl: error: {message}; see {self.prog} -h\n")


def _command(sub, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose -h starts with the same summary that `hypercl -h` lists."""
    return sub.add_parser(name, help=summary, description=summary)


def _add_verbosity(parser: argparse.ArgumentParser, top: bool) -> None:
    """-q/-v, before the subcommand (`hypercl -q sweep ...`) or after it (`hypercl sweep ... -q`).

    A subcommand's copies default to SUPPRESS: argparse copies a subcommand's defaults over the
    top-level values, which would otherwise undo a -q given before the subcommand.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                       help="results and errors only: no progress, hints or folder lines")
    group.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                       help="also log what hypercl decides on its own (which sweep, which store, which config); "
                            "-vv: debug")


def _completer(action: argparse.Action, complete: Callable[..., Iterable[str]]) -> argparse.Action:
    """Attach an argcomplete completer (argcomplete reads the action's `completer` attribute)."""
    action.completer = complete  # type: ignore[attr-defined]
    return action


def _names_then_yaml_files(names: list[str], prefix: str) -> list[str]:
    """Built-in names first (what is usually meant), then YAML files and folders, as a path is typed."""
    from argcomplete.completers import FilesCompleter  # noqa: PLC0415

    return [name for name in names if name.startswith(prefix)] + list(FilesCompleter(("yaml", "yml"))(prefix))


def complete_configs(prefix: str, **_) -> list[str]:
    """--config: preset names, then YAML files."""
    from hypercl_core.config import available_presets  # noqa: PLC0415

    return _names_then_yaml_files(available_presets(), prefix)


def complete_spaces(prefix: str, **_) -> list[str]:
    """--space: built-in search space names, then YAML files."""
    from search_spaces.space import available_spaces  # noqa: PLC0415

    return _names_then_yaml_files(available_spaces(), prefix)


def _sweep_folders_on_the_line(parsed_args: argparse.Namespace) -> list[Path]:
    """The sweep folders under the --runs-dir typed so far on the command line (else runs/)."""
    from orchestrator.listing import sweep_folders  # noqa: PLC0415

    return sweep_folders(Path(getattr(parsed_args, "runs_dir", None) or "runs"))


def complete_sweep_names(prefix: str, parsed_args: argparse.Namespace, **_) -> list[str]:
    """--name of best and robustness: the sweeps under --runs-dir."""
    return [f.name for f in _sweep_folders_on_the_line(parsed_args) if f.name.startswith(prefix)]


def complete_sweep_folders(prefix: str, parsed_args: argparse.Namespace, **_) -> list[str]:
    """--resume of sweep, rerun and robustness: the sweep folders under --runs-dir."""
    return [str(f) for f in _sweep_folders_on_the_line(parsed_args) if str(f).startswith(prefix)]


def _add_config(p: argparse.ArgumentParser, required: str, what: str, set_what: str,
                example: str = "'hnet.hidden=[25,25]'") -> None:
    """--config, the one spelling of "the preset or YAML" for every command that starts something, and --set.

    `--preset`, its spelling in sweep and robustness before, still works (hidden from help): scripts use it.
    """
    _completer(p.add_argument("--config", help=f"preset name (list them: hypercl presets) or config YAML file "
                                               f"{what}; required {required}"), complete_configs)
    p.add_argument("--preset", dest="config", help=argparse.SUPPRESS)
    _add_overrides(p, set_what, example)


def _add_overrides(p: argparse.ArgumentParser, what: str = "", example: str = "'hnet.hidden=[25,25]'") -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key{what}, e.g. --set method.beta=0 or --set {example} "
                        "(repeatable; none by default)")


def _add_runs_dir(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--runs-dir", default="runs", help=f"parent folder of {what} (default: runs/)")


def _add_run(sub) -> None:
    p = _command(sub, "run", "run one continual-learning experiment in this process")
    src = p.add_mutually_exclusive_group(required=True)
    _completer(src.add_argument("--config", help="preset name (list them: hypercl presets) or config YAML file; "
                                                 "required unless --resume"), complete_configs)
    src.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run at its next task; required unless --config")
    _add_overrides(p, "")
    p.add_argument("--print-config", action="store_true",
                   help="print the config --config and --set resolve to, as YAML, and stop: nothing is trained "
                        "or written")
    _add_runs_dir(p, "run folders")
    p.add_argument("--name", help="run folder name (default: <config>-<timestamp>)")
    p.add_argument("--data-root", help="folder holding MNIST/raw/ (default: $HYPERCL_DATA, ../shared/data, ./data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (as with -q)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from hypercl_core.config import load_config, parse_override  # noqa: PLC0415
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from hypercl_core.experiment import resume_run, start_run  # noqa: PLC0415
    from hypercl_core.metrics import score_name  # noqa: PLC0415

    if args.resume:
        if args.print_config:
            raise UserError(f"--print-config shows the config of a new run; a run being resumed keeps its own "
                            f"({Path(args.resume) / 'config.yaml'}): drop --print-config or pass --config")
        moved = dict(parse_override(item) for item in args.overrides)
        if set(moved) - {"device"}:
            raise UserError("--set can change only the device of a run being resumed (e.g. --set device=cpu); "
                            "start a new run with --config to change anything else")
        exp = resume_run(args.resume, device=moved.get("device"), data_root=args.data_root)
        note(f"resuming {args.resume} after task {exp.tasks_done}/{exp.cfg.benchmark.num_tasks}")
    else:
        cfg = load_config(args.config, args.overrides)
        log.info("config %s with %d override(s): %s", args.config, len(args.overrides), " ".join(args.overrides))
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
        name = args.name or f"{Path(args.config).stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        exp = start_run(cfg, Path(args.runs_dir) / name, data_root=args.data_root)
        note(f"run folder: {exp.run_dir}")
    results = exp.run(show_progress=not (args.no_progress or quiet()))
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
    p = _command(sub, "samples", "sample grid of a replay model's run: after each task vs after all tasks")
    p.add_argument("run_dir", help="a run folder with a replay model: class_mnist_vae/gan, HNET+R or HNET+TIR")
    p.add_argument("--out", help="PNG path (default: <run_dir>/samples.png)")
    p.add_argument("--data-root", help="folder holding MNIST/raw/ (default: $HYPERCL_DATA, ../shared/data, ./data)")
    p.set_defaults(func=cmd_samples)


def cmd_samples(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from hypercl_core.experiment import resume_run  # noqa: PLC0415
    from hypercl_core.replay.grid import plot_sample_grid, sample_grid_title  # noqa: PLC0415

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
    title = sample_grid_title(exp.cfg, exp.tasks_done, Path(args.run_dir).name)
    plot_sample_grid(after_learning, after_all, labels, title, out)
    print(f"wrote {out}")
    return 0


def _add_listings(sub) -> None:
    _command(sub, "presets", "list the experiment presets (for --config), one line each").set_defaults(
        func=cmd_presets)
    _command(sub, "spaces", "list the search spaces (for sweep --space), one line each").set_defaults(
        func=cmd_spaces)
    p = _command(sub, "sweeps", "list the sweeps, reruns and studies under --runs-dir: status, trials, best value")
    _add_runs_dir(p, "sweeps/")
    p.set_defaults(func=cmd_sweeps)


def cmd_presets(args: argparse.Namespace) -> int:
    from orchestrator.listing import presets, text_table  # noqa: PLC0415

    print(text_table([list(row) for row in presets()]))
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from orchestrator.listing import spaces, text_table  # noqa: PLC0415

    print(text_table([list(row) for row in spaces()]))
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    from orchestrator.listing import SWEEP_HEADER, sweep_rows, text_table  # noqa: PLC0415

    rows = sweep_rows(Path(args.runs_dir))
    if not rows:
        note(f"no sweeps under {Path(args.runs_dir) / 'sweeps'}; start one: hypercl sweep --space smoke "
             "--config split_mnist_cl1 (or pass --runs-dir)")
        return 0
    print(text_table([SWEEP_HEADER, *(row.cells() for row in rows)]))
    return 0


def _add_tracking(p) -> None:
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="MLflow URI (default: $MLFLOW_TRACKING_URI, else SQLite inside the sweep folder)")
    _add_runs_dir(p, "sweeps/")


def _add_resume(p: argparse.ArgumentParser, what: str) -> None:
    _completer(p.add_argument("--resume", metavar="SWEEP_DIR",
                              help=f"finish an interrupted {what}: the folder it printed when it started "
                                   f"(default: start a new {what})"), complete_sweep_folders)


def _add_cluster(p) -> None:
    """Where and how wide the trials run: shared by sweep, rerun and robustness."""
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: as many as the cluster's CPUs or GPUs fit)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster: auto or ray://host:10001 (default: $RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--gpus-per-subsystem", type=float, default=None, metavar="G",
                   help="GPUs per subsystem actor: 1, a fraction (0.25 puts four one-subsystem trials on each GPU) "
                        "or 0 for CPUs (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-subsystem", type=float, default=0.75,
                   help="CPUs per subsystem actor without GPUs (default 0.75: one CPU per one-subsystem trial)")
    p.add_argument("--system-metrics", action="store_true",
                   help="log MLflow's system metrics on every trial run every 10 s: CPU, memory, disk and network "
                        "of the trial's node (machine-wide, so trials sharing a node log the same), GPU where NVML "
                        "sees one (default: off)")
    p.add_argument("--data-root", help="MNIST root on every node (default: resolved per node)")
    p.add_argument("--storage", help="where trial checkpoints and Tune logs go, seen by every node: s3://bucket/prefix "
                                     "or a shared folder; needed with --address (default: the sweep folder)")



def _add_sweep(sub) -> None:
    p = _command(sub, "sweep", "Ray Tune + Optuna sweep of a search space over a benchmark preset")
    _completer(p.add_argument("--space", help="search space name (list them: hypercl spaces) or YAML file; "
                                              "required unless --resume"), complete_spaces)
    _add_config(p, "unless --resume", "the space is applied to", " for every trial")
    p.add_argument("--num-samples", type=int, default=8, help="trials Optuna samples from the space")
    p.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo",
                   help="fifo: every trial learns all tasks; asha: trials behind the others stop after a task")
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna TPE sampler")
    p.add_argument("--name", help="sweep name (default: <config>-<space>-<timestamp>)")
    _add_resume(p, "sweep")
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
            "data_root": args.data_root, "storage": storage, "system_metrics": args.system_metrics,
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
    """The saved request of the folder to resume, which must be of this command's kind.

    A resumed sweep keeps the config and space it started with (its trials so far were run on them),
    so options that would change them are refused rather than ignored.
    """
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    given = [flag for flag, dest in (("--config", "config"), ("--set", "overrides"), ("--space", "space"))
             if getattr(args, dest, None)]
    if given:
        raise UserError(f"--resume continues {args.resume} with the config it started with; drop {', '.join(given)} "
                        f"(or start a new {kind} without --resume)")
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
        if not (args.space and args.config):
            raise UserError("hypercl sweep needs --space and --config (or --resume SWEEP_DIR); "
                            "list them: hypercl spaces, hypercl presets")
        spec = sweep.plan_sweep(args.space, args.config, args.overrides, num_samples=args.num_samples,
                                scheduler=args.scheduler, seed=args.seed, **_cluster_options(args))
        folder = _new_folder(spec, args)
    note(f"sweep folder: {folder}  (resume if interrupted: hypercl sweep --resume {folder})")
    outcome = sweep.start(spec, folder, args.address)
    if outcome.outcomes is not None:
        counts, *why = outcome.outcomes.lines(spec.scheduler)
        print("\n" + counts)
        for line in why:  # why ASHA stopped most trials: a hint, gone with -q
            note(line)
    if outcome.finished_trials:
        _print_best(spec.tracking_uri, spec.name, spec.metric, args.top, spec.mode)
        _print_ui_hint(spec.tracking_uri, spec.experiment_id)
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
    p = _command(sub, "best", "rank a sweep's trials from MLflow and export the winner")
    _completer(p.add_argument("--name", help="sweep name (list them: hypercl sweeps; default: the newest sweep "
                                             "under --runs-dir)"), complete_sweep_names)
    p.add_argument("--metric", help="what to rank by (default: the sweep's objective: final_acc, or final_mse "
                                    "for regression)")
    p.add_argument("--mode", choices=["max", "min"],
                   help="max: highest first (default: the sweep's recorded mode; with --metric: that metric's own)")
    p.add_argument("--top", type=int, default=5, help="how many of the best trials to show")
    p.add_argument("--format", choices=BEST_FORMATS, default="table",
                   help="table for reading; json or csv for scripts: rank, metric, run id, key params, ratio")
    p.add_argument("--export", metavar="YAML",
                   help="write the best config here, for hypercl rerun --config (default: no export)")
    _add_tracking(p)
    p.set_defaults(func=cmd_best)


def _sweep_uri(args: argparse.Namespace) -> tuple[str, str]:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator.listing import sweep_folders  # noqa: PLC0415
    from orchestrator.tracking import embedded_uri  # noqa: PLC0415

    sweeps = Path(args.runs_dir) / "sweeps"
    name = args.name
    if name is None:
        found = sweep_folders(Path(args.runs_dir))
        if not found:
            raise UserError(f"no sweeps under {sweeps}; pass --name (and --tracking-uri for a server)")
        name = found[-1].name
        log.info("no --name: the newest sweep under %s is %s", sweeps, name)
    if args.tracking_uri:  # a server that is down fails here, not after minutes of client retries
        from orchestrator.tracking import check_tracking_uri  # noqa: PLC0415

        check_tracking_uri(args.tracking_uri)
    uri = args.tracking_uri or embedded_uri(sweeps / name)
    log.info("tracking store of %s: %s", name, uri)
    return uri, name


def cmd_best(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator.best import best_runs, export_config, sweep_objective  # noqa: PLC0415

    _check_counts(args)
    uri, name = _sweep_uri(args)
    if args.metric is None:  # the objective and direction the sweep recorded
        args.metric, recorded_mode = sweep_objective(Path(args.runs_dir), name, args.tracking_uri)
        args.mode = args.mode or recorded_mode
        log.info("ranking by the sweep's objective: %s (%s)", args.metric, args.mode)
    runs = best_runs(uri, name, args.metric, args.top, args.mode)
    if not runs:
        raise UserError(f"sweep {name!r} has no finished trial with metric {args.metric!r} yet")
    if args.format == "table":
        _print_best(uri, name, args.metric, args.top, args.mode, runs)
    else:
        from orchestrator.best import best_records  # noqa: PLC0415
        from orchestrator.best_formats import best_csv, best_json  # noqa: PLC0415

        records = best_records(runs, args.metric)
        sys.stdout.write(best_json(records, name, args.metric, args.mode) if args.format == "json"
                         else best_csv(records, args.metric))
    if args.export:
        export_config(runs[0], Path(args.export), args.metric)
        note(f"exported the best config to {args.export}; rerun it over seeds with: "
             f"hypercl rerun --config {args.export} --seeds 5")
    return 0


def _print_best(uri: str, name: str, metric: str, top: int, mode: str | None = None, runs=None) -> None:
    from orchestrator.best import best_runs, format_table  # noqa: PLC0415

    runs = runs if runs is not None else best_runs(uri, name, metric, top, mode)
    print(f"\nbest {len(runs)} of sweep {name} by {metric} (trials that learned every task):")
    print(format_table(runs, metric))


def _print_ui_hint(uri: str, experiment_id: str | None) -> None:
    """Where to browse the results (stdout, beside the table it follows; not with -q).

    The link names the experiment and `workflowType=machine_learning`: MLflow 3.17's UI reads the
    view from there (or from what the browser last chose), not from the experiment's kind tag, and
    otherwise opens on its GenAI overview (traces, token usage) with the runs out of sight.
    """
    if quiet():
        return
    page = f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning" if experiment_id else ""
    if uri.startswith("sqlite:///"):
        print(f"open the MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000  (then "
              f"http://127.0.0.1:5000{page})")
    else:
        print(f"open the MLflow UI at {uri.rstrip('/')}{page}")


def _add_rerun(sub) -> None:
    p = _command(sub, "rerun", "rerun one config over seeds in parallel; logs mean ± SEM")
    _add_config(p, "unless --resume", "(e.g. from hypercl best --export)", " on top of the config")
    # the config's spelling before --config: a positional, still accepted (hidden from help)
    p.add_argument("config_positional", nargs="?", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, one trial each")
    p.add_argument("--name", help="name (default: rerun-<config>-<timestamp>)")
    _add_resume(p, "rerun")
    _add_cluster(p)
    _add_tracking(p)
    p.set_defaults(func=cmd_rerun)


def cmd_rerun(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    _check_counts(args)

    if args.config_positional:
        if args.config and args.config != args.config_positional:
            raise UserError(f"two configs given ({args.config_positional} and --config {args.config}); pass one, "
                            "as --config")
        args.config = args.config_positional
    if not args.resume and not args.config:
        raise UserError("hypercl rerun needs a config: --config best.yaml (e.g. from hypercl best --export) or "
                        "--config PRESET, or --resume SWEEP_DIR")
    spec, outcome, status = _run_fixed(args, "rerun", lambda: sweep.plan_rerun(
        args.config, args.seeds, args.overrides, **_cluster_options(args)))
    if status is not None:
        return status
    from orchestrator.best import best_runs  # noqa: PLC0415

    runs = best_runs(spec.tracking_uri, spec.name, spec.metric, spec.total_trials, spec.mode)
    values = [r.data.metrics[spec.metric] for r in runs]
    if values:
        mean = sum(values) / len(values)
        print(f"{spec.metric}: {mean:.4f} ± {sweep.sem(values):.4f} (SEM over {len(values)} of "
              f"{spec.total_trials} seeds)")
    _print_ui_hint(spec.tracking_uri, spec.experiment_id)
    return 0


def _run_fixed(args: argparse.Namespace, kind: str, plan: Callable):
    """A rerun or comparison, new (`plan()`) or resumed, run to its end: (spec, outcome, exit status
    when it did not finish, else None)."""
    from orchestrator import sweep  # noqa: PLC0415

    if args.resume:
        spec, folder = _resumed(args, kind)
    else:
        spec = plan()
        folder = _new_folder(spec, args)
    note(f"{kind} folder: {folder}  (resume if interrupted: hypercl {kind} --resume {folder})")
    outcome = sweep.start(spec, folder, args.address)
    if outcome.interrupted or not outcome.finished_trials:
        return spec, outcome, _exit_status(outcome, f"hypercl {kind} --resume {folder}", folder)
    return spec, outcome, None


def _add_compare(sub) -> None:
    p = _command(sub, "compare", "run several presets over seeds in parallel, for hypercl table")
    _completer(p.add_argument("--configs", nargs="+", metavar="PRESET", default=[],
                              help="presets or config YAML files to compare (list them: hypercl presets); required "
                                   "unless --resume"), complete_configs)
    _add_overrides(p, " of every config", "train.iters_per_task=500")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 of each config, one trial each (default: 3)")
    p.add_argument("--name", help="name (default: compare-<timestamp>)")
    _add_resume(p, "comparison")
    _add_cluster(p)
    _add_tracking(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator import sweep  # noqa: PLC0415

    _check_counts(args)
    given = [flag for flag, value in (("--configs", args.configs), ("--seeds", args.seeds)) if value]
    if args.resume and given:
        raise UserError(f"--resume continues {args.resume} with the configs and seeds it started with; drop "
                        f"{' and '.join(given)}")
    spec, outcome, status = _run_fixed(args, "compare", lambda: sweep.plan_compare(
        args.configs, 3 if args.seeds is None else args.seeds, args.overrides, **_cluster_options(args)))
    if status is not None:
        return status
    from orchestrator.table import markdown, read_table  # noqa: PLC0415

    print()
    print(markdown(read_table([(spec.tracking_uri, spec.name)], spec.metric, {})), end="")
    note(f"the same as LaTeX or CSV, or beside the paper's figures: hypercl table --name {spec.name} "
         "--format latex --paper")
    _print_ui_hint(spec.tracking_uri, spec.experiment_id)
    return 0


def _add_table(sub) -> None:
    from orchestrator.table import FORMATS  # noqa: PLC0415

    p = _command(sub, "table", "the paper's comparison table from MLflow: methods x benchmarks, mean ± SEM over seeds")
    _completer(p.add_argument("--name", action="append", default=[], required=True,
                              help="a comparison, rerun or sweep to read (repeatable; list them: hypercl sweeps)"),
               complete_sweep_names)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="only runs with this MLflow tag, on the run or its parent (repeatable; default: every run)")
    p.add_argument("--metric", default="final_acc", help="what each cell averages (default: final_acc)")
    p.add_argument("--format", choices=list(FORMATS), default="markdown", help="markdown, csv or latex")
    p.add_argument("--paper", action="store_true", help="the paper's figure beside ours, where it reports one")
    p.add_argument("--out", metavar="FILE", help="write the table here (default: print it)")
    _add_tracking(p)
    p.set_defaults(func=cmd_table)


def cmd_table(args: argparse.Namespace) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from orchestrator.table import FORMATS, read_table  # noqa: PLC0415

    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--tag takes KEY=VALUE, got {item!r}")
        tags[key] = value
    sources = []
    for name in args.name:
        args_one = argparse.Namespace(**{**vars(args), "name": name})
        sources.append(_sweep_uri(args_one))
    text = FORMATS[args.format](read_table(sources, args.metric, tags), args.paper)
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as exc:
            raise UserError(f"cannot write the table to {out} ({exc.strerror}); pass --out a file path "
                            "in a folder you can write") from None
        note(f"table written to {out}")
    else:
        sys.stdout.write(text)
    return 0


def _add_robustness(sub) -> None:
    p = _command(sub, "robustness", "accuracy vs compression ratio over random hnet architectures (Fig. A7)")
    _add_config(p, "unless --resume or --plot-only", "(its hnet must be chunked)", " for every architecture",
                "train.iters_per_task=300 (not the architecture, which the study samples)")
    p.add_argument("--n-archs", type=int, default=100, help="architectures to train (default 100)")
    p.add_argument("--ratio-range", type=float, nargs=2, default=(0.01, 2.0), metavar=("LO", "HI"),
                   help="compression ratios to keep (default 0.01 2.0)")
    p.add_argument("--bins", type=int, default=10, help="ratio bins filled evenly (default 10)")
    p.add_argument("--bin-scale", choices=["log", "linear"], default="log",
                   help="bin spacing over the ratio range (default log: the range spans two decades)")
    p.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    _completer(p.add_argument("--name", help="study name (default: robustness-<config>-<timestamp>; with "
                                             "--plot-only: the study to redraw)"), complete_sweep_names)
    _add_resume(p, "study")
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
        if not args.config:
            raise UserError("hypercl robustness needs --config (or --resume SWEEP_DIR, or --plot-only --name NAME)")
        spec = robustness.plan_robustness(
            args.config, args.overrides, args.n_archs, tuple(args.ratio_range), args.bins, args.bin_scale, args.seed,
            **_cluster_options(args))
        folder = _new_folder(spec, args)
    ratios = [_ratio_of(spec, v) for v in spec.variants]
    note(f"study folder: {folder}  ({len(spec.variants)} architectures, ratios {min(ratios):.4g}-{max(ratios):.4g}; "
         f"resume if interrupted: hypercl robustness --resume {folder})")
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


def _add_plot(sub) -> None:
    p = _command(sub, "plot", "draw a sweep's objective against each searched param and the compression ratio, "
                              "from MLflow alone")
    _completer(p.add_argument("--name", required=True, help="sweep name (list them: hypercl sweeps)"),
               complete_sweep_names)
    p.add_argument("--out", metavar="PNG", help="where the figure goes (default: <runs-dir>/sweeps/<name>/"
                                                "sweep_plot.png; also logged on the sweep's parent run)")
    _add_tracking(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from orchestrator.sweep_plot import plot_sweep

    uri, name = _sweep_uri(args)
    print(f"wrote {plot_sweep(uri, Path(args.runs_dir), name, Path(args.out) if args.out else None)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hypercl", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_samples(sub)
    _add_listings(sub)
    _add_sweep(sub)
    _add_best(sub)
    _add_rerun(sub)
    _add_compare(sub)
    _add_table(sub)
    _add_robustness(sub)
    _add_plot(sub)
    for command in sub.choices.values():  # every subcommand alike, whoever added it
        command.formatter_class = _HelpFormatter
        _add_verbosity(command, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415

    from orchestrator.interrupts import sigterm_like_ctrl_c  # noqa: PLC0415

    from hypercl_core.provenance import record_command  # noqa: PLC0415

    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers a shell's completion request and exits; otherwise does nothing
    args = parser.parse_args(argv)
    set_verbosity(args.quiet, args.verbose)
    record_command(["hypercl", *(sys.argv[1:] if argv is None else argv)])  # what every result's provenance names
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
