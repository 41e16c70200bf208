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


@pytest.fixture(scope="session")
def emulation_folder(request, tmp_path_factory):
    """Where the host emulations of the CUDA kernels are compiled: pytest's cache (.pytest_cache, kept between
    runs, emptied by --cache-clear) when it is on, else a temporary folder. Libraries are named by a hash of
    their code, so a changed kernel is compiled again."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("cuda_emulation") if cache is not None else tmp_path_factory.mktemp("cuda_emulation")


@pytest.fixture(scope="session")
def nvrtc_library():
    """The NVRTC shared library the kernels compile with on this machine (no GPU needed)."""
    from involution_ops.ops import nvrtc

    found = nvrtc.find_library()
    if found is None:
        require.missing("nvrtc", "no NVRTC library found: pip install nvidia-cuda-nvrtc-cu12 (the `test` extra)")
    return found
