"""Shared helpers for the commands (``mask2former/commands/``, the console scripts and the root
scripts that call them): error reporting, logging set-up, the argument parser."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import config_path, find_config
from .data.catalog import DEFAULT_DATASET_ROOT
from .errors import Interrupted, MyotubeError
from .utils import add_version_argument, invoked_program, program_name


def setup_logging(level: int = logging.INFO) -> None:
    try:
        import cv2

        # OpenCV prints its own decoder warnings next to our one-line errors; ours say it all.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):
        pass
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    else:
        root.setLevel(level)


def escape_unencodable_output() -> None:
    """File names that are not valid UTF-8 reach us as surrogate escapes; print them escaped
    instead of failing with UnicodeEncodeError on a strict UTF-8 terminal."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def user_errors_exit(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn project errors (bad input, bad config) into one line on stderr and exit code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except Interrupted as err:
            print(f"stopped: {err}", file=sys.stderr)
            return err.exit_code
        except MyotubeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def add_dataset_argument(parser) -> None:
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET_ROOT,
        metavar="DIR",
        help="unified dataset folder with images/ and annotations/ (default: %(default)s)",
    )


def add_config_dir_argument(parser) -> None:
    parser.add_argument(
        "--config-dir",
        default=None,
        metavar="DIR",
        help="folder holding stage1_config.yaml and stage2_config.yaml, or a shipped one by name: "
        "cpu_tiny, the tiny CPU preset (configs/cpu_tiny in a checkout) "
        "(default: the shipped full configuration, mask2former/configs)",
    )


def config_dir(value: str | None) -> str:
    """``--config-dir`` as a folder: the shipped full configuration by default, a shipped folder
    by name (``cpu_tiny``, ``configs/cpu_tiny``) where no such folder is here."""
    return config_path() if value is None else find_config(value)


def add_launch_arguments(parser) -> None:
    """detectron2's launch options: processes per machine, machines, rank, rendezvous URL."""
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes per machine (one per GPU; CPU uses gloo)"
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines-1)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="rendezvous address host:port of machine 0 for multi-machine runs ('auto': a free local port)",
    )


class ArgumentParser(argparse.ArgumentParser):
    """argparse with both spellings of every long option (``--output_dir`` and ``--output-dir``),
    the help text's formatting kept as written, and ``--no-progress`` and ``--version`` on every
    script."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if not args:
            kwargs.setdefault("prog", program_name())
        super().__init__(*args, **kwargs)
        add_progress_argument(self)
        add_version_argument(self)

    def parse_known_args(self, args=None, namespace=None):
        # Options of argument groups too: they all end up in the parser's own tables.
        for action in self._actions:
            for name in list(action.option_strings):
                if name.startswith("--"):
                    other = "--" + (name[2:].replace("_", "-") if "_" in name else name[2:].replace("-", "_"))
                    if other not in self._option_string_actions:
                        action.option_strings.append(other)
                        self._option_string_actions[other] = action
        return super().parse_known_args(args, namespace)


class _NoProgress(argparse.Action):
    """Also switches off the progress bars of child processes (tqdm reads TQDM_DISABLE)."""

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ["TQDM_DISABLE"] = "1"
        setattr(namespace, self.dest, True)


def add_progress_argument(parser) -> None:
    parser.add_argument(
        "--no-progress",
        dest="no_progress",
        nargs=0,
        action=_NoProgress,
        default=False,
        help="no progress bars (for log files)",
    )


def add_opts_argument(parser, dest: str = "opts") -> None:
    parser.add_argument(
        "--opts",
        dest=dest,
        default=[],
        nargs="*",
        metavar="KEY VALUE",
        help="config overrides applied last, e.g. --opts SOLVER.BASE_LR 1e-4 SOLVER.MAX_ITER 100",
    )


@dataclass(frozen=True)
class BatchFlags:
    """The flags of long batches, which every batch command has, in one command's words: the flags
    and their defaults are shared, the help texts are the command's own."""

    title: str  # heading of the argument group in --help
    force: str
    resume: str
    shard: str
    merge: str
    merge_description: str  # of the parser that only merges (merge_parser)
    merge_force: str  # --force of that parser

    def add_arguments(self, parser) -> None:
        """--force or --resume (an earlier run's output is replaced or continued, never both),
        --shard K/N and --merge, in a group of their own."""
        batch = parser.add_argument_group(self.title)
        earlier = batch.add_mutually_exclusive_group()
        earlier.add_argument("--force", action="store_true", help=self.force)
        earlier.add_argument("--resume", action="store_true", help=self.resume)
        batch.add_argument("--shard", default=None, metavar="K/N", help=self.shard)
        self.add_merge_argument(batch)

    def add_merge_argument(self, parser) -> None:
        parser.add_argument("--merge", nargs="+", default=None, metavar="SHARD_DIR", help=self.merge)

    @staticmethod
    def merge_requested(argv: Sequence[str]) -> bool:
        """Whether the command line merges shards: --merge takes a parser of its own (merge_parser)."""
        return any(a == "--merge" or a.startswith("--merge=") for a in argv)

    def merge_parser(self, add_output: Callable[[argparse.ArgumentParser], None]) -> ArgumentParser:
        """``COMMAND --merge``: the shard folders, the command's output folder (``add_output``)
        and --force, nothing else."""
        parser = ArgumentParser(prog=f"{program_name()} --merge", description=self.merge_description)
        self.add_merge_argument(parser)
        add_output(parser)
        parser.add_argument("--force", action="store_true", help=self.merge_force)
        return parser

    def parse_merge(
        self, argv: Sequence[str], add_output: Callable[[argparse.ArgumentParser], None]
    ) -> argparse.Namespace | None:
        """The arguments of a command line that merges shards (logging then set up, as for a run),
        or None when it does not merge."""
        if not self.merge_requested(argv):
            return None
        args = self.merge_parser(add_output).parse_args(argv)
        setup_logging()
        return args


def batch_command_line(argv: Sequence[str] | None, module: str) -> tuple[str, list[str]]:
    """The command that continues a stopped run (as typed or, called in process with ``argv``, the
    ``module`` run with ``python -m``) and the arguments (``sys.argv``'s without ``argv``)."""
    program = invoked_program() if argv is None else f"python -m {module}"
    return program, sys.argv[1:] if argv is None else list(argv)


def launch(args, run: Callable[[], int | None]) -> int:
    """Run ``run`` in this process, or first re-run the command line under torchrun when
    ``--num-gpus``/``--num-machines`` ask for several processes (each then calls ``run``)."""
    # Imported here, not at the top: argument errors and --help come back without loading torch.
    from .engine.launch import relaunch_with_torchrun
    from .utils import comm

    code = relaunch_with_torchrun(args.num_gpus, args.num_machines, args.machine_rank, args.dist_url)
    if code is not None:
        return code
    setup_logging()
    try:
        return int(run() or 0)
    finally:
        comm.shutdown()  # leave the process group cleanly (a no-op in a single process)
