"""Placeholder until the CuPy kernels land."""
def load_error():
    return "not built yet"
def load():
    raise RuntimeError("involution: the cuda kernel is not built yet")
