"""Sweeps and seed reruns: Ray Tune + Optuna, tracked in MLflow, resumable.

Four kinds share one machinery: a `sweep` lets Optuna sample a search
space; a `rerun` (seeds) and a `robustness` study (architectures) run a
fixed list of variants, each a set of config overrides on the base config;
a `compare` runs several presets over seeds, each variant a whole config.

A sweep folder holds everything needed to resume after the driver dies:
`sweep.yaml` (the request, the resolved space and base config, the MLflow
ids), the Optuna study (`optuna.db`, or `--study-storage`), each trial's
checkpoint under its durable key (`trials/`, or under `--storage`), one Tune
experiment per driver session (`tune/session-*`: logs and error files, never
restored) and, by default, the MLflow store (`mlflow.db`, `artifacts/`).
Resuming reads only what is written synchronously before anything depends on
it: the study, MLflow and the trial checkpoints (see orchestrator/searcher.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hypercl_core.config import ExperimentConfig, build_config, config_from_flat, load_config
from hypercl_core.data.benchmarks import require_data
from hypercl_core.errors import UserError, first_line
from hypercl_core.methods import subsystem_names
from hypercl_core.provenance import provenance
from orchestrator.actors import DEFAULT_SUBSYSTEM_CPUS
from orchestrator.folders import COMPARED, DRIVER_LOCK, SPEC, TRIALS_DIR, TUNE_DIR
from orchestrator.console import note
from orchestrator.outcomes import ASHA_GRACE_TASKS, ASHA_REDUCTION, Outcomes, read_outcomes
from orchestrator.tracking import END_REASON, PRESET_TAG, TRIAL_ID, SweepTracker, check_tracking_uri, embedded_uri, log_metrics

LAYOUT = 2  # 1: resumed through Tune's saved experiment state (before durable trial keys)


@dataclass
class SweepSpec:
    """The request as given plus what was resolved from it; saved as sweep.yaml."""

    kind: str  # sweep | rerun | robustness | compare
    name: str
    base_config: dict[str, Any]
    metric: str
    mode: str
    num_samples: int = 1
    max_concurrent: int | None = None
    scheduler: str = "fifo"
    seed: int = 0
    # One trial each: flat overrides of the base config, or (compare) {"preset": name, "config": whole config}.
    variants: list[dict[str, Any]] = field(default_factory=list)
    study: dict[str, Any] | None = None  # a robustness study's request (ratio range, bins, ...)
    space_name: str | None = None
    space: dict[str, Any] | None = None
    preset: str | None = None
    tracking_uri: str = ""
    gpus_per_subsystem: float | None = None
    cpus_per_subsystem: float = DEFAULT_SUBSYSTEM_CPUS
    data_root: str | None = None
    storage: str | None = None  # trial checkpoints and Tune logs where every node sees them; None: the sweep folder
    study_storage: str | None = None  # the Optuna study's database URL; None: optuna.db in the sweep folder
    system_metrics: bool = False  # MLflow's system metrics (CPU, memory, GPU) on every trial run
    experiment_id: str | None = None
    parent_run_id: str | None = None
    created: str = field(default_factory=lambda: dt.datetime.now().isoformat(timespec="seconds"))
    layout: int = 1  # absent from sweep.yaml files written before LAYOUT 2

    @property
    def config(self) -> ExperimentConfig:
        return build_config(self.base_config, saved=True)

    def variant_configs(self) -> list[ExperimentConfig]:
        """Every trial's config where they are fixed (not a sweep's), in variant order."""
        base = self.config
        return [build_config(v["config"], saved=True) if COMPARED in v else config_from_flat(v, base)
                for v in self.variants]

    def variant_order(self) -> list[int]:
        """The order trials start in: a comparison runs seed 0 of every preset first, then seed 1, ...,
        so every cell has a figure early and an interrupted comparison leaves none empty."""
        indices = list(range(len(self.variants)))
        if self.kind != "compare":
            return indices
        return sorted(indices, key=lambda i: (self.variants[i][COMPARED]["seed"], i))

    def configs(self) -> list[ExperimentConfig]:
        """The configs whose data, subsystems and task counts the trials need: the base config,
        or every compared one."""
        return self.variant_configs() if self.kind == "compare" else [self.config]

    def tasks_per_trial(self) -> dict[str, int] | None:
        """Trial key -> its tasks, where the trials differ in length (a comparison)."""
        from orchestrator.searcher import variant_key  # noqa: PLC0415

        if self.kind != "compare":
            return None
        return {variant_key(i): cfg.benchmark.num_tasks for i, cfg in enumerate(self.configs())}

    @property
    def num_tasks(self) -> int | None:
        """Every trial's tasks (None: they differ)."""
        counts = {cfg.benchmark.num_tasks for cfg in self.configs()}
        return counts.pop() if len(counts) == 1 else None

    @property
    def total_trials(self) -> int:
        return self.num_samples if self.kind == "sweep" else len(self.variants)

    def save(self, folder: Path) -> None:
        tmp = folder / (SPEC + ".tmp")
        tmp.write_text(yaml.safe_dump(asdict(self), sort_keys=False))
        os.replace(tmp, folder / SPEC)

    @classmethod
    def load(cls, folder: Path) -> "SweepSpec":
        if not (folder / SPEC).is_file():
            raise UserError(f"{folder} is not a sweep folder (no {SPEC}); pass the folder "
                            "that `hypercl sweep` printed")
        spec = cls(**yaml.safe_load((folder / SPEC).read_text()))
        if spec.layout < LAYOUT:
            raise UserError(f"{folder} was started by an older hypercl that resumed through Tune's saved state; "
                            f"its finished trials stay in MLflow (hypercl best --name {spec.name}); start a new "
                            "sweep for the rest")
        return spec

    def study_url(self, folder: Path) -> str:
        return self.study_storage or f"sqlite:///{folder.resolve() / 'optuna.db'}"


