"""Assemble the unified two-stage dataset from the annotator's output and the user's manual annotations.

Result (``OUT``)::

    images/                                          every image once, copied or hard-linked, never re-encoded
    annotations/algorithmic_{train,test}_annotations.json
    annotations/manual_{train,test}_annotations.json (test only when there is a test split)
    organize_report.json                             sources, options, renamed/rescaled images, warnings

Manual annotations are the precious part: inputs are only read, every instance is either written
or reported (skipped boxes, empty shapes), and ``OUT`` is assembled in a temporary folder beside
it, validated with the same checks as ``setup_two_stage.py``, and only then swapped in. A failure
at any step leaves an existing ``OUT`` as it was.
"""

from __future__ import annotations

import filecmp
import itertools
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..errors import DatasetError, ImageReadError, InputError
from ..utils.fileio import atomic_write_json, claim_free_name, replace_folder, staging_folder
from .catalog import ANNOTATION_FILES, OPTIONAL_SPLITS
from .coco import CATEGORIES, MYOTUBE, write_coco_json
from .coco_validation import Finding, segmentation_problem, validate_coco
from .importers import TEST, TRAIN, ImportedDataset, ImportedImage, ImportedInstance, load_manual_annotations
from .importers.base import polygon_extent_problem
from .importers.coco import load_coco_file
from .io import read_all_channels

logger = logging.getLogger(__name__)

IGNORE = "ignore"
ALGORITHMIC_FILES = {TRAIN: "train_annotations.json", TEST: "test_annotations.json"}
REPORT_FILE = "organize_report.json"
# Entries an existing OUT may hold for --force to replace it: protects folders that are not datasets.
_DATASET_ENTRIES = {"images", "annotations", REPORT_FILE}
# Aspect ratios that differ by more than this are a different image, not a resized one.
_ASPECT_TOLERANCE = 0.02


@dataclass
class _Entry:
    """One image of one output split."""

    image: ImportedImage
    source: str  # "algorithmic" or "manual"
    split: str
    height: int = 0  # real size of the image file
    width: int = 0
    out_name: str = ""
    annotations: list[dict] = field(default_factory=list)  # COCO annotations without ids
    annotation_size: tuple[int, int] | None = None  # set when the annotation was drawn on another size


# --------------------------------------------------------------------------- public API


