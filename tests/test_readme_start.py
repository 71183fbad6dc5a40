"""The README's start, as a biologist meets it: what the tool is for, what it needs, three paths.

Nothing heavy runs here. README.md and the docs are read as text; every command of the three paths
is checked against the argparse definitions of the script it names, read from the script's source
with ``ast`` (nothing of the package is imported), and every relative link against the files and
headings it points to.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shlex

import pytest

from tests.helpers import REPO_ROOT, backed, json_numbers, quoted

README = os.path.join(REPO_ROOT, "README.md")
FIRST_SCREEN = 40  # lines
PATH_HEADINGS = ("## Path 1:", "## Path 2:", "## Path 3:")
# Modules whose argparse helpers the root scripts call (ArgumentParser adds --no-progress and --version).
HELPER_MODULES = {
    "mask2former.cli": "mask2former/cli.py",
    "mask2former.utils": "mask2former/utils/__init__.py",
}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
RESULT_FILE = re.compile(r"bench/results/[\w*./-]+\.json")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def documents() -> list[str]:
    return [os.path.join(REPO_ROOT, n) for n in ("README.md", "README_two_stage_training.md")] + sorted(
        glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
    )


# ----------------------------------------------------------------------------- markdown


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: formatting dropped, lower case, punctuation removed
    (word characters, spaces and hyphens kept), spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code."""
    found = []
    for n, line in prose_lines(text):
        line = re.sub(r"`[^`]*`", "", line)
        found += [(n, m.group(1)) for m in LINK.finditer(line)]
    return found


def broken_links(path: str) -> list[str]:
    """Relative links of ``path`` whose file, or whose heading in a markdown file, does not exist."""
    text = read(path)
    problems = []
    for n, target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(where):
            problems.append(f"{os.path.basename(path)}:{n}: {target}: no such file")
        elif anchor and where.endswith(".md") and anchor not in anchors(read(where)):
            problems.append(f"{os.path.basename(path)}:{n}: {target}: no heading with this anchor")
    return problems


