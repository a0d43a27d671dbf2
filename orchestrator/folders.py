"""The files of a sweep folder, named in one place for the driver that writes them and the listing that reads them.

Imports nothing heavy: `hypercl sweeps` reads folders without loading Ray.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

SPEC = "sweep.yaml"  # the request and what was resolved (orchestrator.sweep.SweepSpec)
DRIVER_LOCK = ".driver.lock"  # flock-ed by the sweep's driver while it runs; holds its pid
TUNE_DIR = "tune"  # one Tune experiment per driver session: logs and error files
TRIALS_DIR = "trials"  # the trials' checkpoints, by durable key
COMPARED = "config"  # in sweep.yaml, a compare variant's whole config (beside "preset", the name it came from)


def driver_running(folder: Path) -> bool:
    """Whether a driver holds the folder's lock now: the kernel's answer, right even where a pid was reused
    or the driver runs in another container on a shared filesystem. No lock file: no driver ever ran."""
    try:
        handle = (folder / DRIVER_LOCK).open("r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
