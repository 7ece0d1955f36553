"""What the book's two convnets share beyond xbp's nets: the book's accuracy loop and its `.pkl` files."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace, on_params_device
from xbp.params_io import write_atomically
from xbp.pickles import load_pickle

__all__ = ["BookConvNet"]


class BookConvNet:
    """The book's `accuracy(x, t, batch_size=100)`, `save_params` and `load_params` (put after BookNet)."""

    params: dict[str, Any]

    @on_params_device
    def accuracy(self, x: Any, t: Any, batch_size: int = 100) -> float:
        """Correct predictions over whole batches of `batch_size`, divided by all of x's samples: the
        book's loop, which leaves out a last partial batch but still counts it in the denominator."""
        x, t = self._inputs(x), self._labels(t)  # type: ignore[attr-defined]
        xp = array_namespace(x, t)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        correct = 0
        for i in range(int(x.shape[0] / batch_size)):
            batch = slice(i * batch_size, (i + 1) * batch_size)
            y = xp.argmax(self.predict(x[batch, ...], train_flg=False), axis=1)  # type: ignore[attr-defined]
            correct += int(xp.sum(xp.astype(y == t[batch], xp.int32)))
        return correct / x.shape[0]

    def save_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """The parameters as the book saves them: a pickled dict of numpy arrays (written atomically)."""
        host = {key: backend.to_cpu(value) for key, value in self.params.items()}
        write_atomically(file_name, lambda file: pickle.dump(host, file))

    def load_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """The parameters from a `.pkl` of the book's (only numpy arrays and numbers are read from it)."""
        params = load_pickle(file_name)
        if not isinstance(params, dict):
            raise ValueError(f"{os.fspath(file_name)} holds a {type(params).__name__}, not the dict of "
                             "parameters the book saves.")
        self.set_params({**self.state(), **{k: np.asarray(v) for k, v in params.items()}})  # type: ignore[attr-defined]