def path_sections(text: str) -> dict[str, str]:
    """The three paths' sections of the README, each up to the next level-2 heading."""
    sections = {}
    lines = text.splitlines()
    for heading in PATH_HEADINGS:
        starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
        assert len(starts) == 1, (
            f"README.md: expected one heading starting with {heading!r}, found {len(starts)}"
        )
        end = next((j for j in range(starts[0] + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        sections[lines[starts[0]]] = "\n".join(lines[starts[0] : end])
    return sections


def code_commands(section: str) -> list[list[str]]:
    """The commands of a section's code blocks, split like a shell would (comments dropped)."""
    commands, block, fenced = [], [], False
    for line in section.splitlines():
        if line.lstrip().startswith("```"):
            if fenced:
                joined = "\n".join(block).replace("\\\n", " ")
                commands += [shlex.split(c, comments=True) for c in joined.splitlines()]
                block = []
            fenced = not fenced
        elif fenced:
            block.append(line)
    return [c for c in commands if c]


# ----------------------------------------------------------------------------- argparse from source


def _add_argument_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            names = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("-")
            ]
            if names:
                yield names, {k.arg: k.value for k in node.keywords if k.arg}


def _called_names(tree: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def helper_flags() -> dict[str, set[str]]:
    """Flags that each function or class of the helper modules adds, following calls between them."""
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for relpath in HELPER_MODULES.values():
        tree = ast.parse(read(os.path.join(REPO_ROOT, relpath)))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                direct[node.name] = {name for names, _ in _add_argument_calls(node) for name in names}
                calls[node.name] = _called_names(node)
    resolved: dict[str, set[str]] = {}

    def resolve(name: str, stack: tuple[str, ...] = ()) -> set[str]:
        if name not in resolved:
            flags = set(direct[name])
            for other in calls[name] & direct.keys():
                if other not in stack and other != name:
                    flags |= resolve(other, (*stack, name))
            resolved[name] = flags
        return resolved[name]

    return {name: resolve(name) for name in direct}


def spelled(flag: str, both: bool) -> str:
    """cli.ArgumentParser takes ``--a_b`` and ``--a-b`` alike."""
    return flag.replace("_", "-") if both else flag


def script_arguments(path: str) -> dict:
    """Option strings, required options and literal choices of a script, from its source text."""
    tree = ast.parse(read(path))
    imported = {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in HELPER_MODULES
        for a in node.names
    }
    both = "ArgumentParser" in imported
    flags, required, choices = set(), [], {}
    for names, keywords in _add_argument_calls(tree):
        flags |= {spelled(n, both) for n in names}
        if isinstance(keywords.get("required"), ast.Constant) and keywords["required"].value is True:
            required.append({spelled(n, both) for n in names})
        options = keywords.get("choices")
        if isinstance(options, (ast.Tuple, ast.List)) and all(
            isinstance(e, ast.Constant) for e in options.elts
        ):
            for n in names:
                choices[spelled(n, both)] = {str(e.value) for e in options.elts}
    helpers = helper_flags()
    for name in _called_names(tree) & imported:
        flags |= {spelled(f, both) for f in helpers.get(name, set())}
    return {"flags": flags, "required": required, "choices": choices, "both": both}


# ----------------------------------------------------------------------------- commands


def makefile() -> str:
    return read(os.path.join(REPO_ROOT, "Makefile"))


def optional_extras() -> set[str]:
    text = read(os.path.join(REPO_ROOT, "pyproject.toml"))
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, flags=re.M))


def named_models() -> set[str]:
    return set(json.loads(read(os.path.join(REPO_ROOT, "mask2former", "model_zoo", "models.json"))))


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: console script → module (``mask2former.commands.predict``)."""
    text = read(os.path.join(REPO_ROOT, "pyproject.toml"))
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0] if "[project.scripts]" in text else ""
    return {
        name: target.split(":")[0]
        for name, target in re.findall(r'^([\w-]+)\s*=\s*"([\w.:]+)"', section, flags=re.M)
    }


def command_source(script: str) -> str:
    """The file whose argparse definitions a script has: a root script that only calls a command
    of the package (``from mask2former.commands.predict import main``) has that module's."""
    tree = ast.parse(read(os.path.join(REPO_ROOT, script)))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mask2former.commands."):
            return node.module.replace(".", "/") + ".py"
    return script


def python_command_problems(args: list[str]) -> list[str]:
    if args[:1] == ["-m"]:
        module = args[1].replace(".", "/")
        candidates = [f"{module}.py", f"{module}/__main__.py"]
        script = next((c for c in candidates if os.path.isfile(os.path.join(REPO_ROOT, c))), None)
        if script is None:
            return [f"no module {args[1]} in the repository"]
        rest = args[2:]
    else:
        script, rest = args[0], args[1:]
        if not os.path.isfile(os.path.join(REPO_ROOT, script)):
            return [f"no script {script} in the repository"]
    spec = script_arguments(os.path.join(REPO_ROOT, command_source(script)))
    if not spec["flags"]:
        return [f"{script}: no argparse options found in its source"]
    problems = []
    given = []
    for i, token in enumerate(rest):
        if not token.startswith("--"):
            continue
        flag, _, inline = token.partition("=")
        flag = spelled(flag, spec["both"])
        given.append(flag)
        if flag not in spec["flags"]:
            problems.append(f"{script}: {flag} is not one of its options")
            continue
        value = inline or (rest[i + 1] if i + 1 < len(rest) else "")
        if flag in spec["choices"] and value not in spec["choices"][flag]:
            problems.append(f"{script}: {flag} {value}: not one of {sorted(spec['choices'][flag])}")
        if flag in ("--config-file", "--config-dir") and not os.path.exists(os.path.join(REPO_ROOT, value)):
            problems.append(f"{script}: {flag} {value}: no such file or folder in the repository")
        if flag == "--weights" and not re.search(r"[./]", value) and value not in named_models():
            problems.append(
                f"{script}: --weights {value}: "
                "neither a file nor a model in mask2former/model_zoo/models.json"
            )
    for options in spec["required"]:
        if not options & set(given):
            problems.append(f"{script}: the required option {sorted(options)[0]} is missing")
    return problems


def command_problems(cmd: list[str]) -> list[str]:
    """Why a command of the README could not work as written; empty when it names things that exist."""
    program, args = cmd[0], cmd[1:]
    if program == "python":
        return python_command_problems(args)
    if program in console_scripts():
        return python_command_problems(["-m", console_scripts()[program], *args])
    if program == "make":
        problems = []
        for arg in args:
            if "=" in arg:
                variable = arg.split("=", 1)[0]
                if not re.search(rf"^{re.escape(variable)}\s*[?:]?=", makefile(), flags=re.M):
                    problems.append(f"make: the Makefile has no variable {variable}")
            elif not re.search(rf"^{re.escape(arg)}\s*:", makefile(), flags=re.M):
                problems.append(f"make: the Makefile has no target {arg}")
        return problems
    if program == "pip":
        if args[:1] == ["wheel"]:
            return []
        if args[:2] != ["install", "-e"]:
            return (
                []
                if args[:1] == ["install"]
                else [f"pip {' '.join(args)}: only installs and wheels are expected"]
            )
        match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", args[2] if len(args) > 2 else "")
        if not match:
            return [f"pip install -e {args[2:]}: not this repository"]
        missing = set((match.group(1) or "").split(",")) - {""} - optional_extras()
        return [f"pip: pyproject.toml has no extra {sorted(missing)}"] if missing else []
    if program == "source":
        venv = re.search(r"^VENV\s*\?=\s*(\S+)", makefile(), flags=re.M)
        ok = venv and args == [f"{venv.group(1)}/bin/activate"]
        return [] if ok else [f"source {' '.join(args)}: not the Makefile's environment"]
    if program == "napari":
        text = read(os.path.join(REPO_ROOT, "pyproject.toml"))
        ok = '"napari.manifest"' in text and "napari" in optional_extras()
        return [] if ok else ["napari: pyproject.toml declares no napari plugin or extra"]
    return [f"{program}: not a command the README is expected to use"]


def path_commands() -> list[tuple[str, list[str]]]:
    return [
        (heading, cmd)
        for heading, section in path_sections(read(README)).items()
        for cmd in code_commands(section)
    ]


# ----------------------------------------------------------------------------- tests


def test_the_first_screen_says_what_the_tool_does_what_it_needs_and_where_to_start():
    text = read(README)
    first = "\n".join(text.splitlines()[:FIRST_SCREEN])
    # What it does, and for whom.
    assert re.search(r"\bmyotubes?\b", first) and "microscopy" in first and "measures" in first
    assert "biologist" in first
    # The hardware: CPU for using it, a CUDA GPU and its memory for the full training;
    # no MPS, no Windows make.
    for word in ("CPU", "GPU", "CUDA", "MPS", "Windows"):
        assert word in first, f"the README's first {FIRST_SCREEN} lines do not mention {word}"
    assert re.search(r"\d+ GB of memory", first), "the GPU memory the full configuration needs is not stated"
    # The two set-up commands, in a code block.
    commands = [" ".join(c) for c in code_commands(first)]
    assert "make demo" in commands and "make test" in commands
    # A link to each of the three paths.
    for heading in path_sections(text):
        target = f"](#{slug(heading.lstrip('#'))})"
        assert target in first, f"the first screen does not link {heading!r} ({target})"


def test_the_hardware_figures_come_from_the_result_files_they_cite():
    text = read(README)
    block = text.split("**What it needs**", 1)[1].split("```", 1)[0]
    sentences = [
        s
        for item in re.split(r"\n- ", block)
        for s in re.split(r"(?<=[.;])\s+(?=[A-Z])", " ".join(item.split()))
    ]
    checked = 0
    for sentence in sentences:
        cited = RESULT_FILE.findall(sentence)
        if not cited:
            continue
        files = sorted({f for c in cited for f in glob.glob(os.path.join(REPO_ROOT, c))})
        assert files, f"no result file matches {cited}"
        numbers = json_numbers(files)
        for figure in re.findall(r"(\d+(?:\.\d+)?) (?:GB|MB|s)\b", sentence):
            assert backed(*quoted(figure), numbers), f"{figure} is not in {cited}: {sentence}"
            checked += 1
    assert checked >= 3, "the hardware needs quote no measured figure next to its result file"


@pytest.mark.parametrize("doc", documents(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_every_relative_link_points_to_an_existing_file_and_heading(doc):
    assert not broken_links(doc)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text(
        "# Other\n\n## Crossing tubes: `overlap`\n\n## Notes\n\n## Notes\n", encoding="utf-8"
    )
    (tmp_path / "doc.md").write_text(
        "# Doc\n\n## A heading, with punctuation!\n\n"
        "[ok](other.md#crossing-tubes-overlap) [ok](other.md#notes-1) [ok](#a-heading-with-punctuation) "
        "[web](https://example.org/x) `[code](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](other.md#crossing-tubes) ![img](images/none.png)\n"
        "```\n[in a code block](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(str(tmp_path / "doc.md"))
    assert [p.split(": ")[1] for p in problems] == [
        "missing.md",
        "other.md#crossing-tubes",
        "images/none.png",
    ]


def test_each_path_has_commands_and_the_ones_it_promises():
    by_path = {}
    for heading, cmd in path_commands():
        by_path.setdefault(heading[: len("## Path 1:")], []).append(" ".join(cmd))
    assert set(by_path) == set(PATH_HEADINGS), "a path without a command block"
    one, two, three = (" | ".join(by_path[h]) for h in PATH_HEADINGS)
    assert (
        "python predict.py --weights myotube-base" in one
        and "python utils/batch_myotube_processing.py" in one
    )
    assert "napari" in by_path["## Path 2:"] and "--manual_dataset manual_annotations/annotations.json" in two
    assert (
        "python train_two_stage.py" in two and "python train_two_stage.py" in three and "TORCH_SPEC=" in three
    )


@pytest.mark.parametrize(
    "heading, cmd", path_commands(), ids=lambda v: v[:9] if isinstance(v, str) else " ".join(v[:2])
)
def test_every_command_of_the_three_paths_names_a_real_script_and_its_options(heading, cmd):
    assert not command_problems(cmd), f"{heading}: {' '.join(cmd)}"


def test_the_command_check_catches_wrong_scripts_options_and_values():
    ok = ["python", "predict.py", "--weights", "myotube-base", "--input", "a.tif", "--output", "out"]
    assert command_problems(ok) == []
    assert (
        command_problems(
            ["python", "predict.py", "--input", "a.tif", "--output", "out", "--tile_size", "512"]
        )
        == []
    )  # both spellings
    assert command_problems(["python", "predict.py", "--input", "a.tif"]) == [
        "predict.py: the required option --output is missing"
    ]
    assert command_problems([*ok, "--colour", "red"]) == ["predict.py: --colour is not one of its options"]
    assert command_problems([*ok[:3], "myotube-large", *ok[4:]])[0].startswith(
        "predict.py: --weights myotube-large"
    )
    assert command_problems(["python", "train_two_stage.py", "--stage", "3"])[0].startswith(
        "train_two_stage.py: --stage 3"
    )
    assert command_problems(["python", "train_two_stage.py", "--config-dir", "configs/gpu_huge"])[0].endswith(
        "no such file or folder in the repository"
    )
    assert (
        command_problems(["python", "train_two_stage.py", "--num-gpus", "2", "--no-progress", "--resume"])
        == []
    )  # helpers' flags
    assert command_problems(["python", "segment.py"]) == ["no script segment.py in the repository"]
    assert command_problems(["make", "install", "TORCH_SPEC=torch"]) == []
    assert command_problems(["make", "deploy"]) == ["make: the Makefile has no target deploy"]
    assert command_problems(["pip", "install", "-e", ".[napari]"]) == []
    assert command_problems(["pip", "install", "-e", ".[gpu]"]) == [
        "pip: pyproject.toml has no extra ['gpu']"
    ]
    assert command_problems(["conda", "activate"]) == ["conda: not a command the README is expected to use"]
    # The console scripts are checked against the command module they run.
    assert (
        command_problems(["myotube-predict", "--method", "annotator", "--input", "a.tif", "--output", "out"])
        == []
    )
    assert command_problems(["myotube-predict", "--input", "a.tif"]) == [
        "mask2former/commands/predict.py: the required option --output is missing"
    ]
    assert (
        command_problems(["myotube-train-two-stage", "--config-dir", "configs/cpu_tiny", "--num-gpus", "2"])
        == []
    )
    assert command_problems(
        ["myotube-annotate", "--input_dir", "raw", "--output_dir", "o", "--colour", "red"]
    ) == ["mask2former/commands/annotate.py: --colour is not one of its options"]


def test_every_result_file_the_docs_cite_exists():
    missing = []
    for doc in documents():
        for n, line in enumerate(read(doc).splitlines(), 1):
            for cited in RESULT_FILE.findall(line):
                if not glob.glob(os.path.join(REPO_ROOT, cited)):
                    missing.append(f"{os.path.relpath(doc, REPO_ROOT)}:{n}: {cited}")
    assert not missing
