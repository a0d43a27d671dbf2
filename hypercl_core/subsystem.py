"""What every part of a method offers its driver, in one process or on a Ray actor.

A subsystem learns tasks by index (`learn_task(t)`), scores itself on the
tasks seen so far (`evaluate(upto)`), and round-trips its state
(`state_dict` / `load_state_dict`). The experiment runner drives these calls
in one process; the orchestrator makes the same calls on Ray actors.
"""

from __future__ import annotations

from typing import Callable, Protocol

Progress = Callable[[int], None]  # told how many steps were just done


class Subsystem(Protocol):
    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]: ...

    def evaluate(self, upto: int) -> dict[str, list[float]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
