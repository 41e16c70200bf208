"""Placeholder until the compiled CPU kernel lands."""
def load_error():
    return "not built yet"
def load():
    raise RuntimeError("involution: the cpu kernel is not built yet")
