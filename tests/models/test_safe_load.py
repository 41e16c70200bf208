"""Downloaded files are never unpickled beyond tensors, arrays and plain containers."""
import os
import pickle

import numpy as np
import pytest
import torch

from support import require
from involution_ops.safe_load import UnreadableFileError, UnsafeFileError, load_pdparams, load_torch_file


class RunsShell:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_checkpoint_with_numpy_metadata_loads(tmp_path):
    path = tmp_path / "ok.pth"
    meta = {"array": np.arange(3), "scalar": np.float64(2.5), "dtype": np.dtype("float32")}
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": meta}, path)
    loaded = load_torch_file(path)
    assert loaded["meta"]["scalar"] == 2.5
    np.testing.assert_array_equal(loaded["meta"]["array"], np.arange(3))
    torch.testing.assert_close(loaded["state_dict"]["w"], torch.ones(2))


def test_checkpoint_with_arbitrary_callable_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"meta": RunsShell()}, path)
    with pytest.raises(UnsafeFileError, match="evil.pth"):
        load_torch_file(path)


def test_getattr_is_admitted_only_for_history_buffer_statistics(tmp_path):
    history_buffer = require.module("mmengine.logging.history_buffer").HistoryBuffer

    class AttributeWalk:
        def __reduce__(self):
            return (getattr, (history_buffer, "__init__"))

    class Statistic:
        def __reduce__(self):
            return (getattr, (history_buffer, "mean"))

    torch.save({"f": Statistic()}, tmp_path / "stat.pth")
    assert load_torch_file(tmp_path / "stat.pth")["f"] is history_buffer.mean
    torch.save({"f": AttributeWalk()}, tmp_path / "walk.pth")
    with pytest.raises(UnsafeFileError):
        load_torch_file(tmp_path / "walk.pth")


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_torch_file(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("protocol", [2, 4])
def test_pdparams_arrays_load_without_paddle(tmp_path, protocol):
    path = tmp_path / "model.pdparams"
    arrays = {"conv1.weight": np.random.rand(4, 3, 3, 3).astype("float32"), "fc.bias": np.zeros(5, "float64")}
    with open(path, "wb") as file:
        pickle.dump({**arrays, "StructuredToParameterName@@": {"conv1.weight": "conv2d_0.w_0"}}, file, protocol=protocol)
    loaded = load_pdparams(path)
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)


def test_pdparams_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as file:
        pickle.dump({"w": RunsShell()}, file)
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        load_pdparams(path)


def test_pdparams_that_is_not_a_pickle(tmp_path):
    path = tmp_path / "broken.pdparams"
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="broken.pdparams"):
        load_pdparams(path)


# ------------------------------------------------------------------ files that are not checkpoints

def _weights_file(tmp_path, name="weights.pth"):
    path = tmp_path / name
    torch.save({"state_dict": {"w": torch.arange(4096.0)}}, path)
    return path


@pytest.mark.parametrize("make,what", [
    (lambda p: p.write_text("model weights are on the shared drive\n"), "a text file"),
    (lambda p: p.write_text("<!DOCTYPE html><html><body>404</body></html>"), "an HTML/XML page"),
    (lambda p: p.write_bytes(_weights_file(p.parent, "whole.pth").read_bytes()[:3000]), "incomplete or damaged"),
    (lambda p: p.write_bytes(b""), "an empty file"),
])
def test_a_file_that_is_not_a_checkpoint_gets_one_message(tmp_path, make, what):
    path = tmp_path / "rednet50.pth"
    make(path)
    with pytest.raises(UnreadableFileError) as error:
        load_torch_file(path)
    message = str(error.value)
    assert str(path) in message and what in message and "Fix:" in message
    assert isinstance(error.value, ValueError) and not isinstance(error.value, UnsafeFileError)


def test_plain_pickle_of_arrays_is_named_as_such(tmp_path):
    path = tmp_path / "RedNet50_pretrained.pth"
    with open(path, "wb") as file:
        pickle.dump({"conv.weight": np.zeros((2, 2), "float32")}, file, protocol=2)
    with pytest.raises(UnreadableFileError, match="plain pickle.*convert_checkpoint.py paddleclas"):
        load_torch_file(path)


def test_code_in_a_checkpoint_is_still_a_refusal_not_a_read_error(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": RunsShell()}, path)
    with pytest.raises(UnsafeFileError, match="allow-list") as error:
        load_torch_file(path)
    assert "the global posix.system" in str(error.value) or "the global nt.system" in str(error.value)
    assert "weights_only` set to `False`" not in str(error.value)  # torch's advice is not passed on
