"""Helpers every layer may use: atomic file writes, process-group communication, how the running
command was typed, the ``--version`` option."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from .. import __version__


def _main_module() -> str | None:
    """The module ``python -m`` (or ``torchrun --module``) runs, None for a script file."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if not name or name == "__main__":
        return None
    return name[: -len(".__main__")] if name.endswith(".__main__") else name


def invoked_program() -> str:
    """How this process's command was typed, for a printed command that repeats it:
    ``python -m MODULE`` for a module, the path of a ``.py`` script as given, or an installed
    console script (``myotube-predict``): its bare name when that is what PATH finds, else its path."""
    module = _main_module()
    if module:
        return f"python -m {module}"
    program = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    if program.endswith(".py"):
        return program
    name = os.path.basename(program)
    found = shutil.which(name)
    return name if found and os.path.realpath(found) == os.path.realpath(program) else program


def program_name() -> str:
    """The command's name in ``--help`` and ``--version``: ``predict.py`` for the root script,
    ``myotube-predict`` for the console script, ``python -m mask2former.commands.predict`` for the
    module (argparse's own default would say ``predict.py`` or ``__main__.py`` there)."""
    module = _main_module()
    return f"python -m {module}" if module else os.path.basename(sys.argv[0] if sys.argv else "") or "python"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: print the command's name and the package version, then exit.

    Every command takes it (through ``cli.ArgumentParser``, or directly where a module may not
    import ``cli``), so a bug report or a methods section can name the version that ran.
    """
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit"
    )
