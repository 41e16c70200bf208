"""Loading files users download, without executing what a pickle asks for.

* PyTorch / OpenMMLab checkpoints: ``torch.load(weights_only=True)`` with a short
  allow-list of the non-tensor classes such checkpoints really hold (numpy arrays,
  dtypes and scalars; mmengine's ``HistoryBuffer`` in the message hub of a run).
* PaddleClas ``.pdparams``: a plain pickle of numpy arrays, read by an unpickler
  that admits arrays and containers only, so Paddle need not be installed.

Anything else in a file stops the load with :class:`UnsafeFileError`, naming the
file and the forbidden global; a file that is not a checkpoint at all (a text or
HTML page saved under a .pth name, a truncated download) stops it with
:class:`UnreadableFileError`. Both are ``ValueError``s whose message names the
file and the fix.
"""
from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["UnsafeFileError", "UnreadableFileError", "explain_refusal", "explain_unreadable", "checkpoint_safe_globals",
           "allowed_checkpoint_globals", "load_torch_file", "load_pdparams"]


class UnsafeFileError(ValueError):
    """A file holds something other than tensors, arrays and plain containers."""


class UnreadableFileError(ValueError):
    """A file is not a checkpoint at all: text, a truncated download, another format."""


# Messages of torch's weights-only unpickler when a file asks for code it does not allow; its
# other errors (unknown opcodes, over-long strings) mean the bytes are not a pickle at all.
_REFUSAL_MARKS = ("GLOBAL", "reduce for unrecognized function", "Can only create new object", "Can only build",
                  "must be imported to load")


