"""Searchers whose every piece of state lives where a killed driver cannot leave it stale.

Why not Tune's own restore: `Tuner.restore` rebuilds the searcher from the
copy pickled when the Tuner was made (before it had a search space) plus a
searcher state and a trial list that Tune saves from a background thread,
file by file, skipping a save while the previous one is still copying. A
driver killed at the wrong moment left an experiment state without the
searcher state (the resumed OptunaSearch had no search space and raised on
its first suggestion), or a searcher state older than the trial list (trials
Optuna never heard of, or a concurrency limiter that counted trials long
finished as still running). So a sweep never restores Tune: each session
starts a fresh Tune experiment, and these searchers rebuild what to run next
from two stores written synchronously, before anything depends on them:

- a sweep's trials are the Optuna study's trials (`StudySearch`): a study
  trial still RUNNING was cut off and is handed out again, with its params,
  under the same key; new ones are asked for until the study holds
  `num_samples`. A trial asked for just before a kill is adopted, not lost;
  one cut off inside `ask()`, with some params not yet drawn, draws the rest.
- a rerun's or robustness study's trials are the fixed variants
  (`VariantSearch`): each one whose MLflow run is not FINISHED runs again.

The key (`TRIAL_KEY` in the suggested config) names the trial's MLflow run
and its checkpoint, so whichever Tune trial runs it continues where the last
one stopped and logs into the same run.

When ASHA stops a trial after task k, Tune hands the searcher that trial's
last report: a final score over k tasks, which after one or two tasks is often
better than a full run's. Told to Optuna as COMPLETE, TPE would learn most
from the configs ASHA judged worst, so such trials are told as PRUNED (TPE
ranks them below every complete trial, by how far they got).

An architecture that no chunk size brings under the compression bound is never
trained. The study is told so through Optuna's constraints (Trial.set_constraint,
which replaced TPESampler's deprecated constraints_func in Optuna 5): every trial
carries `compression_excess`, its smallest reachable ratio minus the bound, and a
rejected one ends PRUNED with no value, so TPE ranks it below every feasible trial
by how far it missed, and no made-up score enters the objective's statistics.
Each study trial also carries its MLflow run id as a user attribute.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher

TRIAL_KEY = "hypercl_trial"
COMPRESSION_EXCESS = "compression_excess"  # reported by a sweep's trials, the study's constraint
MLFLOW_RUN = "mlflow_run_id"  # reported by every trial, a study trial's user attribute


def study_key(number: int) -> str:
    return f"t{number:04d}"


def variant_key(index: int) -> str:
    return f"v{index:04d}"


class DurableSearch(Searcher):
    """Hands out each remaining trial once per session, at most `max_concurrent` at a time."""

    def __init__(self, metric: str, mode: str, max_concurrent: int | None):
        super().__init__(metric=metric, mode=mode)
        self.max_concurrent = max_concurrent
        self._live: dict[str, str] = {}  # Tune trial id -> trial key
        self._handed: set[str] = set()
        self.exhausted = False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True  # so Tune's ConcurrencyLimiter, whose state could go stale, keeps no books

    def suggest(self, trial_id: str) -> dict | None:
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        picked = self._next()
        if picked is None:
            self.exhausted = True
            return Searcher.FINISHED
        key, params = picked
        self._handed.add(key)
        self._live[trial_id] = key
        return {**params, TRIAL_KEY: key}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._live:
            self._result(self._live[trial_id], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._live.get(trial_id)
        if key is not None:
            self._complete(key, result, error)  # if this raises, Tune retries the trial: it stays live
            del self._live[trial_id]

    def has_work(self) -> bool:
        """Whether a session has anything to run (a resumed, already finished sweep has not)."""
        return bool(self._remaining())

    def _next(self) -> tuple[str, dict[str, Any]] | None:
        raise NotImplementedError

    def _remaining(self) -> list:
        raise NotImplementedError

    def done_count(self) -> int:
        raise NotImplementedError

    def _result(self, key: str, result: dict) -> None:
        pass

    def _complete(self, key: str, result: dict | None, error: bool) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study and MLflow are the state, and Tune's copy is never restored."""

    def __getstate__(self) -> dict:
        # Tune pickles the searcher with the Tuner; connections are opened again where it is used.
        return {k: None if k in ("_study", "_storage", "_client") else v for k, v in self.__dict__.items()}