def new_sweep_folder(runs_dir: Path, spec: SweepSpec) -> Path:
    """The folder of a new sweep, with its sweep.yaml: from here on it can only be resumed."""
    folder = runs_dir / "sweeps" / spec.name
    if (folder / SPEC).exists():
        raise UserError(f"sweep {spec.name!r} already exists in {folder}; resume it with --resume {folder} "
                        "or pick another --name")
    check_name_free(spec)
    folder.mkdir(parents=True, exist_ok=True)
    spec.save(folder)
    return folder


def check_name_free(spec: SweepSpec) -> None:
    """A new sweep must not meet an old one of its name in stores that outlive sweep folders.

    Trials are keyed t0000, v0000, ...: an old experiment or study of the same name (its folder
    deleted, say with the cluster) would hand the new sweep the old one's finished trials.
    """
    if spec.tracking_uri and not spec.tracking_uri.startswith("sqlite:///"):
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        if MlflowClient(spec.tracking_uri).get_experiment_by_name(spec.name) is not None:
            raise UserError(f"MLflow at {spec.tracking_uri} already has a sweep named {spec.name!r}; pick another "
                            "--name (its results: hypercl best --name " + spec.name + ")")
    if spec.kind == "sweep" and spec.study_storage:
        import optuna  # noqa: PLC0415

        if spec.name in optuna.study.get_all_study_names(spec.study_storage):
            raise UserError(f"the study storage {_masked(spec.study_storage)} already has a study named "
                            f"{spec.name!r}; pick another --name")


