"""Every method, declared once by its own module (`hypercl_core/methods/*.py`): `register(MethodSpec(...))`.

A spec says everything the rest of hypercl needs to know about a method: its
`method:` config section (selected by `method.name`, so a key the method does
not use is an error naming the keys it does use), which other sections it
reads, its subsystems and how they make one method, the score matrices its
evaluation fills and which one judges it, how its parameters are counted, and
the rules it imposes across sections. Nothing else names methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.accounting import ParamCounts
    from hypercl_core.config import ExperimentConfig
    from hypercl_core.subsystem import Subsystem

# Top-level config sections a method may read besides seed, device, benchmark and train.
OPTIONAL_SECTIONS = ("target", "hnet", "replay")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    section: type[Section]  # the `method:` section; its `name` field is Literal[name]
    reads: frozenset[str]  # which of OPTIONAL_SECTIONS it uses
    # Subsystem name -> class(cfg, benchmark, device), main learner first; each is placed on its own.
    subsystems: Callable[["ExperimentConfig"], dict[str, Callable]]
    scores: Callable[["ExperimentConfig"], list[str]]  # the matrices its evaluation fills
    primary: Callable[["ExperimentConfig"], str]  # the matrix a run is judged by
    count_params: Callable[["ExperimentConfig"], "ParamCounts"]
    # Several subsystems -> the method as one subsystem (None: the one subsystem is the method).
    compose: Callable[[dict[str, "Subsystem"]], "Subsystem"] | None = None
    # Rules across sections; raise ValueError with a message that names the keys and the fix.
    check: Callable[["ExperimentConfig"], None] | None = None
    classifies: bool = True  # False: a generative model, the only kind that learns one class per task
    title: str = ""  # how tables name it (default: its name)
    # What the paper reports (METHODS.md section 9, Table 1): (benchmark, tasks, scenario) -> accuracy %.
    reported: Mapping[tuple[str, int, str], float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.title or self.name


def table1(permuted: tuple[float | None, ...], split: tuple[float | None, ...]) -> dict[tuple[str, int, str], float]:
    """A method's column of the paper's Table 1: PermutedMNIST-10 and SplitMNIST, CL1..CL3
    (None: not reported)."""
    cells = {("permuted_mnist", 10): permuted, ("split_mnist", 5): split}
    return {(bench, tasks, f"cl{i + 1}"): value for (bench, tasks), column in cells.items()
            for i, value in enumerate(column) if value is not None}


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} registered twice")
    if spec.section.model_fields["name"].default != spec.name:
        raise ValueError(f"method {spec.name!r}: its section's name field must default to {spec.name!r}")
    unknown = set(spec.reads) - set(OPTIONAL_SECTIONS)
    if unknown:
        raise ValueError(f"method {spec.name!r} reads unknown sections {sorted(unknown)}")
    METHODS[spec.name] = spec
    return spec


def method_spec(cfg: "ExperimentConfig") -> MethodSpec:
    return METHODS[cfg.method.name]
