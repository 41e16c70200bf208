"""Facts read from many files, cached on disk by file identity; used by the pre-flight and the
training-time image guard.

* `image_problem`: a cheap test of an image file (its first and last bytes: a JPEG must end with
  its end-of-image marker, a PNG with its IEND chunk; other formats must open), confirmed by a full
  decode only for the files the byte test flags.
* `survey`: facts read from many files (an image's size and EXIF orientation, a label map's
  values) in a thread pool for at most a time budget, kept on disk by file identity (path, size,
  mtime) so a second launch reads only what changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

_TAIL = 1024


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


CACHE_ENV = "INVOLUTION_OPS_CACHE"
FACTS_VERSION = 1
EXIF_ORIENTATION = 0x0112
_TURNED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def cache_dir() -> Path:
    """Where the pre-flight keeps what it read ($INVOLUTION_OPS_CACHE, else ~/.cache/involution_ops)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "involution_ops") / "preflight"


def image_facts(path: str | Path) -> dict:
    """{"problem": None or why the file is unreadable, "size": [width, height] of the stored pixels,
    "orientation": its EXIF orientation (1: none)}."""
    problem = image_problem(path)
    if problem:
        return {"problem": problem}
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            # a PNG's EXIF chunk may follow its pixels: PIL would decode the whole image to find it
            late = image.format == "PNG" and "exif" not in image.info
            orientation = 1 if late else image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as error:  # PIL raises several types for broken files
        return {"problem": f"is not an image PIL can read ({type(error).__name__}: {error})"}
    return {"problem": None, "size": [width, height],
            "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1}


def loaded_size(facts: dict) -> tuple[int, int]:
    """(width, height) of an image as mmcv loads it: LoadImageFromFile's 'color' flag applies the EXIF
    orientation, so a turned photo comes out with width and height swapped."""
    width, height = facts["size"]
    return (height, width) if facts.get("orientation") in _TURNED else (width, height)


def label_facts(path: str | Path) -> dict:
    """{"problem", "size": [width, height], "channels", "values": the distinct values} of a label map,
    decoded in full (a truncated file is a problem, as for images)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except Exception as error:  # PIL raises several types for a truncated or foreign file
        return {"problem": f"cannot be decoded ({type(error).__name__}: {error})"}
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    values = np.unique(array) if array.dtype != np.uint8 or channels > 1 else np.flatnonzero(np.bincount(array.ravel()))
    return {"problem": None, "size": [int(array.shape[1]), int(array.shape[0])], "channels": channels,
            "values": [int(v) for v in values[:300]]}


def _identity(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _store_path(kind: str, paths: list[Path]) -> Path:
    folder = os.path.commonpath([os.path.dirname(os.path.abspath(paths[0])),
                                 os.path.dirname(os.path.abspath(paths[-1]))])
    return cache_dir() / f"{kind}-{hashlib.sha256(folder.encode()).hexdigest()[:16]}.json"


def _load_store(store: Path, kind: str) -> dict:
    try:
        content = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(content, dict) and content.get("version") == FACTS_VERSION and content.get("kind") == kind
    return content.get("files", {}) if ok and isinstance(content.get("files"), dict) else {}


def _save_store(store: Path, kind: str, files: dict) -> None:
    temporary = store.with_name(f"{store.name}.{os.getpid()}.tmp")
    try:  # written whole, then moved: a concurrent launch reads the old or the new store, never half
        store.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"version": FACTS_VERSION, "kind": kind, "files": files}))
        os.replace(temporary, store)
    except OSError:
        pass  # only a cache: a read-only home makes the next launch read the files again


READERS = {"image": image_facts, "label": label_facts}


def survey(paths: Iterable[Path], kind: str, budget_s: float = 60.0, threads: int = 16
           ) -> tuple[dict[Path, dict], int]:
    """({path: facts}, total) for the files in order, read by READERS[kind] in a thread pool for at most
    ``budget_s`` seconds (I/O bound: the pool hides the latency of network file systems). Facts of a
    file whose size and mtime are unchanged since an earlier launch come from the on-disk cache."""
    paths = list(paths)
    if not paths:
        return {}, 0
    read = READERS[kind]
    store = _store_path(kind, paths)
    known = _load_store(store, kind)
    fresh: dict[str, list] = {}

    def facts_of(path: Path) -> dict:
        identity = _identity(path)
        key = os.path.abspath(path)
        entry = known.get(key)
        if identity is not None and isinstance(entry, list) and len(entry) == 2 and entry[0] == identity:
            return entry[1]
        facts = read(path)
        if identity is not None and facts.get("problem") is None:
            fresh[key] = [identity, facts]
        return facts

    found: dict[Path, dict] = {}
    deadline = time.monotonic() + budget_s
    chunk = threads * 64
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), chunk):
            if start and time.monotonic() > deadline:  # the first chunk is read whatever the budget
                break
            part = paths[start:start + chunk]
            found.update(zip(part, pool.map(facts_of, part)))
    if fresh:
        _save_store(store, kind, {**known, **fresh})
    return found, len(paths)