def plan_sweep(space_ref: str, preset: str, overrides: list[str], **options: Any) -> SweepSpec:
    """Validate everything (space, preset, bound) before any folder, run or trial exists."""
    from search_spaces.space import load_space  # noqa: PLC0415
    from orchestrator.trial import metric_for  # noqa: PLC0415

    base = load_config(preset, overrides)
    space = load_space(space_ref)
    space.check_against(base)
    metric, mode = metric_for(base)
    name = options.pop("name", None) or f"{Path(preset).stem}-{space.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return SweepSpec(kind="sweep", name=name, base_config=base.model_dump(), metric=metric, mode=mode,
                     space_name=space_ref, space=space.model_dump(), preset=preset, layout=LAYOUT, **options)


def plan_rerun(config_ref: str, seeds: int, overrides: list[str] | None = None, **options: Any) -> SweepSpec:
    """Seeds 0..seeds-1 of one config; `overrides` (--set) apply on top of it, e.g. an exported winner."""
    from orchestrator.trial import metric_for  # noqa: PLC0415

    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    base = load_config(config_ref, overrides)
    metric, mode = metric_for(base)
    name = options.pop("name", None) or f"rerun-{Path(config_ref).stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return SweepSpec(kind="rerun", name=name, base_config=base.model_dump(), metric=metric, mode=mode,
                     variants=[{"seed": seed} for seed in range(seeds)], preset=config_ref, layout=LAYOUT,
                     **options)


def plan_compare(presets: list[str], seeds: int, overrides: list[str] | None = None, **options: Any) -> SweepSpec:
    """Every preset over seeds 0..seeds-1, in one MLflow experiment that `hypercl table` reads;
    `overrides` (--set) apply to every preset. All must be judged by the same metric."""
    from orchestrator.trial import metric_for  # noqa: PLC0415

    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if not presets:
        raise UserError("hypercl compare needs presets to compare: --configs P1 P2 ... (list them: hypercl presets)")
    repeated = sorted({p for p in presets if presets.count(p) > 1})
    if repeated:
        raise UserError(f"--configs names {', '.join(repeated)} more than once; give each preset once")
    configs = {ref: load_config(ref, overrides) for ref in presets}
    _check_one_config_per_cell(configs)
    objectives = {ref: metric_for(cfg) for ref, cfg in configs.items()}
    metric, mode = objectives[presets[0]]
    odd = [ref for ref, objective in objectives.items() if objective != (metric, mode)]
    if odd:
        raise UserError(f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} judged by "
                        f"{objectives[odd[0]][0]}, {presets[0]} by {metric}; compare presets judged alike "
                        "(classifiers by final_acc)")
    variants = [{"preset": ref, COMPARED: cfg.model_copy(update={"seed": seed}).model_dump()}
                for ref, cfg in configs.items() for seed in range(seeds)]
    name = options.pop("name", None) or f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    return SweepSpec(kind="compare", name=name, base_config=configs[presets[0]].model_dump(), metric=metric,
                     mode=mode, variants=variants, study={"presets": list(presets), "seeds": seeds},
                     preset=",".join(presets), layout=LAYOUT, **options)


def _check_one_config_per_cell(configs: dict[str, ExperimentConfig]) -> None:
    """`hypercl table` keeps one config per cell; two that would share one are refused before they run."""
    from orchestrator.table import cell_of, config_key  # noqa: PLC0415

    seen: dict[tuple[str, str], str] = {}
    for ref, cfg in configs.items():
        cell = cell_of(cfg)
        if cell in seen and config_key(configs[seen[cell]]) != config_key(cfg):
            raise UserError(f"{seen[cell]} and {ref} are both {cell[1]} on {cell[0]} with different configs, and a "
                            "table cell holds one config over seeds; compare them in two comparisons")
        if cell in seen:
            raise UserError(f"{seen[cell]} and {ref} are the same config; give it once")
        seen[cell] = ref


