"""Dataset checks shared by the pre-flight and the training-time image guard.

* `coco_annotation_problems`: boxes of non-positive size, category ids that are not among the
  file's categories, annotations of images the file does not list.
* `image_problem` / `unreadable_images`: a cheap test of an image file (its first and last bytes:
  a JPEG must end with its end-of-image marker, a PNG with its IEND chunk; other formats must
  open), confirmed by a full decode only for the files the byte test flags.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

_LISTED = 5
# COCO 2017's train file holds 2 boxes of zero height among 860,001 annotations (mmdet drops
# such boxes); a share this small is a warning, anything more an error.
BAD_BOX_TOLERANCE = 1e-4
_TAIL = 1024


def _ids(anns: list[dict]) -> str:
    shown = ", ".join(str(a.get("id", "?")) for a in anns[:_LISTED])
    return shown + (f" ... ({len(anns) - _LISTED} more)" if len(anns) > _LISTED else "")


def _box_ok(box: Any) -> bool:
    return (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0)


def coco_annotation_problems(data: dict, path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the annotations of a loaded COCO instances file."""
    images = {image.get("id") for image in data["images"]}
    categories = {category.get("id") for category in data["categories"]}
    annotations = data["annotations"]
    bad_box = [a for a in annotations if not _box_ok(a.get("bbox"))]
    bad_category = [a for a in annotations if a.get("category_id") not in categories]
    bad_image = [a for a in annotations if a.get("image_id") not in images]
    errors, warnings = [], []
    if bad_category:
        found = sorted({str(a.get("category_id")) for a in bad_category})
        errors.append(
            f"{len(bad_category)} of {len(annotations)} annotations in {path} have a category_id that is not among "
            f"its {len(categories)} categories (category ids {', '.join(found[:_LISTED])}; annotation ids "
            f"{_ids(bad_category)}). Fix: add those categories to its 'categories' list, or correct or remove "
            f"the annotations")
    if bad_image:
        found = sorted({str(a.get("image_id")) for a in bad_image})
        errors.append(
            f"{len(bad_image)} of {len(annotations)} annotations in {path} belong to an image_id that its 'images' "
            f"list does not have (image ids {', '.join(found[:_LISTED])}; annotation ids {_ids(bad_image)}). Fix: "
            f"add those images to 'images' or remove the annotations (the file may be a mix of two exports)")
    if bad_box:
        example = bad_box[0].get("bbox")
        text = (f"{len(bad_box)} of {len(annotations)} annotations in {path} have no box of positive width and "
                f"height (annotation ids {_ids(bad_box)}; e.g. bbox {example}); mmdet drops such boxes, so those "
                f"objects are never learned")
        if len(bad_box) > BAD_BOX_TOLERANCE * len(annotations):
            errors.append(text + ". Fix: write the boxes as [x, y, width, height] with width and height > 0, "
                                 "or remove those annotations")
        else:
            warnings.append(text + f" (at most {BAD_BOX_TOLERANCE:.2%} of a file is tolerated, as in COCO 2017)")
    return errors, warnings


def _bytes_problem(path: str) -> str | None:
    """The cheap test: None, or what is wrong judging by the first and last bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(16)
            file.seek(max(size - _TAIL, 0))
            tail = file.read()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if size == 0:
        return "is empty"
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "is a truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "is a truncated PNG (no IEND chunk)"
    return "?"  # another format: let the decoder judge


def image_problem(path: str | Path) -> str | None:
    """None if the image is readable; else a short reason ("is a truncated JPEG ...")."""
    path = str(path)
    problem = _bytes_problem(path)
    if problem is None or problem.startswith(("cannot be read", "is empty")):
        return problem
    from PIL import Image

    try:  # a full decode settles it (a JPEG may carry data after its end marker)
        with Image.open(path) as image:
            image.load()
        return None
    except Exception as error:  # PIL raises several types for broken or foreign files
        if problem == "?":
            return f"is not an image PIL can read ({type(error).__name__}: {error})"
        return f"{problem}: {type(error).__name__}: {error}"


def unreadable_images(paths: Iterable[Path], budget_s: float = 60.0, threads: int = 16
                      ) -> tuple[list[tuple[Path, str]], int, int]:
    """([(path, reason)], checked, total) for the files, in order, for at most ``budget_s`` seconds
    (I/O bound: a thread pool hides the latency of network file systems)."""
    paths = list(paths)
    bad: list[tuple[Path, str]] = []
    deadline = time.monotonic() + budget_s
    checked = 0
    chunk = threads * 64
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), chunk):
            if time.monotonic() > deadline:
                break
            part = paths[start:start + chunk]
            for path, reason in zip(part, pool.map(image_problem, part)):
                if reason:
                    bad.append((path, reason))
            checked += len(part)
    return bad, checked, len(paths)
