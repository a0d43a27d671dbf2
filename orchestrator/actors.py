"""hypercl_core subsystems as Ray actors, one bundle of the trial's placement group each.

The actor builds the very same subsystem object `hypercl run` uses, on the
device Ray assigned it (its own GPU when the cluster has GPUs), and the proxy
makes the remote object look local, so the experiment loop is unchanged.

Tune reuses a trial's worker (and its placement group) for the next trial,
so the subsystem actors are kept per worker too and only their subsystem is
rebuilt: a new trial then costs no process start, no torch import and no
MNIST read (the per-trial cost that dominated short trials).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from hypercl_core.config import ExperimentConfig, build_config
from hypercl_core.errors import UserError
from hypercl_core.methods import Progress, build_subsystem, subsystem_names

# The trial's own bundle only drives the actors and logs; it needs little CPU.
# With the default 0.75 CPU per subsystem a one-subsystem trial reserves one CPU,
# so a K-core machine runs K such trials at once.
TRIAL_BUNDLE = {"CPU": 0.25}
DEFAULT_SUBSYSTEM_CPUS = 0.75


@dataclass(frozen=True)
class Placement:
    """What each subsystem actor asks for: a GPU or a share of one, or some CPUs when there are none.

    A share (0.25) lets Ray put several subsystems, so several small trials,
    on one GPU: a one-subsystem trial of the paper's MNIST settings keeps a
    large GPU far from busy.
    """

    gpus_per_subsystem: float = 0
    cpus_per_subsystem: float = DEFAULT_SUBSYSTEM_CPUS

    def bundles(self, num_subsystems: int) -> list[dict[str, float]]:
        each = {"GPU": self.gpus_per_subsystem} if self.gpus_per_subsystem else {"CPU": self.cpus_per_subsystem}
        return [dict(TRIAL_BUNDLE)] + [dict(each) for _ in range(num_subsystems)]

    def check_fits(self, num_subsystems: int, resources: dict[str, float]) -> None:
        """A trial that asks for more than the machine has would wait forever; say so instead."""
        need: dict[str, float] = {}
        for bundle in self.bundles(num_subsystems):
            for key, amount in bundle.items():
                need[key] = need.get(key, 0) + amount
        for key, amount in need.items():
            if amount > resources.get(key, 0) + 1e-9:
                raise UserError(f"one trial needs {amount:g} {key} ({num_subsystems} subsystems) but this Ray cluster has "
                                f"{resources.get(key, 0):g}; lower --cpus-per-subsystem (e.g. 0.5) or use a bigger cluster")

    def actor_options(self) -> dict[str, float]:
        if self.gpus_per_subsystem:
            return {"num_gpus": self.gpus_per_subsystem, "num_cpus": 0}
        return {"num_gpus": 0, "num_cpus": self.cpus_per_subsystem}


def auto_placement(gpus_per_subsystem: float | None, cpus_per_subsystem: float = DEFAULT_SUBSYSTEM_CPUS) -> Placement:
    """GPUs when the connected cluster has any, unless the user chose."""
    if gpus_per_subsystem is None:
        gpus_per_subsystem = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    return Placement(gpus_per_subsystem, cpus_per_subsystem)


@ray.remote
class SubsystemActor:
    """Hosts one subsystem at a time; `build` replaces it for the next trial."""

    def __init__(self, name: str):
        self.name = name
        self.subsystem = None

    def build(self, cfg: dict, data_root: str | None) -> None:
        self.subsystem = None  # free the previous trial's tensors before allocating new ones
        config = build_config(cfg, saved=True)
        device = config.device
        if device == "auto":
            import torch  # noqa: PLC0415

            device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        self.subsystem = build_subsystem(self.name, config, data_root, device)

    def learn_task(self, t: int, **kwargs) -> dict[str, float]:
        return self.subsystem.learn_task(t, **kwargs)

    def call(self, method: str, *args, **kwargs):
        """Any subsystem method, for calls the method driver starts in the background."""
        return getattr(self.subsystem, method)(*args, **kwargs)

    def evaluate(self, upto: int, **kwargs) -> dict[str, list[float]]:
        return self.subsystem.evaluate(upto, **kwargs)

    def state_dict(self) -> dict:
        return self.subsystem.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.subsystem.load_state_dict(state)

    def placement(self) -> dict:
        """Where this actor landed: for tests and for the trial's MLflow tags."""
        return {
            "subsystem": self.name,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
        }


class ActorProxy:
    """A remote subsystem with the local Subsystem interface: blocking calls, plus
    `submit` for the method driver to start calls that run side by side.
    Progress callbacks stay behind: they cannot cross processes."""

    def __init__(self, handle):
        self.handle = handle

    def learn_task(self, t: int, progress: Progress | None = None, **kwargs) -> dict[str, float]:
        return ray.get(self.handle.learn_task.remote(t, **kwargs))

    def submit(self, method: str, *args, progress: Progress | None = None, **kwargs) -> "_Remote":
        return _Remote(self.handle.call.remote(method, *args, **kwargs))

    def evaluate(self, upto: int, **kwargs) -> dict[str, list[float]]:
        return ray.get(self.handle.evaluate.remote(upto, **kwargs))

    def __getattr__(self, method: str):
        """Any other subsystem method (replay_snapshot, predict_tasks, ...), as a blocking call."""
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: ray.get(self.handle.call.remote(method, *args, **kwargs))

    def state_dict(self) -> dict:
        return ray.get(self.handle.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        ray.get(self.handle.load_state_dict.remote(state))

    def placement(self) -> dict:
        return ray.get(self.handle.placement.remote())


class _Remote:
    def __init__(self, ref):
        self.ref = ref

    def result(self):
        return ray.get(self.ref)


# The actors this process started for its current (node, job, placement group),
# by (bundle, subsystem, placement). Dropping a handle ends its actor.
_KEPT: dict[str, object] = {"scope": None, "actors": {}}


def spawn_subsystems(cfg: ExperimentConfig, placement: Placement, data_root: str | None = None) -> dict[str, ActorProxy]:
    """One actor per subsystem, in bundles 1..n of the current placement group (if any),
    reusing this worker's actors from an earlier trial where they still live."""
    group = ray.util.get_current_placement_group()
    context = ray.get_runtime_context()  # node ids are random per Ray start, so a new session never matches
    scope = (context.get_node_id(), context.get_job_id(), group.id.hex() if group is not None else None)
    if _KEPT["scope"] != scope:  # a new placement group or Ray connection: the kept actors are gone
        _KEPT.update(scope=scope, actors={})
    actors = _KEPT["actors"]
    proxies = {}
    for index, name in enumerate(subsystem_names(cfg), start=1):
        key = (index, name, placement)
        handle = actors.get(key)
        if handle is None or not _rebuild(handle, cfg, data_root):
            handle = actors[key] = _new_actor(name, index, group, placement)
            ray.get(handle.build.remote(cfg.model_dump(), data_root))
        proxies[name] = ActorProxy(handle)
    return proxies


def _rebuild(handle, cfg: ExperimentConfig, data_root: str | None) -> bool:
    """False when the kept actor is gone (e.g. its node was removed), so a new one is started."""
    try:
        ray.get(handle.build.remote(cfg.model_dump(), data_root))
    except ray.exceptions.RayActorError:
        return False
    return True


def _new_actor(name: str, index: int, group, placement: Placement):
    options = placement.actor_options()
    if group is not None:
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=index
        )
    return SubsystemActor.options(**options).remote(name)
