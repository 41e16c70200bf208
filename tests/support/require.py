"""Skip where a component is missing, or fail where it is required.

Outside CI a missing piece (the compiled CPU kernel, the OpenMMLab stack, NVRTC,
CuPy, a local Slurm) skips the tests that need it, with the reason. `make setup`
installs the first four and `.ci/run` lets the Slurm test install Slurm
(INVOLUTION_INSTALL_SLURM=1), so in CI such a skip would hide a broken build:
`.ci/run` sets

    INVOLUTION_REQUIRE=cpu,mm,nvrtc,cupy,slurm

and then a missing component is a test failure that carries the error.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

ENV_VAR = "INVOLUTION_REQUIRE"
COMPONENTS = {
    "cpu": "the compiled CPU kernel (needs a C++ compiler and ninja)",
    "mm": "the OpenMMLab stack (make setup)",
    "nvrtc": "the NVRTC library (the `test` extra: nvidia-cuda-nvrtc-cu12)",
    "cupy": "CuPy (the cuda12 / cuda13 extra)",
    "slurm": "a local Slurm cluster (Slurm and MUNGE installed, run as root; INVOLUTION_INSTALL_SLURM=1 installs them)",
}


def required() -> set[str]:
    names = {name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()}
    unknown = names - set(COMPONENTS) - {"all"}
    if unknown:
        raise pytest.UsageError(f"{ENV_VAR}: unknown component(s) {sorted(unknown)}; choose from {sorted(COMPONENTS)}")
    return set(COMPONENTS) if "all" in names else names


def missing(component: str, reason: str) -> None:
    """Skip (or fail, where `component` is required) because `reason`. Also works at module level."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    if component in required():
        pytest.fail(f"{COMPONENTS[component]} is required ({ENV_VAR}={os.environ[ENV_VAR]}) but missing: {reason}",
                    pytrace=False)
    pytest.skip(f"{COMPONENTS[component]} is missing: {reason}", allow_module_level=True)


def module(name: str, component: str = "mm") -> ModuleType:
    """Import `name`, or skip / fail as `missing` does, naming the import error."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(component, f"import {name}: {type(exc).__name__}: {exc}")
        raise  # not reached: missing() always raises


def available(name: str, component: str = "mm") -> bool:
    """For `skipif` markers: False only where `name` cannot be imported and `component` is not required."""
    try:
        importlib.import_module(name)
        return True
    except ImportError as exc:
        if component in required():
            raise RuntimeError(f"{COMPONENTS[component]} is required ({ENV_VAR}) but `import {name}` failed: {exc}") from exc
        return False
