"""Resumable, shardable batches over many images: what predict.py and the annotator share.

A batch of thousands of fields runs for hours on a cluster, where time limits, preemption and
Ctrl-C stop it, and where it is split over array jobs. Each output folder therefore carries what
it takes to continue and to check it:

- ``OUT/.lock``: one writer per folder. It holds the writer's pid and host and is created with
  O_CREAT | O_EXCL, so two runs never both get it. A lock whose process is gone (same host) is
  reported; ``--resume`` and ``--force`` take it over.
- ``OUT/batch.json``: what decides the outputs (the settings, a fingerprint of the model), the
  whole batch's inputs in order and this folder's shard. ``--resume`` refuses to continue a folder
  whose settings, model or inputs differ, and says which.
- ``OUT/manifests/NAME.json``: written last for each image, after all its files, with each
  file's SHA-256 (or the image's error). An image is done only when its manifest exists, belongs
  to this run and this input, and every file still matches: a half-written image is done again.
- shards ``K/N``: every N-th input of the whole, ordered list from the K-th, so the same N always
  splits the same way and positions (image ids) stay those of the whole batch. Merging checks that
  the shards cover every input exactly once and are complete, then links their files into one
  folder that looks like one run's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import InputError, Interrupted
from .fileio import atomic_write_json, earlier_output, earlier_output_entries

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
STATE_FILE = "batch.json"
MANIFEST_DIR = "manifests"
STATE_VERSION = 1
# A lock file that cannot be read may belong to a run that has created it but not yet written
# into it; only an older one is taken for a leftover.
_UNREADABLE_LOCK_GRACE_S = 10.0


# --------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based): the positions index-1, index-1+count, ..."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"K/N"`` (``None``: the whole batch)."""
        if text is None:
            return cls()
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise InputError(
                None, f"--shard must be K/N, e.g. 3/8 for the third of eight shards, got {text!r}"
            )
        k, n = int(match[1]), int(match[2])
        if n < 1 or not 1 <= k <= n:
            raise InputError(None, f"--shard K/N needs 1 <= K <= N, got {text}")
        return cls(k, n)

    @property
    def whole(self) -> bool:
        return self.count == 1

    def positions(self, total: int) -> range:
        """Positions in the whole batch's input list (0-based) that this shard does."""
        return range(self.index - 1, total, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# --------------------------------------------------------------------------- the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass
class LockHolder:
    pid: int
    host: str
    started: str

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the holder may still run: on another host that cannot be told, so yes."""
        return not self.here or (self.pid != os.getpid() and _alive(self.pid))


def _holder(raw: str | None) -> LockHolder | None:
    try:
        data = json.loads(raw or "")
        return LockHolder(int(data["pid"]), str(data["host"]), str(data.get("started", "?")))
    except (ValueError, KeyError, TypeError):
        return None


class OutputLock:
    """``FOLDER/.lock`` while this process writes into FOLDER (a context manager releases it)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._mine: str | None = None

    def _read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    def holder(self) -> LockHolder | None:
        """Who holds the lock; ``None`` when there is no lock or it cannot be read."""
        return _holder(self._read())

    def acquire(self, take_over: bool = False) -> None:
        """Create the lock, or refuse in one line saying who holds it and what to do. ``take_over``:
        a lock whose process is gone (or an unreadable leftover) is replaced, with a warning."""
        text = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        )
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._refuse_or_clear(take_over)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self._mine = text
            return
        raise InputError(
            self.folder,
            "other runs are taking the lock of this folder at the same moment; only one run may write here",
        )

    def _refuse_or_clear(self, take_over: bool) -> None:
        """Refuse, naming the holder; or, for a leftover lock and ``take_over``, remove it."""
        raw = self._read()
        if raw is None:  # gone in the meantime: try again
            return
        holder = _holder(raw)
        if holder is None:
            with contextlib.suppress(OSError):
                if time.time() - os.path.getmtime(self.path) < _UNREADABLE_LOCK_GRACE_S:
                    raise InputError(
                        self.folder,
                        "another run is starting to write here (its lock is new); "
                        "only one run may write here",
                    )
            left_by = "names no process (left half-written)"
        elif holder.alive():
            if holder.here:
                raise InputError(
                    self.folder,
                    f"another run is writing here: process {holder.pid} on {holder.host} (since "
                    f"{holder.started}); wait for it to end, or stop it (kill {holder.pid})",
                )
            raise InputError(
                self.folder,
                f"process {holder.pid} on {holder.host} holds {self.path} (since {holder.started}); "
                f"from {socket.gethostname()} it cannot be told whether that run still runs: if it does not, "
                f"remove {self.path}",
            )
        else:
            left_by = f"was left by process {holder.pid} on {holder.host}, which is no longer running"
        if not take_over:
            raise InputError(
                self.path,
                f"{left_by}: that run was killed; continue it with --resume (which takes the lock over), "
                f"or remove {self.path}",
            )
        # Only the lock judged stale goes: one another run has just written in its place is judged again.
        if self._read() == raw:
            logger.warning("%s %s: taking it over", self.path, left_by)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        if self._mine is None:
            return
        if self._read() == self._mine:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self._mine = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------- stopping


