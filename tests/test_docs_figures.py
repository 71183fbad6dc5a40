"""Every figure in a documented results table comes from its result file.

A table in README.md, README_two_stage_training.md or docs/*.md that quotes measurements is
preceded by a marker naming its sources::

    <!-- figures: bench/results/demo.json bench/results/demo_seed1.json -->

Each number in the table's body (every column but the first, which names the row) must be a value
of one of those JSON files, rounded as the table writes it. A figure copied by hand and left behind
when the benchmark is rerun fails here.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

import pytest

from tests.conftest import REPO_ROOT

MARKER = re.compile(r"<!--\s*figures:\s*(.+?)\s*-->")
# "10 000" (a thin-spaced thousand) is one number; a leading minus sign belongs to it.
NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?: \d{3})+(?:\.\d+)?|(?<![\w.])[-−]?\d+(?:\.\d+)?")


def documents() -> list[str]:
    return [os.path.join(REPO_ROOT, n) for n in ("README.md", "README_two_stage_training.md")] + sorted(
        glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))


def marked_tables(path: str) -> list[tuple[int, list[str], list[str]]]:
    """(line number, source files, body rows) of every marked table in ``path``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    tables = []
    for i, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        rows = []
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith("|"):
            j += 1
        while j < len(lines) and lines[j].lstrip().startswith("|"):  # tables inside list items are indented
            rows.append(lines[j].strip())
            j += 1
        sources = []
        for pattern in match.group(1).split():
            found = sorted(glob.glob(os.path.join(REPO_ROOT, pattern)))
            assert found, f"{path}:{i + 1}: no result file matches {pattern}"
            sources += found
        tables.append((i + 1, sources, rows[2:]))  # header and separator are not figures
    return tables


def json_numbers(paths: list[str]) -> list[float]:
    out: list[float] = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out.append(float(value))
        elif isinstance(value, str):  # e.g. a config override stored as text ("128")
            try:
                walk(float(value))
            except ValueError:
                pass
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in paths:
        with open(path, encoding="utf-8") as f:
            walk(json.load(f))
    return out


def quoted(token: str) -> tuple[float, int]:
    text = token.replace(" ", "").replace("−", "-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), decimals


def backed(value: float, decimals: int, numbers: list[float]) -> bool:
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(n - value) <= tolerance for n in numbers)


def table_figures(rows: list[str]) -> list[str]:
    figures = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        for cell in cells[1:]:
            figures += NUMBER.findall(cell.replace("**", ""))
    return figures


ALL_TABLES = [(os.path.relpath(p, REPO_ROOT), line, sources, rows) for p in documents() for line, sources, rows in marked_tables(p)]


def test_the_main_result_tables_are_marked():
    marked = {(doc, os.path.relpath(s, REPO_ROOT)) for doc, _, sources, _ in ALL_TABLES for s in sources}
    for doc, source in [
        ("README.md", "bench/results/demo.json"),
        ("docs/benchmarks.md", "bench/results/real_two_stage.json"),
        ("docs/benchmarks.md", "bench/results/annotator.json"),
        ("docs/annotation.md", "bench/results/real_two_stage_random_init.json"),
        ("docs/base_model.md", "bench/results/base_model/named_myotube-base.json"),
        ("docs/predict.md", "bench/results/predict.json"),
        ("docs/model_vs_annotator.md", "bench/results/recipe/resolution_ceiling.json"),
    ]:
        assert (doc, source) in marked, f"{doc}: no table marked with {source}"


@pytest.mark.parametrize("doc, line, sources, rows", ALL_TABLES, ids=[f"{d}:{n}" for d, n, _, _ in ALL_TABLES])
def test_every_figure_of_a_marked_table_is_in_its_result_files(doc, line, sources, rows):
    numbers = json_numbers(sources)
    figures = table_figures(rows)
    assert figures, f"{doc}:{line}: the marked table has no figures"
    missing = [f for f in figures if not backed(*quoted(f), numbers)]
    assert not missing, f"{doc}:{line}: figures not in {[os.path.relpath(s, REPO_ROOT) for s in sources]}: {missing}"


def test_the_check_catches_a_stale_figure(tmp_path):
    source = tmp_path / "r.json"
    source.write_text(json.dumps({"AP": 33.0794, "runs": [{"f1": 0.7532}]}))
    numbers = json_numbers([str(source)])
    assert backed(*quoted("33.1"), numbers) and backed(*quoted("0.753"), numbers)
    assert backed(*quoted("0.75"), numbers)  # quoted more coarsely than stored
    assert not backed(*quoted("33.2"), numbers) and not backed(*quoted("0.754"), numbers)
    assert not backed(*quoted("15.1"), numbers)
    assert table_figures(["| Stage 2 (Stage 1 + 5 manual) | 8.2 / 10.6 | **0.766** | 10 000 |"]) == ["8.2", "10.6", "0.766", "10 000"]
