from .functional import BACKENDS, involution, output_size
from .reference import involution_reference

__all__ = ["BACKENDS", "involution", "involution_reference", "output_size"]
