"""Start N training processes with torchrun (torch.distributed.run); one process runs in place."""

from __future__ import annotations

import os
import socket
import sys

from ..utils import comm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(
    script: str,
    script_args: list[str],
    num_gpus: int,
    num_machines: int,
    machine_rank: int,
    dist_url: str,
    module: bool = False,
) -> list[str]:
    """The torchrun command line that re-runs ``script`` (a file, or with ``module`` a module run
    as ``python -m``) in every process."""
    if dist_url == "auto":
        if num_machines > 1:
            raise ValueError("--dist-url host:port of machine 0 is required with --num-machines > 1")
        addr, port = "127.0.0.1", str(_free_port())
    else:
        addr, _, port = dist_url.replace("tcp://", "").rpartition(":")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={num_gpus}",
        f"--nnodes={num_machines}",
        f"--node_rank={machine_rank}",
        f"--master_addr={addr}",
        f"--master_port={port}",
        *(["--module"] if module else []),
        script,
        *script_args,
    ]


def relaunch_with_torchrun(num_gpus: int, num_machines: int, machine_rank: int, dist_url: str) -> int | None:
    """If more than one process is asked for and we are not one of them yet, run torchrun over
    this same command line and return its exit code; otherwise return None (run in place)."""
    if num_gpus * num_machines <= 1 or comm.launched_by_torchrun():
        return None
    import subprocess

    # ``python -m mask2former.commands.train`` is re-run as that module: run as a file from inside
    # the package, the command's folder would come first on sys.path.
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = getattr(spec, "name", None)
    script = module if module and module != "__main__" else os.path.abspath(sys.argv[0])
    cmd = torchrun_command(
        script, sys.argv[1:], num_gpus, num_machines, machine_rank, dist_url, module=script == module
    )
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_gpus)))
    return subprocess.call(cmd, env=env)
