"""Compile the CUDA kernels to PTX or CUBIN with NVRTC through ctypes, without CuPy or a GPU.

Used by the tests on CPU-only machines to check that the CUDA source compiles
for given architectures and dtypes. Finds libnvrtc in the nvidia-cuda-nvrtc
wheels (CUDA 12 or 13), then in CUDA_HOME / CUDA_PATH, then /usr/local/cuda.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path


class NVRTCError(RuntimeError):
    pass


def _candidates() -> list[str]:
    found: list[str] = []
    for root in sys.path:
        for pattern in ("nvidia/cuda_nvrtc/lib/libnvrtc.so*", "nvidia/cu1*/lib/libnvrtc.so*"):
            found += sorted(glob.glob(os.path.join(root, pattern)))
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            found += sorted(glob.glob(os.path.join(os.environ[env], "lib64", "libnvrtc.so*")))
    found += sorted(glob.glob("/usr/local/cuda/lib64/libnvrtc.so*"))
    return [path for path in found if ".alt." not in path and "builtins" not in path]


def find_library() -> str | None:
    for path in _candidates():
        try:
            ctypes.CDLL(path)
            return path
        except OSError:
            continue
    return None


def _check(lib, status: int, what: str) -> None:
    if status != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise NVRTCError(f"{what} failed: {lib.nvrtcGetErrorString(status).decode()}")


def version(library: str) -> tuple[int, int]:
    lib = ctypes.CDLL(library)
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


@dataclass(frozen=True)
class Compiled:
    """One NVRTC compile: PTX text (arch='compute_XX') or CUBIN bytes (arch='sm_XX'), the lowered
    (mangled) name of each name expression, and NVRTC's log (ptxas' report under -Xptxas -v)."""

    image: bytes
    lowered: dict[str, str]
    log: str


def compile_program(
    source: str, name_expressions: list[str], arch: str, options: tuple[str, ...] = (), library: str | None = None
) -> Compiled:
    """Compile for e.g. arch='compute_80' (PTX) or arch='sm_90' (CUBIN, through ptxas)."""
    library = library or find_library()
    if library is None:
        raise NVRTCError("libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
    lib = ctypes.CDLL(library)
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"involution.cu", 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        for expression in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(program, expression.encode()), "nvrtcAddNameExpression")
        flags = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        status = lib.nvrtcCompileProgram(program, len(flags), (ctypes.c_char_p * len(flags))(*flags))
        log_size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(log_size))
        log = ctypes.create_string_buffer(log_size.value)
        lib.nvrtcGetProgramLog(program, log)
        log_text = log.value.decode(errors="replace")
        if status != 0:
            raise NVRTCError(f"compilation for {arch} failed:\n{log_text or '(empty log: e.g. over 48 KB of static shared memory)'}")
        kind = "CUBIN" if arch.startswith("sm_") else "PTX"
        size = ctypes.c_size_t()
        _check(lib, getattr(lib, f"nvrtcGet{kind}Size")(program, ctypes.byref(size)), f"nvrtcGet{kind}Size")
        image = ctypes.create_string_buffer(size.value)
        _check(lib, getattr(lib, f"nvrtcGet{kind}")(program, image), f"nvrtcGet{kind}")
        lowered = {}
        for expression in name_expressions:
            name = ctypes.c_char_p()
            _check(
                lib,
                lib.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)),
                "nvrtcGetLoweredName",
            )
            lowered[expression] = name.value.decode()
        return Compiled(image.raw[: size.value], lowered, log_text)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile_to_ptx(
    source: str, name_expressions: list[str], arch: str, options: tuple[str, ...] = (), library: str | None = None
) -> tuple[str, dict[str, str]]:
    """PTX text and the lowered (mangled) name of each expression, for e.g. arch='compute_80'."""
    compiled = compile_program(source, name_expressions, arch, options, library)
    return compiled.image.rstrip(b"\0").decode(), compiled.lowered


__all__ = ["Compiled", "NVRTCError", "compile_program", "compile_to_ptx", "find_library", "version", "Path"]
