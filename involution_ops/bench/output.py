"""Small helpers shared by the benchmark modules: the repository root, the atomic text
writers (one that replaces, one that never does), one markdown table writer and one banner."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: configs, results/ and data/ are found relative to it."""


PARTIAL_SUFFIX = ".partial"
"""Ending of the hidden temporary files the writers below fill before naming them; no reader globs them."""


def write_temporary(folder: Path, data: bytes, stem: str = "") -> str:
    """A finished file in `folder` under a hidden temporary name (`.<stem>.*.partial`): written,
    flushed to disk and made an ordinary file. The caller gives it its name or removes it; on any
    error here it is removed and the error raised."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{stem}." if stem else ".", suffix=PARTIAL_SUFFIX)
    os.close(handle)
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old file or the new one, never a torn one."""
    path = Path(path)
    temporary = write_temporary(path.parent, text.encode("utf-8"), path.name)
    try:
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_new(folder: Path, names: Iterable[str], text: str) -> Path:
    """Write `text` under the first of `names` not taken in `folder`; never replaces a file.

    The text goes to a temporary file in the folder first (flushed to disk), which then takes
    its name in one step: a kill at any moment leaves no file or a whole one (at worst a stray
    `.*.partial` file, which no reader globs)."""
    folder = Path(folder)
    temporary = write_temporary(folder, text.encode("utf-8"))
    try:
        for name in names:
            if _publish(temporary, folder / name):
                return folder / name
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    raise FileExistsError(f"could not find a free name in {folder}")


def _publish(temporary: str, path: Path) -> bool:
    """Give the finished temporary file the name `path` unless that exists; False if it does."""
    try:
        os.link(temporary, path)  # atomic and exclusive: fails if `path` exists
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename (atomic, not exclusive)
        if path.exists():
            return False
        os.replace(temporary, path)
        return True


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A pipe table: the first `left` columns left-aligned, the others right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    return "\n".join([line(headers), "| " + " | ".join(align) + " |"] + [line(row) for row in rows])


def banner(text: str, loud: bool = False) -> None:
    """A message framed by rules across the terminal; `loud` for warnings that must not be missed."""
    rule = ("!" if loud else "=") * 78
    print(f"\n{rule}\n{text}\n{rule}", flush=True)
