"""Sweep search spaces: YAML files of dotted config keys and their sampling domains.

A space names which config keys a sweep varies and how (`choice`, `uniform`,
`loguniform`, `randint`), plus a compression bound. Like the paper (Appendix
C), the hypernetwork's output (chunk) size is not searched but fitted per
sample, so every trial's hnet stays below `max_compression_ratio`; samples
that cannot be fitted are rejected before any training. Spaces are validated
when loaded and checked against the base config before a sweep starts, so a
typo costs one line of error instead of a cluster's worth of failed trials.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from hypercl_core.accounting import count_params
from hypercl_core.config import ExperimentConfig, config_from_flat
from hypercl_core.errors import ConfigError, UserError
from hypercl_core.registry import OPTIONAL_SECTIONS

SPACE_DIR = Path(__file__).resolve().parent
KINDS = ("choice", "uniform", "loguniform", "randint")

# Output sizes of the paper's random-architecture study (Fig. A7), extended with
# larger values (78,000 and 85,000 are the paper's PermutedMNIST-10 chunk and VAE
# output sizes) so targets of millions of weights can still be fitted.
DEFAULT_CHUNK_DIMS: list[int] = [
    10, 50, 100, 200, 300, 400, 500, 750,
    *range(1000, 10001, 1000),
    20000, 30000, 40000,
    50000, 60000, 70000, 78000, 85000, 100000,
]

# The keys `count_params` reads that a sweep may vary; the compression bound is
# checked over all their combinations. Sweeping the benchmark itself (name,
# scenario) is not a hyperparameter search, so those keys are left out.
SIZE_KEYS = (
    "benchmark.num_tasks", "target.hidden",
    "hnet.hidden", "hnet.temb_dim", "hnet.cemb_dim", "hnet.chunk_dim",
)


class ParamSpec(BaseModel):
    """How one config key is sampled: exactly one of the four kinds.

    `randint` bounds are inclusive (what a researcher writes in YAML);
    `tune_space` converts them to Tune's exclusive upper bound.
    """

    model_config = ConfigDict(extra="forbid")

    choice: Optional[list[Any]] = None
    uniform: Optional[tuple[float, float]] = None
    loguniform: Optional[tuple[float, float]] = None
    randint: Optional[tuple[int, int]] = None

    @model_validator(mode="after")
    def _one_valid_kind(self) -> "ParamSpec":
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
        if self.choice == []:
            raise ValueError("choice list is empty; give at least one value")
        if self.kind != "choice":
            self._check_bounds(*getattr(self, self.kind))
        return self

    def _check_bounds(self, lo: float, hi: float) -> None:
        if self.kind == "randint" and lo > hi:
            raise ValueError(f"randint [{lo}, {hi}]: lo must not exceed hi (both are inclusive)")
        if self.kind != "randint" and lo >= hi:
            raise ValueError(f"{self.kind} [{lo}, {hi}]: lo must be below hi; "
                             "use a one-value choice for a constant")
        if self.kind == "loguniform" and lo <= 0:
            raise ValueError(f"loguniform [{lo}, {hi}]: lo must be > 0; use uniform for ranges that include 0")

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def probe_values(self) -> list[Any]:
        """The choices, or a range's two ends: what checks try on the base config."""
        return list(self.choice if self.choice is not None else getattr(self, self.kind))

    def decode(self, sampled: Any) -> Any:
        """Map a Tune sample back to the choice it encodes (ranges pass through).

        Looking the value up among the choices, instead of JSON-decoding any
        string, keeps genuine string choices (e.g. "relu") untouched.
        """
        if self.choice is None:
            return sampled
        for value in self.choice:
            if encode_choice(value) == sampled:
                return value
        raise ValueError(f"sampled value {sampled!r} is not one of the choices {self.choice}")