class StopRequests:
    """SIGTERM (a scheduler's time limit, preemption, scancel) and SIGINT (Ctrl-C) ask a batch to
    stop after the image in hand, so that every image is either complete or redone by --resume;
    a second signal stops at once. Handlers are restored on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        # Nothing is written here: the main thread may be in the middle of writing to the same stream.
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum


def ignore_stop_signals() -> None:
    """For worker processes: a Ctrl-C reaches the whole process group and a scheduler signals every
    process, but only the main process decides when the batch stops (it then ends the workers)."""
    for sig in StopRequests.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def continue_command(program: str, argv: Sequence[str]) -> str:
    """The command line of ``program`` with ``argv``, ``--resume`` added and ``--force`` left out.
    ``program`` as :func:`mask2former.utils.invoked_program` gives it: a ``.py`` script (run with
    ``python``), ``python -m MODULE``, or an installed console script."""
    args = [a for a in argv if a != "--force"]
    if "--resume" not in args:
        args.insert(0, "--resume")
    if program.endswith(".py"):
        head = ["python", program]
    elif program.startswith("python -m "):
        head = program.split()
    else:
        head = [program]
    return shlex.join([*head, *args])


def stopped(signum: int, done: int, total: int, folder: str, command: str | None) -> Interrupted:
    """The one-line report of a batch stopped by ``signum``; exit code 128 + signum."""
    how = f"; continue with: {command}" if command else "; continue it with --resume"
    return Interrupted(
        f"{signal.Signals(signum).name} received: {done} of {total} images done in {folder}{how}",
        128 + signum,
    )


# --------------------------------------------------------------------------- run state


def plain(obj):
    """``obj`` as JSON reads it back (numpy scalars become numbers, tuples lists), so that what a
    run keeps in memory is what a later run reads from disk, down to the last digit."""

    def convert(value):
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.loads(json.dumps(obj, default=convert))


def flatten(node: Mapping, prefix: str = "") -> dict:
    """``{"A": {"B": 1}}`` → ``{"A.B": 1}`` (config nodes and nested dataclass dicts)."""
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def make_state(kind: str, settings: Mapping, identity: Mapping, inputs: Sequence[str], shard: Shard) -> dict:
    """What batch.json records. ``settings``: every value that decides the outputs besides the
    model; ``identity``: the model's fingerprint (file and SHA-256); ``inputs``: the whole batch."""
    return plain(
        {
            "version": STATE_VERSION,
            "kind": kind,
            "settings": dict(settings),
            "identity": dict(identity),
            "inputs": list(inputs),
            "shard": str(shard),
        }
    )


def _identity_key(value):
    """A model with a checksum is compared by it alone: the same file under another path is the same model."""
    return value["sha256"] if isinstance(value, Mapping) and value.get("sha256") else value