def load_algorithmic_dataset(folder: str | os.PathLike) -> ImportedDataset:
    """The classical annotator's output: ``images/`` + ``annotations/{train,test}_annotations.json``."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DatasetError(folder, "annotator output folder not found")
    images_dir = os.path.join(folder, "images")
    train_file = os.path.join(folder, "annotations", ALGORITHMIC_FILES[TRAIN])
    if not os.path.isfile(train_file):
        raise DatasetError(
            train_file,
            "annotation file missing "
            "(expected the annotator's images/ and annotations/train_annotations.json)",
        )
    dataset = ImportedDataset(source=folder, format="coco")
    for split, name in ALGORITHMIC_FILES.items():
        json_file = os.path.join(folder, "annotations", name)
        if not os.path.isfile(json_file):
            dataset.warnings.append(
                f"{json_file}: missing, so there is no algorithmic test split (Stage 1 evaluation needs one)"
            )
            continue
        images, warnings = load_coco_file(json_file, split=split, search_dirs=[images_dir])
        dataset.images.extend(images)
        dataset.warnings.extend(warnings)
    return dataset


def parse_category_map(items: Sequence[str] | None) -> dict[str, str]:
    """``["Myotubes=myotube", "nucleus=ignore"]`` → ``{"myotubes": "myotube", "nucleus": "ignore"}``.

    Names are matched without regard to case or surrounding spaces.
    """
    mapping: dict[str, str] = {}
    for item in items or []:
        name, sep, target = item.rpartition("=")
        target = target.strip().lower()
        if not sep or target not in (MYOTUBE, IGNORE):
            raise InputError(None, f"--category-map {item!r}: expected NAME=myotube or NAME=ignore")
        mapping[_category_key(name)] = target
    return mapping


def organize_unified_dataset(
    algorithmic_dir: str | os.PathLike,
    manual_path: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    manual_test_fraction: float = 0.0,
    seed: int = 0,
    link: bool = False,
    force: bool = False,
    manual_format: str = "auto",
    category_map: dict[str, str] | Sequence[str] | None = None,
    manual_image_dir: str | os.PathLike | None = None,
    keep_empty_manual_images: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build ``output_dir`` from the annotator's output and (optionally) manual annotations.

    Returns a summary: output path, per-split image/instance counts, renamed and rescaled images,
    warnings. Raises an :class:`~mask2former.errors.InputError` subclass (one line naming the file)
    for bad input, in which case nothing under ``output_dir`` has changed.
    """
    started = time.time()
    out = os.path.abspath(os.fspath(output_dir))
    algorithmic_dir = os.path.abspath(os.fspath(algorithmic_dir))
    manual = os.path.abspath(os.fspath(manual_path)) if manual_path else None
    image_dir = os.path.abspath(os.fspath(manual_image_dir)) if manual_image_dir else None
    options = _checked_options(manual_test_fraction, seed, link, category_map, keep_empty_manual_images)
    _check_output_location(out, [p for p in (algorithmic_dir, manual, image_dir) if p], force)

    algorithmic, manual_data, warnings = _load_inputs(algorithmic_dir, manual, manual_format, image_dir)
    category_targets = _resolve_categories(
        [d for d in (algorithmic, manual_data) if d], options["category_map"], warnings
    )

    entries = _image_entries(algorithmic, manual_data, warnings)
    _read_sizes(entries, progress)
    dropped = _convert_annotations(entries, category_targets, warnings)
    if manual_data:
        entries = _settle_manual_entries(
            entries, manual, manual_data, keep_empty_manual_images, manual_test_fraction, seed, warnings
        )
    renamed = _assign_output_names(entries)
    splits_out, rescaled = _split_jsons(entries)
    info = _report_info(
        out,
        algorithmic_dir,
        manual,
        manual_data,
        options,
        renamed=renamed,
        rescaled=rescaled,
        dropped=dropped,
        warnings=warnings,
    )
    return _write_dataset(out, entries, splits_out, info, link=link, progress=progress, started=started)


def _checked_options(
    manual_test_fraction: float,
    seed: int,
    link: bool,
    category_map: dict[str, str] | Sequence[str] | None,
    keep_empty_manual_images: bool,
) -> dict[str, Any]:
    """The options the report records, checked, with ``category_map`` parsed into a dict."""
    if not 0.0 <= manual_test_fraction < 1.0:
        raise InputError(None, f"--manual_test_fraction must be in [0, 1), got {manual_test_fraction}")
    if not isinstance(category_map, dict):
        category_map = parse_category_map(category_map)
    return {
        "manual_test_fraction": manual_test_fraction,
        "seed": seed,
        "link": link,
        "category_map": category_map,
        "keep_empty_manual_images": keep_empty_manual_images,
    }


def _load_inputs(
    algorithmic_dir: str, manual: str | None, manual_format: str, image_dir: str | None
) -> tuple[ImportedDataset, ImportedDataset | None, list[str]]:
    """The annotator's output, the manual annotations (if any), and the warnings of reading both."""
    algorithmic = load_algorithmic_dataset(algorithmic_dir)
    manual_data = load_manual_annotations(manual, manual_format, image_dir=image_dir) if manual else None
    warnings: list[str] = list(algorithmic.warnings) + (list(manual_data.warnings) if manual_data else [])
    return algorithmic, manual_data, warnings


def _image_entries(
    algorithmic: ImportedDataset, manual_data: ImportedDataset | None, warnings: list[str]
) -> list[_Entry]:
    """One entry per input image, algorithmic first, each in its source's split (train if none)."""
    entries = [_Entry(img, "algorithmic", img.split or TRAIN) for img in algorithmic.images]
    if manual_data:
        _check_duplicates(manual_data.images)
        entries += [_Entry(img, "manual", img.split or TRAIN) for img in manual_data.images]
    else:
        warnings.append(
            "no --manual_dataset: only the algorithmic splits are written (Stage 2 needs manual annotations)"
        )
    return entries


