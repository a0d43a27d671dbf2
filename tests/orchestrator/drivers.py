"""A `hypercl` command run as a user's shell runs it: its own process, its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Driver:
    """One driver session in its own process group, as a user's shell would run it."""

    def __init__(self, args: list[str], log: Path, failpoint: str | None = None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("HYPERCL_FAILPOINT", None)
        if failpoint:
            env["HYPERCL_FAILPOINT"] = failpoint
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], env=env,
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 300, kill_when=None) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return self.proc.returncode
            if kill_when is not None and kill_when():
                self.kill()
                return self.proc.wait()
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"driver still running after {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        except ProcessLookupError:
            pass

    def output(self) -> str:
        """Everything the driver printed: what assertions search (a line can fall out of the tail)."""
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        """The end of the output, short enough for a failure message."""
        return self.output()[-3000:]
