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
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.errors import UserError  # noqa: PLC0415
    from hypercl_core.experiment import primary_metric, resume_run, start_run  # noqa: PLC0415

    if args.resume:
        if args.overrides:
            raise UserError("--set cannot change a run being resumed; start a new run with --config instead")
        exp = resume_run(args.resume, data_root=args.data_root)
        print(f"resuming {args.resume} after task {exp.tasks_done}/{exp.cfg.benchmark.num_tasks}", file=sys.stderr)
    else:
        cfg = load_config(args.config, args.overrides)
        name = args.name or f"{Path(args.config).stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        exp = start_run(cfg, Path(args.runs_dir) / name, data_root=args.data_root)
        print(f"run folder: {exp.run_dir}", file=sys.stderr)
    results = exp.run(show_progress=not args.no_progress)
    key = "mse" if primary_metric(exp.cfg) == "mse" else "acc"
    s = results["summary"]
    print(
        f"{exp.cfg.benchmark.name} {exp.cfg.benchmark.scenario}: during_{key} {s[f'during_{key}']:.4f}  "
        f"final_{key} {s[f'final_{key}']:.4f}  forgetting {s['forgetting']:.4f}  "
        f"ratio {s['compression_ratio']:.4f}  {s['steps_per_s']:.1f} steps/s  wall {s['wall_s']:.1f}s"
    )
    print(f"results: {exp.run_dir / 'results.json'}")
    return 0


def _add_presets(sub) -> None:
    p = sub.add_parser("presets", help="list the experiment presets")
    p.set_defaults(func=cmd_presets)


def cmd_presets(args: argparse.Namespace) -> int:
    from hypercl_core.config import available_presets  # noqa: PLC0415

    print("\n".join(available_presets()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypercl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_presets(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hypercl_core.errors import UserError  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"hypercl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hypercl: interrupted; a run continues from its last finished task with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