def _settle_manual_entries(
    entries: list[_Entry],
    manual: str,
    manual_data: ImportedDataset,
    keep_empty: bool,
    test_fraction: float,
    seed: int,
    warnings: list[str],
) -> list[_Entry]:
    """The entries with empty manual images dropped (unless kept), the manual ones split into train/test."""
    manual_entries = _drop_empty([e for e in entries if e.source == "manual"], keep_empty, warnings)
    _assign_manual_splits(manual_entries, manual_data.has_test_split, test_fraction, seed, warnings)
    if not any(e.split == TRAIN for e in manual_entries):
        warnings.append(f"{manual}: no manual training image: Stage 2 needs manual_train_annotations.json")
    return [e for e in entries if e.source == "algorithmic"] + manual_entries


def _report_info(
    out: str,
    algorithmic_dir: str,
    manual: str | None,
    manual_data: ImportedDataset | None,
    options: dict[str, Any],
    *,
    renamed: dict[str, str],
    rescaled: list[dict],
    dropped: Counter,
    warnings: list[str],
) -> dict[str, Any]:
    """The report's inputs, options and changes made on the way; the splits are added once written."""
    return {
        "output": out,
        "algorithmic_dataset": algorithmic_dir,
        "manual_dataset": manual,
        "manual_format": manual_data.format if manual_data else None,
        "options": options,
        "renamed_images": renamed,
        "rescaled_images": rescaled,
        "instance_notes": dropped,
        "warnings": warnings,
    }


def _write_dataset(
    out: str,
    entries: list[_Entry],
    splits_out: dict,
    info: dict,
    *,
    link: bool,
    progress: bool | None,
    started: float,
) -> dict[str, Any]:
    """Stage, validate and swap in the dataset; returns the summary (also saved as organize_report.json)."""
    try:
        with staging_folder(out) as stage:
            linked = _place_images(entries, os.path.join(stage, "images"), link, progress)
            for (source, split), (images, annotations) in splits_out.items():
                write_coco_json(
                    os.path.join(stage, "annotations", _annotation_file(source, split)),
                    images,
                    annotations,
                    CATEGORIES,
                )
            findings = _validate(stage, out, entries)
            summary = _summary(out, info, splits_out, findings, linked, started)
            atomic_write_json(os.path.join(stage, REPORT_FILE), summary, indent=2)
            replace_folder(stage, out)
    except OSError as err:  # disk full, no permission...: the old dataset is untouched either way
        where = err.filename or out
        raise InputError(
            where, f"cannot write the dataset ({err.strerror or err}); nothing was changed"
        ) from None
    return summary


