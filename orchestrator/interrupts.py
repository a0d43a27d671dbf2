"""SIGTERM (a batch scheduler's stop, `kill`) ends a command the way Ctrl-C does.

A sweep driver stopped by Ctrl-C lets Tune wind down, closes the parent run
and exits 130 with the resume command; stopped by SIGTERM it would die
mid-write (Ray's own handler even aborts the process). So SIGTERM is turned
into SIGINT, and installed again once Ray has started and put its handler in.
"""

from __future__ import annotations

import os
import signal
import threading


def _as_ctrl_c(signum, frame) -> None:
    os.kill(os.getpid(), signal.SIGINT)


def sigterm_like_ctrl_c() -> None:
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        signal.signal(signal.SIGTERM, _as_ctrl_c)
