"""The building blocks of config sections, shared by the sections that plug-ins declare.

Targets (`nets/targets.py`) and methods (`methods/*.py`) declare their own
sections; `config.py` assembles them into the experiment's config. They all
derive from `Section` here, so none of them imports `config.py`.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Activation = Literal["linear", "relu", "elu", "leaky_relu", "sigmoid", "tanh"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_sizes(sizes: list[int]) -> None:
    if any(h < 1 for h in sizes):
        raise ValueError(f"layer sizes must be >= 1, got {sizes}")


class HnetConfig(Section):
    # An empty list is the paper's "no hidden layer" (linear) hypernetwork.
    hidden: list[int] = Field(default_factory=lambda: [10, 10])
    activation: Activation = "elu"
    temb_dim: int = Field(96, ge=1)
    cemb_dim: int = Field(96, ge=1)
    # None: a full hypernetwork that outputs every target weight at once.
    chunk_dim: Optional[int] = Field(42000, ge=1)

    @model_validator(mode="after")
    def _positive(self) -> "HnetConfig":
        check_sizes(self.hidden)
        return self


class ProtectedSection(Section):
    """What a method that protects a hypernetwork with the output regularizer sets."""

    beta: float = Field(0.01, ge=0)
    lookahead: bool = True
    # Regularize a random subset of at most K previous tasks per step.
    reg_subset: Optional[int] = Field(None, ge=1)
