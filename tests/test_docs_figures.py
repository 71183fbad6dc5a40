"""Every measured figure the documentation quotes comes from its result file.

README.md, README_two_stage_training.md and docs/*.md quote measurements in tables and in prose.
Each such block is preceded by a marker, on a line of its own, naming the JSON files its figures
come from (paths from the repository root, globs allowed; usually ``bench/results/``)::

    <!-- figures: bench/results/demo.json bench/results/demo_seed1.json -->

**What a marker covers.** The block right after it: the lines up to the next blank line, heading,
code fence or marker. A marker before a paragraph and the list that follows it covers both. A
marker inside a list is indented like the items' text (so the list stays one list) and covers
only the list item, or the rest of the item, that follows it; a marker between two sentences of
a paragraph covers the sentences after it.

**What is checked.**

- *A table:* each number in its body (every column but the first, which names the row) must be a
  value of one of the named files, rounded as the table writes it.
- *Prose* (a paragraph, a list, a list item): each number must be such a value too, rounded as
  written ("0.75" for 0.7532). A figure in percent may be stored as a fraction (22 % as 0.217),
  one in ms, minutes or hours as seconds (4.0 minutes as 237.7), one in MB or GB as bytes.

**What is not a figure.** Anything inside backticks (code, commands, config keys and their values,
file and run names, versions, dates); a number that is part of a word or a name (AP50, F1@0.5,
H100, SHA-256, 10th); the stage names Stage 1 and Stage 2; link targets. Every other number in a
marked block is a figure. A number the text sets rather than measures is written so that it is
not one: a count in words ("two seeds"), a setting in backticks, or listed in the marker::

    <!-- figures: bench/results/demo.json; not measured: 121 -->

(121 tubes in the held-out fields: a sum over the file, not a value of it). A difference or a
ratio worked out from the file is not a value of it either: the text quotes the two values.
Values under a ``per_field`` key are left out: the pages quote summaries, and thousands of
per-field values would back almost any three-decimal figure.

**Unmarked figures.** A measured figure in prose outside every marked block fails too, as far as it
can be told from its look: a number followed by a unit of time or memory or a percent sign, or following
a score's name (AP, F1, mean IoU). A block whose numbers only look measured (settings, hardware,
definitions, tolerances that tests check) is marked ``<!-- figures: none -->``.

A figure copied by hand and left behind when the benchmark is rerun fails here.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import NamedTuple

import pytest

from tests.helpers import NUMBER, REPO_ROOT, backed, json_numbers, quoted

MARKER = re.compile(r"\s*<!--\s*figures:\s*(.+?)\s*-->\s*$")  # a line of its own
# A figure in these units may be stored in the file as a fraction or in seconds.
UNIT = re.compile(r"\s?(%|ms\b|min\b|minutes?\b|h\b|hours?\b|CPU hours?\b|MB\b|GB\b)")
SCALE = {
    "%": 100,
    "ms": 1000,
    "min": 1 / 60,
    "minute": 1 / 60,
    "minutes": 1 / 60,
    "h": 1 / 3600,
    "hour": 1 / 3600,
    "hours": 1 / 3600,
    "CPU hour": 1 / 3600,
    "CPU hours": 1 / 3600,
    "MB": 1e-6,
    "GB": 1e-9,
}
NOT_FIGURES = [
    re.compile(r"<!--.*?-->", re.S),  # comments, markers included
    re.compile(r"(`+).+?\1", re.S),  # code
    re.compile(r"(?<=\])\([^)]*\)"),  # link targets
    re.compile(r"\bStage [12]\b"),  # the stages' names
]
# What a measured figure looks like outside a marked block: a unit after it, or a score's name before it.
UNIT_AFTER = re.compile(
    r"\s?(?:%|ms\b|s\b|s/step\b|min\b|minutes?\b|h\b|hours?\b|CPU hours?\b|MB\b|GB\b|images/s\b)"
)
SCORE_BEFORE = re.compile(r"\b(?:AP|AP50|AP75|F1|F1@0\.5|mean IoU|semantic IoU)\s$")


def documents() -> list[str]:
    return [os.path.join(REPO_ROOT, n) for n in ("README.md", "README_two_stage_training.md")] + sorted(
        glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
    )


LIST_ITEM = re.compile(r"( *)(?:[-*+]|\d+[.)])\s")


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def ends_block(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith(("#", "```")) or bool(MARKER.match(line))


def ends_item(first: str, line: str) -> bool:
    """Whether ``line`` starts a list item after the one (or the part of one) that ``first`` begins."""
    item = LIST_ITEM.match(line)
    if not item:
        return False
    return (
        len(item.group(1)) <= indent(first) if LIST_ITEM.match(first) else len(item.group(1)) < indent(first)
    )


def blocks(lines: list[str]) -> list[tuple[int, str | None, list[str]]]:
    """(first line number, the marker's text or None, lines) of every block outside code fences.

    A block runs to the next blank line, heading, code fence or marker. One that an indented
    marker (a marker inside a list) begins ends with its list item, too."""
    out = []
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
            i += 1
            continue
        if fenced or not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        match = MARKER.match(line)
        start = i + 1 if match else i
        while match and start < len(lines) and not lines[start].strip():  # a blank line may follow a marker
            start += 1
        j = start
        while j < len(lines) and not ends_block(lines[j]):
            if j > start and match and indent(line) and ends_item(lines[start], lines[j]):
                break
            j += 1
        out.append((i + 1, match.group(1) if match else None, lines[start:j]))
        i = max(j, i + 1)
    return out


class Block(NamedTuple):
    line: int  # of the marker
    kind: str  # "table", "prose" or "none"
    sources: list[str]
    body: list[str]  # a table's body rows (header and separator are not figures), or the prose's lines
    not_measured: list[str]  # numbers the marker declares given rather than measured


def parse_marker(text: str, where: str) -> tuple[list[str] | None, list[str]]:
    """The source files of ``files...; not measured: n...`` (None for ``none``) and the numbers listed."""
    files, *rest = [part.strip() for part in text.split(";")]
    not_measured = []
    for part in rest:
        assert part.startswith("not measured:"), f"{where}: unknown marker part {part!r}"
        not_measured += part.removeprefix("not measured:").split()
    if files == "none":
        return None, not_measured
    sources = []
    for pattern in files.split():
        found = sorted(glob.glob(os.path.join(REPO_ROOT, pattern)))
        assert found, f"{where}: no result file matches {pattern}"
        sources += found
    return sources, not_measured


def marked_blocks(path: str) -> list[Block]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line, marker, body in blocks(lines):
        if marker is None:
            continue
        where = f"{os.path.relpath(path, REPO_ROOT)}:{line}"
        assert body, f"{where}: the marker is followed by nothing to check"
        sources, not_measured = parse_marker(marker, where)
        if sources is None:
            out.append(Block(line, "none", [], body, not_measured))
        elif body[0].lstrip().startswith("|"):  # tables inside list items are indented
            rows = [r.strip() for r in body if r.lstrip().startswith("|")]
            out.append(Block(line, "table", sources, rows[2:], not_measured))
        else:
            out.append(Block(line, "prose", sources, body, not_measured))
    return out


def marked_tables(path: str) -> list[tuple[int, list[str], list[str]]]:
    """(line number, source files, body rows) of every marked table in ``path``."""
    return [(b.line, b.sources, b.body) for b in marked_blocks(path) if b.kind == "table"]


def figure_backed(figure: str, numbers: list[float]) -> bool:
    """Whether a figure of prose is a value of ``numbers``. A figure with a unit, as
    :func:`prose_figures` gives it ("22 %", "4.0 minutes"), may also be stored in another unit: a
    fraction (0.217), seconds (238) or bytes."""
    value, decimals = quoted(figure)
    scale = SCALE.get(figure[NUMBER.match(figure).end() :].strip(), 1)
    return backed(value, decimals, numbers) or backed(value, decimals, [scale * n for n in numbers])


def table_figures(rows: list[str]) -> list[str]:
    figures = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        for cell in cells[1:]:
            figures += NUMBER.findall(cell.replace("**", ""))
    return figures


def figure_text(lines: list[str]) -> str:
    """A prose block with everything that is not a figure blanked out (same length, same offsets)."""
    text = "\n".join(lines)
    for pattern in NOT_FIGURES:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text.replace("*", " ")


def prose_figures(lines: list[str]) -> list[str]:
    """The figures of a prose block, each with its unit where that matters ("22 %", "4.0 minutes")."""
    text = figure_text(lines)
    figures = []
    for match in NUMBER.finditer(text):
        unit = UNIT.match(text, match.end())
        figures.append(match.group(0) + (" " + unit.group(1) if unit else ""))
    return figures


def unmarked_measurements(lines: list[str]) -> list[tuple[str, str]]:
    """(figure, its context) of each number of an unmarked prose block that looks measured: a unit
    after it or a score's name before it."""
    text = figure_text(lines)
    found = []
    for match in NUMBER.finditer(text):
        if UNIT_AFTER.match(text, match.end()) or SCORE_BEFORE.search(text[: match.start()]):
            found.append(
                (match.group(0), " ".join(text[max(0, match.start() - 40) : match.end() + 12].split()))
            )
    return found


def unmarked_prose(path: str) -> list[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [
        (line, body)
        for line, pattern_list, body in blocks(lines)
        if pattern_list is None and body and not body[0].lstrip().startswith(("|", "!["))
    ]


def block_figures(block: Block) -> list[str]:
    """The figures of a marked block, the ones its marker declares not measured left out."""
    figures = table_figures(block.body) if block.kind == "table" else prose_figures(block.body)
    return [f for f in figures if NUMBER.match(f).group(0) not in block.not_measured]


def missing_figures(block: Block) -> list[str]:
    """The figures of a marked block that are no value of its result files."""
    numbers = json_numbers(block.sources)
    return [f for f in block_figures(block) if not figure_backed(f, numbers)]


ALL_BLOCKS = [(os.path.relpath(p, REPO_ROOT), b) for p in documents() for b in marked_blocks(p)]
CHECKED = [(doc, b) for doc, b in ALL_BLOCKS if b.kind != "none"]
NONE = [(doc, b) for doc, b in ALL_BLOCKS if b.kind == "none"]


def test_the_main_result_tables_are_marked():
    marked = {
        (doc, os.path.relpath(s, REPO_ROOT)) for doc, b in ALL_BLOCKS if b.kind == "table" for s in b.sources
    }
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


def test_the_main_paragraphs_are_marked():
    marked = {
        (doc, os.path.relpath(s, REPO_ROOT)) for doc, b in ALL_BLOCKS if b.kind == "prose" for s in b.sources
    }
    for doc, source in [
        ("README.md", "bench/results/demo.json"),
        ("README.md", "bench/results/real_two_stage.json"),
        ("docs/benchmarks.md", "bench/results/loader.json"),
        ("docs/predict.md", "bench/results/real_inference_variants.json"),
        ("docs/base_model.md", "bench/results/synthetic_stream.json"),
        ("docs/annotator.md", "bench/results/annotator_learned_reference.json"),
        ("docs/model_vs_annotator.md", "bench/results/recipe/posthoc_l_pool600_lr2e3_10k.json"),
    ]:
        assert (doc, source) in marked, f"{doc}: no paragraph marked with {source}"


@pytest.mark.parametrize("doc, block", CHECKED, ids=[f"{d}:{b.line}" for d, b in CHECKED])
def test_every_figure_of_a_marked_table_or_paragraph_is_in_its_result_files(doc, block):
    assert block_figures(block), f"{doc}:{block.line}: the marked {block.kind} has no figures"
    missing = missing_figures(block)
    assert not missing, (
        f"{doc}:{block.line}: figures not in "
        f"{[os.path.relpath(s, REPO_ROOT) for s in block.sources]}: {missing}"
    )


@pytest.mark.parametrize("doc, block", ALL_BLOCKS, ids=[f"{d}:{b.line}" for d, b in ALL_BLOCKS])
def test_what_a_marker_declares_not_measured_is_in_its_block(doc, block):
    figures = table_figures(block.body) if block.kind == "table" else prose_figures(block.body)
    numbers = {NUMBER.match(f).group(0) for f in figures}
    assert not set(block.not_measured) - numbers, (
        f"{doc}:{block.line}: 'not measured' lists numbers the block does not hold"
    )


@pytest.mark.parametrize("doc, block", NONE, ids=[f"{d}:{b.line}" for d, b in NONE])
def test_a_block_marked_none_would_look_measured_without_its_marker(doc, block):
    assert unmarked_measurements(block.body), (
        f"{doc}:{block.line}: 'figures: none' on a block where nothing looks measured"
    )


@pytest.mark.parametrize("doc", documents(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_no_measured_figure_is_left_unmarked(doc):
    found = [
        f"{line}: {context}"
        for line, body in unmarked_prose(doc)
        for _, context in unmarked_measurements(body)
    ]
    assert not found, (
        f"{os.path.relpath(doc, REPO_ROOT)}: measured figures outside a marked block:\n" + "\n".join(found)
    )


def test_the_check_catches_a_stale_figure(tmp_path):
    source = tmp_path / "r.json"
    source.write_text(json.dumps({"AP": 33.0794, "runs": [{"f1": 0.7532, "lr": 0.0002, "recall": 0.217}]}))
    numbers = json_numbers([str(source)])
    assert backed(*quoted("33.1"), numbers) and backed(*quoted("0.753"), numbers)
    assert backed(*quoted("0.75"), numbers)  # quoted more coarsely than stored
    assert not backed(*quoted("33.2"), numbers) and not backed(*quoted("0.754"), numbers)
    assert not backed(*quoted("15.1"), numbers)
    assert table_figures(["| Stage 2 (Stage 1 + 5 manual) | 8.2 / 10.6 | **0.766** | 10 000 |"]) == [
        "8.2",
        "10.6",
        "0.766",
        "10 000",
    ]
    assert figure_backed("2e-4", numbers) and not figure_backed("3e-4", numbers)
    assert figure_backed("22 %", numbers) and not figure_backed("22", numbers)
    assert figure_backed("2.0 minutes", [121.0]) and figure_backed("0.4 ms", [0.0004])
    assert not figure_backed("2.1 min", [121.0])


def test_the_prose_check_reads_a_paragraph_and_catches_a_wrong_figure(tmp_path):
    source = tmp_path / "r.json"
    source.write_text(
        json.dumps(
            {
                "stage2": {"AP": 25.61, "f1": 0.612},
                "annotator": {"AP": 22.93},
                "matched": 0.2167,
                "iters": 3000,
            }
        )
    )
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Results\n\n"
        f"<!-- figures: {source}; not measured: 121 -->\n"
        "After 3000 iterations Stage 2 reaches AP 25.6 and F1@0.5 0.612 against the annotator's 22.9\n"
        "(`python -m bench.demo --set seed=1`, [Stage 1](other.md#stage-1-2), two seeds); it matches\n"
        "22 % of the 121 tubes.\n\n"
        f"<!-- figures: {source} -->\n"
        "The same 3500 iterations give AP 16.6 of 121.\n\n"
        "Unmarked: Stage 1 took 4.7 minutes and reached AP 15.1; `0.5 s` in code is not a figure.\n",
        encoding="utf-8",
    )
    good, stale = marked_blocks(str(doc))
    assert good.line == 3 and good.kind == "prose" and good.sources == [str(source)] and len(good.body) == 3
    assert block_figures(good) == ["3000", "25.6", "0.612", "22.9", "22 %"] and not missing_figures(good)
    assert missing_figures(stale) == ["3500", "16.6", "121"]
    ((_, unmarked),) = unmarked_prose(str(doc))
    assert [figure for figure, _ in unmarked_measurements(unmarked)] == ["4.7", "15.1"]