def _numpy_globals() -> list[tuple[Callable, str]]:
    try:
        import numpy as np
    except ImportError:
        return []
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    found: list[tuple[Callable, str]] = []
    # numpy 1.x files name numpy.core.*, numpy 2.x files numpy._core.*: admit both spellings.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found.append((multiarray._reconstruct, f"{module}._reconstruct"))
        found.append((multiarray.scalar, f"{module}.scalar"))
    found.append((np.ndarray, "numpy.ndarray"))
    found.append((np.dtype, "numpy.dtype"))
    for dtype_class in {type(np.dtype(t)) for t in ("b1", "u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "U", "S", "O")}:
        found.append((dtype_class, f"{dtype_class.__module__}.{dtype_class.__qualname__}"))
    return found


def _mmengine_globals() -> list[tuple[Callable, str]]:
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:
        return []

    def history_buffer_statistic(owner: Any, name: str) -> Callable:
        # mmengine pickles the buffer's statistics methods as getattr(HistoryBuffer, "min").
        # A general getattr would let a file walk attributes to anything; admit only these.
        statistics = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
        if owner is HistoryBuffer and isinstance(name, str) and name in statistics:
            return getattr(HistoryBuffer, name)
        raise UnsafeFileError(f"refused getattr({owner!r}, {name!r}): only HistoryBuffer statistics methods are allowed")

    return [
        (HistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
        (history_buffer_statistic, "builtins.getattr"),
    ]


def allowed_checkpoint_globals() -> list[tuple[Callable, str]]:
    """The classes a weights-only load of a checkpoint may instantiate besides tensors."""
    return _numpy_globals() + _mmengine_globals()


@contextlib.contextmanager
def checkpoint_safe_globals() -> Iterator[None]:
    """Within this block, weights-only loads also admit :func:`allowed_checkpoint_globals`."""
    with torch.serialization.safe_globals(allowed_checkpoint_globals()):
        yield


def _reason(error: Exception) -> str:
    """The unpickler's own finding, without torch's advice around it (which suggests
    ``weights_only=False``: exactly what must not be done with an untrusted file)."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks for the global {found.group(1)}"
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue", "In PyTorch 2.6")
    lines = [line.strip() for line in text.replace("WeightsUnpickler error:", "\n").splitlines()]
    lines = [line for line in lines if line and not line.startswith(boilerplate)]
    return lines[0][:200] if lines else type(error).__name__


def explain_refusal(path: os.PathLike | str | None, error: Exception) -> UnsafeFileError:
    where = f"'{path}'" if path is not None else "the checkpoint"
    return UnsafeFileError(
        f"refused to load {where}: it holds Python objects outside the allow-list of tensors, "
        f"numpy arrays and mmengine's HistoryBuffer ({_reason(error)}). If the file is a model checkpoint, "
        "load it on a machine you trust and re-save only its state_dict, or convert it with "
        "scripts/convert_checkpoint.py."
    )


def explain_unreadable(path: os.PathLike | str | None, error: Exception) -> UnreadableFileError:
    where = f"'{path}'" if path is not None else "the checkpoint"
    what = _describe_bytes(path, error) if path is not None else "not a PyTorch checkpoint"
    return UnreadableFileError(
        f"cannot read {where}: {what} ({type(error).__name__}: {_reason(error)}). "
        "Fix: download or copy the file again (compare its size with the source); a PaddleClas "
        ".pdparams file must first be converted with `scripts/convert_checkpoint.py paddleclas SRC OUT.pth`."
    )


def _describe_bytes(path: os.PathLike | str, error: Exception) -> str:
    """What the start of a file looks like, for the error message."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
        size = os.path.getsize(path)
    except OSError:
        return "not a PyTorch checkpoint"
    if size == 0:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK"):
        if "TorchScript" in str(error):
            return "a TorchScript archive, not a weights checkpoint (save the model's state_dict instead)"
        return f"a zip archive that is incomplete or damaged, {size} bytes (a truncated download?)"
    if head[:1] == b"\x80":
        if "magic number" in str(error):
            return "a plain pickle, not a PyTorch checkpoint (a PaddleClas .pdparams file?)"
        return f"a pickle that ends early or is damaged, {size} bytes (a truncated download?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not a PyTorch checkpoint ({size} bytes of another format)"
    if text.lstrip().lower().startswith(("<!doctype", "<html", "<?xml")):
        return "an HTML/XML page, not a checkpoint (a failed download?)"
    return "a text file, not a checkpoint"


def load_torch_file(path: os.PathLike | str | io.BytesIO, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the checkpoint allow-list.

    Raises `UnsafeFileError` for a file asking for objects outside the allow-list and
    `UnreadableFileError` for one that is not a checkpoint (text, truncated, another format).
    """
    if not isinstance(path, io.IOBase) and not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; check the path (or the PRETRAINED/CKPT variable)")
    where = None if isinstance(path, io.IOBase) else path
    try:
        with checkpoint_safe_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except UnsafeFileError:  # raised by the allow-list itself
        raise
    except pickle.UnpicklingError as error:
        if any(mark in str(error) for mark in _REFUSAL_MARKS):
            raise explain_refusal(where, error) from None
        raise explain_unreadable(where, error) from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, TypeError, UnicodeDecodeError,
            AttributeError, OSError) as error:
        # What torch's readers raise for bytes that are not a (complete) checkpoint: the zip
        # reader's RuntimeError, the legacy reader's EOF/IndexError/magic-number errors...
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        raise explain_unreadable(where, error) from None


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeFileError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r}) in a .pdparams file")
    return text.encode("latin1")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: str):
        super().__init__(file)
        self._path = path
        self._allowed = {name: obj for obj, name in _numpy_globals()}
        self._allowed["collections.OrderedDict"] = collections.OrderedDict
        # Protocol-2 pickles spell array bytes as _codecs.encode(text, "latin1").
        self._allowed["_codecs.encode"] = _latin1_bytes

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in self._allowed:
            raise UnsafeFileError(
                f"refused to load '{self._path}': it asks for the global '{qualified}', but a "
                ".pdparams file may hold only numpy arrays in dicts and lists. Is it really a "
                "PaddleClas parameter file?"
            )
        return self._allowed[qualified]


def load_pdparams(path: os.PathLike | str) -> dict[str, Any]:
    """Read a PaddleClas ``.pdparams`` file into ``{name: numpy array}`` without Paddle."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PaddleClas parameter file '{path}' does not exist")
    with open(path, "rb") as file:
        try:
            state = _ArraysOnlyUnpickler(file, path).load()
        except UnsafeFileError:
            raise
        except Exception as error:  # truncated or not a pickle at all
            raise UnreadableFileError(
                f"'{path}' is not a readable .pdparams pickle ({type(error).__name__}: {error}). "
                "Fix: download it again (PaddleClas' RedNet*_pretrained.pdparams); for a .pth file use the "
                "'imagenet' source of scripts/convert_checkpoint.py"
            ) from None
    if not isinstance(state, dict):
        raise ValueError(f"'{path}' holds a {type(state).__name__}, expected a dict of parameter arrays")
    # Paddle stores a name map next to the arrays; it is not a parameter.
    state.pop("StructuredToParameterName@@", None)
    return state