def start(spec: SweepSpec, folder: Path, address: str | None) -> SweepOutcome:
    """Run (or resume) the sweep until every trial ended or the user interrupted it."""
    from orchestrator.failpoints import failpoint  # noqa: PLC0415

    folder = folder.resolve()  # Tune reads a relative path as a URI without a scheme
    lock = _lock(folder, spec.name)
    spec.tracking_uri = spec.tracking_uri or embedded_uri(folder)
    check_tracking_uri(spec.tracking_uri)
    if address is None:  # on a cluster each node resolves its own data root
        roots = {require_data(cfg.benchmark, spec.data_root).resolve() for cfg in spec.configs()}
        if len(roots) > 1:
            raise UserError(f"the compared benchmarks' data lie in different folders ({', '.join(map(str, sorted(roots)))}); "
                            "put them under one folder and pass it as --data-root")
        spec.data_root = str(roots.pop())
    # An embedded store keeps artifacts in the sweep folder; a server stores them itself.
    embedded = spec.tracking_uri.startswith("sqlite:///")
    tracker = SweepTracker(spec.tracking_uri, spec.name, artifact_root=folder / "artifacts" if embedded else None)
    if spec.experiment_id not in (None, tracker.experiment_id):
        raise UserError(f"MLflow at {spec.tracking_uri} has a different experiment named {spec.name!r}; "
                        "pass the tracking URI the sweep was started with")
    spec.experiment_id = tracker.experiment_id
    origin = provenance()
    spec.parent_run_id = tracker.parent_run(
        spec.kind, spec.parent_run_id, params=_parent_params(spec),
        tags={"hypercl.sweep": spec.name, "hypercl.space": str(spec.space_name), PRESET_TAG: str(spec.preset),
              "hypercl.metric": spec.metric, "hypercl.mode": spec.mode}, origin=origin,
    )
    spec.save(folder)
    failpoint("sweep_start")
    ended, ran_out, errors = False, False, 0  # errors: of this session's trials
    logs = f"{_tune_root(spec, folder)}/{TUNE_DIR}"
    try:
        _announce_stores(spec, folder)
        searcher = _searcher(spec, folder)
        if searcher.has_work():  # a sweep killed after its last trial closes without Ray
            _connect_ray(address)
            _announce_ray(address)
            placement = _pin_placement(spec, local=address is None)
            spec.save(folder)  # the placement is part of the sweep: a resume must ask for the same
            results = _tuner(spec, folder, placement, searcher, origin).fit()
            errors = results.num_errors
            # every trial handed out and ended: nothing was interrupted, even if a variant failed so early
            # that its MLflow run was never made
            ran_out = searcher.exhausted and results.num_terminated + results.num_errors == len(results)
        failpoint("before_close")
        ended = ran_out or _all_ended(spec, searcher, tracker)
    finally:
        outcomes = _close_parent(spec, tracker, ended)
        lock.close()
    return SweepOutcome(interrupted=not ended, finished_trials=outcomes.finished, errors=errors, logs=logs,
                        outcomes=outcomes)


