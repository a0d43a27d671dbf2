"""How a method made of several subsystems drives them, one task at a time.

The driver decides what runs when and what travels between subsystems; it
never knows where they run. A subsystem that can work in the background (a
Ray actor's proxy) offers `submit(method, ...)` and the driver starts every
independent call before waiting on any, so subsystems on separate GPUs learn
the same task at the same time; a local subsystem just runs the call.
"""

from __future__ import annotations

from typing import Any, Protocol

from hypercl_core.subsystem import Subsystem


class Pending(Protocol):
    def result(self) -> Any: ...


class _Done:
    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def start(subsystem: Subsystem, method: str, *args: Any, **kwargs: Any) -> Pending:
    submit = getattr(subsystem, "submit", None)
    if submit is not None:
        return submit(method, *args, **kwargs)
    return _Done(getattr(subsystem, method)(*args, **kwargs))
