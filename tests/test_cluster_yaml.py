"""cluster.yaml (the Ray cluster-launcher config) checked offline.

Validated against the JSON schema shipped inside the installed ray package
(`ray/autoscaler/ray-schema.json`, draft-07) and through Ray's own
`prepare_config` + `validate_config`, the checks `ray up` runs before it talks
to AWS. Then the parts this project relies on: the head runs the MLflow
server on PostgreSQL and S3 (addresses from ~/.hypercl/cluster.env), a GPU
worker type exists, every node installs the project and knows the tracking
URI. The security group Ray will set up from the file opens nothing to the
world but SSH, and neither MLflow nor the dashboard to anyone; docs/cluster.md
shows the SSH tunnels instead and ships the iam:PassRole policy the head needs
to start workers with an instance profile. The negative tests prove the
checks can fail.
"""

from __future__ import annotations

import ast
import copy
import functools
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
CLUSTER_MD = ROOT / "docs" / "cluster.md"
ENV_TEMPLATE = ROOT / "docs" / "cluster.env.example"
PASSROLE_POLICY = ROOT / "docs" / "iam" / "head-passrole.json"
ENV_FILE = "/home/ubuntu/.hypercl/cluster.env"
ENV_VARS = ("HYPERCL_MLFLOW_DB", "HYPERCL_STUDY_STORAGE", "HYPERCL_ARTIFACTS")
WORLD = {"0.0.0.0/0", "::/0"}
SSH, MLFLOW, DASHBOARD = 22, 5000, 8265
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
        '--backend-store-uri "$HYPERCL_MLFLOW_DB"',
        '--artifacts-destination "$HYPERCL_ARTIFACTS"',
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
    assert config["file_mounts"]["/home/ubuntu/hypercl"] == "."
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


def test_every_node_exports_the_tracking_uri(config):
    # what `hypercl sweep/best/rerun` read when --tracking-uri is not given
    head = " ".join(config["head_setup_commands"])
    workers = " ".join(config["worker_setup_commands"])
    assert "export MLFLOW_TRACKING_URI=http://" in head and ":5000" in head and ">> ~/.bashrc" in head
    assert "export MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in workers and ">> ~/.bashrc" in workers


# ------------------------------------------- state outside the cluster


def env_template() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_TEMPLATE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def test_mlflow_and_the_study_live_in_postgresql_and_s3(config):
    mlflow = next(c for c in config["head_start_ray_commands"] if "mlflow server" in c)
    assert "sqlite" not in mlflow and "/home/ubuntu/hypercl-mlflow/artifacts" not in mlflow, "nothing on the head's disk"

    # ~/.hypercl/cluster.env reaches the head, and every later head shell (ray start, the
    # MLflow server, Ray jobs) has its variables
    assert config["file_mounts"][ENV_FILE] == "~/.hypercl/cluster.env"
    head = config["head_setup_commands"]
    assert any("set -a; . ~/.hypercl/cluster.env; set +a" in c and ">> ~/.bashrc" in c for c in head)
    check = next(c for c in head if "psycopg.connect" in c)
    for var in ENV_VARS:
        assert var in check, var
    assert "s3://*" in check

    values = env_template()
    assert set(values) == set(ENV_VARS)
    assert values["HYPERCL_MLFLOW_DB"].startswith("postgresql://")
    assert values["HYPERCL_STUDY_STORAGE"].startswith("postgresql://")
    assert values["HYPERCL_ARTIFACTS"].startswith("s3://")
    # MLflow and Optuna both keep an `alembic_version` table: two databases (tests/test_postgres_fixture.py)
    assert values["HYPERCL_MLFLOW_DB"].rsplit("/", 1)[1] != values["HYPERCL_STUDY_STORAGE"].rsplit("/", 1)[1]


def test_docs_say_where_state_lives_and_what_survives(config):
    doc = CLUSTER_MD.read_text()
    for heading in ("### Before the first launch", "### What survives `ray down`"):
        assert heading in doc, heading
    assert "mlflow server --backend-store-uri postgresql://" in doc and "--artifacts-destination s3://" in doc
    assert '--study-storage "$HYPERCL_STUDY_STORAGE"' in doc
    survives = doc.split("### What survives `ray down`", 1)[1].split("\n### ", 1)[0]
    for word in ("S3", "PostgreSQL", "RDS", "sweep.yaml", "pg_dump", "rsync-down"):
        assert word in survives, word


# ------------------------------------------------------- security group


@functools.cache
def rays_update_inbound_rules():
    """Ray's own `_update_inbound_rules` and the rule builders it calls, taken from the installed
    ray/autoscaler/_private/aws/config.py without importing it (that module needs boto3)."""
    source = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"
    wanted = {"_update_inbound_rules", "_create_default_inbound_rules",
              "_create_default_intracluster_inbound_rules", "_create_default_ssh_inbound_rules"}
    funcs = [node for node in ast.parse(source.read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name in wanted]
    assert {f.name for f in funcs} == wanted, f"Ray's {source} changed: {wanted - {f.name for f in funcs}} missing"
    namespace = {"itertools": itertools}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(source), "exec"), namespace)  # noqa: S102
    return namespace["_update_inbound_rules"]


