"""User-facing errors.

A `UserError` is a mistake the user can fix (a bad config value, a missing
file). The CLI prints its message as one line and exits with status 2 instead
of showing a traceback, so every message must say what is wrong and how to fix
it.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line, exit code 2."""


class ConfigError(UserError):
    """An invalid experiment configuration."""


class DataError(UserError):
    """Missing or malformed dataset files."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's own first line, for a one-line message about it (its type when it has no text)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
