"""What hypercl says besides its results: hints and progress, and its own log.

Results (tables, summaries, files written) are printed on stdout by the
commands; everything else goes through the `hypercl` logger, on stderr, at
one of three levels that `-q`/`-v` choose between (`set_verbosity`):

- NOTE: hints and progress (folders, resume commands, per-trial lines),
  shown by default and hidden by `-q`;
- INFO: what hypercl decided on the user's behalf (the sweep picked when
  --name is left out, the store read), shown by `-v`;
- WARNING and above: always shown.

Only hypercl's own logger is configured: Ray's and MLflow's logs keep their
own settings. Used as a library (tests calling sweep.start), notes are shown
as they always were.
"""

from __future__ import annotations

import logging
import sys

NOTE = 25  # between INFO and WARNING: what a default run says, what -q silences
logging.addLevelName(NOTE, "NOTE")
log = logging.getLogger("hypercl")


class _CurrentStderr(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes (pytest and redirect_stderr replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler = _CurrentStderr()
_handler.setFormatter(logging.Formatter("%(message)s"))
log.addHandler(_handler)
log.propagate = False  # Ray or MLflow configuring the root logger must not print hypercl's lines twice
log.setLevel(NOTE)


def set_verbosity(quiet: bool, verbose: int) -> None:
    """-q: results and errors only; default: plus hints and progress; -v: plus INFO; -vv: DEBUG."""
    if quiet:
        log.setLevel(logging.WARNING)
    else:
        log.setLevel({0: NOTE, 1: logging.INFO}.get(verbose, logging.DEBUG))


def quiet() -> bool:
    """Whether hints are hidden, for output that does not go through the logger (progress bars)."""
    return not log.isEnabledFor(NOTE)


def note(text: str) -> None:
    """A hint or a progress line: on stderr unless -q."""
    log.log(NOTE, text)