def _summary(
    out: str, info: dict, splits_out: dict, findings: list[Finding], linked: int, started: float
) -> dict[str, Any]:
    """The report: ``info``, the validation warnings added, and what each written split holds."""
    summary = {**info, "splits": {}, "images_linked": linked}
    summary["warnings"] = info["warnings"] + [str(f) for f in findings if f.level == "warning"]
    for (source, split), (images, anns) in splits_out.items():
        summary["splits"][f"myotube_{source}_{split}"] = {
            "json_file": os.path.join(out, "annotations", _annotation_file(source, split)),
            "images": len(images),
            "instances": len(anns),
        }
    summary["seconds"] = round(time.time() - started, 2)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The lines the CLI prints: counts per split, renames, warnings, next step."""
    lines = [f"Unified dataset: {summary['output']}"]
    if summary.get("manual_dataset"):
        lines.append(f"  manual annotations: {summary['manual_dataset']} ({summary['manual_format']})")
    lines.append(f"  {'split':<28}{'images':>8}{'instances':>11}")
    for name in ANNOTATION_FILES:
        split = summary["splits"].get(name)
        if split is None:
            lines.append(
                f"  {name:<28}{'-':>8}{'-':>11}  "
                f"(not written{', optional' if name in OPTIONAL_SPLITS else ''})"
            )
        else:
            lines.append(f"  {name:<28}{split['images']:>8}{split['instances']:>11}")
    if summary["renamed_images"]:
        lines.append(
            f"  {len(summary['renamed_images'])} images renamed to avoid name clashes (see {REPORT_FILE})"
        )
    if summary["rescaled_images"]:
        lines.append(
            f"  {len(summary['rescaled_images'])} images whose annotations were rescaled to the image size "
            f"(see {REPORT_FILE})"
        )
    if summary["images_linked"]:
        lines.append(f"  {summary['images_linked']} images hard-linked instead of copied")
    for warning in summary["warnings"][:30]:
        lines.append(f"  warning: {warning}")
    if len(summary["warnings"]) > 30:
        lines.append(f"  ... {len(summary['warnings']) - 30} more warnings in {REPORT_FILE}")
    lines.append("Validation: OK (same checks as setup_two_stage.py)")
    lines.append(f"Next: python setup_two_stage.py --dataset {summary['output']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- checks


def _check_output_location(out: str, inputs: list[str], force: bool) -> None:
    real_out = os.path.realpath(out)
    for path in inputs:
        if not os.path.exists(path):
            raise DatasetError(path, "not found")
        real_in = os.path.realpath(path)
        if real_in == real_out or _inside(real_in, real_out):
            raise InputError(
                out, f"the output folder contains the input {path}; choose another --output_dataset"
            )
        if os.path.isdir(real_in) and _inside(real_out, real_in):
            raise InputError(
                out, f"the output folder would be inside the input {path}; choose another --output_dataset"
            )
    if os.path.islink(out):
        raise InputError(out, "is a symbolic link; give the folder it points to")
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise InputError(out, "exists and is not a folder")
        entries = [e for e in os.listdir(out) if not e.startswith(".")]
        if entries and not force:
            raise InputError(
                out,
                "already exists; use --force to replace it "
                "(the old one is kept until the new one is complete)",
            )
        unexpected = sorted(set(entries) - _DATASET_ENTRIES)
        if unexpected:
            raise InputError(
                out,
                "does not look like a dataset folder "
                f"(holds {', '.join(repr(e) for e in unexpected[:5])}); refusing to replace it",
            )


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder and path != folder
    except ValueError:  # different drives on Windows
        return False


def _category_key(name: str) -> str:
    return name.strip().casefold()


def _resolve_categories(
    datasets: list[ImportedDataset], category_map: dict[str, str], warnings: list[str]
) -> dict[str, str]:
    """Every category name in the inputs → "myotube" or "ignore"; unknown names are an error."""
    targets: dict[str, str] = {}
    unknown: dict[str, tuple[int, str]] = {}
    used_keys = set()
    for dataset in datasets:
        for name, count in dataset.category_counts().items():
            key = _category_key(name)
            if key in category_map:
                targets[name] = category_map[key]
                used_keys.add(key)
            elif key == MYOTUBE:
                targets[name] = MYOTUBE
            else:
                n, source = unknown.get(name, (0, dataset.source))
                unknown[name] = (n + count, source)
    if unknown:
        listing = ", ".join(
            f"{name!r} ({n} instances in {src})" for name, (n, src) in sorted(unknown.items())
        )
        raise DatasetError(
            None,
            f"unknown categories {listing}: map each with --category-map NAME=myotube, "
            "or NAME=ignore to leave it out",
        )
    for key in sorted(set(category_map) - used_keys):
        warnings.append(f"--category-map {key!r} matches no category in the inputs")
    for name, target in targets.items():
        if target == IGNORE:
            count = sum(d.category_counts()[name] for d in datasets)
            warnings.append(f"{count} instances of category {name!r} left out (--category-map {name}=ignore)")
    return targets


def _check_duplicates(images: list[ImportedImage]) -> None:
    seen: dict[str, ImportedImage] = {}
    for image in images:
        first = seen.setdefault(image.source_id, image)
        if first is not image:
            raise DatasetError(
                image.annotation_file,
                f"image {image.name!r} is annotated twice (also in {first.annotation_file}); "
                "merge the annotations first",
            )


def _drop_empty(entries: list[_Entry], keep_empty: bool, warnings: list[str]) -> list[_Entry]:
    """Images without a kept instance: in annotation tools usually 'not annotated yet', not 'no myotube'."""
    if keep_empty:
        return entries
    kept = [e for e in entries if e.annotations]
    if len(kept) < len(entries):
        empty = [e.image.name for e in entries if not e.annotations]
        warnings.append(
            f"{len(empty)} manual images without any myotube left out (e.g. {empty[0]!r}); "
            "use --keep-empty-manual-images if they really show no myotube"
        )
    return kept


def _assign_manual_splits(
    entries: list[_Entry], source_has_split: bool, fraction: float, seed: int, warnings: list[str]
) -> None:
    """The source's own train/test split wins; otherwise a seeded draw of ``fraction`` of the images."""
    if source_has_split:
        if fraction > 0:
            warnings.append("the manual annotations come with a test split: --manual_test_fraction ignored")
        return
    n = len(entries)
    n_test = int(round(fraction * n))
    if fraction > 0:
        n_test = max(n_test, 1)
    n_test = min(n_test, n - 1) if n > 1 else 0
    if fraction > 0 and n_test == 0:
        warnings.append(f"only {n} manual image(s): no manual test split made")
    # Sorting first makes the draw independent of file-system listing order.
    order = sorted(range(n), key=lambda i: (entries[i].image.name, entries[i].image.annotation_file))
    chosen = {order[i] for i in np.random.default_rng(seed).permutation(n)[:n_test]}
    for i, e in enumerate(entries):
        e.split = TEST if i in chosen else TRAIN


