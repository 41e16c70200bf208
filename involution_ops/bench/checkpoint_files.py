"""Checkpoint files a training process can trust: written whole or not at all, and on resume the
newest whole one chosen (an unreadable newest checkpoint is passed over, with a warning).

mmengine saves a checkpoint through its storage backend (Runner.save_checkpoint ->
mmengine.runner.checkpoint.save_checkpoint -> the backend's ``put``), and CheckpointHook points
``last_checkpoint`` at the file only after ``put`` returned. :func:`install` registers
:class:`WholeFileBackend` for local paths (mmengine's own ``register_backend`` extension point):
every ``put`` goes to a temporary file in the same folder, is flushed to disk, then takes its name
in one step. A full disk or a kill mid-write therefore never leaves a file under the final name,
and ``last_checkpoint`` only ever names files that were written in full.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mmengine.fileio.backends import LocalBackend, register_backend

from .output import PARTIAL_SUFFIX, write_temporary

_CHECKPOINT_NAME = re.compile(r"^(iter|epoch)_(\d+)\.pth$")


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        return "free space unknown"


def write_whole(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (flushed, fsync'd,
    renamed): readers see no file or the whole one. A full disk raises OSError(ENOSPC) naming the
    file and the folder's free space; the temporary file is removed."""
    path = Path(path)
    temporary = None
    try:
        temporary = write_temporary(path.parent, data, path.name)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"disk full: {path} could not be written ({len(data) / 2**20:.0f} MiB; "
                                       f"{path.parent} has {_free_space(path.parent)}); no partial file was "
                                       f"left. Fix: free space there (or set WORK_DIR to a disk with room)",
                          str(path)) from error
        raise
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut only once the folder is on disk too
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


class WholeFileBackend(LocalBackend):
    """mmengine's local storage backend whose writes appear whole or not at all."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        write_whole(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        write_whole(obj.encode(encoding), filepath)


def install() -> None:
    """Make WholeFileBackend mmengine's backend for local paths (idempotent)."""
    register_backend("local", WholeFileBackend, force=True, prefixes="")


# --------------------------------------------------------------------------- resume


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole torch checkpoint (missing, truncated, corrupt), or None.

    torch saves a zip archive: its directory sits at the end of the file (a truncated file has
    none) and every member carries a CRC, which testzip checks by reading the whole file."""
    if not path.is_file():
        return "no such file"
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except zipfile.BadZipFile as error:
        return f"not a whole checkpoint ({error}; truncated?)"
    except (OSError, ValueError, EOFError, zipfile.LargeZipFile) as error:
        return f"unreadable ({error})"
    return f"corrupt: {broken} fails its CRC check" if broken else None


def _step(path: Path) -> int:
    match = _CHECKPOINT_NAME.match(path.name)
    return int(match.group(2)) if match else -1


@dataclass
class ResumePlan:
    checkpoint: Path
    passed_over: list[tuple[Path, str]] = field(default_factory=list)  # what was not whole, newest first

    def describe(self) -> str:
        if not self.passed_over:
            return f"resuming from {self.checkpoint}"
        skipped = "; ".join(f"{path.name}: {problem}" for path, problem in self.passed_over)
        return (f"resuming from {self.checkpoint.name}, the newest whole checkpoint in {self.checkpoint.parent} "
                f"(passed over: {skipped})")


class NothingToResume(Exception):
    pass


def resume_plan(run_dir: str | Path) -> ResumePlan:
    """The checkpoint RESUME=1 continues from: the one ``last_checkpoint`` names, as mmengine would,
    if it is whole; otherwise the newest whole ``iter_N.pth``/``epoch_N.pth`` of the run folder.
    Raises NothingToResume if there is none."""
    run_dir = Path(run_dir)
    pointer = run_dir / "last_checkpoint"
    passed_over: list[tuple[Path, str]] = []
    try:
        named = Path(pointer.read_text().strip() or "")
        problem = checkpoint_problem(named) if named.name else "last_checkpoint is empty"
    except (OSError, UnicodeDecodeError) as error:
        named, problem = None, f"last_checkpoint unreadable ({error})"
    if named is not None and problem is None:
        return ResumePlan(named)
    passed_over.append((named if named is not None and named.name else pointer, problem))
    tried = {named.resolve()} if named is not None and named.name else set()
    for path in sorted((p for p in run_dir.glob("*.pth") if _step(p) >= 0), key=_step, reverse=True):
        if path.resolve() in tried:
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return ResumePlan(path, passed_over)
        passed_over.append((path, problem))
    listed = "; ".join(f"{path.name}: {problem}" for path, problem in passed_over)
    raise NothingToResume(f"nothing to resume in {run_dir}: no whole checkpoint ({listed}). Fix: start the run "
                          f"again without RESUME=1")


def remove_partial_files(run_dir: str | Path) -> list[Path]:
    """Remove the temporary files of writes that a kill interrupted (they were never whole)."""
    removed = []
    for path in Path(run_dir).glob(f".*{PARTIAL_SUFFIX}"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
