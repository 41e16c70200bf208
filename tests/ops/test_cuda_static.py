"""Every CUDA instantiation compiled to CUBIN for sm_80 and sm_90 with the NVRTC CuPy uses
(no GPU): no spills, static shared memory under 48 KB; and on sm_90 the issue's figures
from the SASS: instructions per multiply-add, no 64-bit division call in a fast kernel,
instructions per output against the naive constant-shape baseline."""
from __future__ import annotations

import pytest
import torch

from support import require
from involution_ops.ops import cuda, cuda_static, sass

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SHARED_LIMIT = 48 * 1024


@pytest.fixture(scope="module")
def nvdisasm():
    found = sass.find_nvdisasm()
    if found is None:
        require.missing("nvrtc", "no nvdisasm found: pip install nvidia-cuda-nvdisasm (the `test` extra)")
    return found


# ~10 s of NVRTC each: the fast loop (-m "not slow") compiles the report's one, which the figures below reuse
COMPILES = [
    pytest.param(dtype, arch, id=f"{dtype}-{arch}",
                 marks=() if (dtype, arch) == (torch.float32, cuda_static.REPORT_ARCH) else pytest.mark.slow)
    for arch in cuda_static.ARCHES
    for dtype in DTYPES
]


@pytest.mark.parametrize("dtype, arch", COMPILES)
def test_every_instantiation_compiles_to_cubin_without_spills(nvrtc_library, dtype, arch):
    expressions = tuple(cuda.name_expressions(dtype))
    compiled = cuda_static.compile_module(cuda.kernel_source(), expressions, arch, nvrtc_library)
    assert compiled.image[:4] == b"\x7fELF"
    resources = sass.parse_resources(compiled.log)
    for expression in expressions:
        used = resources[compiled.lowered[expression]]
        assert used.spill_stores == used.spill_loads == 0, (expression, used)
        assert used.shared_memory < SHARED_LIMIT, (expression, used)
        assert ("fast_" in expression) == (used.shared_memory > 0), (expression, used)


def test_resource_report_parser_reads_spills():
    log = (
        "ptxas info    : Function properties for kernel_a\n"
        "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack size, 30976 bytes smem\n"
    )
    assert sass.parse_resources(log) == {"kernel_a": sass.Resources(128, 4, 12, 8, 30976)}


@pytest.fixture(scope="module")
def figures(nvrtc_library, nvdisasm):
    ours = cuda_static.backend_figures(torch.float32, cuda_static.REPORT_ARCH, nvdisasm, nvrtc_library)
    return ours, cuda_static.baseline_figures(cuda_static.REPORT_ARCH, nvdisasm, nvrtc_library)


@pytest.mark.parametrize("role, limit", [("forward", 2.0), ("backward_input", 2.5), ("backward_weight", 2.0)])
def test_fast_hot_loop_instructions_per_multiply_add(figures, role, limit):
    fast = cuda_static.headline(figures[0], role)
    assert fast.hot_loop_fmas == 7 * 16 * 4  # the tap-row loop: K taps x 16 channels x P pixels, unrolled
    assert fast.instructions_per_mac <= limit, fast


@pytest.mark.parametrize("role", cuda.ROLES)
def test_fast_kernels_issue_at_most_half_the_baselines_instructions_per_output(figures, role):
    ours, baseline = figures
    fast = cuda_static.headline(ours, role)
    base = [f for f in baseline if f.role == role]
    assert len(base) == 4
    assert all(fast.instructions_per_output <= 0.5 * b.instructions_per_output for b in base), (fast, base)
    generic = next(f for f in ours if f.family == "generic" and f.role == role)
    assert generic.instructions_per_output > base[0].instructions_per_output  # what the fast kernels replace


def test_no_fast_kernel_calls_a_64bit_division(figures):
    ours, _ = figures
    fast = [f for f in ours if f.family == "fast"]
    assert len(fast) == len(cuda.fast_instances(torch.float32))
    assert all(f.division_calls == 0 for f in fast), [f.label for f in fast if f.division_calls]
    assert all(f.division_calls > 0 for f in ours if f.family == "generic")  # the counter sees them


@pytest.mark.slow  # compiles every dtype for every architecture
def test_report_names_every_kernel(nvrtc_library, nvdisasm):
    text = cuda_static.report(nvrtc_library, nvdisasm)
    for role in cuda.ROLES:
        assert f"fast {role} K7 s1 int32" in text and f"baseline {role} stage4" in text
    assert "## Method" in text
