"""Set-up shared by the test files: the model manifest and the OpenMMLab stack check.

Only fixtures here: importing this file must stay cheap and need torch at most.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def openmmlab() -> None:
    """Skips the test without the OpenMMLab stack (the `mm` extra, `make setup`)."""
    for module in ("mmengine", "mmdet", "mmseg"):
        pytest.importorskip(module, reason="the OpenMMLab stack (make setup) is needed")


@pytest.fixture(scope="session")
def zoo():
    """The model manifest, results/paper.yaml (skips without PyYAML, which the `mm` extra brings)."""
    pytest.importorskip("yaml", reason="the manifest is read with PyYAML (the mm extra, make setup)")
    from involution_ops.bench import zoo

    return zoo.load()
