"""The compiled CPU kernel: built on first use with torch.utils.cpp_extension and
cached (TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions). Build failures
are remembered; the dispatcher then falls back to the reference with one warning.
`fresh_load_state` lets a test start that memory afresh (a rebuild, or a failed build).
"""
from __future__ import annotations

import hashlib
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("involution_cpu.cpp",)
HEADERS = ("involution_index.h",)
CFLAGS = ("-O3", "-march=native", "-std=c++17")

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


def _cpu_signature() -> str:
    """-march=native code must not be reused on a different CPU sharing the cache."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _extension_name() -> str:
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update((CSRC / name).read_bytes())
    digest.update(" ".join(CFLAGS).encode())
    digest.update(torch.__version__.encode())
    digest.update(_cpu_signature().encode())
    # the build file names the sources by path: two checkouts sharing one name would rewrite it and rebuild in turn
    digest.update(str(CSRC).encode())
    return f"involution_cpu_{digest.hexdigest()[:16]}"


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load

    return load(
        name=_extension_name(),
        sources=[str(CSRC / name) for name in SOURCES],
        extra_include_paths=[str(CSRC)],
        extra_cflags=list(CFLAGS),
        verbose=False,
    )


def _try_load() -> None:
    global _module, _error
    with _lock:
        if _module is not None or _error is not None:
            return
        try:
            _module = _build()
        except Exception as exc:  # no compiler, no ninja, build error: all mean "use the reference"
            _error = _summarise(exc)


def _summarise(exc: Exception) -> str:
    """The compiler's own error lines, not ninja's closing "build stopped" line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    diagnostics = [line for line in lines if "error:" in line]  # gcc/clang: "file:line:col: error: ..."
    picked = diagnostics[:3] or lines[:1]
    return f"{type(exc).__name__}: " + " | ".join(picked)


def load_error() -> str | None:
    """None when the kernel is usable, else why it is not (building it on first call)."""
    _try_load()
    return _error


@contextmanager
def fresh_load_state(build_error: str | None = None) -> Iterator[None]:
    """Within the block the kernel counts as never loaded: the next use builds it again (from
    `CSRC` as it is then), or, given `build_error`, reads as a build that failed with that
    message. The state from before is restored on exit. The seam the fallback tests use."""
    global _module, _error
    with _lock:
        saved = _module, _error
        _module, _error = None, build_error
    try:
        yield
    finally:
        with _lock:
            _module, _error = saved


def load() -> ModuleType:
    """The compiled extension; RuntimeError naming the build failure if it cannot be built."""
    _try_load()
    if _module is None:
        raise RuntimeError(
            f"involution: the cpu kernel could not be built ({_error}); install a C++ compiler and ninja, "
            "or use backend='reference'"
        )
    return _module


def forward(x, weight, stride, padding, dilation) -> torch.Tensor:
    return load().forward(x, weight, list(stride), list(padding), list(dilation))


def backward_input(grad_out, weight, input_size, stride, padding, dilation) -> torch.Tensor:
    h, w = input_size
    return load().backward_input(grad_out, weight, h, w, list(stride), list(padding), list(dilation))


def backward_weight(grad_out, x, kernel_size, groups, stride, padding, dilation) -> torch.Tensor:
    kh, kw = kernel_size
    return load().backward_weight(grad_out, x, kh, kw, groups, list(stride), list(padding), list(dilation))
