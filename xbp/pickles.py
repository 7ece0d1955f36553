"""Reading the book's `.pkl` weights without running the code a pickle can name.

A pickle is a program: loading one with `pickle.load` calls whatever functions it names. The book's
weight files (`params.pkl`, `deep_convnet_params.pkl`) hold a dict of numpy arrays, which needs only
numpy's array reconstructor, `ndarray` and `dtype`. `load_pickle` admits those and nothing else, then
checks that what came out is dicts, lists and tuples of numeric numpy arrays and numbers.
"""

from __future__ import annotations

import numbers
import os
import pickle
from typing import Any

import numpy as np

from xbp.errors import CheckpointError

__all__ = ["load_pickle"]

_ALLOWED = {  # (module, name) a weight file may name: what numpy's arrays and scalars pickle as
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise CheckpointError(
                f"{self.path}: the pickle asks for {module}.{name}, and only numpy arrays and numbers "
                "are loaded from a weight file (anything else could run code). If you trust the file, "
                "load it with pickle.load yourself; better, save weights with xbp.save_params (.npz).")
        return super().find_class(module, name)

    path = ""


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """The dict (or list) of numpy arrays and numbers pickled in `path`; refuses anything else."""
    with open(path, "rb") as file:
        unpickler = _WeightsUnpickler(file)
        unpickler.path = os.fspath(path)
        try:
            value = unpickler.load()
        except CheckpointError:
            raise
        except Exception as exc:  # a truncated or damaged file: say so, whatever pickle raised
            raise CheckpointError(f"{os.fspath(path)}: not a readable pickle ({type(exc).__name__}: "
                                  f"{exc}).") from exc
    _check(value, os.fspath(path), "the file")
    return value


def _check(value: Any, path: str, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{path}: {where} has a key of type {type(key).__name__}; "
                                      "weight files have names (str) or numbers as keys.")
            _check(item, path, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, path, f"{where}[{index}]")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"{path}: {where} is an array of dtype {value.dtype}; weight files "
                                  "hold numeric arrays only.")
    elif not isinstance(value, numbers.Number) or isinstance(value, complex):
        raise CheckpointError(f"{path}: {where} is a {type(value).__name__}; weight files hold dicts "
                              "and lists of numpy arrays and numbers only.")
