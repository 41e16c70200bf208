"""What one pre-flight has read and checked, so that several configs of a target share it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable


@dataclass
class PreflightCache:
    """Read once per launch: weights files, annotation (JSON) files, model layouts; and the checks
    and warnings already done. The facts of image and label files are kept across launches on
    disk, by file identity (involution_ops.bench.file_facts)."""

    weights: dict[str, Any] = field(default_factory=dict)  # resolved path -> weight_checks.Checkpoint
    json_files: dict[Path, dict] = field(default_factory=dict)  # annotation file -> its content
    shapes: dict[tuple[str, str], dict] = field(default_factory=dict)  # (config, module path) -> key shapes
    checked: set[Hashable] = field(default_factory=set)  # checks passed, e.g. ("images", folder, file)
    warned: set[str] = field(default_factory=set)

    def warn_once(self, text: str) -> None:
        """Print a warning the first time this launch meets it."""
        if text not in self.warned:
            self.warned.add(text)
            print(f"  warning: {text}", flush=True)

    @classmethod
    def of(cls, cache: "PreflightCache | dict | None") -> "PreflightCache":
        """The cache to use: a new one for None; a plain dict (how callers from before this class
        pass it) holds its PreflightCache under the class itself."""
        if isinstance(cache, PreflightCache):
            return cache
        if cache is None:
            return cls()
        return cache.setdefault(cls, cls())