def _lock(folder: Path, name: str):
    """One driver per sweep: a second one would run the first one's trials again beside it.

    The lock is the kernel's (flock), so it goes with its process, however that ends.
    """
    import fcntl  # noqa: PLC0415

    handle = (folder / DRIVER_LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise UserError(f"sweep {name!r} is already running (driver pid {pid}, folder {folder}); wait for it, "
                        "or stop it (Ctrl-C or kill) and resume") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _announce_stores(spec: SweepSpec, folder: Path) -> None:
    """Where a sweep's results go: the first thing to check when they seem missing."""
    lines = [f"tracking: {_masked(spec.tracking_uri)}"]
    if spec.kind == "sweep":
        lines.append(f"study: {_masked(spec.study_url(folder))} (study {spec.name!r})")
    lines.append(f"checkpoints: {_tune_root(spec, folder)}/{TRIALS_DIR}")
    note("\n".join(lines))


def _announce_ray(address: str | None) -> None:
    import ray  # noqa: PLC0415

    resources = ray.cluster_resources()
    where = f"cluster at {address}" if address else "local (started by this command)"
    note(f"ray: {where}, {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs")


def _masked(url: str) -> str:
    """A database URL without its password, fit for a console or a log."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _all_ended(spec: SweepSpec, searcher, tracker: SweepTracker) -> bool:
    """Whether nothing is left to run, from the durable stores (an interrupted Tune run leaves trials open)."""
    from orchestrator.searcher import variant_key  # noqa: PLC0415

    if spec.kind == "sweep":
        return not searcher.has_work() and searcher.done_count() >= spec.total_trials
    ended = {r.data.tags.get(TRIAL_ID) for r in tracker.trial_runs() if r.info.status in ("FINISHED", "FAILED")}
    return all(variant_key(i) in ended for i in range(len(spec.variants)))


def _parent_params(spec: SweepSpec) -> dict[str, Any] | None:
    """What the parent run records: the fixed config of a rerun or study (a sweep's varies)."""
    if spec.kind == "sweep":
        return None
    study = {f"study.{key}": value for key, value in (spec.study or {}).items()}
    return study if spec.kind == "compare" else {**spec.config.flat(), **study}


@dataclass(frozen=True)
class SweepOutcome:
    interrupted: bool
    finished_trials: int
    errors: int
    logs: str  # where Tune's logs and error files are
    outcomes: Outcomes | None = None  # how each trial ended (orchestrator.outcomes)


def _connect_ray(address: str | None) -> None:
    # Tune's experiment state is never read back (sweeps resume from the study, MLflow and the trial
    # checkpoints), so it is saved only when Tune must; its background copy of that state, racing
    # the next save's temporary files, is what once printed tracebacks during a healthy resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "86400")
    for copier in ("ray.train._internal.syncer", "ray.tune.execution.experiment_state"):
        logging.getLogger(copier).setLevel(logging.CRITICAL)
    import ray  # noqa: PLC0415

    from orchestrator.interrupts import sigterm_like_ctrl_c  # noqa: PLC0415

    try:
        if address is None:  # a Ray of its own: plain ray.init() joins any cluster `ray start` left running here
            ray.init(address="local", include_dashboard=False, ignore_reinit_error=True, logging_level="WARNING")
        else:
            ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING")
        sigterm_like_ctrl_c()  # again: Ray's driver put in its own SIGTERM handler, which aborts
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = first_line(exc)
        raise UserError(f"cannot connect to Ray at {address or 'a new local instance'} ({first}); "
                        "check --address (auto, or ray://host:10001)") from None


def _pin_placement(spec: SweepSpec, local: bool):
    """Decide GPUs per subsystem once, when the sweep starts, and keep it in the spec."""
    import ray  # noqa: PLC0415

    from orchestrator.actors import auto_placement  # noqa: PLC0415

    placement = auto_placement(spec.gpus_per_subsystem, spec.cpus_per_subsystem)
    if local:  # (GPUs asked of a machine without one were refused before any folder: check_cluster_request)  # a remote cluster may still be scaling up
        placement.check_fits(max(len(subsystem_names(cfg)) for cfg in spec.configs()), ray.cluster_resources())
    spec.gpus_per_subsystem = placement.gpus_per_subsystem
    return placement


def _tuner(spec: SweepSpec, folder: Path, placement, searcher, origin: dict[str, Any]):
    """A fresh Tune experiment for this driver session; the searcher knows what is left to run."""
    from ray import tune  # noqa: PLC0415

    from orchestrator.progress import SweepProgress  # noqa: PLC0415
    from orchestrator.trial import TrialContext, run_trial  # noqa: PLC0415

    cfg = spec.config
    root = _tune_root(spec, folder)
    ctx = TrialContext(base=spec.base_config, tracking_uri=spec.tracking_uri, experiment_id=spec.experiment_id,
                       parent_run_id=spec.parent_run_id, metric=spec.metric, mode=spec.mode,
                       checkpoints=f"{root}/{TRIALS_DIR}", placement=placement,
                       space=spec.space if spec.kind == "sweep" else None, variants=spec.variants,
                       data_root=spec.data_root, origin=origin, system_metrics=spec.system_metrics)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), _trial_resources(spec, placement))
    run_config = tune.RunConfig(
        name=f"session-{dt.datetime.now():%Y%m%d-%H%M%S-%f}",
        storage_path=f"{root}/{TUNE_DIR}",
        failure_config=tune.FailureConfig(max_failures=2),  # a retry continues from the trial's checkpoint
        callbacks=[SweepProgress(spec.tracking_uri, spec.experiment_id, spec.metric, cfg.benchmark.num_tasks,
                                 spec.total_trials, done_before=searcher.done_count(),
                                 tasks_per_trial=spec.tasks_per_trial())],
        verbose=0,
    )
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, search_alg=searcher, scheduler=_scheduler(spec, cfg),
        num_samples=spec.total_trials,
        # Tune wraps the searcher in a ConcurrencyLimiter, which leaves the limit to it (set_max_concurrency)
        # but also keeps as many trials pending, so an autoscaler sees them all at once.
        max_concurrent_trials=spec.max_concurrent or spec.total_trials,
        reuse_actors=True,  # a trial's worker and its subsystem actors carry over to the next trial
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def _trial_resources(spec: SweepSpec, placement):
    """One bundle for the trial and one per subsystem: the same for every trial, except in a
    comparison, where each trial's method says how many subsystems it has."""
    from ray import tune  # noqa: PLC0415

    from orchestrator.searcher import TRIAL_KEY, variant_key  # noqa: PLC0415

    if spec.kind != "compare":
        return tune.PlacementGroupFactory(placement.bundles(len(subsystem_names(spec.config))))
    bundles = {variant_key(i): placement.bundles(len(subsystem_names(cfg))) for i, cfg in enumerate(spec.configs())}
    return _PerTrialBundles(bundles, TRIAL_KEY)


