"""Helpers every layer may use: atomic file writes, process-group communication, the checkout's root,
the ``--version`` option."""

import argparse
import os

from .. import __version__

# The folder holding the package, configs/ and the root scripts (an editable install or a checkout).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: print the command's name and the package version, then exit.

    Every command takes it (through ``cli.ArgumentParser``, or directly where a module may not
    import ``cli``), so a bug report or a methods section can name the version that ran.
    """
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit"
    )