# --------------------------------------------------------------------------- images


def _image_shape(image: ImportedImage) -> tuple[int, int]:
    if image.path is not None:
        try:
            array = read_all_channels(image.path)
        except OSError as err:  # e.g. no permission to read it
            raise ImageReadError(image.path, f"cannot read ({err.strerror or err})") from None
    else:
        array = cv2.imdecode(np.frombuffer(image.data or b"", np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DatasetError(image.annotation_file, f"embedded image {image.name!r} cannot be decoded")
    return int(array.shape[0]), int(array.shape[1])


def _read_sizes(entries: list[_Entry], progress: bool | None) -> None:
    """Decode every image once: catches corrupt files early and gives the real size."""
    unique: dict[str, ImportedImage] = {}
    for e in entries:
        unique.setdefault(e.image.source_id, e.image)
    with ThreadPoolExecutor(max_workers=4) as pool:  # decoders release the GIL
        shapes = dict(
            zip(
                unique,
                tqdm(
                    pool.map(_image_shape, unique.values()),
                    total=len(unique),
                    desc="reading images",
                    disable=_no_bar(progress),
                ),
            )
        )
    for e in entries:
        e.height, e.width = shapes[e.image.source_id]


def _assign_output_names(entries: list[_Entry]) -> dict[str, str]:
    """Flat, unique output names; clashing names get a source prefix unless the files are identical.

    Returns {original file (or annotation file for embedded images): new name} for renamed ones.
    Names are compared case-insensitively so the dataset also works on macOS/Windows disks.
    """
    identities: dict[str, list[_Entry]] = {}
    for e in entries:
        identities.setdefault(e.image.source_id, []).append(e)
    by_name: dict[str, list[str]] = {}
    for ident, group in identities.items():
        by_name.setdefault(_base_name(group[0].image).casefold(), []).append(ident)

    names: dict[str, str] = {}
    taken: set[str] = set()
    clashing: list[str] = []
    for idents in by_name.values():
        images = [identities[i][0].image for i in idents]
        if len(idents) == 1 or all(_same_content(images[0], other) for other in images[1:]):
            name = _base_name(images[0])
            taken.add(name.casefold())
            for ident in idents:
                names[ident] = name
        else:
            clashing += idents
    renamed: dict[str, str] = {}
    for ident in clashing:
        entry = identities[ident][0]
        base = _base_name(entry.image)
        stem, ext = os.path.splitext(base)
        later = (f"{entry.source}_{stem}_{k}{ext}" for k in itertools.count(2))
        candidate = claim_free_name(itertools.chain([f"{entry.source}_{base}"], later), taken)
        names[ident] = candidate
        renamed[entry.image.path or f"{entry.image.annotation_file}:{entry.image.name}"] = candidate
    for e in entries:
        e.out_name = names[e.image.source_id]
    return renamed


def _base_name(image: ImportedImage) -> str:
    return os.path.basename(image.path) if image.path else os.path.basename(image.name)


def _same_content(a: ImportedImage, b: ImportedImage) -> bool:
    if a.path is not None and b.path is not None:
        return filecmp.cmp(a.path, b.path, shallow=False)
    if a.data is not None and b.data is not None:
        return a.data == b.data
    return False


def _place_images(entries: list[_Entry], images_dir: str, link: bool, progress: bool | None) -> int:
    """Copy (or hard-link) each image once; returns how many were linked."""
    os.makedirs(images_dir, exist_ok=True)
    done: set[str] = set()
    linked = 0
    for e in tqdm(
        entries, desc="copying images" if not link else "linking images", disable=_no_bar(progress)
    ):
        if e.out_name in done:
            continue
        done.add(e.out_name)
        target = os.path.join(images_dir, e.out_name)
        if e.image.path is None:
            with open(target, "wb") as f:
                f.write(e.image.data or b"")
            continue
        if link:
            try:
                os.link(e.image.path, target)
                linked += 1
                continue
            except OSError as err:  # other file system, or links not allowed: a copy always works
                logger.debug("hard link failed for %s (%s); copying", e.image.path, err)
        shutil.copy2(e.image.path, target)
    return linked


# --------------------------------------------------------------------------- annotations


def _convert_annotations(entries: list[_Entry], targets: dict[str, str], warnings: list[str]) -> Counter:
    """Each entry's instances → COCO annotations at the real image size; returns what was dropped and why."""
    dropped: Counter = Counter()
    for e in entries:
        declared = (e.image.height or e.height, e.image.width or e.width)
        scale = _scale(e, declared)
        if scale != (1.0, 1.0):
            e.annotation_size = declared
        for inst in e.image.instances:
            if targets.get(inst.category) != MYOTUBE:
                continue
            ann = _to_annotation(inst, e.image, (e.height, e.width), scale, dropped)
            if ann is not None:
                e.annotations.append(ann)
    for reason, n in dropped.items():
        warnings.append(f"{n} {reason}")
    if any(e.annotation_size for e in entries):
        n = sum(1 for e in entries if e.annotation_size)
        warnings.append(
            f"{n} images differ in size from their annotation: annotations rescaled to the image "
            f"(listed in {REPORT_FILE})"
        )
    return dropped


def _split_jsons(
    entries: list[_Entry],
) -> tuple[dict[tuple[str, str], tuple[list[dict], list[dict]]], list[dict]]:
    """COCO images/annotations with fresh ids per (source, split): algorithmic train/test,
    manual train/test."""
    out: dict[tuple[str, str], tuple[list[dict], list[dict]]] = {}
    rescaled: list[dict] = []
    for key in (("algorithmic", TRAIN), ("algorithmic", TEST), ("manual", TRAIN), ("manual", TEST)):
        split_entries = [e for e in entries if (e.source, e.split) == key]
        if not split_entries:
            continue
        images, annotations = [], []
        for image_id, e in enumerate(split_entries, start=1):
            record = {
                "id": image_id,
                "file_name": e.out_name,
                "height": e.height,
                "width": e.width,
                "original_file_name": e.image.name,
                **e.image.scale_keys,
            }
            if e.annotation_size:
                record["annotation_size"] = list(e.annotation_size)
                rescaled.append(
                    {
                        "image": e.out_name,
                        "split": f"{key[0]}_{key[1]}",
                        "from": list(e.annotation_size),
                        "to": [e.height, e.width],
                    }
                )
            images.append(record)
            for ann in e.annotations:
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, **ann, "iscrowd": 0}
                )
        out[key] = (images, annotations)
    return out, rescaled


