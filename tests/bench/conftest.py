"""Set-up shared by the benchmark-runner tests: a private copy of the built-in toy COCO data and a
guard that fails a test when the pre-flight lets a run start."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO_ROOT, require


@pytest.fixture(autouse=True)
def private_preflight_cache(tmp_path, monkeypatch):
    """What the pre-flight reads of data files is cached on disk by file identity: each test keeps
    its own, so no test sees another's facts."""
    monkeypatch.setenv("INVOLUTION_OPS_CACHE", str(tmp_path / "preflight_cache"))


@pytest.fixture
def no_launch(monkeypatch):
    """Fail the test if the pre-flight lets a run start (every launch goes through subprocess.run)."""
    def launched(command, *args, **kwargs):
        raise AssertionError(f"the pre-flight let this start: {' '.join(map(str, command))}")

    monkeypatch.setattr(subprocess, "run", launched)


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory) -> Path:
    """The built-in toy COCO data, copied once per test file; tests that edit it take `fresh_coco`."""
    require.module("mmdet")
    from involution_ops.bench import toy_data

    source = toy_data.ensure_toy_data(REPO_ROOT / "data" / "toy", "coco", verbose=False)
    copy = tmp_path_factory.mktemp("coco") / "coco"
    shutil.copytree(source, copy)
    return copy


@pytest.fixture
def fresh_coco(toy_coco, tmp_path) -> Path:
    """A copy of the toy COCO data this test alone may edit."""
    copy = tmp_path / "coco"
    shutil.copytree(toy_coco, copy)
    return copy