def run_id(state: Mapping) -> str:
    """The id each manifest carries: settings and model, not the inputs or the shard (shards of one
    batch share it)."""
    identity = {k: _identity_key(v) for k, v in state["identity"].items()}
    key = json.dumps(
        {"kind": state["kind"], "settings": state["settings"], "identity": identity}, sort_keys=True
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def read_state(folder: str) -> dict | None:
    path = os.path.join(folder, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("unknown layout")
        return state
    except (OSError, ValueError) as err:
        raise InputError(
            path, f"cannot read this batch record ({err}); use --force to start the folder afresh"
        ) from None


def write_state(folder: str, state: Mapping) -> None:
    atomic_write_json(os.path.join(folder, STATE_FILE), state, indent=1)


def _value(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def differences(earlier: Mapping, now: Mapping, shards: bool = True) -> list[str]:
    """What differs between two batch records, each as 'what: here X, there Y'."""
    out = []
    if earlier.get("kind") != now.get("kind"):
        return [f"it was written by {earlier.get('kind')!r}, not {now.get('kind')!r}"]
    if _method(earlier) != _method(now):  # every setting differs then; the method says it all
        return [f"the method is {_method(now)} here, {_method(earlier)} in the earlier run"]
    for key in sorted(set(earlier["identity"]) | set(now["identity"])):
        a, b = earlier["identity"].get(key), now["identity"].get(key)
        if _identity_key(a) == _identity_key(b):
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping) and not a.get("sha256") and not b.get("sha256"):
            # A method known by its parameters (the classical annotator): name the ones that differ.
            changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            listed = ", ".join(
                f"{k} is {_value(b.get(k))} here, {_value(a.get(k))} in the earlier run" for k in changed[:3]
            )
            out.append(f"{key}: {listed}" + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""))
        else:
            out.append(f"{key}: {describe_identity(b)} here, {describe_identity(a)} in the earlier run")
    changed = [
        k
        for k in sorted(set(earlier["settings"]) | set(now["settings"]))
        if earlier["settings"].get(k) != now["settings"].get(k)
    ]
    if changed:
        listed = ", ".join(
            f"{k} is {_value(now['settings'].get(k))} here, "
            f"{_value(earlier['settings'].get(k))} in the earlier run"
            for k in changed[:3]
        )
        out.append(
            f"settings differ: {listed}" + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else "")
        )
    if earlier["inputs"] != now["inputs"]:
        old, new = set(earlier["inputs"]), set(now["inputs"])
        added, gone = (
            [p for p in now["inputs"] if p not in old],
            [p for p in earlier["inputs"] if p not in new],
        )
        parts = (
            [f"{len(added)} new ({os.path.basename(added[0])}{', ...' if len(added) > 1 else ''})"]
            if added
            else []
        )
        parts += (
            [f"{len(gone)} gone ({os.path.basename(gone[0])}{', ...' if len(gone) > 1 else ''})"]
            if gone
            else []
        )
        out.append("inputs differ: " + (", ".join(parts) if parts else "the same files in another order"))
    if shards and earlier["shard"] != now["shard"]:
        out.append(f"--shard is {now['shard']} here, {earlier['shard']} in the earlier run")
    return out


def _method(state: Mapping) -> str | None:
    """What segmented: a record names its method (the classical annotator's), else one with
    weights is a model's."""
    identity = state["identity"]
    return identity.get("method") or ("a model" if "weights" in identity else None)


def describe_identity(value) -> str:
    if not isinstance(value, Mapping):
        return _value(value)
    name, digest = value.get("name", "?"), value.get("sha256")
    return f"{name} (sha256 {digest[:12]})" if digest else str(name)


# --------------------------------------------------------------------------- opening a folder