class StudySearch(DurableSearch):
    def __init__(self, space: dict[str, Any], metric: str, mode: str, num_tasks: int, num_samples: int,
                 max_concurrent: int | None, storage_url: str, study_name: str, seed: int = 0):
        from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

        super().__init__(metric, mode, max_concurrent)
        self.distributions = OptunaSearch.convert_search_space(space)
        self.num_tasks = num_tasks
        self.num_samples = num_samples
        self.storage_url = storage_url
        self.study_name = study_name
        self.seed = seed
        self._study = None
        self._storage = None

    @property
    def study(self):
        if self._study is None:
            import optuna  # noqa: PLC0415

            self._storage = optuna.storages.RDBStorage(self.storage_url)
            self._study = optuna.create_study(
                storage=self._storage, study_name=self.study_name,
                sampler=optuna.samplers.TPESampler(seed=self.seed), load_if_exists=True,
                direction="maximize" if self.mode == "max" else "minimize")
        return self._study

    @property
    def storage(self):
        return self.study and self._storage  # the study opens it

    def _trial_id(self, key: str) -> int:
        """The storage's id of the study trial a key names."""
        study_id = self.storage.get_study_id_from_name(self.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, int(key[1:]))

    def _cut_off(self) -> list:
        """Study trials still RUNNING that no Tune trial of this session owns: a previous session's."""
        import optuna  # noqa: PLC0415

        running = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
        return [t for t in running if study_key(t.number) not in self._handed]

    def _remaining(self) -> list:
        return self._cut_off() or ([None] if len(self.study.get_trials(deepcopy=False)) < self.num_samples else [])

    def done_count(self) -> int:
        import optuna  # noqa: PLC0415

        return sum(t.state != optuna.trial.TrialState.RUNNING for t in self.study.get_trials(deepcopy=False))

    def _next(self) -> tuple[str, dict[str, Any]] | None:
        from orchestrator.failpoints import failpoint  # noqa: PLC0415

        cut_off = self._cut_off()
        if cut_off:
            return study_key(cut_off[0].number), self._draw(cut_off[0].number)
        number = len(self.study.get_trials(deepcopy=False))
        if number >= self.num_samples:
            return None
        self._seed_sampler(number)
        trial = self.study.ask(fixed_distributions=self.distributions)
        failpoint("after_ask")
        return study_key(trial.number), dict(trial.params)

    def _seed_sampler(self, number: int) -> None:
        """TPE's random draws seeded by the trial's number, not by how many sessions it took: a sampler
        made anew each session would repeat the first session's draws."""
        import optuna  # noqa: PLC0415

        self.study.sampler = optuna.samplers.TPESampler(seed=self.seed * 1_000_003 + number)

    def _draw(self, number: int) -> dict[str, Any]:
        """The params of a cut-off trial; those a kill inside ask() left undrawn are drawn now.

        ask() writes a trial, then its params one by one: a kill between them leaves a RUNNING
        trial with some params. Suggesting every param again returns the stored ones as they are.
        """
        import optuna  # noqa: PLC0415
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: PLC0415

        stored = self.storage.get_trial(self._trial_id(study_key(number)))
        if set(stored.params) == set(self.distributions):
            return dict(stored.params)
        self._seed_sampler(number)
        trial = optuna.trial.Trial(self.study, stored._trial_id)
        for name, dist in self.distributions.items():
            if isinstance(dist, FloatDistribution):
                trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
            elif isinstance(dist, IntDistribution):
                trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            elif isinstance(dist, CategoricalDistribution):
                trial.suggest_categorical(name, dist.choices)
            else:
                raise TypeError(f"no suggest_* for {type(dist).__name__}")
        return dict(trial.params)

    def _frozen(self, key: str):
        return self.storage.get_trial(self._trial_id(key))

    def _annotate(self, key: str, result: dict):
        """The trial's constraint and MLflow run id, each set once; the trial as stored afterwards."""
        import optuna  # noqa: PLC0415

        trial = self._frozen(key)
        if trial.state != optuna.trial.TrialState.RUNNING:
            return trial
        if MLFLOW_RUN in result and MLFLOW_RUN not in trial.user_attrs:
            self.storage.set_trial_user_attr(self._trial_id(key), MLFLOW_RUN, str(result[MLFLOW_RUN]))
        if COMPRESSION_EXCESS in result and COMPRESSION_EXCESS not in trial.constraints:
            optuna.trial.Trial(self.study, trial._trial_id).set_constraint(COMPRESSION_EXCESS,
                                                                           float(result[COMPRESSION_EXCESS]))
        return self._frozen(key)

    def _result(self, key: str, result: dict) -> None:
        import optuna  # noqa: PLC0415

        value, task = result.get(self.metric), result.get("task")
        trial = self._annotate(key, result)
        if result.get("infeasible") or value is None or not task or trial.state != optuna.trial.TrialState.RUNNING:
            return
        # By task, not Tune's iteration: a trial resumed at task 3 reports task 3 first.
        self.storage.set_trial_intermediate_value(self._trial_id(key), int(task), float(value))

    def _complete(self, key: str, result: dict | None, error: bool) -> None:
        import optuna  # noqa: PLC0415

        trial = self._annotate(key, result or {})
        if trial.state != optuna.trial.TrialState.RUNNING:
            return  # told before the driver died, and its trial ran again to report it
        value = (result or {}).get(self.metric)
        infeasible = bool((result or {}).get("infeasible"))
        stopped_early = result is not None and not infeasible and result.get("task", self.num_tasks) < self.num_tasks
        if error:
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        elif infeasible:  # its violated constraint says all; the worst value Tune needed is no score
            self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
        elif value is None or stopped_early:
            if value is not None:  # the report ASHA stopped it on never reached on_trial_result
                self.storage.set_trial_intermediate_value(self._trial_id(key), int(result["task"]), float(value))
            self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial.number, float(value))


