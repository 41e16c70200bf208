"""Set-up shared by the operator tests."""
from __future__ import annotations

import pytest

from support import require


@pytest.fixture(scope="session")
def cpu_kernel():
    """The compiled CPU kernel (built on first use); skips without a compiler, fails under INVOLUTION_REQUIRE=cpu."""
    from involution_ops.ops import cpu

    error = cpu.load_error()
    if error is not None:
        require.missing("cpu", f"the CPU kernel cannot be built here: {error}")
    return cpu.load()
