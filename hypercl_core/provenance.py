"""Where a result came from: the code that made it, who ran it, where and how.

Saved with every result (a run's results.json, every MLflow run's tags), so a
figure in a paper can be traced to a commit, and a result made by code with
uncommitted changes says so.
"""

from __future__ import annotations

import functools
import getpass
import importlib.metadata
import shlex
import socket
import subprocess
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent  # the folder holding hypercl_core/
_command: list[str] | None = None  # the hypercl command this process runs, once the CLI has parsed it


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str | bool | None]:
    """The git commit of the checkout the code runs from and whether its tracked files differ from it.

    None for both outside a git checkout (an installed wheel): the version is then all there is.
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(_CHECKOUT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != _CHECKOUT:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status)}


def package_version() -> str:
    """The installed package's version (pyproject.toml is its one source)."""
    try:
        return importlib.metadata.version("hypercl")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path that was never `pip install`ed
        return "0+unknown"


def record_command(argv: list[str]) -> None:
    """The command this process runs (the CLI's, also when it is called in-process with its own argv)."""
    global _command
    _command = list(argv)


def command_line() -> str:
    """The command as the user typed it (program name without its folder), quoted for a shell."""
    argv = _command if _command is not None else sys.argv
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else ""


def resumed_origin(first: dict, now: dict) -> dict:
    """The first session's provenance, which a resumed result keeps, with every later session's appended and
    `code_changed` set once any of them ran other code (another commit, or uncommitted changes)."""
    later = [*first.get("resumes", []), {k: v for k, v in now.items() if k != "resumes"}]
    changed = any(s.get("git_commit") != first.get("git_commit") or s.get("git_dirty") for s in later)
    return {**first, "resumes": later, "code_changed": bool(first.get("code_changed")) or changed}


def provenance(command: str | None = None) -> dict[str, str | bool | None]:
    """Everything about the origin of a result; `command` comes from the driver where another process runs it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = None
    return {
        "hypercl_version": package_version(),
        **code_version(),
        "user": user,
        "host": socket.gethostname(),
        "command": command_line() if command is None else command,
        "python": sys.version.split()[0],
    }