def ingress_rules(cfg: dict) -> list[dict]:
    """The rules Ray authorizes on the security group it sets up for this config: its defaults
    (intra-cluster, SSH) plus provider.security_group.IpPermissions, as Ray's code builds them."""

    class Group:  # stands in for the boto3 SecurityGroup that Ray calls authorize_ingress on
        authorized: list[dict] = []

        def authorize_ingress(self, IpPermissions):  # noqa: N803 (boto3's name)
            self.authorized = IpPermissions

    group = Group()
    rays_update_inbound_rules()(group, {"sg-hypercl"}, copy.deepcopy(cfg))
    return group.authorized


def covers(rule: dict, port: int) -> bool:
    if str(rule.get("IpProtocol")) in ("-1", "all"):
        return True
    if str(rule.get("IpProtocol")).lower() not in ("tcp", "6"):
        return False
    return rule.get("FromPort", 0) <= port <= rule.get("ToPort", 65535)


def address_ranges(rule: dict) -> set[str]:
    return ({r["CidrIp"] for r in rule.get("IpRanges", [])} | {r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])}
            | {p["PrefixListId"] for p in rule.get("PrefixListIds", [])})


def exposure_problems(cfg: dict) -> list[str]:
    problems = []
    for rule in ingress_rules(cfg):
        ranges = address_ranges(rule)
        world = ranges & WORLD
        ssh_only = str(rule.get("IpProtocol")).lower() in ("tcp", "6") and rule.get("FromPort") == rule.get("ToPort") == SSH
        if world and not ssh_only:
            problems.append(f"open to {sorted(world)}: {rule}")
        for port in (MLFLOW, DASHBOARD):
            if ranges and covers(rule, port):  # only group-to-group (intra-cluster) rules may reach them
                problems.append(f"port {port} open to {sorted(ranges)}: {rule}")
    return problems


def test_security_group_is_explicit(config):
    group = config["provider"]["security_group"]
    assert group["GroupName"] == f"ray-autoscaler-{config['cluster_name']}"
    assert group["IpPermissions"] == []
    for spec in config["available_node_types"].values():
        assert "SecurityGroupIds" not in spec["node_config"], "Ray applies provider.security_group only to nodes without one"


def test_only_ssh_is_open_to_the_world(config):
    rules = ingress_rules(config)
    assert exposure_problems(config) == []
    world = [r for r in rules if address_ranges(r) & WORLD]
    assert world and all(r["FromPort"] == r["ToPort"] == SSH for r in world), "SSH stays reachable (ray up needs it)"
    # workers reach MLflow and Ray on the head through the group-to-group rule
    assert any(r.get("UserIdGroupPairs") and covers(r, MLFLOW) for r in rules)


@pytest.mark.parametrize("rule", [
    {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
    {"FromPort": 0, "ToPort": 65535, "IpProtocol": "tcp", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    {"FromPort": 6379, "ToPort": 6379, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "IpRanges": [{"CidrIp": "203.0.113.0/24"}]},
])
def test_an_opened_port_is_caught(config, validator, rule):
    bad = copy.deepcopy(config)
    bad["provider"]["security_group"]["IpPermissions"] = [rule]
    assert schema_errors(validator, bad) == []  # the schema allows it: this check is ours
    assert exposure_problems(bad)


def test_docs_reach_mlflow_and_the_dashboard_through_ssh():
    doc = CLUSTER_MD.read_text()
    assert "ray dashboard cluster.yaml" in doc
    assert "ssh -i ~/.ssh/ray-autoscaler_us-west-2.pem -L 5000:localhost:5000" in doc
    assert "ray attach cluster.yaml -p 5000" in doc


# ---------------------------------------------------------------- IAM


def test_head_may_pass_the_workers_role(config):
    # The head launches the workers; EC2 takes an instance profile only from a caller that may
    # pass its role, and the role Ray creates (AmazonEC2FullAccess + AmazonS3FullAccess) may not.
    _, workers = head_and_workers(config)
    profiles = {spec["node_config"]["IamInstanceProfile"]["Name"] for spec in workers.values()
                if "IamInstanceProfile" in spec["node_config"]}
    assert profiles == {"ray-autoscaler-v1"}

    policy = json.loads(PASSROLE_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "iam:PassRole"
    assert statement["Resource"] == "arn:aws:iam::ACCOUNT_ID:role/ray-autoscaler-v1"
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}

    doc = CLUSTER_MD.read_text()
    before = doc.split("### Before the first launch", 1)[1].split("\n### ", 1)[0]
    assert "aws iam put-role-policy --role-name ray-autoscaler-v1" in before
    assert "docs/iam/head-passrole.json" in before and "ACCOUNT_ID" in before


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(config):
    for key in COMMAND_LISTS:
        for cmd in config.get(key) or []:
            check = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert check.returncode == 0, f"{key}: {cmd!r}: {check.stderr}"
