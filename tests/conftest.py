"""Suite-wide test set-up."""
from __future__ import annotations

import pytest

from support import require


def pytest_configure(config: pytest.Config) -> None:
    if "cpu" in require.required():
        # A silent fall-back to the reference would let every operator test pass on the slow path.
        config.addinivalue_line("filterwarnings", "error:involution. the cpu kernel is unavailable:RuntimeWarning")
