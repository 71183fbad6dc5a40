"""How a command names itself, however it was started: a root script, an installed console
script, or ``python -m mask2former.commands.NAME`` (also under torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from mask2former.engine.launch import torchrun_command
from mask2former.utils import invoked_program, program_name
from mask2former.utils.resumable import continue_command
from tests.helpers import REPO_ROOT


@pytest.fixture
def main_module(monkeypatch):
    """Pretend ``__main__`` was started as a script (spec None) or with ``python -m`` (a spec)."""

    def started(module: str | None, argv0: str) -> None:
        spec = types.SimpleNamespace(name=module) if module else None
        monkeypatch.setattr(sys.modules["__main__"], "__spec__", spec, raising=False)
        monkeypatch.setattr(sys, "argv", [argv0, "--input", "a b.tif"])

    return started


def test_a_root_script_a_module_and_a_console_script_each_name_themselves(main_module, monkeypatch, tmp_path):
    main_module(None, "/repo/predict.py")
    assert (invoked_program(), program_name()) == ("/repo/predict.py", "predict.py")
    main_module("mask2former.commands.predict", "/site/mask2former/commands/predict.py")
    assert invoked_program() == program_name() == "python -m mask2former.commands.predict"
    # A console script: its bare name where PATH finds it, else its path.
    script = tmp_path / "bin" / "myotube-predict"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    main_module(None, str(script))
    monkeypatch.setenv("PATH", str(script.parent))
    assert (invoked_program(), program_name()) == ("myotube-predict", "myotube-predict")
    monkeypatch.setenv("PATH", "")
    assert invoked_program() == str(script)


@pytest.mark.parametrize(
    "program, expected",
    [
        ("predict.py", "python predict.py --resume --input 'a b.tif'"),
        ("myotube-predict", "myotube-predict --resume --input 'a b.tif'"),
        ("/opt/my env/bin/myotube-predict", "'/opt/my env/bin/myotube-predict' --resume --input 'a b.tif'"),
        (
            "python -m mask2former.commands.predict",
            "python -m mask2former.commands.predict --resume --input 'a b.tif'",
        ),
    ],
)
def test_the_continue_command_repeats_the_program_as_it_was_typed(program, expected):
    assert continue_command(program, ["--input", "a b.tif", "--force"]) == expected


def test_torchrun_reruns_a_module_as_a_module():
    cmd = torchrun_command(
        "mask2former.commands.train", ["--config-file", "x.yaml"], 2, 1, 0, "127.0.0.1:29500", module=True
    )
    assert cmd[-4:] == ["--module", "mask2former.commands.train", "--config-file", "x.yaml"]
    cmd = torchrun_command("/repo/train_net.py", ["--resume"], 2, 1, 0, "127.0.0.1:29500")
    assert "--module" not in cmd and cmd[-2:] == ["/repo/train_net.py", "--resume"]


def test_a_command_module_runs_anywhere_and_says_so_in_its_help(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-m", "mask2former.commands.predict", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m mask2former.commands.predict ")
    assert "--method {model,annotator}" in out.stdout and "Default: the annotator" in " ".join(
        out.stdout.split()
    )
