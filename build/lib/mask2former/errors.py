"""Errors that reach the user as one clear line instead of a traceback."""

from __future__ import annotations

import os


class MyotubeError(Exception):
    """Base class: the message is shown to the user as is, on one line."""


class InputError(MyotubeError, ValueError):
    """A file the user gave us is missing, unreadable or inconsistent.

    ``str(err)`` is ``"<path>: <problem>"`` so the user knows which file to fix.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):
        # Rebuilt from its own arguments, so it crosses from a worker process intact.
        return type(self), (self.path, self.problem)


class ConfigError(InputError):
    """A config file or override is wrong (unknown key, bad value, missing _BASE_)."""


class DatasetError(InputError):
    """A COCO dataset failed validation."""


class ImageReadError(InputError):
    """An image file is missing, corrupt or has a layout we cannot interpret."""


class Interrupted(MyotubeError):
    """A run stopped by SIGTERM or SIGINT after saving what it needs to continue; ``exit_code`` is
    the shell's 128 + signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return type(self), (str(self), self.exit_code)


class WeightsError(InputError):
    """Model weights are missing or do not fit the configured architecture."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (for the ``error: ...`` line), cut at ``limit`` characters.
    Project errors keep their own text; others are prefixed with their type."""
    if isinstance(err, MyotubeError):
        text = " ".join(str(err).split())
    else:
        msg = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
        text = " ".join(msg.split()).strip("'\"")
    return text if len(text) <= limit else text[: limit - 3] + "..."
