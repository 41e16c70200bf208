"""Defective copies of the built-in data for the pre-flight tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def edit_coco_annotations(data: Path, split: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """Apply `change` to `data`'s annotations/instances_<split>2017.json in place; the file's path."""
    path = data / "annotations" / f"instances_{split}2017.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))
    return path