def _scale(entry: _Entry, declared: tuple[int, int]) -> tuple[float, float]:
    """(sy, sx) from the annotated size to the real image; a different aspect ratio is an error."""
    h, w = declared
    if (h, w) == (entry.height, entry.width):
        return 1.0, 1.0
    sy, sx = entry.height / h, entry.width / w
    if (
        abs(sy - sx) > _ASPECT_TOLERANCE * max(sy, sx)
        and max(abs(entry.height - round(h * sx)), abs(entry.width - round(w * sy))) > 1
    ):
        raise DatasetError(
            entry.image.annotation_file,
            f"image {entry.image.name!r} is {entry.width}x{entry.height} but was annotated as {w}x{h}: "
            "a different aspect ratio, so probably a different image",
        )
    return sy, sx


def _to_annotation(
    inst: ImportedInstance,
    image: ImportedImage,
    real: tuple[int, int],
    scale: tuple[float, float],
    dropped: Counter,
) -> dict | None:
    height, width = real
    segmentation: Any
    if inst.is_polygon:
        sy, sx = scale
        polygons = [
            [v * (sx if i % 2 == 0 else sy) for i, v in enumerate(p)]
            for p in inst.segmentation
            if len(p) >= 6
        ]
        if not polygons:
            dropped["instances without a polygon of 3 or more points left out"] += 1
            return None
        problem = polygon_extent_problem(polygons, height, width)
        if problem:
            raise DatasetError(image.annotation_file, f"{inst.where}: {problem}")
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        if segmentation_problem(polygons, height, width) is None:
            segmentation = polygons
        else:
            # Self-intersecting or out-of-image outlines: keep exactly the pixels COCO tools would fill.
            segmentation = _rle_json(rle)
            dropped["polygons stored as masks (self-intersecting or reaching outside the image)"] += 1
    else:
        rle = inst.segmentation
        if scale != (1.0, 1.0):
            mask = mask_utils.decode(rle)
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
            rle = mask_utils.encode(np.asfortranarray(mask))
        segmentation = _rle_json(rle)
    area = float(mask_utils.area(rle))
    if area == 0:
        dropped["instances covering no pixel left out"] += 1
        return None
    return {"segmentation": segmentation, "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": area}


def _rle_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _annotation_file(source: str, split: str) -> str:
    return ANNOTATION_FILES[f"myotube_{source}_{split}"]


# --------------------------------------------------------------------------- writing


def _validate(stage: str, out: str, entries: list[_Entry]) -> list[Finding]:
    """validate_coco on every written split (what setup_two_stage.py runs); errors abort the swap.

    Findings name the source image rather than its staged copy, and the JSON by its final path.
    """
    sources = {
        os.path.join(stage, "images", e.out_name): e.image.path or e.image.annotation_file for e in entries
    }
    findings = []
    annotations_dir = os.path.join(stage, "annotations")
    for name in sorted(os.listdir(annotations_dir)):
        # Any channel count: which channel holds myosin is INPUT.CHANNEL's business, at training.
        findings += validate_coco(
            os.path.join(annotations_dir, name), os.path.join(stage, "images"), channel=None
        )
    findings = [
        Finding(f.level, sources.get(f.file) or f.file.replace(stage, out), f.message) for f in findings
    ]
    errors = [f for f in findings if f.level == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise DatasetError(
            errors[0].file,
            f"the assembled dataset fails validation: {errors[0].message}{more}; "
            "nothing was written, the old dataset is unchanged",
        )
    return findings


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