@dataclass(frozen=True)
class _PerTrialBundles:
    """Tune's resources for a trial, from its key (a picklable callable)."""

    bundles: dict[str, list[dict[str, float]]]
    key: str

    def __call__(self, config: dict[str, Any]):
        from ray import tune  # noqa: PLC0415

        return tune.PlacementGroupFactory(self.bundles[config[self.key]])


def _tune_root(spec: SweepSpec, folder: Path) -> str:
    """Where the trial checkpoints and Tune's logs go: --storage (every node sees it) or the sweep folder."""
    return f"{spec.storage.rstrip('/')}/{spec.name}" if spec.storage else str(folder)


def _local_gpus() -> int:
    import torch  # noqa: PLC0415

    return torch.cuda.device_count()


def check_cluster_request(spec: SweepSpec, address: str | None) -> None:
    """On a cluster every trial writes from its own node: to MLflow, and its checkpoints through Tune.
    Locally, GPUs asked for must be here."""
    if address is None:
        if spec.gpus_per_subsystem and not _local_gpus():
            raise UserError(f"--gpus-per-subsystem {spec.gpus_per_subsystem:g} but this machine has no GPU; drop the "
                            "flag or use --address")
        return
    if not spec.tracking_uri or spec.tracking_uri.startswith("sqlite:"):
        raise UserError("--address runs trials on other nodes, which cannot write to a SQLite file here; "
                        "pass --tracking-uri http://<head private ip>:5000 (an MLflow server every node reaches)")
    if not spec.storage:
        raise UserError("--address runs trials on other nodes, whose checkpoints Tune must write where every node "
                        "sees them; pass --storage s3://<bucket>/<prefix> (or a folder every node mounts)")
    if address.startswith("ray://") and spec.kind == "sweep" and spec.study_url(Path(".")).startswith("sqlite:"):
        # Ray Client runs Tune, and so the searcher, on the head, which cannot open a SQLite file here
        raise UserError("--address ray://... runs the search on the cluster's head; pass --study-storage "
                        "postgresql://... (a database the head reaches), or submit with ray job submit and "
                        "--address auto")
    if spec.gpus_per_subsystem is None:  # an autoscaling cluster may show no GPU until trials ask for one
        raise UserError("--address: pass --gpus-per-subsystem 1 (or a share such as 0.25) to train on the cluster's "
                        "GPU workers (or 0 for CPUs); a cluster may not show its GPU nodes before trials ask for them")


