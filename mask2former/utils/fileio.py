"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from ..errors import InputError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO[Any]]:
    """Write to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def umask_mode(directory: bool = False) -> int:
    """The mode the user's umask gives a new file (or folder): mkstemp's temp files are private
    (0600), and renaming one keeps that mode, which would hide results from the lab's group."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None], suffix: str = "") -> None:
    """For libraries that only write to a path (cv2.imwrite, tifffile): write a temp path, rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = suffix or os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def claim_free_name(candidates: Iterable[str], taken: set[str]) -> str:
    """The first of ``candidates`` not yet in ``taken`` (compared case-folded, since macOS and
    Windows file systems ignore case), recorded in ``taken``. ``candidates`` must not run out."""
    for name in candidates:
        if name.casefold() not in taken:
            taken.add(name.casefold())
            return name
    raise ValueError("no free name among the candidates")


@contextlib.contextmanager
def staging_folder(out: str | os.PathLike) -> Iterator[str]:
    """A fresh hidden folder beside ``out`` to build a whole output in; removed again (with any
    parent folders made for it) unless :func:`replace_folder` moved it into place."""
    out = os.path.abspath(os.fspath(out))
    parent = os.path.dirname(out)
    created = []
    probe = parent
    while not os.path.isdir(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def replace_folder(stage: str, out: str | os.PathLike) -> None:
    """Rename the complete ``stage`` to ``out``; an old ``out`` is kept until this has succeeded."""
    out = os.path.abspath(os.fspath(out))
    os.chmod(stage, umask_mode(directory=True))  # mkdtemp makes it private; an output folder should not be
    if not os.path.lexists(out):
        os.rename(stage, out)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
    os.rmdir(old)  # only the unique name is needed
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        raise
    try:
        shutil.rmtree(old)
    except OSError as err:
        logger.warning(
            "the previous %s was moved to %s but could not be removed (%s)", os.path.basename(out), old, err
        )


def earlier_output_entries(out: str | os.PathLike) -> list[str]:
    """The visible entries of an existing output folder (empty when it does not exist)."""
    out = os.fspath(out)
    if not os.path.isdir(out):
        return []
    return sorted(e for e in os.listdir(out) if not e.startswith("."))


def earlier_output(
    out: str | os.PathLike, force: bool, ours: Callable[[str], bool], what: str, resumable: bool = False
) -> list[str]:
    """The rule for output folders: one that holds an earlier run's ``what`` is refused unless
    ``force``, and even then when it holds entries ``ours`` does not recognise. Returns the
    earlier entries (to be replaced). ``resumable``: the command also takes --resume."""
    out = os.fspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise InputError(out, "exists and is not a folder")
    earlier = earlier_output_entries(out)
    if earlier and not force:
        listed = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        options = "--resume to continue it, --force to replace it" if resumable else "--force to replace it"
        raise InputError(
            out, f"holds an earlier run's {what} ({listed}); use {options}, or choose another folder"
        )
    foreign = [e for e in earlier if not ours(e)]
    if foreign:
        raise InputError(
            out,
            f"holds files that are not {what} ({', '.join(repr(e) for e in foreign[:3])}); "
            "refusing to replace them",
        )
    return earlier
