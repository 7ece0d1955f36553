"""The book's nets: `TwoLayerNet` (ch. 5), `MultiLayerNet` (ch. 6), `SimpleConvNet` (ch. 7) and
`DeepConvNet` (ch. 8), each an `xbp.net.Net` built from layers (see `xbp.net` for what they share).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from xbp.convnets import DeepConvNet, SimpleConvNet
from xbp.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from xbp.net import Net, check_sizes, on_backend

__all__ = ["DeepConvNet", "MultiLayerNet", "Net", "SimpleConvNet", "TwoLayerNet", "init_std"]


class TwoLayerNet(Net):
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, the book's network for MNIST."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float32") -> None:
        check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
        if isinstance(weight_init_std, bool) or not isinstance(weight_init_std, numbers.Real) \
                or not math.isfinite(weight_init_std):
            raise ValueError(f"weight_init_std must be a finite number (the book's 0.01), "
                             f"got {weight_init_std!r}.")
        rng = np.random.default_rng(seed)
        self.params = on_backend({
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }, dtype)
        self.layers = {
            "Affine1": Affine(self.params["W1"], self.params["b1"]),
            "Relu1": Relu(),
            "Affine2": Affine(self.params["W2"], self.params["b2"]),
        }
        self.last_layer = SoftmaxWithLoss()
        self.bindings = {"W1": ("Affine1", "W"), "b1": ("Affine1", "b"),
                         "W2": ("Affine2", "W"), "b2": ("Affine2", "b")}


_INIT_STD = {"relu": 2.0, "he": 2.0, "sigmoid": 1.0, "xavier": 1.0}  # std = sqrt(this / n_in)
_ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


class MultiLayerNet(Net):
    """(Affine -> [BatchNorm] -> activation -> [Dropout]) per hidden layer -> Affine -> SoftmaxWithLoss.

    The book's fully connected net of chapter 6 (its MultiLayerNet and MultiLayerNetExtend in one).
    `weight_init_std` is a number, "relu" / "he" (std = sqrt(2 / n_in)) or "sigmoid" / "xavier"
    (std = sqrt(1 / n_in)), where n_in is the layer's number of inputs. Parameters are 'W1', 'b1', ...,
    'W{L+1}', 'b{L+1}' and, with batch normalization, 'gamma1', 'beta1', ... for each hidden layer.
    With `seed`, the weights, and the dropout masks after them, repeat exactly.
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int, *,
                 activation: str = "relu", weight_init_std: float | str = "relu",
                 weight_decay_lambda: float = 0, use_batchnorm: bool = False, use_dropout: bool = False,
                 dropout_ratio: float = 0.5, seed: int | None = None, dtype: str = "float32") -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be 'relu' or 'sigmoid', got {activation!r}.")
        sizes = [input_size, *hidden_size_list, output_size]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(f"layer sizes must be positive integers, got input_size={input_size!r}, "
                             f"hidden_size_list={hidden_size_list!r}, output_size={output_size!r}.")
        stds = [init_std(weight_init_std, n_in) for n_in in sizes[:-1]]
        self.input_size = input_size
        self.hidden_size_list = list(hidden_size_list)
        self.hidden_layer_num = len(hidden_size_list)
        self.output_size = output_size
        self.activation = activation
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        self.use_dropout = use_dropout
        self.dropout_ratio = dropout_ratio

        rng = np.random.default_rng(seed)
        host: dict[str, np.ndarray] = {}
        for idx, std in enumerate(stds, start=1):
            host[f"W{idx}"] = std * rng.standard_normal((sizes[idx - 1], sizes[idx]))
            host[f"b{idx}"] = np.zeros(sizes[idx])
            if use_batchnorm and idx <= self.hidden_layer_num:
                host[f"gamma{idx}"] = np.ones(sizes[idx])
                host[f"beta{idx}"] = np.zeros(sizes[idx])
        self.params = on_backend(host, dtype)

        self.layers = {}
        self.bindings = {}
        for idx in range(1, self.hidden_layer_num + 1):
            self._add_affine(idx)
            if use_batchnorm:
                self._add(f"BatchNorm{idx}",
                          BatchNormalization(self.params[f"gamma{idx}"], self.params[f"beta{idx}"]),
                          {f"gamma{idx}": "gamma", f"beta{idx}": "beta"})
            self._add(f"{_ACTIVATIONS[activation].__name__}{idx}", _ACTIVATIONS[activation](), {})
            if use_dropout:  # each layer its own stream, drawn after the weights
                dropout_seed = None if seed is None else int(rng.integers(2**63))
                self._add(f"Dropout{idx}", Dropout(dropout_ratio, seed=dropout_seed), {})
        self._add_affine(self.hidden_layer_num + 1)
        self.last_layer = SoftmaxWithLoss()

    def _add_affine(self, idx: int) -> None:
        self._add(f"Affine{idx}", Affine(self.params[f"W{idx}"], self.params[f"b{idx}"]),
                  {f"W{idx}": "W", f"b{idx}": "b"})

    def _add(self, name: str, layer: Any, params: dict[str, str]) -> None:
        self.layers[name] = layer
        self.bindings.update({key: (name, attr) for key, attr in params.items()})


def init_std(weight_init_std: float | str, n_in: int) -> float:
    """The standard deviation of a layer's initial weights, for a layer with `n_in` inputs."""
    if isinstance(weight_init_std, str):
        key = weight_init_std.lower()
        if key in _INIT_STD:
            return math.sqrt(_INIT_STD[key] / n_in)
    elif isinstance(weight_init_std, numbers.Real) and not isinstance(weight_init_std, bool):
        return float(weight_init_std)
    raise ValueError(f"weight_init_std must be a number or one of 'relu', 'he' (sqrt(2/n)), "
                     f"'sigmoid', 'xavier' (sqrt(1/n)); got {weight_init_std!r}.")