class VariantSearch(DurableSearch):
    def __init__(self, num_variants: int, tracking_uri: str, experiment_id: str, metric: str, mode: str,
                 max_concurrent: int | None, order: list[int] | None = None):
        super().__init__(metric, mode, max_concurrent)
        self.num_variants = num_variants
        self.order = order if order is not None else list(range(num_variants))  # which variant goes first
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self._todo: list[int] | None = None
        self._client = None

    def _finished_keys(self) -> set[str]:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        from orchestrator.tracking import KIND, TRIAL_ID  # noqa: PLC0415

        client = self._client = self._client or MlflowClient(self.tracking_uri)
        runs = client.search_runs([self.experiment_id], filter_string=f"tags.`{KIND}` = 'trial' and "
                                  "attributes.status = 'FINISHED'", max_results=50_000)
        return {r.data.tags.get(TRIAL_ID) for r in runs}

    def _remaining(self) -> list[int]:
        if self._todo is None:  # read once per session: what the variants' runs say when it starts
            finished = self._finished_keys()
            self._todo = [i for i in self.order if variant_key(i) not in finished]
        return [i for i in self._todo if variant_key(i) not in self._handed]

    def done_count(self) -> int:
        return self.num_variants - len(self._remaining())

    def _next(self) -> tuple[str, dict[str, Any]] | None:
        remaining = self._remaining()
        return (variant_key(remaining[0]), {}) if remaining else None
