"""Named moments of a sweep's life where a chaos test can kill the driver.

`HYPERCL_FAILPOINT=after_ask:2,trial_complete` makes the driver SIGKILL its
own process group (itself and the local Ray it started, as a crash or a lost
login node would) the 2nd time it asks Optuna for a trial, or the first time
it hears that a trial completed. Unset (always, outside tests), a failpoint
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "HYPERCL_FAILPOINT"
POINTS = (
    "sweep_start",      # the sweep folder and parent run exist, Ray is not started yet
    "after_ask",        # Optuna created a trial that no Tune trial owns yet
    "trial_result",     # the driver heard a trial report a finished task
    "trial_complete",   # the driver heard a trial end (with max_concurrent 1: between trials)
    "before_close",     # every trial ended, the parent run is still open
)
_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    for item in wanted.split(","):
        point, _, nth = item.strip().partition(":")
        if point == name:
            _hits[name] += 1
            if _hits[name] == int(nth or 1):
                os.killpg(os.getpgrp(), signal.SIGKILL)
