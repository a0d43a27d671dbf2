"""Subsystems as Ray actors: placement in the trial's bundles, and the same results as in-process."""

import json

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from hypercl_core.methods import build_learner, compose
from orchestrator import sweep
from orchestrator.actors import ActorProxy, Placement, SubsystemActor, spawn_subsystems
from orchestrator.tracking import KIND
from tests.conftest import tiny, tiny_with_replay
from tests.orchestrator.conftest import TINY_SWEEP, start_local_ray


def test_the_tests_ray_is_their_own_even_where_the_environment_names_a_cluster(monkeypatch):
    """CI once ran beside another suite's Ray; a plain `ray.init()` joined it and six tests failed."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    try:
        start_local_ray(num_gpus=1)
        assert ray.cluster_resources() == {**ray.cluster_resources(), "CPU": 2.0, "GPU": 1.0}
    finally:
        ray.shutdown()


def test_each_subsystem_gets_its_own_logical_gpu(data_root):
    start_local_ray(num_gpus=3)
    try:
        placement = Placement(gpus_per_subsystem=1)
        bundles = placement.bundles(3)
        assert bundles[1:] == [{"GPU": 1}] * 3
        group = placement_group(bundles)
        ray.get(group.ready())

        @ray.remote(num_cpus=0)
        def three():  # the trial's driver, in bundle 0, placing actors in bundles 1..3
            group_now = ray.util.get_current_placement_group()
            cfg = tiny(**{"benchmark.num_tasks": 1})
            out = []
            for index in (1, 2, 3):
                strategy = PlacementGroupSchedulingStrategy(placement_group=group_now,
                                                            placement_group_bundle_index=index)
                handle = SubsystemActor.options(scheduling_strategy=strategy, **placement.actor_options()).remote(
                    "target_hnet")
                ray.get(handle.build.remote(cfg.model_dump(), str(data_root)))
                out.append(ActorProxy(handle).placement())
            return out

        strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=True)
        where = ray.get(three.options(scheduling_strategy=strategy).remote())
        gpu_ids = [w["gpu_ids"] for w in where]
        assert all(len(ids) == 1 for ids in gpu_ids)
        assert len({ids[0] for ids in gpu_ids}) == 3
        assert len({w["cuda_visible_devices"] for w in where}) == 3
        remove_placement_group(group)
    finally:
        ray.shutdown()


def test_actor_learns_exactly_what_the_local_object_learns(local_ray, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 15})
    local = build_learner(cfg, str(data_root))
    remote = spawn_subsystems(cfg, Placement(), str(data_root))["target_hnet"]
    for t in range(2):
        local.learn_task(t)
        remote.learn_task(t)
    assert local.evaluate(1) == remote.evaluate(1)
    state = remote.state_dict()
    fresh = build_learner(cfg, str(data_root))
    fresh.load_state_dict(state)
    assert fresh.evaluate(1) == local.evaluate(1)


def test_next_trial_on_the_same_worker_reuses_the_actor_with_a_fresh_subsystem(local_ray, data_root):
    first = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 15})
    second = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 15, "seed": 7})
    proxy = spawn_subsystems(first, Placement(), str(data_root))["target_hnet"]
    proxy.learn_task(0)
    reused = spawn_subsystems(second, Placement(), str(data_root))["target_hnet"]
    assert reused.placement()["pid"] == proxy.placement()["pid"]
    local = build_learner(second, str(data_root))
    for t in range(2):
        local.learn_task(t)
        reused.learn_task(t)
    assert reused.evaluate(1) == local.evaluate(1)


def test_a_dead_kept_actor_is_replaced(local_ray, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 1, "train.iters_per_task": 5})
    proxy = spawn_subsystems(cfg, Placement(), str(data_root))["target_hnet"]
    pid = proxy.placement()["pid"]
    ray.kill(proxy.handle)
    replaced = spawn_subsystems(cfg, Placement(), str(data_root))["target_hnet"]
    assert replaced.placement()["pid"] != pid
    assert replaced.learn_task(0)


@pytest.mark.parametrize("method, parts", [("hnet_r", ["classifier", "replay_vae"]),
                                           ("hnet_tir", ["target_hnet", "replay_vae", "task_inference"])])
def test_replay_methods_put_each_subsystem_on_its_own_gpu_and_learn_as_in_process(data_root, method, parts):
    """HNET+R's two and HNET+TIR's three subsystems: one logical GPU each, learning each
    task side by side, with exactly the numbers of the same method in one process."""
    cfg = tiny_with_replay(method, "cl2", 2, "train.iters_per_task=15")
    start_local_ray(num_gpus=len(parts))
    try:
        placement = Placement(gpus_per_subsystem=1)
        group = placement_group(placement.bundles(len(parts)))
        ray.get(group.ready())

        @ray.remote(num_cpus=0)
        def trial():
            proxies = spawn_subsystems(cfg, placement, str(data_root))
            method = compose(cfg, proxies)
            for t in range(2):
                method.learn_task(t)
            return [p.placement() for p in proxies.values()], method.evaluate(1)

        strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=True)
        where, remote_scores = ray.get(trial.options(scheduling_strategy=strategy).remote())
        remove_placement_group(group)
    finally:
        ray.shutdown()
    assert [w["subsystem"] for w in where] == parts
    assert len({w["gpu_ids"][0] for w in where}) == len(parts)
    local = build_learner(cfg, str(data_root))
    for t in range(2):
        local.learn_task(t)
    assert local.evaluate(1) == remote_scores


def test_a_trial_larger_than_the_machine_is_refused_in_one_line():
    from hypercl_core.errors import UserError  # noqa: PLC0415

    Placement(cpus_per_subsystem=0.5).check_fits(3, {"CPU": 2.0})  # 0.25 + 3 x 0.5 fits
    with pytest.raises(UserError, match="one trial needs 2.5 CPU .3 subsystems. but this Ray cluster has 2; lower"):
        Placement().check_fits(3, {"CPU": 2.0})
    with pytest.raises(UserError, match="needs 3 GPU"):
        Placement(gpus_per_subsystem=1).check_fits(3, {"CPU": 2.0, "GPU": 1.0})


def _most_at_once(runs) -> int:
    """The most runs that were open at the same moment, from MLflow's start and end times."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs],
                    key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_a_quarter_gpu_per_subsystem_runs_four_trials_on_one_gpu(tmp_path, data_root):
    """One logical GPU, `--gpus-per-subsystem 0.25`, five one-subsystem trials: Ray runs four at a
    time, every actor on that GPU (CUDA_VISIBLE_DEVICES=0), and the fifth only once one of them ended."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1})
    spec = sweep.plan_sweep("smoke", "split_mnist_cl1", [*TINY_SWEEP, "train.iters_per_task=100"], name="quarter",
                            num_samples=5, max_concurrent=5, data_root=str(data_root), gpus_per_subsystem=0.25,
                            storage=str(tmp_path / "shared"))
    folder = sweep.new_sweep_folder(tmp_path, spec)
    try:
        sweep.start(spec, folder, address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quarter")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    where = [json.loads(r.data.tags["placement.target_hnet"]) for r in runs]
    assert all(w["gpu_ids"] == ["0"] and w["cuda_visible_devices"] == "0" for w in where), where
    assert _most_at_once(runs) == 4