def check_study_storage(url: str) -> None:
    """A study database that cannot be opened fails in one line, before any folder or run exists."""
    import optuna  # noqa: PLC0415

    import sqlalchemy  # noqa: PLC0415

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
    except Exception as exc:  # SQLAlchemy's errors (driver missing, refused, bad password) vary by backend
        first = first_line(exc)
        raise UserError(f"cannot open the study storage {_masked(url)} ({first}); check --study-storage "
                        "(e.g. postgresql://user:pw@host:5432/db)") from None
    # MLflow and Optuna both version their schema in a table named alembic_version: one database each.
    if "experiments" in tables and "studies" not in tables:
        raise UserError(f"the study storage {_masked(url)} is an MLflow database; give the study a database "
                        "of its own (CREATE DATABASE optuna; --study-storage postgresql://.../optuna)")
    optuna.storages.RDBStorage(url)


def _searcher(spec: SweepSpec, folder: Path):
    from orchestrator.searcher import StudySearch, VariantSearch  # noqa: PLC0415

    if spec.kind != "sweep":
        return VariantSearch(len(spec.variants), spec.tracking_uri, spec.experiment_id, spec.metric, spec.mode,
                             spec.max_concurrent, order=spec.variant_order())
    from search_spaces.space import SearchSpace  # noqa: PLC0415

    space = SearchSpace.model_validate(spec.space).tune_space()
    return StudySearch(space, spec.metric, spec.mode, spec.config.benchmark.num_tasks, spec.num_samples,
                       spec.max_concurrent, spec.study_url(folder), spec.name, seed=spec.seed)


def _scheduler(spec: SweepSpec, cfg: ExperimentConfig):
    if spec.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler  # noqa: PLC0415

    return ASHAScheduler(time_attr="task", max_t=cfg.benchmark.num_tasks, grace_period=ASHA_GRACE_TASKS,
                         reduction_factor=ASHA_REDUCTION)


def _close_parent(spec: SweepSpec, tracker: SweepTracker, ended: bool) -> Outcomes:
    """Summarise the trials on the parent run: how each ended, and the finished ones' objective
    (mean ± SEM over seeds for a rerun)."""
    if ended:
        _close_orphans(tracker)
    trial_runs = tracker.trial_runs()
    outcomes = read_outcomes(trial_runs, spec.num_tasks)
    runs = [r for r in trial_runs if r.info.status == "FINISHED" and spec.metric in r.data.metrics]
    values = [r.data.metrics[spec.metric] for r in runs]
    summary: dict[str, float] = outcomes.counts()
    if values:
        best = max(values) if spec.mode == "max" else min(values)
        summary.update({f"best_{spec.metric}": best, f"{spec.metric}_mean": sum(values) / len(values),
                        f"{spec.metric}_sem": sem(values)})
    log_metrics(tracker.client, spec.parent_run_id, summary, step=0)
    tracker.client.set_terminated(spec.parent_run_id, "FINISHED" if ended else "KILLED")
    return outcomes


def _close_orphans(tracker: SweepTracker) -> None:
    """Once nothing is left to run, no trial run can still be RUNNING: close any whose verdict was lost."""
    for run in tracker.trial_runs():
        if run.info.status == "RUNNING":
            tracker.client.set_tag(run.info.run_id, END_REASON, "the sweep ended without its verdict")
            tracker.client.set_terminated(run.info.run_id, "KILLED")


def sem(values: list[float]) -> float:
    """Standard error of the mean, as the paper reports over seeds."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


