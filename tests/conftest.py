"""Set-up shared by the test files: the INVOLUTION_REQUIRE switch, the model manifest and
the OpenMMLab stack check.

Only fixtures and hooks here: importing this file must stay cheap and need torch at most.
"""
from __future__ import annotations

import pytest

from support import require


def pytest_configure(config: pytest.Config) -> None:
    if "cpu" in require.required():
        # A silent fall-back to the reference would let every operator test pass on the slow path.
        config.addinivalue_line("filterwarnings", "error:involution. the cpu kernel is unavailable:RuntimeWarning")


@pytest.fixture(autouse=True, scope="session")
def preflight_cache_in_a_temporary_folder(tmp_path_factory) -> None:
    """The pre-flight keeps what it read of data files in $INVOLUTION_OPS_CACHE (default
    ~/.cache/involution_ops): tests, and the runs they start, keep theirs out of the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INVOLUTION_OPS_CACHE", str(tmp_path_factory.mktemp("involution_ops_cache")))
        yield


@pytest.fixture(scope="session")
def openmmlab() -> None:
    """Skips the test without the OpenMMLab stack (the `mm` extra, `make setup`); fails under INVOLUTION_REQUIRE=mm."""
    for module in ("mmengine", "mmdet", "mmseg"):
        require.module(module)


@pytest.fixture(scope="session")
def manifest():
    """The model manifest, results/paper.yaml (read with PyYAML, which the `mm` extra brings)."""
    require.module("yaml")
    from involution_ops.bench.manifest import load_manifest

    return load_manifest()
