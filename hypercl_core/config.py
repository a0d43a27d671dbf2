"""The experiment configuration: one typed object per experiment.

The same object is loaded from YAML presets, overridden on the command line
(`--set key=value` with dotted keys), saved into every run folder, sampled by
sweeps (as flat dotted keys) and stored as MLflow params. Validation happens
here, once, so every consumer can trust the values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hypercl_core.errors import ConfigError

Activation = Literal["linear", "relu", "elu", "leaky_relu", "sigmoid", "tanh"]
PRESET_DIR = Path(__file__).resolve().parent.parent / "search_spaces" / "presets"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BenchmarkConfig(_Section):
    # class_mnist: ten tasks of one digit each (class-incremental), for replay models.
    name: Literal["split_mnist", "permuted_mnist", "regression1d", "class_mnist"] = "split_mnist"
    num_tasks: int = Field(5, ge=1)
    # cl1: task id given (multi-head); cl2: one shared head, task id inferred
    # for the hnet's weights; cl3: task id inferred, class out of all tasks.
    scenario: Literal["cl1", "cl2", "cl3"] = "cl1"
    # 1D regression only: noisy training points per task and their noise.
    train_points: int = Field(100, ge=1)
    noise_std: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _check_num_tasks(self) -> "BenchmarkConfig":
        limit = {"split_mnist": 5, "regression1d": 3, "class_mnist": 10}.get(self.name)
        if limit is not None and self.num_tasks > limit:
            raise ValueError(f"num_tasks for {self.name} must be at most {limit}, got {self.num_tasks}")
        if self.name == "regression1d" and self.scenario != "cl1":
            raise ValueError("regression1d only supports scenario cl1 (task id given)")
        return self


class TargetConfig(_Section):
    hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _positive(self) -> "TargetConfig":
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"layer sizes must be >= 1, got {self.hidden}")
        return self


class HnetConfig(_Section):
    # An empty list is the paper's "no hidden layer" (linear) hypernetwork.
    hidden: list[int] = Field(default_factory=lambda: [10, 10])
    activation: Activation = "elu"
    temb_dim: int = Field(96, ge=1)
    cemb_dim: int = Field(96, ge=1)
    # None: a full hypernetwork that outputs every target weight at once.
    chunk_dim: Optional[int] = Field(42000, ge=1)

    @model_validator(mode="after")
    def _positive(self) -> "HnetConfig":
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"layer sizes must be >= 1, got {self.hidden}")
        return self


class MethodConfig(_Section):
    # hnet: the hypernetwork generates the target weights (von Oswald et al. 2020).
    # hypermask: shared target weights, the hypernetwork generates per-task masks (Książek & Spurek 2023).
    # replay: only the hnet-protected replay model (section `replay`: VAE or GAN), learning to
    # generate each task.
    # hnet_r: HNET+R, an ordinary classifier (section `target`) replaying that VAE.
    # hnet_tir: HNET+TIR, the HNET classifier answering for the task a task-inference
    # classifier (section `target`'s layers) picks; the latter replays the VAE.
    name: Literal["hnet", "hypermask", "replay", "hnet_r", "hnet_tir"] = "hnet"
    beta: float = Field(0.01, ge=0)
    lookahead: bool = True
    # Regularize a random subset of at most K previous tasks per step.
    reg_subset: Optional[int] = Field(None, ge=1)
    # HyperMask only: per-tensor percentile p of mask entries set to zero, and the
    # weight of the masked L1 penalty on changing the shared weights.
    sparsity: float = Field(0.0, ge=0, lt=100)
    l1: float = Field(1e-3, ge=0)


class ReplayConfig(_Section):
    """The hnet-protected replay model: a decoder (VAE) or generator (GAN) whose weights a
    chunked hypernetwork generates, conditioned on a fixed random vector per task, beside an
    ordinary encoder (VAE) or discriminator (GAN). It trains with the `train` section's
    iterations, batch size and learning rate, as the authors' did."""

    model: Literal["vae", "gan"] = "vae"
    encoder_hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)  # VAE
    decoder_hidden: list[int] = Field(default_factory=lambda: [250, 350], min_length=1)  # decoder / generator
    discriminator_hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)  # GAN
    dropout: float = Field(0.4, ge=0, lt=1)  # GAN discriminator
    # GAN only. Adam on the hnet moves every generated weight by about lr times the
    # sum of the hnet's last hidden activations per step, so the generator learns
    # much faster than an ordinary network at the same lr; the discriminator gets
    # its own (higher) rate to keep up. None: train.lr.
    discriminator_lr: float | None = Field(None, gt=0)
    # Std of the generated weights at init (None: the hnet's Xavier output layer,
    # which starts the generator near 0.02 std, too small for z to shape its images).
    init_weight_std: float | None = Field(None, gt=0)
    latent_dim: int = Field(100, ge=1)  # z, and the per-task condition vector
    hnet: HnetConfig = Field(default_factory=lambda: HnetConfig(chunk_dim=50000))
    beta: float = Field(0.01, ge=0)
    lookahead: bool = True
    # Share of the current task's real data in the loss of a classifier that replays
    # (HNET+R, HNET+TIR's task inference); the replayed tasks get the rest. 0.5 is the
    # authors'; None gives 1/(t+1), so every task met so far weighs the same instead of
    # the newest one weighing as much as all earlier ones together.
    current_weight: float | None = Field(0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _positive(self) -> "ReplayConfig":
        if any(h < 1 for h in self.encoder_hidden + self.decoder_hidden + self.discriminator_hidden):
            raise ValueError("layer sizes must be >= 1")
        return self


class TrainConfig(_Section):
    iters_per_task: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    eval_batch_size: int = Field(2000, ge=1)
    # CL1 also scores HNET+ENT task inference (what CL3 would get) by default; it costs
    # one target pass per learned task per test batch, so large CL1 studies turn it off.
    # CL2/CL3 always infer: it is their score.
    eval_inferred: bool = True


class ExperimentConfig(_Section):
    seed: int = Field(0, ge=0)
    device: str = "auto"
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    hnet: HnetConfig = Field(default_factory=HnetConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    replay: Optional[ReplayConfig] = None  # methods with a replay model

    @model_validator(mode="after")
    def _check_device(self) -> "ExperimentConfig":
        d = self.device
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {d!r}")
        return self

    @model_validator(mode="after")
    def _check_method(self) -> "ExperimentConfig":
        if self.method.name == "hypermask":
            if self.hnet.chunk_dim is not None:
                raise ValueError("hypermask generates whole masks: set hnet.chunk_dim=null")
            if self.method.lookahead:
                raise ValueError("hypermask's output regularizer has no lookahead: set method.lookahead=false")
            if self.benchmark.name == "regression1d":
                raise ValueError("hypermask is for classification benchmarks; use method.name=hnet for regression1d")
        uses_replay = self.method.name in ("replay", "hnet_r", "hnet_tir")
        if uses_replay and self.replay is None:
            raise ValueError(f"method {self.method.name} needs a replay section; start from a class_mnist_*, "
                             "*_hnet_r or *_hnet_tir preset or --set replay.beta=0.01")
        if not uses_replay and self.replay is not None:
            raise ValueError(f"method {self.method.name} has no replay model; remove the replay section")
        if self.benchmark.name == "class_mnist" and self.method.name != "replay":
            raise ValueError("class_mnist has one class per task, so only replay models learn it; "
                             "use method.name=replay")
        if self.method.name in ("hnet_r", "hnet_tir") and self.replay.model != "vae":
            raise ValueError(f"{self.method.name} replays from the VAE (the GAN was not used for replay); "
                             "set replay.model=vae")
        if self.method.name == "hnet_tir" and self.benchmark.scenario == "cl1":
            raise ValueError("hnet_tir infers the task, which CL1 gives; use method.name=hnet for cl1")
        if uses_replay and self.benchmark.name == "regression1d":
            raise ValueError("the replay VAE models MNIST images; pick an MNIST benchmark")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, the form sweeps sample and MLflow stores."""
        return flatten(self.model_dump())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict; unknown keys are left for validation to name."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (so 1e-3, [25,25], null, true work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value; write e.g. --set train.lr=0.001")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        value = _maybe_number(value)
    return key.strip(), value


def _maybe_number(text: str) -> Any:
    # YAML 1.1 reads "1e-3" as a string; researchers write learning rates so.
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = PRESET_DIR / f"{Path(str(name_or_path)).stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and candidate.is_file() and len(path.parts) == 1:
        return candidate
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a YAML file nor a preset; "
        f"presets: {', '.join(available_presets())}"
    )


def read_yaml_tree(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a preset, following `extends: <preset>` so variants stay small."""
    if path in _seen:
        raise ConfigError(f"preset {path} extends itself through {[str(p) for p in _seen]}")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    # An empty file (or one of comments only) would otherwise run the defaults: a full SplitMNIST run.
    if tree is None or tree == {}:
        raise ConfigError(f"{path} is empty; {_WHAT_A_CONFIG_NEEDS}")
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} holds a {_yaml_kind(tree)}, not a mapping of config sections; {_WHAT_A_CONFIG_NEEDS}")
    parent = tree.pop("extends", None)
    if parent is None:
        return tree
    base = read_yaml_tree(_resolve_relative(path, parent), _seen + (path,))
    return _deep_merge(base, tree)


_WHAT_A_CONFIG_NEEDS = ("a config file names at least `benchmark` (e.g. `benchmark: {name: split_mnist}`, "
                        "or `extends: <preset>`), or pass a preset name instead (list them: hypercl presets)")


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "plain string"
    return f"single {type(value).__name__} value"


def _resolve_relative(path: Path, parent: str) -> Path:
    sibling = path.parent / (parent if parent.endswith(".yaml") else f"{parent}.yaml")
    return sibling if sibling.is_file() else resolve_preset(parent)


def build_config(tree: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Preset or YAML file, then `key=value` overrides, validated as one object."""
    path = resolve_preset(name_or_path)
    tree = read_yaml_tree(path)
    if "benchmark" not in tree:  # e.g. only `train:`; the defaults would pick SplitMNIST unasked
        raise ConfigError(f"{path} names no benchmark; {_WHAT_A_CONFIG_NEEDS}")
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(tree, key, value)
    return build_config(tree, source=str(name_or_path))


def config_from_flat(flat: dict[str, Any], base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Rebuild a config from dotted keys (a sweep sample or MLflow params) over `base`."""
    tree = base.model_dump() if base is not None else {}
    for key, value in flat.items():
        set_dotted(tree, key, value)
    return build_config(tree, source="flat config")


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line for the first problem: the dotted key, what is wrong, how to fix it."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "<top level>"
    if err["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in err["loc"][:-1])
        valid = _valid_keys(section)
        return f"unknown config key '{key}' in {source}; valid keys{' in ' + section if section else ''}: {', '.join(valid)}"
    msg = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:  # a rule across sections; its message names the keys and the fix
        return f"config {source}: {msg}"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"config key '{key}': {msg}{got_text}; fix it in {source} or with --set {key}=<value>"


def _valid_keys(section: str) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    for part in filter(None, section.split(".")):
        annotation = model.model_fields[part].annotation
        # An optional section (`replay`) is Optional[Section]: look inside the union.
        section_type = next((a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section_type is None:
            return []
        model = section_type
    return list(model.model_fields)