def encode_choice(value: Any) -> Any:
    """Optuna's categorical only holds None/bool/int/float/str, so lists travel as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


class SearchSpace(BaseModel):
    """A named sweep space over dotted config keys with a compression bound."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    max_compression_ratio: float = Field(1.0, gt=0, allow_inf_nan=False)
    chunk_dims: list[PositiveInt] = Field(default_factory=lambda: list(DEFAULT_CHUNK_DIMS), min_length=1)
    params: dict[str, ParamSpec]

    def check_against(self, base: ExperimentConfig) -> None:
        """Fail before a sweep starts if any key, value or the bound cannot work on `base`."""
        known = {k: v for k, v in base.flat().items() if not (k in OPTIONAL_SECTIONS and v is None)}
        for key, spec in self.params.items():
            if key not in known:
                section = key.split(".")[0]
                unused = (f" (method {base.method.name} does not use the {section} section)"
                          if section in OPTIONAL_SECTIONS and getattr(base, section) is None else "")
                raise UserError(f"unknown config key '{key}' in space {self.name}{unused}; "
                                f"valid keys: {', '.join(known)}")
            for value in spec.probe_values():
                self._check_value(key, value, base)
        self._check_bound_reachable(base)

    def _check_value(self, key: str, value: Any, base: ExperimentConfig) -> None:
        try:
            config_from_flat({key: value}, base)
        except ConfigError as exc:
            # Drop config.py's "--set" advice: the fix belongs in the space file.
            reason = str(exc).partition("; fix it in")[0]
            raise UserError(f"space {self.name}: params.{key}: value {value!r} is invalid "
                            f"({reason}); change or remove it") from None

    def _check_bound_reachable(self, base: ExperimentConfig) -> None:
        smallest = min(self._smallest_ratio(cfg) for cfg in self._size_combinations(base))
        if smallest > self.max_compression_ratio:
            raise UserError(
                f"no architecture in space {self.name} reaches compression ratio <= "
                f"{self.max_compression_ratio:g} on the base config's target (smallest: {smallest:.4g}); "
                "raise max_compression_ratio or add smaller choices"
            )

    def _size_combinations(self, base: ExperimentConfig) -> Iterator[ExperimentConfig]:
        """Every combination of the size-relevant params (range ends stand in for ranges).

        Range ends suffice for the embedding sizes and task count, where the
        ratio grows monotonically with the value.
        """
        keys = [key for key in SIZE_KEYS if key in self.params]
        for values in itertools.product(*(self.params[key].probe_values() for key in keys)):
            yield config_from_flat(dict(zip(keys, values)), base)

    def _smallest_ratio(self, cfg: ExperimentConfig) -> float:
        if self._keeps_chunk(cfg):
            return compression_ratio(cfg)
        return min(compression_ratio(_with_chunk_dim(cfg, dim)) for dim in self.chunk_dims)

    @property
    def chunk_is_fixed(self) -> bool:
        """A space that samples `hnet.chunk_dim` itself opts out of fitting."""
        return "hnet.chunk_dim" in self.params

    def _keeps_chunk(self, cfg: ExperimentConfig) -> bool:
        """Nothing to fit: the space samples the chunk size, or the method has no `hnet` section
        (the baselines; HNET+R, whose only hypernetwork is its replay model's)."""
        return self.chunk_is_fixed or cfg.hnet is None

    def materialize(self, sample_flat: dict[str, Any], base: ExperimentConfig) -> ExperimentConfig | None:
        """The trial config for a decoded sample, or None if no chunk size keeps it under the bound."""
        cfg = config_from_flat(sample_flat, base)
        if self._keeps_chunk(cfg):
            return cfg if compression_ratio(cfg) <= self.max_compression_ratio else None
        return fit_chunk_dim(cfg, self.max_compression_ratio, self.chunk_dims)

    def compression_excess(self, sample_flat: dict[str, Any], base: ExperimentConfig) -> float:
        """How far the sample's smallest reachable compression ratio lies above the bound (<= 0: feasible);
        what the study's constraint is told, so TPE learns how far from feasible a region is."""
        return self._smallest_ratio(config_from_flat(sample_flat, base)) - self.max_compression_ratio

    def tune_space(self) -> dict[str, Any]:
        """Ray Tune domains per key; list choices are JSON strings (see `decode`)."""
        from ray import tune  # Ray is heavy; loading and checking spaces must not need it.

        def domain(spec: ParamSpec) -> Any:
            if spec.choice is not None:
                return tune.choice([encode_choice(value) for value in spec.choice])
            lo, hi = getattr(spec, spec.kind)
            if spec.kind == "randint":
                return tune.randint(lo, hi + 1)  # Tune's upper bound is exclusive
            return getattr(tune, spec.kind)(lo, hi)

        return {key: domain(spec) for key, spec in self.params.items()}

    def decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The real values of a Tune sample's params keys, ready for `materialize`."""
        decoded = {}
        for key, spec in self.params.items():
            try:
                decoded[key] = spec.decode(sample[key])
            except ValueError as exc:
                raise UserError(f"space {self.name}: params.{key}: {exc}; "
                                "was the space edited after the sweep started?") from None
        return decoded