@dataclass
class OpenedOutput:
    """A folder this process now writes: its lock, the earlier run's record when resuming, and
    (with --force) the earlier run's entries, to be removed before writing."""

    folder: str
    lock: OutputLock
    resumed: dict | None = None
    earlier: list[str] = field(default_factory=list)

    def __enter__(self) -> OpenedOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def remove_earlier(self) -> None:
        for name in self.earlier:
            path = os.path.join(self.folder, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        if self.earlier:
            logger.info(
                "--force: removed %d entries of an earlier run from %s", len(self.earlier), self.folder
            )
        self.earlier = []


def open_output(
    folder: str, state: Mapping | None, *, resume: bool, force: bool, ours: Callable[[str], bool], what: str
) -> OpenedOutput:
    """Create ``folder``, take its lock and apply the rules for what it already holds: an earlier
    run's output is refused unless ``force`` (its entries are then returned for removal) or
    ``resume`` (then its batch.json must match ``state``; the record is returned)."""
    if resume and force:
        raise InputError(None, "--resume continues an earlier run and --force replaces it: give one")
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise InputError(folder, "exists and is not a folder")
    lock = OutputLock(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        lock.acquire(take_over=resume or force)
    except OSError as err:
        raise InputError(folder, f"cannot write the results here ({err.strerror or err})") from None
    try:
        if not resume:
            return OpenedOutput(folder, lock, None, earlier_output(folder, force, ours, what, resumable=True))
        earlier = read_state(folder)
        if earlier is None:
            if earlier_output_entries(folder):
                raise InputError(
                    folder,
                    f"--resume: holds {what} without a {STATE_FILE} (not written by a resumable run); "
                    "use --force to replace them, or choose another folder",
                )
            logger.info("--resume: nothing to resume in %s; starting from the beginning", folder)
            return OpenedOutput(folder, lock)
        if state is not None:
            diffs = differences(earlier, state)
            if diffs:
                raise InputError(
                    folder,
                    f"cannot --resume: {'; '.join(diffs)}; use --force to start afresh, "
                    "or choose another folder",
                )
        return OpenedOutput(folder, lock, earlier)
    except BaseException:
        lock.release()
        raise


# --------------------------------------------------------------------------- manifests


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(folder: str, name: str) -> str:
    return os.path.join(folder, MANIFEST_DIR, name + ".json")


def write_manifest(folder: str, name: str, record: Mapping, files: Iterable[str] = ()) -> dict:
    """Seal one image: ``record`` plus the SHA-256 of each of ``files`` (relative to ``folder``),
    written atomically after them. Returns the manifest as a later run will read it."""
    manifest = plain({**record, "files": {rel: file_sha256(os.path.join(folder, rel)) for rel in files}})
    atomic_write_json(manifest_path(folder, name), manifest)
    return manifest


def read_manifest(folder: str, name: str) -> dict | None:
    try:
        with open(manifest_path(folder, name), encoding="utf-8") as f:
            manifest = json.load(f)
        return manifest if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def sealed(folder: str, name: str, source: str, run: str, failed_ok: bool = False) -> dict | None:
    """The manifest of image ``name`` when its outputs are complete: written by run ``run`` for the
    input ``source``, and every listed file with its recorded SHA-256. A failed image counts only
    when ``failed_ok`` (a merge takes the failure as the result; a resume tries it again)."""
    manifest = read_manifest(folder, name)
    if manifest is None or manifest.get("run") != run or manifest.get("source") != source:
        return None
    if manifest.get("error") is not None and not failed_ok:
        return None
    for rel, digest in manifest.get("files", {}).items():
        try:
            if file_sha256(os.path.join(folder, rel)) != digest:
                return None
        except OSError:
            return None
    return manifest


def sealed_positions(
    folder: str,
    positions: Iterable[int],
    names: Sequence[str],
    inputs: Sequence[str],
    run: str,
    failed_ok: bool = False,
) -> dict[int, dict]:
    """:func:`sealed` for many positions; the checksums are computed in threads (hashing releases
    the GIL and the files are many)."""
    positions = list(positions)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        found = pool.map(lambda p: sealed(folder, names[p], inputs[p], run, failed_ok), positions)
        return {p: m for p, m in zip(positions, found) if m is not None}


# --------------------------------------------------------------------------- merging shards


@dataclass
class CheckedShards:
    """The shards of one batch, checked: together they are a whole run."""

    state: dict  # the batch's record, as of one whole run
    names: list[str]  # output name of each position
    folders: dict[int, str]  # position → the shard folder holding its files
    manifests: dict[int, dict]  # position → its manifest


def check_shards(folders: Sequence[str], out: str, names_of: Callable[[dict], list[str]]) -> CheckedShards:
    """Check that ``folders`` are the complete shards of one batch (same settings, model and
    inputs), each input in exactly one; refuse in one line naming the overlap, the missing shard or
    the incomplete one. ``names_of(state)``: each input's output name. Nothing is written."""
    if not folders:
        raise InputError(None, "--merge needs the shard folders")
    shards = _read_shards(folders, out)
    _refuse_other_batches(shards)
    first = shards[0][1]
    inputs = first["inputs"]
    _refuse_overlaps_and_gaps(shards, inputs)
    names = names_of(first)
    run = run_id(first)
    checked = CheckedShards({**first, "shard": str(Shard())}, names, {}, {})
    for folder, _, shard in shards:
        found = _complete_shard(folder, shard, names, inputs, run)
        checked.manifests.update(found)
        checked.folders.update(dict.fromkeys(found, folder))
    return checked


def _read_shards(folders: Sequence[str], out: str) -> list[tuple[str, dict, Shard]]:
    """(folder, its batch.json, its shard) of each folder, in the order given; refuses the merged
    output among them, a missing or repeated folder, and what _shard_state refuses."""
    shards: list[tuple[str, dict, Shard]] = []
    for folder in folders:
        if os.path.realpath(folder) == os.path.realpath(out):
            raise InputError(
                out, "the merged output cannot be one of the shard folders; choose another folder"
            )
        if not os.path.isdir(folder):
            raise InputError(folder, "shard folder not found")
        if any(os.path.realpath(folder) == os.path.realpath(f) for f, _, _ in shards):
            raise InputError(folder, "given twice to --merge")
        state = _shard_state(folder)
        shards.append((folder, state, Shard.parse(state["shard"])))
    return shards


def _shard_state(folder: str) -> dict:
    """The batch.json of a shard folder; refused where there is none, or while a run still writes
    the folder (its shard would be merged half done)."""
    state = read_state(folder)
    if state is None:
        raise InputError(
            folder, f"not a shard folder: it has no {STATE_FILE} (written by a run with --shard K/N)"
        )
    holder = OutputLock(folder).holder()
    if holder is not None and holder.alive():
        raise InputError(
            folder,
            f"a run is still writing this shard (process {holder.pid} on {holder.host}); "
            "merge when it is done",
        )
    return state


def _refuse_other_batches(shards: list[tuple[str, dict, Shard]]) -> None:
    """Every shard must have the first one's settings, model and inputs (its shard aside)."""
    first_folder, first, _ = shards[0]
    for folder, state, _ in shards[1:]:
        diffs = differences(first, state, shards=False)
        if diffs:
            raise InputError(
                folder,
                f"not a shard of the same batch as {first_folder}: "
                + "; ".join(d.replace("in the earlier run", f"in {first_folder}") for d in diffs),
            )


def _refuse_overlaps_and_gaps(shards: list[tuple[str, dict, Shard]], inputs: Sequence[str]) -> None:
    """Each of the batch's ``inputs`` must be in exactly one of the shards."""
    owner: dict[int, tuple[str, Shard]] = {}
    for folder, _, shard in shards:
        for p in shard.positions(len(inputs)):
            if p in owner:
                other, other_shard = owner[p]
                raise InputError(
                    None,
                    f"shards overlap: {os.path.basename(inputs[p])} is in {other} (shard {other_shard}) "
                    f"and in {folder} (shard {shard})",
                )
            owner[p] = (folder, shard)
    missing = [p for p in range(len(inputs)) if p not in owner]
    if missing:
        raise _missing_inputs(missing, shards, inputs)


def _missing_inputs(
    missing: list[int], shards: list[tuple[str, dict, Shard]], inputs: Sequence[str]
) -> InputError:
    """The refusal of inputs in no shard: the missing shards by number when every shard given
    splits the batch the same way (K/N with one N), else the first inputs left out."""
    counts = {s.count for _, _, s in shards}
    if len(counts) == 1:
        n = counts.pop()
        absent = ", ".join(f"{k}/{n}" for k in sorted({p % n + 1 for p in missing}))
        return InputError(
            None, f"missing shards: {absent} (no folder given for them; every shard of {n} is needed)"
        )
    listed = ", ".join(os.path.basename(inputs[p]) for p in missing[:3])
    return InputError(
        None, f"{len(missing)} inputs are in no shard ({listed}{', ...' if len(missing) > 3 else ''})"
    )


def _complete_shard(
    folder: str, shard: Shard, names: Sequence[str], inputs: Sequence[str], run: str
) -> dict[int, dict]:
    """The manifest of each of the shard's images, position → manifest (a failed image's too: the
    merge takes the failure as its result); refused when an image is not complete."""
    positions = shard.positions(len(inputs))
    found = sealed_positions(folder, positions, names, inputs, run, failed_ok=True)
    if len(found) < len(positions):
        first_missing = next(names[p] for p in positions if p not in found)
        raise InputError(
            folder,
            f"shard {shard} is incomplete: {len(found)} of {len(positions)} images done ({first_missing} "
            "is not); continue it with --resume, then merge",
        )
    return found


def link_shards(checked: CheckedShards, out: str) -> None:
    """Link (or, across file systems, copy) every image's files and manifest into ``out`` and write
    the whole run's batch.json there: ``out`` is then what one run would have left."""
    for p, manifest in checked.manifests.items():
        for rel in [*manifest["files"], os.path.join(MANIFEST_DIR, checked.names[p] + ".json")]:
            link_or_copy(os.path.join(checked.folders[p], rel), os.path.join(out, rel))
    write_state(out, checked.state)


def link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows one (no second copy of thousands of images)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copy2(src, dst)
