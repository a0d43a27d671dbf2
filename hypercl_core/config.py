"""The experiment configuration: one typed object per experiment.

The same object is loaded from YAML presets, overridden on the command line
(`--set key=value` with dotted keys), saved into every run folder, sampled by
sweeps (as flat dotted keys) and stored as MLflow params. Validation happens
here, once, so every consumer can trust the values.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.errors import ConfigError
from hypercl_core.methods import METHODS
from hypercl_core.registry import OPTIONAL_SECTIONS, MethodSpec
from hypercl_core.nets.targets import TARGETS
from hypercl_core.sections import HnetConfig, Section, check_sizes

PRESET_DIR = Path(__file__).resolve().parent.parent / "search_spaces" / "presets"
# The sections a registry entry declares, picked by their `name` key.
TargetSection = Annotated[Union[tuple(spec.section for spec in TARGETS.values())], Field(discriminator="name")]
MethodSection = Annotated[Union[tuple(spec.section for spec in METHODS.values())], Field(discriminator="name")]
NAMED_SECTIONS = {"target": "mlp", "method": "hnet"}  # section -> the name it has when none is given
REGISTRIES: dict[str, dict] = {"target": TARGETS, "method": METHODS}  # section -> the entries its name picks


class BenchmarkConfig(Section):
    name: Literal[tuple(BENCHMARKS)] = "split_mnist"
    num_tasks: int = Field(5, ge=1)
    # cl1: task id given (multi-head); cl2: one shared head, task id inferred
    # for the hnet's weights; cl3: task id inferred, class out of all tasks.
    scenario: Literal["cl1", "cl2", "cl3"] = "cl1"
    # 1D regression only: noisy training points per task and their noise.
    train_points: int = Field(100, ge=1)
    noise_std: float = Field(0.05, ge=0)
    # MNIST digits zero-padded to 32x32 and replicated over 3 channels: what a CIFAR conv net reads.
    as_rgb32: bool = False

    @model_validator(mode="after")
    def _check_benchmark(self) -> "BenchmarkConfig":
        spec = BENCHMARKS[self.name]
        if spec.max_tasks is not None and self.num_tasks > spec.max_tasks:
            raise ValueError(f"num_tasks for {self.name} must be at most {spec.max_tasks}, got {self.num_tasks}")
        if self.scenario not in spec.scenarios:
            raise ValueError(f"{self.name} only supports scenario {' or '.join(spec.scenarios)}"
                             + (" (task id given)" if spec.scenarios == ("cl1",) else ""))
        if self.as_rgb32 and (spec.images or spec.flat_size != 784):
            raise ValueError(f"benchmark.as_rgb32 turns 28x28 MNIST digits into 3x32x32 images; {self.name} "
                             f"{'is images already' if spec.images else 'has none'}: set benchmark.as_rgb32=false")
        return self


class ReplayConfig(Section):
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
        check_sizes(self.encoder_hidden + self.decoder_hidden + self.discriminator_hidden)
        return self


class TrainConfig(Section):
    # A task trains for iterations or (set iters_per_task to null) epochs of its training set.
    iters_per_task: Optional[int] = Field(2000, ge=1)
    epochs_per_task: Optional[float] = Field(None, gt=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    # constant, or the step schedule of the Keras CIFAR-10 ResNet example (hypercl_core/schedule.py)
    lr_schedule: Literal["constant", "keras_resnet"] = "constant"
    eval_batch_size: int = Field(2000, ge=1)
    # CL1 also scores HNET+ENT task inference (what CL3 would get) by default; it costs
    # one target pass per learned task per test batch, so large CL1 studies turn it off.
    # CL2/CL3 always infer: it is their score.
    eval_inferred: bool = True

    @model_validator(mode="after")
    def _one_budget(self) -> "TrainConfig":
        if (self.iters_per_task is None) == (self.epochs_per_task is None):
            raise ValueError("a task trains for train.iters_per_task or train.epochs_per_task, exactly one: "
                             "set the other to null")
        return self


class ExperimentConfig(Section):
    seed: int = Field(0, ge=0)
    device: str = "auto"
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    # The sections below exist where the method reads them (its registry entry says which).
    target: Optional[TargetSection] = None  # the classifier's network
    hnet: Optional[HnetConfig] = None  # the hypernetwork that generates (or masks) the target's weights
    method: MethodSection = Field(default_factory=lambda: METHODS["hnet"].section())
    train: TrainConfig = Field(default_factory=TrainConfig)
    replay: Optional[ReplayConfig] = None  # methods with a replay model

    @model_validator(mode="before")
    @classmethod
    def _fill_sections(cls, data: Any) -> Any:
        """Name the unnamed sections (target: mlp, method: hnet) and give a method the default
        target and hnet sections it reads when the config has none."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section, default in NAMED_SECTIONS.items():
            if isinstance(data.get(section), dict) and "name" not in data[section]:
                data[section] = {"name": default, **data[section]}
        method = data.get("method")
        name = method.get("name") if isinstance(method, dict) else getattr(method, "name", "hnet")
        spec = METHODS.get(name)
        if spec is not None:
            for section in ("target", "hnet"):
                if section in spec.reads and data.get(section) is None:
                    data[section] = {"name": NAMED_SECTIONS["target"]} if section == "target" else {}
        return data

    @model_validator(mode="after")
    def _check_device(self) -> "ExperimentConfig":
        d = self.device
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {d!r}")
        return self

    @model_validator(mode="after")
    def _check_method(self) -> "ExperimentConfig":
        name = self.method.name
        spec = METHODS[name]
        if "replay" in spec.reads and self.replay is None:
            raise ValueError(f"method {name} needs a replay section; start from a class_mnist_*, "
                             "*_hnet_r or *_hnet_tir preset or --set replay.beta=0.01")
        for section in OPTIONAL_SECTIONS:
            if section not in spec.reads and getattr(self, section) is not None:
                reads = ", ".join(sorted(spec.reads)) or "none of target, hnet, replay"
                raise ValueError(f"method {name} does not use the {section} section (it reads {reads}); "
                                 f"remove {section} from the config")
        bench = BENCHMARKS[self.benchmark.name]
        if spec.classifies and not bench.classifiable:
            raise ValueError(f"{bench.name} has one class per task, so only replay models learn it; "
                             "use method.name=replay")
        if self.target is not None and TARGETS[self.target.name].images_only and len(bench.input_shape(self.benchmark)) != 3:
            raise ValueError(f"target {self.target.name} reads images and {bench.name} gives vectors; "
                             "set benchmark.as_rgb32=true (MNIST digits as 3x32x32) or pick an image benchmark")
        if spec.check is not None:
            spec.check(self)
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
    return _deep_merge(_what_carries_over(base, tree), tree)


