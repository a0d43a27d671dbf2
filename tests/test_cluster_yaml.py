"""cluster.yaml (the Ray cluster-launcher config) checked offline.

Validated against the JSON schema shipped inside the installed ray package
(`ray/autoscaler/ray-schema.json`, draft-07) and through Ray's own
`prepare_config` + `validate_config`, the checks `ray up` runs before it talks
to AWS. Then the parts this project relies on: the head runs the MLflow
server, a GPU worker type exists, and every node installs the project.
The negative tests prove the schema check can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
SCHEMA_PATH = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: jsonschema.Draft7Validator, cfg: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(cfg)]


def head_and_workers(cfg: dict) -> tuple[dict, dict[str, dict]]:
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {name: spec for name, spec in types.items() if name != cfg["head_node_type"]}
    return head, workers


# ------------------------------------------------------------------ schema


def test_cluster_yaml_matches_rays_schema(config, validator):
    assert schema_errors(validator, config) == []


def test_ray_up_config_checks_pass(config):
    # What `ray up` does to the file before contacting the cloud provider:
    # fill in the provider's defaults, merge the command lists, validate.
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["cluster_name"] == "hypercl"


def test_unknown_top_level_key_fails(config, validator):
    bad = copy.deepcopy(config)
    bad["gpu_workers"] = 4  # not a cluster-launcher key
    errors = schema_errors(validator, bad)
    assert errors and any("gpu_workers" in e for e in errors), errors


@pytest.mark.parametrize("value", [0.5, "1"])
def test_non_integer_resource_fails(config, validator, value):
    bad = copy.deepcopy(config)
    _, workers = head_and_workers(bad)
    next(iter(workers.values()))["resources"]["GPU"] = value
    errors = schema_errors(validator, bad)
    assert errors and any("resources/GPU" in e for e in errors), errors


def test_rays_validate_config_rejects_bad_copies(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = prepare_config(copy.deepcopy(config))
    bad["gpu_workers"] = 4
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)


# ----------------------------------------------------------- cluster shape


def test_provider_is_aws(config):
    assert config["cluster_name"] == "hypercl"
    assert config["provider"]["type"] == "aws"
    assert re.fullmatch(r"[a-z]{2}-[a-z]+-\d", config["provider"]["region"])


def test_head_is_a_cpu_node_running_ray_then_mlflow(config):
    head, _ = head_and_workers(config)
    assert head["resources"].get("GPU", 0) == 0

    cmds = config["head_start_ray_commands"]
    ray_at = next(i for i, c in enumerate(cmds) if "ray start --head" in c)
    mlflow_at = next(i for i, c in enumerate(cmds) if "mlflow server" in c)
    assert ray_at < mlflow_at, "Ray starts first, then the MLflow server"

    mlflow = cmds[mlflow_at]
    for part in (
        "--backend-store-uri sqlite:////home/ubuntu/hypercl-mlflow/mlflow.db",
        "--artifacts-destination /home/ubuntu/hypercl-mlflow/artifacts",
        "--host 0.0.0.0",
        "--port 5000",
        "--workers 1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        "MLFLOW_DISABLE_TELEMETRY=true",
        "nohup",
    ):
        assert part in mlflow, part
    assert mlflow.rstrip().endswith("&"), "the server runs in the background"


def test_gpu_worker_type(config):
    _, workers = head_and_workers(config)
    gpu = {name: spec for name, spec in workers.items() if spec["resources"].get("GPU", 0) >= 1}
    assert gpu, "no worker node type declares a GPU"
    for name, spec in gpu.items():
        res = spec["resources"]
        assert isinstance(res["GPU"], int) and isinstance(res["CPU"], int) and res["CPU"] >= 1, name
        assert 0 <= spec["min_workers"] <= spec["max_workers"] <= config["max_workers"], name
        assert spec["node_config"]["InstanceType"], name
        # trials write checkpoints to --storage s3://... from the workers: the profile `ray up` makes for the head
        assert spec["node_config"]["IamInstanceProfile"] == {"Name": "ray-autoscaler-v1"}, name
    assert sum(s.get("min_workers", 0) for s in workers.values()) <= config["max_workers"]


# ------------------------------------------------------------------ setup


def test_every_node_installs_the_project(config):
    assert config["file_mounts"] == {"/home/ubuntu/hypercl": "."}
    setup = config["setup_commands"]  # run on head and workers alike
    assert any("python3 -m venv .venv" in c for c in setup)
    assert any(re.search(r"\.venv/bin/pip install -e \.(\s|$)", c) for c in setup)
    assert any("ray[default]" in c for c in setup)
    # the local venv must not be copied over the nodes' own
    assert ".venv" in config["rsync_exclude"] or ".gitignore" in config["rsync_filter"]


def test_mnist_is_provided_on_the_nodes(config):
    setup = " ".join(config["setup_commands"])
    assert "HYPERCL_DATA" in setup and "hypercl-data" in setup
    assert "torchvision==0.28.0" in setup
    assert "MNIST('/home/ubuntu/hypercl-data', download=True)" in setup
    assert "MNIST('/home/ubuntu/hypercl-data', train=False, download=True)" in setup


def test_workers_are_told_the_tracking_uri(config):
    assert any("$RAY_HEAD_IP:5000" in c for c in config["worker_setup_commands"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(config):
    for key in COMMAND_LISTS:
        for cmd in config.get(key) or []:
            check = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert check.returncode == 0, f"{key}: {cmd!r}: {check.stderr}"