def compression_ratio(cfg: ExperimentConfig) -> float:
    return count_params(cfg).compression_ratio


def _with_chunk_dim(cfg: ExperimentConfig, chunk_dim: int) -> ExperimentConfig:
    """Cheap copy for counting only: it shares every section except `hnet` with `cfg`."""
    return cfg.model_copy(update={"hnet": cfg.hnet.model_copy(update={"chunk_dim": chunk_dim})})


def fit_chunk_dim(cfg: ExperimentConfig, max_ratio: float, candidates: Iterable[int]) -> ExperimentConfig | None:
    """`cfg` with the largest candidate chunk size whose compression ratio is <= `max_ratio`.

    The ratio is not monotonic in the chunk size (small chunks need many chunk
    embeddings, large ones a wide output layer), so every candidate is counted.
    Of the feasible ones the largest wins, as in the paper: fewer chunks per
    target. None if no candidate is feasible.
    """
    feasible = [dim for dim in candidates if compression_ratio(_with_chunk_dim(cfg, dim)) <= max_ratio]
    if not feasible:
        return None
    fitted = cfg.model_copy(deep=True)
    fitted.hnet.chunk_dim = max(feasible)
    return fitted


def available_spaces() -> list[str]:
    return sorted(path.stem for path in SPACE_DIR.glob("*.yaml"))


def resolve_space(name_or_path: str | Path) -> Path:
    """A YAML path as given, else a bare name looked up in the package folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = SPACE_DIR / f"{path.stem}.yaml"
    if len(path.parts) == 1 and path.suffix in ("", ".yaml", ".yml") and candidate.is_file():
        return candidate
    raise UserError(f"space {str(name_or_path)!r} is neither a YAML file nor a built-in space; "
                    f"built-in spaces: {', '.join(available_spaces())}")


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Read and validate a space; every problem is one UserError line naming file and key."""
    path = resolve_space(name_or_path)
    source = path.name if path.resolve().parent == SPACE_DIR else str(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"space {source}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(tree, dict):
        raise UserError(f"space {source}: expected a mapping with name and params at the top level")
    try:
        return SearchSpace.model_validate(tree)
    except ValidationError as exc:
        raise UserError(describe_space_error(exc, source)) from None


def describe_space_error(exc: ValidationError, source: str) -> str:
    """One line for the first problem: file, dotted location, what is wrong, the fix."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    where = ".".join(loc) or "<top level>"
    if err["type"] == "extra_forbidden" and len(loc) == 1:
        return f"space {source}: unknown key '{where}'; valid keys: {', '.join(SearchSpace.model_fields)}"
    if err["type"] == "extra_forbidden":
        return (f"space {source}: {'.'.join(loc[:-1])}: unknown kind '{loc[-1]}'; use exactly one of "
                f"{', '.join(KINDS)} (params keys are dotted, e.g. hnet.hidden)")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":  # our validators' messages already carry the fix
        return f"space {source}: {where}: {msg}"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"space {source}: {where}: {msg}{got_text}; fix it in {source}"