def _what_carries_over(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """What a preset inherits from the one it extends: all of it, except that where the child
    names another method or target, only the keys that one also has carry over (HNET+TIR keeps
    HNET's beta; HNET+R, which has none, keeps nothing), and the sections the child's method
    does not read are left behind (HNET+R keeps its parent's target, not its hypernetwork)."""
    base = dict(base)
    for section, registry in REGISTRIES.items():
        name = _named(child, section)  # a child's section without a name keeps its parent's
        if name in registry and name != _section_name(base, section) and isinstance(base.get(section), dict):
            fields = registry[name].section.model_fields
            base[section] = {k: v for k, v in base[section].items() if k in fields and k != "name"}
    spec = METHODS.get(_named(child, "method") or _section_name(base, "method") or "")
    return _without_unread_sections(base, spec) if spec is not None else base


def _without_unread_sections(tree: dict[str, Any], spec: MethodSpec) -> dict[str, Any]:
    """The tree less the optional sections (target, hnet, replay) the method does not read."""
    return {k: v for k, v in tree.items() if k not in OPTIONAL_SECTIONS or k in spec.reads}


def _named(tree: dict[str, Any], section: str) -> str | None:
    """The name a tree gives a section itself (None: it gives none, or has no such section)."""
    value = tree.get(section)
    return value.get("name") if isinstance(value, dict) else None


def _section_name(tree: dict[str, Any], section: str) -> str | None:
    value = tree.get(section)
    return value.get("name", NAMED_SECTIONS[section]) if isinstance(value, dict) else None


def saved_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """A config saved by any hypercl version (run folder, checkpoint, sweep folder, MLflow params)
    as today's schema reads it: the keys its method ignored then (a `method.beta` under HNET+R,
    the classifier sections of a replay model, HyperMask's `method.lookahead`) did nothing, so
    they are dropped rather than refused, and the run resumes, reruns and exports as it was."""
    tree = copy.deepcopy(tree)
    spec = METHODS.get(_section_name(tree, "method") or NAMED_SECTIONS["method"])
    if spec is None:
        return tree  # validation names the unknown method
    method = tree.get("method") if isinstance(tree.get("method"), dict) else {}
    tree["method"] = {k: v for k, v in method.items() if k in spec.section.model_fields}
    return _without_unread_sections(tree, spec)


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


def build_config(tree: dict[str, Any], source: str = "config", saved: bool = False) -> ExperimentConfig:
    """Validate a config tree; `saved`: one that hypercl wrote (see `saved_tree`)."""
    try:
        return ExperimentConfig.model_validate(saved_tree(tree) if saved else tree)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Preset or YAML file, then `key=value` overrides, validated as one object.

    `--set method.name=X` (or `target.name=X`) reads as a preset extending this one with X:
    the preset's keys X has no use for are left behind, the overrides given are all kept."""
    path = resolve_preset(name_or_path)
    tree = read_yaml_tree(path)
    if "benchmark" not in tree:  # e.g. only `train:`; the defaults would pick SplitMNIST unasked
        raise ConfigError(f"{path} names no benchmark; {_WHAT_A_CONFIG_NEEDS}")
    parsed = [parse_override(item) for item in overrides or []]
    renamed: dict[str, Any] = {}
    for key, value in parsed:
        section, _, field = key.partition(".")
        if section in REGISTRIES and field == "name":
            renamed[section] = {"name": value}
    if renamed:
        tree = _what_carries_over(tree, renamed)
    for key, value in parsed:
        set_dotted(tree, key, value)
    return build_config(tree, source=str(name_or_path))


def config_from_flat(flat: dict[str, Any], base: ExperimentConfig | None = None, saved: bool = False) -> ExperimentConfig:
    """Rebuild a config from dotted keys over `base`: a sweep sample, or (`saved`) MLflow params."""
    tree = base.model_dump() if base is not None else {}
    for key, value in flat.items():
        set_dotted(tree, key, value)
    return build_config(tree, source="flat config", saved=saved)


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line for the first problem: the dotted key, what is wrong, how to fix it."""
    err = exc.errors()[0]
    loc = _without_tags(err["loc"])
    key = ".".join(str(p) for p in loc) or "<top level>"
    if err["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in loc[:-1])
        valid = ", ".join(_valid_keys(err["loc"][:-1]))
        if len(err["loc"]) == 3 and err["loc"][0] in NAMED_SECTIONS:  # a registry entry's own section
            return f"unknown config key '{key}' in {source}; {err['loc'][0]} {err['loc'][1]} takes: {valid}"
        return f"unknown config key '{key}' in {source}; valid keys{' in ' + section if section else ''}: {valid}"
    if err["type"] == "union_tag_invalid":
        names = err["ctx"]["expected_tags"]
        return f"config key '{key}.name': {err['ctx']['tag']!r} is none of {names}; fix it in {source} or with --set {key}.name=<name>"
    msg = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:  # a rule across sections; its message names the keys and the fix
        return f"config {source}: {msg}"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"config key '{key}': {msg}{got_text}; fix it in {source} or with --set {key}=<value>"


def _without_tags(loc: tuple) -> tuple:
    """An error location as the user writes the key: pydantic puts the chosen member of a named
    section's union in the path (`method.hypermask.lookahead` for `method.lookahead`)."""
    if len(loc) > 1 and loc[0] in REGISTRIES and loc[1] in REGISTRIES[loc[0]]:
        return (loc[0], *loc[2:])
    return tuple(loc)


def _section_model(loc: tuple) -> type[BaseModel] | None:
    """The section class at `loc` (tags included, as pydantic reports them)."""
    model: type[BaseModel] | None = ExperimentConfig
    i = 0
    while i < len(loc) and model is not None:
        part = loc[i]
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        if model is ExperimentConfig and part in REGISTRIES:
            registry = REGISTRIES[part]
            tag = loc[i + 1] if i + 1 < len(loc) else None
            model = registry[tag].section if tag in registry else None
            i += 2
            continue
        annotation = model.model_fields[part].annotation
        # An optional section (`replay`) is Optional[Section]: look inside the union.
        model = next((a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        i += 1
    return model


def _valid_keys(loc: tuple) -> list[str]:
    model = _section_model(tuple(loc))
    keys = list(model.model_fields) if model is not None else []
    return sorted(keys, key=lambda k: k != "name")  # the name that picked the section first
