"""The root scripts as modules, for tests that call their ``main(argv)`` in process."""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import REPO_ROOT


def load_script(relative_path: str):
    path = os.path.join(REPO_ROOT, relative_path)
    name = "script_" + os.path.splitext(relative_path)[0].replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
