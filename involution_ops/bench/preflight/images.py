"""The image and label files of a split read within a time budget (facts cached on disk by file
identity: involution_ops.bench.file_facts); an unreadable one stops the pre-flight."""
from __future__ import annotations

import time
from pathlib import Path

from .. import file_facts
from .errors import PreflightError

# Seconds the pre-flight spends reading image bytes per file list; on slow storage the rest of a
# training list is left to the load-time guard (involution_ops.bench.image_guard), which skips and counts.
IMAGE_CHECK_BUDGET_S = {"train": 60.0, "val": 120.0, "test": 120.0}


def check_images(paths: list[Path], listed_in: Path, split: str, fix: str) -> dict[Path, dict]:
    """Reads (or recalls) the facts of the files within the split's budget; stops on an unreadable one."""
    start = time.monotonic()
    if len(paths) > 5000:
        print(f"  reading the first and last bytes of {len(paths)} files of {listed_in} ...", flush=True)
    facts, total = file_facts.survey(paths, "image", budget_s=IMAGE_CHECK_BUDGET_S.get(split, 60.0))
    checked = len(facts)
    bad = [(path, found["problem"]) for path, found in facts.items() if found.get("problem")]
    if bad:
        shown = "; ".join(f"{path} {reason}" for path, reason in bad[:5])
        more = f" ... ({len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PreflightError(f"{len(bad)} of the {checked} images of {listed_in} read so far are unreadable: "
                             f"{shown}{more}. Fix: {fix}")
    if checked < total:
        guard = ("the rest are checked as they load: an unreadable one is skipped with a warning and counted in "
                 "the run record" if split == "train" else "an unreadable one among the rest stops the evaluation")
        print(f"  note: read {checked} of {total} images of {listed_in} in {time.monotonic() - start:.0f} s; "
              f"{guard}; the next launch goes on from there", flush=True)
    return facts


def first(found: list[str], shown: int = 5) -> str:
    """The first ``shown`` items joined, and how many more."""
    return "; ".join(found[:shown]) + (f" ... ({len(found) - shown} more)" if len(found) > shown else "")
